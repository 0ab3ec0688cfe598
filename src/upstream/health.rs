//! Active health checks: ONE checker thread per process probes every server of every upstream
//! with a `health_check` (a blocking `GET path` over a fresh std `TcpStream`, `Connection:
//! close`; a 2xx status within `timeout` is a success; for a TLS upstream only the TCP
//! connect is checked; with `grpc = "service"`, `grpc.health.v1.Health/Check` over HTTP/2 on
//! a fresh connection, h2c or TLS as the upstream speaks, SERVING within `timeout` a
//! success), counts successes and failures in a row, and on a transition logs it
//! and sends it to every worker's channel. A worker drains its channel from a small task
//! every `POLL` (never on the request path) into its own `State`. Every server starts
//! healthy. Probes run one after another: an upstream with many slow servers checks each
//! less often than `interval`.
//!
//! Reload: events name servers by (upstream index, server index) in the config the checker
//! was started with, so a successful reload drops the old `Checker` (its thread ends at its
//! next wait or probe and sends nothing more) and starts a new one for the new config; each
//! worker resets its health state to "all healthy" when it switches config, ignores the old
//! checker's events from then on, and follows the new checker's channel (`Control::Health`).
//! A server that is still down is taken out again after `unhealthy_threshold` probes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use super::{Lb, State};
use crate::config::HealthCheckConfig;

/// What the checker needs of one upstream (in config order: events name it by position).
pub struct Checked<'a> {
    pub name: &'a str,
    /// Its servers' addresses, in config order.
    pub servers: &'a [SocketAddr],
    pub lb: &'a Lb,
    /// Its servers speak TLS.
    pub tls: bool,
    /// Its TLS settings when it speaks HTTP/2 over TLS (a gRPC check then runs over them).
    pub h2_tls: Option<&'a crate::tls::UpstreamTls>,
    /// Its servers' configured host names (TLS names), in config order.
    pub hosts: &'a [String],
}

/// How often a worker looks at its channel.
const POLL: Duration = Duration::from_millis(100);

/// A server's health changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub upstream: usize,
    /// The upstream's server count (so a worker can size its state).
    pub servers: usize,
    pub server: usize,
    pub healthy: bool,
}

struct Target {
    upstream: usize,
    servers: usize,
    server: usize,
    name: String,
    addr: SocketAddr,
    request: Vec<u8>,
    tls: bool,
    /// For a gRPC check over TLS: the settings and the server's name.
    h2_tls: Option<(crate::tls::UpstreamTls, String)>,
    check: HealthCheckConfig,
    healthy: bool,
    streak: u32,
    due: Instant,
}

/// The running checker thread, if any: dropping it stops the thread (at once when it
/// waits; after the probe in progress otherwise, without sending its result).
#[derive(Default)]
pub struct Checker {
    _stop: Option<Sender<()>>,
}

/// Receivers for each worker (None each when nothing is checked).
pub type Receivers = Vec<Option<Receiver<HealthEvent>>>;

