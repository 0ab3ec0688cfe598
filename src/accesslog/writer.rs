//! The one writer thread per process: it receives full (or once-a-second) buffers of lines
//! from the workers over a bounded channel and writes them to the file or stdout. File I/O
//! happens here only, so a slow disk backs the channel up (workers then drop and count
//! lines) instead of stalling a request. SIGUSR1 asks it to reopen the file (logrotate).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::AccessLogConfig;

/// What the writer thread is sent.
pub(super) enum Msg {
    /// A buffer of whole lines, how many lines its core dropped since the last one, and
    /// where to give the emptied buffer back (so a core reuses its buffers).
    Lines {
        data: Vec<u8>,
        dropped: u64,
        back: Option<Sender<Vec<u8>>>,
    },
    /// Look at the reopen flag.
    Wake,
    /// Write what is queued, then stop.
    Close,
}

/// A worker's end of the channel. Sending never blocks (`try_send`).
#[derive(Clone)]
pub struct Sink {
    pub(super) tx: SyncSender<Msg>,
    /// Per-core buffer size.
    pub(super) buffer_bytes: usize,
}

/// Asks the writer to reopen its file; used by the signals thread.
#[derive(Clone)]
pub struct Reopen {
    flag: Arc<AtomicBool>,
    tx: SyncSender<Msg>,
}

impl Reopen {
    pub fn request(&self) {
        self.flag.store(true, Ordering::Release);
        // A full channel means the writer is busy and looks at the flag soon anyway.
        let _ = self.tx.try_send(Msg::Wake);
    }
}

/// The running writer thread.
pub struct AccessLog {
    sink: Sink,
    reopen: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens the destination (an error here stops startup) and starts the writer thread.
    /// The channel holds up to four buffers per worker.
    pub fn start(cfg: &AccessLogConfig, workers: usize) -> io::Result<AccessLog> {
        let out = Out::open(&cfg.path)?;
        let (tx, rx) = sync_channel(workers.max(1) * 4);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        let thread = std::thread::Builder::new()
            .name("ringway-accesslog".into())
            .spawn(move || write_loop(out, &rx, &flag))?;
        Ok(AccessLog {
            sink: Sink {
                tx,
                buffer_bytes: cfg.buffer_bytes,
            },
            reopen,
            thread: Some(thread),
        })
    }

    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    pub fn reopener(&self) -> Reopen {
        Reopen {
            flag: self.reopen.clone(),
            tx: self.sink.tx.clone(),
        }
    }

    /// Writes what the workers shipped (call after they stopped), then stops the thread.
    pub fn close(mut self) {
        let _ = self.sink.tx.send(Msg::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Out {
    Stdout(io::Stdout),
    File { file: File, path: PathBuf },
}

impl Out {
    fn open(path: &str) -> io::Result<Out> {
        if path == "stdout" {
            return Ok(Out::Stdout(io::stdout()));
        }
        let path = PathBuf::from(path);
        let file = open_append(&path)?;
        Ok(Out::File { file, path })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(data)?;
                s.flush()
            }
            Out::File { file, .. } => file.write_all(data),
        }
    }

    /// A new file at the configured path; the old one stays in use if that fails.
    fn reopen(&mut self) {
        if let Out::File { file, path } = self {
            match open_append(path) {
                Ok(f) => {
                    *file = f;
                    log::info!("access log reopened: {}", path.display());
                }
                Err(e) => log::error!(
                    "access log: cannot reopen {}: {e}; still writing to the old file",
                    path.display()
                ),
            }
        }
    }
}

fn open_append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Warnings about dropped lines or failed writes, at most one a second.
struct Complaints {
    dropped: u64,
    failed: u64,
    last: Option<Instant>,
}

impl Complaints {
    fn report(&mut self, force: bool) {
        if self.dropped == 0 && self.failed == 0 {
            return;
        }
        if !force
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        if self.dropped > 0 {
            log::warn!(
                "access log: {} lines dropped (buffers full: the writer is behind)",
                self.dropped
            );
        }
        if self.failed > 0 {
            log::error!("access log: {} writes failed", self.failed);
        }
        self.dropped = 0;
        self.failed = 0;
        self.last = Some(Instant::now());
    }
}

fn write_loop(mut out: Out, rx: &Receiver<Msg>, reopen: &AtomicBool) {
    let mut complaints = Complaints {
        dropped: 0,
        failed: 0,
        last: None,
    };
    loop {
        let msg = rx.recv();
        if reopen.swap(false, Ordering::AcqRel) {
            out.reopen();
        }
        match msg {
            Ok(Msg::Lines {
                mut data,
                dropped,
                back,
            }) => {
                complaints.dropped += dropped;
                if let Err(e) = out.write(&data) {
                    if complaints.failed == 0 {
                        log::error!("access log: write failed: {e}");
                    }
                    complaints.failed += 1;
                }
                complaints.report(false);
                if let Some(back) = back {
                    data.clear();
                    let _ = back.send(data);
                }
            }
            Ok(Msg::Wake) => {}
            Ok(Msg::Close) | Err(_) => {
                complaints.report(true);
                return;
            }
        }
    }
}
