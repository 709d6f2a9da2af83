//! The scripts of docs/semantics.md Part D, sections D.1 to D.5, transcribed step by
//! step. Each checks the spec's expectation at every step (a failed one is
//! a mismatch, not a panic, so a run always shows every scenario's whole
//! trace). Functions are named after the spec ids.

#![allow(non_snake_case)]

use super::{Exp, Scenario, Session, lvb};
use dlm_core::codec::{RESULT_LEN, Version};
use dlm_core::{Errno, LockFlags as F, LsFlags, Mode, Name, Request};
use std::time::Duration;

use Mode::{Cr, Cw, Ex, Nl, Pr, Pw};

const NONE: F = F::empty();
const EUNLOCK: i32 = -65538;
const ECANCEL: i32 = -65537;
const EAGAIN: i32 = -11;
const EDEADLK: i32 = -35;

macro_rules! scenarios {
    ($($id:ident),* $(,)?) => {
        vec![$(Scenario { id: stringify!($id), run: $id }),*]
    };
}

/// Every device-level scenario, in spec order.
#[allow(non_snake_case)]
pub(super) fn all() -> Vec<Scenario> {
    scenarios![
        P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, //
        E1, E2, E3, E4, E5, E6, E7, E8, E9, E10, E11, E12, E13, E14, E15, E16, E17, E18, E19, E20,
        E21, E22, E23, E24, E25, E26, E27, E28, E29, E30, E31, E32, E33, E34, //
        U1, U2, U3, U4, U5, U6, U7, U8, U9, //
        V1, V2, V3, V4, V5, V6, V7, V8, V9, //
        C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, //
        X1, X2, X3, X4, X5, X6,
    ]
}

// ---------------------------------------------------------------------------
// raw-byte helpers (D.1)

/// A raw write, traced as `[raw] what -> ret`; `None` when the target
/// cannot send raw bytes (the scenario is then not applicable there).
fn raw_write(
    s: &mut Session<'_>,
    k: Option<usize>,
    bytes: &[u8],
    what: &str,
) -> Option<Result<u32, Errno>> {
    let o = k.map(|k| s.op(k));
    let r = s.target().raw_write(o, bytes);
    match &r {
        Some(r) => s.note(format!("[raw] {what} -> {}", super::fmt_ret(r))),
        None => s.not_applicable("raw device bytes"),
    }
    r
}

fn raw_read(
    s: &mut Session<'_>,
    k: Option<usize>,
    count: usize,
    what: &str,
) -> Option<Result<Vec<u8>, Errno>> {
    let o = k.map(|k| s.op(k));
    let r = s.target().raw_read(o, count);
    match &r {
        Some(Ok(b)) => s.note(format!("[raw] {what} -> {} bytes", b.len())),
        Some(Err(e)) => s.note(format!("[raw] {what} -> {}", super::fmt_ret(&Err(*e)))),
        None => s.not_applicable("raw device bytes"),
    }
    r
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn lock_bytes(s: &Session<'_>, k: usize, name: &[u8], mode: Mode, version: Version) -> Vec<u8> {
    let r = s.req(k, name, mode, NONE);
    Request::Lock(r.p).encode(version).to_vec()
}

// ---------------------------------------------------------------------------
// D.1 protocol

fn P1(s: &mut Session<'_>) {
    if let Some(r) = raw_read(s, None, 12, "read(control, 12)") {
        let v = r.map(|b| (u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8)));
        s.note(format!("[raw] version {v:?}"));
        s.check("control version", v.map(|v| (v.0, v.1)), Ok((6, 0)));
    }
    if let Some(r) = raw_read(s, None, 100, "read(control, 100)") {
        s.check("read(control, 100)", r.err(), Some(Errno::EINVAL));
    }
}

fn P2(s: &mut Session<'_>) {
    let full = lock_bytes(s, 1, b"r", Nl, Version::DEVICE);
    if let Some(r) = raw_write(s, Some(1), &full[..50], "write 50 bytes") {
        s.check("50-byte write", r, Err(Errno::EINVAL));
    }
    let mut long = full.clone();
    long.resize(185, 0);
    if let Some(r) = raw_write(s, Some(1), &long, "write 185 bytes") {
        s.check("185-byte write", r, Err(Errno::EINVAL));
    }
    long.truncate(184);
    if let Some(r) = raw_write(s, Some(1), &long, "write 184 bytes") {
        s.check("184-byte write", r.is_ok(), true);
    }
    s.drain(1);
}

fn P3(s: &mut Session<'_>) {
    let v = |major, minor, patch| Version {
        major,
        minor,
        patch,
    };
    for (ver, want) in [
        (v(5, 0, 0), Err(Errno::EBADE)),
        (v(6, 1, 0), Err(Errno::EBADE)),
        (v(6, 0, 0), Ok(1)),
        (v(6, 0, 7), Ok(2)),
    ] {
        let bytes = lock_bytes(s, 1, b"r", Nl, ver);
        if let Some(r) = raw_write(s, Some(1), &bytes, &format!("LOCK version {ver}")) {
            s.check(&format!("version {ver}"), r, want);
        }
    }
    s.drain(1);
}

fn P4(s: &mut Session<'_>) {
    let name = Name::lockspace(format!("{}x", String::from_utf8_lossy(s.ls.as_bytes())).as_bytes())
        .expect("name");
    let m = s.target().create(&name, LsFlags::empty());
    s.note(format!(
        "CREATE {} -> {}",
        "t",
        if m.is_ok() {
            "m".into()
        } else {
            super::fmt_ret(&m)
        }
    ));
    let m2 = s.target().create(&name, LsFlags::empty());
    let same = match (m, m2) {
        (Ok(a), Ok(b)) if a == b => "m (same minor)".to_string(),
        (_, r) => super::fmt_ret(&r),
    };
    s.note(format!("CREATE t again -> {same}"));
    s.check("second CREATE", same.as_str(), "m (same minor)");
    let r = s.target().create(&name, LsFlags::NEWEXCL);
    s.note(format!("CREATE t NEWEXCL -> {}", super::fmt_ret(&r)));
    s.check("CREATE NEWEXCL", r.err(), Some(Errno::EEXIST));
    let other =
        Name::lockspace(format!("{}y", String::from_utf8_lossy(s.ls.as_bytes())).as_bytes())
            .expect("name");
    let u = s.target().create(&other, LsFlags::NEWEXCL);
    s.note(format!(
        "CREATE u NEWEXCL -> {}",
        match (m, u) {
            (Ok(a), Ok(b)) if a != b => "another minor".to_string(),
            (_, r) => super::fmt_ret(&r),
        }
    ));
    s.check("a second name's minor", u.is_ok() && u != m, true);
    if let Ok(u) = u {
        let r = s.target().remove(u, true);
        s.note(format!("REMOVE u -> {}", super::fmt_ret(&r.map(|()| 0))));
    }
    let r = s.target().create(&Name::EMPTY, LsFlags::empty());
    s.note(format!("CREATE \"\" -> {}", super::fmt_ret(&r)));
    s.check("CREATE empty", r.err(), Some(Errno::EINVAL));
    let mut long = Request::CreateLockspace {
        flags: LsFlags::empty(),
        name: Name::new(&[b'n'; 64]).expect("64"),
    }
    .encode(Version::DEVICE)
    .to_vec();
    long.push(b'n');
    if let Some(r) = raw_write(s, None, &long, "CREATE 65-byte name") {
        s.check("CREATE 65 bytes", r.err(), Some(Errno::EINVAL));
    }
    if let Ok(m) = m {
        for _ in 0..2 {
            let r = s.target().remove(m, true);
            s.note(format!("REMOVE m -> {}", super::fmt_ret(&r.map(|()| 0))));
        }
    }
}

