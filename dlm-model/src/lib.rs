//! A reference model of the DLM lock engine: a literal, deliberately slow
//! transcription of docs/semantics.md Part C,
//! current-kernel (6.12) column, used to prove `dlm_engine::Engine`.
//!
//! Nothing here is optimised. Queues are `Vec`s of lock ids, every lookup
//! is a linear scan, and the pending-grant pass rescans its queues exactly
//! as C.7 (and the kernel's `grant_pending_locks`) does. Each rule carries
//! its spec section number so the transcription can be checked line by
//! line; where the spec is silent, the kernel function the rule comes from
//! (`fs/dlm/lock.c`, `user.c`, `ast.c`) is named instead.
//!
//! It is a crate of its own (not published) so that both the engine's
//! differential test (`dlm-engine/tests/differential.rs`) and the scenario
//! table of the `dlm-tests` crate (`tests/src/scenarios`), which runs every
//! Part D scenario on it, can use it.
//!
//! The crate root owns the public surface (the same methods as the engine's
//! API), lockspaces (A.8), openers (A.7) and the device-level routing of
//! a write (A.4, C.3.1). The lock rules themselves live in the `rules` module.

#![allow(dead_code, missing_docs)]

mod rules;

use dlm_core::{
    Errno, LockFlags, LockResult, LsFlags, Lvb, Mode, Name, RemoveFlags, Request, SbFlags,
};
use std::collections::VecDeque;

/// One opener of a lockspace in the model. Never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct OwnerId(u32);

/// The reference model: a set of lockspaces and their openers.
#[derive(Default)]
pub struct Model {
    lockspaces: Vec<Lockspace>,
    /// Indexed by `OwnerId.0`.
    owners: Vec<Owner>,
}

/// An opener (the kernel's `dlm_user_proc`).
struct Owner {
    minor: u32,
    open: bool,
    /// `proc->locks`, in list order (A.7 processes them in this order).
    locks: Vec<u32>,
    /// `proc->asts`: one FIFO of callback snapshots (C.8.3).
    asts: VecDeque<LockResult>,
}

/// A lockspace (C.1).
struct Lockspace {
    name: Name,
    minor: u32,
    /// A.8 creation count.
    count: u32,
    /// Every lock object, in no particular order (looked up by id).
    locks: Vec<Lock>,
    /// Every resource that some lock object references (C.1).
    resources: Vec<Resource>,
    /// `ls_orphans`, in list order (C.11).
    orphans: Vec<u32>,
    /// Source of resource identities (a resource that goes away and comes
    /// back is a new resource).
    next_rid: u64,
}

/// A resource (rsb, C.1).
struct Resource {
    rid: u64,
    /// The name it was created with. Lookup compares zero-padded names
    /// (C.1); adoption compares this exact name (C.11.3).
    name: Name,
    grant: Vec<u32>,
    convert: Vec<u32>,
    wait: Vec<u32>,
    /// The resource LVB, absent until first written (C.9).
    lvb: Option<Lvb>,
    /// `RSB_VALNOTVALID` (C.9.5).
    valnotvalid: bool,
}

/// Which queue a lock is on (`lkb_status`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sts {
    None,
    Waiting,
    Granted,
    Convert,
}

