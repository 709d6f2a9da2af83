//! The lock semantics of docs/semantics.md Part C, as the kernel (6.12) implements
//! them: the grant predicate, requests, conversions, unlock and cancel,
//! the pending grant pass, blocking callbacks with their suppression,
//! and LVB handling. Owner close, orphan adoption and purge are in
//! `owner.rs`.
//!
//! The functions mirror the kernel's (`do_request`, `do_convert`,
//! `grant_pending_locks`, `dlm_user_add_ast`, …) so that the two can be
//! read side by side. The one structural difference is the pending grant
//! pass over the wait queue ([`Lockspace::grant_pending_wait`]): instead
//! of re-evaluating every waiter it grants the head run, then only the
//! NOORDER waiters (the only others the predicate can grant), and takes
//! `high`/`cw` from per-resource counts, so draining a queue costs O(1)
//! per grant. The pass over the convert queue does the same when no
//! conversion can be deadlocked and none is NOORDER
//! ([`Lockspace::grant_pending_convert_ordered`]). The results are
//! identical to the literal walk (the differential test checks both with
//! the counts kept from the first lock).

use dlm_core::check::{check_lock_args, check_unlock_flags};
use dlm_core::{Errno, LVB_LEN, LockFlags as F, LockParams, LockResult, Mode, SbFlags, Status};

use crate::space::*;

/// The outcome of the grant predicate with its ALT retry and conversion
/// deadlock detection (the kernel's `can_be_granted`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Decision {
    /// Grant in `mode`; `alt` when that is the alternate mode.
    Grant { mode: i8, alt: bool },
    /// Not grantable now (a CONVDEADLK demotion may have happened).
    Deny,
    /// A conversion deadlock, without CONVDEADLK.
    Deadlock,
}

/// Counts of the conversions ahead of the current one in a walk of the
/// convert queue: per requested mode, and per (granted, requested) mode.
#[derive(Default)]
struct Ahead {
    rq: [u32; 6],
    m: [[u32; 6]; 6],
}

const SBF_DEMOTED: u8 = SbFlags::DEMOTED.bits();
const SBF_VALNOTVALID: u8 = SbFlags::VALNOTVALID.bits();
const SBF_ALTMODE: u8 = SbFlags::ALTMODE.bits();

fn mode_of(m: i8) -> Mode {
    Mode::ALL[m as usize]
}

/// The kernel's `modes_require_bast`: does a holder granted `gr`, basted
/// up to `hb`, need a bast for a request of `rq`?
fn modes_require_bast(gr: i8, hb: i8, rq: i8) -> bool {
    if (gr == PR && rq == CW) || (gr == CW && rq == PR) {
        hb < EX
    } else {
        hb < rq && !compat(gr, rq)
    }
}

/// The kernel's `lock_requires_bast` (pending grant pass, rule G).
fn lock_requires_bast(gr: i8, hb: i8, high: i8, cw: bool) -> bool {
    if gr == PR && cw {
        hb < EX
    } else {
        hb < high && !compat(gr, high)
    }
}

impl Lockspace {
    // ---- callbacks (dlm_user_add_ast, dlm_may_skip_callback) -----------

    /// `queue_cast`: a completion for lock `i` in its current granted mode.
    fn cast(&mut self, i: u32, status: Status) {
        let lk = &mut self.locks[i as usize];
        let status = if status == Status::CANCELLED && lk.bits & B_DLCANCEL != 0 {
            lk.bits &= !B_DLCANCEL;
            Status::DEADLOCK
        } else {
            status
        };
        if lk.bits & (B_ORPHAN | B_DEAD) != 0 || lk.owner == NIL {
            return;
        }
        let mode = lk.gr;
        let copy = status == Status::GRANTED
            && lk.lvb.is_some()
            && LVB_OPS[(lk.last_cast + 1) as usize][(mode + 1) as usize] != 0;
        lk.last_cast = mode;
        lk.last_cb = mode;
        lk.bits &= !B_LAST_BAST;
        let cb = LockResult {
            astaddr: lk.ua.castaddr,
            astparam: lk.ua.castparam,
            user_lksb: lk.ua.user_lksb,
            status,
            lkid: i + 1,
            flags: SbFlags::from_bits_retain(lk.sbflags),
            bast_mode: None,
            lvb: if copy {
                lk.lvb.as_deref().copied()
            } else {
                None
            },
        };
        let owner = lk.owner;
        // End of life (C.10): the lock leaves its owner's list.
        let eol = status == Status::UNLOCKED
            || (mode == IV
                && (status == Status::CANCELLED
                    || status == Status::DEADLOCK
                    || status == Status::AGAIN));
        if eol && lk.bits & B_LISTED != 0 {
            self.unlist(i);
        }
        self.push_cb(owner, cb);
    }

