//! The data of one lockspace: the lock and resource slabs with their
//! intrusive queues and lists, the lowest-free lock-id allocator, the
//! resource name table, the openers and their callback queues.
//!
//! Everything is indexed by `u32`: a lock's index is its id minus one
//! (ids are lowest-free from 1, so the lock slab doubles as the id
//! table), resources live in a slab with a free list, and every queue or
//! list is a doubly linked list threaded through the locks. The lock
//! semantics themselves live in [`crate::ops`].

use dlm_core::{LockFlags, LockResult, Lvb, Name};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use crate::OwnerId;

/// "No index": the end of a list, an unset link, a free slot.
pub(crate) const NIL: u32 = u32::MAX;

/// Modes as the kernel numbers them, with IV (-1) for "none".
pub(crate) const IV: i8 = -1;
pub(crate) const NL: i8 = 0;
pub(crate) const CW: i8 = 2;
pub(crate) const PR: i8 = 3;
pub(crate) const PW: i8 = 4;
pub(crate) const EX: i8 = 5;

/// Lock status (`lkb_status`): on no queue.
pub(crate) const ST_NONE: u8 = 0;
/// On the wait queue (`DLM_LKSTS_WAITING`).
pub(crate) const ST_WAITING: u8 = 1;
/// On the grant queue (`DLM_LKSTS_GRANTED`).
pub(crate) const ST_GRANTED: u8 = 2;
/// On the convert queue (`DLM_LKSTS_CONVERT`).
pub(crate) const ST_CONVERT: u8 = 3;

/// Queue numbers within [`Resource::q`].
pub(crate) const Q_GRANT: usize = 0;
pub(crate) const Q_CONVERT: usize = 1;
pub(crate) const Q_WAIT: usize = 2;

/// Lock bits: the most recent callback queued was a bast.
pub(crate) const B_LAST_BAST: u8 = 1;
/// The lock is an orphan (its PERSISTENT owner closed).
pub(crate) const B_ORPHAN: u8 = 2;
/// The lock is dead: its owner closed or purged it; no callbacks.
pub(crate) const B_DEAD: u8 = 4;
/// A deadlock-cancel is pending: the next ECANCEL reports EDEADLK.
pub(crate) const B_DLCANCEL: u8 = 8;
/// The lock's LVB pointer is set (`lkb_lvbptr`, set by a successful lock
/// or convert once the lock has a buffer).
pub(crate) const B_LVBPTR: u8 = 16;
/// The lock is on the NOORDER waiters list of its resource's aggregates.
pub(crate) const B_NORD: u8 = 32;
/// The lock is on an owner's lock list or on the orphan list.
pub(crate) const B_LISTED: u8 = 64;
/// The orphan is on its resource's orphan list
/// ([`Lockspace::res_orphans`], threaded through the `n_` links, which
/// only NOORDER waiters use otherwise and an orphan never waits).
pub(crate) const B_OIDX: u8 = 128;

/// `COMPAT[a + 1][b + 1]`: the kernel's compatibility matrix, IV
/// included (IV is compatible with everything).
const COMPAT: [[bool; 7]; 7] = {
    const T: bool = true;
    const F: bool = false;
    [
        [T, T, T, T, T, T, T],
        [T, T, T, T, T, T, T],
        [T, T, T, T, T, T, F],
        [T, T, T, T, F, F, F],
        [T, T, T, F, T, F, F],
        [T, T, T, F, F, F, F],
        [T, T, F, F, F, F, F],
    ]
};

/// Whether modes `a` and `b` (IV allowed) are compatible.
pub(crate) fn compat(a: i8, b: i8) -> bool {
    COMPAT[(a + 1) as usize][(b + 1) as usize]
}