/// A lock object (lkb, C.1).
struct Lock {
    id: u32,
    rid: u64,
    /// Granted mode; `None` is IV.
    gr: Option<Mode>,
    /// Requested mode; `None` is IV.
    rq: Option<Mode>,
    status: Sts,
    /// Flags of the latest lock/convert, with unlock flags OR-ed in (C.1).
    exflags: LockFlags,
    sbflags: SbFlags,
    /// Highest mode basted since the last grant (C.8.1); 0 initially.
    highbast: i8,
    /// The device-side LVB buffer (`ua->lksb.sb_lvbptr`), allocated on the
    /// first VALBLK (A.5 read rule 2). Decides whether a cast carries an LVB.
    ua_lvb: Option<Lvb>,
    /// `lkb_lvbptr != NULL`: set from `ua_lvb` when a lock or convert passes
    /// validation (`validate_lock_args`). Decides the LVB operations of C.9.
    has_lvbptr: bool,
    owner: OwnerId,
    /// Thread id of the latest lock/convert/adopt (C.11.1).
    ownpid: u32,
    orphan: bool,
    dead: bool,
    /// End of life (C.10): the completion that ends it has been queued.
    eol: bool,
    /// `DLM_IFL_DEADLOCK_CANCEL` (C.6.4).
    deadlock_cancel: bool,
    castaddr: u64,
    castparam: u64,
    bastaddr: u64,
    bastparam: u64,
    user_lksb: u64,
    /// `lkb_last_cast_cb_mode` (C.8.2 rule 3, A.5 read rule 3); -1 is IV.
    last_cast_cb_mode: i8,
    /// `lkb_last_cb_mode` and whether that callback was a bast (C.8.2 rule 4).
    last_cb_mode: i8,
    last_cb_bast: bool,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    fn ls_index(&self, minor: u32) -> Option<usize> {
        self.lockspaces.iter().position(|l| l.minor == minor)
    }

    /// CREATE_LOCKSPACE (A.8).
    pub fn create_lockspace(&mut self, name: Name, flags: LsFlags) -> Result<u32, Errno> {
        // A.8: the name is 1-64 bytes (the device takes it as a C string,
        // so a NUL byte ends it: a name holding one is not the one given).
        if name.is_empty() || name.as_bytes().contains(&0) {
            return Err(Errno::EINVAL);
        }
        if let Some(ls) = self.lockspaces.iter_mut().find(|l| l.name == name) {
            // A.8: an existing lockspace: EEXIST with NEWEXCL, else count + 1.
            if flags.contains(LsFlags::NEWEXCL) {
                return Err(Errno::EEXIST);
            }
            ls.count += 1;
            return Ok(ls.minor);
        }
        // A.1: the minor is a small unique integer; take the lowest unused.
        let mut minor = 0;
        while self.ls_index(minor).is_some() {
            minor += 1;
        }
        self.lockspaces.push(Lockspace {
            name,
            minor,
            count: 1,
            locks: Vec::new(),
            resources: Vec::new(),
            orphans: Vec::new(),
            next_rid: 0,
        });
        Ok(minor)
    }

    /// REMOVE_LOCKSPACE (A.8, with EBUSY instead of blocking, as README's
    /// deliberate differences say).
    pub fn remove_lockspace(&mut self, minor: u32, flags: RemoveFlags) -> Result<(), Errno> {
        let Some(li) = self.ls_index(minor) else {
            return Err(Errno::ENOENT);
        };
        // A.8 step 1: busy if any lock object exists, orphans included.
        let busy = !flags.contains(RemoveFlags::FORCEFREE) && !self.lockspaces[li].locks.is_empty();
        let ls = &mut self.lockspaces[li];
        // A.8 step 2: count above 1: decrement only.
        if ls.count > 1 {
            ls.count -= 1;
            return Ok(());
        }
        // A.8 step 3.
        if busy {
            return Err(Errno::EBUSY);
        }
        // The kernel would block until every opener closes; the engine
        // answers EBUSY (README's deliberate differences).
        if self.owners.iter().any(|o| o.open && o.minor == minor) {
            return Err(Errno::EBUSY);
        }
        self.lockspaces.remove(li);
        Ok(())
    }

    /// The minor of the lockspace with this exact name.
    pub fn find_lockspace(&self, name: &Name) -> Option<u32> {
        self.lockspaces
            .iter()
            .find(|l| l.name == *name)
            .map(|l| l.minor)
    }

    /// Opens a lockspace device: a new owner (A.1). ENOENT for no such minor.
    pub fn open(&mut self, minor: u32) -> Result<OwnerId, Errno> {
        if self.ls_index(minor).is_none() {
            return Err(Errno::ENOENT);
        }
        let id = OwnerId(self.owners.len() as u32);
        self.owners.push(Owner {
            minor,
            open: true,
            locks: Vec::new(),
            asts: VecDeque::new(),
        });
        Ok(id)
    }

    fn open_owner(&self, owner: OwnerId) -> Option<usize> {
        let o = self.owners.get(owner.0 as usize)?;
        if !o.open {
            return None;
        }
        self.ls_index(o.minor)
    }

