//! The access log: one JSON line per answered request (see docs/operations.md, "Access log").
//!
//! Each worker appends lines to its own buffer (`CoreLog`: no lock, no atomic, bounded;
//! when full, lines are dropped and counted, never waited for) and ships full buffers, and
//! once a second whatever it holds, over a bounded channel to one writer thread per process
//! (`AccessLog`), which alone touches the file. SIGUSR1 makes it reopen the file.
//!
//! `RequestLog` collects a request's measurements in the connection; `Line` is the field
//! set and its JSON form, with a hand-written escaper (`json`) and RFC 3339 clock (`time`).
//!
//! Where it sits: below `pipeline` and `runtime`; it imports `config`, `http` and `trace`.

mod core;
pub mod json;
mod line;
mod record;
pub mod time;
mod writer;

pub use self::core::CoreLog;
pub use line::{Line, RequestId};
pub use record::RequestLog;
pub use writer::{AccessLog, Reopen, Sink};