/// `LVB_OPS[gr + 1][rq + 1]`: the kernel's `dlm_lvb_operations`:
/// 1 read, 0 write, -1 nothing (docs/semantics.md C.9.1).
pub(crate) const LVB_OPS: [[i8; 7]; 7] = [
    [-1, 1, 1, 1, 1, 1, 1],
    [-1, 1, 1, 1, 1, 1, 1],
    [-1, -1, 1, 1, 1, 1, 1],
    [-1, -1, -1, 1, 1, 1, 1],
    [-1, -1, -1, -1, 1, 1, 1],
    [-1, 0, 0, 0, 0, 0, 1],
    [-1, 0, 0, 0, 0, 0, 0],
];

/// The user pointers and transaction id of a lock (the kernel's
/// `dlm_user_args`), handed back unchanged in callbacks.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ua {
    pub castparam: u64,
    pub castaddr: u64,
    pub bastparam: u64,
    pub bastaddr: u64,
    pub user_lksb: u64,
    pub xid: u64,
}

impl Ua {
    /// The user pointers and transaction id a request carries.
    pub fn of(p: &dlm_core::LockParams) -> Ua {
        Ua {
            castparam: p.castparam,
            castaddr: p.castaddr,
            bastparam: p.bastparam,
            bastaddr: p.bastaddr,
            user_lksb: p.lksb,
            xid: p.xid,
        }
    }
}

/// Which links of a lock a list uses.
#[derive(Clone, Copy)]
pub(crate) enum Link {
    /// A resource queue (grant, convert or wait).
    Q,
    /// An owner's lock list or the lockspace's orphan list.
    O,
    /// The NOORDER waiters of a resource, or the orphans of a resource.
    N,
}

/// A lock object (the kernel's lkb). A free slot has `res == NIL`.
pub(crate) struct Lock {
    pub ua: Ua,
    /// The lock's LVB buffer, allocated on the first VALBLK.
    pub lvb: Option<Box<Lvb>>,
    pub res: u32,
    /// The owner slot, or NIL for an orphan or a dead lock.
    pub owner: u32,
    pub ownpid: u32,
    pub exflags: LockFlags,
    pub q_prev: u32,
    pub q_next: u32,
    pub o_prev: u32,
    pub o_next: u32,
    pub n_prev: u32,
    pub n_next: u32,
    pub gr: i8,
    pub rq: i8,
    pub status: u8,
    pub highbast: i8,
    /// `DLM_SBF_*` bits.
    pub sbflags: u8,
    /// The mode of the most recent cast queued (IV before any).
    pub last_cast: i8,
    /// The mode of the most recent callback queued (IV before any).
    pub last_cb: i8,
    /// `B_*` bits.
    pub bits: u8,
    /// The account of the owner that created the lock (kept when it
    /// becomes an orphan or is adopted): see [`Engine::locks_of`](crate::Engine::locks_of).
    pub acct: u32,
    /// The engine clock ([`Lockspace::now`]) when the lock last entered
    /// a queue: its age in its current state.
    pub since: u32,
}

impl Lock {
    /// An unused slot.
    pub const FREE: Lock = Lock {
        ua: Ua {
            castparam: 0,
            castaddr: 0,
            bastparam: 0,
            bastaddr: 0,
            user_lksb: 0,
            xid: 0,
        },
        lvb: None,
        res: NIL,
        owner: NIL,
        ownpid: 0,
        exflags: LockFlags::empty(),
        q_prev: NIL,
        q_next: NIL,
        o_prev: NIL,
        o_next: NIL,
        n_prev: NIL,
        n_next: NIL,
        gr: IV,
        rq: IV,
        status: ST_NONE,
        highbast: 0,
        sbflags: 0,
        last_cast: IV,
        last_cb: IV,
        bits: 0,
        acct: 0,
        since: 0,
    };

    fn prev(&self, k: Link) -> u32 {
        match k {
            Link::Q => self.q_prev,
            Link::O => self.o_prev,
            Link::N => self.n_prev,
        }
    }

    fn next(&self, k: Link) -> u32 {
        match k {
            Link::Q => self.q_next,
            Link::O => self.o_next,
            Link::N => self.n_next,
        }
    }

