//! loom models of [`Handle`]'s dispatch role, waits and wake-ups: the
//! real handle, fed results through a [`Channel`](super::channel::Channel)
//! in place of the lockspace fd. One question per model. Run them all
//! (with dlm-pthread's, which add the AST thread) with `cargo xtask loom`.
//!
//! Synchronous calls are [`ModelLs::wait_inline_for`] (libdlm_lt) or
//! [`ModelLs::wait_for`] (libdlm, the Rust API); results are sent
//! without a callback unless a model needs one, as the C ABI skips the
//! synchronous calls' routine (so only the role's release wakes the
//! waiters of those).

use super::Dispatched;
use super::channel::ModelLs;
use crate::Errno;
use crate::sync::{Arc, thread};

/// Checks `f` under every interleaving loom explores, with at most
/// `LOOM_MAX_PREEMPTIONS` preemptions (2 when unset).
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// A thread making a synchronous call that waits for lock `lkid`, as
/// libdlm and the Rust API wait.
fn spawn_wait(ls: &Arc<ModelLs>, lkid: u32) -> thread::JoinHandle<Result<(), Errno>> {
    let ls = ls.clone();
    thread::spawn(move || ls.wait_for(lkid))
}

/// The same, as libdlm_lt waits.
fn spawn_wait_inline(ls: &Arc<ModelLs>, lkid: u32) -> thread::JoinHandle<Result<(), Errno>> {
    let ls = ls.clone();
    thread::spawn(move || ls.wait_inline_for(lkid))
}

/// The same, as libdlm_lt's `dlm_ls_unlock_wait` waits: the role taken
/// by one compare-and-swap when free, the first read without the lock.
fn spawn_wait_recorded(ls: &Arc<ModelLs>, lkid: u32) -> thread::JoinHandle<Result<(), Errno>> {
    let ls = ls.clone();
    thread::spawn(move || ls.wait_inline_recorded_for(lkid))
}

/// `first` waits for lock 1 while [`spawn_wait`] waits for lock 2 and
/// the lock manager sends both: both return, each result delivered once,
/// in order.
fn race_with_a_sleeping_wait(
    first: fn(&Arc<ModelLs>, u32) -> thread::JoinHandle<Result<(), Errno>>,
) {
    model(move || {
        let ls = ModelLs::new(None);
        let a = first(&ls, 1);
        let b = spawn_wait(&ls, 2);
        ls.send(1, false);
        ls.send(2, false);
        assert_eq!(a.join().unwrap(), Ok(()));
        assert_eq!(b.join().unwrap(), Ok(()));
        assert_eq!(ls.delivered(), [1, 2]);
    });
}

/// Two synchronous calls of one handle, each waiting for its own
/// completion while the lock manager sends them: whichever holds the
/// dispatch role reads both in turn or hands the role over, and both
/// return. The one that waits for the role is woken only by its release.
#[test]
fn two_waits_racing_for_the_role_both_return() {
    race_with_a_sleeping_wait(spawn_wait_inline);
}

/// A dispatcher that records a result while nobody waits skips the
/// notify (a futex call): a `_wait` that starts waiting just before or
/// just after still sees the result and returns.
#[test]
fn a_skipped_notify_loses_no_wakeup() {
    model(|| {
        let ls = ModelLs::new(None);
        ls.handle.set_dispatch_thread(true);
        let dispatcher =
            {
                let ls = ls.clone();
                thread::spawn(move || {
                    while ls.handle.dispatch_one(&*ls, Some(())) == Ok(Dispatched::One) {}
                })
            };
        let waiter = spawn_wait(&ls, 1);
        ls.send(1, false);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        ls.handle.device().wake();
        dispatcher.join().unwrap();
        assert_eq!(ls.delivered(), [1]);
    });
}

/// A callback that makes a synchronous call (it waits for lock 2 inside
/// lock 1's callback) dispatches lock 2's completion itself, nested,
/// while another thread's wait for lock 2 waits for the role: results
/// are recorded in the lock manager's order, each once, and no callback
/// runs beside another.
#[test]
fn a_callback_that_reenters_dispatches_nested() {
    model(|| {
        let ls = ModelLs::new(Some((1, 2)));
        ls.send(1, true);
        ls.send(2, false);
        ls.send(3, false);
        let dispatcher = {
            let ls = ls.clone();
            thread::spawn(move || ls.handle.dispatch_one(&*ls, None))
        };
        assert_eq!(ls.wait_inline_for(2), Ok(()));
        assert_eq!(dispatcher.join().unwrap(), Ok(Dispatched::One));
        let got = ls.delivered();
        assert_eq!(got[..2], [1, 2]);
        assert_eq!(ls.callbacks(), [1]);
    });
}