fn P5(s: &mut Session<'_>) {
    let lock = lock_bytes(s, 1, b"r", Nl, Version::DEVICE);
    if let Some(r) = raw_write(s, None, &lock, "LOCK to control") {
        s.check("LOCK to control", r, Err(Errno::EINVAL));
    }
    let create = Request::CreateLockspace {
        flags: LsFlags::empty(),
        name: s.ls,
    }
    .encode(Version::DEVICE)
    .to_vec();
    if let Some(r) = raw_write(s, Some(1), &create, "CREATE to lockspace device") {
        s.check("CREATE to lockspace", r, Err(Errno::EINVAL));
    }
    let remove = Request::RemoveLockspace {
        flags: dlm_core::RemoveFlags::empty(),
        minor: s.minor,
    }
    .encode(Version::DEVICE)
    .to_vec();
    if let Some(r) = raw_write(s, Some(1), &remove, "REMOVE to lockspace device") {
        s.check("REMOVE to lockspace", r, Err(Errno::EINVAL));
    }
    let mut query = lock.clone();
    query[12] = 3;
    if let Some(r) = raw_write(s, Some(1), &query, "cmd 3 (QUERY)") {
        s.check("QUERY", r, Err(Errno::EINVAL));
    }
    s.expect(1, Exp::Nothing);
}

fn P6(s: &mut Session<'_>) {
    let mut r = s.req(1, b"r", Pr, NONE);
    r.p.castaddr = 0;
    let got = s.lock_with(1, r);
    s.expect_ret(got, Err(Errno::EINVAL));
    let mut r = s.req(1, b"r", Pr, NONE);
    r.p.lksb = 0;
    let got = s.lock_with(1, r);
    s.expect_ret(got, Err(Errno::EINVAL));
    s.expect(1, Exp::Nothing);
    // a conversion too, before its lock is looked up
    let mut r = s.conv_req(1, 9999, Pr, NONE);
    r.p.lksb = 0;
    let got = s.lock_with(1, r);
    s.expect_ret(got, Err(Errno::EINVAL));
    // the refused requests made no lock: the next one is id 1
    let r = s.lock(1, "r", Pr, NONE);
    s.expect_ret(r, Ok(1));
    s.expect(1, Exp::Cast(0, 0));
}

fn P7(s: &mut Session<'_>) {
    let a = s.granted(1, "a", Nl, NONE);
    let b = s.granted(1, "b", Nl, NONE);
    s.check("ids", (a, b), (1, 2));
    let r = s.unlock(1, a, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    let c = s.granted(1, "c", Nl, NONE);
    s.check("reused id", c, 1);
    // a NOQUEUE request that fails holds no id once its cast is read
    let x = s.granted(1, "x", Ex, NONE);
    s.check("next id", x, 3);
    let n = s.lock_id(2, "x", Ex, F::NOQUEUE);
    s.check("NOQUEUE id", n, 4);
    s.expect(2, Exp::Cast(EAGAIN, 0));
    let n = s.lock_id(2, "x", Ex, F::NOQUEUE);
    s.check("NOQUEUE id again", n, 4);
    s.expect(2, Exp::Cast(EAGAIN, 0));
}

fn P8(s: &mut Session<'_>) {
    let r = s.req(1, b"r", Pr, NONE).ptrs(0x1111, 0x2222, 0, 0, 0x3333);
    let id = s.lock_with(1, r);
    s.expect_ret(id, Ok(1));
    if let Some(r) = s.expect(1, Exp::CastLvb(0, 0, None)) {
        s.check(
            "pointers",
            (r.astaddr, r.astparam, r.user_lksb, r.lkid),
            (0x1111, 0x2222, 0x3333, 1),
        );
    }
    // A.5: a conversion of a waiting request is EBUSY, but its pointers
    // were replaced anyway
    s.granted(2, "w", Ex, NONE);
    let w = s.queued(3, "w", Pr, NONE);
    let mut r = s.conv_req(3, w, Cr, NONE);
    (r.p.castaddr, r.p.lksb) = (0xaaaa, 0xbbbb);
    let got = s.lock_with(3, r);
    s.expect_ret(got, Err(Errno::EBUSY));
    s.close(2);
    if let Some(r) = s.expect_id(3, Exp::Cast(0, 0), w) {
        s.check(
            "pointers after EBUSY",
            (r.astaddr, r.user_lksb),
            (0xaaaa, 0xbbbb),
        );
    }
    // A.5: an unlock replaces user_lksb always, castparam only when
    // non-zero, castaddr never
    let a = s.granted(4, "u", Ex, NONE);
    let mut r = s.unlock_req(4, a, NONE);
    (r.p.castparam, r.p.castaddr, r.p.lksb) = (0, 0x7777, 0x5555);
    s.unlock_with(4, r).ok();
    if let Some(r) = s.expect(4, Exp::Cast(EUNLOCK, 0)) {
        s.check(
            "unlock pointers",
            (r.astaddr, r.astparam, r.user_lksb),
            (0xca04, 0xc004, 0x5555),
        );
    }
    let b = s.granted(4, "u", Ex, NONE);
    let mut r = s.unlock_req(4, b, NONE);
    r.p.castparam = 0x6666;
    s.unlock_with(4, r).ok();
    if let Some(r) = s.expect(4, Exp::Cast(EUNLOCK, 0)) {
        s.check(
            "unlock castparam",
            (r.astaddr, r.astparam),
            (0xca04, 0x6666),
        );
    }
}

fn P9(s: &mut Session<'_>) {
    s.expect(1, Exp::Nothing);
    let o = s.op(1);
    let p = s.target().poll(o);
    s.note(format!("O1 poll -> {p}"));
    s.check("poll with nothing queued", p, false);
    s.lock_id(1, "r", Nl, NONE);
    let p = s.target().poll(o);
    s.note(format!("O1 poll -> {p}"));
    s.check("poll with a cast queued", p, true);
    s.expect(1, Exp::Cast(0, 0));
}

fn P10(s: &mut Session<'_>) {
    s.lock_id(1, "r", Nl, NONE);
    if let Some(r) = raw_read(s, Some(1), 12, "read(O1, 12)") {
        let v = r.map(|b| (u32_at(&b, 0), u32_at(&b, 4)));
        s.check("version read", v, Ok((6, 0)));
    }
    s.expect(1, Exp::Cast(0, 0));
}

fn P11(s: &mut Session<'_>) {
    s.lock_id(1, "r", Ex, F::VALBLK);
    match raw_read(s, Some(1), RESULT_LEN, "read(O1, 72)") {
        Some(Ok(b)) => {
            let (len, off) = (u32_at(&b, 12), u32_at(&b, 68));
            s.note(format!("[raw] length {len} lvb_offset {off}"));
            s.check("length, lvb_offset", (len, off), (72, 0));
        }
        Some(Err(e)) => s.mismatch(format!("read failed: {e:?}")),
        None => s.drain(1),
    }
}

fn P12(s: &mut Session<'_>) {
    let id = s.granted(1, "r", Ex, NONE);
    let r = s
        .req(2, b"r", Ex, NONE)
        .ptrs(0xca02, 0xc002, 0xba02, 0x4444, 0x5b02);
    s.lock_with(2, r).ok();
    if let Some(r) = s.expect(1, Exp::Bast(Ex)) {
        s.check(
            "bast fields",
            (r.astaddr, r.astparam, r.status.to_kernel(), r.lkid),
            (0xba01, 0xb001, 0, id),
        );
        s.check("bast flags, lvb", (r.flags.bits(), r.lvb), (0, None));
    }
}

// ---------------------------------------------------------------------------
// D.2 grant and queueing

fn E1(s: &mut Session<'_>) {
    for h in Mode::ALL {
        for q in Mode::ALL {
            let name = format!("r{}{}", h.name(), q.name());
            s.granted(1, &name, h, NONE);
            s.lock_id(2, &name, q, F::NOQUEUE);
            let st = if h.compatible(q) { 0 } else { EAGAIN };
            s.expect(2, Exp::Cast(st, 0));
        }
    }
}

fn E2(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    let n = s.lock_id(2, "r", Pr, F::NOQUEUE);
    s.expect(2, Exp::Cast(EAGAIN, 0));
    s.expect(1, Exp::Nothing);
    let r = s.unlock(2, n, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
}

fn E3(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    s.lock_id(2, "r", Pr, F::NOQUEUE | F::NOQUEUEBAST);
    s.expect(2, Exp::Cast(EAGAIN, 0));
    s.expect(1, Exp::Bast(Pr));
    s.expect(1, Exp::Nothing);
}

fn E4(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Ex, NONE);
    s.queued(2, "r", Ex, NONE);
    s.expect(1, Exp::Bast(Ex));
    s.unlock(1, a, NONE).ok();
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.expect(2, Exp::Cast(0, 0));
    s.expect(1, Exp::Nothing);
    s.expect(2, Exp::Nothing);
}

fn E5(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    s.queued(2, "r", Pr, NONE);
    s.expect(1, Exp::Bast(Pr));
    s.queued(3, "r", Pr, NONE);
    s.expect(1, Exp::Nothing);
    s.queued(4, "r", Ex, NONE);
    s.expect(1, Exp::Bast(Ex));
    s.expect(1, Exp::Nothing);
}

fn E6(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Ex, NONE);
    let b = s.queued(2, "r", Ex, NONE);
    s.expect(1, Exp::Bast(Ex));
    let r = s.cancel(2, b);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(ECANCEL, 0));
    s.queued(3, "r", Ex, NONE);
    s.expect(1, Exp::Nothing);
    s.conv(1, a, Ex, NONE).ok();
    s.expect(1, Exp::Cast(0, 0));
    s.expect(1, Exp::Bast(Ex));
    s.expect(1, Exp::Nothing);
}

