//! The gateway under test as a process: the built `ringway` binary started with `run` on a
//! generated config file (its listener on port 0), its stdout and stderr collected line by
//! line, ready once it logs the address it listens on. Signals, reloads and stopping go to
//! that process by its PID and to no other; it is killed on drop and its config file
//! removed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use crate::binaries::binary;
use crate::drivers::Driver;
use crate::wait::{eventually, TIMEOUT};

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A file name unique within this test process and among concurrent test processes.
pub(crate) fn unique_name(ext: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    format!("ringway-test-{}-{n}.{ext}", std::process::id())
}

/// Lines a pipe delivered so far; a reader thread appends.
type Lines = Arc<Mutex<Vec<String>>>;

/// A running `ringway run` process. Killed on drop.
pub struct Gateway {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Lines,
    stdout: Lines,
    config_path: PathBuf,
}

impl Gateway {
    pub fn start(config: &str, driver: Driver) -> Gateway {
        Gateway::start_in(config, driver, &std::env::temp_dir())
    }

    /// `start` with the config file written into `dir` (its relative paths resolve there).
    pub fn start_in(config: &str, driver: Driver, dir: &Path) -> Gateway {
        let config_path = dir.join(unique_name("toml"));
        std::fs::write(&config_path, config).expect("write config");
        Gateway::spawn(config_path, driver, &[])
    }

    /// A second process on the same config file, started with `run --upgrade`: it takes
    /// the listeners of the running one. The config file is left to the first gateway.
    pub fn start_upgrade(&self, driver: Driver) -> Gateway {
        let copy = self.config_path.with_extension("upgrade.toml");
        std::fs::copy(&self.config_path, &copy).expect("copy config");
        Gateway::spawn(copy, driver, &["--upgrade"])
    }

    fn spawn(config_path: PathBuf, driver: Driver, extra: &[&str]) -> Gateway {
        let mut child = Command::new(binary("ringway"))
            .args(["run", "-c"])
            .arg(&config_path)
            .args(extra)
            .env("RINGWAY_IO_DRIVER", driver.env())
            .env("RINGWAY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stdout = Lines::default();
        collect_lines(
            child.stdout.take().expect("stdout piped"),
            stdout.clone(),
            |_| {},
        );
        let stderr = Lines::default();
        let (tx, rx) = mpsc::channel();
        collect_lines(
            child.stderr.take().expect("stderr piped"),
            stderr.clone(),
            move |line| {
                if let Some(addr) = listen_address(line) {
                    let _ = tx.send(addr.to_string());
                }
            },
        );
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringway did not become ready:\n{}",
                    stderr.lock().expect("stderr lock").join("\n")
                );
            }
        };
        Gateway {
            child: Some(child),
            addr,
            stderr,
            stdout,
            config_path,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the listener whose `listening on` line mentions `what` (its kind:
    /// "https", "h2c only", ...), once it is logged.
    pub fn listener_addr(&self, what: &str) -> SocketAddr {
        let needle = format!("({what};");
        crate::eventually(what).until(|| {
            let log = self.stderr_text();
            let addr = log.lines().filter(|l| l.contains(&needle)).find_map(|l| {
                l.split("listening on ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
            addr.ok_or(log)
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The lines the gateway wrote to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// The config file this gateway was started with (tests rewrite it to reload).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Waits (bounded) until a log line contains `needle`; returns the line.
    pub fn wait_log(&self, needle: &str) -> String {
        eventually(format!("{needle:?} in the log")).until(|| {
            let log = self.stderr_text();
            let line = log.lines().find(|l| l.contains(needle)).map(str::to_string);
            line.ok_or(log)
        })
    }

    /// Sends a signal (by name, e.g. "HUP") to this gateway's process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits (bounded) for the process to exit on its own; its exit status.
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = eventually("ringway to exit").try_until(|| child.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Sends SIGTERM and waits for the exit status (kills after `TIMEOUT`).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = eventually("ringway to exit after SIGTERM")
            .try_until(|| child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// The sum of every sample of metric `name` (any labels) on the admin listener's
    /// /metrics; panics when the page has none.
    pub fn metric(&self, name: &str) -> u64 {
        let page = crate::get(self.admin_addr(), "/metrics").body_text();
        let samples: Vec<u64> = page
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once('}')?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.split_whitespace().next()?.parse().ok()
            })
            .collect();
        assert!(!samples.is_empty(), "no {name} in:\n{page}");
        samples.iter().sum()
    }

    /// The admin listener's address, from the log (`[admin] listen = "127.0.0.1:0"`).
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self.wait_log("admin listening on ");
        line.split("admin listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("admin address")
    }

    /// Resident set size of the gateway process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// The address in a `listening on <addr> ...` log line (the first listener's is the one
/// `addr` reports).
fn listen_address(line: &str) -> Option<&str> {
    line.split("listening on ")
        .nth(1)
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
}

/// Appends each line of `pipe` to `lines` on a thread of its own, then shows it to
/// `seen`: a test that reads the log right after a line was announced finds it there.
fn collect_lines(
    pipe: impl std::io::Read + Send + 'static,
    lines: Lines,
    seen: impl Fn(&str) + Send + 'static,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().expect("lines lock").push(line.clone());
            seen(&line);
        }
    });
}
