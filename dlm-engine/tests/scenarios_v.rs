//! docs/semantics.md D.4, LVB scenarios V1–V9 (C.9 and the A.5 rule for
//! attaching an LVB to a completion).

mod common;

use common::*;
use dlm_core::{LockFlags as F, SbFlags, Status};

const VALBLK: dlm_core::LockFlags = F::VALBLK;

#[test]
fn v1_fresh_resource_reads_zeros() {
    let mut t = T::new();
    let o1 = t.open();
    let a = t.take(o1, "r", EX, VALBLK);
    let r = t.granted(o1, a);
    assert_eq!(r.lvb, Some(ZEROS));
    assert_eq!(r.encode(104).unwrap().len(), 104);
}

/// V1 then V2's first step: O1 writes A by EX → NL with VALBLK.
fn v2_setup(t: &mut T) -> (O, u32) {
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    assert_eq!(t.conv_lvb(o1, a, NL, VALBLK, lvb("A")), Ok(0));
    let r = t.granted(o1, a);
    assert_eq!(r.lvb, None, "a down-conversion from EX carries no LVB");
    (o1, a)
}

#[test]
fn v2_down_conversion_writes_lvb() {
    let mut t = T::new();
    v2_setup(&mut t);
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    assert_eq!(t.granted(o2, b).lvb, Some(lvb("A")));
}

#[test]
fn v3_down_conversion_without_valblk_writes_nothing() {
    let mut t = T::new();
    let (o1, a) = v2_setup(&mut t);
    let o2 = t.open();
    let b = t.hold(o2, "r", PR, VALBLK);
    t.unlock(o2, b, NONE).unwrap();
    assert_eq!(t.conv(o1, a, EX, VALBLK), Ok(0));
    assert_eq!(t.granted(o1, a).lvb, Some(lvb("A")));
    assert_eq!(t.conv_lvb(o1, a, NL, NONE, ZEROS), Ok(0));
    assert_eq!(t.granted(o1, a).lvb, None);
    let o3 = t.open();
    let c = t.take(o3, "r", PR, VALBLK);
    assert_eq!(t.granted(o3, c).lvb, Some(lvb("A")));
}

#[test]
fn v4_same_mode_conversion_writes_lvb() {
    let mut t = T::new();
    let o1 = t.open();
    let a = t.take(o1, "r", EX, VALBLK);
    assert_eq!(t.granted(o1, a).lvb, Some(ZEROS));
    assert_eq!(t.conv_lvb(o1, a, EX, VALBLK, lvb("B")), Ok(0));
    assert_eq!(t.granted(o1, a).lvb, None, "EX -> EX is a write");
    assert!(!t.probe("r", CR), "O1 still holds EX");
    assert_eq!(t.conv(o1, a, NL, NONE), Ok(0));
    t.granted(o1, a);
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    assert_eq!(t.granted(o2, b).lvb, Some(lvb("B")));
}

#[test]
fn v5_lvb_goes_with_the_last_lock() {
    let mut t = T::new();
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    t.conv_lvb(o1, a, NL, VALBLK, lvb("C")).unwrap();
    t.granted(o1, a);
    t.unlock(o1, a, NONE).unwrap();
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    let r = t.granted(o2, b);
    assert_eq!(r.lvb, Some(ZEROS));
}

#[test]
fn v5_nl_holder_keeps_lvb() {
    let mut t = T::new();
    let o3 = t.open();
    t.hold(o3, "r", NL, NONE);
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    t.conv_lvb(o1, a, NL, VALBLK, lvb("C")).unwrap();
    t.granted(o1, a);
    t.unlock(o1, a, NONE).unwrap();
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    assert_eq!(t.granted(o2, b).lvb, Some(lvb("C")));
}

/// V6: the LVB is D and marked invalid by O1's PW → NL with IVVALBLK.
fn v6_setup(t: &mut T) -> (O, u32) {
    let o3 = t.open();
    t.hold(o3, "r", NL, NONE);
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    t.conv_lvb(o1, a, NL, VALBLK, lvb("D")).unwrap();
    t.granted(o1, a);
    t.conv(o1, a, PW, VALBLK).unwrap();
    assert_eq!(t.granted(o1, a).lvb, Some(lvb("D")));
    t.conv(o1, a, NL, F::IVVALBLK).unwrap();
    assert_eq!(t.granted(o1, a).lvb, None);
    (o1, a)
}

