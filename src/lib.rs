//! ringway: a thread-per-core HTTP/1.1, HTTP/2 and gRPC API gateway. The binary (`main.rs`) is a thin CLI
//! over this library. Modules, from the top layer down (each imports only modules below it;
//! `tests/architecture.rs` keeps it so):
//!
//! - `runtime`: worker threads, listeners, signals, reload, drain, admin, binary upgrade.
//! - `front`: the protocols clients speak (`front::http1`, `front::http2`), each a front end
//!   of `pipeline`.
//! - `pipeline`: a request's life, protocol-neutral: admit, route, policy, forward, relay,
//!   log, count; typed outcomes.
//! - `compiled`: the per-core lookup form of the config.
//! - `policy` (who may call what), `upstream` (balancing, health, retries, pools), `tls`.
//! - `io` (streams under deadlines, splice), `http` (sans-IO HTTP/1.1), `accesslog`.
//! - `config`: the TOML a user writes, its defaults and validation, and the value types it
//!   parses.
//! - Leaves: `grammar`, `metrics`, `trace`, `redact`, `notify`, `sys`, `logger`,
//!   `proxy_protocol` (the PROXY protocol header, sans I/O).

pub mod accesslog;
pub mod compiled;
pub mod config;
pub mod front;
pub mod grammar;
pub mod http;
pub mod io;
pub mod logger;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod proxy_protocol;
pub mod redact;
pub mod runtime;
pub mod store;
pub mod sys;
pub mod tls;
pub mod trace;
pub mod upstream;
