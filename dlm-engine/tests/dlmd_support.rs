//! What the engine offers dlmd beyond the kernel's semantics: the
//! incremental dump (`Engine::dump_next`), per-account lock counts
//! (`Engine::open_as`, `Engine::locks_of`) and the release of locks that
//! carry FORCEUNLOCK at close (`Engine::set_release_forceunlock`).

mod common;

use common::*;
use dlm_core::{LockFlags as F, Mode, Name, RemoveFlags, Request};
use dlm_engine::{DumpCursor, DumpItem, DumpQueue, Engine, LockDump, ResourceDump};

/// The whole dump of `t`'s lockspace through the cursor, as resources
/// sorted by name (the shape of `Engine::dump`).
fn through_cursor(t: &T) -> Vec<ResourceDump> {
    let mut cur = DumpCursor::default();
    let mut out: Vec<ResourceDump> = Vec::new();
    while let Some(item) = t.e.dump_next(t.minor, &mut cur) {
        match item {
            DumpItem::Resource {
                name,
                lvb,
                lvb_invalid,
            } => out.push(ResourceDump {
                name,
                lvb,
                lvb_invalid,
                granted: vec![],
                converting: vec![],
                waiting: vec![],
                detached: vec![],
            }),
            DumpItem::Lock { queue, lock } => {
                let r = out.last_mut().expect("a lock after its resource");
                let q: &mut Vec<LockDump> = match queue {
                    DumpQueue::Granted => &mut r.granted,
                    DumpQueue::Converting => &mut r.converting,
                    DumpQueue::Waiting => &mut r.waiting,
                    DumpQueue::Detached => &mut r.detached,
                };
                q.push(lock);
            }
            DumpItem::Busy => {}
        }
    }
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out
}

#[test]
fn cursor_lists_what_the_snapshot_lists() {
    let mut t = T::new();
    let (a, b, c) = (t.open(), t.open(), t.open());
    // Many locks on one resource (aggregates), queues of every kind, a
    // conversion, an LVB, and a detached orphan (a PERSISTENT waiter
    // whose owner closed).
    for i in 0..20 {
        t.lock(a, &format!("r{i}"), Mode::Pr, NONE).unwrap();
        t.lock(b, "big", Mode::Pr, NONE).unwrap();
    }
    let ex = t.lock(a, "q", Mode::Ex, F::VALBLK).unwrap();
    t.lock(b, "q", Mode::Pr, NONE).unwrap();
    let pr = t.lock(c, "q2", Mode::Pr, NONE).unwrap();
    t.lock(b, "q2", Mode::Pr, NONE).unwrap();
    t.conv(c, pr, Mode::Ex, NONE).unwrap();
    t.lock(a, "big", Mode::Ex, NONE).unwrap();
    t.lock(c, "big", Mode::Cw, NONE).unwrap();
    let d = t.open();
    t.lock(d, "q", Mode::Ex, F::PERSISTENT).unwrap();
    t.e.close(d.id);
    let _ = ex;
    let snap = t.e.dump(t.minor).unwrap();
    let summary = t.e.dump_summary(t.minor).unwrap();
    assert_eq!(summary.locks, snap.locks);
    assert_eq!(summary.resources, snap.resources.len());
    let got = through_cursor(&t);
    assert_eq!(got, snap.resources);
    assert!(got.iter().any(|r| !r.detached.is_empty()));
    assert!(got.iter().any(|r| !r.converting.is_empty()));
    assert!(got.iter().any(|r| r.waiting.len() > 1));
}

#[test]
fn cursor_survives_changes_between_steps() {
    let mut t = T::new();
    let a = t.open();
    let ids: Vec<u32> = (0..50)
        .map(|i| t.lock(a, &format!("r{}", i % 5), Mode::Pr, NONE).unwrap())
        .collect();
    let mut cur = DumpCursor::default();
    let mut steps = 0;
    let mut k = 0;
    while t.e.dump_next(t.minor, &mut cur).is_some() {
        steps += 1;
        assert!(steps < 1000, "the cursor ends");
        // Unlock and lock again behind and ahead of the cursor.
        if k < ids.len() {
            t.unlock(a, ids[k], NONE).unwrap();
            t.lock(a, &format!("n{k}"), Mode::Ex, NONE).unwrap();
            k += 1;
        }
    }
    // A lockspace that goes away ends the dump.
    let mut cur = DumpCursor::default();
    assert!(t.e.dump_next(t.minor, &mut cur).is_some());
    t.e.close(a.id);
    t.e.remove_lockspace(t.minor, RemoveFlags::FORCEFREE)
        .unwrap();
    assert!(t.e.dump_next(t.minor, &mut cur).is_none());
    assert!(t.e.dump_summary(t.minor).is_none());
}

