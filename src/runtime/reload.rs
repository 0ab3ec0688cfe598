//! Hot reload, on its own thread. On SIGHUP (a message on the channel `start` returns), or
//! when the config file changes and `server.watch_config` is on:
//! 1. read, validate and compile the file here first; if anything is wrong, log every error
//!    and keep the running config;
//! 2. send it to every worker, which compiles its own copy and switches (requests in flight
//!    finish on the old one; each keep-alive connection takes the new one at its next
//!    request);
//! 3. stop the old health checker and start one for the new config (compiled here in step
//!    1), whose channels go to the workers right after the switch (`Control::Health`);
//! 4. record the new version and hash for `/config` and `/metrics`.
//!
//! Listeners, worker count and driver settings are fixed for the life of the process: a
//! change to them is logged as needing a restart (or a binary upgrade) and the rest is
//! applied. TLS certificate files are watched here too (every second, and on SIGHUP).

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::admin;
use super::control::Workers;
use super::RunError;
use crate::compiled::{resolve_names, Resolved};
use crate::config::{ConfigErrors, GatewayConfig};
use crate::tls::SniResolver;

pub struct Reloader {
    pub resolvers: Vec<Arc<SniResolver>>,
    /// Upstream names as last resolved (workers compile with these, never with DNS).
    pub resolved: Arc<Resolved>,
    pub file: String,
    pub active: Arc<GatewayConfig>,
    pub workers: Workers,
    pub state: admin::Shared,
    /// The running config's health checker; replaced on each successful reload.
    pub health: crate::upstream::health::Checker,
    /// The overload manager's `limits.memory_ceiling`, followed on reload.
    pub ceiling: Arc<super::overload::Ceiling>,
}

fn mtime(p: &str) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Records the file's hash and redacted text as the active config.
pub fn record(state: &admin::Shared, file: &str) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let hash: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Ok(mut s) = state.lock() {
        s.config_sha256 = hash;
        s.config_redacted = admin::redact_config(&text);
    }
}

/// Starts the reload thread; send `()` to reload now.
pub fn start(mut r: Reloader) -> Result<mpsc::Sender<()>, RunError> {
    let (tx, rx) = mpsc::channel::<()>();
    let watch = r.active.server.watch_config;
    let mut seen = mtime(&r.file);
    let mut resolved_at = Instant::now();
    thread::Builder::new()
        .name("ringway-reload".into())
        .spawn(move || loop {
            let asked = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(()) => true,
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let now = mtime(&r.file);
            let changed = watch && now != seen;
            if asked || changed {
                seen = now;
                r.reload_config();
                resolved_at = Instant::now();
            }
            let every = r.active.server.dns_refresh.0;
            if !every.is_zero() && resolved_at.elapsed() >= every {
                resolved_at = Instant::now();
                r.refresh_names();
            }
            r.reload_certificates(asked);
        })
        .map_err(RunError::Signals)?;
    Ok(tx)
}

impl Reloader {
    fn reload_certificates(&self, asked: bool) {
        for res in &self.resolvers {
            if !asked && !res.files_changed() {
                continue;
            }
            match res.reload() {
                Ok(()) => log::info!("tls certificates reloaded"),
                Err(errors) => {
                    let errors = ConfigErrors {
                        file: self.file.clone(),
                        errors,
                    };
                    log::error!("tls certificates not reloaded, the old ones stay: {errors}");
                }
            }
        }
    }

    /// Resolves the upstream names again; when an address changed, every worker compiles
    /// the running config with the new addresses (no DNS on a worker). A name that does
    /// not resolve this time keeps its last address.
    fn refresh_names(&mut self) {
        let fresh = resolve_names(&self.active);
        self.apply_names(fresh);
    }

    /// Applies freshly resolved names (merged over the known ones) when any changed.
    fn apply_names(&mut self, fresh: Resolved) {
        let mut merged = (*self.resolved).clone();
        merged.extend(fresh);
        if merged == *self.resolved {
            return;
        }
        for (name, addr) in &merged {
            if self.resolved.get(name) != Some(addr) {
                log::info!("upstream {name} now resolves to {addr}");
            }
        }
        let merged = Arc::new(merged);
        match self
            .workers
            .reload(&self.active, &self.file, &merged, Duration::from_secs(30))
        {
            Ok(()) => {
                // The checker probes addresses: restart it on the new ones.
                match crate::compiled::Compiled::build_resolved(
                    &self.active,
                    &self.file,
                    Some(&merged),
                ) {
                    Ok(c) => self.restart_health(&c),
                    Err(e) => log::error!("health checker not restarted: {e}"),
                }
                self.resolved = merged;
            }
            Err(e) => log::error!("new upstream addresses not applied: {e}"),
        }
    }

