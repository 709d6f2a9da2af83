//! docs/semantics.md D.2, grant and queueing scenarios E1–E34, with the
//! current-kernel (6.12) expectations and the corrected forms of
//! Appendix X. Each test is named after its scenario.

mod common;

use common::*;
use dlm_core::{Errno, LockFlags as F, Mode, Request, SbFlags, Status, Version};

const ALTMODE: SbFlags = SbFlags::ALTMODE;

#[test]
fn e1_compatibility_matrix() {
    // C.2, row = held, column = requested: NL CR CW PR PW EX.
    const C: [[bool; 6]; 6] = [
        [true, true, true, true, true, true],
        [true, true, true, true, true, false],
        [true, true, true, false, false, false],
        [true, true, false, true, false, false],
        [true, true, false, false, false, false],
        [true, false, false, false, false, false],
    ];
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    for h in Mode::ALL {
        for q in Mode::ALL {
            let name = format!("r{h}{q}");
            t.hold(o1, &name, h, NONE);
            let id = t.take(o2, &name, q, F::NOQUEUE);
            let want = if C[h as usize][q as usize] {
                Status::GRANTED
            } else {
                Status::AGAIN
            };
            t.cast(o2, id, want, SbFlags::empty());
        }
    }
}

#[test]
fn e2_noqueue_fails_without_bast() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let n = t.take(o2, "r", PR, F::NOQUEUE);
    assert!(n > 0);
    t.cast(o2, n, Status::AGAIN, SbFlags::empty());
    t.nothing(o1);
    assert_eq!(t.unlock(o2, n, NONE), Err(Errno::ENOENT));
}

#[test]
fn e3_noqueuebast_basts_holder() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", EX, NONE);
    let n = t.take(o2, "r", PR, F::NOQUEUE | F::NOQUEUEBAST);
    t.cast(o2, n, Status::AGAIN, SbFlags::empty());
    t.bast(o1, a, PR);
    t.nothing(o1);
}

#[test]
fn e4_waiter_granted_after_unlock() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", EX, NONE);
    let b = t.take(o2, "r", EX, NONE);
    t.nothing(o2);
    t.bast(o1, a, EX);
    assert_eq!(t.unlock(o1, a, NONE), Ok(0));
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    t.granted(o2, b);
    t.nothing(o1);
    t.nothing(o2);
}

#[test]
fn e5_one_bast_per_mode_level() {
    let mut t = T::new();
    let o = [t.open(), t.open(), t.open(), t.open()];
    let a = t.hold(o[0], "r", EX, NONE);
    t.take(o[1], "r", PR, NONE);
    t.bast(o[0], a, PR);
    t.take(o[2], "r", PR, NONE);
    t.nothing(o[0]);
    t.take(o[3], "r", EX, NONE);
    t.bast(o[0], a, EX);
    t.nothing(o[0]);
}

#[test]
fn e6_highbast_not_reset_by_cancel() {
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    let a = t.hold(o1, "r", EX, NONE);
    let b = t.take(o2, "r", EX, NONE);
    t.bast(o1, a, EX);
    assert_eq!(t.cancel(o2, b), Ok(0));
    t.cast(o2, b, Status::CANCELLED, SbFlags::empty());
    t.take(o3, "r", EX, NONE);
    t.nothing(o1);
    // A same-mode conversion re-grants, which resets highbast.
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    t.granted(o1, a);
    t.bast(o1, a, EX);
    t.nothing(o1);
}

#[test]
fn e7_waiters_of_one_owner_granted_in_order() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let x = t.hold(o1, "r", EX, NONE);
    let a = t.take(o2, "r", PR, NONE);
    let b = t.take(o2, "r", PR, NONE);
    t.unlock(o1, x, NONE).unwrap();
    t.granted(o2, a);
    t.granted(o2, b);
}

#[test]
fn e8_compatible_request_queues_behind_waiter() {
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    let b = t.take(o2, "r", EX, NONE);
    t.bast(o1, a, EX);
    let c = t.take(o3, "r", PR, NONE);
    t.nothing(o3);
    t.unlock(o1, a, NONE).unwrap();
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    t.granted(o2, b);
    t.bast(o2, b, PR);
    t.nothing(o3);
    t.unlock(o2, b, NONE).unwrap();
    t.granted(o3, c);
}

