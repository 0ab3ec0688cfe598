//! A Redis server for the fleet tests: the stock `redis-server` on 127.0.0.1 and a free port
//! (Redis cannot bind port 0 and say which port it got), nothing persisted, in a scratch
//! directory of its own, ready once it answers PING. A test stops it (SIGTERM to its PID)
//! and restarts it on the same port to play an outage; it is killed on drop. `command`
//! speaks raw RESP, enough to look at what ringway stored.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;

use crate::stock::{accepts, free_port, scratch_dir, stock_binary, Daemon};
use crate::wait::{eventually, TIMEOUT};

/// Start attempts on fresh ports before giving up (a port can be taken between the probe
/// that found it free and redis-server binding it).
const ATTEMPTS: usize = 3;

/// A running `redis-server`. Killed on drop.
pub struct RedisServer {
    daemon: Option<Daemon>,
    port: u16,
    dir: PathBuf,
    /// `start_tls`: its password (TLS only, the certificate in `dir`).
    tls_password: Option<String>,
}

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisReply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3 abc` (bytes shown as UTF-8, lossily), or nil.
    Bulk(Option<String>),
    /// `*2 ...`; a nil array is empty.
    Array(Vec<RedisReply>),
}

impl RedisServer {
    /// `redis-server` on a free port of 127.0.0.1, answering PING.
    pub fn start() -> RedisServer {
        RedisServer::start_as(None)
    }

    /// `redis-server` over TLS only (`--port 0`, the certificate of `write_self_signed` for
    /// "localhost", see `ca_file`; clients are not asked for one) with a password, ready
    /// once its TLS port accepts. `command` and `keys` speak plain TCP: use `cli`.
    pub fn start_tls(password: &str) -> RedisServer {
        RedisServer::start_as(Some(password.to_string()))
    }

    fn start_as(tls_password: Option<String>) -> RedisServer {
        let dir = scratch_dir("redis");
        if tls_password.is_some() {
            crate::certs::write_self_signed(&dir);
        }
        let mut redis = RedisServer {
            daemon: None,
            port: 0,
            dir,
            tls_password,
        };
        let mut last_log = String::new();
        for _ in 0..ATTEMPTS {
            redis.port = free_port();
            match redis.launch() {
                Ok(()) => return redis,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start in {ATTEMPTS} attempts:\n{last_log}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Daemon::pid)
    }

    /// SIGTERM, then waits (bounded) for it to exit: connections to it are refused after.
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }

    /// Starts it again on the same port, empty (nothing was persisted), answering PING.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!(
                "redis-server did not start again on {}:\n{log}",
                self.addr()
            );
        }
    }

    /// Runs one command (`["KEYS", "ringway:*"]`) on a connection of its own; its reply.
    pub fn command(&self, args: &[&str]) -> RedisReply {
        run_command(self.addr(), args)
            .unwrap_or_else(|e| panic!("redis {args:?} on {}: {e}", self.addr()))
    }

    /// The keys matching `pattern` (`KEYS`: fine for a test's few keys, never in
    /// production).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&["KEYS", pattern]) {
            RedisReply::Array(items) => items
                .into_iter()
                .filter_map(|k| match k {
                    RedisReply::Bulk(k) => k,
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS {pattern}: {other:?}"),
        }
    }

    /// The CA file that checks a `start_tls` server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// `redis-cli` with `args` against this server (over TLS, with its password, for a
    /// `start_tls` one): what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(stock_binary("redis-cli", "redis-tools"));
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.tls_password {
            command
                .args(["--tls", "--sni", "localhost", "--cacert"])
                .arg(self.ca_file())
                .args(["-a", password, "--no-auth-warning"]);
        }
        let out = command.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What redis-server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Runs redis-server on `self.port` until it answers PING (over TLS: until the port
    /// accepts); Err(its log) when it exits first (the port was taken) or never answers.
    fn launch(&mut self) -> Result<(), String> {
        let mut command = Command::new(stock_binary("redis-server", "redis-server"));
        let port = self.port.to_string();
        command
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--dir"])
            .arg(&self.dir)
            .current_dir(&self.dir);
        match &self.tls_password {
            None => command.args(["--port", &port]),
            Some(password) => command
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem"])
                .args(["--tls-ca-cert-file", "cert.pem", "--tls-auth-clients", "no"])
                .args(["--requirepass", password]),
        };
        let mut daemon = Daemon::spawn(command, "redis-server", &self.dir.join("redis.log"));
        let addr = self.addr();
        let tls = self.tls_password.is_some();
        let ready = eventually(format!("redis-server on {addr} to answer")).try_until(|| {
            if !daemon.running() {
                return Some(false);
            }
            if tls {
                return accepts(addr).then_some(true);
            }
            let pong = run_command(addr, &["PING"]);
            matches!(pong, Ok(RedisReply::Status(s)) if s == "PONG").then_some(true)
        });
        if ready == Some(true) {
            self.daemon = Some(daemon);
            Ok(())
        } else {
            daemon.stop();
            Err(daemon.log_text())
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.daemon = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command as a RESP array of bulk strings, and its reply.
fn run_command(addr: SocketAddr, args: &[&str]) -> std::io::Result<RedisReply> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    (&stream).write_all(&out)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<RedisReply> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(invalid)?;
    let number = || rest.parse::<i64>().map_err(|_| invalid());
    Ok(match kind {
        "+" => RedisReply::Status(rest.to_string()),
        "-" => RedisReply::Error(rest.to_string()),
        ":" => RedisReply::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => RedisReply::Bulk(None),
            Ok(len) => {
                let mut bytes = vec![0; len + 2];
                r.read_exact(&mut bytes)?;
                bytes.truncate(len);
                RedisReply::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
        },
        "*" => {
            let n = usize::try_from(number()?).unwrap_or(0);
            let items = (0..n).map(|_| read_reply(r)).collect::<Result<_, _>>()?;
            RedisReply::Array(items)
        }
        _ => return Err(invalid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_every_kind_are_read() {
        let mut bytes: &[u8] = b"*5\r\n+OK\r\n-ERR no\r\n:7\r\n$5\r\nab\r\nc\r\n$-1\r\n*-1\r\n";
        let got = read_reply(&mut bytes).expect("array");
        assert_eq!(
            got,
            RedisReply::Array(vec![
                RedisReply::Status("OK".into()),
                RedisReply::Error("ERR no".into()),
                RedisReply::Int(7),
                RedisReply::Bulk(Some("ab\r\nc".into())),
                RedisReply::Bulk(None),
            ])
        );
        assert_eq!(
            read_reply(&mut bytes).expect("nil"),
            RedisReply::Array(vec![])
        );
    }

    #[test]
    fn a_redis_server_stops_restarts_on_its_port_and_keeps_nothing() {
        if crate::stock::fleet_skipped() {
            return;
        }
        let mut redis = RedisServer::start();
        let addr = redis.addr();
        assert_eq!(
            redis.command(&["SET", "ringway:t", "1"]),
            RedisReply::Status("OK".into())
        );
        assert_eq!(redis.keys("ringway:*"), vec!["ringway:t".to_string()]);
        redis.stop();
        assert!(run_command(addr, &["PING"]).is_err(), "still answering");
        redis.restart();
        assert_eq!(redis.addr(), addr);
        assert_eq!(redis.command(&["DBSIZE"]), RedisReply::Int(0));
        assert!(redis.pid().is_some());
        drop(redis);
        assert!(
            run_command(addr, &["PING"]).is_err(),
            "answering after drop"
        );
    }
}
