//! The async Rust API (dlm-core's `tokio` feature) against a real dlmd:
//! many futures in flight on one lockspace, FIFO grants of contended
//! requests, cancellation of a dropped future, conversions, LVBs,
//! blocking callbacks with their mode, and a dead dlmd.

use dlm_core::{AsyncLockspace, Errno, Error, LockFlags, LockOptions, Lockspace, Mode, Status};
use dlm_tests::{BoxFut, Dlmd, InProcess, join_all, poll_each_once};
use std::sync::{Arc, Mutex};

/// A dlmd of this test's own, used by this process.
fn fresh(name: &str) -> InProcess {
    Dlmd::start_in_this_process(&format!("rust_async-{name}"))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

#[test]
fn a_hundred_futures_hold_locks_at_once_on_one_lockspace() {
    let _dlmd = fresh("hundred");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let ls = Arc::new(AsyncLockspace::create("hundred", 0o600).unwrap());
        let barrier = Arc::new(tokio::sync::Barrier::new(100));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100u32 {
            let (ls, barrier) = (ls.clone(), barrier.clone());
            tasks.spawn(async move {
                let name = format!("r{i}");
                let lock = ls
                    .lock(name.as_bytes(), Mode::Ex, LockOptions::new())
                    .await
                    .unwrap();
                assert_eq!(lock.mode(), Mode::Ex);
                // All 100 are held at the same time before any unlocks.
                barrier.wait().await;
                lock.unlock().await.unwrap()
            });
        }
        let mut n = 0;
        while let Some(status) = tasks.join_next().await {
            assert_eq!(status.unwrap(), Status::UNLOCKED);
            n += 1;
        }
        assert_eq!(n, 100);
        // Everything was unlocked: another owner gets every name at once.
        let other = Lockspace::open("hundred").unwrap();
        for i in 0..100 {
            drop(
                other
                    .try_lock(format!("r{i}").as_bytes(), Mode::Ex, LockOptions::new())
                    .unwrap(),
            );
        }
    });
}

#[test]
fn contended_futures_on_one_name_are_granted_in_request_order() {
    let _dlmd = fresh("fifo");
    current_thread().block_on(async {
        let a = AsyncLockspace::create("fifo", 0o600).unwrap();
        let b = AsyncLockspace::open("fifo").unwrap();
        let holder = b.lock(b"r", Mode::Ex, LockOptions::new()).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut futs: Vec<BoxFut<'_>> = (0..10)
            .map(|i| {
                let (a, order) = (&a, order.clone());
                Box::pin(async move {
                    let lock = a.lock(b"r", Mode::Ex, LockOptions::new()).await.unwrap();
                    order.lock().unwrap().push(i);
                    assert_eq!(lock.unlock().await.unwrap(), Status::UNLOCKED);
                }) as BoxFut<'_>
            })
            .collect();
        poll_each_once(&mut futs).await;
        assert!(order.lock().unwrap().is_empty());
        assert_eq!(holder.unlock().await.unwrap(), Status::UNLOCKED);
        join_all(futs).await;
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn replies_that_travel_together_reach_their_futures() {
    // dlmd sends the replies to pipelined requests together (PROTOCOL.md
    // "Replies travel together"): 64 requests sent while it is stopped
    // find it with all of them queued; each future must get its own
    // answer out of the shared messages.
    let dlmd = fresh("together");
    let pid = rustix::process::Pid::from_raw(dlmd.pid() as i32).expect("pid");
    current_thread().block_on(async {
        let ls = AsyncLockspace::create("together", 0o600).unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let mut futs: Vec<BoxFut<'_>> = (0..64u32)
            .map(|i| {
                let (ls, held) = (&ls, held.clone());
                Box::pin(async move {
                    let name = format!("t{i}");
                    let lock = ls
                        .lock(name.as_bytes(), Mode::Ex, LockOptions::new())
                        .await
                        .unwrap();
                    assert_eq!(lock.mode(), Mode::Ex);
                    held.lock().unwrap().push((i, lock.id()));
                    // Held until every future has its lock.
                    while held.lock().unwrap().len() < 64 {
                        tokio::task::yield_now().await;
                    }
                    // The unlocks' replies travel together too.
                    assert_eq!(lock.unlock().await.unwrap(), Status::UNLOCKED);
                }) as BoxFut<'_>
            })
            .collect();
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
        poll_each_once(&mut futs).await;
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
        join_all(futs).await;
        let mut ids: Vec<u32> = held.lock().unwrap().iter().map(|&(_, id)| id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 64, "every future got a lock of its own");
        // All were unlocked: another owner gets every name at once.
        let other = Lockspace::open("together").unwrap();
        for i in 0..64 {
            drop(
                other
                    .try_lock(format!("t{i}").as_bytes(), Mode::Ex, LockOptions::new())
                    .unwrap(),
            );
        }
    });
}

#[test]
fn dropping_a_pending_lock_future_cancels_the_request() {
    let _dlmd = fresh("cancel");
    current_thread().block_on(async {
        let a = AsyncLockspace::create("cancel", 0o600).unwrap();
        let b = AsyncLockspace::open("cancel").unwrap();
        let holder = b.lock(b"r", Mode::Ex, LockOptions::new()).await.unwrap();
        {
            let mut futs: Vec<BoxFut<'_>> = vec![Box::pin(async {
                let _ = a.lock(b"r", Mode::Ex, LockOptions::new()).await;
                panic!("the request must not be granted while b holds EX");
            })];
            poll_each_once(&mut futs).await;
            // Dropped while queued behind b's EX.
        }
        drop(holder);
        // The cancelled request left nothing: b gets EX again at once,
        // and a's next request on the name works.
        let again = b
            .try_lock(b"r", Mode::Ex, LockOptions::new())
            .await
            .unwrap();
        assert_eq!(
            a.try_lock(b"r", Mode::Pr, LockOptions::new())
                .await
                .unwrap_err(),
            Error::WouldBlock
        );
        drop(again);
        let mine = a.lock(b"r", Mode::Pr, LockOptions::new()).await.unwrap();
        assert_eq!(mine.mode(), Mode::Pr);
    });
}