    fn set_prev(&mut self, k: Link, v: u32) {
        match k {
            Link::Q => self.q_prev = v,
            Link::O => self.o_prev = v,
            Link::N => self.n_prev = v,
        }
    }

    fn set_next(&mut self, k: Link, v: u32) {
        match k {
            Link::Q => self.q_next = v,
            Link::O => self.o_next = v,
            Link::N => self.n_next = v,
        }
    }

    /// Whether the slot holds a lock.
    pub fn in_use(&self) -> bool {
        self.res != NIL
    }
}

/// A doubly linked list threaded through the locks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct List {
    pub head: u32,
    pub tail: u32,
}

impl List {
    pub const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    pub fn is_empty(&self) -> bool {
        self.head == NIL
    }

    pub fn push_back(&mut self, locks: &mut [Lock], k: Link, i: u32) {
        let tail = self.tail;
        locks[i as usize].set_prev(k, tail);
        locks[i as usize].set_next(k, NIL);
        if tail == NIL {
            self.head = i;
        } else {
            locks[tail as usize].set_next(k, i);
        }
        self.tail = i;
    }

    pub fn push_front(&mut self, locks: &mut [Lock], k: Link, i: u32) {
        let head = self.head;
        locks[i as usize].set_prev(k, NIL);
        locks[i as usize].set_next(k, head);
        if head == NIL {
            self.tail = i;
        } else {
            locks[head as usize].set_prev(k, i);
        }
        self.head = i;
    }

    /// Inserts `i` just before `at`, a member of the list.
    pub fn insert_before(&mut self, locks: &mut [Lock], k: Link, at: u32, i: u32) {
        let prev = locks[at as usize].prev(k);
        locks[i as usize].set_prev(k, prev);
        locks[i as usize].set_next(k, at);
        locks[at as usize].set_prev(k, i);
        if prev == NIL {
            self.head = i;
        } else {
            locks[prev as usize].set_next(k, i);
        }
    }

    pub fn unlink(&mut self, locks: &mut [Lock], k: Link, i: u32) {
        let (p, n) = (locks[i as usize].prev(k), locks[i as usize].next(k));
        if p == NIL {
            self.head = n;
        } else {
            locks[p as usize].set_next(k, n);
        }
        if n == NIL {
            self.tail = p;
        } else {
            locks[n as usize].set_prev(k, p);
        }
        locks[i as usize].set_prev(k, NIL);
        locks[i as usize].set_next(k, NIL);
    }
}

/// Per-resource aggregates, kept only for resources with many locks so
/// that the grant predicate, the pending grant pass and the bast scans
/// cost O(1) instead of a queue walk. They never change a result: every
/// query has a literal queue-walking twin used when they are absent.
#[derive(Default)]
pub(crate) struct Agg {
    /// Grant queue: number of locks per granted mode.
    pub g: [u32; 6],
    /// Convert queue: number of locks per granted mode.
    pub c: [u32; 6],
    /// Convert queue: number of locks per (granted mode, requested mode).
    pub cm: [[u32; 6]; 6],
    /// Convert queue: number of locks with NOORDER or EXPEDITE (the
    /// only ones the pending pass can grant away from the head).
    pub cnord: u32,
    /// Wait queue: number of locks per requested mode.
    pub w: [u32; 6],
    /// Grant queue: number of locks per (granted mode, highbast).
    pub ghb: [[u32; 6]; 6],
    /// The NOORDER locks of the wait queue, in wait-queue order.
    pub nord: List,
}

/// Whether a conversion with these flags can be granted away from the
/// head of the convert queue.
pub(crate) fn cvt_unordered(f: LockFlags) -> bool {
    f.intersects(LockFlags::NOORDER.union(LockFlags::EXPEDITE))
}

impl Agg {
    /// Convert queue: number of locks per requested mode.
    pub fn crq(&self) -> [u32; 6] {
        let mut n = [0; 6];
        for row in &self.cm {
            for (q, c) in row.iter().enumerate() {
                n[q] += c;
            }
        }
        n
    }

