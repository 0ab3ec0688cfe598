//! End-to-end test support for ringway, a dev-only library shared by the integration tests
//! in `tests/`: it starts the built `ringway` binary on an ephemeral port with a generated
//! config, records what an origin receives and answers it with scripted (also malformed)
//! bytes, talks to ringway over raw TCP, runs the stock daemons of a fleet (Redis, HAProxy)
//! and waits on readiness, never on sleeps. It only ever kills processes it started, by
//! their PID. It is a library (not a `mod common;` compiled into every test binary) so that
//! each test uses what it needs without unused code warnings. Everything is re-exported here: a test says `use ringway_test_support::*;`.

mod binaries;
mod bundled;
mod certs;
mod client;
mod config;
mod drivers;
mod gateway;
mod haproxy;
mod origin;
mod redis;
mod stock;
mod wait;
mod wire;

pub use binaries::{binary, binary_beside_test};
pub use bundled::BundledOrigin;
pub use certs::write_self_signed;
pub use client::{ask, connect, dead_addr, get, roundtrip, send, Reader, Request, Response};
pub use config::Config;
pub use drivers::Driver;
pub use gateway::Gateway;
pub use haproxy::Haproxy;
pub use origin::{answer_heads, answer_heads_after, Origin, OriginRequest, Reply};
pub use redis::{RedisReply, RedisServer};
pub use stock::{fleet_skipped, free_port, stock_binary};
pub use wait::{eventually, Eventually, Probe, TIMEOUT};
pub use wire::{decode_chunked, find};