fn E7(s: &mut Session<'_>) {
    let h = s.granted(1, "r", Ex, NONE);
    let a = s.queued(2, "r", Pr, NONE);
    let b = s.queued(2, "r", Pr, NONE);
    s.unlock(1, h, NONE).ok();
    s.expect(1, Exp::Bast(Pr));
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.expect_id(2, Exp::Cast(0, 0), a);
    s.expect_id(2, Exp::Cast(0, 0), b);
}

fn E8(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Pr, NONE);
    let b = s.queued(2, "r", Ex, NONE);
    s.expect(1, Exp::Bast(Ex));
    s.queued(3, "r", Pr, NONE);
    s.unlock(1, a, NONE).ok();
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.expect(3, Exp::Nothing);
    s.expect(2, Exp::Cast(0, 0));
    s.expect(2, Exp::Bast(Pr));
    s.unlock(2, b, NONE).ok();
    s.expect(2, Exp::Cast(EUNLOCK, 0));
    s.expect(3, Exp::Cast(0, 0));
}

fn E9(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    s.queued(2, "r", Pr, NONE);
    s.queued(3, "r", Nl, NONE);
    s.granted(4, "r", Nl, F::EXPEDITE);
}

fn E10(s: &mut Session<'_>) {
    let r = s.lock(1, "r", Nl, F::EXPEDITE | F::NOQUEUE);
    s.expect_ret(r, Err(Errno::EINVAL));
    let r = s.lock(1, "r", Pr, F::EXPEDITE);
    s.expect_ret(r, Err(Errno::EINVAL));
    let id = s.granted(1, "r", Nl, NONE);
    let r = s.conv(1, id, Nl, F::EXPEDITE);
    s.expect_ret(r, Err(Errno::EINVAL));
    s.expect(1, Exp::Nothing);
}

fn E11(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    s.queued(2, "r", Ex, NONE);
    s.granted(3, "r", Pr, F::NOORDER);
}

fn E12(s: &mut Session<'_>) {
    let h = s.granted(1, "r", Ex, NONE);
    let a = s.queued(2, "r", Pr, NONE);
    let b = s.queued(2, "r", Cr, F::HEADQUE);
    s.unlock(1, h, NONE).ok();
    s.drain(1);
    s.expect_id(2, Exp::Cast(0, 0), b);
    s.expect_id(2, Exp::Cast(0, 0), a);
}

fn E13(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Nl, NONE);
    s.granted(3, "r", Pr, NONE);
    s.queued(2, "r", Ex, NONE);
    s.expect(3, Exp::Bast(Ex));
    s.expect(1, Exp::Nothing);
    s.conv(1, a, Pr, NONE).ok();
    s.expect(1, Exp::Cast(0, 0));
    s.expect(1, Exp::Bast(Ex));
    s.expect(1, Exp::Nothing);
    s.expect(3, Exp::Nothing);
}