#[test]
fn next_lockspace_walks_minors() {
    let mut e = Engine::new();
    let m: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            e.create_lockspace(Name::lockspace(n.as_bytes()).unwrap(), Default::default())
                .unwrap()
        })
        .collect();
    e.remove_lockspace(m[1], RemoveFlags::empty()).unwrap();
    assert_eq!(e.next_lockspace(0), Some(m[0]));
    assert_eq!(e.next_lockspace(m[0] + 1), Some(m[2]));
    assert_eq!(e.next_lockspace(m[2] + 1), None);
}

#[test]
fn locks_are_charged_to_their_creator_until_freed() {
    let mut t = T::new();
    let a = O {
        id: t.e.open_as(t.minor, 1000).unwrap(),
        tid: 1,
    };
    let b = O {
        id: t.e.open_as(t.minor, 2000).unwrap(),
        tid: 2,
    };
    let x = t.lock(a, "x", Mode::Ex, NONE).unwrap();
    t.lock(a, "p", Mode::Ex, F::PERSISTENT).unwrap();
    // A failed NOQUEUE request is freed at once.
    assert!(t.lock(b, "x", Mode::Ex, F::NOQUEUE).is_ok());
    let w = t.lock(b, "x", Mode::Ex, NONE).unwrap();
    assert_eq!((t.e.locks_of(1000), t.e.locks_of(2000)), (2, 1));
    // b unlocks a's lock by id: it leaves a's count.
    t.unlock(b, x, NONE).unwrap();
    assert_eq!(t.e.locks_of(1000), 1);
    // The orphan stays charged to a.
    t.e.close(a.id);
    assert_eq!(t.e.locks_of(1000), 1);
    // Adopted by b: still a's.
    let c = O {
        id: t.e.open_as(t.minor, 2000).unwrap(),
        tid: 3,
    };
    let adopted = t.write(
        c,
        Request::Lock(T::params(b"p", Mode::Ex, F::ORPHAN | F::PERSISTENT)),
    );
    assert!(adopted.is_ok(), "{adopted:?}");
    assert_eq!((t.e.locks_of(1000), t.e.locks_of(2000)), (1, 1));
    t.unlock(b, w, NONE).unwrap();
    t.e.close(c.id);
    // c's adopted lock is PERSISTENT again: an orphan, purged here.
    let p = t.open();
    t.write(p, Request::Purge { nodeid: 0, pid: 0 }).unwrap();
    assert_eq!((t.e.locks_of(1000), t.e.locks_of(2000)), (0, 0));
    // FORCEFREE takes the remaining locks with the lockspace.
    t.lock(b, "y", Mode::Ex, F::PERSISTENT).unwrap();
    t.e.close(b.id);
    t.e.close(p.id);
    assert_eq!(t.e.locks_of(2000), 1);
    t.e.remove_lockspace(t.minor, RemoveFlags::FORCEFREE)
        .unwrap();
    assert_eq!(t.e.locks_of(2000), 0);
}

#[test]
fn forceunlock_locks_outlive_their_owner_unless_released() {
    for release in [false, true] {
        let mut e = Engine::new();
        e.set_release_forceunlock(release);
        let mut t = T::with_engine(e);
        let a = t.open();
        t.lock(a, "r", Mode::Ex, F::FORCEUNLOCK).unwrap();
        t.e.close(a.id);
        let b = t.open();
        // The kernel keeps the lock, granted to nobody: EX is refused.
        assert_eq!(t.probe("r", Mode::Ex), release, "release {release}");
        t.e.close(b.id);
        let locks = t.e.dump(t.minor).unwrap().locks;
        assert_eq!(locks, usize::from(!release));
    }
}

#[test]
fn many_detached_orphans_are_listed_a_bounded_step_at_a_time() {
    let mut t = T::new();
    let holder = t.open();
    let n = 600;
    for i in 0..n {
        t.lock(holder, &format!("r{i}"), Mode::Ex, NONE).unwrap();
    }
    // A PERSISTENT waiter on every resource, whose owner closes: n
    // detached orphans, the last resources' far down the orphan list.
    let w = t.open();
    for i in 0..n {
        t.lock(w, &format!("r{i}"), Mode::Ex, F::PERSISTENT)
            .unwrap();
    }
    t.e.close(w.id);
    let mut cur = DumpCursor::default();
    let mut busy = 0;
    while let Some(item) = t.e.dump_next(t.minor, &mut cur) {
        if item == DumpItem::Busy {
            busy += 1;
        }
    }
    assert!(busy > 0, "long scans are split");
    let got = through_cursor(&t);
    assert_eq!(got, t.e.dump(t.minor).unwrap().resources);
    assert_eq!(got.iter().map(|r| r.detached.len()).sum::<usize>(), n);
}
