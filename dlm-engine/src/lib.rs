//! dlm-engine: the lock manager, with the kernel DLM's semantics on one
//! node (docs/semantics.md Part C), pure and deterministic: no I/O, no threads, no
//! timers.
//!
//! An [`Engine`] holds lockspaces; each lockspace has openers
//! ([`OwnerId`]), resources and locks. Requests arrive as decoded
//! [`Request`]s, one per device `write()`, and [`Engine::write`] answers
//! exactly what the kernel's `write()` would. Callbacks (completions and
//! blocking callbacks) queue per owner and are taken with
//! [`Engine::pop_callback`], one `read()` each.
//!
//! # Example
//!
//! ```
//! use dlm_core::{LockFlags, LockParams, LsFlags, Mode, Name, Request, Status};
//! use dlm_engine::Engine;
//!
//! let mut e = Engine::new();
//! let minor = e.create_lockspace(Name::lockspace(b"t").unwrap(), LsFlags::empty()).unwrap();
//! let o = e.open(minor).unwrap();
//! let p = LockParams {
//!     mode: Mode::Ex.raw(),
//!     castaddr: 0x1000,
//!     lksb: 0x2000,
//!     name: Name::new(b"r").unwrap(),
//!     ..LockParams::default()
//! };
//! let id = e.write(o, &Request::Lock(p), 42).unwrap();
//! let cast = e.pop_callback(o).unwrap();
//! assert_eq!((cast.lkid, cast.status), (id, Status::GRANTED));
//! ```
//!
//! # Behaviour
//!
//! The kernel 6.12 column of the spec: snapshot callbacks in one FIFO per
//! owner, lock objects freed at end of life (ids reused at once, lowest
//! free first, per lockspace), zero-padded resource names (exact length
//! for orphan adoption), lockspace-global lock ids (any owner may convert
//! or unlock any id; callbacks go to the owning opener). Where the spec
//! and the kernel's code differ, or the kernel misbehaves, the engine
//! does this:
//!
//! - A force-unlock of a lock whose own flags already hold FORCEUNLOCK
//!   (set by a LOCK or CONVERT carrying that bit) fails with EINVAL, as
//!   `validate_unlock_args` answers (its error is already -EINVAL there,
//!   the reason a repeated cancel gets EINVAL, docs/semantics.md U4 and
//!   C.3.5). Close and purge then cannot unlock such a lock:
//!   it stays queued, dead, until unlocked by id ([`LockOwner::Dead`]).
//!   Both Debian kernels (6.1, 6.12) were seen doing so in the VM suite.
//!   [`Engine::set_release_forceunlock`] turns this off (dlmd does: no
//!   lock outlives its owner there).
//! - An orphan unlocked by id gets no callback and, like the
//!   kernel's object, is not freed: it stays on the orphan list, off every
//!   queue, until a purge (the kernel would move it to the closed opener's
//!   freed list, a use-after-free).
//! - A queued conversion granted its alternate mode when that equals its
//!   granted mode (QUECVT with ALTPR from PR, or ALTCW from CW) moves to
//!   the grant queue; the kernel's `_grant_lock` would leave it on the
//!   convert queue with no requested mode.
//! - A remove of a lockspace that still has openers is EBUSY rather than
//!   a wait (README's table of deliberate differences).
//!
//! # Cost
//!
//! Every operation is O(1) or O(log n) in the number of locks held (the
//! lowest-free id heap), plus work proportional to what it changes:
//! draining a wait queue costs O(1) per grant, where the kernel's pending
//! grant pass rescans the whole queue. On a resource with many locks the
//! convert queue is counted by (granted, requested) mode: while no two of
//! its conversions could deadlock each other and none is NOORDER, only
//! its head can be granted, so the pending pass and the deadlock check
//! cost O(1) per grant instead of a deadlock scan of the queue per queued
//! conversion (the kernel's walk, cubic when 10,000 conversions drain);
//! otherwise each pass walks the queue as the kernel does, but checks
//! each conversion for a deadlock from counts instead of another walk
//! (linear per pass, quadratic in total). Bast scans of the
//! grant queue stop after the last holder that needs a bast (counted, and
//! recent grants sit at its head). Orphan adoption looks at the orphans of
//! the named resource only, and [`Engine::take_notified`] only at the
//! lockspaces that queued callbacks.

#![deny(unsafe_code)]

use dlm_core::{Errno, LockFlags, LockResult, LsFlags, Lvb, Mode, Name, RemoveFlags, Request};