    /// Frees lock `i` if nothing references it any more: it is on no
    /// queue and on no list (the kernel's reference counts). An orphan
    /// unlocked by id therefore lingers on the orphan list until a purge.
    pub(crate) fn maybe_free(&mut self, i: u32) {
        let l = self.l(i);
        if l.status == ST_NONE && l.bits & B_LISTED == 0 {
            self.free_lock(i);
        }
    }

    /// `queue_bast`: a blocking callback for lock `i`, unless C.8.2
    /// suppresses it.
    fn bast(&mut self, i: u32, mode: i8) {
        let lk = &mut self.locks[i as usize];
        if lk.bits & (B_ORPHAN | B_DEAD) != 0 || lk.owner == NIL || lk.ua.bastaddr == 0 {
            return;
        }
        if lk.last_cast != IV && compat(mode, lk.last_cast) {
            return;
        }
        if lk.last_cb != IV
            && lk.bits & B_LAST_BAST != 0
            && (lk.last_cb == mode || (lk.last_cb > mode && lk.last_cb > PR))
        {
            return;
        }
        lk.last_cb = mode;
        lk.bits |= B_LAST_BAST;
        self.tally.basts += 1;
        let cb = LockResult {
            astaddr: lk.ua.bastaddr,
            astparam: lk.ua.bastparam,
            user_lksb: lk.ua.user_lksb,
            status: Status::GRANTED,
            lkid: i + 1,
            flags: SbFlags::empty(),
            bast_mode: Some(mode_of(mode)),
            lvb: None,
        };
        let owner = lk.owner;
        self.push_cb(owner, cb);
    }

    // ---- the grant predicate --------------------------------------------

    /// Whether a lock other than `i` on the grant or convert queue of `r`
    /// has a granted mode incompatible with `mode`.
    fn conflict(&self, r: u32, i: u32, mode: i8) -> bool {
        let res = &self.res[r as usize];
        if let Some(a) = res.agg.as_deref() {
            let me = self.l(i);
            for m in 0..6i8 {
                if compat(m, mode) {
                    continue;
                }
                let mut n = a.g[m as usize] + a.c[m as usize];
                if (me.status == ST_GRANTED || me.status == ST_CONVERT) && me.gr == m {
                    n -= 1;
                }
                if n > 0 {
                    return true;
                }
            }
            return false;
        }
        for q in [Q_GRANT, Q_CONVERT] {
            let mut j = res.q[q].head;
            while j != NIL {
                let l = self.l(j);
                if j != i && !compat(l.gr, mode) {
                    return true;
                }
                j = l.q_next;
            }
        }
        false
    }

    /// `_can_be_granted` (C.4.2) for lock `i` asking for `mode`.
    fn can(&self, r: u32, i: u32, mode: i8, now: bool) -> bool {
        let lk = self.l(i);
        let f = lk.exflags;
        if f.contains(F::EXPEDITE) {
            return true;
        }
        if self.conflict(r, i, mode) {
            return false;
        }
        let q = &self.res[r as usize].q;
        let conv = lk.gr != IV;
        if now && conv {
            return !f.contains(F::QUECVT) || q[Q_CONVERT].is_empty();
        }
        if f.contains(F::NOORDER) {
            return true;
        }
        if conv {
            // Not now (rules 5 and 6 took the `now` case).
            return q[Q_CONVERT].head == i;
        }
        if now {
            q[Q_CONVERT].is_empty() && q[Q_WAIT].is_empty()
        } else {
            q[Q_CONVERT].is_empty() && q[Q_WAIT].head == i
        }
    }

