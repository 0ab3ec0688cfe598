//! HAProxy as the fleet's L4 balancer: the stock `haproxy` in TCP mode, in the foreground
//! (`-db`), one thread, its frontend on 127.0.0.1 and a free port, round robin over the
//! backends, each health-checked every 200 ms (down after one failed check, up after one
//! good one), so that an instance killed mid-test stops getting connections; a connection
//! that finds a dead server before the check noticed is sent to another one (`retries`,
//! `option redispatch`). With `send_proxy_v2` every connection to a backend starts with a
//! PROXY v2 header naming the client. Ready once the frontend accepts; killed by its PID on
//! drop.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::stock::{accepts, free_port, scratch_dir, stock_binary, Daemon};
use crate::wait::eventually;

/// Start attempts on fresh ports (the frontend's port can be taken between the probe that
/// found it free and haproxy binding it).
const ATTEMPTS: usize = 3;

/// A running `haproxy`. Killed on drop.
pub struct Haproxy {
    daemon: Daemon,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Haproxy {
    /// A TCP balancer in front of `backends`, accepting on `addr()`.
    pub fn tcp_balancer(backends: &[SocketAddr], send_proxy_v2: bool) -> Haproxy {
        assert!(!backends.is_empty(), "a balancer needs backends");
        let dir = scratch_dir("haproxy");
        let mut last_log = String::new();
        for _ in 0..ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, config(addr, backends, send_proxy_v2)).expect("haproxy.cfg");
            let mut command = Command::new(stock_binary("haproxy", "haproxy"));
            command.arg("-f").arg(&cfg).arg("-db").current_dir(&dir);
            let mut daemon = Daemon::spawn(command, "haproxy", &dir.join("haproxy.log"));
            let ready = eventually(format!("haproxy to accept on {addr}"))
                .try_until(|| (!daemon.running() || accepts(addr)).then_some(()));
            if ready.is_some() && daemon.running() {
                return Haproxy { daemon, addr, dir };
            }
            daemon.stop();
            last_log = daemon.log_text();
        }
        panic!("haproxy did not start in {ATTEMPTS} attempts:\n{last_log}");
    }

    /// The frontend's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// What haproxy wrote so far (warnings, alerts).
    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The config: TCP mode, short connect timeout, 30 s idle timeouts, one checked server
/// line per backend.
fn config(frontend: SocketAddr, backends: &[SocketAddr], send_proxy_v2: bool) -> String {
    let mut cfg = format!(
        "global\n    nbthread 1\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    \
         timeout server 30s\n    retries 3\n    option redispatch 1\n\n\
         frontend fleet\n    bind {frontend}\n    default_backend ringway\n\n\
         backend ringway\n    balance roundrobin\n"
    );
    let proxy = if send_proxy_v2 { " send-proxy-v2" } else { "" };
    for (i, b) in backends.iter().enumerate() {
        let _ = writeln!(
            cfg,
            "    server s{i} {b}{proxy} check inter 200ms fall 1 rise 1"
        );
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_checks_every_backend_and_sends_proxy_v2_when_asked() {
        let front: SocketAddr = "127.0.0.1:8000".parse().expect("addr");
        let backs: Vec<SocketAddr> = ["127.0.0.1:9001", "127.0.0.1:9002"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        let cfg = config(front, &backs, true);
        assert!(cfg.contains("bind 127.0.0.1:8000\n"), "{cfg}");
        assert!(cfg.contains("mode tcp\n") && cfg.contains("balance roundrobin\n"));
        assert!(cfg
            .contains("server s1 127.0.0.1:9002 send-proxy-v2 check inter 200ms fall 1 rise 1\n"));
        assert!(!config(front, &backs, false).contains("send-proxy"));
    }
}