mod ops;
mod owner;
mod space;
mod stats;

pub use stats::EngineStats;

use space::{Lockspace, NIL};
use std::collections::HashMap;

/// One opener of a lockspace (one device fd / one dlmd handle). Opaque,
/// never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct OwnerId(u64);

/// A hasher for ids the engine or dlmd hands out themselves (owner ids)
/// and for uids (the kernel's credentials): never values a client
/// chooses freely. One multiplication instead of SipHash,
/// which dlmd's per-operation profile showed as a third of its work.
/// Not for names or anything a client picks (those keep a keyed hash).
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing: the high bits (hashbrown's tags) mixed, the
        // low bits (its bucket index) a bijection of the id's low bits.
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by ids the engine or dlmd hands out ([`IdHasher`]).
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Resources get per-resource aggregates once they hold more lock
/// objects than this (below it, walking the short queues is cheaper).
const AGG_THRESHOLD: u32 = 8;

/// The lock manager: every lockspace of one node.
pub struct Engine {
    /// Lockspaces by minor; minors are never reused.
    spaces: Vec<Option<Box<Lockspace>>>,
    by_name: HashMap<Name, u32>,
    /// Open owners: their lockspace minor and slot.
    owners: IdMap<OwnerId, (u32, u32)>,
    next_owner: u64,
    agg_threshold: u32,
    /// Lockspaces with owners listed in their `notified` since the last
    /// [`Engine::take_notified`], each once (so that call costs nothing
    /// for the lockspaces that saw no callback).
    notified_spaces: Vec<u32>,
    /// Live lock objects per account ([`Engine::locks_of`]).
    acct_locks: IdMap<u32, usize>,
    /// See [`Engine::set_release_forceunlock`].
    release_forced: bool,
    /// See [`Engine::set_clock`].
    now: u32,
    /// The running totals of [`Engine::stats`] (its `lockspaces` unused).
    totals: EngineStats,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new()
    }
}

impl Engine {
    /// Sets the engine's clock to `now` seconds (any origin, not going
    /// back): each lock records it when it enters a queue, and dumps
    /// report [`LockDump::seconds`] from it. A server sets it once per
    /// round of its event loop; an engine whose clock is never set dumps
    /// every age as 0.
    pub fn set_clock(&mut self, now: u32) {
        if now == self.now {
            return;
        }
        self.now = now;
        for ls in self.spaces.iter_mut().flatten() {
            ls.now = now;
        }
    }

    /// Calls `f` for each request (waiting or converting) whose age
    /// reached `threshold` seconds at an engine clock in `(from, to]`:
    /// called once per clock range, each request is reported once per
    /// queue it enters. `f` gets the lockspace and resource names, the
    /// request, and the locks that block it
    /// ([`dlm_core::dump::blocked_by`]). A walk of every lock of every
    /// lockspace: for a server's occasional use (dlmd's `--warn-wait`).
    pub fn long_waits(&self, from: u32, to: u32, threshold: u32, f: &mut LongWaitFn<'_>) {
        use dlm_core::dump::{LockInfo, LockState, blocked_by};
        for ls in self.spaces.iter().flatten() {
            for res in ls.res.iter().filter(|r| r.nlocks > 0) {
                let crossed = |i: u32| {
                    let at = ls.l(i).since.saturating_add(threshold);
                    at > from && at <= to
                };
                let any = [space::Q_CONVERT, space::Q_WAIT].iter().any(|&q| {
                    let mut i = res.q[q].head;
                    while i != NIL {
                        if crossed(i) {
                            return true;
                        }
                        i = ls.l(i).q_next;
                    }
                    false
                });
                if !any {
                    continue;
                }
                let mut locks: Vec<(u32, LockDump, LockState)> = Vec::new();
                for (q, state) in [
                    (space::Q_GRANT, LockState::Granted),
                    (space::Q_CONVERT, LockState::Converting),
                    (space::Q_WAIT, LockState::Waiting),
                ] {
                    let mut i = res.q[q].head;
                    while i != NIL {
                        locks.push((i, Self::lock_dump(ls, i), state));
                        i = ls.l(i).q_next;
                    }
                }
                let model: Vec<LockInfo> =
                    locks.iter().map(|(_, l, state)| l.model(*state)).collect();
                let name = Name::new(&res.name).expect("resource names fit");
                for ((i, l, state), b) in locks.iter().zip(blocked_by(&model)) {
                    if *state == LockState::Granted || !crossed(*i) {
                        continue;
                    }
                    let blockers: Vec<LockDump> = locks
                        .iter()
                        .filter(|(_, x, _)| b.contains(&x.id))
                        .map(|(_, x, _)| *x)
                        .collect();
                    f(&ls.name, &name, l, &blockers);
                }
            }
        }
    }

