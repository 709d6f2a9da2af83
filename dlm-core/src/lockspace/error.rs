//! [`Error`]: why a lock operation did not succeed.

use super::*;

/// Why a lock operation did not succeed.
///
/// ```no_run
/// use dlm_core::{Error, LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// match ls.try_lock(b"r", Mode::Ex, LockOptions::new()) {
///     Ok(lock) => println!("got it: {}", lock.id()),
///     Err(Error::WouldBlock) => println!("held elsewhere"),
///     Err(e) => eprintln!("failed: {e} (errno {})", e.errno().raw()),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be granted at once (NOQUEUE; `EAGAIN`).
    WouldBlock,
    /// A conversion deadlock, or a deadlock-cancel (`EDEADLK`).
    Deadlock,
    /// The request was cancelled (`DLM_ECANCEL`).
    Cancelled,
    /// The wait timed out; the request was cancelled.
    TimedOut,
    /// The wait was interrupted (the `wake` fd of
    /// [`Lockspace::lock_until`] became readable); the request was
    /// cancelled (`EINTR`).
    Interrupted,
    /// The lock or lockspace is busy (`EBUSY`): a conversion is already
    /// pending, or the lockspace still has locks or openers.
    Busy,
    /// The call failed with this errno.
    Sys(Errno),
}

impl Error {
    pub(super) fn from_status(status: Status) -> Error {
        match status {
            Status::AGAIN => Error::WouldBlock,
            Status::DEADLOCK => Error::Deadlock,
            Status::CANCELLED => Error::Cancelled,
            Status::TIMEDOUT => Error::TimedOut,
            other => Error::Sys(Errno::from_raw(other.raw())),
        }
    }

    /// The errno that the C API would report for this error.
    pub fn errno(self) -> Errno {
        match self {
            Error::WouldBlock => Errno::EAGAIN,
            Error::Deadlock => Errno::EDEADLK,
            Error::Cancelled => Errno::from_raw(Status::CANCELLED.raw()),
            Error::TimedOut => Errno::ETIMEDOUT,
            Error::Interrupted => Errno::EINTR,
            Error::Busy => Errno::EBUSY,
            Error::Sys(e) => e,
        }
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Error {
        if e == Errno::EBUSY {
            Error::Busy
        } else {
            Error::Sys(e)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => f.write_str("lock is held in an incompatible mode"),
            Error::Deadlock => f.write_str("conversion deadlock"),
            Error::Cancelled => f.write_str("request cancelled"),
            Error::TimedOut => f.write_str("timed out waiting for the lock"),
            Error::Interrupted => f.write_str("interrupted while waiting for the lock"),
            Error::Busy => f.write_str("busy"),
            Error::Sys(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}