    /// `conversion_deadlock_detect` for lock `i` of the convert queue,
    /// in a walk of it that has passed the conversions counted in
    /// `ahead` (exactly those before `i`): a conversion ahead whose
    /// requested mode `i`'s granted mode blocks, or one behind that and
    /// blocking `i`'s request in turn, from the queue's counts minus
    /// `ahead` and `i` itself. O(1) instead of a walk of the queue.
    fn deadlocked_counted(&self, r: u32, i: u32, ahead: &Ahead) -> bool {
        let a = self.res[r as usize].agg.as_deref().expect("aggregates");
        let (gr2, rq2) = (self.l(i).gr, self.l(i).rq);
        if (0..6).any(|q| ahead.rq[q as usize] > 0 && !compat(gr2, q)) {
            return true;
        }
        (0..6).any(|g| {
            (0..6).any(|q| {
                let mut behind = a.cm[g as usize][q as usize] - ahead.m[g as usize][q as usize];
                if g == gr2 && q == rq2 {
                    behind -= 1;
                }
                behind > 0 && !compat(gr2, q) && !compat(g, rq2)
            })
        })
    }

    /// `conversion_deadlock_detect` for lock `i`.
    fn deadlocked(&self, r: u32, i: u32) -> bool {
        let (gr2, rq2) = (self.l(i).gr, self.l(i).rq);
        if let Some(a) = self.res[r as usize].agg.as_deref() {
            if self.l(i).status != ST_CONVERT {
                // Not on the queue (a conversion being requested): every
                // conversion counts as ahead of it.
                let crq = a.crq();
                return (0..6).any(|q| crq[q as usize] > 0 && !compat(gr2, q));
            }
            if !a.convert_pairs() {
                return false;
            }
        }
        let mut seen = false;
        let mut j = self.res[r as usize].q[Q_CONVERT].head;
        while j != NIL {
            let l = self.l(j);
            if j == i {
                seen = true;
            } else if !compat(gr2, l.rq) && (!seen || !compat(l.gr, rq2)) {
                return true;
            }
            j = l.q_next;
        }
        false
    }

    /// `can_be_granted`: the predicate, then conversion deadlock
    /// detection (which may demote a CONVDEADLK lock to NL), then the ALT
    /// retry.
    fn can_be_granted(&mut self, r: u32, i: u32, now: bool) -> Decision {
        self.can_be_granted_in(r, i, now, None)
    }

    /// [`Self::can_be_granted`] in a walk of the convert queue that has
    /// counted the conversions ahead of `i` (with aggregates).
    fn can_be_granted_in(&mut self, r: u32, i: u32, now: bool, ahead: Option<&Ahead>) -> Decision {
        let rq = self.l(i).rq;
        if self.can(r, i, rq, now) {
            return Decision::Grant {
                mode: rq,
                alt: false,
            };
        }
        let f = self.l(i).exflags;
        if self.l(i).gr != IV
            && !f.contains(F::NOQUEUE)
            && match ahead {
                Some(ahead) => self.deadlocked_counted(r, i, ahead),
                None => self.deadlocked(r, i),
            }
        {
            if f.contains(F::CONVDEADLK) {
                self.set_gr(i, NL);
                self.lm(i).sbflags |= SBF_DEMOTED;
                return Decision::Deny;
            }
            return Decision::Deadlock;
        }
        let alt = if rq != PR && f.contains(F::ALTPR) {
            PR
        } else if rq != CW && f.contains(F::ALTCW) {
            CW
        } else {
            IV
        };
        if alt != IV && self.can(r, i, alt, now) {
            return Decision::Grant {
                mode: alt,
                alt: true,
            };
        }
        Decision::Deny
    }

    // ---- granting ------------------------------------------------------

