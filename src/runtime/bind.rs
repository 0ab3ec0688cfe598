//! Listener sockets. All are created on the main thread before any worker starts: one
//! SO_REUSEPORT socket per (address, worker), so the kernel spreads connections across
//! workers, and a port of 0 resolves once and is shared by every worker.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use super::RunError;

/// `result[w]` holds worker w's listeners, in `addrs` order.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
    backlog: u32,
) -> Result<Vec<Vec<TcpListener>>, RunError> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for &configured in addrs {
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
    }
    Ok(per_worker)
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
