//! Worker threads: one per configured core, pinned, each running its own monoio runtime
//! (io_uring with DEFER_TASKRUN + SINGLE_ISSUER; the legacy epoll driver when io_uring is
//! unavailable or chosen), its own SO_REUSEPORT listeners, its own `Compiled` and its own
//! upstream pool. The main thread binds sockets, starts workers, and turns SIGTERM/SIGINT
//! into a drain. Nothing here is on the request path.
//!
//! Where it sits: the top layer (below `main.rs` only); it picks a front end for each
//! accepted connection and drives everything else from outside the request path.

mod admin;
mod bind;
pub mod control;
mod overload;
mod panic_guard;
pub mod proxy_in;
mod reload;
mod upgrade;
mod worker;

use std::sync::{mpsc, Arc};
use std::thread;

use thiserror::Error;

use crate::compiled::Compiled;
use crate::config::{GatewayConfig, IoDriver};
use crate::notify::Shutdown;

pub use bind::bind_all;
pub use worker::{build_uring, DriverKind, UringRuntime};

#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot steer clients to workers on {addr}: {source}")]
    Steer {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("RINGWAY_IO_DRIVER={0:?} is not one of auto, io_uring, legacy")]
    BadDriverEnv(String),
    #[error("worker {id} failed to start: {reason}")]
    Worker { id: usize, reason: String },
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
    #[error("upgrade: {0}")]
    Upgrade(String),
    #[error("health checker: {0}")]
    Health(std::io::Error),
    #[error("access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
}

/// The I/O driver to use: the `RINGWAY_IO_DRIVER` env var overrides the config.
pub fn driver_choice(configured: IoDriver) -> Result<IoDriver, RunError> {
    match std::env::var("RINGWAY_IO_DRIVER") {
        Err(_) => Ok(configured),
        Ok(v) => match v.as_str() {
            "" | "auto" => Ok(IoDriver::Auto),
            "io_uring" | "iouring" | "uring" => Ok(IoDriver::IoUring),
            "legacy" | "epoll" => Ok(IoDriver::Legacy),
            _ => Err(RunError::BadDriverEnv(v)),
        },
    }
}

/// How `run` starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Take the listening sockets of the process serving `server.upgrade_socket` instead
    /// of binding them (a binary upgrade).
    pub upgrade: bool,
}

/// Serves `cfg` until SIGTERM/SIGINT, then drains and returns.
pub fn run(cfg: &GatewayConfig, file: &str) -> Result<(), RunError> {
    run_with(cfg, file, Options::default())
}