    /// `set_lvb_lock`: LVB handling when lock `i` is granted `mode`.
    fn set_lvb_lock(&mut self, r: u32, i: u32, mode: i8) {
        let lk = &mut self.locks[i as usize];
        let res = &mut self.res[r as usize];
        let b = LVB_OPS[(lk.gr + 1) as usize][(mode + 1) as usize];
        let valblk = lk.exflags.contains(F::VALBLK) && lk.bits & B_LVBPTR != 0;
        if b == 1 {
            let (Some(dst), Some(src), true) = (lk.lvb.as_deref_mut(), res.lvb.as_deref(), valblk)
            else {
                return;
            };
            *dst = *src;
        } else if b == 0 {
            if lk.exflags.contains(F::IVVALBLK) {
                res.lvb_invalid = true;
                return;
            }
            let (Some(src), true) = (lk.lvb.as_deref(), valblk) else {
                return;
            };
            **res.lvb.get_or_insert_with(|| Box::new([0; LVB_LEN])) = *src;
            res.lvb_invalid = false;
        }
        if res.lvb_invalid {
            lk.sbflags |= SBF_VALNOTVALID;
        }
    }

    /// `set_lvb_unlock`: LVB handling when lock `i` is unlocked.
    fn set_lvb_unlock(&mut self, r: u32, i: u32) {
        let lk = &self.locks[i as usize];
        let res = &mut self.res[r as usize];
        if lk.gr < PW {
            return;
        }
        if lk.exflags.contains(F::IVVALBLK) {
            res.lvb_invalid = true;
            return;
        }
        if lk.bits & B_LVBPTR == 0 || !lk.exflags.contains(F::VALBLK) {
            return;
        }
        if let Some(src) = lk.lvb.as_deref() {
            **res.lvb.get_or_insert_with(|| Box::new([0; LVB_LEN])) = *src;
            res.lvb_invalid = false;
        }
    }

    /// `grant_lock`: grants lock `i` in `mode` (its requested or
    /// alternate mode).
    fn grant_lock(&mut self, r: u32, i: u32, mode: i8, alt: bool) {
        self.tally.grants += 1;
        if alt {
            self.lm(i).sbflags |= SBF_ALTMODE;
        }
        self.set_lvb_lock(r, i, mode);
        let lk = self.l(i);
        // The kernel leaves a lock whose mode does not change where it is.
        // Only a same-mode conversion on the grant queue can do that here;
        // a converting lock granted its alternate mode equal to its
        // granted mode moves to the grant queue (the kernel would leave it
        // on the convert queue with no requested mode, see the crate docs).
        if lk.gr != mode || lk.status != ST_GRANTED {
            self.q_del(r, i);
            self.lm(i).gr = mode;
            self.lm(i).rq = mode;
            self.q_add(r, i, ST_GRANTED, false);
        }
        self.lm(i).rq = IV;
        self.set_hb(i, 0);
    }

    /// `grant_lock_pending`: grant, then the completion.
    fn grant_lock_pending(&mut self, r: u32, i: u32, mode: i8, alt: bool) {
        self.grant_lock(r, i, mode, alt);
        self.cast(i, Status::GRANTED);
    }