    /// An engine with no lockspaces.
    pub fn new() -> Engine {
        Engine {
            now: 0,
            spaces: Vec::new(),
            by_name: HashMap::new(),
            owners: IdMap::default(),
            next_owner: 1,
            agg_threshold: AGG_THRESHOLD,
            notified_spaces: Vec::new(),
            acct_locks: IdMap::default(),
            release_forced: false,
            totals: EngineStats::default(),
        }
    }

    /// Makes close and purge release a lock whose own flags hold
    /// FORCEUNLOCK (set by the LOCK, CONVERT or DEADLOCK request that
    /// carried it), in every lockspace. The kernel refuses that
    /// force-unlock and keeps the lock for ever, granted to nobody
    /// ([`LockOwner::Dead`]); dlmd turns this on so that no lock outlives
    /// its owner.
    pub fn set_release_forceunlock(&mut self, on: bool) {
        self.release_forced = on;
        for ls in self.spaces.iter_mut().flatten() {
            ls.release_forced = on;
        }
    }

    /// The number of live lock objects (orphans included) created by
    /// owners opened with account `acct` ([`Engine::open_as`]): a lock
    /// stays charged to its creator's account when it becomes an orphan
    /// or is adopted, until it is freed.
    pub fn locks_of(&self, acct: u32) -> usize {
        self.acct_locks.get(&acct).copied().unwrap_or(0)
    }

    /// Moves the lock objects created and freed in lockspace `minor`
    /// since the last call into the per-account counts.
    fn settle(&mut self, minor: u32) {
        let Some(ls) = self
            .spaces
            .get_mut(minor as usize)
            .and_then(|s| s.as_deref_mut())
        else {
            return;
        };
        stats::settle(&mut self.totals, ls);
        for (acct, created) in ls.acct_log.drain(..) {
            if created {
                *self.acct_locks.entry(acct).or_insert(0) += 1;
            } else if let Some(n) = self.acct_locks.get_mut(&acct) {
                *n -= 1;
                if *n == 0 {
                    self.acct_locks.remove(&acct);
                }
            }
        }
        if ls.acct_log.capacity() > 4096 {
            ls.acct_log = Vec::new();
        }
    }

    /// Sets how many lock objects a resource holds before the engine
    /// keeps aggregates for it (for lockspaces created afterwards). Only
    /// for tests that check both code paths give identical results.
    #[doc(hidden)]
    pub fn set_aggregate_threshold(&mut self, n: u32) {
        self.agg_threshold = n;
    }

    fn space(&self, minor: u32) -> Option<&Lockspace> {
        self.spaces.get(minor as usize)?.as_deref()
    }

    fn owner(&self, owner: OwnerId) -> Option<(&Lockspace, u32)> {
        let &(minor, slot) = self.owners.get(&owner)?;
        Some((self.space(minor)?, slot))
    }

    fn owner_mut(&mut self, owner: OwnerId) -> Option<(&mut Lockspace, u32)> {
        let &(minor, slot) = self.owners.get(&owner)?;
        Some((self.spaces.get_mut(minor as usize)?.as_deref_mut()?, slot))
    }

    /// CREATE_LOCKSPACE: returns the lockspace's minor (a small unique
    /// integer).
    ///
    /// An existing name without NEWEXCL adds one to its creation count
    /// and returns the same minor.
    ///
    /// # Errors
    /// EEXIST for an existing name with NEWEXCL; EINVAL for an empty name
    /// or one containing a NUL byte.
    pub fn create_lockspace(&mut self, name: Name, flags: LsFlags) -> Result<u32, Errno> {
        if name.is_empty() || name.as_bytes().contains(&0) {
            return Err(Errno::EINVAL);
        }
        if let Some(&minor) = self.by_name.get(&name) {
            if flags.contains(LsFlags::NEWEXCL) {
                return Err(Errno::EEXIST);
            }
            let ls = self.spaces[minor as usize]
                .as_deref_mut()
                .expect("named lockspace");
            ls.create_count += 1;
            return Ok(minor);
        }
        let minor = self.spaces.len() as u32;
        let mut ls = Box::new(Lockspace::new(name, self.agg_threshold));
        ls.now = self.now;
        ls.release_forced = self.release_forced;
        self.spaces.push(Some(ls));
        self.by_name.insert(name, minor);
        Ok(minor)
    }

