//! What happens to a lock when its owner goes: owner close, orphan
//! adoption and PURGE (docs/semantics.md A.7, C.11.3, C.11.4), as the
//! kernel does them (`dlm_user_adopt_orphan`, `unlock_proc_lock`, …),
//! on top of the unlock and cancel of `ops.rs`.

use dlm_core::{Errno, LockFlags as F, LockParams};

use crate::space::*;

impl Lockspace {
    /// `unlock_proc_lock`: force-unlock with IVVALBLK, for close and
    /// purge. A lock whose own flags already hold FORCEUNLOCK is refused
    /// (EINVAL, ignored by the kernel) and stays where it is, dead, unless
    /// the engine releases such locks (`release_forced`, dlmd's choice).
    fn unlock_proc_lock(&mut self, i: u32) {
        self.lm(i).bits |= B_DEAD;
        if self.release_forced {
            // dlmd's choice: no lock outlives its owner.
            self.lm(i).exflags.remove(F::FORCEUNLOCK);
        }
        if self
            .validate_unlock(i, F::FORCEUNLOCK | F::IVVALBLK)
            .is_ok()
        {
            self.do_unlock(i);
        } else {
            self.maybe_free(i);
        }
    }

    /// Orphan adoption (`dlm_user_adopt_orphan`, C.11.3).
    pub fn adopt(&mut self, owner: u32, p: &LockParams, tid: u32) -> Result<u32, Errno> {
        // The kernel walks the lockspace's orphan list for the first orphan
        // whose resource name is exactly this one; the orphans of a name
        // are those of the one resource with its key, in the same order.
        let name = p.name.as_bytes();
        let mut other_mode = false;
        let mut found = NIL;
        let key = name_key(name);
        let h = self.table.hash(key);
        let mut cur = match self.table.find(&self.res, key, h) {
            Some(r) if *self.res[r as usize].name == *name => {
                self.res_orphans.get(&r).map_or(NIL, |l| l.head)
            }
            _ => NIL,
        };
        while cur != NIL {
            let lk = self.l(cur);
            if i32::from(lk.gr) == i32::from(p.mode) {
                found = cur;
                break;
            }
            other_mode = true;
            cur = lk.n_next;
        }
        if found == NIL {
            return Err(if other_mode {
                Errno::EAGAIN
            } else {
                Errno::ENOENT
            });
        }
        let i = found;
        self.unlist(i);
        let lk = self.lm(i);
        lk.bits &= !B_ORPHAN;
        lk.ownpid = tid;
        lk.ua = Ua::of(p);
        self.set_exflags(i, p.flags);
        self.list_owner(owner, i);
        Ok(i + 1)
    }

    /// Closing owner `owner` (A.7): persistent locks become orphans with
    /// their pending request cancelled, the others are force-unlocked
    /// with IVVALBLK, in the owner's list order; unread callbacks go.
    pub fn close_owner(&mut self, owner: u32) {
        loop {
            let i = self.owners[owner as usize].locks.head;
            if i == NIL {
                break;
            }
            self.unlist(i);
            if self.l(i).exflags.contains(F::PERSISTENT) {
                self.lm(i).bits |= B_ORPHAN;
                self.list_orphan(i);
                // orphan_proc_lock: a cancel with no flags.
                let _ = self.validate_unlock(i, F::empty());
                self.do_cancel(i);
                // Off the wait queue now, so its `n_` links are free.
                if self.l(i).bits & B_LISTED != 0 && self.l(i).owner == NIL {
                    self.index_orphan(i);
                }
            } else {
                self.lm(i).owner = NIL;
                self.unlock_proc_lock(i);
            }
        }
        let o = &mut self.owners[owner as usize];
        o.cbs = Default::default();
        o.open = false;
        self.free_owners.push(owner);
        self.openers -= 1;
    }

    /// PURGE (C.11.4): `pid == tid` purges the caller's own locks and
    /// callbacks; otherwise the orphans of `pid` (all orphans for 0).
    pub fn purge(&mut self, owner: u32, pid: u32, tid: u32) {
        if pid == tid {
            loop {
                let i = self.owners[owner as usize].locks.head;
                if i == NIL {
                    break;
                }
                self.unlist(i);
                self.lm(i).owner = NIL;
                self.unlock_proc_lock(i);
            }
            self.owners[owner as usize].cbs.clear();
            return;
        }
        let mut cur = self.orphans.head;
        while cur != NIL {
            let next = self.l(cur).o_next;
            if pid == 0 || self.l(cur).ownpid == pid {
                self.unlist(cur);
                self.unlock_proc_lock(cur);
            }
            cur = next;
        }
    }
}
