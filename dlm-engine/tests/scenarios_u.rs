//! docs/semantics.md D.3, unlock and cancel scenarios U1–U9 (U4 in its corrected
//! form), plus the related end-of-life and pointer rules of C.6 / A.5.

mod common;

use common::*;
use dlm_core::{Errno, LockFlags as F, Request, SbFlags, Status};

#[test]
fn u1_cancel_waiting_request_ends_it() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let w = t.take(o2, "r", PR, NONE);
    assert_eq!(t.cancel(o2, w), Ok(0));
    t.cast(o2, w, Status::CANCELLED, SbFlags::empty());
    assert_eq!(t.unlock(o2, w, NONE), Err(Errno::ENOENT));
}

/// U2 / U4 setup: O1 PR, O2 PR, CONV(O2 → EX) queued.
fn converting(t: &mut T) -> (O, u32, O, u32) {
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    let b = t.hold(o2, "r", PR, NONE);
    assert_eq!(t.conv(o2, b, EX, NONE), Ok(0));
    t.bast(o1, a, EX);
    (o1, a, o2, b)
}

#[test]
fn u2_cancel_conversion_keeps_granted_mode() {
    let mut t = T::new();
    let (_o1, _a, o2, b) = converting(&mut t);
    assert_eq!(t.cancel(o2, b), Ok(0));
    t.cast(o2, b, Status::CANCELLED, SbFlags::empty());
    let o3 = t.open();
    let c = t.take(o3, "r", CW, F::NOQUEUE);
    t.cast(o3, c, Status::AGAIN, SbFlags::empty());
    assert_eq!(t.conv(o2, b, CR, NONE), Ok(0));
    t.granted(o2, b);
}

#[test]
fn u3_cancel_with_nothing_to_cancel() {
    let mut t = T::new();
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, NONE);
    assert_eq!(t.cancel(o1, a), Ok(0));
    t.nothing(o1);
    // It can be repeated: no cancel happened, so none is remembered.
    assert_eq!(t.cancel(o1, a), Ok(0));
    t.nothing(o1);
}

#[test]
fn u4_repeated_cancel_is_einval() {
    let mut t = T::new();
    let (_o1, _a, o2, b) = converting(&mut t);
    assert_eq!(t.cancel(o2, b), Ok(0));
    t.cast(o2, b, Status::CANCELLED, SbFlags::empty());
    assert_eq!(t.cancel(o2, b), Err(Errno::EINVAL));
    t.nothing(o2);
    // A new conversion clears the mark: a later cancel works again.
    assert_eq!(t.conv(o2, b, EX, NONE), Ok(0));
    assert_eq!(t.cancel(o2, b), Ok(0));
    t.cast(o2, b, Status::CANCELLED, SbFlags::empty());
}

#[test]
fn u5_plain_unlock_of_waiting_request() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let w = t.take(o2, "r", PR, NONE);
    assert_eq!(t.unlock(o2, w, NONE), Ok(0));
    t.cast(o2, w, Status::UNLOCKED, SbFlags::empty());
    t.nothing(o2);
}

#[test]
fn u5_plain_unlock_of_conversion() {
    let mut t = T::new();
    let (o1, a, o2, b) = converting(&mut t);
    assert_eq!(t.unlock(o2, b, NONE), Ok(0));
    t.cast(o2, b, Status::UNLOCKED, SbFlags::empty());
    // O2's PR is gone: O1 may now convert to EX at once.
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    t.granted(o1, a);
}

#[test]
fn u6_unlock_flag_rules() {
    let mut t = T::new();
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, NONE);
    assert_eq!(t.unlock(o1, a, F::CONVERT), Err(Errno::EINVAL));
    assert_eq!(
        t.unlock(o1, a, F::CANCEL | F::FORCEUNLOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(t.unlock(o1, a, F::WAIT), Err(Errno::EINVAL));
    t.nothing(o1);
    assert_eq!(t.unlock(o1, a, NONE), Ok(0));
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
}

#[test]
fn u7_deadlock_cancel_of_conversion() {
    let mut t = T::new();
    let (_o1, _a, o2, b) = converting(&mut t);
    let req = Request::Deadlock {
        lkid: b,
        flags: NONE,
    };
    assert_eq!(t.write(o2, req), Ok(0));
    t.cast(o2, b, Status::DEADLOCK, SbFlags::empty());
    // Still PR.
    assert!(!t.probe("r", CW));
    assert_eq!(t.conv(o2, b, NL, NONE), Ok(0));
    t.granted(o2, b);
}

#[test]
fn u8_deadlock_cancel_of_waiting_request() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let w = t.take(o2, "r", PR, NONE);
    let req = Request::Deadlock {
        lkid: w,
        flags: NONE,
    };
    assert_eq!(t.write(o2, req), Ok(0));
    t.cast(o2, w, Status::DEADLOCK, SbFlags::empty());
    assert_eq!(t.unlock(o2, w, NONE), Err(Errno::ENOENT));
    assert_eq!(t.write(o2, req), Err(Errno::ENOENT));
}

#[test]
fn u8_deadlock_cancel_mark_survives_on_granted_lock() {
    // C.6.4 quirk: nothing to cancel, but the next real cancel reports
    // EDEADLK instead of ECANCEL.
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    t.hold(o2, "r", PR, NONE);
    let req = Request::Deadlock {
        lkid: a,
        flags: NONE,
    };
    assert_eq!(t.write(o1, req), Ok(0));
    t.nothing(o1);
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    assert_eq!(t.cancel(o1, a), Ok(0));
    t.cast(o1, a, Status::DEADLOCK, SbFlags::empty());
}

#[test]
fn u9_end_of_life_ids_are_enoent() {
    let mut t = T::new();
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, NONE);
    assert_eq!(t.unlock(o1, a, NONE), Ok(0));
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    assert_eq!(t.unlock(o1, a, NONE), Err(Errno::ENOENT));
    assert_eq!(t.cancel(o1, a), Err(Errno::ENOENT));
    assert_eq!(t.conv(o1, a, PR, NONE), Err(Errno::ENOENT));
}

#[test]
fn force_unlock_of_waiting_request() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let w = t.take(o2, "r", PR, NONE);
    assert_eq!(t.unlock(o2, w, F::FORCEUNLOCK), Ok(0));
    t.cast(o2, w, Status::UNLOCKED, SbFlags::empty());
}

#[test]
fn unlock_pointer_rules() {
    // A.5: an unlock replaces user_lksb always and castparam only when
    // non-zero; never castaddr.
    let mut t = T::new();
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, NONE);
    let mut p = unlock_params(a, NONE);
    p.castparam = 0;
    p.castaddr = 0x7777;
    p.lksb = 0x5555;
    assert_eq!(t.write(o1, Request::Unlock(p)), Ok(0));
    let r = t.read(o1).unwrap();
    assert_eq!(
        (r.astaddr, r.astparam, r.user_lksb, r.status),
        (CASTADDR, CASTPARAM, 0x5555, Status::UNLOCKED)
    );
    let b = t.hold(o1, "r", EX, NONE);
    let mut p = unlock_params(b, NONE);
    p.castparam = 0x6666;
    assert_eq!(t.write(o1, Request::Unlock(p)), Ok(0));
    let r = t.read(o1).unwrap();
    assert_eq!((r.astaddr, r.astparam), (CASTADDR, 0x6666));
}