    /// REMOVE_LOCKSPACE by minor.
    ///
    /// A creation count above 1 is decremented. At 1 the lockspace goes
    /// away, with all its locks, unless it is busy.
    ///
    /// # Errors
    /// ENOENT for an unknown minor; EBUSY if any lock object exists
    /// (orphans included) and FORCEFREE is not given; EBUSY if any opener
    /// is still open, regardless of FORCEFREE (where the kernel would
    /// block: README's table of deliberate differences).
    pub fn remove_lockspace(&mut self, minor: u32, flags: RemoveFlags) -> Result<(), Errno> {
        let ls = self
            .spaces
            .get_mut(minor as usize)
            .and_then(|s| s.as_deref_mut())
            .ok_or(Errno::ENOENT)?;
        if ls.create_count > 1 {
            ls.create_count -= 1;
            return Ok(());
        }
        if ls.nobjects > 0 && !flags.contains(RemoveFlags::FORCEFREE) {
            return Err(Errno::EBUSY);
        }
        if ls.openers > 0 {
            return Err(Errno::EBUSY);
        }
        self.by_name.remove(&ls.name);
        self.settle(minor);
        if let Some(ls) = self.spaces[minor as usize].take() {
            stats::retire(&mut self.totals, &ls);
            // FORCEFREE: the remaining locks go with the lockspace.
            for l in ls.locks.iter().filter(|l| l.in_use()) {
                if let Some(n) = self.acct_locks.get_mut(&l.acct) {
                    *n -= 1;
                    if *n == 0 {
                        self.acct_locks.remove(&l.acct);
                    }
                }
            }
        }
        Ok(())
    }

    /// The minor of the lockspace called `name`, if it exists.
    pub fn find_lockspace(&self, name: &Name) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// Opens the lockspace device: a new owner.
    ///
    /// # Errors
    /// ENOENT if no lockspace has this minor.
    pub fn open(&mut self, minor: u32) -> Result<OwnerId, Errno> {
        self.open_as(minor, 0)
    }

    /// Opens the lockspace device as [`Engine::open`], charging the new
    /// owner's locks to account `acct` ([`Engine::locks_of`]; dlmd uses
    /// the peer's uid).
    ///
    /// # Errors
    /// ENOENT if no lockspace has this minor.
    pub fn open_as(&mut self, minor: u32, acct: u32) -> Result<OwnerId, Errno> {
        let ls = self
            .spaces
            .get_mut(minor as usize)
            .and_then(|s| s.as_deref_mut())
            .ok_or(Errno::ENOENT)?;
        let id = OwnerId(self.next_owner);
        self.next_owner += 1;
        let slot = ls.add_owner(id, acct);
        self.owners.insert(id, (minor, slot));
        Ok(id)
    }

    /// Closes an owner (docs/semantics.md A.7): persistent locks become orphans (a
    /// pending conversion reverted, a waiting request removed from the
    /// queue but kept as an orphan), the others are force-unlocked with
    /// IVVALBLK, unread callbacks are discarded. Unknown owners are
    /// ignored.
    pub fn close(&mut self, owner: OwnerId) {
        if let Some((ls, slot)) = self.owner_mut(owner) {
            ls.close_owner(slot);
            if let Some((minor, _)) = self.owners.remove(&owner) {
                self.settle(minor);
                self.note(Some(minor));
            }
        }
    }

    /// Lists lockspace `minor` in `notified_spaces` if it has notified
    /// owners and is not listed yet.
    fn note(&mut self, minor: Option<u32>) {
        let Some(minor) = minor else { return };
        if let Some(ls) = self
            .spaces
            .get_mut(minor as usize)
            .and_then(|s| s.as_deref_mut())
        {
            if !ls.notified.is_empty() && !ls.noted {
                ls.noted = true;
                self.notified_spaces.push(minor);
            }
        }
    }

