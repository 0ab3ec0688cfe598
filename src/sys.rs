//! The few raw syscalls ringway needs that no safe wrapper offers. Each `unsafe` block is
//! one syscall on a file descriptor the caller owns, or the one allocator call that hands
//! free pages back to the OS (madvise underneath), or the page size; nothing else lives
//! here.
//!
//! Where it sits: a leaf (it imports nothing of the crate).

use std::os::fd::RawFd;

/// True when an idle pooled upstream socket must not be reused: the peer closed it (EOF),
/// reset it, or sent unsolicited bytes. A non-blocking `MSG_PEEK` never consumes data.
pub fn idle_socket_unusable(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call;
    // the buffer is one valid, writable byte on our stack; MSG_DONTWAIT makes it non-blocking.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        // Would block: idle and healthy. Anything else (reset, bad fd): unusable.
        !matches!(err.kind(), std::io::ErrorKind::WouldBlock)
    } else {
        // 0 = orderly close; >0 = bytes nobody asked for.
        true
    }
}

/// Returns the calling thread's free allocator pages to the OS now, instead of when the
/// allocator next runs (which, on an idle worker, may be never). A no-op when the binary's
/// global allocator is not mimalloc: this thread's mimalloc heap is then empty.
pub fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers and has no preconditions; it only walks and
    // purges the calling thread's own mimalloc heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The process's resident memory in bytes (`/proc/self/statm`), or None where it cannot
/// be read.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes no pointers; _SC_PAGESIZE is a valid name on every Linux.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0)?)
}

/// `SO_ATTACH_REUSEPORT_CBPF` (51 in asm-generic/socket.h; the libc crate defines it for
/// Android only). Sparc numbers its socket options differently: there it is `Unsupported`.
const SO_ATTACH_REUSEPORT_CBPF: Option<libc::c_int> =
    if cfg!(any(target_arch = "sparc", target_arch = "sparc64")) {
        None
    } else {
        Some(51)
    };

/// Attaches a classic BPF program to the SO_REUSEPORT group of `fd` that picks the socket
/// at index `hash(source IP) % n`, so every connection from one client address lands on the
/// same socket. The index is the order in which the group's sockets started listening. The
/// program runs in the kernel once per SYN; accept and the request path are unchanged.
/// Replaces any program already attached to the group. `n` must be at least 1.
pub fn steer_reuseport_by_source(fd: RawFd, n: u32) -> std::io::Result<()> {
    let Some(optname) = SO_ATTACH_REUSEPORT_CBPF else {
        return Err(std::io::ErrorKind::Unsupported.into());
    };
    if n == 0 {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let mut prog = steer_program(n);
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_mut_ptr(),
    };
    // `fprog` points to `prog`, a live array of `len` instructions; the kernel copies both
    // before returning.
    set_socket_option(fd, optname, &fprog)
}

/// `setsockopt(fd, SOL_SOCKET, name, value)`. `value` must be the plain C struct or integer
/// the option takes, holding no pointer that is not valid for the duration of the call.
fn set_socket_option<T>(fd: RawFd, name: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `fd` is a socket the caller owns for the duration of the call; `value` is a
    // live, initialised `T` and the length passed is exactly its size; the kernel copies it
    // before returning (the caller vouches for any pointer inside it).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The steering program. In a reuseport program the packet data starts after the TCP
/// header (a SYN has none), so addresses are read relative to the IP header (`SKF_NET_OFF`).
/// IPv4: the source word at +12. IPv6: the XOR of the four source words at +8..+24. The
/// word is then mixed (Fibonacci multiply, xor-shift) so that addresses differing only in
/// low bits spread, and reduced `mod n`.
fn steer_program(n: u32) -> [libc::sock_filter; 21] {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MISC, BPF_MOD,
        BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR,
    };
    const fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    const fn stmt(code: u32, k: u32) -> libc::sock_filter {
        op(code, 0, 0, k)
    }
    let net = libc::SKF_NET_OFF as u32;
    let ld_word = |off: u32| stmt(BPF_LD | BPF_W | BPF_ABS, net.wrapping_add(off));
    let tax = stmt(BPF_MISC | BPF_TAX, 0);
    let xor_x = stmt(BPF_ALU | BPF_XOR | BPF_X, 0);
    [
        // 0-2: A = IP version; IPv6 goes on to 3, anything else jumps to 14.
        stmt(BPF_LD | BPF_B | BPF_ABS, net),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 4),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 11, 6),
        // 3-13: A = XOR of the four IPv6 source words, then skip the IPv4 load.
        ld_word(8),
        tax,
        ld_word(12),
        xor_x,
        tax,
        ld_word(16),
        xor_x,
        tax,
        ld_word(20),
        xor_x,
        stmt(BPF_JMP | BPF_JA, 1),
        // 14: A = IPv4 source.
        ld_word(12),
        // 15-20: A = (A * K) ^ ((A * K) >> 16), reduced to a socket index.
        stmt(BPF_ALU | BPF_MUL | BPF_K, 0x9E37_79B1),
        tax,
        stmt(BPF_ALU | BPF_RSH | BPF_K, 16),
        xor_x,
        stmt(BPF_ALU | BPF_MOD | BPF_K, n),
        stmt(BPF_RET | BPF_A, 0),
    ]
}

