//! The few raw syscalls ringway needs that no safe wrapper offers. Each `unsafe` block is
//! one syscall on a file descriptor the caller owns, or the one allocator call that hands
//! free pages back to the OS (madvise underneath); nothing else lives here.

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
