//! Per-core upstream keep-alive pool, keyed by server address and connection settings
//! (`upstream::PoolKey`: a TLS connection is reused only with the very settings it was made
//! with). A connection enters the pool
//! only after a response was fully read and correctly framed; it leaves it on reuse, when it
//! is older than the upstream's `keepalive_timeout`, or when a peek shows its peer closed it.
//!
//! The peek is a syscall, so the hot path skips it when a stale connection costs nothing:
//! a connection idle for less than `PEEK_AFTER` is handed out unchecked to a request that
//! can be replayed (idempotent, no body), which is retried on a fresh connection if the
//! upstream turns out to have closed it or to have left stray bytes on it (see
//! `pipeline::response::RespOutcome::NoResponse`). Requests that cannot be replayed always get a
//! checked connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::io::{Stream, UpConn};
use crate::upstream::PoolKey;

/// Idle time after which a pooled connection is always checked before reuse.
const PEEK_AFTER: Duration = Duration::from_secs(1);

struct Idle<C: Stream> {
    conn: UpConn<C>,
    since: Instant,
}

pub struct Pool<C: Stream> {
    /// Oldest first: reuse takes from the back, a full list drops from the front.
    idle: RefCell<AHashMap<PoolKey, VecDeque<Idle<C>>>>,
}

impl<C: Stream> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            idle: RefCell::new(AHashMap::new()),
        }
    }
}

impl<C: Stream> Pool<C> {
    /// The most recently used idle connection made with `key` that is within `max_idle_time` and
    /// not seen closed, if any. `replayable`: the request can be retried elsewhere, so a
    /// recently used connection needs no check (see the module docs).
    pub fn take(
        &self,
        key: PoolKey,
        max_idle_time: Duration,
        replayable: bool,
    ) -> Option<UpConn<C>> {
        let mut map = self.idle.borrow_mut();
        let list = map.get_mut(&key)?;
        let now = Instant::now();
        while let Some(idle) = list.pop_back() {
            let idle_for = now.duration_since(idle.since);
            if idle_for >= max_idle_time {
                continue;
            }
            let check = !replayable || idle_for >= PEEK_AFTER;
            if !check || !idle.conn.unusable_when_idle() {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Returns a connection for reuse; the oldest idle one is closed when `max_idle` is reached.
    pub fn put(&self, key: PoolKey, conn: UpConn<C>, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(key).or_default();
        if list.len() >= max_idle {
            list.pop_front();
        }
        list.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes connections idle for longer than `max_idle_time`.
    pub fn sweep(&self, max_idle_time: impl Fn(PoolKey) -> Duration) {
        let now = Instant::now();
        let mut map = self.idle.borrow_mut();
        for (key, list) in map.iter_mut() {
            let limit = max_idle_time(*key);
            list.retain(|i| now.duration_since(i.since) < limit);
        }
        map.retain(|_, l| !l.is_empty());
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(VecDeque::len).sum()
    }

    /// Drops every idle connection (used when the worker drains).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}
