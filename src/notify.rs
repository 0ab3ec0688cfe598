//! Tiny wake-up primitives for the thread-per-core runtime.
//! `LocalNotify` wakes tasks on the same worker (no atomics); `Shutdown` is the one
//! cross-thread signal (main thread -> worker), used off the request path.
//!
//! Where it sits: a leaf (it imports nothing of the crate).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Broadcast notification within one worker thread.
///
/// Each waiting `Notified` owns one slot, found by index and released when it is dropped,
/// so a wait costs O(1) whatever the number of connections and nothing outlives the task
/// that waited (a connection that closes takes its waker with it).
#[derive(Default)]
pub struct LocalNotify {
    generation: Cell<u64>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl LocalNotify {
    /// Wakes every task currently waiting in `notified()`.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let len = self.slots.borrow().len();
        for i in 0..len {
            // Taken out first: waking must not run while the slots are borrowed.
            let waker = self.slots.borrow_mut().get_mut(i).and_then(Option::take);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Resolves at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
            slot: None,
        }
    }

    /// Tasks registered and not yet dropped (for tests).
    pub fn waiting(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }
}

pub struct Notified<'a> {
    notify: &'a LocalNotify,
    generation: u64,
    slot: Option<usize>,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.notify.generation.get() != this.generation {
            return Poll::Ready(());
        }
        let mut slots = this.notify.slots.borrow_mut();
        let i = match this.slot {
            Some(i) => i,
            None => {
                let i = match this.notify.free.borrow_mut().pop() {
                    Some(i) => i,
                    None => {
                        slots.push(None);
                        slots.len() - 1
                    }
                };
                this.slot = Some(i);
                i
            }
        };
        if let Some(entry) = slots.get_mut(i) {
            if !entry.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *entry = Some(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if let Some(entry) = self.notify.slots.borrow_mut().get_mut(i) {
                *entry = None;
            }
            self.notify.free.borrow_mut().push(i);
        }
    }
}

/// A one-shot, cross-thread shutdown signal. Cloned into each worker.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Default)]
struct ShutdownInner {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Shutdown {
    pub fn fire(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        let waker = match self.inner.waker.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }
}

impl Future for Shutdown {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            return Poll::Ready(());
        }
        {
            let mut g = match self.inner.waker.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *g = Some(cx.waker().clone());
        }
        // Re-check: `fire` may have run between the first check and storing the waker.
        if self.is_fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_dropped_waiter_gives_its_slot_back_and_is_not_woken() {
        let n = LocalNotify::default();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut f = Box::pin(n.notified());
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_eq!(n.waiting(), 1);
        }
        assert_eq!(n.waiting(), 0);
        assert_eq!(
            n.slots.borrow().len(),
            1,
            "one slot reused, not one per wait"
        );
        n.notify_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn notify_all_wakes_every_live_waiter_once_and_they_resolve() {
        let n = LocalNotify::default();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(n.notified());
        let mut b = Box::pin(n.notified());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert!(
            a.as_mut().poll(&mut cx).is_pending(),
            "a second poll is idempotent"
        );
        n.notify_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        drop((a, b));
        assert_eq!(n.waiting(), 0);
    }
}
