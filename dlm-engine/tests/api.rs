//! What the engine's Rust API answers beyond the device-level scenarios.
//!
//! The scenarios of docs/semantics.md Part D are written once, in the
//! table of the `dlm-tests` crate (`tests/src/scenarios`), and run there
//! on this engine, on the reference model (`dlm-model`), on dlmd and on
//! the kernel. What stays here cannot be said through a device: the
//! engine's own handles and dump, the encoded size of its results, and
//! the README's deliberate difference after the opener has closed (the
//! kernel would still be blocked in the remove), and the purge of a
//! waiting orphan, which oopses the 6.12 kernel (docs/kernel-differences.md).

mod common;

use common::*;
use dlm_core::{Errno, LockFlags as F, LsFlags, Name, RemoveFlags, Request};
use dlm_engine::Engine;

#[test]
fn dump_counts_creations() {
    let mut e = Engine::new();
    let t = Name::lockspace(b"t").unwrap();
    let m = e.create_lockspace(t, LsFlags::empty()).unwrap();
    assert_eq!(e.create_lockspace(t, LsFlags::empty()), Ok(m));
    assert_eq!(e.dump(m).unwrap().create_count, 2);
}

#[test]
fn results_encode_to_the_device_sizes() {
    let mut t = T::new();
    let o1 = t.open();
    let b = t.take(o1, "v", EX, F::VALBLK);
    let r = t.granted(o1, b);
    assert_eq!(r.lvb, Some(ZEROS));
    // with an LVB: the result and the 32 bytes after it
    assert_eq!(r.encode(104).unwrap().len(), 104);
    t.unlock(o1, b, NONE).unwrap();
    let r = t.read(o1).unwrap();
    // without: the 72-byte result alone
    assert_eq!(r.lvb, None);
    assert_eq!(r.encode(104).unwrap().len(), 72);
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
fn remove_is_ebusy_while_an_opener_is_open_then_succeeds() {
    // README's deliberate difference (the C9 row): where the kernel
    // blocks until the opener closes, the engine says EBUSY, with or
    // without FORCEFREE, even for an opener that holds nothing.
    let mut t = T::new();
    let o1 = t.open();
    let m = t.minor;
    assert_eq!(
        t.e.remove_lockspace(m, RemoveFlags::empty()),
        Err(Errno::EBUSY)
    );
    t.hold(o1, "r", EX, NONE);
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
fn idle_opener_closed_then_remove_succeeds() {
    let mut t = T::new();
    let o1 = t.open();
    t.e.close(o1.id);
    assert_eq!(t.e.remove_lockspace(t.minor, RemoveFlags::empty()), Ok(()));
}

#[test]
fn purge_of_a_waiting_orphan() {
    // A.7 / C.11.4: a waiting PERSISTENT request leaves the queue at close
    // but stays an orphan (scenario C5 shows that much on every target)
    // until a purge frees it. On the 6.12 kernel that purge hits a
    // list_del BUG in do_purge (the close already unlinked the lock from
    // its queue), so only the engine's answer is checked.
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
    assert_eq!(t.lock(o3, "r", PR, F::ORPHAN), Err(Errno::ENOENT));
    t.bast(o1, a, PR);
    t.nothing(o1);
}
