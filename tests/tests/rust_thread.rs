//! The Rust API with callbacks on a thread (`dlm::ThreadedLockspace`, in
//! dlm-pthread) against a real dlmd: blocking callbacks with their mode
//! on the lockspace's thread (closure and channel), completions of
//! asynchronous requests there too, blocking calls from many threads
//! while it runs, the thread joined on drop, and a dead dlmd.

use dlm::ThreadedLockspace;
use dlm_core::{Errno, Error, LockFlags, LockOptions, Lockspace, Mode, Status};
use dlm_tests::{Dlmd, InProcess};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// A guard against a hang, not a timing assertion.
const HANG: Duration = Duration::from_secs(60);

/// A dlmd of this test's own, used by this process.
fn fresh(name: &str) -> InProcess {
    Dlmd::start_in_this_process(&format!("rust_thread-{name}"))
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

/// How many threads of this process are AST threads.
fn ast_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.trim() == "dlm-ast")
        })
        .count()
}

/// Waits until `n` AST threads exist: a new thread names itself, and a
/// joined one leaves `/proc` a moment after the join returns.
fn expect_ast_threads(n: usize) {
    let start = std::time::Instant::now();
    while ast_threads() != n {
        assert!(
            start.elapsed() < HANG,
            "{} AST threads, not {n}",
            ast_threads()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn blocking_callbacks_run_on_the_thread_with_the_mode() {
    let _dlmd = fresh("bast");
    let a = ThreadedLockspace::create("bast", 0o600).unwrap();
    let b = Lockspace::open("bast").unwrap();
    let (tx, rx) = mpsc::channel();
    let held = a
        .lock(
            b"r",
            Mode::Ex,
            LockOptions::new().on_blocking(move |m| tx.send((m, thread_name())).unwrap()),
        )
        .unwrap();
    assert_eq!(
        b.try_lock(
            b"r",
            Mode::Pr,
            LockOptions::new().flags(LockFlags::NOQUEUEBAST)
        )
        .unwrap_err(),
        Error::WouldBlock
    );
    // Nobody here dispatches: the lockspace's thread does.
    let (mode, on) = rx.recv_timeout(HANG).unwrap();
    assert_eq!(mode, Mode::Pr);
    assert_eq!(on, "dlm-ast");
    drop(held);

    // The channel form.
    let (tx, rx) = mpsc::channel();
    let held = a
        .lock(b"s", Mode::Pr, LockOptions::new().blocking_sender(tx))
        .unwrap();
    assert_eq!(
        b.try_lock(
            b"s",
            Mode::Ex,
            LockOptions::new().flags(LockFlags::NOQUEUEBAST)
        )
        .unwrap_err(),
        Error::WouldBlock
    );
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Mode::Ex);
    assert_eq!(held.unlock().unwrap(), Status::UNLOCKED);
}

#[test]
fn async_completions_run_on_the_thread() {
    let _dlmd = fresh("async");
    let a = ThreadedLockspace::create("async", 0o600).unwrap();
    let b = Lockspace::open("async").unwrap();
    let held = b.lock(b"r", Mode::Ex, LockOptions::new()).unwrap();
    let (tx, rx) = mpsc::channel();
    let id = a
        .lock_async(b"r", Mode::Ex, LockOptions::new(), move |c, _| {
            tx.send((c, thread_name())).unwrap()
        })
        .unwrap();
    assert!(rx.try_recv().is_err(), "granted while b holds EX");
    drop(held);
    let (c, on) = rx.recv_timeout(HANG).unwrap();
    assert_eq!((c.lkid, c.status), (id, Status::GRANTED));
    assert_eq!(on, "dlm-ast");
    assert_eq!(a.unlock_id(id).unwrap(), Status::UNLOCKED);
}

#[test]
fn blocking_calls_from_many_threads_while_the_thread_runs() {
    let _dlmd = fresh("many");
    let ls = ThreadedLockspace::create("many", 0o600).unwrap();
    // Incremented with a separate load and store: only the DLM lock
    // makes the increments exclusive.
    let counter = AtomicU64::new(0);
    let basts = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (ls, counter, basts) = (&ls, &counter, basts.clone());
            s.spawn(move || {
                for _ in 0..50 {
                    let basts = basts.clone();
                    let lock = ls
                        .lock(
                            b"counter",
                            Mode::Ex,
                            LockOptions::new().on_blocking(move |_| {
                                assert_eq!(thread_name(), "dlm-ast");
                                basts.fetch_add(1, Ordering::Relaxed);
                            }),
                        )
                        .unwrap();
                    let v = counter.load(Ordering::SeqCst);
                    std::thread::yield_now();
                    counter.store(v + 1, Ordering::SeqCst);
                    assert_eq!(lock.unlock().unwrap(), Status::UNLOCKED);
                }
            });
        }
    });
    assert_eq!(counter.load(Ordering::SeqCst), 400);
}