#[test]
fn v6_ivvalblk_marks_lvb_invalid() {
    let mut t = T::new();
    v6_setup(&mut t);
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    let r = t.cast(o2, b, Status::GRANTED, SbFlags::VALNOTVALID);
    assert_eq!(r.lvb, Some(lvb("D")));
}

#[test]
fn v7_next_write_clears_invalid_mark() {
    let mut t = T::new();
    let (o1, a) = v6_setup(&mut t);
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    t.cast(o2, b, Status::GRANTED, SbFlags::VALNOTVALID);
    t.unlock(o2, b, NONE).unwrap();
    t.cast(o2, b, Status::UNLOCKED, SbFlags::empty());
    t.conv(o1, a, EX, VALBLK).unwrap();
    let r = t.cast(o1, a, Status::GRANTED, SbFlags::VALNOTVALID);
    assert_eq!(r.lvb, Some(lvb("D")));
    t.conv_lvb(o1, a, NL, VALBLK, lvb("E")).unwrap();
    t.cast(o1, a, Status::GRANTED, SbFlags::empty());
    let b = t.take(o2, "r", PR, VALBLK);
    let r = t.cast(o2, b, Status::GRANTED, SbFlags::empty());
    assert_eq!(r.lvb, Some(lvb("E")));
}

#[test]
fn v8_close_of_ex_holder_invalidates() {
    let mut t = T::new();
    let o3 = t.open();
    t.hold(o3, "r", NL, NONE);
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    t.conv_lvb(o1, a, EX, VALBLK, lvb("F")).unwrap();
    t.granted(o1, a);
    t.e.close(o1.id);
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    let r = t.cast(o2, b, Status::GRANTED, SbFlags::VALNOTVALID);
    assert_eq!(r.lvb, Some(lvb("F")));
}

#[test]
fn v9_down_conversion_from_pr_carries_lvb() {
    let mut t = T::new();
    // The resource LVB becomes G, kept by an NL holder.
    let o3 = t.open();
    let g = t.hold(o3, "r", EX, VALBLK);
    t.conv_lvb(o3, g, NL, VALBLK, lvb("G")).unwrap();
    t.granted(o3, g);
    let o1 = t.open();
    let a = t.take(o1, "r", PR, VALBLK);
    assert_eq!(t.granted(o1, a).lvb, Some(lvb("G")));
    assert_eq!(t.conv_lvb(o1, a, CR, NONE, ZEROS), Ok(0));
    // lvb_ops[PR][CR] is a no-op, so the lock's buffer is attached: the
    // request's lvb field overwrote it.
    assert_eq!(t.granted(o1, a).lvb, Some(ZEROS));
}

#[test]
fn unlock_with_valblk_from_pw_writes_lvb() {
    let mut t = T::new();
    let o3 = t.open();
    t.hold(o3, "r", NL, NONE);
    let o1 = t.open();
    let a = t.hold(o1, "r", PW, VALBLK);
    let mut p = unlock_params(a, VALBLK);
    p.lvb = lvb("U");
    t.write(o1, dlm_core::Request::Unlock(p)).unwrap();
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    assert_eq!(t.granted(o2, b).lvb, Some(lvb("U")));
}

#[test]
fn unlock_with_ivvalblk_from_ex_invalidates() {
    let mut t = T::new();
    let o3 = t.open();
    t.hold(o3, "r", NL, NONE);
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    t.conv_lvb(o1, a, EX, VALBLK, lvb("I")).unwrap();
    t.granted(o1, a);
    t.unlock(o1, a, F::IVVALBLK).unwrap();
    t.cast(o1, a, Status::UNLOCKED, SbFlags::empty());
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    let r = t.cast(o2, b, Status::GRANTED, SbFlags::VALNOTVALID);
    assert_eq!(r.lvb, Some(lvb("I")));
}

#[test]
fn lvb_in_a_cast_is_a_snapshot() {
    // A.5: the LVB bytes of a queued cast are those at queue time, even
    // if the lock's buffer changes before the read.
    let mut t = T::new();
    let o3 = t.open();
    t.hold(o3, "r", NL, NONE);
    let o1 = t.open();
    let a = t.hold(o1, "r", EX, VALBLK);
    t.conv_lvb(o1, a, NL, VALBLK, lvb("S1")).unwrap();
    t.granted(o1, a);
    let o2 = t.open();
    let b = t.take(o2, "r", PR, VALBLK);
    t.conv_lvb(o2, b, CR, NONE, lvb("X")).unwrap();
    assert_eq!(t.granted(o2, b).lvb, Some(lvb("S1")));
    assert_eq!(t.granted(o2, b).lvb, Some(lvb("X")));
}