#[test]
fn e9_nl_queues_unless_expedite() {
    let mut t = T::new();
    let o = [t.open(), t.open(), t.open(), t.open()];
    t.hold(o[0], "r", EX, NONE);
    t.take(o[1], "r", PR, NONE);
    t.take(o[2], "r", NL, NONE);
    t.nothing(o[2]);
    let d = t.take(o[3], "r", NL, F::EXPEDITE);
    t.granted(o[3], d);
}

#[test]
fn e10_expedite_argument_rules() {
    let mut t = T::new();
    let o1 = t.open();
    assert_eq!(
        t.lock(o1, "r", NL, F::EXPEDITE | F::NOQUEUE),
        Err(Errno::EINVAL)
    );
    assert_eq!(t.lock(o1, "r", PR, F::EXPEDITE), Err(Errno::EINVAL));
    let a = t.hold(o1, "r", NL, NONE);
    assert_eq!(t.conv(o1, a, NL, F::EXPEDITE), Err(Errno::EINVAL));
    t.nothing(o1);
}

#[test]
fn e11_noorder_skips_the_queue() {
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    t.hold(o1, "r", PR, NONE);
    t.take(o2, "r", EX, NONE);
    let c = t.take(o3, "r", PR, F::NOORDER);
    t.granted(o3, c);
}

#[test]
fn e12_headque_waiter_first() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let x = t.hold(o1, "r", EX, NONE);
    let a = t.take(o2, "r", PR, NONE);
    let b = t.take(o2, "r", CR, F::HEADQUE);
    t.unlock(o1, x, NONE).unwrap();
    t.granted(o2, b);
    t.granted(o2, a);
}

#[test]
fn e13_in_place_conversion_beats_waiter() {
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    let a = t.hold(o1, "r", NL, NONE);
    let c = t.hold(o3, "r", PR, NONE);
    t.take(o2, "r", EX, NONE);
    t.bast(o3, c, EX);
    assert_eq!(t.conv(o1, a, PR, NONE), Ok(0));
    t.granted(o1, a);
    t.bast(o1, a, EX);
    t.nothing(o1);
    t.nothing(o3);
}

#[test]
fn e14_quecvt_queues_behind_conversion() {
    // Corrected form: the NL locks are granted before the conversion is
    // pending.
    let mut t = T::new();
    let o = [t.open(), t.open(), t.open(), t.open()];
    t.hold(o[0], "r", PR, NONE);
    let b = t.hold(o[1], "r", PR, NONE);
    let c = t.hold(o[2], "r", NL, NONE);
    let d = t.hold(o[3], "r", NL, NONE);
    assert_eq!(t.conv(o[1], b, EX, NONE), Ok(0));
    assert_eq!(t.conv(o[2], c, CR, F::QUECVT), Ok(0));
    t.nothing(o[2]);
    assert_eq!(t.conv(o[3], d, CR, NONE), Ok(0));
    t.granted(o[3], d);
}

#[test]
fn e14_uncorrected_nl_requests_queue_and_convs_are_ebusy() {
    let mut t = T::new();
    let o = [t.open(), t.open(), t.open(), t.open()];
    t.hold(o[0], "r", PR, NONE);
    let b = t.hold(o[1], "r", PR, NONE);
    t.conv(o[1], b, EX, NONE).unwrap();
    let c = t.take(o[2], "r", NL, NONE);
    let d = t.take(o[3], "r", NL, NONE);
    t.nothing(o[2]);
    assert_eq!(t.conv(o[2], c, CR, F::QUECVT), Err(Errno::EBUSY));
    assert_eq!(t.conv(o[3], d, CR, NONE), Err(Errno::EBUSY));
}

#[test]
fn e15_quecvt_matrix() {
    let mut t = T::new();
    let o1 = t.open();
    let pr = t.hold(o1, "a", PR, NONE);
    assert_eq!(t.conv(o1, pr, NL, F::QUECVT), Err(Errno::EINVAL));
    let ex = t.hold(o1, "b", EX, NONE);
    assert_eq!(t.conv(o1, ex, EX, F::QUECVT), Err(Errno::EINVAL));
    assert_eq!(t.lock(o1, "c", PR, F::QUECVT), Err(Errno::EINVAL));
    let cw = t.hold(o1, "d", CW, NONE);
    assert_eq!(t.conv(o1, cw, PR, F::QUECVT), Ok(0));
    t.granted(o1, cw);
}

/// E16–E19 setup: O1 PR, O2 PR, CONV(O1 → EX) queued, O2 basted.
fn deadlock_setup(t: &mut T) -> (O, u32, O, u32) {
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    let b = t.hold(o2, "r", PR, NONE);
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    t.nothing(o1);
    t.bast(o2, b, EX);
    (o1, a, o2, b)
}

