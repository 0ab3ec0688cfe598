//! Host table + per-host path trie. Lookups walk bytes; no allocation, no string building.

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
pub struct RouteTable {
    // private: host maps + tries
}

impl RouteTable {
    /// `routes[i]` is route i in file order.
    pub fn build(routes: &[RouteMatch]) -> RouteTable {
        todo!()
    }
    /// Index of the winning route.
    pub fn lookup<R: RequestView>(&self, req: &R) -> Option<usize> {
        todo!()
    }
}
