//! Waiting on readiness: `eventually` polls a probe with a short backoff until it is ready
//! or a deadline passes, then fails naming what it awaited and what the probe last saw (or,
//! with `try_until`, hands the caller a `None`). Every wait of the end-to-end suite goes
//! through it. It never sleeps longer than `MAX_PAUSE` between two polls, and it is not for
//! letting time pass: a test that waits past a timeout on purpose sleeps itself.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

/// How long a wait lasts unless the caller says otherwise (also the raw client's socket
/// timeouts and how long a process gets to start or stop).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The first pause between two polls; it doubles up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// Short enough for a test that measures how soon something happened.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// What one poll found: ready (with a value for the caller), or not yet, with what it saw
/// for the failure message.
pub trait Probe {
    type Ready;
    fn check(self) -> Result<Self::Ready, Option<String>>;
}

/// `true` when ready.
impl Probe for bool {
    type Ready = ();
    fn check(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

/// `Some(value)` when ready.
impl<T> Probe for Option<T> {
    type Ready = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Ok(value)` when ready; `Err(what was seen)` when not yet, shown if the wait fails.
impl<T, E: Display> Probe for Result<T, E> {
    type Ready = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// A wait for `what` (a few words for the failure message, e.g. "the log file to reopen"),
/// `TIMEOUT` long unless `within` says otherwise; `until` or `try_until` runs it.
pub fn eventually(what: impl Into<String>) -> Eventually {
    Eventually {
        what: what.into(),
        limit: TIMEOUT,
    }
}

/// A wait being set up by `eventually`.
#[must_use = "a wait does nothing until `until` or `try_until`"]
pub struct Eventually {
    what: String,
    limit: Duration,
}

impl Eventually {
    /// Gives up after `limit` instead of `TIMEOUT`.
    pub fn within(self, limit: Duration) -> Eventually {
        Eventually { limit, ..self }
    }

    /// Polls `probe` until it is ready and returns its value; panics when the deadline
    /// passes first, naming what was awaited and what the probe saw last.
    pub fn until<P: Probe>(self, probe: impl FnMut() -> P) -> P::Ready {
        match self.poll(probe) {
            Ok(ready) => ready,
            Err(seen) => panic!(
                "timed out after {:?} waiting for {}{}",
                self.limit,
                self.what,
                seen.map(|s| format!("; last seen:\n{s}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// Polls `probe` until it is ready; `None` when the deadline passes first (for a caller
    /// that asserts with its own message, or goes on either way).
    pub fn try_until<P: Probe>(self, probe: impl FnMut() -> P) -> Option<P::Ready> {
        match self.poll(probe) {
            Ok(ready) => Some(ready),
            Err(_) => {
                eprintln!("gave up after {:?} waiting for {}", self.limit, self.what);
                None
            }
        }
    }

    /// Polls once more at the deadline, so a probe gets the whole `limit`.
    fn poll<P: Probe>(&self, mut probe: impl FnMut() -> P) -> Result<P::Ready, Option<String>> {
        let deadline = Instant::now() + self.limit;
        let mut pause = FIRST_PAUSE;
        loop {
            let seen = match probe().check() {
                Ok(ready) => return Ok(ready),
                Err(seen) => seen,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(seen);
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_probe_that_becomes_ready_returns_its_value() {
        let polls = Cell::new(0);
        let got = eventually("the third poll").until(|| {
            polls.set(polls.get() + 1);
            (polls.get() == 3).then_some("ready")
        });
        assert_eq!((got, polls.get()), ("ready", 3));
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible; last seen:\nstill 7")]
    fn a_probe_never_ready_fails_naming_what_was_awaited_and_last_seen() {
        eventually("the impossible")
            .within(Duration::from_millis(30))
            .until(|| Err::<(), _>("still 7"));
    }

    #[test]
    fn try_until_gives_none_after_its_limit_and_polls_at_the_deadline() {
        let started = Instant::now();
        let last = Cell::new(started);
        let limit = Duration::from_millis(50);
        assert_eq!(
            eventually("false").within(limit).try_until(|| {
                last.set(Instant::now());
                false
            }),
            None
        );
        assert!(last.get() - started >= limit);
        assert!(started.elapsed() < limit + Duration::from_secs(1));
    }
}