#[test]
fn e16_conversion_deadlock_edeadlk() {
    let mut t = T::new();
    let (o1, a, o2, b) = deadlock_setup(&mut t);
    assert_eq!(t.conv(o2, b, EX, NONE), Ok(0));
    t.cast(o2, b, Status::DEADLOCK, SbFlags::empty());
    // O2 still holds PR: a CW request cannot be granted.
    assert!(!t.probe("r", CW));
    t.unlock(o2, b, NONE).unwrap();
    t.cast(o2, b, Status::UNLOCKED, SbFlags::empty());
    t.granted(o1, a);
}

#[test]
fn e17_convdeadlk_demotes() {
    let mut t = T::new();
    let (o1, a, o2, b) = deadlock_setup(&mut t);
    assert_eq!(t.conv(o2, b, EX, F::CONVDEADLK), Ok(0));
    t.granted(o1, a);
    t.bast(o1, a, EX);
    t.nothing(o2);
    t.unlock(o1, a, NONE).unwrap();
    t.cast(o2, b, Status::GRANTED, SbFlags::DEMOTED);
}

#[test]
fn e18_convdeadlk_argument_rules() {
    let mut t = T::new();
    let o1 = t.open();
    assert_eq!(t.lock(o1, "r", PR, F::CONVDEADLK), Err(Errno::EINVAL));
    let a = t.hold(o1, "r", PR, NONE);
    assert_eq!(
        t.conv(o1, a, EX, F::CONVDEADLK | F::NOQUEUE),
        Err(Errno::EINVAL)
    );
    t.nothing(o1);
}

#[test]
fn e19_noqueue_conversion_no_deadlock_check() {
    let mut t = T::new();
    let (_o1, _a, o2, b) = deadlock_setup(&mut t);
    assert_eq!(t.conv(o2, b, EX, F::NOQUEUE), Ok(0));
    t.cast(o2, b, Status::AGAIN, SbFlags::empty());
    assert!(!t.probe("r", CW));
}

#[test]
fn e20_altpr_grants_alternate_mode() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", PR, NONE);
    let b = t.take(o2, "r", CW, F::ALTPR);
    t.cast(o2, b, Status::GRANTED, ALTMODE);
    // O2 holds PR, not CW.
    assert!(!t.probe("r", CW));
    assert!(t.probe("r", PR));
}

#[test]
fn e21_altcw_grants_alternate_mode() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", CW, NONE);
    let b = t.take(o2, "r", PR, F::ALTCW);
    t.cast(o2, b, Status::GRANTED, ALTMODE);
    assert!(t.probe("r", CW));
    assert!(!t.probe("r", PR));
}

#[test]
fn e22_no_alternate_when_rq_equals_it() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", CW, NONE);
    let b = t.take(o2, "r", PR, F::ALTPR | F::NOQUEUE);
    t.cast(o2, b, Status::AGAIN, SbFlags::empty());
}

#[test]
fn e23_conversion_to_alternate_mode() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", PR, NONE);
    let b = t.hold(o2, "r", NL, NONE);
    assert_eq!(t.conv(o2, b, EX, F::ALTPR), Ok(0));
    t.cast(o2, b, Status::GRANTED, ALTMODE);
    assert!(!t.probe("r", CW));
    assert!(t.probe("r", PR));
}

#[test]
fn e24_pr_cw_duplicate_bast_suppressed() {
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    t.take(o2, "r", CW, NONE);
    t.bast(o1, a, CW);
    t.take(o3, "r", CW, NONE);
    t.nothing(o1);
}

#[test]
fn e25_second_conversion_while_pending_is_ebusy() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    t.hold(o2, "r", PR, NONE);
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    assert_eq!(t.conv(o1, a, CR, NONE), Err(Errno::EBUSY));
}

#[test]
fn e26_converting_a_waiting_request_is_ebusy() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let w = t.take(o2, "r", PR, NONE);
    assert_eq!(t.conv(o2, w, CR, NONE), Err(Errno::EBUSY));
}

#[test]
fn e27_unknown_ids_are_enoent() {
    let mut t = T::new();
    let o1 = t.open();
    t.hold(o1, "r", PR, NONE);
    assert_eq!(t.unlock(o1, 9999, NONE), Err(Errno::ENOENT));
    assert_eq!(t.conv(o1, 9999, PR, NONE), Err(Errno::ENOENT));
    assert_eq!(t.conv(o1, 0, PR, NONE), Err(Errno::ENOENT));
}

