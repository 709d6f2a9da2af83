//! docs/semantics.md D.1 protocol scenarios that concern the engine: P4
//! (lockspace creation), P6 (missing pointers), P7 (lowest free id), P8
//! (pointer round trip), P12 (bast result).

mod common;

use common::*;
use dlm_core::{Errno, LockFlags as F, LsFlags, Name, SbFlags, Status};
use dlm_engine::Engine;

#[test]
fn p4_create_lockspace() {
    let mut e = Engine::new();
    let t = Name::lockspace(b"t").unwrap();
    let m = e.create_lockspace(t, LsFlags::empty()).unwrap();
    assert_eq!(e.create_lockspace(t, LsFlags::empty()), Ok(m));
    assert_eq!(e.create_lockspace(t, LsFlags::NEWEXCL), Err(Errno::EEXIST));
    assert_eq!(
        e.create_lockspace(Name::EMPTY, LsFlags::empty()),
        Err(Errno::EINVAL)
    );
    let u = e.create_lockspace(Name::lockspace(b"u").unwrap(), LsFlags::NEWEXCL);
    assert!(u.is_ok_and(|u| u != m));
    assert_eq!(e.dump(m).unwrap().create_count, 2);
}

#[test]
fn p6_missing_pointers_are_einval() {
    let mut t = T::new();
    let o1 = t.open();
    let mut p = T::params(b"r", EX, NONE);
    p.castaddr = 0;
    assert_eq!(t.lock_p(o1, p), Err(Errno::EINVAL));
    let mut p = T::params(b"r", EX, NONE);
    p.lksb = 0;
    assert_eq!(t.lock_p(o1, p), Err(Errno::EINVAL));
    t.nothing(o1);
    assert_eq!(t.e.dump(t.minor).unwrap().locks, 0);
    // Conversions too, before the lock is looked up.
    let mut p = T::params(b"", EX, F::CONVERT);
    p.lkid = 9999;
    p.lksb = 0;
    assert_eq!(t.lock_p(o1, p), Err(Errno::EINVAL));
}

#[test]
fn p7_lowest_free_id() {
    let mut t = T::new();
    let o1 = t.open();
    assert_eq!(t.lock(o1, "a", NL, NONE), Ok(1));
    assert_eq!(t.lock(o1, "b", NL, NONE), Ok(2));
    t.unlock(o1, 1, NONE).unwrap();
    t.granted(o1, 1);
    t.granted(o1, 2);
    t.cast(o1, 1, Status::UNLOCKED, SbFlags::empty());
    assert_eq!(t.lock(o1, "c", NL, NONE), Ok(1));
    // Reused at once, even before the final completion is read (6.12).
    t.unlock(o1, 2, NONE).unwrap();
    assert_eq!(t.lock(o1, "d", NL, NONE), Ok(2));
    // Failed NOQUEUE requests and invalid ones hold no id.
    assert_eq!(t.lock(o1, "x", EX, NONE), Ok(3));
    let o2 = t.open();
    assert_eq!(t.lock(o2, "x", EX, F::NOQUEUE), Ok(4));
    assert_eq!(t.lock(o2, "x", EX, F::NOQUEUE), Ok(4));
}

#[test]
fn p8_pointer_round_trip() {
    let mut t = T::new();
    let o1 = t.open();
    let mut p = T::params(b"r", PR, NONE);
    p.castaddr = 0x1111;
    p.castparam = 0x2222;
    p.lksb = 0x3333;
    assert_eq!(t.lock_p(o1, p), Ok(1));
    let r = t.read(o1).unwrap();
    assert_eq!(
        (r.astaddr, r.astparam, r.user_lksb),
        (0x1111, 0x2222, 0x3333)
    );
    assert_eq!(
        (r.status, r.lkid, r.flags),
        (Status::GRANTED, 1, SbFlags::empty())
    );
    assert_eq!((r.bast_mode, r.lvb), (None, None));
    let bytes = r.encode(104).unwrap();
    assert_eq!(bytes.len(), 72);
}

#[test]
fn p8_conversion_replaces_pointers_before_validation() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let w = t.take(o2, "r", PR, NONE);
    let mut p = T::params(b"", CR, F::CONVERT);
    p.lkid = w;
    p.castaddr = 0xaaaa;
    p.lksb = 0xbbbb;
    // EBUSY: the request waits. Its pointers were replaced anyway.
    assert_eq!(t.lock_p(o2, p), Err(Errno::EBUSY));
    t.e.close(o1.id);
    let r = t.read(o2).unwrap();
    assert_eq!((r.lkid, r.astaddr, r.user_lksb), (w, 0xaaaa, 0xbbbb));
}

#[test]
fn p12_bast_result() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let mut p = T::params(b"r", EX, NONE);
    p.bastparam = 0x4444;
    p.bastaddr = 0x5555;
    let a = t.lock_p(o1, p).unwrap();
    t.granted(o1, a);
    t.take(o2, "r", EX, NONE);
    let r = t.read(o1).unwrap();
    assert_eq!((r.astaddr, r.astparam), (0x5555, 0x4444));
    assert_eq!(
        (r.bast_mode, r.status, r.lkid),
        (Some(EX), Status::GRANTED, a)
    );
    assert_eq!((r.flags, r.lvb), (SbFlags::empty(), None));
}

#[test]
fn bast_after_altmode_cast_has_clean_flags() {
    // Appendix X (6.12): a bast after cast(0, ALTMODE) carries flags 0.
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    t.hold(o1, "r", PR, NONE);
    let b = t.take(o2, "r", CW, F::ALTPR);
    t.cast(o2, b, Status::GRANTED, SbFlags::ALTMODE);
    t.take(o3, "r", EX, NONE);
    t.bast(o2, b, EX);
}
