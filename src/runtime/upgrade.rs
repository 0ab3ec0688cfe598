//! Binary upgrade without dropping a connection: the running process hands its listening
//! sockets to its successor over a Unix socket (`server.upgrade_socket`), as nginx and
//! pingora do, then drains and exits. The sockets (and their accept queues, and the
//! steering program attached to them) never close, so no connection attempt is refused.
//!
//! The exchange, on the Unix socket:
//! 1. the successor (`ringway run --upgrade`) connects;
//! 2. the running process sends one line `ringway-upgrade 1 workers=N addrs=A,B,...`
//!    with every listener descriptor attached (worker-major, in `addrs` order);
//! 3. the successor starts its workers on them, then writes `ready`;
//! 4. the running process removes the socket file, answers `bye` and starts its drain
//!    (exactly as on SIGTERM); the successor then listens on the socket file itself.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::Duration;

use super::RunError;

const WAIT: Duration = Duration::from_secs(30);

fn header(workers: usize, addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!(
        "ringway-upgrade 1 workers={workers} addrs={}\n",
        list.join(",")
    )
}

fn err(path: &str, why: impl std::fmt::Display) -> RunError {
    RunError::Upgrade(format!("{path}: {why}"))
}

/// The successor's side: takes the running process's listeners. `result[w]` holds worker
/// w's listeners, in `addrs` order, as `bind_all` would have made them.
pub fn take_over(
    path: &str,
    workers: usize,
    addrs: &[SocketAddr],
) -> Result<(Vec<Vec<TcpListener>>, UnixStream), RunError> {
    let stream =
        UnixStream::connect(path).map_err(|e| err(path, format!("cannot connect: {e}")))?;
    let _ = stream.set_read_timeout(Some(WAIT));
    let mut buf = [0u8; 4096];
    let (n, fds) = crate::sys::recv_fds(stream.as_raw_fd(), &mut buf)
        .map_err(|e| err(path, format!("no listeners received: {e}")))?;
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    let line = got.lines().next().unwrap_or_default();
    let (w, sent_addrs) =
        parse_header(line).ok_or_else(|| err(path, format!("unexpected {line:?}")))?;
    if w != workers {
        return Err(err(
            path,
            format!(
                "the running process has {w} workers and this config {workers}: they must match"
            ),
        ));
    }
    // Port 0 in the config means "whatever was bound": compare addresses only then.
    let same = sent_addrs.len() == addrs.len()
        && sent_addrs
            .iter()
            .zip(addrs)
            .all(|(a, b)| a.ip() == b.ip() && (b.port() == 0 || a.port() == b.port()));
    if !same {
        return Err(err(
            path,
            format!("the running process listens on {sent_addrs:?}, this config on {addrs:?}"),
        ));
    }
    if fds.len() != workers * addrs.len() {
        return Err(err(
            path,
            format!(
                "{} descriptors for {} listeners",
                fds.len(),
                workers * addrs.len()
            ),
        ));
    }
    let mut it = fds.into_iter();
    let per_worker = (0..workers)
        .map(|_| {
            (0..addrs.len())
                .filter_map(|_| it.next().map(TcpListener::from))
                .collect()
        })
        .collect();
    Ok((per_worker, stream))
}

fn parse_header(line: &str) -> Option<(usize, Vec<SocketAddr>)> {
    let rest = line.strip_prefix("ringway-upgrade 1 workers=")?;
    let (w, addrs) = rest.split_once(" addrs=")?;
    let addrs = if addrs.is_empty() {
        Vec::new()
    } else {
        addrs
            .split(',')
            .map(|a| a.parse().ok())
            .collect::<Option<Vec<_>>>()?
    };
    Some((w.parse().ok()?, addrs))
}

/// The successor's side, once its workers serve: tells the running process to drain.
pub fn confirm(mut stream: UnixStream, path: &str) -> Result<(), RunError> {
    stream
        .write_all(b"ready\n")
        .map_err(|e| err(path, format!("cannot confirm: {e}")))?;
    let mut line = String::new();
    let _ = BufReader::new(&stream).read_line(&mut line);
    if line.trim() != "bye" {
        log::warn!("{path}: the previous process did not acknowledge the upgrade ({line:?})");
    }
    Ok(())
}

/// The running process's side: waits for a successor on `path` (on its own thread) and
/// hands it `listeners` (worker-major, `addrs` order); `drain` starts this process's drain
/// once the successor serves. A stale socket file from a dead process is replaced.
pub fn serve(
    path: String,
    listeners: Vec<TcpListener>,
    workers: usize,
    addrs: Vec<SocketAddr>,
    drain: impl Fn() + Send + 'static,
) -> Result<(), RunError> {
    if UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let unix = UnixListener::bind(&path).map_err(|e| err(&path, format!("cannot listen: {e}")))?;
    let fds: Vec<_> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let head = header(workers, &addrs);
    thread::Builder::new()
        .name("ringway-upgrade".into())
        .spawn(move || {
            // `listeners` stay open here (so are the descriptors in `fds`) until handed over.
            let _keep = listeners;
            for conn in unix.incoming() {
                let Ok(mut conn) = conn else { continue };
                if let Err(e) = crate::sys::send_fds(conn.as_raw_fd(), head.as_bytes(), &fds) {
                    log::error!("upgrade: cannot hand over the listeners: {e}");
                    continue;
                }
                let _ = conn.set_read_timeout(Some(WAIT));
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                if line.trim() != "ready" {
                    log::error!("upgrade: the new process did not start ({line:?}); still serving");
                    continue;
                }
                let _ = std::fs::remove_file(&path);
                let _ = conn.write_all(b"bye\n");
                log::info!("upgrade: the new process serves; draining this one");
                drain();
                return;
            }
        })
        .map_err(RunError::Signals)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:80".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
        ];
        let h = header(2, &addrs);
        assert_eq!(parse_header(h.trim_end()), Some((2, addrs)));
        assert_eq!(
            parse_header("ringway-upgrade 1 workers=1 addrs="),
            Some((1, vec![]))
        );
        assert_eq!(parse_header("hello"), None);
    }
}
