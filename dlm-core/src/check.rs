//! Argument checks with the kernel's rules and errnos (docs/semantics.md C.3).
//!
//! These are the checks that need no lock state; the lock manager (the
//! kernel, or `dlm-engine`) applies the state-dependent ones (EBUSY on a
//! lock that is not granted, the QUECVT matrix against the granted mode,
//! ENOENT for unknown ids). The order of the checks is the kernel's, so
//! that a request with several faults gets the kernel's errno.

use crate::{Errno, LockFlags, Mode, NAME_MAX};

/// The flags an unlock, cancel or deadlock-cancel may carry (C.3.4).
pub const UNLOCK_FLAGS: LockFlags = LockFlags::CANCEL
    .union(LockFlags::VALBLK)
    .union(LockFlags::IVVALBLK)
    .union(LockFlags::FORCEUNLOCK);

/// Checks a lock request or conversion (the kernel's `set_lock_args`,
/// C.3.2) and returns its mode.
///
/// `namelen` is ignored for conversions. `has_lvb_buffer` says whether
/// the caller supplied an LVB buffer (device users always have one: the
/// kernel allocates it).
///
/// # Errors
/// EINVAL for: a mode outside 0..=5; a name over 64 bytes on a new
/// request; CANCEL; QUECVT or CONVDEADLK without CONVERT; CONVDEADLK with
/// NOQUEUE; EXPEDITE with CONVERT, QUECVT, NOQUEUE or a mode other than
/// NL; VALBLK without an LVB buffer. Unknown flag bits, TIMEOUT,
/// NODLCKBLK, ALTPR together with ALTCW and IVVALBLK are accepted.
pub fn check_lock_args(
    mode: i64,
    flags: LockFlags,
    namelen: usize,
    has_lvb_buffer: bool,
) -> Result<Mode, Errno> {
    let mode = Mode::from_raw(mode)?;
    let convert = flags.contains(LockFlags::CONVERT);
    let invalid = (!convert && namelen > NAME_MAX)
        || flags.contains(LockFlags::CANCEL)
        || (flags.contains(LockFlags::QUECVT) && !convert)
        || (flags.contains(LockFlags::CONVDEADLK) && !convert)
        || flags.contains(LockFlags::CONVDEADLK | LockFlags::NOQUEUE)
        || (flags.contains(LockFlags::EXPEDITE)
            && (flags.intersects(LockFlags::CONVERT | LockFlags::QUECVT | LockFlags::NOQUEUE)
                || mode != Mode::Nl))
        || (flags.contains(LockFlags::VALBLK) && !has_lvb_buffer);
    if invalid {
        Err(Errno::EINVAL)
    } else {
        Ok(mode)
    }
}

/// Checks the flags of an unlock, cancel or deadlock-cancel (the
/// kernel's `set_unlock_args`, C.3.4).
///
/// # Errors
/// EINVAL for any flag other than CANCEL, VALBLK, IVVALBLK and
/// FORCEUNLOCK (so LKF_WAIT or CONVERT too), and for CANCEL together with
/// FORCEUNLOCK.
pub fn check_unlock_flags(flags: LockFlags) -> Result<(), Errno> {
    if !UNLOCK_FLAGS.contains(flags) || flags.contains(LockFlags::CANCEL | LockFlags::FORCEUNLOCK) {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockFlags as F;

    fn lock(mode: i64, flags: LockFlags) -> Result<Mode, Errno> {
        check_lock_args(mode, flags, 1, true)
    }

    #[test]
    fn modes() {
        assert_eq!(lock(5, F::empty()), Ok(Mode::Ex));
        assert_eq!(lock(6, F::empty()), Err(Errno::EINVAL));
        assert_eq!(lock(-1, F::empty()), Err(Errno::EINVAL));
        assert_eq!(lock(261, F::empty()), Err(Errno::EINVAL));
    }

    #[test]
    fn name_lengths() {
        assert!(check_lock_args(0, F::empty(), 64, true).is_ok());
        assert!(check_lock_args(0, F::empty(), 0, true).is_ok());
        assert_eq!(check_lock_args(0, F::empty(), 65, true), Err(Errno::EINVAL));
        // A conversion carries no name; its length is not looked at.
        assert!(check_lock_args(0, F::CONVERT, 65, true).is_ok());
    }

    #[test]
    fn flag_combinations() {
        let bad = [
            (0, F::CANCEL),
            (3, F::QUECVT),
            (3, F::CONVDEADLK),
            (3, F::CONVERT | F::CONVDEADLK | F::NOQUEUE),
            (0, F::EXPEDITE | F::NOQUEUE),
            (3, F::EXPEDITE),
            (0, F::EXPEDITE | F::CONVERT),
            (0, F::EXPEDITE | F::QUECVT | F::CONVERT),
        ];
        for (mode, flags) in bad {
            assert_eq!(lock(mode, flags), Err(Errno::EINVAL), "{flags:?}");
        }
        let good = [
            (0, F::EXPEDITE),
            (0, F::EXPEDITE | F::VALBLK),
            (3, F::CONVERT | F::QUECVT),
            (5, F::CONVERT | F::CONVDEADLK),
            (2, F::ALTPR | F::ALTCW),
            (3, F::IVVALBLK | F::TIMEOUT | F::NODLCKBLK),
            (3, F::PERSISTENT | F::ORPHAN),
            (3, F::from_bits_retain(0x0100_0000)),
        ];
        for (mode, flags) in good {
            assert!(lock(mode, flags).is_ok(), "{flags:?}");
        }
    }

    #[test]
    fn valblk_needs_a_buffer() {
        assert_eq!(check_lock_args(3, F::VALBLK, 1, false), Err(Errno::EINVAL));
        assert!(check_lock_args(3, F::empty(), 1, false).is_ok());
    }

    #[test]
    fn unlock_flags() {
        assert!(check_unlock_flags(F::empty()).is_ok());
        assert!(check_unlock_flags(F::CANCEL).is_ok());
        assert!(check_unlock_flags(F::FORCEUNLOCK | F::VALBLK | F::IVVALBLK).is_ok());
        assert_eq!(check_unlock_flags(F::CONVERT), Err(Errno::EINVAL));
        assert_eq!(check_unlock_flags(F::WAIT), Err(Errno::EINVAL));
        assert_eq!(
            check_unlock_flags(F::CANCEL | F::FORCEUNLOCK),
            Err(Errno::EINVAL)
        );
    }
}