    /// Whether two different locks `i`, `j` of the convert queue have
    /// `gr(i)` incompatible with `rq(j)`: the necessary condition of
    /// every conversion deadlock. Without such a pair no lock of the
    /// queue is deadlocked, wherever it stands.
    pub fn convert_pairs(&self) -> bool {
        let crq = self.crq();
        (0..6).any(|g| {
            (0..6).any(|q| {
                !compat(g as i8, q as i8)
                    && u64::from(self.c[g]) * u64::from(crq[q]) > u64::from(self.cm[g][q])
            })
        })
    }

    fn convert_add(&mut self, l: &Lock, n: i32) {
        let (g, q) = (l.gr as usize, l.rq as usize);
        self.c[g] = self.c[g].wrapping_add_signed(n);
        self.cm[g][q] = self.cm[g][q].wrapping_add_signed(n);
        if cvt_unordered(l.exflags) {
            self.cnord = self.cnord.wrapping_add_signed(n);
        }
    }
}

impl Default for List {
    fn default() -> List {
        List::EMPTY
    }
}

/// A resource (the kernel's rsb).
pub(crate) struct Resource {
    /// The name as given by the request that created the resource.
    pub name: Box<[u8]>,
    /// Grant, convert and wait queues.
    pub q: [List; 3],
    /// Lock objects attached to this resource.
    pub nlocks: u32,
    /// The resource LVB, absent until first written.
    pub lvb: Option<Box<Lvb>>,
    pub agg: Option<Box<Agg>>,
    /// The VALNOTVALID mark.
    pub lvb_invalid: bool,
}

impl Resource {
    fn free() -> Resource {
        Resource {
            name: Box::default(),
            q: [List::EMPTY; 3],
            nlocks: 0,
            lvb: None,
            agg: None,
            lvb_invalid: false,
        }
    }
}

/// The resource name without trailing zero bytes: two names are the same
/// resource when these are equal (zero-padded comparison, kernel 6.12).
pub(crate) fn name_key(name: &[u8]) -> &[u8] {
    let end = name.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &name[..end]
}

/// An open-addressing hash table (linear probing, backward-shift
/// deletion) from resource names to resource indices. A slot holds the
/// name's 32-bit hash above the resource index, so probes rarely touch
/// the resources themselves.
pub(crate) struct NameTable {
    slots: Vec<u64>,
    len: usize,
    hasher: RandomState,
}

const EMPTY_SLOT: u64 = u64::MAX;

impl NameTable {
    pub fn new() -> NameTable {
        NameTable {
            slots: Vec::new(),
            len: 0,
            hasher: RandomState::new(),
        }
    }

    pub fn hash(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The resource whose name has this key.
    pub fn find(&self, res: &[Resource], key: &[u8], h: u32) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut pos = h as usize & mask;
        loop {
            let s = self.slots[pos];
            if s == EMPTY_SLOT {
                return None;
            }
            let idx = s as u32;
            if (s >> 32) as u32 == h && name_key(&res[idx as usize].name) == key {
                return Some(idx);
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Adds resource `idx` with hash `h` (not present yet).
    pub fn insert(&mut self, h: u32, idx: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.place((u64::from(h) << 32) | u64::from(idx));
        self.len += 1;
    }

    fn place(&mut self, s: u64) {
        let mask = self.mask();
        let mut pos = (s >> 32) as usize & mask;
        while self.slots[pos] != EMPTY_SLOT {
            pos = (pos + 1) & mask;
        }
        self.slots[pos] = s;
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; cap]);
        for s in old.into_iter().filter(|&s| s != EMPTY_SLOT) {
            self.place(s);
        }
    }

    /// Removes resource `idx` with hash `h` (present).
    pub fn remove(&mut self, h: u32, idx: u32) {
        let mask = self.mask();
        let want = (u64::from(h) << 32) | u64::from(idx);
        let mut i = h as usize & mask;
        while self.slots[i] != want {
            i = (i + 1) & mask;
        }
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY_SLOT {
                break;
            }
            let k = (s >> 32) as usize & mask;
            // Entry j stays if its home k lies cyclically in (i, j].
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                self.slots[i] = s;
                i = j;
            }
        }
        self.slots[i] = EMPTY_SLOT;
        self.len -= 1;
    }

    /// Bytes allocated by the table.
    pub fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * 8
    }
}

