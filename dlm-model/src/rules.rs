//! The lock rules of docs/semantics.md Part C, transcribed literally: validation (C.3),
//! the grant predicate (C.4.2) and alternate modes (C.4.3), requests
//! (C.4.1), conversions and conversion deadlocks (C.5), unlock / cancel /
//! force-unlock / deadlock-cancel (C.6), the pending-grant pass (C.7),
//! blocking callbacks and their suppression (C.8), the LVB (C.9, A.5), end
//! of life (C.10) and owners / orphans / purge (C.11).
//!
//! Function names follow the kernel functions the spec cites, so each one
//! can be read side by side with its spec section and with `fs/dlm`.

use super::{Lock, Lockspace, Owner, OwnerId, Resource, Sts};
use dlm_core::check::{check_lock_args, check_unlock_flags};
use dlm_core::{Errno, LVB_LEN, LockFlags as F, LockParams, LockResult, Mode, SbFlags, Status};

/// Mode as the kernel's int: IV is -1.
fn m(mode: Option<Mode>) -> i8 {
    mode.map_or(-1, |m| m.raw() as i8)
}

/// C.2 compatibility, with the kernel's IV row/column (all compatible).
fn compat(a: Option<Mode>, b: Option<Mode>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.compatible(b),
        _ => true,
    }
}

const PR: i8 = 3;
const EX: i8 = 5;

/// C.9.1 `lvb_ops[gr][rq]`, indexed by mode + 1 (row/column 0 is IV):
/// 1 = read, 0 = write, -1 = no-op.
const LVB_OPS: [[i8; 7]; 7] = [
    // IV  NL  CR  CW  PR  PW  EX
    [-1, 1, 1, 1, 1, 1, 1],    // IV
    [-1, 1, 1, 1, 1, 1, 1],    // NL
    [-1, -1, 1, 1, 1, 1, 1],   // CR
    [-1, -1, -1, 1, 1, 1, 1],  // CW
    [-1, -1, -1, -1, 1, 1, 1], // PR
    [-1, 0, 0, 0, 0, 0, 1],    // PW
    [-1, 0, 0, 0, 0, 0, 0],    // EX
];

fn lvb_op(from: i8, to: i8) -> i8 {
    LVB_OPS[(from + 1) as usize][(to + 1) as usize]
}

/// What `do_request` / `do_convert` ended with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Granted,
    InProgress,
    Again,
    Deadlk,
}

/// Which queue `send_bast_queue` walks.
#[derive(Clone, Copy)]
enum Queue {
    Grant,
    Convert,
}

/// A callback about to be queued (C.8.2).
#[derive(Clone, Copy)]
enum Cb {
    Cast { status: Status },
    Bast { mode: Mode },
}

/// Mutable access to one lockspace and to all openers (callbacks go to a
/// lock's owning opener).
pub(super) struct Ctx<'a> {
    pub(super) ls: &'a mut Lockspace,
    pub(super) owners: &'a mut Vec<Owner>,
}

/// Read-only access to one lockspace (invariant checks).
pub(super) struct CtxRef<'a> {
    pub(super) ls: &'a Lockspace,
}

fn find(ls: &Lockspace, id: u32) -> &Lock {
    ls.locks
        .iter()
        .find(|l| l.id == id)
        .expect("model: no such lock")
}

fn find_res(ls: &Lockspace, rid: u64) -> &Resource {
    ls.resources
        .iter()
        .find(|r| r.rid == rid)
        .expect("model: no such resource")
}

/// C.4.2, rules 1–11 (`_can_be_granted`), on a read-only lockspace.
fn can_be_granted_raw(ls: &Lockspace, id: u32, now: bool) -> bool {
    can_be_granted_as(ls, id, now, find(ls, id).rq)
}

/// C.4.2 for lock `id` as if its requested mode were `rq`.
fn can_be_granted_as(ls: &Lockspace, id: u32, now: bool, rq: Option<Mode>) -> bool {
    let lk = find(ls, id);
    let r = find_res(ls, lk.rid);
    let conv = lk.gr.is_some();
    let conflict = |q: &Vec<u32>| {
        q.iter()
            .filter(|&&o| o != id)
            .any(|&o| !compat(find(ls, o).gr, rq))
    };
    // Rule 1: EXPEDITE -> grant.
    if lk.exflags.contains(F::EXPEDITE) {
        return true;
    }
    // Rule 2: another lock on the grant queue, granted mode incompatible.
    if conflict(&r.grant) {
        return false;
    }
    // Rule 3: another lock on the convert queue, *granted* mode incompatible.
    if conflict(&r.convert) {
        return false;
    }
    // Rule 4: recovery only; not applicable on one node.
    // Rule 5: now, conversion, no QUECVT -> grant (in place).
    if now && conv && !lk.exflags.contains(F::QUECVT) {
        return true;
    }
    // Rule 6: now, conversion, QUECVT -> grant iff the convert queue is empty.
    if now && conv && lk.exflags.contains(F::QUECVT) {
        return r.convert.is_empty();
    }
    // Rule 7: NOORDER -> grant.
    if lk.exflags.contains(F::NOORDER) {
        return true;
    }
    // Rule 8: not now, conversion, first in the convert queue -> grant.
    if !now && conv && r.convert.first() == Some(&id) {
        return true;
    }
    // Rule 9: now, new request, convert and wait queues empty -> grant.
    if now && !conv && r.convert.is_empty() && r.wait.is_empty() {
        return true;
    }
    // Rule 10: not now, new request, convert queue empty, first waiter.
    if !now && !conv && r.convert.is_empty() && r.wait.first() == Some(&id) {
        return true;
    }
    // Rule 11: deny.
    false
}

