//! `Engine::take_notified`: the owners that got callbacks since the last
//! call, each once, which dlmd uses to deliver results without looking at
//! every handle after each operation.

mod common;

use common::*;
use dlm_engine::OwnerId;

fn notified(t: &mut T) -> Vec<OwnerId> {
    let mut out = Vec::new();
    t.e.take_notified(&mut out);
    out.sort();
    out
}

#[test]
fn owners_with_new_callbacks_are_listed_once_per_take() {
    let mut t = T::new();
    let (o1, o2, o3) = (t.open(), t.open(), t.open());
    assert!(notified(&mut t).is_empty());
    // O1's grant and O2's NOQUEUE failure; O3 gets nothing.
    let a = t.lock(o1, "r", EX, NONE).unwrap();
    let _ = t.lock(o2, "r", PR, dlm_core::LockFlags::NOQUEUE);
    let mut want = vec![o1.id, o2.id];
    want.sort();
    assert_eq!(notified(&mut t), want);
    // Taken: nothing new until the next callback, even with results still
    // queued.
    assert!(notified(&mut t).is_empty());
    // A second callback while O1's first is still queued lists O1 again.
    let _ = t.lock(o3, "r", PR, NONE);
    // (the blocking callback for O3's request)
    assert_eq!(notified(&mut t), vec![o1.id]);
    // Unlocking grants O3 and completes O1's unlock.
    t.unlock(o1, a, NONE).unwrap();
    let mut want = vec![o1.id, o3.id];
    want.sort();
    assert_eq!(notified(&mut t), want);
    // A closed owner is not listed.
    t.lock(o2, "s", EX, NONE).unwrap();
    t.e.close(o2.id);
    assert!(!notified(&mut t).contains(&o2.id));
}

#[test]
fn an_owner_whose_callbacks_were_all_taken_is_not_listed() {
    // dlmd takes a synchronous request's completion from the queue into
    // its reply: nothing is left to deliver for that owner.
    let mut t = T::new();
    let (o1, o2) = (t.open(), t.open());
    let _ = t.lock(o1, "r", EX, NONE).unwrap();
    let _ = t.lock(o2, "s", EX, NONE).unwrap();
    assert!(t.e.pop_callback(o1.id).is_some());
    assert!(t.e.pop_callback(o1.id).is_none());
    assert_eq!(notified(&mut t), vec![o2.id]);
}