/// Starts the checker thread when some upstream has a `health_check`; returns its handle
/// and one receiver per worker.
pub fn start(upstreams: &[Checked<'_>], workers: usize) -> std::io::Result<(Checker, Receivers)> {
    let targets = targets(upstreams);
    if targets.is_empty() {
        return Ok((Checker::default(), (0..workers).map(|_| None).collect()));
    }
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::channel()).unzip();
    let (stop_tx, stop_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("ringway-health".into())
        .spawn(move || run(targets, txs, stop_rx))?;
    let checker = Checker {
        _stop: Some(stop_tx),
    };
    Ok((checker, rxs.into_iter().map(Some).collect()))
}

/// True once the `Checker` is dropped.
fn stopped(stop: &Receiver<()>) -> bool {
    matches!(stop.try_recv(), Err(TryRecvError::Disconnected))
}

fn targets(upstreams: &[Checked<'_>]) -> Vec<Target> {
    let now = Instant::now();
    let mut out = Vec::new();
    for (u, up) in upstreams.iter().enumerate() {
        let Some(check) = &up.lb.health_check else {
            continue;
        };
        for (i, addr) in up.servers.iter().enumerate() {
            let host = check
                .host
                .clone()
                .or_else(|| up.lb.addresses.get(i).cloned())
                .unwrap_or_default();
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringway-health\r\nConnection: close\r\n\r\n",
                check.path
            )
            .into_bytes();
            out.push(Target {
                upstream: u,
                servers: up.servers.len(),
                server: i,
                name: format!(
                    "{}/{}",
                    up.name,
                    up.lb.addresses.get(i).map_or("?", String::as_str)
                ),
                addr: *addr,
                request,
                tls: up.tls,
                h2_tls: up
                    .h2_tls
                    .map(|t| (t.clone(), up.hosts.get(i).cloned().unwrap_or_default())),
                check: check.clone(),
                healthy: true,
                streak: 0,
                due: now,
            });
        }
    }
    out
}

fn run(mut targets: Vec<Target>, txs: Vec<Sender<HealthEvent>>, stop: Receiver<()>) {
    // gRPC checks speak HTTP/2 through the `h2` codec, on a small runtime of this thread's.
    let mut rt = if targets.iter().any(|t| t.check.grpc.is_some()) {
        match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                log::error!("health checks: no runtime for gRPC checks: {e}");
                None
            }
        }
    } else {
        None
    };
    loop {
        let Some(next) = targets.iter().map(|t| t.due).min() else {
            return;
        };
        let wait = next.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            // Nothing is ever sent on `stop`: this is a sleep that ends early on a drop.
            if let Err(mpsc::RecvTimeoutError::Disconnected) = stop.recv_timeout(wait) {
                return;
            }
        }
        let now = Instant::now();
        for t in targets.iter_mut().filter(|t| t.due <= now) {
            let result = match (&t.check.grpc, &mut rt) {
                (Some(service), Some(rt)) => rt.block_on(grpc_probe(t, service)),
                (Some(_), None) => Err("no runtime for gRPC checks".into()),
                (None, _) => probe(t),
            };
            if stopped(&stop) {
                return;
            }
            t.due = Instant::now() + t.check.interval.0;
            let Some(healthy) = t.record(&result) else {
                continue;
            };
            match (&result, healthy) {
                (_, true) => log::info!("upstream server {} is healthy again", t.name),
                (Err(why), false) => log::warn!("upstream server {} is unhealthy: {why}", t.name),
                (Ok(()), false) => {}
            }
            let ev = HealthEvent {
                upstream: t.upstream,
                servers: t.servers,
                server: t.server,
                healthy,
            };
            // Workers that are gone (shutdown) no longer listen; stop when none does.
            let delivered = txs.iter().filter(|tx| tx.send(ev).is_ok()).count();
            if delivered == 0 {
                return;
            }
        }
    }
}

