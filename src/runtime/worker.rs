//! One worker: a pinned thread running a monoio runtime, its accept loops, connection
//! tasks, pool sweeper, and drain. Sends one line to the main thread once it is serving.

use std::cell::Cell;
use std::future::Future;
use std::net::TcpListener as StdListener;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use monoio::net::{TcpListener, TcpStream};

use super::control::Control;
use super::panic_guard::CatchPanic;
use super::proxy_in::ProxyIn;
use crate::compiled::Compiled;
use crate::config::IoDriver;
use crate::front::http1::serve;
use crate::io::TcpConnector;
use crate::notify::{LocalNotify, Shutdown};
use crate::pipeline::{ConnMeta, Shared};
use crate::tls::ListenerKind;

/// Which monoio driver a worker ended up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Legacy,
}

/// This worker's share of the per-process limits (split evenly, at least 1 each), and the
/// process's overload flag.
#[derive(Clone, Debug)]
pub struct Share {
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub overload: Arc<AtomicBool>,
}

impl Share {
    pub fn of(
        id: usize,
        workers: usize,
        max_connections: usize,
        max_in_flight: usize,
        overload: Arc<AtomicBool>,
    ) -> Share {
        let split = |total: usize| (total / workers + usize::from(id < total % workers)).max(1);
        Share {
            max_connections: split(max_connections),
            max_in_flight: split(max_in_flight),
            overload,
        }
    }
}

type Ready = Sender<Result<String, (usize, String)>>;
/// This worker's end of the health checker's channel, if anything is checked.
type Health = Option<std::sync::mpsc::Receiver<crate::upstream::health::HealthEvent>>;

#[allow(clippy::too_many_arguments)]
pub fn run(
    id: usize,
    compiled: Compiled,
    socks: Vec<(StdListener, ListenerKind, Option<Arc<ProxyIn>>)>,
    control: Receiver<Control>,
    share: Share,
    driver: IoDriver,
    core: Option<core_affinity::CoreId>,
    shutdown: Shutdown,
    ready: Ready,
    health: Health,
    access_log: Option<crate::accesslog::Sink>,
) {
    crate::sys::block_handled_signals();
    let pinned = core.map(|c| (c.id, core_affinity::set_for_current(c)));
    let cpu = match pinned {
        Some((c, true)) => format!("pinned to cpu {c}"),
        Some((c, false)) => format!("not pinned (cpu {c} refused)"),
        None => "not pinned".to_string(),
    };
    let compiled = Rc::new(compiled);
    let uring = match driver {
        IoDriver::Legacy => None,
        IoDriver::IoUring | IoDriver::Auto => Some(build_uring()),
    };
    match uring {
        Some(Ok(mut rt)) => {
            let msg = format!("worker {id}: io_uring driver, {cpu}");
            rt.block_on(worker_main(
                id, compiled, socks, control, share, shutdown, ready, msg, health, access_log,
            ));
        }
        Some(Err(e)) if driver == IoDriver::IoUring => {
            let _ = ready.send(Err((id, format!("io_uring unavailable: {e}"))));
        }
        other => {
            let why = match other {
                Some(Err(e)) => format!(" (io_uring unavailable: {e})"),
                _ => String::new(),
            };
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => {
                    let msg = format!("worker {id}: legacy driver{why}, {cpu}");
                    rt.block_on(worker_main(
                        id, compiled, socks, control, share, shutdown, ready, msg, health,
                        access_log,
                    ));
                }
                Err(e) => {
                    let _ = ready.send(Err((id, format!("legacy driver: {e}"))));
                }
            }
        }
    }
}