/// One opener of the lockspace.
pub(crate) struct OwnerSlot {
    pub id: OwnerId,
    /// The account its new locks are charged to.
    pub acct: u32,
    pub open: bool,
    /// Its locks, in creation / adoption order (the kernel's proc list).
    pub locks: List,
    /// Its callback FIFO.
    pub cbs: VecDeque<LockResult>,
    /// Listed in [`Lockspace::notified`] since the last
    /// [`Engine::take_notified`](crate::Engine::take_notified).
    pub notified: bool,
}

/// One lockspace.
pub(crate) struct Lockspace {
    pub name: Name,
    pub create_count: u32,
    pub locks: Vec<Lock>,
    /// Freed lock indices below `locks.len()`; the lowest is reused first.
    pub free_ids: BinaryHeap<Reverse<u32>>,
    /// Live lock objects.
    pub nobjects: usize,
    pub res: Vec<Resource>,
    pub free_res: Vec<u32>,
    pub table: NameTable,
    /// Orphans, in the order they were orphaned.
    pub orphans: List,
    /// The orphans of each resource that has any, in the order they were
    /// orphaned (a sublist of [`Lockspace::orphans`]), so that adoption
    /// finds its candidates without walking every orphan.
    pub res_orphans: HashMap<u32, List>,
    pub owners: Vec<OwnerSlot>,
    pub free_owners: Vec<u32>,
    /// Owner slots that queued a callback since the last
    /// [`Engine::take_notified`](crate::Engine::take_notified), each once.
    pub notified: Vec<u32>,
    /// Listed in the engine's lockspaces with notified owners.
    pub noted: bool,
    pub openers: usize,
    /// Resources get aggregates once they hold more lock objects than this.
    pub agg_threshold: u32,
    /// Lock objects created (`true`) and freed (`false`) since the engine
    /// last settled its per-account counts, with their account.
    pub acct_log: Vec<(u32, bool)>,
    /// Close and purge release a lock whose own flags hold FORCEUNLOCK
    /// (see [`Engine::set_release_forceunlock`](crate::Engine::set_release_forceunlock)).
    pub release_forced: bool,
    /// The engine clock, in seconds, set by its user
    /// ([`Engine::set_clock`](crate::Engine::set_clock)).
    pub now: u32,
    /// What it did and holds, for the engine's totals.
    pub tally: crate::stats::Tally,
}

impl Lockspace {
    pub fn new(name: Name, agg_threshold: u32) -> Lockspace {
        Lockspace {
            name,
            create_count: 1,
            locks: Vec::new(),
            free_ids: BinaryHeap::new(),
            nobjects: 0,
            res: Vec::new(),
            free_res: Vec::new(),
            table: NameTable::new(),
            orphans: List::EMPTY,
            res_orphans: HashMap::new(),
            owners: Vec::new(),
            free_owners: Vec::new(),
            notified: Vec::new(),
            noted: false,
            openers: 0,
            agg_threshold,
            acct_log: Vec::new(),
            release_forced: false,
            now: 0,
            tally: Default::default(),
        }
    }

    pub fn l(&self, i: u32) -> &Lock {
        &self.locks[i as usize]
    }

    pub fn lm(&mut self, i: u32) -> &mut Lock {
        &mut self.locks[i as usize]
    }

    // ---- ids and objects -------------------------------------------------

    /// Takes the lowest free lock index (id - 1).
    pub fn alloc_lock(&mut self, acct: u32) -> u32 {
        self.nobjects += 1;
        self.acct_log.push((acct, true));
        match self.free_ids.pop() {
            Some(Reverse(i)) => i,
            None => {
                self.locks.push(Lock::FREE);
                (self.locks.len() - 1) as u32
            }
        }
    }

