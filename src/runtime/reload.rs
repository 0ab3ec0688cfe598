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
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::admin;
use super::control::Workers;
use super::RunError;
use crate::config::{ConfigErrors, GatewayConfig};
use crate::tls::SniResolver;

pub struct Reloader {
    pub resolvers: Vec<Arc<SniResolver>>,
    pub file: String,
    pub active: Arc<GatewayConfig>,
    pub workers: Workers,
    pub state: admin::Shared,
    /// The running config's health checker; replaced on each successful reload.
    pub health: crate::upstream::health::Checker,
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
        let compiled = match crate::compiled::Compiled::build(&cfg, &self.file) {
            Ok(c) => c,
            Err(e) => return self.fail(e),
        };
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
            .reload(&cfg, &self.file, Duration::from_secs(30))
        {
            Ok(()) => {
                self.active = cfg;
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
        match crate::upstream::health::start(compiled, self.workers.len()) {
            Ok((checker, receivers)) => {
                self.health = checker;
                self.workers.follow_health(receivers);
            }
            Err(e) => log::error!("health checker not restarted, no active checks: {e}"),
        }
    }
}
