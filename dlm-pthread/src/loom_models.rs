//! loom models of the AST thread's start and stop, one per question.
//!
//! Run with
//! `RUSTFLAGS="--cfg dlm_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p dlm-pthread --release --lib loom`.
//!
//! The lockspace fd cannot be modelled, so [`Fake`] stands in for a
//! handle: a queue of results in place of the fd, a flag in place of the
//! wake-up eventfd, and the handle's dispatch role, state lock and
//! condition variable as `dlm_core::handle::Handle` has them. Waiters use
//! the protocol of `dlm_core::cabi`'s threaded `_wait`: wait without
//! dispatching while a thread dispatches, re-check when it stops, then
//! dispatch inline.

use crate::ast::{AstThread, Registry, Source, Step};
use crate::sync::{Arc, Mutex, lock, thread};
use loom::sync::Condvar;
use std::collections::VecDeque;

#[derive(Default)]
struct State {
    /// Results queued on the "fd" (lock ids).
    queue: VecDeque<u32>,
    /// The wake-up fd is readable.
    woken: bool,
    /// An AST thread dispatches (what `Ls::set_threaded` says).
    threaded: bool,
    /// Someone holds the dispatch role.
    role: bool,
    /// Results recorded (the lksb writes), in order.
    delivered: Vec<u32>,
    /// A callback is running.
    in_callback: bool,
    /// The fd was closed.
    closed: bool,
    /// AST threads that ever dispatched.
    dispatch_threads: usize,
}

#[derive(Default)]
struct Fake {
    st: Mutex<State>,
    cv: Condvar,
}

impl Fake {
    fn push(&self, id: u32) {
        lock(&self.st).queue.push_back(id);
        self.cv.notify_all();
    }

    /// Records and "calls back" one queued result; the role is held.
    fn deliver_one(&self, mut st: crate::sync::MutexGuard<'_, State>) {
        assert!(!st.closed, "a result was read from a closed fd");
        let id = st.queue.pop_front().expect("a result is queued");
        st.delivered.push(id);
        st.in_callback = true;
        drop(st);
        self.cv.notify_all();
        // The callback runs without the state lock.
        thread::yield_now();
        let mut st = lock(&self.st);
        assert!(!st.closed, "the fd was closed under a running callback");
        st.in_callback = false;
        st.role = false;
        drop(st);
        self.cv.notify_all();
    }

    /// `Handle::wait` with the threaded `_wait` protocol of
    /// `dlm_core::cabi`: returns once `id` was delivered.
    fn wait_for(&self, id: u32) {
        loop {
            let mut st = lock(&self.st);
            let threaded = st.threaded;
            loop {
                if st.delivered.contains(&id) {
                    return;
                }
                if threaded && !st.threaded {
                    break;
                }
                if !threaded && !st.role {
                    st.role = true;
                    // Inline dispatch: a blocking read.
                    while st.queue.is_empty() {
                        st = self.cv.wait(st).unwrap();
                    }
                    self.deliver_one(st);
                    st = lock(&self.st);
                    continue;
                }
                st = self.cv.wait(st).unwrap();
            }
        }
    }
}

impl Source for Fake {
    fn dispatch(&self) -> Step {
        let mut st = lock(&self.st);
        // Take the dispatch role.
        while st.role {
            st = self.cv.wait(st).unwrap();
        }
        st.role = true;
        // Poll the fd and the wake-up fd.
        while st.queue.is_empty() && !st.woken {
            st = self.cv.wait(st).unwrap();
        }
        if st.woken {
            st.role = false;
            drop(st);
            self.cv.notify_all();
            return Step::Stop;
        }
        if st.dispatch_threads == 0 {
            st.dispatch_threads = 1;
        }
        self.deliver_one(st);
        Step::Continue
    }

    fn wake(&self) {
        lock(&self.st).woken = true;
        self.cv.notify_all();
    }

    fn set_threaded(&self, on: bool) {
        // Like `Ls::set_threaded`: under the state lock, without a
        // notification of its own (the woken thread's release of the
        // dispatch role is what wakes waiters).
        lock(&self.st).threaded = on;
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// Does stopping the thread while a callback is in flight let that
/// callback finish before the stop returns, and deliver nothing after?
#[test]
fn loom_cleanup_racing_a_callback_in_flight_lets_it_finish() {
    model(|| {
        let fake = Arc::new(Fake::default());
        fake.push(1);
        let t = AstThread::start(fake.clone()).unwrap();
        t.stop();
        let mut st = lock(&fake.st);
        assert!(!st.in_callback);
        assert!(!st.threaded);
        st.closed = true;
        assert!(st.delivered.len() <= 1);
    });
}

/// Does a `_wait` in another thread always return when the AST thread is
/// stopped while it waits (it takes over dispatching)?
#[test]
fn loom_cleanup_racing_a_wait_in_another_thread_never_hangs() {
    model(|| {
        let fake = Arc::new(Fake::default());
        let t = AstThread::start(fake.clone()).unwrap();
        let waiter = {
            let fake = fake.clone();
            thread::spawn(move || fake.wait_for(7))
        };
        fake.push(7);
        t.stop();
        waiter.join().unwrap();
        let st = lock(&fake.st);
        assert_eq!(st.delivered, vec![7]);
    });
}

/// Do two concurrent `dlm_ls_pthread_init` calls on one handle start
/// exactly one thread, the other getting EEXIST?
#[test]
fn loom_init_twice_starts_one_thread() {
    model(|| {
        let reg = Arc::new(Registry::<Fake>::new());
        let fake = Arc::new(Fake::default());
        let other = {
            let (reg, fake) = (reg.clone(), fake.clone());
            thread::spawn(move || reg.start(1, || Ok(fake)))
        };
        let mine = reg.start(1, || Ok(fake.clone()));
        let theirs = other.join().unwrap();
        let oks = [mine, theirs].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1);
        assert!([mine, theirs].contains(&Err(dlm_core::Errno::EEXIST)));
        fake.push(3);
        fake.wait_for(3);
        reg.stop(1);
        let st = lock(&fake.st);
        assert!(!st.threaded);
        assert_eq!(st.dispatch_threads, 1);
    });
}

/// Does `dlm_close_lockspace` during a dispatch close the fd only after
/// the AST thread was joined (no read or callback on a closed fd)?
#[test]
fn loom_close_during_dispatch_closes_the_fd_after_the_join() {
    model(|| {
        let reg = Arc::new(Registry::<Fake>::new());
        let fake = Arc::new(Fake::default());
        reg.start(9, || Ok(fake.clone())).unwrap();
        let producer = {
            let fake = fake.clone();
            thread::spawn(move || fake.push(1))
        };
        // dlm_close_lockspace: stop the thread, then close the fd.
        reg.stop(9);
        lock(&fake.st).closed = true;
        producer.join().unwrap();
        assert!(!lock(&fake.st).in_callback);
    });
}