fn E14(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    let b = s.granted(2, "r", Pr, NONE);
    let c = s.granted(3, "r", Nl, NONE);
    let d = s.granted(4, "r", Nl, NONE);
    let r = s.conv(2, b, Ex, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Nothing);
    s.expect(1, Exp::Bast(Ex));
    let r = s.conv(3, c, Cr, F::QUECVT);
    s.expect_ret(r, Ok(0));
    s.expect(3, Exp::Nothing);
    let r = s.conv(4, d, Cr, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(4, Exp::Cast(0, 0));
    // the row as first written: NL requests made while the conversion is
    // pending queue behind it, and converting them is EBUSY
    s.granted(5, "u", Pr, NONE);
    let b = s.granted(6, "u", Pr, NONE);
    s.conv(6, b, Ex, NONE).ok();
    s.expect(5, Exp::Bast(Ex));
    let c = s.queued(7, "u", Nl, NONE);
    let d = s.queued(8, "u", Nl, NONE);
    let r = s.conv(7, c, Cr, F::QUECVT);
    s.expect_ret(r, Err(Errno::EBUSY));
    let r = s.conv(8, d, Cr, NONE);
    s.expect_ret(r, Err(Errno::EBUSY));
}

fn E15(s: &mut Session<'_>) {
    let a = s.granted(1, "r1", Pr, NONE);
    let b = s.granted(1, "r2", Ex, NONE);
    let c = s.granted(1, "r3", Cw, NONE);
    let r = s.conv(1, a, Nl, F::QUECVT);
    s.expect_ret(r, Err(Errno::EINVAL));
    let r = s.conv(1, b, Ex, F::QUECVT);
    s.expect_ret(r, Err(Errno::EINVAL));
    let r = s.lock(1, "r4", Pr, F::QUECVT);
    s.expect_ret(r, Err(Errno::EINVAL));
    let r = s.conv(1, c, Pr, F::QUECVT);
    s.expect_ret(r, Ok(0));
    s.expect(1, Exp::Cast(0, 0));
}

/// O1 PR, O2 PR on "r"; CONV(O1 → EX) queued (O2 basted for EX). Returns
/// the two ids.
fn two_pr_one_converting(s: &mut Session<'_>) -> (u32, u32) {
    let a = s.granted(1, "r", Pr, NONE);
    let b = s.granted(2, "r", Pr, NONE);
    let r = s.conv(1, a, Ex, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Bast(Ex));
    (a, b)
}

fn E16(s: &mut Session<'_>) {
    let (_a, b) = two_pr_one_converting(s);
    let r = s.conv(2, b, Ex, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(EDEADLK, 0));
    s.lock_id(3, "r", Cw, F::NOQUEUE);
    s.expect(3, Exp::Cast(EAGAIN, 0));
    s.unlock(2, b, NONE).ok();
    s.expect(2, Exp::Cast(EUNLOCK, 0));
    s.expect(1, Exp::Cast(0, 0));
}

fn E17(s: &mut Session<'_>) {
    let (a, b) = two_pr_one_converting(s);
    let r = s.conv(2, b, Ex, F::CONVDEADLK);
    s.expect_ret(r, Ok(0));
    s.expect(1, Exp::Cast(0, 0));
    s.expect(1, Exp::Bast(Ex));
    s.expect(2, Exp::Nothing);
    s.unlock(1, a, NONE).ok();
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.expect(2, Exp::Cast(0, 1));
}

fn E18(s: &mut Session<'_>) {
    let r = s.lock(1, "r", Ex, F::CONVDEADLK);
    s.expect_ret(r, Err(Errno::EINVAL));
    let id = s.granted(1, "r", Pr, NONE);
    let r = s.conv(1, id, Ex, F::CONVDEADLK | F::NOQUEUE);
    s.expect_ret(r, Err(Errno::EINVAL));
    s.expect(1, Exp::Nothing);
}

fn E19(s: &mut Session<'_>) {
    let (_a, b) = two_pr_one_converting(s);
    let r = s.conv(2, b, Ex, F::NOQUEUE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(EAGAIN, 0));
    s.lock_id(3, "r", Cw, F::NOQUEUE);
    s.expect(3, Exp::Cast(EAGAIN, 0));
}

fn E20(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    s.lock_id(2, "r", Cw, F::ALTPR);
    s.expect(2, Exp::Cast(0, 4));
    s.lock_id(3, "r", Cw, F::NOQUEUE);
    s.expect(3, Exp::Cast(EAGAIN, 0));
    s.expect_probe(9, "r", Pr, true);
}

fn E21(s: &mut Session<'_>) {
    s.granted(1, "r", Cw, NONE);
    s.lock_id(2, "r", Pr, F::ALTCW);
    s.expect(2, Exp::Cast(0, 4));
    s.expect_probe(9, "r", Cw, true);
    s.expect_probe(9, "r", Pr, false);
}

fn E22(s: &mut Session<'_>) {
    s.granted(1, "r", Cw, NONE);
    s.lock_id(2, "r", Pr, F::ALTPR | F::NOQUEUE);
    s.expect(2, Exp::Cast(EAGAIN, 0));
}

fn E23(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    let b = s.granted(2, "r", Nl, NONE);
    s.conv(2, b, Ex, F::ALTPR).ok();
    s.expect(2, Exp::Cast(0, 4));
    s.expect_probe(9, "r", Cw, false);
    s.expect_probe(9, "r", Pr, true);
}

fn E24(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    s.queued(2, "r", Cw, NONE);
    s.expect(1, Exp::Bast(Cw));
    s.queued(3, "r", Cw, NONE);
    s.expect(1, Exp::Nothing);
}

fn E25(s: &mut Session<'_>) {
    let (a, _b) = two_pr_one_converting(s);
    let r = s.conv(1, a, Ex, NONE);
    s.expect_ret(r, Err(Errno::EBUSY));
}

fn E26(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    let w = s.queued(2, "r", Pr, NONE);
    let r = s.conv(2, w, Ex, NONE);
    s.expect_ret(r, Err(Errno::EBUSY));
}

fn E27(s: &mut Session<'_>) {
    let r = s.unlock(1, 9999, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
    let r = s.conv(1, 9999, Pr, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
    let r = s.conv(1, 0, Pr, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
}

fn E28(s: &mut Session<'_>) {
    let mut r = s.req(1, b"r", Nl, NONE);
    r.p.mode = 6;
    let got = s.lock_with(1, r);
    s.expect_ret(got, Err(Errno::EINVAL));
    let mut bytes = lock_bytes(s, 1, &[b'n'; 64], Nl, Version::DEVICE);
    bytes.push(b'n');
    bytes[17] = 65;
    if let Some(r) = raw_write(s, Some(1), &bytes, "LOCK namelen 65") {
        s.check("namelen 65", r, Err(Errno::EINVAL));
    }
    // namelen 65 in a maximal 184-byte write (64 bytes of name)
    bytes.pop();
    if let Some(r) = raw_write(s, Some(1), &bytes, "LOCK namelen 65 in 184 bytes") {
        s.check("namelen 65 in 184 bytes", r, Err(Errno::EINVAL));
    }
    s.granted(1, "", Nl, NONE);
}

fn E29(s: &mut Session<'_>) {
    s.granted(1, "abc", Ex, NONE);
    s.lock_id(2, "abc\0", Ex, F::NOQUEUE);
    s.expect(2, Exp::Cast(EAGAIN, 0));
    s.lock_id(2, "abd", Ex, F::NOQUEUE);
    s.expect(2, Exp::Cast(0, 0));
}

fn E30(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Ex, NONE);
    let r = s.req(2, b"r", Ex, F::TIMEOUT).timeout(1);
    s.lock_with(2, r).ok();
    std::thread::sleep(Duration::from_secs(1));
    s.expect(2, Exp::Nothing);
    s.expect(1, Exp::Bast(Ex));
    s.unlock(1, a, NONE).ok();
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.expect(2, Exp::Cast(0, 0));
}

fn E31(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Cr, NONE);
    let b = s.granted(2, "r", Pr, NONE);
    s.conv(1, a, Pw, NONE).ok();
    s.expect(1, Exp::Nothing);
    s.expect(2, Exp::Bast(Pw));
    let r = s.conv(2, b, Ex, F::NODLCKWT);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Nothing);
    let c = s.granted(3, "r", Nl, F::EXPEDITE);
    s.unlock(3, c, NONE).ok();
    s.expect(3, Exp::Cast(EUNLOCK, 0));
    s.expect(2, Exp::Bast(Ex));
    s.expect(1, Exp::Nothing);
    s.expect(2, Exp::Nothing);
    // the same conversion without NODLCKWT is a conversion deadlock
    let a = s.granted(4, "d", Cr, NONE);
    let b = s.granted(5, "d", Pr, NONE);
    s.conv(4, a, Pw, NONE).ok();
    s.expect(5, Exp::Bast(Pw));
    let r = s.conv(5, b, Ex, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(5, Exp::Cast(EDEADLK, 0));
}

fn E32(s: &mut Session<'_>) {
    let x = s.granted(1, "x", Ex, NONE);
    let y = s.granted(1, "y", Ex, NONE);
    s.queued(2, "x", Pr, NONE);
    s.queued(2, "y", Pr, NONE);
    s.expect_id(1, Exp::Bast(Pr), x);
    s.expect_id(1, Exp::Bast(Pr), y);
}

fn E33(s: &mut Session<'_>) {
    s.lock_id(1, "r", Ex, NONE);
    s.queued(2, "r", Pr, NONE);
    s.expect(1, Exp::Cast(0, 0));
    s.expect(1, Exp::Bast(Pr));
}

fn E34(s: &mut Session<'_>) {
    let r = s
        .req(1, b"r", Ex, NONE)
        .ptrs(0xca01, 0xc001, 0, 0xb001, 0x5b01);
    let a = s.lock_with(1, r).unwrap_or(0);
    s.expect(1, Exp::Cast(0, 0));
    s.queued(2, "r", Ex, NONE);
    s.expect(1, Exp::Nothing);
    s.conv(1, a, Ex, NONE).ok();
    s.expect(1, Exp::Cast(0, 0));
    s.expect(1, Exp::Bast(Ex));
}

// ---------------------------------------------------------------------------
// D.3 unlock and cancel

fn U1(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    let w = s.queued(2, "r", Pr, NONE);
    let r = s.cancel(2, w);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(ECANCEL, 0));
    let r = s.unlock(2, w, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
}

/// O1 PR, O2 PR; CONV(O2 → EX) queued; CANCEL(O2). Returns O2's id.
fn cancelled_conversion(s: &mut Session<'_>) -> u32 {
    s.granted(1, "r", Pr, NONE);
    let b = s.granted(2, "r", Pr, NONE);
    s.conv(2, b, Ex, NONE).ok();
    s.expect(1, Exp::Bast(Ex));
    let r = s.cancel(2, b);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(ECANCEL, 0));
    b
}

fn U2(s: &mut Session<'_>) {
    let b = cancelled_conversion(s);
    s.lock_id(3, "r", Cw, F::NOQUEUE);
    s.expect(3, Exp::Cast(EAGAIN, 0));
    s.conv(2, b, Cr, NONE).ok();
    s.expect(2, Exp::Cast(0, 0));
}

fn U3(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Ex, NONE);
    let r = s.cancel(1, a);
    s.expect_ret(r, Ok(0));
    s.expect(1, Exp::Nothing);
    // no cancel happened, so none is remembered: it can be repeated
    let r = s.cancel(1, a);
    s.expect_ret(r, Ok(0));
    s.expect(1, Exp::Nothing);
}

