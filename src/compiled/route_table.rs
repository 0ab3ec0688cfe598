//! Host table + per-host path trie. Lookups walk bytes; no allocation, no string building.
//!
//! Each host tier (exact hosts, wildcard suffixes, host-less) owns a byte trie over path
//! bytes. A node remembers its parent, so a lookup walks down as far as the path goes and
//! then climbs back up: the deepest node is the longest match, and candidates come out in
//! priority order without collecting them anywhere.

use ahash::AHashMap;

use super::RequestView;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lowercase exact host.
    Exact(String),
    /// Lowercase suffix including the leading dot: "*.example.com" -> ".example.com".
    /// Matches any host that ends with it and is longer (so not "example.com" itself).
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(Vec<u8>),
    Exact(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub host: HostMatch,
    pub path: PathMatch,
    /// None = any method.
    pub methods: Option<Vec<Vec<u8>>>,
    /// (lowercase name, predicate)
    pub headers: Vec<(Vec<u8>, HeaderPredicate)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPredicate {
    Present,
    Absent,
    Equals(Vec<u8>),
}

#[derive(Debug, Default)]
struct Node {
    parent: u32,
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// Route indices (file order) whose exact path ends here.
    exact: Vec<u32>,
    /// Route indices (file order) whose prefix ends here.
    prefix: Vec<u32>,
}

#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    fn insert(&mut self, path: &PathMatch, route: u32) {
        let (bytes, exact) = match path {
            PathMatch::Prefix(p) => (p, false),
            PathMatch::Exact(p) => (p, true),
        };
        let mut at = 0usize;
        for &b in bytes {
            at = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let id = self.nodes.len();
                    self.nodes.push(Node {
                        parent: at as u32,
                        ..Node::default()
                    });
                    self.nodes[at].children.insert(i, (b, id as u32));
                    id
                }
            };
        }
        let node = &mut self.nodes[at];
        if exact {
            node.exact.push(route);
        } else {
            node.prefix.push(route);
        }
    }

    /// The first route, in priority order, whose predicates `ok` accepts.
    fn find(&self, path: &[u8], ok: impl Fn(u32) -> bool) -> Option<u32> {
        let mut at = 0usize;
        let mut consumed = 0;
        for &b in path {
            match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => {
                    at = self.nodes[at].children[i].1 as usize;
                    consumed += 1;
                }
                Err(_) => break,
            }
        }
        let node = &self.nodes[at];
        if consumed == path.len() {
            if let Some(&r) = node.exact.iter().find(|&&r| ok(r)) {
                return Some(r);
            }
        }
        loop {
            let node = &self.nodes[at];
            if let Some(&r) = node.prefix.iter().find(|&&r| ok(r)) {
                return Some(r);
            }
            if at == 0 {
                return None;
            }
            at = node.parent as usize;
        }
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    exact: AHashMap<Box<[u8]>, Trie>,
    wildcard: AHashMap<Box<[u8]>, Trie>,
    any: Trie,
    routes: Vec<RouteMatch>,
}

impl RouteTable {
    /// `routes[i]` is route i in file order.
    pub fn build(routes: &[RouteMatch]) -> RouteTable {
        let mut t = RouteTable {
            routes: routes.to_vec(),
            ..RouteTable::default()
        };
        for (i, r) in routes.iter().enumerate() {
            let trie = match &r.host {
                HostMatch::Any => &mut t.any,
                HostMatch::Exact(h) => t.exact.entry(h.as_bytes().into()).or_default(),
                HostMatch::Wildcard(s) => t.wildcard.entry(s.as_bytes().into()).or_default(),
            };
            trie.insert(&r.path, i as u32);
        }
        t
    }

    /// Index of the winning route.
    pub fn lookup<R: RequestView>(&self, req: &R) -> Option<usize> {
        let host = req.host();
        let path = req.path();
        let ok = |i: u32| self.predicates_hold(i as usize, req);
        if !host.is_empty() {
            if let Some(r) = self.exact.get(host).and_then(|t| t.find(path, ok)) {
                return Some(r as usize);
            }
            if !self.wildcard.is_empty() {
                // ".b.example.com", then ".example.com", then ".com": longest suffix first.
                for (i, _) in host.iter().enumerate().filter(|(_, &b)| b == b'.') {
                    if i == 0 {
                        continue;
                    }
                    if let Some(r) = self.wildcard.get(&host[i..]).and_then(|t| t.find(path, ok)) {
                        return Some(r as usize);
                    }
                }
            }
        }
        self.any.find(path, ok).map(|r| r as usize)
    }

