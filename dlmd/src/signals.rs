//! Signals as a readable fd: SIGTERM and SIGINT (stop) and SIGHUP (reopen
//! the log file) are blocked and delivered through a `signalfd`, which the
//! event loop polls like any socket. No signal handler runs, so no async-signal-safety
//! questions arise.
//!
//! # Safety
//! This is dlmd's only `unsafe` code: three libc calls that rustix does
//! not wrap (`sigprocmask`-style masking and `signalfd`). Each is called
//! with a fully initialised signal set it owns, before any thread exists.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// The signals dlmd handles: SIGTERM and SIGINT stop it cleanly, SIGHUP
/// reopens the log file.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// SIGHUP's number, as [`read_signal`] returns it.
pub const SIGHUP: u32 = libc::SIGHUP as u32;

/// Blocks the handled signals for this (single-threaded) process and returns
/// a non-blocking signalfd that becomes readable when one arrives.
///
/// # Errors
/// The errno of `pthread_sigmask` or `signalfd`.
pub fn stop_signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: `sigset_t` is plain data; `sigemptyset` initialises it before
    // any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t owned by this frame; the
    // signal numbers are valid constants.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
    }
    // SAFETY: `set` is initialised; the old mask is not requested (NULL).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `set` is initialised; -1 asks for a new fd.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `signalfd` returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from the signalfd: its number, or `None` when
/// nothing is pending.
pub fn read_signal(fd: &OwnedFd) -> Option<u32> {
    let mut info = [0u8; size_of::<libc::signalfd_siginfo>()];
    match rustix::io::read(fd, &mut info) {
        Ok(n) if n == info.len() => Some(u32::from_ne_bytes([info[0], info[1], info[2], info[3]])),
        _ => None,
    }
}