    /// One device write by `owner`: LOCK (new / CONVERT / ORPHAN adopt),
    /// UNLOCK (plain / CANCEL / FORCEUNLOCK), DEADLOCK or PURGE.
    ///
    /// Returns what the kernel's `write()` returns: the lock id for a new
    /// request or an adoption, 0 otherwise. Outcomes arrive as callbacks.
    /// `tid` is the caller's thread id (the owner pid of its locks, and
    /// PURGE's notion of "the caller"). Every PURGE nodeid is the local
    /// node.
    ///
    /// # Errors
    /// The kernel's errnos (docs/semantics.md A.4, C.3, C.6, C.11): EINVAL for bad
    /// arguments, for CREATE/REMOVE requests and for an unknown or closed
    /// owner; ENOENT for an unknown lock id or orphan; EBUSY for a
    /// conversion of a lock that is not granted; EAGAIN for an orphan held
    /// in another mode.
    pub fn write(&mut self, owner: OwnerId, req: &Request, tid: u32) -> Result<u32, Errno> {
        let ret = self.write_in(owner, req, tid);
        if let Some(&(minor, _)) = self.owners.get(&owner) {
            self.settle(minor);
            self.note(Some(minor));
        }
        ret
    }

    fn write_in(&mut self, owner: OwnerId, req: &Request, tid: u32) -> Result<u32, Errno> {
        let (ls, slot) = self.owner_mut(owner).ok_or(Errno::EINVAL)?;
        match req {
            Request::Lock(p) => {
                if p.castaddr == 0 || p.lksb == 0 {
                    Err(Errno::EINVAL)
                } else if p.flags.contains(LockFlags::CONVERT) {
                    ls.convert(p, tid).map(|()| 0)
                } else if p.flags.contains(LockFlags::ORPHAN) {
                    ls.adopt(slot, p, tid)
                } else {
                    ls.request(slot, p, tid)
                }
            }
            Request::Unlock(p) if p.flags.contains(LockFlags::CANCEL) => ls.cancel(p).map(|()| 0),
            Request::Unlock(p) => ls.unlock(p).map(|()| 0),
            Request::Deadlock { lkid, flags } => ls.deadlock(*lkid, *flags).map(|()| 0),
            Request::Purge { pid, .. } => {
                ls.purge(slot, *pid, tid);
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Takes the oldest queued callback of `owner`: exactly what a device
    /// `read()` with a 104-byte buffer returns, the LVB included when the
    /// A.5 rules attach one. `None` when nothing is queued or the owner is
    /// unknown.
    pub fn pop_callback(&mut self, owner: OwnerId) -> Option<LockResult> {
        let (ls, slot) = self.owner_mut(owner)?;
        ls.pop_cb(slot)
    }

    /// Appends to `out` the owners that queued a callback since the last
    /// call and still have one queued, each once (one whose callbacks
    /// were all popped meanwhile, as a completion that rode in a
    /// synchronous reply, is left out). A server delivering callbacks
    /// looks only at these instead of at every owner after each
    /// operation.
    pub fn take_notified(&mut self, out: &mut Vec<OwnerId>) {
        for minor in self.notified_spaces.drain(..) {
            let Some(ls) = self
                .spaces
                .get_mut(minor as usize)
                .and_then(|s| s.as_deref_mut())
            else {
                continue;
            };
            ls.noted = false;
            for slot in ls.notified.drain(..) {
                let o = &mut ls.owners[slot as usize];
                o.notified = false;
                if o.open && !o.cbs.is_empty() {
                    out.push(o.id);
                }
            }
        }
    }

    /// The number of queued callbacks of `owner` (poll readiness); 0 for
    /// an unknown owner.
    pub fn pending_callbacks(&self, owner: OwnerId) -> usize {
        self.owner(owner)
            .map_or(0, |(ls, slot)| ls.owners[slot as usize].cbs.len())
    }

    /// Bytes held by the engine's slabs and tables for all lockspaces
    /// (lock and resource slabs, name tables), for memory reports.
    #[doc(hidden)]
    pub fn footprint(&self) -> usize {
        self.spaces.iter().flatten().map(|ls| ls.footprint()).sum()
    }

    /// A snapshot of lockspace `minor` for `dlm locks` and dlmd's dump,
    /// or `None` if no lockspace has this minor. Resources are listed by
    /// name.
    pub fn dump(&self, minor: u32) -> Option<LockspaceDump> {
        let ls = self.space(minor)?;
        let lock_dump = |i: u32| Engine::lock_dump(ls, i);
        let queue = |mut i: u32| {
            let mut v = Vec::new();
            while i != NIL {
                v.push(lock_dump(i));
                i = ls.l(i).q_next;
            }
            v
        };
        let mut resources: Vec<ResourceDump> = ls
            .res
            .iter()
            .filter(|r| r.nlocks > 0)
            .map(|r| ResourceDump {
                name: Name::new(&r.name).expect("resource names fit"),
                lvb: r.lvb.as_deref().copied(),
                lvb_invalid: r.lvb_invalid,
                granted: queue(r.q[space::Q_GRANT].head),
                converting: queue(r.q[space::Q_CONVERT].head),
                waiting: queue(r.q[space::Q_WAIT].head),
                detached: Vec::new(),
            })
            .collect();
        resources.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let mut i = ls.orphans.head;
        while i != NIL {
            let l = ls.l(i);
            if l.status == space::ST_NONE {
                let name = Name::new(&ls.res[l.res as usize].name).expect("resource names fit");
                if let Ok(k) =
                    resources.binary_search_by(|r| r.name.as_bytes().cmp(name.as_bytes()))
                {
                    resources[k].detached.push(lock_dump(i));
                }
            }
            i = l.o_next;
        }
        Some(LockspaceDump {
            name: ls.name,
            minor,
            create_count: ls.create_count,
            openers: ls.openers,
            locks: ls.nobjects,
            resources,
        })
    }
}

impl Engine {
    /// The first lockspace whose minor is `from` or above (minors are
    /// never reused, so a dump of every lockspace walks them with this).
    pub fn next_lockspace(&self, from: u32) -> Option<u32> {
        let start = from as usize;
        self.spaces
            .get(start..)?
            .iter()
            .position(Option::is_some)
            .map(|k| (start + k) as u32)
    }

    /// The summary of lockspace `minor` that starts its dump, or `None`.
    pub fn dump_summary(&self, minor: u32) -> Option<LockspaceSummary> {
        let ls = self.space(minor)?;
        Some(LockspaceSummary {
            name: ls.name,
            minor,
            create_count: ls.create_count,
            openers: ls.openers,
            resources: ls.res.len() - ls.free_res.len(),
            locks: ls.nobjects,
        })
    }

    /// The next item of an incremental dump of lockspace `minor` from
    /// `cur` (start with [`DumpCursor::default`]), advancing it; `None`
    /// at the end, or when the lockspace is gone. Each call costs O(1),
    /// or at most [`DUMP_SCAN_STEPS`] steps of a walk of the orphan list
    /// for a resource that has detached orphans ([`DumpItem::Busy`]: no
    /// item yet, call again), so a server can dump a lockspace of any
    /// size a little at a time between other requests.
    ///
    /// Not a snapshot: resources come in slab order, each followed by its
    /// grant, convert and wait queues and its detached orphans. Changes
    /// made between two calls may be seen or not; a resource freed and
    /// reused meanwhile is listed from its start; a lock that moved or
    /// went away ends the walk of the queue it was on (the rest of that
    /// queue is skipped), and a lock that moved behind the cursor may be
    /// listed twice.
    pub fn dump_next(&self, minor: u32, cur: &mut DumpCursor) -> Option<DumpItem> {
        let ls = self.space(minor)?;
        loop {
            let r = cur.res;
            let res = ls.res.get(r as usize)?;
            if res.nlocks == 0 || (cur.stage > 0 && *res.name != *cur.name.as_bytes()) {
                if res.nlocks == 0 {
                    cur.next_resource();
                } else {
                    // Freed and reused since the last call: start over.
                    cur.stage = 0;
                    cur.next = NIL;
                }
                continue;
            }
            let queue_status = [space::ST_GRANTED, space::ST_CONVERT, space::ST_WAITING];
            match cur.stage {
                0 => {
                    let name = Name::new(&res.name).expect("resource names fit");
                    cur.name = name;
                    cur.stage = 1;
                    cur.next = NIL;
                    return Some(DumpItem::Resource {
                        name,
                        lvb: res.lvb.as_deref().copied(),
                        lvb_invalid: res.lvb_invalid,
                    });
                }
                s @ 1..=3 => {
                    let q = usize::from(s - 1);
                    let i = if cur.next == NIL {
                        res.q[q].head
                    } else {
                        let l = ls.locks.get(cur.next as usize);
                        match l {
                            Some(l) if l.in_use() && l.res == r && l.status == queue_status[q] => {
                                cur.next
                            }
                            _ => NIL,
                        }
                    };
                    if i == NIL {
                        cur.stage += 1;
                        cur.next = NIL;
                        continue;
                    }
                    let next = ls.l(i).q_next;
                    if next == NIL {
                        cur.stage += 1;
                    }
                    cur.next = next;
                    return Some(DumpItem::Lock {
                        queue: [
                            DumpQueue::Granted,
                            DumpQueue::Converting,
                            DumpQueue::Waiting,
                        ][q],
                        lock: Self::lock_dump(ls, i),
                    });
                }
                4 => {
                    // Detached orphans: only when some lock of the
                    // resource is on none of its queues.
                    let queued: u32 = match res.agg.as_deref() {
                        Some(a) => a.g.iter().chain(&a.c).chain(&a.w).sum(),
                        None => res
                            .q
                            .iter()
                            .map(|q| {
                                let (mut n, mut i) = (0, q.head);
                                while i != NIL {
                                    n += 1;
                                    i = ls.l(i).q_next;
                                }
                                n
                            })
                            .sum(),
                    };
                    let mut i = if res.nlocks <= queued {
                        NIL
                    } else if cur.next == NIL {
                        ls.orphans.head
                    } else {
                        match ls.locks.get(cur.next as usize) {
                            Some(l) if l.in_use() && l.bits & space::B_ORPHAN != 0 => cur.next,
                            _ => NIL,
                        }
                    };
                    let mut steps = 0;
                    while i != NIL {
                        if steps == DUMP_SCAN_STEPS {
                            // Resume here on the next call.
                            cur.next = i;
                            return Some(DumpItem::Busy);
                        }
                        steps += 1;
                        let l = ls.l(i);
                        if l.res == r && l.status == space::ST_NONE {
                            cur.next = l.o_next;
                            if cur.next == NIL {
                                cur.next_resource();
                            }
                            return Some(DumpItem::Lock {
                                queue: DumpQueue::Detached,
                                lock: Self::lock_dump(ls, i),
                            });
                        }
                        i = l.o_next;
                    }
                    cur.next_resource();
                }
                _ => cur.next_resource(),
            }
        }
    }

    fn lock_dump(ls: &Lockspace, i: u32) -> LockDump {
        let l = ls.l(i);
        let owner = if l.bits & space::B_DEAD != 0 {
            LockOwner::Dead
        } else if l.owner == NIL {
            LockOwner::Orphan
        } else {
            LockOwner::Owner(ls.owners[l.owner as usize].id)
        };
        let mode = |m: i8| (m >= 0).then(|| Mode::ALL[m as usize]);
        LockDump {
            id: i + 1,
            granted: mode(l.gr),
            requested: mode(l.rq),
            owner,
            pid: l.ownpid,
            flags: l.exflags,
            xid: l.ua.xid,
            seconds: ls.now.saturating_sub(l.since),
        }
    }
}

/// The callback of [`Engine::long_waits`]: lockspace name, resource
/// name, the request, its blockers.
pub type LongWaitFn<'a> = dyn FnMut(&Name, &Name, &LockDump, &[LockDump]) + 'a;

/// Orphan-list entries one [`Engine::dump_next`] call examines at most
/// while looking for a resource's detached orphans.
pub const DUMP_SCAN_STEPS: usize = 256;

/// A position in an incremental dump ([`Engine::dump_next`]).
#[derive(Clone, Copy, Debug)]
pub struct DumpCursor {
    /// The resource slot.
    res: u32,
    /// 0: its line; 1-3: the grant, convert, wait queue; 4: detached.
    stage: u8,
    /// The next lock of the stage (NIL: the stage's first).
    next: u32,
    /// The name of the resource being listed (to notice its reuse).
    name: Name,
}

impl Default for DumpCursor {
    fn default() -> DumpCursor {
        DumpCursor {
            res: 0,
            stage: 0,
            next: NIL,
            name: Name::new(b"").expect("the empty name"),
        }
    }
}

impl DumpCursor {
    fn next_resource(&mut self) {
        self.res += 1;
        self.stage = 0;
        self.next = NIL;
    }
}

/// The head of a lockspace's dump ([`Engine::dump_summary`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LockspaceSummary {
    /// The lockspace name.
    pub name: Name,
    /// The lockspace's minor.
    pub minor: u32,
    /// How many times it was created without being removed.
    pub create_count: u32,
    /// The number of open owners.
    pub openers: usize,
    /// The number of resources.
    pub resources: usize,
    /// The number of lock objects (orphans included).
    pub locks: usize,
}

/// Which list of its resource a dumped lock is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DumpQueue {
    /// The grant queue.
    Granted,
    /// The convert queue.
    Converting,
    /// The wait queue.
    Waiting,
    /// No queue: a detached orphan.
    Detached,
}

impl DumpQueue {
    /// The word the dump text uses.
    pub fn name(self) -> &'static str {
        match self {
            DumpQueue::Granted => "granted",
            DumpQueue::Converting => "converting",
            DumpQueue::Waiting => "waiting",
            DumpQueue::Detached => "detached",
        }
    }
}