fn U4(s: &mut Session<'_>) {
    let b = cancelled_conversion(s);
    let r = s.cancel(2, b);
    s.expect_ret(r, Err(Errno::EINVAL));
    s.expect(2, Exp::Nothing);
    // a new conversion clears the mark: a cancel works again
    let r = s.conv(2, b, Ex, NONE);
    s.expect_ret(r, Ok(0));
    let r = s.cancel(2, b);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(ECANCEL, 0));
}

fn U5(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    let w = s.queued(2, "r", Pr, NONE);
    let r = s.unlock(2, w, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(EUNLOCK, 0));
    s.expect(2, Exp::Nothing);
    // FORCEUNLOCK does the same
    let w = s.queued(2, "r", Pr, NONE);
    let r = s.unlock(2, w, F::FORCEUNLOCK);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(EUNLOCK, 0));
    // an unlock of a converting lock ends the lock: the other holder may
    // then convert at once
    let a = s.granted(3, "c", Pr, NONE);
    let b = s.granted(4, "c", Pr, NONE);
    s.conv(4, b, Ex, NONE).ok();
    s.expect(3, Exp::Bast(Ex));
    let r = s.unlock(4, b, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(4, Exp::Cast(EUNLOCK, 0));
    let r = s.conv(3, a, Ex, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(3, Exp::Cast(0, 0));
}

fn U6(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Ex, NONE);
    let r = s.unlock(1, a, F::CONVERT);
    s.expect_ret(r, Err(Errno::EINVAL));
    let r = s.unlock(1, a, F::CANCEL | F::FORCEUNLOCK);
    s.expect_ret(r, Err(Errno::EINVAL));
    let r = s.unlock(1, a, F::WAIT);
    s.expect_ret(r, Err(Errno::EINVAL));
    s.expect(1, Exp::Nothing);
    let r = s.unlock(1, a, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(1, Exp::Cast(EUNLOCK, 0));
}

fn U7(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    let b = s.granted(2, "r", Pr, NONE);
    s.conv(2, b, Ex, NONE).ok();
    s.expect(1, Exp::Bast(Ex));
    let r = s.deadlock(2, b, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(EDEADLK, 0));
    s.lock_id(3, "r", Cw, F::NOQUEUE);
    s.expect(3, Exp::Cast(EAGAIN, 0));
    let r = s.conv(2, b, Nl, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(0, 0));
}

fn U8(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    let w = s.queued(2, "r", Pr, NONE);
    let r = s.deadlock(2, w, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(EDEADLK, 0));
    let r = s.unlock(2, w, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
    let r = s.deadlock(2, w, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
    // C.6.4: with nothing to cancel the mark stays on the granted lock,
    // and the next real cancel reports EDEADLK instead of ECANCEL
    let a = s.granted(3, "g", Pr, NONE);
    s.granted(4, "g", Pr, NONE);
    let r = s.deadlock(3, a, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(3, Exp::Nothing);
    let r = s.conv(3, a, Ex, NONE);
    s.expect_ret(r, Ok(0));
    s.expect(4, Exp::Bast(Ex));
    let r = s.cancel(3, a);
    s.expect_ret(r, Ok(0));
    s.expect(3, Exp::Cast(EDEADLK, 0));
}

fn U9(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Ex, NONE);
    s.unlock(1, a, NONE).ok();
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    let r = s.unlock(1, a, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
    let r = s.cancel(1, a);
    s.expect_ret(r, Err(Errno::ENOENT));
    let r = s.conv(1, a, Pr, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
}

// ---------------------------------------------------------------------------
// D.4 LVB

const ZEROS: [u8; 32] = [0; 32];

/// V1: O1 EX|VALBLK on a fresh "r" reads 32 zero bytes. Returns the id.
fn v1(s: &mut Session<'_>) -> u32 {
    let a = s.lock_id(1, "r", Ex, F::VALBLK);
    s.expect(1, Exp::CastLvb(0, 0, Some(ZEROS)));
    a
}

/// V2 after V1: writes "A" down-converting to NL; O2 reads it. Returns
/// O1's and O2's ids.
fn v2(s: &mut Session<'_>) -> (u32, u32) {
    let a = v1(s);
    s.conv_lvb(1, a, Nl, F::VALBLK, "A").ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    let b = s.lock_id(2, "r", Pr, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 0, Some(lvb("A"))));
    (a, b)
}

fn V1(s: &mut Session<'_>) {
    v1(s);
}

fn V2(s: &mut Session<'_>) {
    v2(s);
}

fn V3(s: &mut Session<'_>) {
    let (a, b) = v2(s);
    s.unlock(2, b, NONE).ok();
    s.expect(2, Exp::Cast(EUNLOCK, 0));
    s.conv(1, a, Ex, F::VALBLK).ok();
    s.expect(1, Exp::CastLvb(0, 0, Some(lvb("A"))));
    s.conv(1, a, Nl, NONE).ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    s.lock_id(3, "r", Pr, F::VALBLK);
    s.expect(3, Exp::CastLvb(0, 0, Some(lvb("A"))));
}

fn V4(s: &mut Session<'_>) {
    let a = v1(s);
    s.conv_lvb(1, a, Ex, F::VALBLK, "B").ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    s.expect_probe(9, "r", Cr, false);
    s.conv(1, a, Nl, NONE).ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    s.lock_id(2, "r", Pr, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 0, Some(lvb("B"))));
}

fn V5(s: &mut Session<'_>) {
    for (res, keeper) in [("r", false), ("k", true)] {
        if keeper {
            s.granted(3, res, Nl, NONE);
        }
        let a = s.lock_id(1, res, Ex, F::VALBLK);
        s.expect(1, Exp::CastLvb(0, 0, Some(ZEROS)));
        s.conv_lvb(1, a, Nl, F::VALBLK, "C").ok();
        s.expect(1, Exp::CastLvb(0, 0, None));
        s.unlock(1, a, NONE).ok();
        s.expect(1, Exp::Cast(EUNLOCK, 0));
        s.lock_id(2, res, Pr, F::VALBLK);
        let want = if keeper { lvb("C") } else { ZEROS };
        s.expect(2, Exp::CastLvb(0, 0, Some(want)));
    }
    // C.9.3: an unlock with VALBLK from PW writes the LVB it carries
    let a = s.lock_id(1, "k", Pw, F::VALBLK);
    s.expect(1, Exp::Nothing);
    s.close(2);
    s.expect(1, Exp::CastLvb(0, 0, Some(lvb("C"))));
    let r = s.unlock_req(1, a, F::VALBLK);
    s.unlock_with(1, r.lvb(lvb("U"))).ok();
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.lock_id(4, "k", Pr, F::VALBLK);
    s.expect(4, Exp::CastLvb(0, 0, Some(lvb("U"))));
}

/// V6: returns O1's and O2's ids.
fn v6(s: &mut Session<'_>) -> (u32, u32) {
    s.granted(3, "r", Nl, NONE);
    let a = s.lock_id(1, "r", Ex, F::VALBLK);
    s.expect(1, Exp::CastLvb(0, 0, Some(ZEROS)));
    s.conv_lvb(1, a, Nl, F::VALBLK, "D").ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    s.conv(1, a, Pw, F::VALBLK).ok();
    s.expect(1, Exp::CastLvb(0, 0, Some(lvb("D"))));
    s.conv(1, a, Nl, F::IVVALBLK).ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    let b = s.lock_id(2, "r", Pr, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 2, Some(lvb("D"))));
    (a, b)
}

fn V6(s: &mut Session<'_>) {
    v6(s);
}

fn V7(s: &mut Session<'_>) {
    let (a, b) = v6(s);
    s.unlock(2, b, NONE).ok();
    s.expect(2, Exp::Cast(EUNLOCK, 0));
    s.conv(1, a, Ex, F::VALBLK).ok();
    s.expect(1, Exp::CastLvb(0, 2, Some(lvb("D"))));
    s.conv_lvb(1, a, Nl, F::VALBLK, "E").ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    s.lock_id(2, "r", Pr, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 0, Some(lvb("E"))));
}

fn V8(s: &mut Session<'_>) {
    s.granted(3, "r", Nl, NONE);
    let a = s.lock_id(1, "r", Ex, F::VALBLK);
    s.expect(1, Exp::CastLvb(0, 0, Some(ZEROS)));
    s.conv_lvb(1, a, Ex, F::VALBLK, "F").ok();
    s.expect(1, Exp::CastLvb(0, 0, None));
    s.close(1);
    s.lock_id(2, "r", Pr, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 2, Some(lvb("F"))));
    // C.9.5: so does an unlock with IVVALBLK from EX
    s.granted(3, "i", Nl, NONE);
    let a = s.lock_id(4, "i", Ex, F::VALBLK);
    s.expect(4, Exp::CastLvb(0, 0, Some(ZEROS)));
    s.conv_lvb(4, a, Ex, F::VALBLK, "I").ok();
    s.expect(4, Exp::CastLvb(0, 0, None));
    s.unlock(4, a, F::IVVALBLK).ok();
    s.expect(4, Exp::Cast(EUNLOCK, 0));
    s.lock_id(5, "i", Pr, F::VALBLK);
    s.expect(5, Exp::CastLvb(0, 2, Some(lvb("I"))));
}