    /// `grant_pending_convert` (C.7 step 1). Returns `max(high, hi)`.
    fn grant_pending_convert(&mut self, r: u32, high: i8, mut cw: Option<&mut bool>) -> i8 {
        if let Some(a) = self.res[r as usize].agg.as_deref() {
            if a.cnord == 0 && !a.convert_pairs() {
                return self.grant_pending_convert_ordered(r, high, cw);
            }
        }
        let counted = self.res[r as usize].agg.is_some();
        let mut quit = false;
        loop {
            let mut grant_restart = false;
            let mut demote_restart = false;
            let mut hi = IV;
            // The conversions passed in this walk that are still queued
            // (nothing but the current lock changes during the walk).
            let mut ahead = Ahead::default();
            let mut cur = self.res[r as usize].q[Q_CONVERT].head;
            while cur != NIL {
                let next = self.l(cur).q_next;
                let demoted = self.l(cur).sbflags & SBF_DEMOTED != 0;
                let d = self.can_be_granted_in(r, cur, false, counted.then_some(&ahead));
                match d {
                    Decision::Grant { mode, alt } => {
                        self.grant_lock_pending(r, cur, mode, alt);
                        grant_restart = true;
                    }
                    _ if !demoted && self.l(cur).sbflags & SBF_DEMOTED != 0 => {
                        demote_restart = true;
                    }
                    Decision::Deadlock => {
                        let lk = self.l(cur);
                        if lk.exflags.contains(F::NODLCKWT) && lk.highbast < lk.rq {
                            let rq = lk.rq;
                            self.bast(cur, rq);
                            self.set_hb(cur, rq);
                        }
                    }
                    Decision::Deny => {
                        let rq = self.l(cur).rq;
                        hi = hi.max(rq);
                        if rq == CW {
                            if let Some(cw) = cw.as_deref_mut() {
                                *cw = true;
                            }
                        }
                    }
                }
                let lk = self.l(cur);
                if counted && lk.status == ST_CONVERT {
                    ahead.rq[lk.rq as usize] += 1;
                    ahead.m[lk.gr as usize][lk.rq as usize] += 1;
                }
                cur = next;
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

    /// [`Self::grant_pending_convert`] when no conversion of the queue is
    /// deadlocked (no pair can be, see [`Agg::convert_pairs`]; grants only
    /// remove pairs, and a demotion needs a deadlock) and none is NOORDER
    /// or EXPEDITE. Then only the head of the queue can be granted (rule
    /// 6), so a pass of the kernel's walk grants the head while it is
    /// grantable and refuses everything behind it, with no other effect:
    /// `hi` and `cw` come from the requested modes left on the queue. The
    /// restart after a grant refuses the head again. O(1) per grant
    /// instead of a walk of the queue (with a deadlock scan) per lock.
    fn grant_pending_convert_ordered(&mut self, r: u32, high: i8, cw: Option<&mut bool>) -> i8 {
        loop {
            let mut granted = false;
            loop {
                let h = self.res[r as usize].q[Q_CONVERT].head;
                if h == NIL {
                    break;
                }
                match self.can_be_granted(r, h, false) {
                    Decision::Grant { mode, alt } => {
                        self.grant_lock_pending(r, h, mode, alt);
                        granted = true;
                    }
                    d => {
                        debug_assert_eq!(d, Decision::Deny);
                        break;
                    }
                }
            }
            if granted {
                continue;
            }
            let crq = self.res[r as usize]
                .agg
                .as_deref()
                .expect("aggregates")
                .crq();
            if let Some(cw) = cw {
                if crq[CW as usize] > 0 {
                    *cw = true;
                }
            }
            let hi = (0..6).rev().find(|&m| crq[m as usize] > 0).unwrap_or(IV);
            return high.max(hi);
        }
    }

    /// `grant_pending_wait` (C.7 step 2), incrementally: the kernel walks
    /// the whole wait queue, but only its head can be granted by rule 10,
    /// and once a waiter is refused only NOORDER waiters can be granted
    /// (rule 7); refused new requests change nothing. So grant the head
    /// while it is grantable, then try the NOORDER waiters behind it in
    /// order, then take `high`/`cw` over what is left.
    fn grant_pending_wait(&mut self, r: u32, mut high: i8, cw: &mut bool) -> i8 {
        let stop = loop {
            let h = self.res[r as usize].q[Q_WAIT].head;
            if h == NIL {
                break NIL;
            }
            match self.can_be_granted(r, h, false) {
                Decision::Grant { mode, alt } => self.grant_lock_pending(r, h, mode, alt),
                _ => break h,
            }
        };
        if stop == NIL {
            return high;
        }
        if let Some(a) = self.res[r as usize].agg.as_deref() {
            let mut cur = a.nord.head;
            while cur != NIL {
                let next = self.l(cur).n_next;
                if cur != stop {
                    if let Decision::Grant { mode, alt } = self.can_be_granted(r, cur, false) {
                        self.grant_lock_pending(r, cur, mode, alt);
                    }
                }
                cur = next;
            }
            let a = self.res[r as usize].agg.as_deref().expect("aggregates");
            for m in (0..6).rev() {
                if a.w[m] > 0 {
                    high = high.max(m as i8);
                    break;
                }
            }
            if a.w[CW as usize] > 0 {
                *cw = true;
            }
        } else {
            let mut cur = self.l(stop).q_next;
            while cur != NIL {
                let next = self.l(cur).q_next;
                if self.l(cur).exflags.contains(F::NOORDER) {
                    if let Decision::Grant { mode, alt } = self.can_be_granted(r, cur, false) {
                        self.grant_lock_pending(r, cur, mode, alt);
                    }
                }
                cur = next;
            }
            let mut cur = self.res[r as usize].q[Q_WAIT].head;
            while cur != NIL {
                let rq = self.l(cur).rq;
                high = high.max(rq);
                if rq == CW {
                    *cw = true;
                }
                cur = self.l(cur).q_next;
            }
        }
        high
    }

    /// `grant_pending_locks` (C.7): conversions, waiters, then rule G
    /// basts to the grant queue.
    fn grant_pending_locks(&mut self, r: u32) {
        let mut cw = false;
        let high = self.grant_pending_convert(r, IV, Some(&mut cw));
        let high = self.grant_pending_wait(r, high, &mut cw);
        if high == IV {
            return;
        }
        // With aggregates, the number of holders to bast is known, and the
        // walk stops after the last (recent grants are near the head).
        let mut left = u64::MAX;
        if let Some(a) = self.res[r as usize].agg.as_deref() {
            left = (0..6)
                .flat_map(|g| (0..6).map(move |h| (g, h)))
                .filter(|&(g, h)| lock_requires_bast(g as i8, h as i8, high, cw))
                .map(|(g, h)| u64::from(a.ghb[g][h]))
                .sum();
        }
        let mut cur = self.res[r as usize].q[Q_GRANT].head;
        while cur != NIL && left > 0 {
            let lk = self.l(cur);
            let next = lk.q_next;
            if lock_requires_bast(lk.gr, lk.highbast, high, cw) {
                let mode = if cw && high == PR && lk.gr == PR {
                    CW
                } else {
                    high
                };
                self.bast(cur, mode);
                self.set_hb(cur, high);
                left -= 1;
            }
            cur = next;
        }
    }

    /// `send_bast_queue`: rule Q / N basts from queue `q` for the request
    /// of lock `i`.
    fn send_bast_queue(&mut self, r: u32, q: usize, i: u32) {
        let rq = self.l(i).rq;
        // With aggregates, the number of grant-queue holders that need a
        // bast is known, and the walk stops after the last.
        let mut left = u64::MAX;
        if q == Q_GRANT {
            if let Some(a) = self.res[r as usize].agg.as_deref() {
                left = (0..6)
                    .flat_map(|g| (0..6).map(move |h| (g, h)))
                    .filter(|&(g, h)| modes_require_bast(g as i8, h as i8, rq))
                    .map(|(g, h)| u64::from(a.ghb[g][h]))
                    .sum();
            }
        }
        let mut cur = self.res[r as usize].q[q].head;
        while cur != NIL && left > 0 {
            let lk = self.l(cur);
            let next = lk.q_next;
            if modes_require_bast(lk.gr, lk.highbast, rq) {
                left -= 1;
                if cur != i {
                    self.bast(cur, rq);
                    self.set_hb(cur, rq);
                }
            }
            cur = next;
        }
    }

    // ---- operations -------------------------------------------------------

    /// A new request (`dlm_user_request`, `request_lock`, `do_request`).
    /// Returns the lock id.
    pub fn request(&mut self, owner: u32, p: &LockParams, tid: u32) -> Result<u32, Errno> {
        let mode = check_lock_args(p.mode.into(), p.flags, p.name.len(), true)?;
        let acct = self.owners[owner as usize].acct;
        let i = self.alloc_lock(acct);
        let valblk = p.flags.contains(F::VALBLK);
        *self.lm(i) = Lock {
            ua: Ua::of(p),
            lvb: valblk.then(|| Box::new([0; LVB_LEN])),
            owner,
            ownpid: tid,
            exflags: p.flags,
            rq: mode.raw() as i8,
            bits: if valblk { B_LVBPTR } else { 0 },
            acct,
            ..Lock::FREE
        };
        let r = self.attach(i, p.name.as_bytes());
        match self.can_be_granted(r, i, true) {
            Decision::Grant { mode, alt } => {
                self.grant_lock(r, i, mode, alt);
                self.cast(i, Status::GRANTED);
                self.list_owner(owner, i);
            }
            _ if !p.flags.contains(F::NOQUEUE) => {
                self.q_add(r, i, ST_WAITING, p.flags.contains(F::HEADQUE));
                self.send_bast_queue(r, Q_GRANT, i);
                self.list_owner(owner, i);
            }
            _ => {
                self.cast(i, Status::AGAIN);
                if p.flags.contains(F::NOQUEUEBAST) {
                    self.send_bast_queue(r, Q_GRANT, i);
                    self.send_bast_queue(r, Q_CONVERT, i);
                }
                self.maybe_free(i);
            }
        }
        Ok(i + 1)
    }

    /// A conversion (`dlm_user_convert`, `convert_lock`).
    pub fn convert(&mut self, p: &LockParams, tid: u32) -> Result<(), Errno> {
        let i = self.find(p.lkid).ok_or(Errno::ENOENT)?;
        // The kernel replaces the pointers and the LVB buffer before it
        // validates anything.
        let lk = self.lm(i);
        if p.flags.contains(F::VALBLK) && lk.lvb.is_none() {
            lk.lvb = Some(Box::new([0; LVB_LEN]));
        }
        if let Some(b) = lk.lvb.as_deref_mut() {
            *b = p.lvb;
        }
        lk.ua = Ua::of(p);
        let mode = check_lock_args(p.mode.into(), p.flags, 0, true)?;
        // validate_lock_args
        if lk.status != ST_GRANTED {
            return Err(Errno::EBUSY);
        }
        if p.flags.contains(F::QUECVT) && !mode_of(lk.gr).quecvt_allowed(mode) {
            return Err(Errno::EINVAL);
        }
        lk.exflags = p.flags;
        lk.sbflags = 0;
        lk.rq = mode.raw() as i8;
        if lk.lvb.is_some() {
            lk.bits |= B_LVBPTR;
        }
        lk.ownpid = tid;
        let r = lk.res;
        self.do_convert(r, i);
        Ok(())
    }

    /// `do_convert` and `do_convert_effects` (C.5).
    fn do_convert(&mut self, r: u32, i: u32) {
        let f = self.l(i).exflags;
        match self.can_be_granted(r, i, true) {
            Decision::Grant { mode, alt } => {
                self.grant_lock(r, i, mode, alt);
                self.cast(i, Status::GRANTED);
                self.grant_pending_locks(r);
                return;
            }
            Decision::Deadlock if !f.contains(F::NODLCKWT) => {
                // revert_lock: stays granted in its old mode.
                self.lm(i).rq = IV;
                self.cast(i, Status::DEADLOCK);
                return;
            }
            _ => {}
        }
        if self.l(i).sbflags & SBF_DEMOTED != 0 {
            self.grant_pending_convert(r, IV, None);
            let rq = self.l(i).rq;
            if self.can(r, i, rq, true) {
                self.grant_lock(r, i, rq, false);
                self.cast(i, Status::GRANTED);
                self.grant_pending_locks(r);
                return;
            }
        }
        if !f.contains(F::NOQUEUE) {
            self.q_del(r, i);
            self.q_add(r, i, ST_CONVERT, f.contains(F::HEADQUE));
            self.send_bast_queue(r, Q_GRANT, i);
            return;
        }
        self.cast(i, Status::AGAIN);
        if f.contains(F::NOQUEUEBAST) {
            self.send_bast_queue(r, Q_GRANT, i);
            self.send_bast_queue(r, Q_CONVERT, i);
        }
    }

    /// `validate_unlock_args` on one node (C.3.5): EINVAL for a repeated
    /// CANCEL or FORCEUNLOCK, EBUSY for a cancel with nothing to cancel;
    /// on success the flags join the lock's.
    pub(crate) fn validate_unlock(&mut self, i: u32, flags: F) -> Result<(), Errno> {
        let lk = self.lm(i);
        if flags.contains(F::CANCEL) {
            if lk.exflags.contains(F::CANCEL) {
                return Err(Errno::EINVAL);
            }
            if lk.status == ST_GRANTED {
                return Err(Errno::EBUSY);
            }
        } else if flags.contains(F::FORCEUNLOCK) && lk.exflags.contains(F::FORCEUNLOCK) {
            // The kernel's error variable already holds -EINVAL here (the
            // same reason a repeated cancel gets EINVAL, docs/semantics.md U4).
            return Err(Errno::EINVAL);
        }
        lk.exflags |= flags;
        lk.sbflags = 0;
        Ok(())
    }

    /// An unlock or force-unlock (`dlm_user_unlock`).
    pub fn unlock(&mut self, p: &LockParams) -> Result<(), Errno> {
        let i = self.find(p.lkid).ok_or(Errno::ENOENT)?;
        let lk = self.lm(i);
        if let Some(b) = lk.lvb.as_deref_mut() {
            *b = p.lvb;
        }
        if p.castparam != 0 {
            lk.ua.castparam = p.castparam;
        }
        lk.ua.user_lksb = p.lksb;
        check_unlock_flags(p.flags)?;
        self.validate_unlock(i, p.flags)?;
        self.do_unlock(i);
        Ok(())
    }

    /// `do_unlock` and its effects (C.6.1).
    pub(crate) fn do_unlock(&mut self, i: u32) {
        let r = self.l(i).res;
        self.set_lvb_unlock(r, i);
        self.q_del(r, i);
        self.lm(i).gr = IV;
        self.cast(i, Status::UNLOCKED);
        self.grant_pending_locks(r);
        self.maybe_free(i);
    }

    /// A cancel (`dlm_user_cancel`).
    pub fn cancel(&mut self, p: &LockParams) -> Result<(), Errno> {
        let i = self.find(p.lkid).ok_or(Errno::ENOENT)?;
        let lk = self.lm(i);
        if p.castparam != 0 {
            lk.ua.castparam = p.castparam;
        }
        lk.ua.user_lksb = p.lksb;
        check_unlock_flags(p.flags)?;
        match self.validate_unlock(i, p.flags) {
            Err(Errno::EBUSY) => return Ok(()),
            other => other?,
        }
        self.do_cancel(i);
        Ok(())
    }

    /// A deadlock-cancel (`dlm_user_deadlock`, C.6.4).
    pub fn deadlock(&mut self, lkid: u32, flags: F) -> Result<(), Errno> {
        let i = self.find(lkid).ok_or(Errno::ENOENT)?;
        check_unlock_flags(flags)?;
        match self.validate_unlock(i, flags) {
            Err(Errno::EBUSY) => return Ok(()),
            other => other?,
        }
        self.lm(i).bits |= B_DLCANCEL;
        self.do_cancel(i);
        Ok(())
    }

    /// `do_cancel` (`revert_lock`) and its effects (C.6.2).
    pub(crate) fn do_cancel(&mut self, i: u32) {
        let r = self.l(i).res;
        match self.l(i).status {
            ST_CONVERT => {
                self.q_del(r, i);
                self.lm(i).rq = IV;
                self.q_add(r, i, ST_GRANTED, false);
                self.cast(i, Status::CANCELLED);
                self.grant_pending_locks(r);
            }
            ST_WAITING => {
                self.q_del(r, i);
                self.lm(i).rq = IV;
                self.lm(i).gr = IV;
                self.cast(i, Status::CANCELLED);
                self.grant_pending_locks(r);
                self.maybe_free(i);
            }
            // Granted with nothing pending, or an orphan whose request was
            // already cancelled: nothing to do but forget the requested mode.
            _ => self.lm(i).rq = IV,
        }
    }
}
