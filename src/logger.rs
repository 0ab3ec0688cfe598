//! A minimal stderr logger for the `log` facade: one line per record,
//! `2026-11-24T22:23:57.123Z INFO message`. Level from `RINGWAY_LOG` (error, warn, info,
//! debug, trace; default info). Lines are written with one `write_all` so workers'
//! lines do not interleave mid-line.
//!
//! Where it sits: a leaf beside `runtime` (it borrows `accesslog`'s RFC 3339 clock).

use std::io::Write;
use std::time::SystemTime;

struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {} {}\n", utc_now(), record.level(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls are no-ops.
pub fn init() {
    let level = match std::env::var("RINGWAY_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    };
    if log::set_boxed_logger(Box::new(StderrLogger { level })).is_ok() {
        log::set_max_level(level);
    }
}

/// RFC 3339 UTC timestamp with milliseconds (the access log's clock).
fn utc_now() -> String {
    let mut out = Vec::with_capacity(24);
    crate::accesslog::time::put_rfc3339(&mut out, SystemTime::now());
    String::from_utf8_lossy(&out).into_owned()
}
