//! The overload manager: one thread samples the process's resident memory every
//! `SAMPLE` and, once it reaches `SHED_PERCENT` of `limits.memory_ceiling`, raises a flag
//! every worker reads (a relaxed load, written only on transitions) and tells each worker
//! through its control channel to cut off what holds memory. Each worker then answers
//! new requests 503, closes heads and request bodies still arriving unanswered, turns
//! keep-alive off, closes idle keep-alive connections and new connections, and returns its
//! spare memory, so the process stays under the ceiling itself; it resumes once the
//! process is back below `RESUME_PERCENT` of the ceiling (the gap keeps it from flapping).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::admin;
use super::control::Workers;

/// How often resident memory is read.
pub const SAMPLE: Duration = Duration::from_millis(20);
/// Shedding starts at this share of the ceiling: the rest is headroom for what arrives
/// before every worker heard of it.
pub const SHED_PERCENT: u64 = 90;
/// Shedding stops below this share of the ceiling.
pub const RESUME_PERCENT: u64 = 80;

/// The ceiling in force (bytes; 0 = off), updated by reloads. While it is off the
/// sampling thread sleeps until a reload sets one.
#[derive(Default)]
pub struct Ceiling {
    bytes: AtomicU64,
    sampler: OnceLock<thread::Thread>,
}

impl Ceiling {
    pub fn new(bytes: u64) -> Arc<Ceiling> {
        Arc::new(Ceiling {
            bytes: AtomicU64::new(bytes),
            sampler: OnceLock::new(),
        })
    }

    /// A reload's ceiling; wakes the sampling thread if it slept with none.
    pub fn set(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        if let Some(t) = self.sampler.get() {
            t.unpark();
        }
    }

    fn get(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Whether the process should shed, given its resident memory and whether it sheds now.
pub fn over(resident: u64, ceiling: u64, shedding: bool) -> bool {
    if ceiling == 0 {
        return false;
    }
    let percent = if shedding {
        RESUME_PERCENT
    } else {
        SHED_PERCENT
    };
    u128::from(resident) * 100 >= u128::from(ceiling) * u128::from(percent)
}

/// What the sampling thread works with.
pub struct Manager {
    pub ceiling: Arc<Ceiling>,
    /// Up while shedding: every worker reads it (relaxed) on accept and per request.
    pub flag: Arc<AtomicBool>,
    /// Told once per episode to cut off what holds memory (`Control::Shed`).
    pub workers: Workers,
    pub state: admin::Shared,
}

/// Starts the sampling thread.
pub fn start(m: Manager) -> std::io::Result<()> {
    thread::Builder::new()
        .name("ringway-overload".into())
        .spawn(move || {
            let _ = m.ceiling.sampler.set(thread::current());
            let mut shedding = false;
            let mut quiet = Quiet::default();
            loop {
                if m.ceiling.get() == 0 && !shedding && quiet.unlogged == 0 {
                    // Off: nothing to sample until a reload sets a ceiling (`Ceiling::set`).
                    thread::park();
                    continue;
                }
                thread::sleep(SAMPLE);
                let limit = m.ceiling.get();
                let Some(resident) = crate::sys::resident_bytes() else {
                    continue;
                };
                let next = over(resident, limit, shedding);
                if next == shedding {
                    if quiet.unlogged > 0 {
                        // Transitions went unlogged: say where it settled once allowed.
                        log_transition(&mut quiet, shedding, resident, limit);
                    }
                    continue;
                }
                shedding = next;
                m.flag.store(shedding, Ordering::Relaxed);
                if shedding {
                    m.workers.shed();
                }
                log_transition(&mut quiet, shedding, resident, limit);
                if let Ok(mut s) = m.state.lock() {
                    s.process.overloaded = shedding;
                    s.process.overloads += u64::from(shedding);
                }
            }
        })
        .map(|_| ())
}

/// Log lines of a flapping episode: every transition is logged unless the last line was
/// less than `LOG_EVERY` ago; the state it settles in is logged once that allows, saying
/// how many transitions went unlogged.
#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    unlogged: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

fn log_transition(q: &mut Quiet, shedding: bool, resident: u64, limit: u64) {
    if q.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
        q.unlogged += 1;
        return;
    }
    q.last = Some(Instant::now());
    let unlogged = std::mem::take(&mut q.unlogged);
    let also = if unlogged > 0 {
        format!(
            " ({unlogged} transitions in the last {}s not logged)",
            LOG_EVERY.as_secs()
        )
    } else {
        String::new()
    };
    let mib = |b: u64| b >> 20;
    if shedding {
        log::warn!(
            "overload: resident memory {} MiB reached {SHED_PERCENT}% of \
             limits.memory_ceiling ({} MiB); shedding new requests and connections{also}",
            mib(resident),
            mib(limit)
        );
    } else {
        log::warn!(
            "overload: resident memory {} MiB is back under {RESUME_PERCENT}% of \
             limits.memory_ceiling; serving again{also}",
            mib(resident)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::over;

    #[test]
    fn sheds_from_ninety_percent_and_resumes_below_eighty() {
        let c = 1000;
        assert!(!over(899, c, false));
        assert!(over(900, c, false));
        assert!(over(850, c, true), "still shedding between 80% and 90%");
        assert!(over(800, c, true));
        assert!(!over(799, c, true));
        assert!(!over(u64::MAX, 0, false), "0 is off");
        assert!(!over(u64::MAX, 0, true), "turning it off stops shedding");
        assert!(over(u64::MAX, u64::MAX, true));
    }
}
