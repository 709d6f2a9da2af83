//! docs/semantics.md D.5, owner lifecycle scenarios C1–C10 (C6 corrected), and
//! the lockspace rules of A.8 with README's deliberate differences.

mod common;

use common::*;
use dlm_core::{Errno, LockFlags as F, LsFlags, Name, RemoveFlags, Request, SbFlags, Status};
use dlm_engine::LockOwner;

#[test]
fn c1_close_grants_waiter() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", EX, NONE);
    let b = t.take(o2, "r", EX, NONE);
    t.e.close(o1.id);
    t.granted(o2, b);
}

#[test]
fn c2_close_drops_pending_conversion() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", PR, NONE);
    let b = t.hold(o2, "r", PR, NONE);
    t.conv(o2, b, EX, NONE).unwrap();
    t.e.close(o2.id);
    // O1 read its bast for O2's conversion; now its own EX is granted.
    t.bast(o1, a, EX);
    assert_eq!(t.conv(o1, a, EX, NONE), Ok(0));
    t.granted(o1, a);
}

#[test]
fn c3_orphan_adoption() {
    let mut t = T::new();
    let o1 = t.open();
    let p = t.hold(o1, "p", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let o2 = t.open();
    let n = t.take(o2, "p", PR, F::NOQUEUE);
    t.cast(o2, n, Status::AGAIN, SbFlags::empty());
    assert_eq!(t.lock(o2, "p", EX, F::ORPHAN), Ok(p));
    t.nothing(o2);
    assert_eq!(t.unlock(o2, p, NONE), Ok(0));
    t.cast(o2, p, Status::UNLOCKED, SbFlags::empty());
}

#[test]
fn c3_adoption_takes_new_pointers_and_owner() {
    let mut t = T::new();
    let o1 = t.open();
    let p = t.hold(o1, "p", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let o2 = t.open();
    let mut q = T::params(b"p", EX, F::ORPHAN);
    q.castaddr = 0x1234;
    q.lksb = 0x4321;
    assert_eq!(t.lock_p(o2, q), Ok(p));
    let o3 = t.open();
    t.take(o3, "p", EX, NONE);
    let r = t.read(o2).expect("bast to the adopter");
    assert_eq!((r.lkid, r.bast_mode, r.user_lksb), (p, Some(EX), 0x4321));
    t.unlock(o2, p, NONE).unwrap();
    let r = t.read(o2).unwrap();
    assert_eq!((r.astaddr, r.status), (0x1234, Status::UNLOCKED));
    let dump = t.e.dump(t.minor).unwrap();
    assert_eq!(dump.resources[0].granted[0].owner, LockOwner::Owner(o3.id));
}

#[test]
fn c4_adoption_errors() {
    let mut t = T::new();
    let o1 = t.open();
    t.hold(o1, "p", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let o2 = t.open();
    assert_eq!(t.lock(o2, "p", PR, F::ORPHAN), Err(Errno::EAGAIN));
    assert_eq!(t.lock(o2, "zz", EX, F::ORPHAN), Err(Errno::ENOENT));
    // Adoption compares the exact name length.
    assert_eq!(t.lock(o2, "p\0", EX, F::ORPHAN), Err(Errno::ENOENT));
    t.nothing(o2);
}

#[test]
fn c5_purge_of_orphans_grants_waiter() {
    let mut t = T::new();
    let o1 = t.open();
    t.hold(o1, "q", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let o2 = t.open();
    let b = t.take(o2, "q", EX, NONE);
    t.nothing(o2);
    assert_eq!(t.write(o2, Request::Purge { nodeid: 0, pid: 0 }), Ok(0));
    t.granted(o2, b);
}

#[test]
fn c6_purge_by_pid() {
    let mut t = T::new();
    let o1 = t.open();
    let x = o1.tid;
    t.hold(o1, "q", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let o2 = t.open();
    assert_ne!(o2.tid, x);
    assert_eq!(
        t.write(
            o2,
            Request::Purge {
                nodeid: 0,
                pid: x + 7
            }
        ),
        Ok(0)
    );
    let n = t.take(o2, "q", EX, F::NOQUEUE);
    t.cast(o2, n, Status::AGAIN, SbFlags::empty());
    assert_eq!(t.write(o2, Request::Purge { nodeid: 0, pid: x }), Ok(0));
    let n = t.take(o2, "q", EX, F::NOQUEUE);
    t.granted(o2, n);
}

#[test]
fn c6_purge_of_own_tid_is_a_self_purge() {
    // Corrected C6: a pid equal to the purger's own tid purges the
    // purger's own locks, not orphans of that pid.
    let mut t = T::new();
    let o1 = t.open();
    t.hold(o1, "q", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let o2 = t.open();
    t.hold(o2, "mine", EX, NONE);
    assert_eq!(
        t.write(
            o2,
            Request::Purge {
                nodeid: 0,
                pid: o2.tid
            }
        ),
        Ok(0)
    );
    assert!(!t.probe("q", EX), "the orphan survived");
    assert!(t.probe("mine", EX), "O2's own lock was purged");
}

#[test]
fn c7_purge_own_locks_without_callbacks() {
    let mut t = T::new();
    let (o2, o3) = (t.open(), t.open());
    let a = t.hold(o2, "s", EX, NONE);
    let c = t.take(o3, "s", EX, NONE);
    assert_eq!(t.e.pending_callbacks(o2.id), 1, "a bast is queued for O2");
    assert_eq!(
        t.write(
            o2,
            Request::Purge {
                nodeid: 0,
                pid: o2.tid
            }
        ),
        Ok(0)
    );
    t.nothing(o2);
    t.granted(o3, c);
    assert_eq!(t.unlock(o2, a, NONE), Err(Errno::ENOENT));
}

#[test]
fn c8_remove_decrements_creation_count() {
    let mut t = T::new();
    let name = Name::lockspace(b"t").unwrap();
    assert_eq!(t.e.create_lockspace(name, LsFlags::empty()), Ok(t.minor));
    let o1 = t.open();
    t.hold(o1, "r", EX, NONE);
    assert_eq!(t.e.remove_lockspace(t.minor, RemoveFlags::empty()), Ok(()));
    let o2 = t.open();
    let id = t.take(o2, "r", EX, F::NOQUEUE);
    t.cast(o2, id, Status::AGAIN, SbFlags::empty());
    assert_eq!(t.e.find_lockspace(&name), Some(t.minor));
}

#[test]
fn c9_remove_busy_then_forcefree() {
    let mut t = T::new();
    let o1 = t.open();
    t.hold(o1, "r", EX, NONE);
    let m = t.minor;
    assert_eq!(
        t.e.remove_lockspace(m, RemoveFlags::empty()),
        Err(Errno::EBUSY)
    );
    // Where the kernel blocks until O1 closes, the engine says EBUSY.
    assert_eq!(
        t.e.remove_lockspace(m, RemoveFlags::FORCEFREE),
        Err(Errno::EBUSY)
    );
    t.e.close(o1.id);
    assert_eq!(t.e.remove_lockspace(m, RemoveFlags::FORCEFREE), Ok(()));
    assert_eq!(t.e.open(m).map(|_| ()), Err(Errno::ENOENT));
    assert_eq!(t.e.find_lockspace(&Name::lockspace(b"t").unwrap()), None);
    assert_eq!(
        t.e.remove_lockspace(m, RemoveFlags::empty()),
        Err(Errno::ENOENT)
    );
}

#[test]
fn c9_orphans_keep_lockspace_busy_unless_forcefree() {
    let mut t = T::new();
    let o1 = t.open();
    t.hold(o1, "r", EX, F::PERSISTENT);
    t.e.close(o1.id);
    let m = t.minor;
    assert_eq!(
        t.e.remove_lockspace(m, RemoveFlags::empty()),
        Err(Errno::EBUSY)
    );
    assert_eq!(t.e.remove_lockspace(m, RemoveFlags::FORCEFREE), Ok(()));
}

#[test]
fn c9_idle_opener_blocks_removal() {
    let mut t = T::new();
    let o1 = t.open();
    assert_eq!(
        t.e.remove_lockspace(t.minor, RemoveFlags::empty()),
        Err(Errno::EBUSY)
    );
    t.e.close(o1.id);
    assert_eq!(t.e.remove_lockspace(t.minor, RemoveFlags::empty()), Ok(()));
}

#[test]
fn c10_foreign_unlock_calls_back_the_owner() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let k = t.hold(o1, "r", EX, NONE);
    let mut p = unlock_params(k, NONE);
    p.lksb = 0x0202;
    assert_eq!(t.write(o2, Request::Unlock(p)), Ok(0));
    let r = t.read(o1).expect("the owner gets the cast");
    assert_eq!(
        (r.lkid, r.status, r.user_lksb),
        (k, Status::UNLOCKED, 0x0202)
    );
    t.nothing(o2);
}

#[test]
fn close_orphans_persistent_waiter_until_purge() {
    // A.7: a waiting PERSISTENT request leaves the queue but stays an
    // orphan (keeping the resource) until a purge.
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let a = t.hold(o1, "r", EX, NONE);
    t.take(o2, "r", PR, F::PERSISTENT);
    t.e.close(o2.id);
    let d = t.e.dump(t.minor).unwrap();
    assert_eq!(d.locks, 2);
    assert!(d.resources[0].waiting.is_empty());
    assert_eq!(d.resources[0].detached.len(), 1);
    let o3 = t.open();
    assert_eq!(t.lock(o3, "r", PR, F::ORPHAN), Err(Errno::EAGAIN));
    assert_eq!(t.write(o3, Request::Purge { nodeid: 0, pid: 0 }), Ok(0));
    assert_eq!(t.e.dump(t.minor).unwrap().locks, 1);
    t.bast(o1, a, PR);
    t.nothing(o1);
}

#[test]
fn close_reverts_persistent_conversion() {
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    t.hold(o1, "r", PR, NONE);
    let b = t.hold(o2, "r", PR, F::PERSISTENT);
    t.conv(o2, b, EX, F::PERSISTENT).unwrap();
    t.e.close(o2.id);
    let d = t.e.dump(t.minor).unwrap();
    let r = &d.resources[0];
    assert!(r.converting.is_empty());
    assert_eq!(r.granted.len(), 2);
    assert!(r.granted.iter().any(|l| l.owner == LockOwner::Orphan));
    assert_eq!(t.lock(o1, "r", PR, F::ORPHAN), Ok(b));
}

#[test]
fn closed_owner_is_einval() {
    let mut t = T::new();
    let o1 = t.open();
    t.e.close(o1.id);
    assert_eq!(t.lock(o1, "r", EX, NONE), Err(Errno::EINVAL));
    assert_eq!(t.read(o1), None);
    assert_eq!(t.e.pending_callbacks(o1.id), 0);
    // A new opener gets a new id.
    assert_ne!(t.open().id, o1.id);
}

#[test]
fn lockspace_requests_on_a_lockspace_device_are_einval() {
    let mut t = T::new();
    let o1 = t.open();
    let create = Request::CreateLockspace {
        flags: LsFlags::empty(),
        name: Name::lockspace(b"u").unwrap(),
    };
    assert_eq!(t.write(o1, create), Err(Errno::EINVAL));
    let remove = Request::RemoveLockspace {
        flags: RemoveFlags::empty(),
        minor: t.minor,
    };
    assert_eq!(t.write(o1, remove), Err(Errno::EINVAL));
}