    /// The lock with id `lkid`.
    pub fn find(&self, lkid: u32) -> Option<u32> {
        let i = lkid.checked_sub(1)?;
        self.locks.get(i as usize).filter(|l| l.in_use()).map(|_| i)
    }

    /// Frees a lock object that is on no queue: unlinks it from its owner
    /// or orphan list, drops its resource reference and frees its id.
    pub fn free_lock(&mut self, i: u32) {
        debug_assert_eq!(self.l(i).status, ST_NONE);
        if self.l(i).bits & B_LISTED != 0 {
            self.unlist(i);
        }
        let r = self.l(i).res;
        let acct = self.l(i).acct;
        self.acct_log.push((acct, false));
        self.locks[i as usize] = Lock::FREE;
        self.free_ids.push(Reverse(i));
        self.nobjects -= 1;
        let res = &mut self.res[r as usize];
        res.nlocks -= 1;
        if res.nlocks == 0 {
            self.free_res(r);
        }
    }

    /// Removes lock `i` from its owner's list or the orphan list.
    pub fn unlist(&mut self, i: u32) {
        let owner = self.l(i).owner;
        if owner == NIL {
            self.orphans.unlink(&mut self.locks, Link::O, i);
            if self.l(i).bits & B_OIDX != 0 {
                let r = self.l(i).res;
                let list = self.res_orphans.get_mut(&r).expect("resource orphan list");
                list.unlink(&mut self.locks, Link::N, i);
                if list.is_empty() {
                    self.res_orphans.remove(&r);
                }
                self.lm(i).bits &= !B_OIDX;
            }
        } else {
            self.owners[owner as usize]
                .locks
                .unlink(&mut self.locks, Link::O, i);
        }
        self.lm(i).bits &= !B_LISTED;
    }

    /// Appends lock `i` to owner `owner`'s list.
    pub fn list_owner(&mut self, owner: u32, i: u32) {
        self.lm(i).owner = owner;
        self.owners[owner as usize]
            .locks
            .push_back(&mut self.locks, Link::O, i);
        self.lm(i).bits |= B_LISTED;
    }

    /// Appends lock `i` to the orphan list.
    pub fn list_orphan(&mut self, i: u32) {
        self.lm(i).owner = NIL;
        self.orphans.push_back(&mut self.locks, Link::O, i);
        self.lm(i).bits |= B_LISTED;
    }

    /// Appends orphan `i` (on the orphan list, off the wait queue) to its
    /// resource's orphan list.
    pub fn index_orphan(&mut self, i: u32) {
        let l = self.l(i);
        debug_assert!(l.owner == NIL && l.bits & B_LISTED != 0 && l.bits & B_NORD == 0);
        let r = l.res;
        let list = self.res_orphans.entry(r).or_default();
        list.push_back(&mut self.locks, Link::N, i);
        self.lm(i).bits |= B_OIDX;
    }

    /// Sets the flags of lock `i`, wherever it is.
    pub fn set_exflags(&mut self, i: u32, f: LockFlags) {
        let l = &self.locks[i as usize];
        if l.status == ST_CONVERT && cvt_unordered(l.exflags) != cvt_unordered(f) {
            if let Some(a) = self.res[l.res as usize].agg.as_deref_mut() {
                if cvt_unordered(f) {
                    a.cnord += 1;
                } else {
                    a.cnord -= 1;
                }
            }
        }
        self.lm(i).exflags = f;
    }

    // ---- resources -------------------------------------------------------

