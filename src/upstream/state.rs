//! One worker's view of its upstreams: balancer positions, outstanding requests per server,
//! health (as last reported by the checker), outlier ejections, breaker counts and the retry
//! budget. Lives in the worker's `Shared` behind an `Rc`; every method borrows briefly and
//! never across an await.
//!
//! Outlier ejection: `consecutive_failures` connect failures or 5xx answers in a row from
//! one server (as seen by this worker) eject it for `ejection`, doubled for each ejection
//! in a row up to `max_ejection`; the first success after an ejection resets the doubling.
//! An ejected server comes back by itself when its time is up.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use super::balance;
use super::{bump, Counters, Lb, Tried};
use crate::config::{AllUnhealthy, Balance};

#[derive(Default)]
struct Servers {
    rr: usize,
    wrr: Vec<i64>,
    outstanding: Vec<u32>,
    /// From the active checker; starts healthy.
    healthy: Vec<bool>,
    fails: Vec<u32>,
    ejected_until: Vec<Option<Instant>>,
    /// Ejections in a row (the next one lasts `ejection << ejections`).
    ejections: Vec<u32>,
    pending: usize,
    conns: usize,
}

impl Servers {
    fn new(n: usize, rr: usize) -> Servers {
        Servers {
            rr,
            wrr: vec![0; n],
            outstanding: vec![0; n],
            healthy: vec![true; n],
            fails: vec![0; n],
            ejected_until: vec![None; n],
            ejections: vec![0; n],
            pending: 0,
            conns: 0,
        }
    }

    fn usable(&self, i: usize, now: &LazyNow) -> bool {
        self.healthy[i] && self.ejected_until[i].is_none_or_past(now)
    }
}

/// The clock, read at most once and only when needed (an ejected server): the common
/// pick reads no clock.
#[derive(Default)]
struct LazyNow(Cell<Option<Instant>>);

impl LazyNow {
    fn get(&self) -> Instant {
        match self.0.get() {
            Some(t) => t,
            None => {
                let t = Instant::now();
                self.0.set(Some(t));
                t
            }
        }
    }
}

trait PastExt {
    fn is_none_or_past(&self, now: &LazyNow) -> bool;
}

impl PastExt for Option<Instant> {
    fn is_none_or_past(&self, now: &LazyNow) -> bool {
        match self {
            None => true,
            Some(t) => now.get() >= *t,
        }
    }
}

/// Why no server was picked.
#[derive(Debug, PartialEq, Eq)]
pub enum NoServer {
    /// Every server is unhealthy or ejected and the upstream says `all_unhealthy = "fail"`.
    AllUnhealthy,
    /// Every usable server was already tried for this request.
    Exhausted,
}

pub struct State {
    ups: RefCell<Vec<Servers>>,
    /// Where round-robin starts in this worker, so workers do not all begin on server 0.
    rr_start: usize,
    rng: Cell<u64>,
    retries_in_flight: Cell<usize>,
    pub counters: Counters,
}

impl State {
    pub fn new(worker: usize) -> State {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        State {
            ups: RefCell::new(Vec::new()),
            rr_start: worker,
            rng: Cell::new((seed ^ (worker as u64).rotate_left(40)) | 1),
            retries_in_flight: Cell::new(0),
            counters: Counters::default(),
        }
    }

    /// Runs `f` on upstream `u`'s state, (re)sized for `n` servers (a reload may change them).
    fn with<R>(&self, u: usize, n: usize, f: impl FnOnce(&mut Servers) -> R) -> R {
        let mut ups = self.ups.borrow_mut();
        if ups.len() <= u {
            let start = self.rr_start;
            ups.resize_with(u + 1, || Servers::new(0, start));
        }
        let s = &mut ups[u];
        if s.healthy.len() != n {
            let (pending, conns) = (s.pending, s.conns);
            *s = Servers::new(n, self.rr_start);
            (s.pending, s.conns) = (pending, conns);
        }
        f(s)
    }

    /// For metrics: (upstream index, server index, usable now) for every server this
    /// worker has seen.
    pub fn health_view(&self) -> Vec<(usize, usize, bool)> {
        let now = LazyNow::default();
        let ups = self.ups.borrow();
        let mut out = Vec::new();
        for (u, s) in ups.iter().enumerate() {
            for i in 0..s.healthy.len() {
                out.push((u, i, s.usable(i, &now)));
            }
        }
        out
    }