impl Target {
    /// Counts one probe; Some(new state) on a transition.
    fn record(&mut self, result: &Result<(), String>) -> Option<bool> {
        let success = result.is_ok();
        if success == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if success {
            self.check.healthy_threshold
        } else {
            self.check.unhealthy_threshold
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.healthy = success;
        Some(success)
    }
}

/// One probe: Ok on a 2xx answer (or, for TLS upstreams, a completed connect).
/// A gRPC health check: `grpc.health.v1.Health/Check` for `service` over HTTP/2 (h2c, or
/// TLS with ALPN h2 for a TLS upstream), within the timeout; SERVING is a success.
async fn grpc_probe(t: &Target, service: &str) -> Result<(), String> {
    match monoio::time::timeout(t.check.timeout.0, grpc_check(t, service)).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

async fn grpc_check(t: &Target, service: &str) -> Result<(), String> {
    match &t.h2_tls {
        Some((tls, host)) => {
            let (io, h2) = tls
                .connect_h2(t.addr, host)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            if !h2 {
                return Err("the server did not pick h2".into());
            }
            grpc_exchange(io, t, service).await
        }
        None => {
            let tcp = monoio::net::TcpStream::connect(t.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let io = tcp.try_into_poll_io().map_err(|(e, _)| e.to_string())?;
            grpc_exchange(io, t, service).await
        }
    }
}

/// The check's one call on a connection `io`.
async fn grpc_exchange<T>(io: T, t: &Target, service: &str) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use bytes::Bytes;
    use std::future::poll_fn;
    let (mut send, driver) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("http/2 handshake: {e}"))?;
    let scheme = if t.h2_tls.is_some() { "https" } else { "http" };
    let host = t.check.host.as_deref().unwrap_or("health");
    let request = http::Request::post(format!("{scheme}://{host}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "ringway-health")
        .body(())
        .map_err(|e| e.to_string())?;
    // HealthCheckRequest { string service = 1; }, in a gRPC message.
    let mut body = vec![0u8; 5];
    if !service.is_empty() {
        body.push(0x0a);
        put_varint(&mut body, service.len() as u64);
        body.extend_from_slice(service.as_bytes());
    }
    let len = (body.len() - 5) as u32;
    body[1..5].copy_from_slice(&len.to_be_bytes());
    let exchange = async {
        let (response, mut stream) = send
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        stream
            .send_data(Bytes::from(body), true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("HTTP status {}", response.status()));
        }
        let head_status = response.headers().get("grpc-status").cloned();
        let mut recv = response.into_body();
        let mut reply = Vec::new();
        while let Some(data) = poll_fn(|cx| recv.poll_data(cx)).await {
            let data = data.map_err(|e| e.to_string())?;
            let _ = recv.flow_control().release_capacity(data.len());
            if reply.len() < 1024 {
                reply.extend_from_slice(&data);
            }
        }
        let trailers = poll_fn(|cx| recv.poll_trailers(cx))
            .await
            .map_err(|e| e.to_string())?;
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status").cloned())
            .or(head_status);
        match status.as_ref().map(|v| v.as_bytes()) {
            Some(b"0") => {}
            Some(code) => return Err(format!("grpc-status {}", String::from_utf8_lossy(code))),
            None => return Err("no grpc-status".into()),
        }
        // HealthCheckResponse { ServingStatus status = 1; } after the 5-byte prefix:
        // SERVING is 1.
        match reply.get(5..) {
            Some([0x08, 1, ..]) => Ok(()),
            _ => Err("not SERVING".into()),
        }
    };
    let mut driver = std::pin::pin!(driver);
    let mut exchange = std::pin::pin!(exchange);
    monoio::select! {
        r = &mut exchange => r,
        r = &mut driver => Err(format!("connection ended: {r:?}")),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn probe(t: &Target) -> Result<(), String> {
    let timeout = t.check.timeout.0;
    let deadline = Instant::now() + timeout;
    let mut s =
        TcpStream::connect_timeout(&t.addr, timeout).map_err(|e| format!("connect: {e}"))?;
    if t.tls {
        return Ok(());
    }
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    s.write_all(&t.request).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 256];
    let mut got = 0;
    // "HTTP/1.1 200" is all that matters.
    while got < 12 {
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("read: {e}")),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let line = &buf[..got];
    let status = line
        .strip_prefix(b"HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<u16>().ok());
    match status {
        Some(s) if (200..300).contains(&s) => Ok(()),
        Some(s) => Err(format!("status {s}")),
        None => Err("no HTTP answer".into()),
    }
}

/// A worker's task: applies the checker's messages to its `State` until `stop` resolves,
/// the checker is gone, or `current` turns false (the worker switched config: these events
/// name servers of the old one).
pub async fn follow<F: std::future::Future>(
    rx: Receiver<HealthEvent>,
    state: Rc<State>,
    stop: F,
    current: impl Fn() -> bool,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        loop {
            if !current() {
                return;
            }
            match rx.try_recv() {
                Ok(ev) => state.set_healthy(ev.upstream, ev.servers, ev.server, ev.healthy),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        monoio::select! {
            _ = monoio::time::sleep(POLL) => {},
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(healthy_threshold: u32, unhealthy_threshold: u32) -> Target {
        Target {
            upstream: 0,
            servers: 1,
            server: 0,
            name: "t".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            request: Vec::new(),
            tls: false,
            h2_tls: None,
            check: HealthCheckConfig {
                healthy_threshold,
                unhealthy_threshold,
                ..HealthCheckConfig::default()
            },
            healthy: true,
            streak: 0,
            due: Instant::now(),
        }
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        let mut t = target(2, 3);
        let fail = || Err("x".to_string());
        assert_eq!(t.record(&fail()), None);
        assert_eq!(t.record(&fail()), None);
        assert_eq!(t.record(&Ok(())), None, "a success breaks the streak");
        assert_eq!(t.record(&fail()), None);
        assert_eq!(t.record(&fail()), None);
        assert_eq!(t.record(&fail()), Some(false));
        assert_eq!(t.record(&Ok(())), None);
        assert_eq!(t.record(&Ok(())), Some(true));
    }
}
