//! A worker's access log buffer. Lines are appended to one `Vec` (no lock, no atomic, no
//! allocation while it has room); a full buffer, or the sweeper once a second, hands it to
//! the writer thread with `try_send`. When the channel is full the buffer is kept and new
//! lines are dropped and counted: a request never waits for the log.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::TrySendError;

use super::line::Line;
use super::writer::{Msg, Sink};

pub struct CoreLog {
    buf: RefCell<Vec<u8>>,
    dropped: Cell<u64>,
    sink: Sink,
}

impl CoreLog {
    pub fn new(sink: Sink) -> CoreLog {
        CoreLog {
            buf: RefCell::new(Vec::with_capacity(sink.buffer_bytes)),
            dropped: Cell::new(0),
            sink,
        }
    }

    /// Appends `line`, shipping the buffer first if the line does not fit.
    pub fn write(&self, line: &Line<'_>) {
        if self.append(line) {
            return;
        }
        if !self.ship() || !self.append(line) {
            // The writer is behind, or one line is larger than the whole buffer.
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    /// True if `line` fit in the buffer.
    fn append(&self, line: &Line<'_>) -> bool {
        let mut buf = self.buf.borrow_mut();
        let at = buf.len();
        line.write_to(&mut buf);
        if buf.len() <= self.sink.buffer_bytes {
            return true;
        }
        buf.truncate(at);
        false
    }

    /// Hands the buffer (and the count of dropped lines) to the writer; false if the
    /// channel is full and the buffer stays.
    pub fn ship(&self) -> bool {
        let mut buf = self.buf.borrow_mut();
        let dropped = self.dropped.get();
        if buf.is_empty() && dropped == 0 {
            return true;
        }
        let data = std::mem::take(&mut *buf);
        match self.sink.tx.try_send(Msg::Lines { data, dropped }) {
            Ok(()) => {
                self.dropped.set(0);
                *buf = Vec::with_capacity(self.sink.buffer_bytes);
                true
            }
            Err(TrySendError::Full(Msg::Lines { data, .. })) => {
                *buf = data;
                false
            }
            // The writer is gone (shutting down): the lines cannot be written anywhere.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}