fn V9(s: &mut Session<'_>) {
    let w = s.lock_id(2, "r", Ex, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 0, Some(ZEROS)));
    s.conv_lvb(2, w, Nl, F::VALBLK, "G").ok();
    s.expect(2, Exp::CastLvb(0, 0, None));
    let a = s.lock_id(1, "r", Pr, F::VALBLK);
    s.expect(1, Exp::CastLvb(0, 0, Some(lvb("G"))));
    s.conv(1, a, Cr, NONE).ok();
    s.expect(1, Exp::CastLvb(0, 0, Some(ZEROS)));
}

// ---------------------------------------------------------------------------
// D.5 owner lifecycle

fn C1(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    s.queued(2, "r", Ex, NONE);
    s.close(1);
    s.expect(2, Exp::Cast(0, 0));
}

fn C2(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Pr, NONE);
    let b = s.granted(2, "r", Pr, NONE);
    s.conv(2, b, Ex, NONE).ok();
    s.expect(1, Exp::Bast(Ex));
    s.close(2);
    s.conv(1, a, Ex, NONE).ok();
    s.expect(1, Exp::Cast(0, 0));
    // A.7: a PERSISTENT lock's pending conversion is dropped at close too;
    // the orphan keeps its granted mode (PR: adoptable in PR, and a CW
    // request is still not grantable)
    s.granted(3, "p", Pr, NONE);
    let b = s.granted(4, "p", Pr, F::PERSISTENT);
    s.conv(4, b, Ex, F::PERSISTENT).ok();
    s.expect(3, Exp::Bast(Ex));
    s.close(4);
    s.expect_probe(9, "p", Cw, false);
    let r = s.lock(3, "p", Pr, F::ORPHAN);
    s.expect_ret(r, Ok(b));
}

