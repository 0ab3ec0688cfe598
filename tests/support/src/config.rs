//! The config a test starts ringway with, built as TOML text: one listener on 127.0.0.1:0
//! (ringway logs the port it got), one worker, and whatever sections, upstreams and routes
//! the test adds. Text only: ringway itself parses and validates it.

use std::net::SocketAddr;

/// Builds a config with one listener on port 0 and one worker.
pub struct Config {
    sections: Vec<String>,
    upstreams: Vec<String>,
    routes: Vec<String>,
}

impl Config {
    pub fn new() -> Config {
        Config {
            sections: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// Extra top-level sections, e.g. "[limits]\nmax_in_flight = 1". A `[server]` section's
    /// fields join the generated one.
    pub fn section(mut self, text: &str) -> Config {
        self.sections.push(text.to_string());
        self
    }

    pub fn upstream(mut self, name: &str, servers: &[SocketAddr]) -> Config {
        let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        self.upstreams.push(format!(
            "[[upstreams]]\nname = \"{name}\"\nservers = [{}]\n",
            list.join(", ")
        ));
        self
    }

    /// One route's fields (without the `[[routes]]` line).
    pub fn route(mut self, fields: &str) -> Config {
        self.routes.push(format!("[[routes]]\n{fields}\n"));
        self
    }

    pub fn render(&self) -> String {
        let mut server = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n".to_string();
        let mut rest = String::new();
        for s in &self.sections {
            if let Some(extra) = s.strip_prefix("[server]\n") {
                server.push_str(extra);
                server.push('\n');
            } else {
                rest.push_str(s);
                rest.push('\n');
            }
        }
        format!(
            "{server}\n{rest}\n{}\n{}",
            self.upstreams.join("\n"),
            self.routes.join("\n")
        )
    }

    /// Routes whose gRPC calls ringway answers itself: `/pkg.Denied/` refused by an IP
    /// rule (to `origin`), `/pkg.Gone/` to a dead upstream, anything else no route.
    pub fn grpc_refusals(origin: SocketAddr) -> String {
        Config::new()
            .upstream("app", &[origin])
            .upstream("gone", &[crate::dead_addr()])
            .route(
                "path_prefix = \"/pkg.Denied/\"\nupstream = \"app\"\n\
                 rules = { ip_deny = [\"127.0.0.0/8\"] }",
            )
            .route("path_prefix = \"/pkg.Gone/\"\nupstream = \"gone\"")
            .render()
    }

    /// Shorthand: one upstream "app" and a catch-all route to it.
    pub fn proxy_all(origin: SocketAddr) -> Config {
        Config::new()
            .upstream("app", &[origin])
            .route("path_prefix = \"/\"\nupstream = \"app\"")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}