#[test]
fn conversions_lvbs_and_try_variants() {
    let _dlmd = fresh("convert");
    current_thread().block_on(async {
        let a = AsyncLockspace::create("convert", 0o600).unwrap();
        let b = AsyncLockspace::open("convert").unwrap();
        let mut w = a
            .lock(b"r", Mode::Ex, LockOptions::new().lvb())
            .await
            .unwrap();
        assert!(w.lvb_valid());
        w.lvb_mut()[..3].copy_from_slice(b"abc");
        w.convert(Mode::Nl).await.unwrap(); // leaving EX writes the LVB
        assert_eq!(w.mode(), Mode::Nl);
        let mut r = b
            .lock(b"r", Mode::Pr, LockOptions::new().lvb())
            .await
            .unwrap();
        assert_eq!(&r.lvb()[..4], b"abc\0");
        assert_eq!(
            w.try_convert(Mode::Ex).await.unwrap_err(),
            Error::WouldBlock
        );
        assert_eq!(w.mode(), Mode::Nl);
        w.convert(Mode::Pr).await.unwrap();
        assert_eq!(
            r.try_convert(Mode::Ex).await.unwrap_err(),
            Error::WouldBlock
        );
        assert_eq!(w.unlock().await.unwrap(), Status::UNLOCKED);
        r.try_convert(Mode::Ex).await.unwrap();
        assert_eq!(r.mode(), Mode::Ex);
        assert_eq!(
            a.try_lock(b"r", Mode::Nl, LockOptions::new())
                .await
                .unwrap()
                .unlock()
                .await
                .unwrap(),
            Status::UNLOCKED
        );
        assert_eq!(
            a.lock(&[b'x'; 65], Mode::Ex, LockOptions::new())
                .await
                .unwrap_err(),
            Error::Sys(Errno::EINVAL)
        );
    });
}

#[test]
fn blocking_callbacks_carry_the_mode_and_are_dispatched_by_futures() {
    let _dlmd = fresh("bast");
    current_thread().block_on(async {
        let a = AsyncLockspace::create("bast", 0o600).unwrap();
        let b = AsyncLockspace::open("bast").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let held = a
            .lock(
                b"r",
                Mode::Ex,
                LockOptions::new().on_blocking(move |m| seen2.lock().unwrap().push(m)),
            )
            .await
            .unwrap();
        assert_eq!(
            b.try_lock(
                b"r",
                Mode::Pr,
                LockOptions::new().flags(LockFlags::NOQUEUEBAST)
            )
            .await
            .unwrap_err(),
            Error::WouldBlock
        );
        assert_eq!(a.dispatch().await.unwrap(), 1);
        assert_eq!(*seen.lock().unwrap(), vec![Mode::Pr]);
        // A queued EX request: the holder is told, with EX, by the
        // dispatch of a pending future of its own lockspace (a weaker CW
        // request would get none: one callback per mode level).
        let mut futs: Vec<BoxFut<'_>> = vec![Box::pin(async {
            let l = b.lock(b"r", Mode::Ex, LockOptions::new()).await.unwrap();
            assert_eq!(l.mode(), Mode::Ex);
        })];
        poll_each_once(&mut futs).await;
        let other = a.lock(b"s", Mode::Ex, LockOptions::new()).await.unwrap();
        assert_eq!(other.mode(), Mode::Ex);
        // (dlmd may have served a's request for "s" before b's.)
        while seen.lock().unwrap().len() < 2 {
            a.dispatch().await.unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), vec![Mode::Pr, Mode::Ex]);
        drop(other);
        drop(held);
        join_all(futs).await;
    });
}

#[test]
fn a_dead_dlmd_fails_pending_and_new_futures_with_enotconn() {
    let mut dlmd = fresh("dead");
    current_thread().block_on(async {
        let a = AsyncLockspace::create("dead", 0o600).unwrap();
        let b = Lockspace::open("dead").unwrap();
        let _held = b.lock(b"r", Mode::Ex, LockOptions::new()).unwrap().keep();
        let waiting = a.lock(b"r", Mode::Ex, LockOptions::new());
        let kill = async {
            tokio::task::yield_now().await;
            dlmd.kill();
        };
        let (res, ()) = tokio::join!(waiting, kill);
        assert_eq!(res.unwrap_err(), Error::Sys(Errno::ENOTCONN));
        assert_eq!(
            a.lock(b"q", Mode::Ex, LockOptions::new())
                .await
                .unwrap_err(),
            Error::Sys(Errno::ENOTCONN)
        );
    });
}