/// An orphan "p" held EX by a closed O1; returns its id.
fn orphan_p(s: &mut Session<'_>) -> u32 {
    let p = s.granted(1, "p", Ex, F::PERSISTENT);
    s.close(1);
    p
}

fn C3(s: &mut Session<'_>) {
    let p = orphan_p(s);
    s.lock_id(2, "p", Pr, F::NOQUEUE);
    s.expect(2, Exp::Cast(EAGAIN, 0));
    let r = s.lock(2, "p", Ex, F::ORPHAN);
    s.expect_ret(r, Ok(p));
    s.expect(2, Exp::Nothing);
    // the adopter owns it now, with its own pointers: its basts and
    // casts go to O2 with O2's pointers
    let w = s.queued(3, "p", Ex, NONE);
    if let Some(r) = s.expect_id(2, Exp::Bast(Ex), p) {
        s.check(
            "adopter's bast pointers",
            (r.astaddr, r.user_lksb),
            (0xba02, 0x5b02),
        );
    }
    s.unlock(2, p, NONE).ok();
    if let Some(r) = s.expect(2, Exp::Cast(EUNLOCK, 0)) {
        s.check(
            "adopter's cast pointers",
            (r.astaddr, r.user_lksb),
            (0xca02, 0x5b02),
        );
    }
    s.expect_id(3, Exp::Cast(0, 0), w);
}

fn C4(s: &mut Session<'_>) {
    orphan_p(s);
    let r = s.lock(2, "p", Pr, F::ORPHAN);
    s.expect_ret(r, Err(Errno::EAGAIN));
    let r = s.lock(2, "zz", Ex, F::ORPHAN);
    s.expect_ret(r, Err(Errno::ENOENT));
    let r = s.lock(2, "p\0", Ex, F::ORPHAN);
    s.expect_ret(r, Err(Errno::ENOENT));
    s.expect(2, Exp::Nothing);
}

fn C5(s: &mut Session<'_>) {
    s.granted(1, "q", Ex, F::PERSISTENT);
    s.close(1);
    s.queued(2, "q", Ex, NONE);
    let r = s.purge(2, 0, 0, "0");
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Cast(0, 0));
    // A.7: a waiting PERSISTENT request leaves the queue at close but
    // stays an orphan, not adoptable (it holds nothing). Not purged here:
    // a purge of it is a kernel BUG on 6.12 (dlm-engine/tests/api.rs
    // checks the engine's answer; docs/kernel-differences.md)
    s.granted(3, "w", Ex, NONE);
    s.queued(4, "w", Pr, F::PERSISTENT);
    s.expect(3, Exp::Bast(Pr));
    s.close(4);
    let r = s.lock(5, "w", Pr, F::ORPHAN);
    s.expect_ret(r, Err(Errno::EAGAIN));
    s.expect(3, Exp::Nothing);
}

fn C6(s: &mut Session<'_>) {
    let ls = s.ls;
    let x = s.target().orphan_from_other_thread(&ls, b"q", Ex);
    s.note("thread X: LOCK \"q\" EX PERSISTENT, close, exit");
    let y = 0x7fff_fff0;
    let r = s.purge(2, 0, y, "Y");
    s.expect_ret(r, Ok(0));
    s.lock_id(2, "q", Ex, F::NOQUEUE);
    s.expect(2, Exp::Cast(EAGAIN, 0));
    let r = s.purge(2, 0, x, "X");
    s.expect_ret(r, Ok(0));
    s.lock_id(2, "q", Ex, F::NOQUEUE);
    s.expect(2, Exp::Cast(0, 0));
}

fn C7(s: &mut Session<'_>) {
    // an orphan "q" of this thread: the purge below must leave it alone
    s.granted(1, "q", Ex, F::PERSISTENT);
    s.close(1);
    let a = s.granted(2, "s", Ex, NONE);
    s.queued(3, "s", Ex, NONE);
    let p = s.poll(2);
    s.check("a bast queued for O2", p, true);
    let tid = s.tid();
    let r = s.purge(2, 0, tid, "own tid");
    s.expect_ret(r, Ok(0));
    s.expect(2, Exp::Nothing);
    s.expect(3, Exp::Cast(0, 0));
    let r = s.unlock(2, a, NONE);
    s.expect_ret(r, Err(Errno::ENOENT));
    s.expect_probe(9, "q", Ex, false);
}

fn C8(s: &mut Session<'_>) {
    let ls = s.ls;
    let m = s.target().create(&ls, LsFlags::empty());
    s.note(format!(
        "CREATE t again -> {}",
        if m == Ok(s.minor) {
            "m".into()
        } else {
            super::fmt_ret(&m)
        }
    ));
    s.granted(1, "r", Ex, NONE);
    let minor = s.minor;
    let r = s.target().remove(minor, false);
    s.note(format!("REMOVE m 0 -> {}", super::fmt_ret(&r.map(|()| 0))));
    s.check("REMOVE with count 2", r, Ok(()));
    s.granted(2, "r2", Ex, NONE);
    s.lock_id(2, "r", Ex, F::NOQUEUE);
    s.expect(2, Exp::Cast(EAGAIN, 0));
}

fn C9(s: &mut Session<'_>) {
    orphans_keep_lockspace_busy(s);
    s.granted(1, "r", Ex, NONE);
    let minor = s.minor;
    let r = s.target().remove(minor, false);
    s.note(format!("REMOVE m 0 -> {}", super::fmt_ret(&r.map(|()| 0))));
    s.check("REMOVE with a lock", r, Err(Errno::EBUSY));
    let o = s.op(1);
    let (r, returned) = s
        .target()
        .remove_while_open(minor, true, o, Duration::from_millis(300));
    s.note(format!(
        "REMOVE m FORCEFREE -> {} ({} O1 closed)",
        super::fmt_ret(&r.map(|()| 0)),
        if returned { "before" } else { "after" }
    ));
    s.close(1);
    s.check("FORCEFREE remove", (r, returned), (Ok(()), false));
    if r.is_ok() {
        s.set_removed();
    }
    let ls = s.ls;
    let reopen = s.target().open(&ls);
    s.note(format!("open -> {}", super::fmt_ret(&reopen.map(|_| 0))));
    match reopen {
        Ok(o) => {
            s.target().close(o);
            s.mismatch("open after the remove succeeded".into());
        }
        Err(e) => s.check(
            "open after remove",
            e == Errno::ENOENT || e == Errno::ENODEV,
            true,
        ),
    }
}