pub type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// io_uring with DEFER_TASKRUN + SINGLE_ISSUER (measured faster here; see BENCH.md), or
/// plain io_uring on kernels that refuse those flags.
pub fn build_uring() -> std::io::Result<UringRuntime> {
    if !monoio::utils::detect_uring() {
        return Err(std::io::Error::other("the kernel refuses io_uring"));
    }
    let mut urb = io_uring::IoUring::builder();
    urb.setup_single_issuer().setup_defer_taskrun();
    let tuned = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(urb)
        .enable_timer()
        .build();
    match tuned {
        Ok(rt) => Ok(rt),
        Err(_) => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(1024)
            .enable_timer()
            .build(),
    }
}

/// Connection bookkeeping for drain and max_connections.
struct Conns {
    open: Cell<usize>,
    closed: LocalNotify,
}

#[allow(clippy::too_many_arguments)]
async fn worker_main(
    id: usize,
    compiled: Rc<Compiled>,
    socks: Vec<(StdListener, ListenerKind, Option<Arc<ProxyIn>>)>,
    control: Receiver<Control>,
    share: Share,
    shutdown: Shutdown,
    ready: Ready,
    started: String,
    health: Health,
    access_log: Option<crate::accesslog::Sink>,
) {
    let drain_timeout = compiled.timeouts.drain;
    let salt = id_salt(id);
    let mut shared = Shared::new(compiled, TcpConnector, share.max_in_flight, id, salt)
        .with_overload(share.overload.clone());
    if let Some(sink) = access_log {
        shared = shared.with_access_log(sink);
    }
    let shared = Rc::new(shared);
    let conns = Rc::new(Conns {
        open: Cell::new(0),
        closed: LocalNotify::default(),
    });
    for (sock, kind, proxy) in socks {
        match TcpListener::from_std(sock) {
            Ok(l) => {
                monoio::spawn(accept_loop(
                    l,
                    (kind, proxy),
                    shared.clone(),
                    conns.clone(),
                    share.max_connections,
                ));
            }
            Err(e) => {
                let _ = ready.send(Err((id, format!("listener: {e}"))));
                return;
            }
        }
    }
    monoio::spawn(sweep_pool(shared.clone()));
    shared.follow_store();
    let epoch = Rc::new(Cell::new(0));
    if let Some(rx) = health {
        follow_health(&shared, &epoch, rx);
    }
    monoio::spawn(obey(id, shared.clone(), control, epoch));
    let _ = ready.send(Ok(started));
    shutdown.await;
    shared.start_drain();
    let deadline = Instant::now() + drain_timeout;
    while conns.open.get() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "worker {id}: drain timeout, closing {} connections",
                conns.open.get()
            );
            break;
        }
        let _ = monoio::time::timeout(left, conns.closed.notified()).await;
    }
    shared.ship_access_log();
}

async fn accept_loop(
    listener: TcpListener,
    (kind, proxy): (ListenerKind, Option<Arc<ProxyIn>>),
    shared: Rc<Shared<TcpConnector>>,
    conns: Rc<Conns>,
    max_connections: usize,
) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = shared.drain_notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                log::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if conns.open.get() >= max_connections || shared.is_overloaded() {
            // Over a limit: close at once rather than leave it accepted but silent.
            if shared.is_overloaded() {
                crate::metrics::bump(&shared.metrics.shed);
            }
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        conns.open.set(conns.open.get() + 1);
        crate::metrics::bump(&shared.metrics.accepted);
        shared.metrics.active.set(conns.open.get() as u64);
        let shared = shared.clone();
        let conns = conns.clone();
        let kind = kind.clone();
        let proxy = proxy.clone();
        let shared_after = shared.clone();
        monoio::spawn(async move {
            // Two steps, each apart from the other: readying the connection (the PROXY
            // protocol header, handshake, sniffing), then serving it in its protocol.
            let ready = async {
                let mut stream = stream;
                let cfg = shared.config();
                let (peer, local) = match proxy {
                    Some(p) => {
                        let deadline = Instant::now() + cfg.timeouts.header;
                        p.read(&mut stream, peer, deadline).await?
                    }
                    None => (peer, None),
                };
                // (A syscall, made only when some upstream needs it.)
                let local = local.or_else(|| {
                    cfg.sends_proxy_protocol
                        .then(|| stream.local_addr().ok())
                        .flatten()
                });
                drop(cfg);
                serve_as(kind, shared, stream, peer, local).await
            };
            let served = match CatchPanic::new(ready).await {
                Ok(Some(serving)) => CatchPanic::pinned(serving).await,
                Ok(None) => Ok(()),
                Err(()) => Err(()),
            };
            if served.is_err() {
                log::error!("connection from {peer}: task panicked; connection dropped");
            }
            conns.open.set(conns.open.get().saturating_sub(1));
            shared_after.metrics.active.set(conns.open.get() as u64);
            conns.closed.notify_all();
        });
    }
}