/// One item of an incremental dump ([`Engine::dump_next`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DumpItem {
    /// A resource; its locks follow.
    Resource {
        /// The resource name.
        name: Name,
        /// Its LVB, if any lock on it has used one.
        lvb: Option<Lvb>,
        /// Whether the LVB is marked invalid.
        lvb_invalid: bool,
    },
    /// A lock of the resource listed last.
    Lock {
        /// Its queue.
        queue: DumpQueue,
        /// The lock.
        lock: LockDump,
    },
    /// Nothing yet: the call used up its work (a long orphan list); the
    /// next call goes on.
    Busy,
}

/// A snapshot of one lockspace ([`Engine::dump`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LockspaceDump {
    /// The lockspace name.
    pub name: Name,
    /// The lockspace's minor.
    pub minor: u32,
    /// How many times it was created without being removed.
    pub create_count: u32,
    /// The number of open owners.
    pub openers: usize,
    /// The number of lock objects (orphans included).
    pub locks: usize,
    /// Its resources, in no particular order.
    pub resources: Vec<ResourceDump>,
}

/// One resource of a [`LockspaceDump`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResourceDump {
    /// The resource name (as given by the request that created it).
    pub name: Name,
    /// The resource's LVB, if any lock on it has used one.
    pub lvb: Option<Lvb>,
    /// Whether the LVB is marked invalid (VALNOTVALID).
    pub lvb_invalid: bool,
    /// The granted queue, in order.
    pub granted: Vec<LockDump>,
    /// The convert queue, in order.
    pub converting: Vec<LockDump>,
    /// The wait queue, in order.
    pub waiting: Vec<LockDump>,
    /// Orphans on no queue: PERSISTENT requests that were still waiting
    /// when their owner closed (only a purge removes them).
    pub detached: Vec<LockDump>,
}