/// The lock manager goes away (dlmd exits, its connection closes) while
/// one wait sleeps in the read and another waits for the role: both end
/// with ENOTCONN, and so does every later call.
#[test]
fn close_while_waiters_sleep_ends_them_with_enotconn() {
    model(|| {
        let ls = ModelLs::new(None);
        let a = spawn_wait_inline(&ls, 1);
        let b = spawn_wait(&ls, 2);
        ls.handle.device().hang_up();
        assert_eq!(a.join().unwrap(), Err(Errno::ENOTCONN));
        assert_eq!(b.join().unwrap(), Err(Errno::ENOTCONN));
        assert_eq!(ls.wait_for(3), Err(Errno::ENOTCONN));
        assert!(ls.delivered().is_empty());
    });
}

/// A wait that takes the role by compare-and-swap, without the state
/// lock, races a wait that found the role held under the lock and
/// sleeps: the releasing holder (either one) wakes the sleeper, both
/// return, each result recorded once.
#[test]
fn cas_take_racing_a_sleeping_waiter_wakes_it() {
    race_with_a_sleeping_wait(spawn_wait_recorded);
}

/// Another dispatcher (`dlm_dispatch`) reads and records the only
/// result, the one a compare-and-swap wait is waiting for: when that
/// wait takes the role afterwards, it sees the result recorded (the
/// role's release and acquire order it) and returns instead of blocking
/// in a read for a result that was already taken.
#[test]
fn cas_take_sees_a_result_recorded_before_it() {
    model(|| {
        let ls = ModelLs::new(None);
        ls.send(1, false);
        let dispatcher = {
            let ls = ls.clone();
            thread::spawn(move || ls.handle.try_dispatch_one(&*ls))
        };
        assert_eq!(ls.wait_inline_recorded_for(1), Ok(()));
        let other = dispatcher.join().unwrap();
        assert!(matches!(other, Ok(Dispatched::One | Dispatched::Empty)));
        assert_eq!(ls.delivered(), [1]);
    });
}

/// Two compare-and-swap waits of one handle race for the role while the
/// lock manager sends both results: the loser of the swap sleeps under
/// the state lock and is woken by the winner's release.
#[test]
fn two_cas_waits_both_return() {
    model(|| {
        let ls = ModelLs::new(None);
        let a = spawn_wait_recorded(&ls, 1);
        let b = spawn_wait_recorded(&ls, 2);
        ls.send(2, false);
        ls.send(1, false);
        assert_eq!(a.join().unwrap(), Ok(()));
        assert_eq!(b.join().unwrap(), Ok(()));
        assert_eq!(ls.delivered(), [2, 1]);
    });
}

/// The lock manager goes away while a compare-and-swap wait sleeps in
/// its read and another waits for the role: both end with ENOTCONN, and
/// a later compare-and-swap wait sees it without reading.
#[test]
fn close_ends_cas_waits_with_enotconn() {
    model(|| {
        let ls = ModelLs::new(None);
        let a = spawn_wait_recorded(&ls, 1);
        let b = spawn_wait_inline(&ls, 2);
        ls.handle.device().hang_up();
        assert_eq!(a.join().unwrap(), Err(Errno::ENOTCONN));
        assert_eq!(b.join().unwrap(), Err(Errno::ENOTCONN));
        let failed = ls.handle.device().failed_reads();
        assert_eq!(ls.wait_inline_recorded_for(3), Err(Errno::ENOTCONN));
        assert_eq!(ls.handle.device().failed_reads(), failed);
        assert!(ls.delivered().is_empty());
    });
}

/// The lock manager goes away under a dispatch nested in a callback
/// (lock 1's callback waits for lock 2): the nested wait ends with
/// ENOTCONN, and when the outer dispatcher gives the role back, a later
/// compare-and-swap wait sees it without reading (the role must not be
/// left free: that wait does not look at the lock manager's state).
#[test]
fn close_under_a_nested_dispatch_ends_later_cas_waits() {
    model(|| {
        let ls = ModelLs::new(Some((1, 2)));
        ls.send(1, true);
        ls.handle.device().hang_up();
        assert_eq!(ls.handle.dispatch_one(&*ls, None), Ok(Dispatched::One));
        let failed = ls.handle.device().failed_reads();
        assert_eq!(ls.wait_inline_recorded_for(3), Err(Errno::ENOTCONN));
        assert_eq!(ls.handle.device().failed_reads(), failed);
        assert_eq!(ls.delivered(), [1]);
        assert_eq!(ls.callbacks(), [1]);
    });
}