    /// Picks a server of upstream `u` not in `tried`. Key: the request's hash key.
    pub fn pick(
        &self,
        u: usize,
        lb: &Lb,
        key: Option<u64>,
        tried: &Tried,
    ) -> Result<usize, NoServer> {
        let n = lb.addresses.len();
        if n == 1 && tried.is_empty() && lb.all_unhealthy == AllUnhealthy::TryAll {
            // The only server, taken healthy or not: no state to look at.
            return Ok(0);
        }
        let now = LazyNow::default();
        self.with(u, n, |s| {
            // The common case, without a scan: a request's first pick, one server or
            // round-robin, and the server in turn usable.
            if tried.is_empty() && n > 0 {
                if n == 1 && s.usable(0, &now) {
                    return Ok(0);
                }
                let i = s.rr % n;
                if lb.balance == Balance::RoundRobin && s.usable(i, &now) {
                    s.rr = i + 1;
                    return Ok(i);
                }
            }
            let any_usable = (0..n).any(|i| s.usable(i, &now));
            if !any_usable && lb.all_unhealthy == AllUnhealthy::Fail {
                return Err(NoServer::AllUnhealthy);
            }
            // Only a request's first pick moves the rotation: a failover or retry takes the
            // next server without shifting where the following request starts.
            let first = tried.is_empty();
            let (healthy, ejected) = (&s.healthy, &s.ejected_until);
            let ok = |i: usize| {
                !tried.contains(i)
                    && (!any_usable || (healthy[i] && ejected[i].is_none_or_past(&now)))
            };
            let picked = match (lb.balance, key, &lb.ring) {
                (Balance::Hash, Some(k), Some(ring)) => ring.lookup(k, ok),
                (Balance::WeightedRoundRobin, ..) => {
                    balance::smooth_wrr(&mut s.wrr, &lb.weights, ok)
                }
                (Balance::LeastRequests, ..) => {
                    let i = balance::least(&s.outstanding, &lb.weights, s.rr % n.max(1), ok);
                    if first {
                        s.rr = s.rr.wrapping_add(1);
                    }
                    i
                }
                (Balance::P2c, ..) => {
                    let mut r = self.rng.get();
                    let (r1, r2) = (balance::next_random(&mut r), balance::next_random(&mut r));
                    self.rng.set(r);
                    balance::p2c(&s.outstanding, &lb.weights, r1, r2, ok)
                }
                _ => {
                    let i = balance::round_robin(n, s.rr % n.max(1), ok);
                    if let (Some(i), true) = (i, first) {
                        s.rr = i + 1;
                    }
                    i
                }
            };
            picked.ok_or(NoServer::Exhausted)
        })
    }

    /// Whether a server not in `tried` could still be picked (no state changes).
    pub fn has_untried(&self, u: usize, lb: &Lb, tried: &Tried) -> bool {
        let n = lb.addresses.len();
        let now = LazyNow::default();
        self.with(u, n, |s| {
            let any_usable = (0..n).any(|i| s.usable(i, &now));
            (0..n).any(|i| !tried.contains(i) && (!any_usable || s.usable(i, &now)))
                && (any_usable || lb.all_unhealthy == AllUnhealthy::TryAll)
        })
    }

    /// Admits a request to upstream `u` unless `max_pending` requests are on it already.
    pub fn admit(self: &Rc<Self>, u: usize, lb: &Lb) -> Option<Pending> {
        if lb.max_pending == 0 {
            // Nothing reads the count without a limit: no bookkeeping.
            return Some(Pending { st: None, u });
        }
        let ok = self.with(u, lb.addresses.len(), |s| {
            if lb.max_pending > 0 && s.pending >= lb.max_pending {
                return false;
            }
            s.pending += 1;
            true
        });
        if !ok {
            bump(&self.counters.breaker_rejections);
            return None;
        }
        Some(Pending {
            st: Some(self.clone()),
            u,
        })
    }

    /// Starts one attempt on server `i` (a connection in use, one more outstanding request)
    /// unless `max_connections` connections of the upstream are in use already.
    pub fn begin(self: &Rc<Self>, u: usize, lb: &Lb, i: usize) -> Option<Busy> {
        if lb.max_connections == 0 && !matches!(lb.balance, Balance::LeastRequests | Balance::P2c) {
            // Neither a limit nor the balancer reads the counts: no bookkeeping.
            return Some(Busy { st: None, u, i });
        }
        let ok = self.with(u, lb.addresses.len(), |s| {
            if lb.max_connections > 0 && s.conns >= lb.max_connections {
                return false;
            }
            s.conns += 1;
            if let Some(o) = s.outstanding.get_mut(i) {
                *o += 1;
            }
            true
        });
        if !ok {
            bump(&self.counters.breaker_rejections);
            return None;
        }
        Some(Busy {
            st: Some(self.clone()),
            u,
            i,
        })
    }