/// Who owns a lock in a [`ResourceDump`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockOwner {
    /// An open owner.
    Owner(OwnerId),
    /// An orphan: its owner closed, it was PERSISTENT.
    Orphan,
    /// A lock whose owner closed or purged it but which could not be
    /// force-unlocked (its own flags held FORCEUNLOCK, so the kernel's
    /// force-unlock fails): it stays queued until unlocked by id.
    Dead,
}

/// One lock of a [`ResourceDump`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LockDump {
    /// The lock id.
    pub id: u32,
    /// The granted mode, `None` while a new request waits.
    pub granted: Option<Mode>,
    /// The requested mode of a pending request or conversion (`None`
    /// when nothing is pending; a NOQUEUE conversion that failed leaves
    /// its mode here, as in the kernel).
    pub requested: Option<Mode>,
    /// The owner.
    pub owner: LockOwner,
    /// The owner pid (the tid of the request that created it).
    pub pid: u32,
    /// The flags of the lock's latest request, with the flags of later
    /// unlocks and cancels added.
    pub flags: LockFlags,
    /// The transaction id of its latest request.
    pub xid: u64,
    /// Seconds since the lock entered its current queue, by the engine
    /// clock ([`Engine::set_clock`]).
    pub seconds: u32,
}

impl LockDump {
    /// The lock in the dump model's terms, in queue state `state`, as
    /// [`dlm_core::dump::blocked_by`] reads it: the modes, the pid and the
    /// flags (no age, command or blockers).
    pub fn model(&self, state: dlm_core::dump::LockState) -> dlm_core::dump::LockInfo {
        dlm_core::dump::LockInfo {
            lkid: self.id,
            pid: self.pid,
            command: None,
            state,
            grmode: self.granted,
            rqmode: self.requested,
            seconds: None,
            nodeid: None,
            flags: self.flags.iter_names().map(|(n, _)| n.to_owned()).collect(),
            blocked_by: Vec::new(),
            owner: None,
            xid: None,
        }
    }
}