    /// Closes an owner (A.7, `dlm_clear_proc_locks`).
    pub fn close(&mut self, owner: OwnerId) {
        let Some(li) = self.open_owner(owner) else {
            return;
        };
        // A.7: the opener is marked closing first.
        self.owners[owner.0 as usize].open = false;
        let mut cx = rules::Ctx {
            ls: &mut self.lockspaces[li],
            owners: &mut self.owners,
        };
        cx.clear_proc_locks(owner);
        cx.collect();
    }

    /// One device write by `owner` (A.4).
    pub fn write(&mut self, owner: OwnerId, req: &Request, tid: u32) -> Result<u32, Errno> {
        // A.4 item 6: a closing (or unknown) opener gets EINVAL.
        let Some(li) = self.open_owner(owner) else {
            return Err(Errno::EINVAL);
        };
        let mut cx = rules::Ctx {
            ls: &mut self.lockspaces[li],
            owners: &mut self.owners,
        };
        let ret = match req {
            Request::Lock(p) => {
                // C.3.1: castaddr == 0 or lksb == 0 -> EINVAL, before anything.
                if p.castaddr == 0 || p.lksb == 0 {
                    Err(Errno::EINVAL)
                } else if p.flags.contains(LockFlags::CONVERT) {
                    cx.user_convert(p, tid)
                } else if p.flags.contains(LockFlags::ORPHAN) {
                    cx.user_adopt_orphan(owner, p, tid)
                } else {
                    cx.user_request(owner, p, tid)
                }
            }
            Request::Unlock(p) => {
                if p.flags.contains(LockFlags::CANCEL) {
                    cx.user_cancel(p)
                } else {
                    cx.user_unlock(p)
                }
            }
            Request::Deadlock { lkid, flags } => cx.user_deadlock(*lkid, *flags),
            // C.11.4; every nodeid is the local node (dlmd is one node).
            Request::Purge { nodeid: _, pid } => {
                cx.user_purge(owner, *pid, tid);
                Ok(0)
            }
            // A.4 item 7: CREATE/REMOVE on a lockspace device.
            Request::CreateLockspace { .. } | Request::RemoveLockspace { .. } => Err(Errno::EINVAL),
        };
        cx.collect();
        ret
    }

    /// Takes the oldest queued callback of `owner` (A.5, C.8.3).
    pub fn pop_callback(&mut self, owner: OwnerId) -> Option<LockResult> {
        self.open_owner(owner)?;
        self.owners[owner.0 as usize].asts.pop_front()
    }

    /// Number of queued callbacks of `owner` (A.6).
    pub fn pending_callbacks(&self, owner: OwnerId) -> usize {
        match self.open_owner(owner) {
            Some(_) => self.owners[owner.0 as usize].asts.len(),
            None => 0,
        }
    }

    // ---- Test support: read-only views of the model's state. ----

    /// Ids of the lock objects in lockspace `minor` that are not orphans,
    /// ascending.
    pub fn live_ids(&self, minor: u32) -> Vec<u32> {
        let Some(li) = self.ls_index(minor) else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = self.lockspaces[li]
            .locks
            .iter()
            .filter(|l| !l.orphan)
            .map(|l| l.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether lock `id` of lockspace `minor` is an orphan.
    pub fn is_orphan(&self, minor: u32, id: u32) -> bool {
        self.ls_index(minor)
            .and_then(|li| self.lockspaces[li].locks.iter().find(|l| l.id == id))
            .is_some_and(|l| l.orphan)
    }

    /// Checks the model's state invariants: no two granted modes on a
    /// resource are incompatible (the grant queue's locks and the granted
    /// mode of converting locks, C.1/C.2), and no queued request passes the
    /// grant predicate with `now = false` (C.7), except where the spec lets
    /// one wait for the next pending-grant pass.
    pub fn check_invariants(&self) -> Result<(), String> {
        for ls in &self.lockspaces {
            let cx = rules::CtxRef { ls };
            cx.check_invariants()?;
        }
        Ok(())
    }
}
