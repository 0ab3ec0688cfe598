//! Stock daemons the fleet tests run beside ringway (`redis-server`, `haproxy`): where their
//! binaries are, a free port for those that cannot take port 0, and the running process
//! itself, in the foreground, with its output in a log file of its own scratch directory.
//! It only ever signals the PID it started, and kills it on drop. A missing binary fails
//! loudly (naming the Debian package and `RINGWAY_SKIP_FLEET=1`): a machine without it
//! must never pass the fleet tests silently.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::gateway::unique_name;
use crate::wait::eventually;

/// Where Debian installs daemons: often not on a non-root user's PATH.
const SBIN: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// True, after printing a "skipped" line, when the fleet tests are to be skipped
/// (`RINGWAY_SKIP_FLEET=1`): the only way to run without redis-server and haproxy.
pub fn fleet_skipped() -> bool {
    let skip = std::env::var("RINGWAY_SKIP_FLEET").as_deref() == Ok("1");
    if skip {
        println!("skipped: RINGWAY_SKIP_FLEET=1");
    }
    skip
}

/// The path of the stock binary `name` (on PATH, else in an sbin directory); panics, naming
/// the Debian `package` that has it, when it is nowhere.
pub fn stock_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: `apt-get install -y {package}` (.ci/run does), \
                 or set RINGWAY_SKIP_FLEET=1 to skip the fleet tests"
            )
        })
}

/// A port on 127.0.0.1 that was free a moment ago, for a daemon that cannot be told to
/// bind port 0 and say which port it got. Another process may take it first: callers
/// retry with a new one when their daemon exits at start.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether something accepts connections at `addr`.
pub(crate) fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A fresh scratch directory for one daemon (config, log, data).
pub(crate) fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(what));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A daemon running in the foreground, its stdout and stderr in `log`. Killed on drop.
pub(crate) struct Daemon {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` (its output appended to `log`).
    pub(crate) fn spawn(mut command: Command, name: &str, log: &Path) -> Daemon {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log file");
        let err = out.try_clone().expect("daemon log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            child: Some(child),
            name: name.to_string(),
            log: log.to_path_buf(),
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status, if it has exited (reaped).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// What it wrote so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM to its PID, then a bounded wait for it to exit; SIGKILL after that.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let what = format!("{} to exit after SIGTERM", self.name);
        if eventually(what)
            .try_until(|| child.try_wait().ok().flatten())
            .is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "`apt-get install -y no-such-package` (.ci/run does), \
                               or set RINGWAY_SKIP_FLEET=1")]
    fn a_missing_binary_names_its_package_and_the_way_to_skip() {
        stock_binary("ringway-no-such-daemon", "no-such-package");
    }
}