/// A.8: an orphan keeps a lockspace busy for REMOVE without FORCEFREE;
/// with FORCEFREE it is removed, and a second remove is ENOENT (in a
/// lockspace of its own, `<ls>o`).
fn orphans_keep_lockspace_busy(s: &mut Session<'_>) {
    let name = Name::lockspace(format!("{}o", String::from_utf8_lossy(s.ls.as_bytes())).as_bytes())
        .expect("name");
    let Ok(m) = s.target().create(&name, LsFlags::empty()) else {
        s.mismatch("CREATE o failed".into());
        return;
    };
    let Ok(o) = s.target().open(&name) else {
        s.mismatch("open o failed".into());
        return;
    };
    let req = Request::Lock(s.req(1, b"r", Ex, F::PERSISTENT).p);
    let r = s.target().write(o, &req);
    s.note(format!(
        "o: LOCK \"r\" EX PERSISTENT -> {}",
        super::fmt_ret(&r)
    ));
    let cast = s.target().read(o);
    s.check(
        "o: the grant",
        cast.map(|c| c.map(|c| (c.status.to_kernel(), c.bast_mode))),
        Ok(Some((0, None))),
    );
    s.target().close(o);
    s.note("o: close");
    let r = s.target().remove(m, false);
    s.note(format!("REMOVE o 0 -> {}", super::fmt_ret(&r.map(|()| 0))));
    s.check("REMOVE with an orphan", r, Err(Errno::EBUSY));
    let r = s.target().remove(m, true);
    s.note(format!(
        "REMOVE o FORCEFREE -> {}",
        super::fmt_ret(&r.map(|()| 0))
    ));
    s.check("REMOVE FORCEFREE with an orphan", r, Ok(()));
    // gone: a second remove finds nothing
    let r = s.target().remove(m, false);
    s.note(format!(
        "REMOVE o again -> {}",
        super::fmt_ret(&r.map(|()| 0))
    ));
    s.check("REMOVE of a removed lockspace", r, Err(Errno::ENOENT));
}

fn C10(s: &mut Session<'_>) {
    let k = s.granted(1, "r", Ex, NONE);
    let r = s.unlock(2, k, NONE);
    s.expect_ret(r, Ok(0));
    if let Some(r) = s.expect(1, Exp::Cast(EUNLOCK, 0)) {
        s.check("user_lksb", r.user_lksb, 0x5b02);
    }
    s.expect(2, Exp::Nothing);
}

// ---------------------------------------------------------------------------
// Appendix X.2: the rows where 6.1 and 6.12 differ, as scenarios (the
// expectations are 6.12's, the spec's "current" column)

/// A bast after a cast(0, ALTMODE) carries sb_status 0 and sb_flags 0.
fn X1(s: &mut Session<'_>) {
    s.granted(1, "r", Pr, NONE);
    s.lock_id(2, "r", Cw, F::ALTPR);
    s.expect(2, Exp::Cast(0, 4));
    s.queued(3, "r", Ex, NONE);
    s.expect(1, Exp::Bast(Ex));
    if let Some(r) = s.expect(2, Exp::Bast(Ex)) {
        s.check(
            "bast status, flags",
            (r.status.to_kernel(), r.flags.bits()),
            (0, 0),
        );
    }
}

/// A lock id is free again as soon as its unlock cast is queued.
fn X2(s: &mut Session<'_>) {
    let a = s.granted(1, "a", Nl, NONE);
    s.unlock(1, a, NONE).ok();
    let b = s.lock_id(1, "b", Nl, NONE);
    s.check("id after an unread unlock", b, a);
    s.expect(1, Exp::Cast(EUNLOCK, 0));
    s.expect(1, Exp::Cast(0, 0));
}

/// A cast's LVB is the lock's buffer when the cast was queued, not when
/// it is read.
fn X3(s: &mut Session<'_>) {
    let w = s.lock_id(2, "r", Ex, F::VALBLK);
    s.expect(2, Exp::CastLvb(0, 0, Some(ZEROS)));
    s.conv_lvb(2, w, Nl, F::VALBLK, "A").ok();
    s.expect(2, Exp::CastLvb(0, 0, None));
    let a = s.lock_id(1, "r", Pr, F::VALBLK);
    // overwrites the lock's buffer (docs/semantics.md V9) before the first cast is read
    s.conv_lvb(1, a, Cr, NONE, "Z").ok();
    s.expect(1, Exp::CastLvb(0, 0, Some(lvb("A"))));
    s.expect(1, Exp::CastLvb(0, 0, Some(lvb("Z"))));
}

/// One FIFO per opener across its locks.
fn X4(s: &mut Session<'_>) {
    let a = s.lock_id(1, "a", Nl, NONE);
    let b = s.lock_id(1, "b", Nl, NONE);
    s.unlock(1, a, NONE).ok();
    s.expect_id(1, Exp::Cast(0, 0), a);
    s.expect_id(1, Exp::Cast(0, 0), b);
    s.expect_id(1, Exp::Cast(EUNLOCK, 0), a);
}

/// Another opener converts O1's lock by its id (C10 is the same for
/// UNLOCK): the kernel has no owner check; the lock stays O1's, O1
/// receives the completion and later blocking callbacks, with the
/// pointers of O2's request.
fn X5(s: &mut Session<'_>) {
    let a = s.granted(1, "r", Pr, NONE);
    let r = s.conv(2, a, Ex, NONE);
    s.expect_ret(r, Ok(0));
    if let Some(r) = s.expect(1, Exp::Cast(0, 0)) {
        s.check("user_lksb", r.user_lksb, 0x5b02);
    }
    s.expect(2, Exp::Nothing);
    s.queued(3, "r", Pr, NONE);
    s.expect(1, Exp::Bast(Pr));
    s.expect(2, Exp::Nothing);
}

/// Another opener cancels O2's waiting request by its id: O2 receives
/// the ECANCEL completion, with the pointers of O3's request.
fn X6(s: &mut Session<'_>) {
    s.granted(1, "r", Ex, NONE);
    let w = s.queued(2, "r", Pr, NONE);
    s.expect(1, Exp::Bast(Pr));
    let r = s.cancel(3, w);
    s.expect_ret(r, Ok(0));
    if let Some(r) = s.expect(2, Exp::Cast(ECANCEL, 0)) {
        s.check("user_lksb", r.user_lksb, 0x5b03);
    }
    s.expect(3, Exp::Nothing);
}