    /// Records how an attempt on server `i` went (`failed`: connect failure or 5xx).
    pub fn report(&self, u: usize, lb: &Lb, i: usize, failed: bool) {
        let Some(o) = &lb.outlier else { return };
        let now = LazyNow::default();
        let ejected = self.with(u, lb.addresses.len(), |s| {
            if i >= s.fails.len() {
                return None;
            }
            if !failed {
                s.fails[i] = 0;
                if s.ejected_until[i].is_none_or_past(&now) {
                    s.ejections[i] = 0;
                    s.ejected_until[i] = None;
                }
                return None;
            }
            s.fails[i] += 1;
            if s.fails[i] < o.consecutive_failures {
                return None;
            }
            s.fails[i] = 0;
            let factor = 1u32 << s.ejections[i].min(16);
            let d = o.ejection.saturating_mul(factor).min(o.max_ejection);
            s.ejections[i] = s.ejections[i].saturating_add(1);
            s.ejected_until[i] = Some(now.get() + d);
            Some(d)
        });
        if let Some(d) = ejected {
            bump(&self.counters.ejections);
            let addr = lb.addresses.get(i).map_or("?", String::as_str);
            log::warn!(
                "upstream server {addr}: ejected for {d:?} after {} failures in a row",
                o.consecutive_failures
            );
        }
    }

    /// Applies a health change from the checker (`n`: the upstream's server count).
    /// Marks every server healthy again. A worker calls it when it switches to a reloaded
    /// config: server indices may name other servers now, and the new checker takes the
    /// ones still down out again within its `unhealthy_threshold`.
    pub fn reset_health(&self) {
        for s in self.ups.borrow_mut().iter_mut() {
            s.healthy.iter_mut().for_each(|h| *h = true);
        }
    }

    pub fn set_healthy(&self, u: usize, n: usize, i: usize, healthy: bool) {
        let changed = self.with(u, n, |s| match s.healthy.get_mut(i) {
            Some(h) if *h != healthy => {
                *h = healthy;
                true
            }
            _ => false,
        });
        if changed {
            bump(&self.counters.health_transitions);
        }
    }

    /// Starts a status retry if the budget allows it; the guard holds it until the request ends.
    pub fn start_retry(self: &Rc<Self>, allowed: impl FnOnce(usize) -> bool) -> Option<RetryGuard> {
        let now = self.retries_in_flight.get();
        if !allowed(now) {
            bump(&self.counters.retry_budget_exhausted);
            return None;
        }
        self.retries_in_flight.set(now + 1);
        bump(&self.counters.retries);
        Some(RetryGuard(self.clone()))
    }

    pub fn retries_in_flight(&self) -> usize {
        self.retries_in_flight.get()
    }
}

/// A request admitted to an upstream (for `max_pending`).
pub struct Pending {
    /// None when nothing was counted.
    st: Option<Rc<State>>,
    u: usize,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(st) = &self.st else { return };
        if let Some(s) = st.ups.borrow_mut().get_mut(self.u) {
            s.pending = s.pending.saturating_sub(1);
        }
    }
}

/// One attempt in progress on one server.
pub struct Busy {
    /// None when nothing was counted.
    st: Option<Rc<State>>,
    u: usize,
    i: usize,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let Some(st) = &self.st else { return };
        if let Some(s) = st.ups.borrow_mut().get_mut(self.u) {
            s.conns = s.conns.saturating_sub(1);
            if let Some(o) = s.outstanding.get_mut(self.i) {
                *o = o.saturating_sub(1);
            }
        }
    }
}

/// A request that has started a status retry (for the budget).
pub struct RetryGuard(Rc<State>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        let r = &self.0.retries_in_flight;
        r.set(r.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_health_makes_every_server_healthy_again() {
        let s = State::new(0);
        s.set_healthy(0, 2, 1, false);
        s.set_healthy(1, 1, 0, false);
        assert_eq!(
            s.health_view(),
            vec![(0, 0, true), (0, 1, false), (1, 0, false)]
        );
        s.reset_health();
        assert!(s.health_view().iter().all(|&(_, _, usable)| usable));
        assert_eq!(s.counters.snapshot().health_transitions, 2);
    }
}