    /// Finds or creates the resource named `name` and attaches lock `i`
    /// to it.
    pub fn attach(&mut self, i: u32, name: &[u8]) -> u32 {
        let key = name_key(name);
        let h = self.table.hash(key);
        let r = match self.table.find(&self.res, key, h) {
            Some(r) => r,
            None => {
                let r = match self.free_res.pop() {
                    Some(r) => r,
                    None => {
                        self.res.push(Resource::free());
                        (self.res.len() - 1) as u32
                    }
                };
                self.res[r as usize].name = name.into();
                self.table.insert(h, r);
                r
            }
        };
        self.lm(i).res = r;
        let res = &mut self.res[r as usize];
        res.nlocks += 1;
        if res.agg.is_none() && res.nlocks > self.agg_threshold {
            self.build_agg(r);
        }
        r
    }

    fn free_res(&mut self, r: u32) {
        let key = name_key(&self.res[r as usize].name);
        let h = self.table.hash(key);
        self.table.remove(h, r);
        self.res[r as usize] = Resource::free();
        self.free_res.push(r);
    }

    fn build_agg(&mut self, r: u32) {
        let mut a = Box::<Agg>::default();
        let q = self.res[r as usize].q;
        let mut i = q[Q_GRANT].head;
        while i != NIL {
            let l = self.l(i);
            a.g[l.gr as usize] += 1;
            a.ghb[l.gr as usize][l.highbast as usize] += 1;
            i = l.q_next;
        }
        i = q[Q_CONVERT].head;
        while i != NIL {
            let l = self.l(i);
            a.convert_add(l, 1);
            i = l.q_next;
        }
        i = q[Q_WAIT].head;
        while i != NIL {
            let next = self.l(i).q_next;
            a.w[self.l(i).rq as usize] += 1;
            if self.l(i).exflags.contains(LockFlags::NOORDER) {
                a.nord.push_back(&mut self.locks, Link::N, i);
                self.lm(i).bits |= B_NORD;
            }
            i = next;
        }
        self.res[r as usize].agg = Some(a);
    }

    // ---- queues ----------------------------------------------------------

    /// Puts lock `i` (on no queue) on queue `status` of resource `r`: the
    /// wait and convert queues at the tail, or the head with `head`; the
    /// grant queue before the first lock whose requested mode is below
    /// the new lock's granted mode (the kernel's `lkb_add_ordered`).
    pub fn q_add(&mut self, r: u32, i: u32, status: u8, head: bool) {
        debug_assert_eq!(self.l(i).status, ST_NONE);
        let now = self.now;
        let lk = self.lm(i);
        lk.status = status;
        lk.since = now;
        let res = &mut self.res[r as usize];
        let locks = &mut self.locks;
        match status {
            ST_GRANTED => {
                let gr = locks[i as usize].gr;
                let q = &mut res.q[Q_GRANT];
                let mut at = q.head;
                while at != NIL && locks[at as usize].rq >= gr {
                    at = locks[at as usize].q_next;
                }
                if at == NIL {
                    q.push_back(locks, Link::Q, i);
                } else {
                    q.insert_before(locks, Link::Q, at, i);
                }
            }
            _ => {
                let q = &mut res.q[if status == ST_WAITING {
                    Q_WAIT
                } else {
                    Q_CONVERT
                }];
                if head {
                    q.push_front(locks, Link::Q, i);
                } else {
                    q.push_back(locks, Link::Q, i);
                }
            }
        }
        if let Some(a) = res.agg.as_deref_mut() {
            let l = &locks[i as usize];
            match status {
                ST_GRANTED => {
                    a.g[l.gr as usize] += 1;
                    a.ghb[l.gr as usize][l.highbast as usize] += 1;
                }
                ST_CONVERT => a.convert_add(l, 1),
                _ => {
                    debug_assert_eq!(l.bits & B_OIDX, 0, "an indexed orphan waits");
                    a.w[l.rq as usize] += 1;
                    if l.exflags.contains(LockFlags::NOORDER) {
                        if head {
                            a.nord.push_front(locks, Link::N, i);
                        } else {
                            a.nord.push_back(locks, Link::N, i);
                        }
                        locks[i as usize].bits |= B_NORD;
                    }
                }
            }
        }
    }

