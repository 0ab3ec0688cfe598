//! Listener sockets. All are created on the main thread before any worker starts: one
//! SO_REUSEPORT socket per (address, worker), so the kernel spreads connections across
//! workers, and a port of 0 resolves once and is shared by every worker. Optionally a
//! kernel-side program steers each client address to one worker (see [`bind_all`]).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::RunError;

/// `result[w]` holds worker w's listeners, in `addrs` order.
///
/// With more than one worker, each address whose `steer` is true gets a program on its
/// group that sends every connection from one client IP to the same worker
/// (`sys::steer_reuseport_by_source`; the group's socket index i is worker i's, since
/// sockets listen in worker order). If that fails the result is `RunError::Steer` naming
/// the address and every socket is closed: the caller logs a warning and binds again
/// without steering (a port of 0 then resolves afresh). Steering assumes no other process
/// shares the port's reuseport group.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
    backlog: u32,
    steer: &[bool],
) -> Result<Vec<Vec<TcpListener>>, RunError> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, &configured) in addrs.iter().enumerate() {
        let mut addr = configured;
        for list in per_worker.iter_mut() {
            let l = bind_one(addr, backlog).map_err(|source| RunError::Bind {
                addr: configured,
                source,
            })?;
            if addr.port() == 0 {
                addr = l.local_addr().map_err(|source| RunError::Bind {
                    addr: configured,
                    source,
                })?;
            }
            list.push(l);
        }
        if steer.get(i).copied().unwrap_or(false) && workers > 1 {
            steer_group(&per_worker, configured)?;
        }
    }
    Ok(per_worker)
}

/// Attaches the steering program to the group of the address just bound (the last listener
/// of worker 0); the program applies to the whole group.
fn steer_group(per_worker: &[Vec<TcpListener>], configured: SocketAddr) -> Result<(), RunError> {
    let n = u32::try_from(per_worker.len()).unwrap_or(u32::MAX);
    let first = per_worker.first().and_then(|ls| ls.last());
    let result = match first {
        Some(l) => crate::sys::steer_reuseport_by_source(l.as_raw_fd(), n),
        None => Ok(()),
    };
    result.map_err(|source| RunError::Steer {
        addr: configured,
        source,
    })
}

fn bind_one(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(sock.into())
}