#[test]
fn e28_mode_and_name_length_rules() {
    let mut t = T::new();
    let o1 = t.open();
    let mut p = T::params(b"r", PR, NONE);
    p.mode = 6;
    assert_eq!(t.lock_p(o1, p), Err(Errno::EINVAL));
    // A 65-byte name cannot reach the engine: the device decoder refuses
    // it (namelen 65 with 64 bytes of name in a maximal 184-byte write).
    let mut bytes = Request::Lock(T::params(&[b'n'; 64], PR, NONE))
        .encode(Version::DEVICE)
        .to_vec();
    assert_eq!(bytes.len(), 184);
    bytes[17] = 65;
    assert_eq!(Request::decode(&bytes).map(|_| ()), Err(Errno::EINVAL));
    let id = t.take(o1, "", PR, NONE);
    t.granted(o1, id);
    let dump = t.e.dump(t.minor).unwrap();
    assert_eq!(dump.resources.len(), 1);
    assert!(dump.resources[0].name.is_empty());
}

#[test]
fn e29_names_compare_zero_padded() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.take(o1, "abc", EX, NONE);
    t.granted(o1, a);
    let b = t.take(o2, "abc\0", EX, F::NOQUEUE);
    t.cast(o2, b, Status::AGAIN, SbFlags::empty());
    let c = t.take(o2, "abd", EX, F::NOQUEUE);
    t.granted(o2, c);
}

#[test]
fn e30_timeout_is_ignored() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", EX, NONE);
    let mut p = T::params(b"r", EX, F::TIMEOUT);
    p.timeout = 1;
    let b = t.lock_p(o2, p).unwrap();
    // The engine has no timers: nothing ever arrives for the waiter,
    // whatever else happens meanwhile.
    t.nothing(o2);
    t.bast(o1, a, EX);
    t.hold(o1, "other", EX, NONE);
    t.nothing(o2);
    t.unlock(o1, a, NONE).unwrap();
    t.granted(o2, b);
}

/// E31 setup: O1 CR, O2 PR; CONV(O1 CR → PW) queued; O2 basted for PW.
fn nodlckwt_setup(t: &mut T) -> (O, u32, O, u32) {
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", CR, NONE);
    let b = t.hold(o2, "r", PR, NONE);
    assert_eq!(t.conv(o1, a, PW, NONE), Ok(0));
    t.bast(o2, b, PW);
    (o1, a, o2, b)
}

#[test]
fn e31_nodlckwt_self_bast() {
    let mut t = T::new();
    let (o1, _a, o2, b) = nodlckwt_setup(&mut t);
    assert_eq!(t.conv(o2, b, EX, F::NODLCKWT), Ok(0));
    t.nothing(o2);
    let o3 = t.open();
    let c = t.hold(o3, "r", NL, F::EXPEDITE);
    t.unlock(o3, c, NONE).unwrap();
    t.bast(o2, b, EX);
    t.nothing(o2);
    t.nothing(o1);
}

#[test]
fn e31_without_nodlckwt_edeadlk() {
    let mut t = T::new();
    let (_o1, _a, o2, b) = nodlckwt_setup(&mut t);
    assert_eq!(t.conv(o2, b, EX, NONE), Ok(0));
    t.cast(o2, b, Status::DEADLOCK, SbFlags::empty());
}

#[test]
fn e32_one_fifo_per_opener() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let x = t.hold(o1, "x", EX, NONE);
    let y = t.hold(o1, "y", EX, NONE);
    t.take(o2, "x", PR, NONE);
    t.take(o2, "y", PR, NONE);
    t.bast(o1, x, PR);
    t.bast(o1, y, PR);
}

#[test]
fn e33_cast_before_bast() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.take(o1, "r", EX, NONE);
    t.take(o2, "r", PR, NONE);
    t.granted(o1, a);
    t.bast(o1, a, PR);
}

#[test]
fn e34_no_bastaddr_no_bast_until_conversion() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let mut p = T::params(b"r", EX, NONE);
    p.bastaddr = 0;
    let a = t.lock_p(o1, p).unwrap();
    t.granted(o1, a);
    t.take(o2, "r", EX, NONE);
    t.nothing(o1);
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    t.granted(o1, a);
    t.bast(o1, a, EX);
}