    fn predicates_hold<R: RequestView>(&self, i: usize, req: &R) -> bool {
        let Some(r) = self.routes.get(i) else {
            return false;
        };
        if let Some(methods) = &r.methods {
            let m = req.method();
            if !methods.iter().any(|x| x.as_slice() == m) {
                return false;
            }
        }
        r.headers.iter().all(|(name, pred)| {
            let v = req.header(name);
            match pred {
                HeaderPredicate::Present => v.is_some(),
                HeaderPredicate::Absent => v.is_none(),
                HeaderPredicate::Equals(want) => v == Some(want.as_slice()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        host: &'static str,
        path: &'static str,
        method: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestView for Req {
        fn host(&self) -> &[u8] {
            self.host.as_bytes()
        }
        fn path(&self) -> &[u8] {
            self.path.as_bytes()
        }
        fn method(&self) -> &[u8] {
            self.method.as_bytes()
        }
        fn header(&self, name: &[u8]) -> Option<&[u8]> {
            self.headers
                .iter()
                .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    fn get(host: &'static str, path: &'static str) -> Req {
        Req {
            host,
            path,
            method: "GET",
            headers: vec![],
        }
    }

    fn prefix(host: HostMatch, p: &str) -> RouteMatch {
        RouteMatch {
            host,
            path: PathMatch::Prefix(p.as_bytes().to_vec()),
            methods: None,
            headers: vec![],
        }
    }

    fn exact(host: HostMatch, p: &str) -> RouteMatch {
        RouteMatch {
            path: PathMatch::Exact(p.as_bytes().to_vec()),
            ..prefix(host, p)
        }
    }

    fn ex(h: &str) -> HostMatch {
        HostMatch::Exact(h.into())
    }

    fn wc(s: &str) -> HostMatch {
        HostMatch::Wildcard(s.into())
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host_even_with_a_longer_path() {
        let t = RouteTable::build(&[
            prefix(HostMatch::Any, "/api/v1/long"),
            prefix(wc(".example.com"), "/api"),
            prefix(ex("api.example.com"), "/"),
        ]);
        assert_eq!(t.lookup(&get("api.example.com", "/api/v1/long")), Some(2));
        assert_eq!(t.lookup(&get("www.example.com", "/api/v1/long")), Some(1));
        assert_eq!(t.lookup(&get("other.org", "/api/v1/long")), Some(0));
    }

    #[test]
    fn longer_prefix_beats_shorter_and_exact_beats_equal_prefix() {
        let t = RouteTable::build(&[
            prefix(HostMatch::Any, "/"),
            prefix(HostMatch::Any, "/admin"),
            prefix(HostMatch::Any, "/admin/x"),
            exact(HostMatch::Any, "/admin/x"),
        ]);
        assert_eq!(t.lookup(&get("", "/admin/x")), Some(3));
        assert_eq!(t.lookup(&get("", "/admin/xy")), Some(2));
        assert_eq!(t.lookup(&get("", "/admin2")), Some(1));
        assert_eq!(t.lookup(&get("", "/adm")), Some(0));
    }

    #[test]
    fn file_order_breaks_ties() {
        let t = RouteTable::build(&[prefix(HostMatch::Any, "/a"), prefix(HostMatch::Any, "/a")]);
        assert_eq!(t.lookup(&get("", "/a/b")), Some(0));
    }

    #[test]
    fn no_match_returns_none() {
        let t = RouteTable::build(&[prefix(HostMatch::Any, "/a")]);
        assert_eq!(t.lookup(&get("", "/b")), None);
        let t = RouteTable::build(&[exact(HostMatch::Any, "/a")]);
        assert_eq!(t.lookup(&get("", "/a/")), None);
    }

    #[test]
    fn method_and_header_predicates_fall_through_to_lower_candidates_and_tiers() {
        let mut post_only = prefix(ex("h"), "/x");
        post_only.methods = Some(vec![b"POST".to_vec()]);
        let mut canary = prefix(HostMatch::Any, "/x");
        canary.headers = vec![(b"x-canary".to_vec(), HeaderPredicate::Equals(b"1".to_vec()))];
        let mut no_debug = prefix(HostMatch::Any, "/x");
        no_debug.headers = vec![(b"x-debug".to_vec(), HeaderPredicate::Absent)];
        let t = RouteTable::build(&[post_only, canary, no_debug, prefix(HostMatch::Any, "/")]);
        assert_eq!(t.lookup(&get("h", "/x")), Some(2));
        let mut post = get("h", "/x");
        post.method = "POST";
        assert_eq!(t.lookup(&post), Some(0));
        let mut c = get("h", "/x");
        c.headers = vec![("X-Canary", "1"), ("x-debug", "")];
        assert_eq!(t.lookup(&c), Some(1));
        let mut d = get("h", "/x");
        d.headers = vec![("x-debug", "1")];
        assert_eq!(t.lookup(&d), Some(3));
    }

    #[test]
    fn wildcard_does_not_match_the_bare_domain_and_deeper_wildcards_win() {
        let t = RouteTable::build(&[
            prefix(wc(".example.com"), "/"),
            prefix(wc(".b.example.com"), "/"),
            prefix(HostMatch::Any, "/"),
        ]);
        assert_eq!(t.lookup(&get("example.com", "/")), Some(2));
        assert_eq!(t.lookup(&get("a.example.com", "/")), Some(0));
        assert_eq!(t.lookup(&get("a.b.example.com", "/")), Some(1));
        assert_eq!(t.lookup(&get("x.a.b.example.com", "/")), Some(1));
    }

    #[test]
    fn a_request_without_host_only_sees_host_less_routes() {
        let t = RouteTable::build(&[prefix(ex("h"), "/"), prefix(HostMatch::Any, "/z")]);
        assert_eq!(t.lookup(&get("", "/")), None);
        assert_eq!(t.lookup(&get("", "/z")), Some(1));
    }
}
