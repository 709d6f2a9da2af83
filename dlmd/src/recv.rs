//! Receiving many messages in one system call: `recvmmsg(2)`, which
//! rustix does not wrap. A batch of requests from a pipelining client
//! costs one system call instead of one per message plus a final EAGAIN;
//! a synchronous client's single request costs one call instead of two.
//!
//! # Safety
//! The one `unsafe` call hands the kernel a table of message headers
//! whose I/O vectors point into buffers owned by the same heap block
//! ([`RecvBatch`] is only used behind a `Box`, so the pointers set at
//! construction stay valid); the kernel writes at most `RBUF` bytes into
//! each buffer and fills `msg_len`/`msg_flags`.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Messages received per call.
pub const BATCH: usize = 64;
/// Room per message: more than the largest valid message, so that an
/// over-long one is recognised by MSG_TRUNC.
pub const RBUF: usize = 512;

/// Buffers and headers for one `recvmmsg` call.
pub struct RecvBatch {
    bufs: [[u8; RBUF]; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    count: usize,
}

impl RecvBatch {
    /// A batch on the heap, its headers pointing at its buffers.
    pub fn new() -> Box<RecvBatch> {
        // SAFETY: iovec is a plain C struct; all-zero bytes are a valid
        // value (null pointer, zero length).
        let iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: mmsghdr is a plain C struct; all-zero bytes are a valid
        // value (null pointers, zero lengths and flags).
        let hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut b = Box::new(RecvBatch {
            bufs: [[0; RBUF]; BATCH],
            iovs,
            hdrs,
            count: 0,
        });
        for i in 0..BATCH {
            b.iovs[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.iovs[i].iov_len = RBUF;
            let iov: *mut libc::iovec = &mut b.iovs[i];
            b.hdrs[i].msg_hdr.msg_iov = iov;
            b.hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        b
    }

    /// Receives up to `max` (at most [`BATCH`]) queued messages without
    /// blocking; returns how many. A zero-length entry is an empty message
    /// or the end of the stream.
    ///
    /// # Errors
    /// The errno of `recvmmsg` (EAGAIN when nothing is queued).
    pub fn recv(&mut self, fd: BorrowedFd<'_>, max: usize) -> rustix::io::Result<usize> {
        let max = max.clamp(1, BATCH);
        // Nothing to reset: the kernel sets `msg_len` and `msg_flags` of
        // each message it receives, and `get` reads no other entry.
        // SAFETY: `hdrs[..max]` are initialised headers whose single iovec
        // each points at a live RBUF-byte buffer of this same boxed batch;
        // no name or control buffer is passed; the timeout is NULL.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(rustix::io::Errno::from_raw_os_error(
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO),
            ));
        }
        self.count = (n as usize).min(max);
        Ok(self.count)
    }

    /// Message `i` of the last call: its bytes (at most [`RBUF`]) and
    /// whether it was longer than that.
    pub fn get(&self, i: usize) -> (&[u8], bool) {
        if i >= self.count {
            return (&[], false);
        }
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(RBUF);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || h.msg_len as usize > RBUF;
        (&self.bufs[i][..len], truncated)
    }
}
