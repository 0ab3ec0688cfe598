//! The bundled origin: the package's own `ringway-origin` binary as a process on
//! 127.0.0.1:0 (its scripted faults are chosen per request), ready once it prints its
//! address, asked for its counters directly (never through ringway), and killed by its PID
//! on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::binaries::binary;
use crate::client::get;
use crate::wait::eventually;

/// The bundled `ringway-origin` on 127.0.0.1:0, killed on drop.
pub struct BundledOrigin {
    child: Child,
    pub addr: SocketAddr,
}

impl BundledOrigin {
    pub fn start() -> BundledOrigin {
        BundledOrigin::start_with(&[])
    }

    /// `start` with more command-line arguments (e.g. `--fault-rate`).
    pub fn start_with(args: &[&str]) -> BundledOrigin {
        let mut child = Command::new(binary("ringway-origin"))
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringway-origin");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("origin ready line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .expect("origin address");
        BundledOrigin { child, addr }
    }

    /// The origin's own counters (`/origin/stats`, asked directly, not through ringway):
    /// `connections`, `open` (not counting the asking one), `requests`, `faults`, per mode.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let r = get(self.addr, "/origin/stats");
        assert_eq!(r.status, 200, "origin stats");
        r.body_text()
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    /// One counter of `stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| v)
    }

    /// Kills it and waits (bounded) until its port refuses connections. The origin runs on
    /// io_uring: an accept it had queued can outlive the reaped process for a moment (the
    /// kernel tears the ring down asynchronously) and take a connection that is then reset.
    pub fn stop(self) {
        let addr = self.addr;
        drop(self);
        eventually(format!(
            "{addr} refusing connections once the origin is gone"
        ))
        .until(|| {
            matches!(
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        });
    }

    /// Waits (bounded) until exactly `n` origin connections are open.
    pub fn wait_open(&self, n: u64) -> bool {
        eventually(format!("{n} open connections at the bundled origin"))
            .try_until(|| self.stat("open") == n)
            .is_some()
    }
}

impl Drop for BundledOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