/// Most listener descriptors handed over in one upgrade.
pub const MAX_PASSED_FDS: usize = 250;

/// A message header over the one buffer `iov` points at, with `control` sized for the
/// ancillary data of `fds` descriptors. Both must outlive every use of the header.
fn msghdr(iov: &mut libc::iovec, control: &mut Vec<u8>, fds: usize) -> libc::msghdr {
    let payload = (fds * std::mem::size_of::<RawFd>()) as u32;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    control.clear();
    control.resize(space, 0);
    // SAFETY: msghdr is plain data; zero is a valid initial value for every field.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    msg
}

/// Sends `fds` over the connected Unix stream `sock` with SCM_RIGHTS, along with `data`
/// (at least one byte, as the kernel requires for ancillary data).
pub fn send_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    if fds.len() > MAX_PASSED_FDS || data.is_empty() {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let payload = std::mem::size_of_val(fds) as u32;
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = Vec::new();
    let msg = msghdr(&mut iov, &mut control, fds.len());
    // SAFETY: `msg` points at `control`, which is CMSG_SPACE(payload) bytes long, so the
    // first header and its payload of `fds.len()` descriptors fit; CMSG_FIRSTHDR is non-null
    // for a buffer that large. The copy writes exactly `payload` bytes into CMSG_DATA.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            payload as usize,
        );
    }
    // SAFETY: `sock` is a connected Unix socket the caller owns; `msg` and everything it
    // points at (iov over `data`, `control`) live until the call returns.
    let n = unsafe { libc::sendmsg(sock, &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message with up to `MAX_PASSED_FDS` descriptors from the connected Unix
/// stream `sock`: its bytes (up to `data.len()`) and the descriptors, each now owned by us
/// (close-on-exec).
pub fn recv_fds(
    sock: RawFd,
    data: &mut [u8],
) -> std::io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use std::os::fd::FromRawFd;
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = Vec::new();
    let mut msg = msghdr(&mut iov, &mut control, MAX_PASSED_FDS);
    // SAFETY: `sock` is a connected Unix socket the caller owns; `msg` points at `data`
    // and `control`, both valid and writable for their lengths until the call returns.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` up to msg_controllen; CMSG_FIRSTHDR/NXTHDR walk
    // only within it, and each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4
    // descriptors that the kernel just installed in this process for us to own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = len / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(std::os::fd::OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(std::io::Error::other("too many descriptors in one message"));
    }
    Ok((n as usize, fds))
}

/// Blocks the signals ringway handles (SIGTERM, SIGINT, SIGHUP, SIGUSR1) in the calling
/// thread, so the kernel delivers them to a thread that is not a worker: a worker's
/// io_uring wait is then never interrupted by one.
pub fn block_handled_signals() {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise and fill the set on
    // our stack; pthread_sigmask only changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Makes the next close of socket `fd` abort the connection with a TCP reset instead of an
/// orderly FIN (`SO_LINGER` on with a zero timeout), dropping whatever its send buffer
/// still holds. Used for a client abandoned after a write timeout, and by the bundled
/// origin's `reset` fault mode.
pub fn reset_on_close(fd: RawFd) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_socket_option(fd, libc::SO_LINGER, &linger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn steering_a_socket_outside_a_reuseport_group_fails() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(steer_reuseport_by_source(plain.as_raw_fd(), 2).is_err());
    }

    #[test]
    fn steering_over_zero_sockets_is_refused() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = steer_reuseport_by_source(plain.as_raw_fd(), 0).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
