//! What the engine's Rust API answers beyond the device-level scenarios.
//!
//! The scenarios of docs/semantics.md Part D are written once, in the
//! table of the `dlm-tests` crate (`tests/src/scenarios`), and run there
//! on this engine, on the reference model (`dlm-model`), on dlmd and on
//! the kernel. What stays here cannot be said through a device: the
//! engine's own handles and dump, the encoded size of its results, and
//! the README's deliberate difference after the opener has closed (the
//! kernel would still be blocked in the remove).

mod common;

use common::*;
use dlm_core::{Errno, LockFlags as F, LsFlags, Name, RemoveFlags};
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
