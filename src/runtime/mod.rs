//! Worker threads: one per configured core, pinned, each running its own monoio runtime
//! (io_uring with DEFER_TASKRUN + SINGLE_ISSUER; the legacy epoll driver when io_uring is
//! unavailable or chosen), its own SO_REUSEPORT listeners, its own `Compiled` and its own
//! upstream pool. The main thread binds sockets, starts workers, and turns SIGTERM/SIGINT
//! into a drain. Nothing here is on the request path.

mod admin;
mod bind;
pub mod control;
mod overload;
mod panic_guard;
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

/// `run`, possibly taking over a running process's listeners (see `upgrade`).
pub fn run_with(cfg: &GatewayConfig, file: &str, opts: Options) -> Result<(), RunError> {
    // Handlers first: a signal that arrives as soon as "listening on" is logged must not
    // meet the default action (SIGHUP would end the process).
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .map_err(RunError::Signals)?;
    let first = Compiled::build(cfg, file)?;
    let workers = first.workers.max(1);
    let driver = driver_choice(first.io_driver)?;
    let steer = workers > 1
        && match cfg.policy.steer_by_client.as_str() {
            "on" => true,
            "auto" => first.policy.has_rate_limits(),
            _ => false,
        };
    let kinds = crate::tls::build(cfg, file)?;
    let upgrade_path = cfg.server.upgrade_socket.clone();
    let (listeners, handover) = match (&upgrade_path, opts.upgrade) {
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
            let ls = match bind::bind_all(&first.listen, workers, first.backlog, steer) {
                Err(e @ RunError::Steer { .. }) => {
                    log::warn!("{e}; per-client rate limits are then per worker");
                    bind::bind_all(&first.listen, workers, first.backlog, false)?
                }
                other => other?,
            };
            (ls, None)
        }
    };
    // Copies of every listener, kept for a successor (worker-major, `listen` order).
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
    let addrs: Vec<_> = listeners
        .first()
        .map(|ls| ls.iter().filter_map(|l| l.local_addr().ok()).collect())
        .unwrap_or_default();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (pin, max_connections, max_in_flight) = (
        first.pin_workers,
        first.max_connections,
        first.max_in_flight,
    );
    let (checker, mut health) = crate::upstream::health::start(&first.health_targets(), workers)
        .map_err(RunError::Health)?;
    let access_log = match &cfg.access_log {
        Some(a) => Some(
            crate::accesslog::AccessLog::start(a, workers).map_err(|source| {
                RunError::AccessLog {
                    path: a.path.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    // Each worker compiles its own copy on its own thread: the policy's caches and
    // identities are per core (`Rc`), never shared.
    drop(first);
    let shared_cfg = Arc::new(cfg.clone());
    // Names resolved once here: the workers compile with these addresses.
    let resolved = Arc::new(crate::compiled::resolve_names(cfg));

    let (ready_tx, ready_rx) = mpsc::channel();
    let mut shutdowns = Vec::new();
    let mut handles = Vec::new();
    let mut controls = control::Workers::default();
    let overload = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (id, socks) in listeners.into_iter().enumerate() {
        let control = controls.add();
        let socks: Vec<_> = socks.into_iter().zip(kinds.iter().cloned()).collect();
        let share = worker::Share::of(
            id,
            workers,
            max_connections,
            max_in_flight,
            overload.clone(),
        );
        let core = if pin && !cores.is_empty() {
            Some(cores[id % cores.len()])
        } else {
            None
        };
        let shutdown = Shutdown::default();
        shutdowns.push(shutdown.clone());
        let ready = ready_tx.clone();
        let health = health.get_mut(id).and_then(Option::take);
        let (cfg, file, names) = (shared_cfg.clone(), file.to_string(), resolved.clone());
        let sink = access_log.as_ref().map(crate::accesslog::AccessLog::sink);
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
            Ok(h) => handles.push(h),
            Err(e) => {
                shutdowns.iter().for_each(Shutdown::fire);
                return Err(RunError::Worker {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }
    drop(ready_tx);
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(msg)) => log::info!("{msg}"),
            Ok(Err((id, reason))) => {
                shutdowns.iter().for_each(Shutdown::fire);
                for h in handles {
                    let _ = h.join();
                }
                return Err(RunError::Worker { id, reason });
            }
            Err(_) => break,
        }
    }
    for (a, kind) in addrs.iter().zip(&kinds) {
        let what = match kind {
            crate::tls::ListenerKind::Plain => "http",
            crate::tls::ListenerKind::Tls(_) => "https",
            crate::tls::ListenerKind::RedirectHttps(_) => "http, redirecting to https",
        };
        log::info!("listening on {a} ({what}; {workers} workers, driver {driver:?})");
    }
    let resolvers: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            crate::tls::ListenerKind::Tls(t) => Some(t.resolver.clone()),
            _ => None,
        })
        .collect();
    let state = Arc::new(std::sync::Mutex::new(admin::State {
        process: crate::metrics::Process {
            workers,
            config_version: 1,
            ..Default::default()
        },
        file: file.to_string(),
        ..Default::default()
    }));
    reload::record(&state, file);
    if let Some(a) = &cfg.admin {
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
        admin::start(listener, controls.clone(), state.clone()).map_err(RunError::Signals)?;
    }
    let ceiling = overload::Ceiling::new(cfg.limits.memory_ceiling);
    overload::start(overload::Manager {
        ceiling: ceiling.clone(),
        flag: overload,
        workers: controls.clone(),
        state: state.clone(),
    })
    .map_err(RunError::Signals)?;
    let reload = reload::start(reload::Reloader {
        ceiling,
        resolvers,
        resolved,
        file: file.to_string(),
        active: Arc::new(cfg.clone()),
        workers: controls,
        state: state.clone(),
        health: checker,
    })?;
    if let (Some(stream), Some(path)) = (handover, &upgrade_path) {
        upgrade::confirm(stream, path)?;
    }
    if let Some(path) = upgrade_path {
        let (drain, st) = (shutdowns.clone(), state.clone());
        upgrade::serve(path, spare, workers, addrs.clone(), move || {
            if let Ok(mut s) = st.lock() {
                s.draining = true;
            }
            drain.iter().for_each(Shutdown::fire);
        })?;
    }
    let reopen = access_log
        .as_ref()
        .map(crate::accesslog::AccessLog::reopener);
    watch_signals(signals, shutdowns, reload, state, reopen)?;
    for h in handles {
        let _ = h.join();
    }
    if let Some(a) = access_log {
        a.close();
    }
    log::info!("stopped");
    Ok(())
}

/// First SIGTERM/SIGINT starts the drain in every worker; a second one exits at once.
/// SIGHUP reloads the config and TLS certificates; SIGUSR1 reopens the access log
/// (logrotate).
fn watch_signals(
    mut signals: signal_hook::iterator::Signals,
    shutdowns: Vec<Shutdown>,
    reload: mpsc::Sender<()>,
    state: admin::Shared,
    reopen: Option<crate::accesslog::Reopen>,
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
                if seen == 1 {
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
