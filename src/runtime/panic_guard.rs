//! Contains a panic inside one connection task so it cannot take down its worker.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls `F`; a panic while polling ends the future with `Err(())` instead of unwinding.
pub struct CatchPanic<F: ?Sized> {
    inner: Pin<Box<F>>,
}

impl<F: Future> CatchPanic<F> {
    pub fn new(f: F) -> Self {
        CatchPanic { inner: Box::pin(f) }
    }
}

impl<F: Future + ?Sized> CatchPanic<F> {
    /// Polls a future already on the heap (a `dyn Future`, say).
    pub fn pinned(inner: Pin<Box<F>>) -> Self {
        CatchPanic { inner }
    }
}

impl<F: Future + ?Sized> Future for CatchPanic<F> {
    type Output = Result<F::Output, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
