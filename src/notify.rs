//! Tiny wake-up primitives for the thread-per-core runtime.
//! `LocalNotify` wakes tasks on the same worker (no atomics); `Shutdown` is the one
//! cross-thread signal (main thread -> worker), used off the request path.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Broadcast notification within one worker thread.
#[derive(Default)]
pub struct LocalNotify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl LocalNotify {
    /// Wakes every task currently waiting in `notified()`.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

pub struct Notified<'a> {
    notify: &'a LocalNotify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
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