    /// Takes lock `i` off its queue.
    pub fn q_del(&mut self, r: u32, i: u32) {
        let status = self.l(i).status;
        let res = &mut self.res[r as usize];
        let locks = &mut self.locks;
        let qi = match status {
            ST_GRANTED => Q_GRANT,
            ST_CONVERT => Q_CONVERT,
            ST_WAITING => Q_WAIT,
            _ => return,
        };
        res.q[qi].unlink(locks, Link::Q, i);
        if let Some(a) = res.agg.as_deref_mut() {
            let l = &locks[i as usize];
            match status {
                ST_GRANTED => {
                    a.g[l.gr as usize] -= 1;
                    a.ghb[l.gr as usize][l.highbast as usize] -= 1;
                }
                ST_CONVERT => a.convert_add(l, -1),
                _ => {
                    a.w[l.rq as usize] -= 1;
                    if l.bits & B_NORD != 0 {
                        a.nord.unlink(locks, Link::N, i);
                        locks[i as usize].bits &= !B_NORD;
                    }
                }
            }
        }
        locks[i as usize].status = ST_NONE;
    }

    /// Sets the granted mode of lock `i`, wherever it is.
    pub fn set_gr(&mut self, i: u32, gr: i8) {
        let l = &self.locks[i as usize];
        let old = l.gr;
        let (status, hb) = (l.status, l.highbast);
        if let Some(a) = self.res[l.res as usize].agg.as_deref_mut() {
            match status {
                ST_GRANTED => {
                    a.g[old as usize] -= 1;
                    a.g[gr as usize] += 1;
                    a.ghb[old as usize][hb as usize] -= 1;
                    a.ghb[gr as usize][hb as usize] += 1;
                }
                ST_CONVERT => {
                    let rq = l.rq as usize;
                    a.c[old as usize] -= 1;
                    a.c[gr as usize] += 1;
                    a.cm[old as usize][rq] -= 1;
                    a.cm[gr as usize][rq] += 1;
                }
                _ => {}
            }
        }
        self.lm(i).gr = gr;
    }

    /// Sets the highbast of lock `i`, wherever it is.
    pub fn set_hb(&mut self, i: u32, hb: i8) {
        let l = &self.locks[i as usize];
        let (old, gr) = (l.highbast, l.gr);
        if l.status == ST_GRANTED {
            if let Some(a) = self.res[l.res as usize].agg.as_deref_mut() {
                a.ghb[gr as usize][old as usize] -= 1;
                a.ghb[gr as usize][hb as usize] += 1;
            }
        }
        self.lm(i).highbast = hb;
    }

    // ---- owners ----------------------------------------------------------

    pub fn add_owner(&mut self, id: OwnerId, acct: u32) -> u32 {
        let slot = OwnerSlot {
            id,
            acct,
            open: true,
            locks: List::EMPTY,
            cbs: VecDeque::new(),
            notified: false,
        };
        self.openers += 1;
        match self.free_owners.pop() {
            Some(s) => {
                self.owners[s as usize] = slot;
                s
            }
            None => {
                self.owners.push(slot);
                (self.owners.len() - 1) as u32
            }
        }
    }

    pub fn push_cb(&mut self, owner: u32, cb: LockResult) {
        let o = &mut self.owners[owner as usize];
        o.cbs.push_back(cb);
        if !o.notified {
            o.notified = true;
            self.notified.push(owner);
        }
    }

    pub fn pop_cb(&mut self, owner: u32) -> Option<LockResult> {
        let q = &mut self.owners[owner as usize].cbs;
        let cb = q.pop_front();
        if q.is_empty() && q.capacity() > 1024 {
            *q = VecDeque::new();
        }
        cb
    }

    /// Bytes held by this lockspace's slabs and tables (not counting
    /// per-lock LVB buffers, names and callback queues).
    pub fn footprint(&self) -> usize {
        self.locks.capacity() * std::mem::size_of::<Lock>()
            + self.res.capacity() * std::mem::size_of::<Resource>()
            + self.table.capacity_bytes()
    }
}
