//! Shared state beyond one instance: the Redis client that global rate limits take their
//! leases through (`redis`), over the RESP2 codec (`resp`).
//!
//! Where it sits: below `pipeline`, `runtime` and `compiled`; it imports `config`, `tls`,
//! `metrics` and `notify`, never the request path.

pub mod redis;
pub mod resp;

pub use redis::{Client, Settings};