#[test]
fn dropping_and_releasing_join_the_thread() {
    let _dlmd = fresh("join");
    let before = ast_threads();
    let a = ThreadedLockspace::create("join", 0o600).unwrap();
    expect_ast_threads(before + 1);
    let b = ThreadedLockspace::open("join").unwrap();
    expect_ast_threads(before + 2);
    b.lock(b"r", Mode::Ex, LockOptions::new()).unwrap().keep();
    drop(b);
    expect_ast_threads(before + 1);
    // b's close released its lock.
    drop(a.try_lock(b"r", Mode::Ex, LockOptions::new()).unwrap());
    a.release(false).unwrap();
    expect_ast_threads(before);
    assert_eq!(
        Lockspace::open("join").unwrap_err(),
        Error::Sys(Errno::ENOENT)
    );
    // The lockspace goes on without a thread after into_lockspace.
    let c = ThreadedLockspace::create("join", 0o600).unwrap();
    let c = c.into_lockspace().unwrap();
    expect_ast_threads(before);
    c.lock(b"r", Mode::Ex, LockOptions::new()).unwrap();
}

#[test]
fn a_dead_dlmd_ends_waits_with_enotconn_and_the_thread() {
    let mut dlmd = fresh("dead");
    let before = ast_threads();
    let a = ThreadedLockspace::create("dead", 0o600).unwrap();
    let b = Lockspace::open("dead").unwrap();
    b.lock(b"r", Mode::Ex, LockOptions::new()).unwrap().keep();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| a.lock(b"r", Mode::Ex, LockOptions::new()).map(|l| l.keep()));
        std::thread::sleep(Duration::from_millis(100));
        dlmd.kill();
        assert_eq!(waiter.join().unwrap(), Err(Error::Sys(Errno::ENOTCONN)));
    });
    assert_eq!(
        a.lock(b"q", Mode::Ex, LockOptions::new()).unwrap_err(),
        Error::Sys(Errno::ENOTCONN)
    );
    drop(a);
    drop(b);
    expect_ast_threads(before);
}

#[test]
fn lock_timeout_waits_for_the_thread_to_record_the_grant_or_cancels() {
    let _dlmd = fresh("timeout");
    let a = ThreadedLockspace::create("timeout", 0o600).unwrap();
    let b = Lockspace::open("timeout").unwrap();
    let held = b.lock(b"r", Mode::Ex, LockOptions::new()).unwrap();
    // Not released in time: the request is cancelled.
    let t = std::time::Instant::now();
    assert_eq!(
        a.lock_timeout(
            b"r",
            Mode::Ex,
            LockOptions::new(),
            Duration::from_millis(200)
        )
        .unwrap_err(),
        Error::TimedOut
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
    // Released while a waits: the grant, recorded by a's thread, ends the
    // wait.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            a.lock_timeout(b"r", Mode::Ex, LockOptions::new(), HANG)
                .expect("granted after the unlock")
        });
        std::thread::sleep(Duration::from_millis(50));
        held.unlock().unwrap();
        let l = waiter.join().unwrap();
        assert_eq!(l.mode(), Mode::Ex);
    });
    // Nothing of the cancelled request is left behind to take the lock
    // after the waiter's unlock.
    drop(b.try_lock(b"r", Mode::Ex, LockOptions::new()).unwrap());
}