/// C.5 step 2, conversion deadlock detection (`conversion_deadlock_detect`).
fn conversion_deadlock_detect(ls: &Lockspace, id: u32) -> bool {
    let lk2 = find(ls, id);
    let r = find_res(ls, lk2.rid);
    let mut lkb_is_ahead = false;
    for &o in &r.convert {
        if o == id {
            // Entries after this point are behind the lock.
            lkb_is_ahead = true;
            continue;
        }
        let lk1 = find(ls, o);
        if !lkb_is_ahead {
            // An entry ahead: deadlock if our granted mode blocks its request.
            if !compat(lk2.gr, lk1.rq) {
                return true;
            }
        } else if !compat(lk2.gr, lk1.rq) && !compat(lk1.gr, lk2.rq) {
            // An entry behind counts only if both directions are incompatible.
            return true;
        }
    }
    false
}

impl Ctx<'_> {
    // ---- C.1 object access (linear scans) ----

    fn lk(&self, id: u32) -> &Lock {
        find(self.ls, id)
    }

    fn lk_mut(&mut self, id: u32) -> &mut Lock {
        self.ls
            .locks
            .iter_mut()
            .find(|l| l.id == id)
            .expect("model: no such lock")
    }

    fn res(&self, rid: u64) -> &Resource {
        find_res(self.ls, rid)
    }

    fn res_mut(&mut self, rid: u64) -> &mut Resource {
        self.ls
            .resources
            .iter_mut()
            .find(|r| r.rid == rid)
            .expect("model: no such resource")
    }

    fn rid(&self, id: u32) -> u64 {
        self.lk(id).rid
    }

    fn find_lkb(&self, id: u32) -> Result<(), Errno> {
        if self.ls.locks.iter().any(|l| l.id == id) {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }

    /// C.1 lock ids: the lowest unused positive integer.
    fn create_lkb(&mut self, owner: OwnerId) -> u32 {
        let mut id = 1;
        while self.ls.locks.iter().any(|l| l.id == id) {
            id += 1;
        }
        self.ls.locks.push(Lock {
            id,
            rid: u64::MAX,
            gr: None,
            rq: None,
            status: Sts::None,
            exflags: F::empty(),
            sbflags: SbFlags::empty(),
            highbast: 0,
            ua_lvb: None,
            has_lvbptr: false,
            owner,
            ownpid: 0,
            orphan: false,
            dead: false,
            eol: false,
            deadlock_cancel: false,
            castaddr: 0,
            castparam: 0,
            bastaddr: 0,
            bastparam: 0,
            user_lksb: 0,
            last_cast_cb_mode: -1,
            last_cb_mode: -1,
            last_cb_bast: false,
        });
        id
    }

    /// C.1: find the resource by zero-padded name, or create it.
    fn find_rsb(&mut self, p: &LockParams) -> u64 {
        if let Some(r) = self
            .ls
            .resources
            .iter()
            .find(|r| r.name.padded() == p.name.padded())
        {
            return r.rid;
        }
        let rid = self.ls.next_rid;
        self.ls.next_rid += 1;
        self.ls.resources.push(Resource {
            rid,
            name: p.name,
            grant: Vec::new(),
            convert: Vec::new(),
            wait: Vec::new(),
            lvb: None,
            valnotvalid: false,
        });
        rid
    }

    /// Frees lock objects nobody references any more (C.10: once at end of
    /// life, or never granted and not an orphan), then resources no lock
    /// object references (C.1, C.9.6: the LVB goes with the resource).
    ///
    /// A lock object is referenced while it is on a queue, on its owner's
    /// lock list, or on the orphan list (the kernel's reference counts).
    pub(super) fn collect(&mut self) {
        let mut i = 0;
        while i < self.ls.locks.len() {
            let l = &self.ls.locks[i];
            let on_owner_list = self.owners[l.owner.0 as usize].locks.contains(&l.id);
            let on_orphans = self.ls.orphans.contains(&l.id);
            if l.status == Sts::None && !on_owner_list && !on_orphans {
                self.ls.locks.remove(i);
            } else {
                i += 1;
            }
        }
        let locks = &self.ls.locks;
        self.ls
            .resources
            .retain(|r| locks.iter().any(|l| l.rid == r.rid));
    }

    // ---- C.1 queue membership (`add_lkb`, `del_lkb`, `move_lkb`) ----

    fn add_lkb(&mut self, id: u32, sts: Sts) {
        let rid = self.rid(id);
        let headque = self.lk(id).exflags.contains(F::HEADQUE);
        let gr = self.lk(id).gr;
        self.lk_mut(id).status = sts;
        match sts {
            // C.1: wait and convert queues are FIFO; HEADQUE inserts at the head.
            Sts::Waiting | Sts::Convert => {
                let r = self.res_mut(rid);
                let q = if sts == Sts::Waiting {
                    &mut r.wait
                } else {
                    &mut r.convert
                };
                if headque { q.insert(0, id) } else { q.push(id) }
            }
            // C.1: the grant queue insertion helper (`lkb_add_ordered`):
            // before the first entry whose *requested* mode is below the new
            // granted mode (IV for ordinary granted locks, so in effect at
            // the head).
            Sts::Granted => {
                let pos = {
                    let r = self.res(rid);
                    r.grant.iter().position(|&o| m(self.lk(o).rq) < m(gr))
                };
                let r = self.res_mut(rid);
                match pos {
                    Some(p) => r.grant.insert(p, id),
                    None => r.grant.push(id),
                }
            }
            Sts::None => unreachable!(),
        }
    }

    fn del_lkb(&mut self, id: u32) {
        let rid = self.rid(id);
        let sts = self.lk(id).status;
        let r = self.res_mut(rid);
        match sts {
            Sts::Waiting => r.wait.retain(|&o| o != id),
            Sts::Granted => r.grant.retain(|&o| o != id),
            Sts::Convert => r.convert.retain(|&o| o != id),
            Sts::None => {}
        }
        self.lk_mut(id).status = Sts::None;
    }

    fn move_lkb(&mut self, id: u32, sts: Sts) {
        self.del_lkb(id);
        self.add_lkb(id, sts);
    }

    // ---- C.4.2 / C.4.3 / C.5: the grant predicate ----

    /// C.4.2 with the conversion-deadlock branch of C.5 and the ALT retry of
    /// C.4.3 (`can_be_granted`). Returns (granted, deadlocked); the
    /// deadlocked flag is only reported when `want_err` (the kernel's
    /// `err` pointer).
    fn can_be_granted(&mut self, id: u32, now: bool, want_err: bool) -> (bool, bool) {
        let rqmode = self.lk(id).rq;
        let is_convert = self.lk(id).gr.is_some();
        let flags = self.lk(id).exflags;
        if can_be_granted_raw(self.ls, id, now) {
            return (true, false);
        }
        // C.5 step 2: deadlock detection for conversions that could queue
        // (not with NOQUEUE). If found, no ALT retry.
        if is_convert && !flags.contains(F::NOQUEUE) && conversion_deadlock_detect(self.ls, id) {
            let mut deadlk = false;
            if flags.contains(F::CONVDEADLK) {
                // C.5 step 3, CONVDEADLK: demote to NL, DEMOTED, silently.
                let lk = self.lk_mut(id);
                lk.gr = Some(Mode::Nl);
                lk.sbflags |= SbFlags::DEMOTED;
            } else if want_err {
                deadlk = true;
            }
            return (false, deadlk);
        }
        // C.4.3: ALTPR wins over ALTCW; none if rq already equals it.
        let alt = if rqmode != Some(Mode::Pr) && flags.contains(F::ALTPR) {
            Some(Mode::Pr)
        } else if rqmode != Some(Mode::Cw) && flags.contains(F::ALTCW) {
            Some(Mode::Cw)
        } else {
            None
        };
        if let Some(alt) = alt {
            self.lk_mut(id).rq = Some(alt);
            if can_be_granted_raw(self.ls, id, now) {
                self.lk_mut(id).sbflags |= SbFlags::ALTMODE;
                return (true, false);
            }
            self.lk_mut(id).rq = rqmode;
        }
        (false, false)
    }

    // ---- C.9: the LVB at grant and unlock ----

    /// C.9.2 (`set_lvb_lock`), applied before the grant changes `gr`.
    fn set_lvb_lock(&mut self, id: u32) {
        let rid = self.rid(id);
        let lk = self.lk(id);
        let b = lvb_op(m(lk.gr), m(lk.rq));
        let (has_ptr, flags, buf) = (lk.has_lvbptr, lk.exflags, lk.ua_lvb);
        if b == 1 {
            // Read: needs the buffer, VALBLK and a resource LVB; otherwise
            // nothing, and no VALNOTVALID check either.
            let Some(res_lvb) = self.res(rid).lvb else {
                return;
            };
            if !has_ptr || !flags.contains(F::VALBLK) {
                return;
            }
            self.lk_mut(id).ua_lvb = Some(res_lvb);
        } else if b == 0 {
            // Write: IVVALBLK invalidates and stops (not reported).
            if flags.contains(F::IVVALBLK) {
                self.res_mut(rid).valnotvalid = true;
                return;
            }
            if !has_ptr || !flags.contains(F::VALBLK) {
                return;
            }
            let r = self.res_mut(rid);
            r.lvb = Some(buf.unwrap_or([0; LVB_LEN]));
            r.valnotvalid = false;
        }
        // VALNOTVALID reporting, after a read that copied, a write, a no-op.
        if self.res(rid).valnotvalid {
            self.lk_mut(id).sbflags |= SbFlags::VALNOTVALID;
        }
    }

    /// C.6.1 / C.9.3 (`set_lvb_unlock`): only from PW or EX.
    fn set_lvb_unlock(&mut self, id: u32) {
        let rid = self.rid(id);
        let lk = self.lk(id);
        if m(lk.gr) < Mode::Pw.raw() as i8 {
            return;
        }
        let (has_ptr, flags, buf) = (lk.has_lvbptr, lk.exflags, lk.ua_lvb);
        if flags.contains(F::IVVALBLK) {
            self.res_mut(rid).valnotvalid = true;
            return;
        }
        if !has_ptr || !flags.contains(F::VALBLK) {
            return;
        }
        let r = self.res_mut(rid);
        r.lvb = Some(buf.unwrap_or([0; LVB_LEN]));
        r.valnotvalid = false;
    }

    // ---- Grant, revert, remove (C.4.1, C.5, C.6) ----

    /// `grant_lock`: LVB handling, then `gr = rq`, onto the grant queue,
    /// `highbast = 0` (C.4.1, C.8.1 "reset only when granted").
    fn grant_lock(&mut self, id: u32) {
        self.set_lvb_lock(id);
        let lk = self.lk(id);
        let (gr, rq, status) = (lk.gr, lk.rq, lk.status);
        if gr != rq {
            self.lk_mut(id).gr = rq;
            if status != Sts::None {
                self.move_lkb(id, Sts::Granted);
            } else {
                self.add_lkb(id, Sts::Granted);
            }
        } else if status == Sts::Convert {
            // docs/semantics.md C.5 ("stays on or moves to the grant queue"). The kernel's
            // `_grant_lock` skips the move when gr == rq, which only happens
            // for a queued conversion granted in an ALT mode equal to its
            // granted mode; it would then stay on the convert queue and be
            // "granted" again to IV. We follow the spec here.
            self.move_lkb(id, Sts::Granted);
        }
        let lk = self.lk_mut(id);
        lk.rq = None;
        lk.highbast = 0;
    }

    /// `grant_lock_pending`: grant and queue the cast (C.7).
    fn grant_lock_pending(&mut self, id: u32) {
        self.grant_lock(id);
        self.queue_cast(id, Status::GRANTED);
    }

    /// C.6.2 (`revert_lock`): 0 nothing, 1 back to granted, -1 removed.
    fn revert_lock(&mut self, id: u32) -> i32 {
        self.lk_mut(id).rq = None;
        match self.lk(id).status {
            Sts::Granted => 0,
            Sts::Convert => {
                self.move_lkb(id, Sts::Granted);
                1
            }
            Sts::Waiting => {
                self.del_lkb(id);
                self.lk_mut(id).gr = None;
                -1
            }
            Sts::None => 0,
        }
    }

    /// C.6.1 (`remove_lock`): LVB on unlock, off every queue, mode IV.
    fn remove_lock(&mut self, id: u32) {
        self.set_lvb_unlock(id);
        self.del_lkb(id);
        self.lk_mut(id).gr = None;
    }

    // ---- C.8.2 / A.5 / C.10: callbacks ----

    /// `queue_cast`: a completion with the lock's current granted mode and
    /// sb_flags; ECANCEL becomes EDEADLK after a deadlock-cancel (C.6.4).
    fn queue_cast(&mut self, id: u32, status: Status) {
        let mut status = status;
        let lk = self.lk_mut(id);
        if status == Status::CANCELLED && lk.deadlock_cancel {
            lk.deadlock_cancel = false;
            status = Status::DEADLOCK;
        }
        self.add_cb(id, Cb::Cast { status });
    }

    fn queue_bast(&mut self, id: u32, mode: Mode) {
        self.add_cb(id, Cb::Bast { mode });
    }

    /// `dlm_user_add_ast` with `dlm_may_skip_callback` (C.8.2), the A.5
    /// snapshot and LVB rule, and end of life (C.10).
    fn add_cb(&mut self, id: u32, cb: Cb) {
        let lk = self.lk(id);
        // C.8.2 check 1: orphaned or dead -> dropped (casts too).
        if lk.orphan || lk.dead {
            return;
        }
        // C.8.2 check 2: bastaddr == 0 -> dropped (highbast already updated).
        if matches!(cb, Cb::Bast { .. }) && lk.bastaddr == 0 {
            return;
        }
        let gr = lk.gr;
        let lk = self.lk_mut(id);
        let (mode, is_bast) = match cb {
            Cb::Cast { .. } => (m(gr), false),
            Cb::Bast { mode } => (mode.raw() as i8, true),
        };
        // C.10: end of life: EUNLOCK, or ECANCEL/EDEADLK/EAGAIN with mode IV.
        if let Cb::Cast { status } = cb {
            let eol = status == Status::UNLOCKED
                || ((status == Status::CANCELLED
                    || status == Status::DEADLOCK
                    || status == Status::AGAIN)
                    && mode == -1);
            if eol {
                lk.eol = true;
            }
        }
        let mut copy_lvb = false;
        match cb {
            Cb::Bast { .. } => {
                // C.8.2 check 3: compatible with the most recent cast's mode.
                if lk.last_cast_cb_mode != -1 {
                    let last = Mode::from_raw(lk.last_cast_cb_mode.into()).ok();
                    if compat(Some(Mode::from_raw(mode.into()).unwrap()), last) {
                        return;
                    }
                }
                // C.8.2 check 4: the previous callback was a bast with the
                // same mode, or a stronger mode above PR.
                if lk.last_cb_mode != -1 && lk.last_cb_bast {
                    let prev = lk.last_cb_mode;
                    if prev == mode || (prev > mode && prev > PR) {
                        return;
                    }
                }
            }
            Cb::Cast { status } => {
                // A.5 LVB inclusion: status 0, a buffer, lvb_ops[prev cast
                // mode][new mode] not W.
                let prev = lk.last_cast_cb_mode;
                if status == Status::GRANTED && lk.ua_lvb.is_some() && lvb_op(prev, mode) != 0 {
                    copy_lvb = true;
                }
                lk.last_cast_cb_mode = mode;
            }
        }
        lk.last_cb_mode = mode;
        lk.last_cb_bast = is_bast;
        // A.5: a snapshot of the pointers, status, flags and LVB, now.
        let result = match cb {
            Cb::Cast { status } => LockResult {
                astaddr: lk.castaddr,
                astparam: lk.castparam,
                user_lksb: lk.user_lksb,
                status,
                lkid: lk.id,
                flags: lk.sbflags,
                bast_mode: None,
                lvb: if copy_lvb { lk.ua_lvb } else { None },
            },
            // A.5: a bast result carries status 0, flags 0, lkid = id.
            Cb::Bast { mode } => LockResult {
                astaddr: lk.bastaddr,
                astparam: lk.bastparam,
                user_lksb: lk.user_lksb,
                status: Status::GRANTED,
                lkid: lk.id,
                flags: SbFlags::empty(),
                bast_mode: Some(mode),
                lvb: None,
            },
        };
        let (owner, eol) = (lk.owner, lk.eol);
        let o = &mut self.owners[owner.0 as usize];
        // C.8.3: one FIFO per opener.
        o.asts.push_back(result);
        // C.10: at end of life the lock leaves its opener's lock list.
        if eol {
            o.locks.retain(|&x| x != id);
        }
    }

    // ---- C.8.1: blocking callbacks ----

    /// C.8.1 rules Q and N (`modes_require_bast`).
    fn modes_require_bast(&self, gr: u32, rq: u32) -> bool {
        let (g, r) = (self.lk(gr), self.lk(rq));
        let pair = (g.gr == Some(Mode::Pr) && r.rq == Some(Mode::Cw))
            || (g.gr == Some(Mode::Cw) && r.rq == Some(Mode::Pr));
        if pair {
            return g.highbast < EX;
        }
        g.highbast < m(r.rq) && !compat(g.gr, r.rq)
    }

    /// C.8.1 rules Q and N (`send_bast_queue`): bast every other lock of the
    /// queue that `modes_require_bast`, with the request's mode.
    fn send_bast_queue(&mut self, queue: Queue, id: u32) {
        let rid = self.rid(id);
        let q = match queue {
            Queue::Grant => self.res(rid).grant.clone(),
            Queue::Convert => self.res(rid).convert.clone(),
        };
        for g in q {
            if g == id {
                continue;
            }
            if self.modes_require_bast(g, id) {
                let rq = self.lk(id).rq.expect("a request has a mode");
                self.queue_bast(g, rq);
                self.lk_mut(g).highbast = rq.raw() as i8;
            }
        }
    }

    /// C.8.1 rule G (`lock_requires_bast`).
    fn lock_requires_bast(&self, g: u32, high: i8, cw: bool) -> bool {
        let g = self.lk(g);
        if g.gr == Some(Mode::Pr) && cw {
            return g.highbast < EX;
        }
        let high_mode = Mode::from_raw(high.into()).ok();
        g.highbast < high && !compat(g.gr, high_mode)
    }

    // ---- C.7: the pending-grant pass ----

    /// C.7 step 1 (`grant_pending_convert`): walk the convert queue, again
    /// from the start after any grant, at most once more after a new
    /// demotion. `cw` is not reset between walks (as in the kernel).
    fn grant_pending_convert(&mut self, rid: u64, high: i8, mut cw: Option<&mut bool>) -> i8 {
        let mut quit = false;
        loop {
            let mut grant_restart = false;
            let mut demote_restart = false;
            let mut hi: i8 = -1;
            let queue = self.res(rid).convert.clone();
            for id in queue {
                let demoted = self.lk(id).sbflags.contains(SbFlags::DEMOTED);
                let (granted, deadlk) = self.can_be_granted(id, false, true);
                if granted {
                    self.grant_lock_pending(id);
                    grant_restart = true;
                    continue;
                }
                if !demoted && self.lk(id).sbflags.contains(SbFlags::DEMOTED) {
                    // Demoted during this walk: noted for one more walk.
                    demote_restart = true;
                    continue;
                }
                if deadlk {
                    // Rule D: NODLCKWT self-bast with its own requested mode.
                    let lk = self.lk(id);
                    if lk.exflags.contains(F::NODLCKWT) {
                        let rq = lk.rq.expect("a conversion has a mode");
                        if lk.highbast < rq.raw() as i8 {
                            self.queue_bast(id, rq);
                            self.lk_mut(id).highbast = rq.raw() as i8;
                        }
                    }
                    // Without NODLCKWT: left queued (the kernel only logs).
                    continue;
                }
                let rq = self.lk(id).rq;
                hi = hi.max(m(rq));
                if let Some(cw) = cw.as_deref_mut() {
                    if rq == Some(Mode::Cw) {
                        *cw = true;
                    }
                }
            }
            if grant_restart {
                continue;
            }
            if demote_restart && !quit {
                quit = true;
                continue;
            }
            return high.max(hi);
        }
    }

    /// C.7 step 2 (`grant_pending_wait`): one walk of the wait queue.
    fn grant_pending_wait(&mut self, rid: u64, high: i8, cw: &mut bool) -> i8 {
        let mut high = high;
        let queue = self.res(rid).wait.clone();
        for id in queue {
            if self.can_be_granted(id, false, false).0 {
                self.grant_lock_pending(id);
            } else {
                let rq = self.lk(id).rq;
                high = high.max(m(rq));
                if rq == Some(Mode::Cw) {
                    *cw = true;
                }
            }
        }
        high
    }

    /// C.7 (`grant_pending_locks`): steps 1, 2, then 3 (rule G basts to the
    /// grant queue) unless nothing remains blocked.
    fn grant_pending_locks(&mut self, rid: u64) {
        let mut cw = false;
        let high = self.grant_pending_convert(rid, -1, Some(&mut cw));
        let high = self.grant_pending_wait(rid, high, &mut cw);
        if high == -1 {
            return;
        }
        let high_mode = Mode::from_raw(high.into()).expect("a blocked mode");
        for g in self.res(rid).grant.clone() {
            if self.lock_requires_bast(g, high, cw) {
                // Mode CW if cw, high == PR and the holder is PR; else high.
                if cw && high == PR && self.lk(g).gr == Some(Mode::Pr) {
                    self.queue_bast(g, Mode::Cw);
                } else {
                    self.queue_bast(g, high_mode);
                }
                self.lk_mut(g).highbast = high;
            }
        }
    }

    // ---- C.4.1: new requests ----

    /// C.4.1 steps 4–5 (`do_request`).
    fn do_request(&mut self, id: u32) -> Outcome {
        if self.can_be_granted(id, true, false).0 {
            self.grant_lock(id);
            self.queue_cast(id, Status::GRANTED);
            return Outcome::Granted;
        }
        if !self.lk(id).exflags.contains(F::NOQUEUE) {
            self.add_lkb(id, Sts::Waiting);
            return Outcome::InProgress;
        }
        self.queue_cast(id, Status::AGAIN);
        Outcome::Again
    }

    /// C.4.1 table (`do_request_effects`): basts by rule Q or N.
    fn do_request_effects(&mut self, id: u32, out: Outcome) {
        match out {
            // Rule N: NOQUEUE failed; basts only with NOQUEUEBAST.
            Outcome::Again if self.lk(id).exflags.contains(F::NOQUEUEBAST) => {
                self.send_bast_queue(Queue::Grant, id);
                self.send_bast_queue(Queue::Convert, id);
            }
            // Rule Q: queued.
            Outcome::InProgress => self.send_bast_queue(Queue::Grant, id),
            _ => {}
        }
    }

    // ---- C.5: conversions ----

    /// C.5 steps 1–5 (`do_convert`).
    fn do_convert(&mut self, id: u32) -> Outcome {
        let rid = self.rid(id);
        // Step 1 (with steps 2 and 4 inside the predicate).
        let (granted, deadlk) = self.can_be_granted(id, true, true);
        if granted {
            self.grant_lock(id);
            self.queue_cast(id, Status::GRANTED);
            return Outcome::Granted;
        }
        // Step 3, neither flag: refused, stays granted in its old mode.
        if deadlk && !self.lk(id).exflags.contains(F::NODLCKWT) {
            self.revert_lock(id);
            self.queue_cast(id, Status::DEADLOCK);
            return Outcome::Deadlk;
        }
        // Step 3, CONVDEADLK: one pass of C.7 step 1, then the predicate
        // again (no ALT, no deadlock check).
        if self.lk(id).sbflags.contains(SbFlags::DEMOTED) {
            self.grant_pending_convert(rid, -1, None);
            if can_be_granted_raw(self.ls, id, true) {
                self.grant_lock(id);
                self.queue_cast(id, Status::GRANTED);
                return Outcome::Granted;
            }
        }
        // Step 5: queue (NODLCKWT deadlocks included), or EAGAIN.
        if !self.lk(id).exflags.contains(F::NOQUEUE) {
            self.del_lkb(id);
            self.add_lkb(id, Sts::Convert);
            return Outcome::InProgress;
        }
        // NOQUEUE: stays granted; `rq` is not reset (the kernel's do_convert).
        self.queue_cast(id, Status::AGAIN);
        Outcome::Again
    }

    /// `do_convert_effects`: the pending-grant pass after a grant, rule N
    /// after NOQUEUEBAST, rule Q after queueing.
    fn do_convert_effects(&mut self, id: u32, out: Outcome) {
        match out {
            Outcome::Granted => {
                let rid = self.rid(id);
                self.grant_pending_locks(rid);
            }
            Outcome::Again => {
                if self.lk(id).exflags.contains(F::NOQUEUEBAST) {
                    self.send_bast_queue(Queue::Grant, id);
                    self.send_bast_queue(Queue::Convert, id);
                }
            }
            Outcome::InProgress => self.send_bast_queue(Queue::Grant, id),
            Outcome::Deadlk => {}
        }
    }

    // ---- C.3.5 and C.6: unlock and cancel ----

    /// C.3.5 (`validate_unlock_args`), single node.
    fn validate_unlock_args(&mut self, id: u32, flags: F) -> Result<(), Errno> {
        let lk = self.lk(id);
        // Always first: end of life -> ENOENT.
        if lk.eol {
            return Err(Errno::ENOENT);
        }
        if flags.contains(F::CANCEL) {
            // An earlier successful cancel since the last lock/convert.
            if lk.exflags.contains(F::CANCEL) {
                return Err(Errno::EINVAL);
            }
            // Nothing to cancel (the device turns this into 0).
            if lk.status == Sts::Granted {
                return Err(Errno::EBUSY);
            }
        } else if flags.contains(F::FORCEUNLOCK) && lk.exflags.contains(F::FORCEUNLOCK) {
            // docs/semantics.md C.3.5: the kernel's validate_unlock_args has
            // already set EINVAL at this point. Unreachable unless a lock
            // request itself carried FORCEUNLOCK.
            return Err(Errno::EINVAL);
        }
        // On success: flags OR-ed in, sb_flags cleared.
        let lk = self.lk_mut(id);
        lk.exflags |= flags;
        lk.sbflags = SbFlags::empty();
        Ok(())
    }

    /// C.6.1 (`unlock_lock`: validation, `do_unlock`, its effects).
    fn unlock_lock(&mut self, id: u32, flags: F) -> Result<(), Errno> {
        self.validate_unlock_args(id, flags)?;
        let rid = self.rid(id);
        self.remove_lock(id);
        self.queue_cast(id, Status::UNLOCKED);
        self.grant_pending_locks(rid);
        Ok(())
    }

    /// C.6.2 `do_cancel` and its effects; returns whether it cancelled.
    fn do_cancel(&mut self, id: u32) -> bool {
        let rid = self.rid(id);
        if self.revert_lock(id) != 0 {
            self.queue_cast(id, Status::CANCELLED);
            self.grant_pending_locks(rid);
            true
        } else {
            false
        }
    }

    /// C.6.2 (`cancel_lock`); EBUSY is "nothing to cancel".
    fn cancel_lock(&mut self, id: u32, flags: F) -> Result<(), Errno> {
        self.validate_unlock_args(id, flags)?;
        self.do_cancel(id);
        Ok(())
    }

    // ---- A.4 / A.5 / C.3: the device-level operations ----

    /// A new request (C.4.1, `dlm_user_request`). Returns the lock id.
    pub(super) fn user_request(
        &mut self,
        owner: OwnerId,
        p: &LockParams,
        tid: u32,
    ) -> Result<u32, Errno> {
        // C.4.1 step 1: create the object and assign its id.
        let id = self.create_lkb(owner);
        // A.5: the device allocates the LVB buffer (zeros) on VALBLK; the
        // LVB field of a new request is ignored (C.9.2).
        if p.flags.contains(F::VALBLK) {
            self.lk_mut(id).ua_lvb = Some([0; LVB_LEN]);
        }
        // C.3.2 (`set_lock_args`); a failure frees the new object.
        let mode = match check_lock_args(p.mode.into(), p.flags, p.name.len(), true) {
            Ok(mode) => mode,
            Err(e) => {
                self.ls.locks.retain(|l| l.id != id);
                return Err(e);
            }
        };
        // C.3.3 success part / A.5: flags, sb_flags, pointers, mode, pid.
        let lk = self.lk_mut(id);
        lk.exflags = p.flags;
        lk.sbflags = SbFlags::empty();
        lk.castaddr = p.castaddr;
        lk.castparam = p.castparam;
        lk.bastaddr = p.bastaddr;
        lk.bastparam = p.bastparam;
        lk.user_lksb = p.lksb;
        lk.rq = Some(mode);
        lk.has_lvbptr = lk.ua_lvb.is_some();
        lk.ownpid = tid;
        // C.4.1 step 2: find or create the resource.
        let rid = self.find_rsb(p);
        self.lk_mut(id).rid = rid;
        // C.4.1 steps 4–5.
        let out = self.do_request(id);
        self.do_request_effects(id, out);
        // Granted or queued: onto the opener's lock list. EAGAIN: discarded.
        if out != Outcome::Again {
            self.owners[owner.0 as usize].locks.push(id);
        }
        // A.4: the id is returned even for EAGAIN.
        Ok(id)
    }

    /// A conversion (C.5, `dlm_user_convert`). Returns 0.
    pub(super) fn user_convert(&mut self, p: &LockParams, tid: u32) -> Result<u32, Errno> {
        // C.3.3: unknown lkid -> ENOENT, found first.
        self.find_lkb(p.lkid)?;
        let id = p.lkid;
        let lk = self.lk_mut(id);
        // A.5 / B.6 item 4: VALBLK allocates the buffer; the request's LVB
        // field overwrites an existing buffer. Both before validation.
        if p.flags.contains(F::VALBLK) && lk.ua_lvb.is_none() {
            lk.ua_lvb = Some([0; LVB_LEN]);
        }
        if lk.ua_lvb.is_some() {
            lk.ua_lvb = Some(p.lvb);
        }
        // A.5: a conversion replaces all five pointers before validation.
        lk.castparam = p.castparam;
        lk.castaddr = p.castaddr;
        lk.bastparam = p.bastparam;
        lk.bastaddr = p.bastaddr;
        lk.user_lksb = p.lksb;
        // C.3.2.
        let mode = check_lock_args(p.mode.into(), p.flags, 0, true)?;
        // C.3.3 (`validate_lock_args`): EBUSY unless GRANTED; QUECVT matrix.
        if lk.status != Sts::Granted {
            return Err(Errno::EBUSY);
        }
        if p.flags.contains(F::QUECVT) {
            let gr = lk.gr.expect("a granted lock has a mode");
            if !gr.quecvt_allowed(mode) {
                return Err(Errno::EINVAL);
            }
        }
        lk.exflags = p.flags;
        lk.sbflags = SbFlags::empty();
        lk.rq = Some(mode);
        lk.has_lvbptr = lk.ua_lvb.is_some();
        lk.ownpid = tid;
        // C.5.
        let out = self.do_convert(id);
        self.do_convert_effects(id, out);
        Ok(0)
    }

    /// Orphan adoption (C.11.3, `dlm_user_adopt_orphan`). Returns the id.
    pub(super) fn user_adopt_orphan(
        &mut self,
        owner: OwnerId,
        p: &LockParams,
        tid: u32,
    ) -> Result<u32, Errno> {
        let mut found = None;
        let mut found_other_mode = false;
        for &o in &self.ls.orphans {
            let lk = find(self.ls, o);
            let r = find_res(self.ls, lk.rid);
            // Exact length and bytes of the resource's name.
            if r.name.as_bytes() != p.name.as_bytes() {
                continue;
            }
            // Granted mode must equal the requested mode (IV never does).
            if i32::from(m(lk.gr)) != i32::from(p.mode) {
                found_other_mode = true;
                continue;
            }
            found = Some(o);
            break;
        }
        let Some(id) = found else {
            return Err(if found_other_mode {
                Errno::EAGAIN
            } else {
                Errno::ENOENT
            });
        };
        self.ls.orphans.retain(|&o| o != id);
        let lk = self.lk_mut(id);
        lk.orphan = false;
        // Flags, owner pid, owner and all five pointers replaced; no callback.
        lk.exflags = p.flags;
        lk.ownpid = tid;
        lk.owner = owner;
        lk.castparam = p.castparam;
        lk.castaddr = p.castaddr;
        lk.bastparam = p.bastparam;
        lk.bastaddr = p.bastaddr;
        lk.user_lksb = p.lksb;
        self.owners[owner.0 as usize].locks.push(id);
        Ok(id)
    }

    /// UNLOCK without CANCEL (C.6.1, `dlm_user_unlock`). Returns 0.
    pub(super) fn user_unlock(&mut self, p: &LockParams) -> Result<u32, Errno> {
        self.find_lkb(p.lkid)?;
        let id = p.lkid;
        let lk = self.lk_mut(id);
        // B.6 item 3: the request's LVB field goes into an existing buffer.
        if lk.ua_lvb.is_some() {
            lk.ua_lvb = Some(p.lvb);
        }
        // A.5: castparam only if non-zero; user_lksb always.
        if p.castparam != 0 {
            lk.castparam = p.castparam;
        }
        lk.user_lksb = p.lksb;
        // C.3.4.
        check_unlock_flags(p.flags)?;
        self.unlock_lock(id, p.flags)?;
        Ok(0)
    }

    /// UNLOCK with CANCEL (C.6.2, `dlm_user_cancel`). Returns 0.
    pub(super) fn user_cancel(&mut self, p: &LockParams) -> Result<u32, Errno> {
        self.find_lkb(p.lkid)?;
        let id = p.lkid;
        let lk = self.lk_mut(id);
        if p.castparam != 0 {
            lk.castparam = p.castparam;
        }
        lk.user_lksb = p.lksb;
        check_unlock_flags(p.flags)?;
        match self.cancel_lock(id, p.flags) {
            // C.3.5: the device turns EBUSY into success, no callback.
            Ok(()) | Err(Errno::EBUSY) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// DEADLOCK (C.6.4, `dlm_user_deadlock`). Returns 0.
    pub(super) fn user_deadlock(&mut self, lkid: u32, flags: F) -> Result<u32, Errno> {
        self.find_lkb(lkid)?;
        check_unlock_flags(flags)?;
        match self.validate_unlock_args(lkid, flags) {
            Ok(()) => {}
            Err(Errno::EBUSY) => return Ok(0),
            Err(e) => return Err(e),
        }
        // The mark is set, then a cancel as in C.6.2.
        self.lk_mut(lkid).deadlock_cancel = true;
        self.do_cancel(lkid);
        Ok(0)
    }

    /// `unlock_proc_lock`: FORCEUNLOCK | IVVALBLK (A.7, C.11.4).
    fn unlock_proc_lock(&mut self, id: u32) {
        // Errors (ENOENT/EINVAL) are ignored, as in the kernel.
        let _ = self.unlock_lock(id, F::FORCEUNLOCK | F::IVVALBLK);
    }

    /// A.7 close (`dlm_clear_proc_locks`): every lock in list order.
    pub(super) fn clear_proc_locks(&mut self, owner: OwnerId) {
        loop {
            let o = &mut self.owners[owner.0 as usize];
            if o.locks.is_empty() {
                break;
            }
            let id = o.locks.remove(0);
            // C.11.2: PERSISTENT judged from the current flags.
            if self.lk(id).exflags.contains(F::PERSISTENT) {
                self.lk_mut(id).orphan = true;
                // `orphan_proc_lock`: onto the orphan list, then a cancel
                // validated with flags 0 (pending conversion reverted, waiting
                // request taken off its queue but kept as an orphan).
                self.ls.orphans.push(id);
                let _ = self.cancel_lock(id, F::empty());
            } else {
                self.lk_mut(id).dead = true;
                self.unlock_proc_lock(id);
            }
        }
        // A.7 clean-up: unread callbacks discarded.
        self.owners[owner.0 as usize].asts.clear();
    }

    /// PURGE (C.11.4, `dlm_user_purge`).
    pub(super) fn user_purge(&mut self, owner: OwnerId, pid: u32, tid: u32) {
        if pid == tid {
            // `purge_proc_locks`: every lock of the caller, no callbacks,
            // then its pending callbacks discarded.
            loop {
                let o = &mut self.owners[owner.0 as usize];
                if o.locks.is_empty() {
                    break;
                }
                let id = o.locks.remove(0);
                self.lk_mut(id).dead = true;
                self.unlock_proc_lock(id);
            }
            self.owners[owner.0 as usize].asts.clear();
        } else {
            // `do_purge`: orphans (all for pid 0, else those of that pid).
            for id in self.ls.orphans.clone() {
                if pid != 0 && self.lk(id).ownpid != pid {
                    continue;
                }
                self.unlock_proc_lock(id);
                self.ls.orphans.retain(|&o| o != id);
            }
        }
    }
}

impl CtxRef<'_> {
    /// See `Model::check_invariants`.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let ls = self.ls;
        for r in &ls.resources {
            let name = r.name;
            // Granted modes: grant queue and converting locks' `gr`.
            let held: Vec<(u32, Option<Mode>)> = r
                .grant
                .iter()
                .chain(&r.convert)
                .map(|&id| (id, find(ls, id).gr))
                .collect();
            for (i, &(a, ma)) in held.iter().enumerate() {
                if ma.is_none() {
                    return Err(format!("{name}: lock {a} is held in mode IV"));
                }
                for &(b, mb) in &held[i + 1..] {
                    if !compat(ma, mb) {
                        return Err(format!(
                            "{name}: locks {a} ({ma:?}) and {b} ({mb:?}) are incompatible"
                        ));
                    }
                }
            }
            for &id in &r.grant {
                if find(ls, id).status != Sts::Granted || find(ls, id).rid != r.rid {
                    return Err(format!(
                        "{name}: lock {id} on the grant queue is not granted"
                    ));
                }
            }
            // Queued requests fail the predicate (now = false) after a pass.
            // A request may legitimately pass it until the next pass when
            // it was queued at the head (HEADQUE), or when QUECVT denied it
            // at request time although NOORDER would grant it later (C.4.2
            // rules 6 and 7), or when a walk's last demotion got no further
            // walk (C.7 step 1, "at most one extra time").
            let demotion = r
                .convert
                .iter()
                .any(|&id| find(ls, id).sbflags.contains(SbFlags::DEMOTED));
            for &id in r.convert.iter().chain(&r.wait) {
                let lk = find(ls, id);
                if lk.exflags.contains(F::HEADQUE)
                    || lk.exflags.contains(F::QUECVT | F::NOORDER)
                    || demotion
                {
                    continue;
                }
                if can_be_granted_raw(ls, id, false) {
                    return Err(format!(
                        "{name}: queued lock {id} passes the grant predicate"
                    ));
                }
                // C.4.3: the alternate mode must fail too, unless a
                // conversion deadlock keeps the ALT retry from being tried.
                let alt = if lk.rq != Some(Mode::Pr) && lk.exflags.contains(F::ALTPR) {
                    Some(Mode::Pr)
                } else if lk.rq != Some(Mode::Cw) && lk.exflags.contains(F::ALTCW) {
                    Some(Mode::Cw)
                } else {
                    None
                };
                let deadlocked = lk.gr.is_some() && conversion_deadlock_detect(ls, id);
                if alt.is_some() && !deadlocked && can_be_granted_as(ls, id, false, alt) {
                    return Err(format!(
                        "{name}: queued lock {id} passes the grant predicate in its alternate mode"
                    ));
                }
            }
        }
        Ok(())
    }
}
