//! [`Errno`]: the error type of every failing DLM operation.
//!
//! A failure is an errno value, exactly as the kernel's `write()` or the
//! C library reports it. Lock *outcomes* (granted, unlocked, cancelled,
//! EAGAIN on a NOQUEUE request…) are not failures: they are a
//! [`Status`](crate::Status).

use core::fmt;

/// An errno value (positive), as the kernel device or libdlm reports it.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// No such lock, lockspace, orphan or device.
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    /// Interrupted system call.
    pub const EINTR: Errno = Errno(libc::EINTR);
    /// Input/output error (also: a panic stopped at the C ABI boundary).
    pub const EIO: Errno = Errno(libc::EIO);
    /// Try again (an orphan exists in another mode; nothing to read yet).
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    /// Permission denied.
    pub const EACCES: Errno = Errno(libc::EACCES);
    /// Bad address.
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    /// Busy: the lock is not in a state that allows this, or the
    /// lockspace still has locks or openers.
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    /// Already exists (lockspace created with NEWEXCL; thread started).
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    /// Too many open files (a dlmd connection past its uid's limit).
    pub const EMFILE: Errno = Errno(libc::EMFILE);
    /// No such device.
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    /// Resource deadlock avoided.
    pub const EDEADLK: Errno = Errno(libc::EDEADLK);
    /// Function not implemented.
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// Protocol driver not attached (the cluster daemon is not running).
    pub const EUNATCH: Errno = Errno(libc::EUNATCH);
    /// Invalid exchange: the device interface version does not match.
    pub const EBADE: Errno = Errno(libc::EBADE);
    /// Protocol error: a malformed result or reply.
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    /// Protocol not supported: a client and dlmd of different wire
    /// protocol versions.
    pub const EPROTONOSUPPORT: Errno = Errno(libc::EPROTONOSUPPORT);
    /// Not connected: no handle, or the lock manager went away.
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    /// Connection refused (a stale dlmd socket).
    pub const ECONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    /// Timed out.
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

    /// Wraps a raw, positive errno value.
    pub const fn from_raw(raw: i32) -> Errno {
        Errno(raw)
    }

    /// The raw, positive errno value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// Interprets a kernel-style return value: negative values are
    /// `-errno`, everything else is success.
    pub fn from_ret(ret: i64) -> Result<u32, Errno> {
        if ret < 0 {
            Err(Errno(i32::try_from(-ret).unwrap_or(libc::EINVAL)))
        } else {
            Ok(u32::try_from(ret).unwrap_or(u32::MAX))
        }
    }

    /// The errno of an I/O error; EIO when it carries none.
    pub fn from_io(err: &std::io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The calling thread's current `errno`.
    pub fn last() -> Errno {
        Errno::from_io(&std::io::Error::last_os_error())
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; keep only the message.
        let msg = text.split(" (os error").next().unwrap_or(&text);
        f.write_str(msg)
    }
}

impl std::error::Error for Errno {}

/// A failed system call of rustix, which dlm-core's transports use: the
/// same errno.
impl From<rustix::io::Errno> for Errno {
    #[inline]
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_returns() {
        assert_eq!(Errno::from_ret(-22), Err(Errno::EINVAL));
        assert_eq!(Errno::from_ret(7), Ok(7));
        assert_eq!(Errno::EBUSY.to_string(), "Device or resource busy");
        assert_eq!(Errno::EINVAL.raw(), 22);
        assert_eq!(Errno::from(rustix::io::Errno::BUSY), Errno::EBUSY);
    }
}
