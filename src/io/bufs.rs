//! A worker's pool of large body buffers, handed out last-in first-out.
//!
//! A Content-Length body is read into one of these rather than into a buffer of the
//! connection's own: a body read usually completes at once (the body follows its head), so
//! the buffer is back in the pool right after its write, a few buffers serve all the
//! connections in turn (and stay warm in cache), and a connection between responses holds
//! no 64 KiB buffer at all. Measured at 64 KiB c64 its CPU effect was within noise; the
//! point is memory: busy connections no longer each keep a body-sized buffer.

use std::cell::RefCell;

use bytes::BytesMut;

/// Capacity of a pooled buffer: a 64 KiB read behind a response head.
pub const BODY_BUF: usize = 68 * 1024;
/// Buffers kept when returned (more are freed): enough for the reads in flight at once.
const KEEP: usize = 64;

#[derive(Default)]
pub struct BodyBufs {
    free: RefCell<Vec<BytesMut>>,
}

impl BodyBufs {
    /// An empty buffer with at least `BODY_BUF` bytes of room, the most recently used first.
    pub fn take(&self) -> BytesMut {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(BODY_BUF))
    }

    /// Returns a buffer. One that grew or shrank out of shape is dropped.
    pub fn give(&self, mut buf: BytesMut) {
        buf.clear();
        // Takes back the room in front that `advance` gave up (no allocation).
        let _ = buf.try_reclaim(BODY_BUF);
        let mut free = self.free.borrow_mut();
        if free.len() < KEEP && buf.capacity() >= BODY_BUF && buf.capacity() <= 2 * BODY_BUF {
            free.push(buf);
        }
    }

    /// Frees every pooled buffer (the worker is idle).
    pub fn clear(&self) {
        self.free.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_buffer_given_back_is_the_next_one_taken() {
        let bufs = BodyBufs::default();
        let a = bufs.take();
        let b = bufs.take();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        bufs.give(a);
        bufs.give(b);
        assert_eq!(bufs.take().as_ptr(), pb);
        assert_eq!(bufs.take().as_ptr(), pa);
    }

    #[test]
    fn buffers_come_back_empty_and_odd_ones_are_not_kept() {
        let bufs = BodyBufs::default();
        let mut a = bufs.take();
        a.extend_from_slice(b"leftover");
        bufs.give(a);
        assert!(bufs.take().is_empty());
        bufs.give(BytesMut::with_capacity(16));
        assert!(bufs.free.borrow().is_empty());
    }
}