/// Follows a health checker's channel until the drain, or until `epoch` moves on (a reload
/// was applied: that checker's server indices are the old config's).
fn follow_health(
    shared: &Rc<Shared<TcpConnector>>,
    epoch: &Rc<Cell<u64>>,
    rx: std::sync::mpsc::Receiver<crate::upstream::health::HealthEvent>,
) {
    let stop = shared.clone();
    let lb = shared.lb.clone();
    let (epoch, mine) = (epoch.clone(), epoch.get());
    monoio::spawn(async move {
        let current = move || epoch.get() == mine;
        crate::upstream::health::follow(rx, lb, stop.drain_notified(), current).await
    });
}

/// Drains this worker's control channel every `control::POLL`: switches to a reloaded
/// config (compiled here, on this core; requests in flight finish on the old one, and each
/// keep-alive connection takes the new one at its next request; health state starts over,
/// every server healthy, and the old checker's events are ignored), follows the new config's
/// health checker, answers metrics snapshots, and starts or stops shedding load.
async fn obey(
    id: usize,
    shared: Rc<Shared<TcpConnector>>,
    control: Receiver<Control>,
    epoch: Rc<Cell<u64>>,
) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(super::control::POLL) => {},
            _ = shared.drain_notified() => return,
        }
        loop {
            match control.try_recv() {
                Ok(Control::Reload {
                    cfg,
                    file,
                    resolved,
                    done,
                }) => {
                    let result = match Compiled::build_resolved(&cfg, &file, Some(&resolved)) {
                        Ok(c) => {
                            shared.set_config(Rc::new(c));
                            shared.follow_store();
                            epoch.set(epoch.get() + 1);
                            shared.lb.reset_health();
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = &result {
                        log::error!("worker {id}: reload refused: {e}");
                    }
                    let _ = done.send(result);
                }
                Ok(Control::Health(rx)) => follow_health(&shared, &epoch, rx),
                Ok(Control::Snapshot(reply)) => {
                    let _ = reply.send(snapshot(&shared));
                }
                Ok(Control::Shed) => shared.shed_now(),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// This worker's metrics, the load balancer's counters and server health included.
fn snapshot(shared: &Shared<TcpConnector>) -> crate::metrics::Snapshot {
    let cfg = shared.config();
    let mut s = shared
        .metrics
        .snapshot(&|r, proxied| cfg.metric_names(r, proxied));
    let c = shared.lb.counters.snapshot();
    for (name, v) in [
        ("ringway_upstream_retries_total", c.retries),
        (
            "ringway_upstream_retry_budget_exhausted_total",
            c.retry_budget_exhausted,
        ),
        (
            "ringway_upstream_connect_failovers_total",
            c.connect_failovers,
        ),
        ("ringway_upstream_ejections_total", c.ejections),
        (
            "ringway_upstream_health_transitions_total",
            c.health_transitions,
        ),
        (
            "ringway_upstream_breaker_rejections_total",
            c.breaker_rejections,
        ),
        (
            "ringway_upstream_no_healthy_server_total",
            c.no_healthy_server,
        ),
    ] {
        s.gauges.push((name.to_string(), String::new(), v));
    }
    if let Some(up) = shared.store_up() {
        let st = &shared.store_stats;
        for (name, v) in [
            ("ringway_redis_up", u64::from(up)),
            ("ringway_redis_errors_total", st.errors.get()),
            ("ringway_redis_leases_total", st.leases.get()),
            ("ringway_rate_limit_fallbacks_total", st.fallbacks.get()),
            ("ringway_rate_limit_lease_waits_total", st.waits.get()),
        ] {
            s.gauges.push((name.to_string(), String::new(), v));
        }
        s.redis = Some(st.rtt.borrow().clone());
    }
    for (u, i, usable) in shared.lb.health_view() {
        let (Some(up), Some(addr)) = (
            cfg.upstreams.get(u),
            cfg.upstreams.get(u).and_then(|up| up.servers.get(i)),
        ) else {
            continue;
        };
        let labels = format!("upstream=\"{}\",server=\"{addr}\"", up.name);
        // Summed over workers: the number of workers that consider the server usable.
        s.gauges.push((
            "ringway_upstream_server_usable".to_string(),
            labels,
            u64::from(usable),
        ));
    }
    s
}

/// A connection's serving future, in the protocol it speaks.
type Serving = Pin<Box<dyn Future<Output = ()>>>;

/// Readies one accepted connection the way its listener says: plain (HTTP/1.1, or HTTP/2
/// with prior knowledge when it opens with the preface), TLS after a handshake (HTTP/2 when
/// ALPN chose `h2`), or redirecting to HTTPS; and returns the future that serves it (None:
/// nothing to serve). That future is boxed on its own, so a connection's long life keeps
/// only its own protocol's state, not the handshake's, the sniffing's or the other
/// protocol's.
async fn serve_as(
    kind: ListenerKind,
    shared: Rc<Shared<TcpConnector>>,
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<Serving> {
    let accepted = Instant::now();
    let plain = ConnMeta {
        local,
        ..ConnMeta::default()
    };
    match kind {
        ListenerKind::Plain { h2c: false } => {
            Some(Box::pin(serve(shared, stream, peer, accepted, plain)))
        }
        ListenerKind::Plain { h2c: true } => {
            serve_plain(shared, stream, peer, accepted, plain).await
        }
        ListenerKind::H2c => {
            let io = stream.try_into_poll_io().ok()?;
            Some(Box::pin(crate::front::http2::serve(
                shared, io, peer, accepted, plain,
            )))
        }
        ListenerKind::RedirectHttps { port, h2c } => {
            let meta = ConnMeta {
                redirect_https: Some(port),
                ..plain
            };
            if h2c {
                serve_plain(shared, stream, peer, accepted, meta).await
            } else {
                Some(Box::pin(serve(shared, stream, peer, accepted, meta)))
            }
        }
        ListenerKind::Tls(tls) => serve_tls(tls, shared, stream, peer, (accepted, local)).await,
    }
}

/// A TLS connection: the handshake, then HTTP/2 if ALPN chose `h2`, else HTTP/1.1.
async fn serve_tls(
    tls: std::sync::Arc<crate::tls::TlsListener>,
    shared: Rc<Shared<TcpConnector>>,
    stream: TcpStream,
    peer: SocketAddr,
    (accepted, local): (Instant, Option<SocketAddr>),
) -> Option<Serving> {
    let done = match crate::tls::accept_raw(stream, &tls, peer).await {
        Ok(s) => s,
        Err(e) => {
            log::debug!("client {peer}: {e}");
            return None;
        }
    };
    let cert = done
        .info
        .client_identity
        .as_ref()
        .and_then(|name| shared.config().policy.cert_identity(name));
    let meta = ConnMeta {
        tls: true,
        cert,
        redirect_https: None,
        local,
    };
    if done.is_h2() {
        // (A TLS listener with http1 = false offers only h2: a client that chose no
        // protocol is served HTTP/1.1 all the same, as it cannot speak HTTP/2.)
        let io = done.stream.try_into_poll_io().ok()?;
        let io = crate::tls::poll::PollTls::new(io, done.session);
        Some(Box::pin(crate::front::http2::serve(
            shared, io, peer, accepted, meta,
        )))
    } else {
        let (stream, _) = done.into_http1();
        Some(Box::pin(serve(shared, stream, peer, accepted, meta)))
    }
}

/// A plain connection: HTTP/2 with prior knowledge if its first bytes are the preface,
/// else HTTP/1.1 (those bytes are its first request's).
async fn serve_plain(
    shared: Rc<Shared<TcpConnector>>,
    mut stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    meta: ConnMeta,
) -> Option<Serving> {
    let deadline = accepted + shared.config().timeouts.header;
    let (first, h2) = sniff(&shared, &mut stream, deadline).await?;
    if h2 {
        let io = stream.try_into_poll_io().ok()?;
        // (`Prefixed` lets go of the read buffer once the codec has read it out.)
        let io = crate::front::http2::Prefixed::new(first.freeze(), io);
        Some(Box::pin(crate::front::http2::serve(
            shared, io, peer, accepted, meta,
        )))
    } else {
        Some(Box::pin(crate::front::http1::serve_read(
            shared, stream, first, peer, accepted, meta,
        )))
    }
}

/// Reads a plain connection's first bytes (the read HTTP/1.1 would do anyway) until they
/// either are the HTTP/2 preface or cannot be; None when the connection closed, stayed
/// silent until `deadline`, or the process sheds load.
async fn sniff(
    shared: &Shared<TcpConnector>,
    stream: &mut TcpStream,
    deadline: Instant,
) -> Option<(bytes::BytesMut, bool)> {
    use crate::front::http2::PREFACE;
    let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
    loop {
        if shared.is_overloaded() {
            crate::metrics::bump(&shared.metrics.shed);
            return None;
        }
        let had = !buf.is_empty();
        let read = monoio::select! {
            r = crate::io::read_some_until(stream, buf, 16 * 1024, deadline) => r,
            _ = shared.shed.notified() => {
                crate::metrics::bump(&shared.metrics.shed);
                return None;
            }
        };
        match read {
            Ok((0, _)) => return None,
            Ok((_, b)) => buf = b,
            // Bytes that are no preface: HTTP/1.1 answers them (408 for a slow head).
            Err(_) if had => return Some((bytes::BytesMut::new(), false)),
            Err(_) => return None,
        }
        let n = buf.len().min(PREFACE.len());
        if buf[..n] != PREFACE[..n] {
            return Some((buf, false));
        }
        if n == PREFACE.len() {
            return Some((buf, true));
        }
    }
}

/// Once a second: ships the buffered access log lines to the writer thread, closes idle
/// pooled upstream connections past their keep-alive timeout, and hands memory back to the OS after connections went idle and freed their buffers
/// (the allocator would otherwise keep those pages resident while the worker sleeps).
async fn sweep_pool(shared: Rc<Shared<TcpConnector>>) {
    loop {
        let every = Duration::from_secs(1);
        monoio::select! {
            _ = monoio::time::sleep(every) => {},
            _ = shared.drain_notified() => return,
        }
        shared.ship_access_log();
        shared.release_idle_memory();
        shared.sweep_leases();
        if shared.pool.idle_count() + shared.tls_pool.idle_count() == 0 {
            continue;
        }
        let cfg = shared.config();
        let timeout = |key| {
            cfg.upstreams
                .iter()
                .find(|u| u.pool_keys.contains(&key))
                .map(|u| u.keepalive_timeout)
                .unwrap_or(Duration::ZERO)
        };
        shared.pool.sweep(timeout);
        shared.tls_pool.sweep(timeout);
    }
}

fn id_salt(id: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ ((id as u64) << 56)
}