    fn fail(&self, why: impl std::fmt::Display) {
        log::error!("config not reloaded, the running config stays: {why}");
        if let Ok(mut s) = self.state.lock() {
            s.process.reloads_failed += 1;
        }
    }

    fn reload_config(&mut self) {
        let cfg = match crate::config::load(Path::new(&self.file)) {
            Ok(c) => c,
            Err(e) => return self.fail(e),
        };
        let mut resolved = (*self.resolved).clone();
        resolved.extend(resolve_names(&cfg));
        let compiled =
            match crate::compiled::Compiled::build_resolved(&cfg, &self.file, Some(&resolved)) {
                Ok(c) => c,
                Err(e) => return self.fail(e),
            };
        let resolved = Arc::new(resolved);
        if let Err(e) = crate::tls::build(&cfg, &self.file) {
            return self.fail(e);
        }
        let old = &self.active;
        let fixed = [
            ("server.listen", old.server.listen != cfg.server.listen),
            ("listeners", old.listeners != cfg.listeners),
            ("server.workers", old.server.workers != cfg.server.workers),
            (
                "server.io_driver",
                old.server.io_driver != cfg.server.io_driver,
            ),
            (
                "server.pin_workers",
                old.server.pin_workers != cfg.server.pin_workers,
            ),
            ("server.backlog", old.server.backlog != cfg.server.backlog),
            ("admin", old.admin != cfg.admin),
        ];
        for (field, changed) in fixed {
            if changed {
                log::warn!(
                    "{}: {field} changed: that part needs a restart or a binary upgrade; the rest is applied",
                    self.file
                );
            }
        }
        let cfg = Arc::new(cfg);
        match self
            .workers
            .reload(&cfg, &self.file, &resolved, Duration::from_secs(30))
        {
            Ok(()) => {
                self.ceiling.set(cfg.limits.memory_ceiling);
                self.active = cfg;
                self.resolved = resolved;
                self.restart_health(&compiled);
                record(&self.state, &self.file);
                let version = match self.state.lock() {
                    Ok(mut s) => {
                        s.process.reloads_ok += 1;
                        s.process.config_version += 1;
                        s.process.config_version
                    }
                    Err(_) => 0,
                };
                log::info!("config reloaded (version {version})");
            }
            Err(e) => self.fail(e),
        }
    }

    /// Stops the old config's checker (every worker ignores it now) and starts one for the
    /// new config; the workers follow it from their next control poll.
    fn restart_health(&mut self, compiled: &crate::compiled::Compiled) {
        self.health = crate::upstream::health::Checker::default();
        match crate::upstream::health::start(&compiled.health_targets(), self.workers.len()) {
            Ok((checker, receivers)) => {
                self.health = checker;
                self.workers.follow_health(receivers);
            }
            Err(e) => log::error!("health checker not restarted, no active checks: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::control::Control;
    use std::net::SocketAddr;

    #[test]
    fn changed_addresses_go_to_every_worker_and_unchanged_ones_do_not() {
        let mut workers = Workers::default();
        let rx = workers.add();
        // A stand-in worker: records each reload's addresses and accepts it.
        let seen = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(msg) = rx.recv() {
                if let Control::Reload { resolved, done, .. } = msg {
                    got.push((*resolved).clone());
                    let _ = done.send(Ok(()));
                }
            }
            got
        });
        let cfg =
            crate::config::from_str("[server]\nlisten = [\"127.0.0.1:0\"]\n", "t.toml").unwrap();
        let old: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let new: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut r = Reloader {
            resolvers: Vec::new(),
            resolved: Arc::new(Resolved::from([("api.internal:80".to_string(), old)])),
            file: "t.toml".into(),
            active: Arc::new(cfg),
            workers,
            state: Default::default(),
            health: Default::default(),
            ceiling: Default::default(),
        };
        r.apply_names(Resolved::from([("api.internal:80".to_string(), old)]));
        r.apply_names(Resolved::new());
        r.apply_names(Resolved::from([("api.internal:80".to_string(), new)]));
        assert_eq!(r.resolved.get("api.internal:80"), Some(&new));
        drop(r);
        let got = seen.join().unwrap();
        assert_eq!(
            got,
            vec![Resolved::from([("api.internal:80".to_string(), new)])]
        );
    }
}
