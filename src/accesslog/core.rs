//! A worker's access log buffer. Lines are appended to one `Vec` (no lock, no atomic, no
//! allocation while it has room); a full buffer, or the sweeper once a second, hands it to
//! the writer thread with `try_send`. When the channel is full the buffer is kept and new
//! lines are dropped and counted: a request never waits for the log. The writer gives
//! emptied buffers back, so a core in steady state allocates nothing for its log.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::{channel, Receiver, Sender, TrySendError};

use super::line::Line;
use super::writer::{Msg, Sink};

pub struct CoreLog {
    buf: RefCell<Vec<u8>>,
    dropped: Cell<u64>,
    sink: Sink,
    /// Emptied buffers coming back from the writer.
    spare_tx: Sender<Vec<u8>>,
    spare_rx: Receiver<Vec<u8>>,
}

impl CoreLog {
    pub fn new(sink: Sink) -> CoreLog {
        let (spare_tx, spare_rx) = channel();
        CoreLog {
            buf: RefCell::new(Vec::with_capacity(sink.buffer_bytes)),
            dropped: Cell::new(0),
            sink,
            spare_tx,
            spare_rx,
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
        let back = Some(self.spare_tx.clone());
        match self.sink.tx.try_send(Msg::Lines {
            data,
            dropped,
            back,
        }) {
            Ok(()) => {
                self.dropped.set(0);
                *buf = match self.spare_rx.try_recv() {
                    Ok(spare) => spare,
                    Err(_) => Vec::with_capacity(self.sink.buffer_bytes),
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::mpsc::sync_channel;
    use std::time::{Duration, SystemTime};

    fn line(path: &[u8]) -> Line<'_> {
        Line {
            time: SystemTime::UNIX_EPOCH,
            request_id: super::super::RequestId::Own(1),
            trace_id: b"0",
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            method: b"GET",
            path,
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            upstream_connect: None,
            upstream_header: None,
            route: None,
            upstream: None,
            consumer: None,
            tls: false,
            protocol: b"HTTP/1.1",
            grpc_status: None,
        }
    }

    #[test]
    fn a_full_buffer_with_a_full_channel_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = sync_channel(1);
        let log = CoreLog::new(Sink {
            tx,
            buffer_bytes: 4096,
        });
        // Enough lines for three buffers: the first ships, the channel is then full, the
        // rest of the second buffer's worth is dropped.
        for _ in 0..3 * 4096 / 200 {
            log.write(&line(&[b'a'; 64]));
        }
        assert!(log.dropped.get() > 0);
        let Ok(Msg::Lines {
            data, dropped: 0, ..
        }) = rx.try_recv()
        else {
            panic!("the first full buffer was shipped");
        };
        assert!(data.len() <= 4096 && data.ends_with(b"}\n"));
        let dropped = log.dropped.get();
        assert!(log.ship(), "room again in the channel");
        let Ok(Msg::Lines { dropped: d, .. }) = rx.try_recv() else {
            panic!("shipped");
        };
        assert_eq!(d, dropped);
        assert_eq!(log.dropped.get(), 0);
    }

    #[test]
    fn a_line_larger_than_the_buffer_is_dropped() {
        let (tx, rx) = sync_channel(4);
        let log = CoreLog::new(Sink {
            tx,
            buffer_bytes: 4096,
        });
        log.write(&line(&[b'a'; 5000]));
        assert_eq!(log.dropped.get(), 1);
        log.write(&line(b"/ok"));
        assert!(log.ship());
        let mut got = Vec::new();
        while let Ok(Msg::Lines { data, .. }) = rx.try_recv() {
            got.extend_from_slice(&data);
        }
        assert_eq!(got.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