/// `run`, possibly taking over a running process's listeners (see `upgrade`): binds (or
/// takes over) the listeners, starts the health checker, the access log and the workers,
/// then the services beside them (admin, overload manager, reloader, upgrade socket), and
/// serves until the signals say stop.
pub fn run_with(cfg: &GatewayConfig, file: &str, opts: Options) -> Result<(), RunError> {
    // Handlers first: a signal that arrives as soon as "listening on" is logged must not
    // meet the default action (SIGHUP would end the process).
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .map_err(RunError::Signals)?;
    let first = Compiled::build(cfg, file)?;
    let driver = driver_choice(first.io_driver)?;
    let kinds = crate::tls::build(cfg, file)?;
    let proxies = proxy_in::for_listeners(cfg);
    let sockets = listen(cfg, &first, &proxies, opts)?;
    let (checker, health) =
        crate::upstream::health::start(&first.health_targets(), first.workers.max(1))
            .map_err(RunError::Health)?;
    let access_log = match &cfg.access_log {
        Some(a) => Some(
            crate::accesslog::AccessLog::start(a, first.workers.max(1)).map_err(|source| {
                RunError::AccessLog {
                    path: a.path.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let overload = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Names resolved once here: the workers compile with these addresses.
    let resolved = Arc::new(crate::compiled::resolve_names(cfg));
    let start = Start {
        cfg,
        file,
        max_connections: first.max_connections,
        max_in_flight: first.max_in_flight,
        pin_workers: first.pin_workers,
        driver,
        kinds: &kinds,
        proxies: &proxies,
        resolved: &resolved,
        overload: &overload,
        access_log: access_log.as_ref(),
    };
    // Each worker compiles its own copy on its own thread: the policy's caches and
    // identities are per core (`Rc`), never shared.
    drop(first);
    let pool = start_workers(&start, sockets.listeners, health)?;
    announce(&sockets.addrs, &kinds, pool.handles.len(), driver);
    let state = Arc::new(std::sync::Mutex::new(admin::State {
        process: crate::metrics::Process {
            workers: pool.handles.len(),
            config_version: 1,
            ..Default::default()
        },
        file: file.to_string(),
        ..Default::default()
    }));
    reload::record(&state, file);
    let reload = start_services(&start, &pool, &state, checker, overload.clone())?;
    if let (Some(stream), Some(path)) = (sockets.handover, &cfg.server.upgrade_socket) {
        upgrade::confirm(stream, path)?;
    }
    if let Some(path) = cfg.server.upgrade_socket.clone() {
        let (drain, st) = (pool.shutdowns.clone(), state.clone());
        let workers = pool.handles.len();
        upgrade::serve(
            path,
            sockets.spare,
            workers,
            sockets.addrs.clone(),
            move || {
                if let Ok(mut s) = st.lock() {
                    s.draining = true;
                }
                drain.iter().for_each(Shutdown::fire);
            },
        )?;
    }
    let reopen = access_log
        .as_ref()
        .map(crate::accesslog::AccessLog::reopener);
    let drain_delay = cfg.timeouts.drain_delay.0;
    watch_signals(signals, pool.shutdowns, reload, state, reopen, drain_delay)?;
    for h in pool.handles {
        let _ = h.join();
    }
    if let Some(a) = access_log {
        a.close();
    }
    log::info!("stopped");
    Ok(())
}

/// What starting the workers and the services beside them takes.
struct Start<'a> {
    cfg: &'a GatewayConfig,
    file: &'a str,
    /// Process-wide limits, split between the workers.
    max_connections: usize,
    max_in_flight: usize,
    pin_workers: bool,
    driver: IoDriver,
    kinds: &'a [crate::tls::ListenerKind],
    /// Each listener's PROXY protocol settings, in the same order.
    proxies: &'a [Option<Arc<proxy_in::ProxyIn>>],
    resolved: &'a Arc<crate::compiled::Resolved>,
    overload: &'a Arc<std::sync::atomic::AtomicBool>,
    access_log: Option<&'a crate::accesslog::AccessLog>,
}

/// The listening sockets, one set per worker.
struct Sockets {
    listeners: Vec<Vec<std::net::TcpListener>>,
    /// The predecessor's connection, to confirm a binary upgrade once serving.
    handover: Option<std::os::unix::net::UnixStream>,
    /// Copies of every listener kept for a successor (worker-major, `listen` order).
    spare: Vec<std::net::TcpListener>,
    /// The bound addresses, in `listen` order.
    addrs: Vec<std::net::SocketAddr>,
}

/// Binds every listen address once per worker, or takes the sockets over from the process
/// serving `server.upgrade_socket` (`--upgrade`).
/// `proxies`: each listen address's PROXY protocol settings (`proxy_in::for_listeners`).
fn listen(
    cfg: &GatewayConfig,
    first: &Compiled,
    proxies: &[Option<Arc<proxy_in::ProxyIn>>],
    opts: Options,
) -> Result<Sockets, RunError> {
    let workers = first.workers.max(1);
    let steer = workers > 1
        && match cfg.policy.steer_by_client.as_str() {
            "on" => true,
            "auto" => first.policy.has_rate_limits(),
            _ => false,
        };
    let upgrade_path = &cfg.server.upgrade_socket;
    let (listeners, handover) = match (upgrade_path, opts.upgrade) {
        (Some(path), true) => {
            let (ls, stream) = upgrade::take_over(path, workers, &first.listen)?;
            log::info!(
                "upgrade: took over {} listening sockets from {path}",
                workers * first.listen.len()
            );
            (ls, Some(stream))
        }
        (None, true) => {
            return Err(RunError::Upgrade(
                "--upgrade needs server.upgrade_socket in the config".into(),
            ))
        }
        _ => {
            // `auto` leaves PROXY protocol listeners alone: their peer is the balancer.
            let auto = cfg.policy.steer_by_client == "auto";
            let steered: Vec<bool> = proxies
                .iter()
                .map(|p| steer && !(auto && p.is_some()))
                .collect();
            let ls = match bind::bind_all(&first.listen, workers, first.backlog, &steered) {
                Err(e @ RunError::Steer { .. }) => {
                    log::warn!("{e}; per-client rate limits are then per worker");
                    bind::bind_all(&first.listen, workers, first.backlog, &[])?
                }
                other => other?,
            };
            (ls, None)
        }
    };
    let mut spare = Vec::new();
    if upgrade_path.is_some() {
        for l in listeners.iter().flatten() {
            spare.push(l.try_clone().map_err(|source| RunError::Bind {
                addr: l.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
                source,
            })?);
        }
    }
    if steer {
        log::info!("connections are steered to workers by client address");
    }
    let addrs = listeners
        .first()
        .map(|ls| ls.iter().filter_map(|l| l.local_addr().ok()).collect())
        .unwrap_or_default();
    Ok(Sockets {
        listeners,
        handover,
        spare,
        addrs,
    })
}

/// The running workers.
struct Pool {
    handles: Vec<thread::JoinHandle<()>>,
    shutdowns: Vec<Shutdown>,
    controls: control::Workers,
}

/// Starts one pinned worker thread per socket set, each compiling its own config, and
/// waits until every one is accepting (or one failed: then all stop).
fn start_workers(
    s: &Start<'_>,
    listeners: Vec<Vec<std::net::TcpListener>>,
    mut health: crate::upstream::health::Receivers,
) -> Result<Pool, RunError> {
    let workers = listeners.len();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let shared_cfg = Arc::new(s.cfg.clone());
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut pool = Pool {
        handles: Vec::new(),
        shutdowns: Vec::new(),
        controls: control::Workers::default(),
    };
    for (id, socks) in listeners.into_iter().enumerate() {
        let control = pool.controls.add();
        let socks: Vec<_> = socks
            .into_iter()
            .zip(s.kinds.iter().cloned())
            .zip(s.proxies.iter().cloned())
            .map(|((sock, kind), proxy)| (sock, kind, proxy))
            .collect();
        let share = worker::Share::of(
            id,
            workers,
            s.max_connections,
            s.max_in_flight,
            s.overload.clone(),
        );
        let core = (s.pin_workers && !cores.is_empty()).then(|| cores[id % cores.len()]);
        let shutdown = Shutdown::default();
        pool.shutdowns.push(shutdown.clone());
        let ready = ready_tx.clone();
        let health = health.get_mut(id).and_then(Option::take);
        let (cfg, file, names) = (shared_cfg.clone(), s.file.to_string(), s.resolved.clone());
        let sink = s.access_log.map(crate::accesslog::AccessLog::sink);
        let driver = s.driver;
        let spawned = thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || {
                let own = match Compiled::build_resolved(&cfg, &file, Some(&names)) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready.send(Err((id, e.to_string())));
                        return;
                    }
                };
                drop(cfg);
                worker::run(
                    id, own, socks, control, share, driver, core, shutdown, ready, health, sink,
                )
            });
        match spawned {
            Ok(h) => pool.handles.push(h),
            Err(e) => {
                pool.shutdowns.iter().for_each(Shutdown::fire);
                return Err(RunError::Worker {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }
    drop(ready_tx);
    for _ in 0..pool.handles.len() {
        match ready_rx.recv() {
            Ok(Ok(msg)) => log::info!("{msg}"),
            Ok(Err((id, reason))) => {
                pool.shutdowns.iter().for_each(Shutdown::fire);
                for h in pool.handles {
                    let _ = h.join();
                }
                return Err(RunError::Worker { id, reason });
            }
            Err(_) => break,
        }
    }
    Ok(pool)
}

/// One `listening on` line per address, once every worker is accepting.
fn announce(
    addrs: &[std::net::SocketAddr],
    kinds: &[crate::tls::ListenerKind],
    workers: usize,
    driver: IoDriver,
) {
    for (a, kind) in addrs.iter().zip(kinds) {
        let what = match kind {
            crate::tls::ListenerKind::Plain { h2c: true } => "http, h2c",
            crate::tls::ListenerKind::Plain { h2c: false } => "http",
            crate::tls::ListenerKind::H2c => "h2c only",
            crate::tls::ListenerKind::Tls(_) => "https",
            crate::tls::ListenerKind::RedirectHttps { .. } => "http, redirecting to https",
        };
        log::info!("listening on {a} ({what}; {workers} workers, driver {driver:?})");
    }
}

/// The services beside the workers: the admin listener, the overload manager and the
/// reloader (whose channel SIGHUP feeds).
fn start_services(
    s: &Start<'_>,
    pool: &Pool,
    state: &admin::Shared,
    checker: crate::upstream::health::Checker,
    overload: Arc<std::sync::atomic::AtomicBool>,
) -> Result<mpsc::Sender<()>, RunError> {
    if let Some(a) = &s.cfg.admin {
        let listener = std::net::TcpListener::bind(&a.listen).map_err(|source| RunError::Bind {
            addr: a
                .listen
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into()),
            source,
        })?;
        if let Ok(addr) = listener.local_addr() {
            log::info!("admin listening on {addr}");
        }
        admin::start(listener, pool.controls.clone(), state.clone()).map_err(RunError::Signals)?;
    }
    let ceiling = overload::Ceiling::new(s.cfg.limits.memory_ceiling);
    overload::start(overload::Manager {
        ceiling: ceiling.clone(),
        flag: overload,
        workers: pool.controls.clone(),
        state: state.clone(),
    })
    .map_err(RunError::Signals)?;
    let resolvers = s
        .kinds
        .iter()
        .filter_map(|k| match k {
            crate::tls::ListenerKind::Tls(t) => Some(t.resolver.clone()),
            _ => None,
        })
        .collect();
    reload::start(reload::Reloader {
        ceiling,
        resolvers,
        resolved: s.resolved.clone(),
        file: s.file.to_string(),
        active: Arc::new(s.cfg.clone()),
        workers: pool.controls.clone(),
        state: state.clone(),
        health: checker,
    })
}

/// First SIGTERM/SIGINT makes `/ready` answer 503 at once and starts the drain in every
/// worker after `drain_delay` (serving as usual meanwhile, so that balancers see the 503
/// and stop sending new connections first); a second one exits at once. SIGHUP reloads the
/// config and TLS certificates; SIGUSR1 reopens the access log (logrotate).
fn watch_signals(
    mut signals: signal_hook::iterator::Signals,
    shutdowns: Vec<Shutdown>,
    reload: mpsc::Sender<()>,
    state: admin::Shared,
    reopen: Option<crate::accesslog::Reopen>,
    drain_delay: std::time::Duration,
) -> Result<(), RunError> {
    use signal_hook::consts::{SIGHUP, SIGUSR1};
    thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("signal {sig}: reloading the config and tls certificates");
                    let _ = reload.send(());
                    continue;
                }
                if sig == SIGUSR1 {
                    match &reopen {
                        Some(r) => r.request(),
                        None => log::info!("signal {sig}: no access log to reopen"),
                    }
                    continue;
                }
                seen += 1;
                if let Ok(mut s) = state.lock() {
                    s.draining = true;
                }
                if seen == 1 && !drain_delay.is_zero() {
                    log::info!(
                        "signal {sig}: /ready says draining; the drain starts in {drain_delay:?} \
                         (again to exit now)"
                    );
                    let later = shutdowns.clone();
                    let delayed = thread::Builder::new()
                        .name("ringway-drain-delay".into())
                        .spawn(move || {
                            thread::sleep(drain_delay);
                            log::info!("draining");
                            later.iter().for_each(Shutdown::fire);
                        });
                    if delayed.is_err() {
                        shutdowns.iter().for_each(Shutdown::fire);
                    }
                } else if seen == 1 {
                    log::info!("signal {sig}: draining (again to exit now)");
                    shutdowns.iter().for_each(Shutdown::fire);
                } else {
                    log::warn!("signal {sig}: exiting without waiting for the drain");
                    std::process::exit(1);
                }
            }
        })
        .map_err(RunError::Signals)?;
    Ok(())
}
