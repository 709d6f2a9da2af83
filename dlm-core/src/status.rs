//! [`Status`]: the outcome of an accepted lock operation, as it arrives in
//! a completion callback (`sb_status`).

use core::fmt;

/// A lock status as the application sees it in `lksb.sb_status`
/// (positive values; the device carries them negated).
///
/// Statuses are outcomes, not failures: an unlock that worked is
/// [`Status::UNLOCKED`], a refused NOQUEUE request is [`Status::AGAIN`].
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(i32);

impl Status {
    /// Granted (or converted).
    pub const GRANTED: Status = Status(0);
    /// A NOQUEUE request or conversion could not be granted at once.
    pub const AGAIN: Status = Status(libc::EAGAIN);
    /// A conversion deadlock was detected, or a deadlock-cancel happened.
    pub const DEADLOCK: Status = Status(libc::EDEADLK);
    /// A lock timeout expired (kernels before 6.4 only).
    pub const TIMEDOUT: Status = Status(libc::ETIMEDOUT);
    /// The request was cancelled (`DLM_ECANCEL`).
    pub const CANCELLED: Status = Status(dlm_sys::DLM_ECANCEL as i32);
    /// The lock was unlocked (`DLM_EUNLOCK`).
    pub const UNLOCKED: Status = Status(dlm_sys::DLM_EUNLOCK as i32);
    /// libdlm's marker for an operation still in progress (`EINPROG`).
    pub const IN_PROGRESS: Status = Status(0x10003);

    /// Wraps a positive status value, as found in `lksb.sb_status`.
    pub const fn from_raw(raw: i32) -> Status {
        Status(raw)
    }

    /// The positive value stored in `lksb.sb_status`.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// Converts the negative value the kernel device carries in a result.
    pub const fn from_kernel(raw: i32) -> Status {
        Status(raw.wrapping_neg())
    }

    /// The negative value the kernel device carries in a result.
    pub const fn to_kernel(self) -> i32 {
        self.0.wrapping_neg()
    }

    /// Whether this status means "granted".
    pub const fn is_granted(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({} {})", self.0, self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Status::GRANTED => f.write_str("granted"),
            Status::AGAIN => f.write_str("EAGAIN"),
            Status::DEADLOCK => f.write_str("EDEADLK"),
            Status::TIMEDOUT => f.write_str("ETIMEDOUT"),
            Status::CANCELLED => f.write_str("ECANCEL"),
            Status::UNLOCKED => f.write_str("EUNLOCK"),
            Status::IN_PROGRESS => f.write_str("EINPROG"),
            Status(other) => write!(f, "status {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(Status::UNLOCKED.raw(), 65538);
        assert_eq!(Status::CANCELLED.raw(), 65537);
        assert_eq!(Status::from_kernel(-65538), Status::UNLOCKED);
        assert_eq!(Status::AGAIN.to_kernel(), -11);
        assert!(Status::from_kernel(0).is_granted());
    }
}
