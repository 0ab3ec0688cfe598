//! Messages from the main thread to the workers, off the request path: a new config to
//! switch to, the new config's health checker channel, a request for a metrics snapshot, or
//! the overload manager's word to shed load or stop. Each worker drains its channel from a
//! small task every `POLL` (a `try_recv`, no lock on any request's path); the main thread
//! waits for every worker's answer.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use crate::compiled::Resolved;
use crate::config::GatewayConfig;
use crate::metrics::Snapshot;
use crate::upstream::health::{HealthEvent, Receivers};

/// How often a worker looks at its channel.
pub const POLL: Duration = Duration::from_millis(50);

pub enum Control {
    /// Compile this config on the worker and switch to it; answer Ok or the reason.
    Reload {
        cfg: Arc<GatewayConfig>,
        file: String,
        /// Upstream names resolved off the workers (see `compiled::resolve_names`).
        resolved: Arc<Resolved>,
        done: Sender<Result<(), String>>,
    },
    /// Follow this health checker (sent right after a `Reload` every worker applied: its
    /// events name the new config's servers).
    Health(Receiver<HealthEvent>),
    /// Send this worker's counters.
    Snapshot(Sender<Snapshot>),
    /// The process went over its memory threshold (the shared flag is up): cut off what
    /// holds memory now.
    Shed,
}

/// The main thread's handles to every worker's channel.
#[derive(Clone, Default)]
pub struct Workers {
    senders: Vec<Sender<Control>>,
}

impl Workers {
    /// A channel for one more worker; the receiver goes to that worker.
    pub fn add(&mut self) -> Receiver<Control> {
        let (tx, rx) = mpsc::channel();
        self.senders.push(tx);
        rx
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Sends `cfg` to every worker and waits (up to `wait` each) until all switched.
    /// Err lists the workers that refused it or did not answer; those keep their config.
    pub fn reload(
        &self,
        cfg: &Arc<GatewayConfig>,
        file: &str,
        resolved: &Arc<Resolved>,
        wait: Duration,
    ) -> Result<(), String> {
        let mut answers = Vec::new();
        for (id, s) in self.senders.iter().enumerate() {
            let (done, rx) = mpsc::channel();
            let msg = Control::Reload {
                cfg: cfg.clone(),
                file: file.to_string(),
                resolved: resolved.clone(),
                done,
            };
            if s.send(msg).is_ok() {
                answers.push((id, rx));
            }
        }
        let mut failed = Vec::new();
        for (id, rx) in answers {
            match rx.recv_timeout(wait) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("worker {id}: {e}")),
                Err(_) => failed.push(format!("worker {id}: no answer")),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Hands each worker its receiver (in `Workers::add` order) from a new health checker.
    pub fn follow_health(&self, receivers: Receivers) {
        for (s, rx) in self.senders.iter().zip(receivers) {
            if let Some(rx) = rx {
                let _ = s.send(Control::Health(rx));
            }
        }
    }

    /// Tells every worker to cut off what holds memory now (see `Control::Shed`).
    pub fn shed(&self) {
        for s in &self.senders {
            let _ = s.send(Control::Shed);
        }
    }

    /// Every worker's counters, summed; workers that do not answer within `wait` are
    /// left out (and counted in the result's second value).
    pub fn snapshot(&self, wait: Duration) -> (Snapshot, usize) {
        let mut pending = Vec::new();
        for s in &self.senders {
            let (tx, rx) = mpsc::channel();
            if s.send(Control::Snapshot(tx)).is_ok() {
                pending.push(rx);
            }
        }
        let mut sum = Snapshot::default();
        let mut missing = self.senders.len() - pending.len();
        for rx in pending {
            match rx.recv_timeout(wait) {
                Ok(s) => sum.merge(&s),
                Err(_) => missing += 1,
            }
        }
        (sum, missing)
    }
}
