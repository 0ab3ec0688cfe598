//! ringway: a thread-per-core HTTP/1.1 API gateway. The binary (`main.rs`) is a thin CLI
//! over this library. Module map: `config` (the TOML a user writes), `compiled` (the per-core
//! lookup form), `http` (sans-IO parsing and framing), `proxy` (the request pipeline),
//! `runtime` (workers, listeners, signals), `policy` (who may call what), `upstream`
//! (balancing, health, retries), `logger`, `accesslog` (JSON access log), `trace` (W3C
//! traceparent), `redact` (what logs may show), `notify`, `sys` (raw syscalls).

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
pub mod redact;
pub mod runtime;
pub mod sys;
pub mod tls;
pub mod trace;
pub mod upstream;
