//! loom models of the AST thread with dlm-core's real handle, one
//! question per model. Run them all (with dlm-core's models of the
//! handle alone) with `cargo xtask loom`.
//!
//! [`ModelLs`] is `dlm_core::handle::Handle` itself, fed results through
//! a channel in place of the lockspace fd, with a stop flag in place of
//! the wake-up eventfd; its [`Source`] is what the C library's and
//! `ThreadedLockspace`'s are: `dispatch_one` with the wake-up, the
//! wake-up, and `set_dispatch_thread`. A `_wait` is
//! [`ModelLs::wait_for`], as libdlm's synchronous calls wait.

use crate::ast::{AstThread, Registry, Source, Step};
use dlm_core::Errno;
use dlm_core::handle::channel::ModelLs;
use dlm_core::sync::{Arc, thread};

impl Source for ModelLs {
    fn dispatch(&self) -> Step {
        Step::after(self.handle.dispatch_one(self, Some(())))
    }

    fn wake(&self) {
        self.handle.device().wake();
    }

    fn set_threaded(&self, on: bool) {
        self.handle.set_dispatch_thread(on);
    }
}

/// Checks `f` under every interleaving loom explores, with at most
/// `LOOM_MAX_PREEMPTIONS` preemptions (2 when unset).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

fn spawn_wait(ls: &Arc<ModelLs>, lkid: u32) -> thread::JoinHandle<Result<(), Errno>> {
    let ls = ls.clone();
    thread::spawn(move || ls.wait_for(lkid))
}

/// A `_wait` that starts as the AST thread starts: it may dispatch
/// inline before the thread runs, or wait for the thread; the thread and
/// the wait take the dispatch role in turn. The wait returns, every
/// result is delivered once and in order, the asynchronous one's
/// callback on whoever read it.
#[test]
fn a_wait_racing_an_ast_thread_for_the_role() {
    model(|| {
        let ls = ModelLs::new(None);
        let waiter = spawn_wait(&ls, 7);
        let t = AstThread::start(ls.clone()).unwrap();
        ls.send(7, false);
        ls.send(8, true);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        t.stop();
        let got = ls.delivered();
        assert!(got == [7] || got == [7, 8], "{got:?}");
        assert_eq!(ls.callbacks(), got[1..]);
        assert!(!ls.in_callback());
    });
}

/// `dlm_pthread_cleanup` while a `_wait` of another thread waits for the
/// AST thread: the wait always returns, taking over dispatching when the
/// thread stopped before delivering its result.
#[test]
fn ast_stop_and_join_racing_a_blocked_wait() {
    model(|| {
        let ls = ModelLs::new(None);
        let t = AstThread::start(ls.clone()).unwrap();
        let waiter = spawn_wait(&ls, 7);
        ls.send(7, false);
        t.stop();
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(ls.delivered(), [7]);
        assert!(!ls.handle.has_dispatch_thread());
    });
}

/// Stopping the thread while a callback is in flight lets that callback
/// finish before the stop returns, and nothing is delivered after.
#[test]
fn ast_stop_racing_a_callback_in_flight_lets_it_finish() {
    model(|| {
        let ls = ModelLs::new(None);
        ls.send(1, true);
        let t = AstThread::start(ls.clone()).unwrap();
        t.stop();
        assert!(!ls.in_callback());
        let got = ls.delivered();
        assert_eq!(ls.callbacks(), got);
        assert_eq!(got.len() + ls.handle.device().unread(), 1);
    });
}

/// Two concurrent `dlm_ls_pthread_init` calls on one handle start
/// exactly one thread, the other getting EEXIST; a `_wait` then gets its
/// result from it.
#[test]
fn ast_init_twice_starts_one_thread() {
    model(|| {
        let reg = Arc::new(Registry::<ModelLs>::new());
        let ls = ModelLs::new(None);
        let other = {
            let (reg, ls) = (reg.clone(), ls.clone());
            thread::spawn(move || reg.start(1, || Ok(ls)))
        };
        let mine = reg.start(1, || Ok(ls.clone()));
        let theirs = other.join().unwrap();
        assert!(
            [mine, theirs] == [Ok(()), Err(Errno::EEXIST)]
                || [mine, theirs] == [Err(Errno::EEXIST), Ok(())],
            "{mine:?} {theirs:?}"
        );
        ls.send(3, false);
        assert_eq!(ls.wait_for(3), Ok(()));
        reg.stop(1);
        assert!(!ls.handle.has_dispatch_thread());
    });
}

/// `dlm_close_lockspace` (stop and join the AST thread, then drop the
/// handle) while another thread's `_wait` sleeps on it, its result sent
/// meanwhile: the wait, holding its own reference, takes over
/// dispatching and returns with its result, read once.
#[test]
fn close_while_a_wait_sleeps_hands_it_the_dispatch() {
    model(|| {
        let reg = Arc::new(Registry::<ModelLs>::new());
        let ls = ModelLs::new(None);
        reg.start(9, || Ok(ls.clone())).unwrap();
        let waiter = spawn_wait(&ls, 1);
        let sender = {
            let ls = ls.clone();
            thread::spawn(move || ls.send(1, false))
        };
        reg.stop(9);
        sender.join().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(ls.delivered(), [1]);
    });
}
