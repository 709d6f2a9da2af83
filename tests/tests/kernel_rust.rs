//! The Rust API on the kernel DLM, which the rust_* tests exercise on
//! dlmd only: the blocking API (try_lock, conversions, LVB bytes across
//! handles, blocking callbacks with their mode), the async API (dlm-core's
//! `tokio` feature: contended futures granted in request order, a dropped
//! pending future cancels its request) and `dlm::ThreadedLockspace`
//! (callbacks on the lockspace's thread). Runs against the kernel in a
//! `cargo xtask vmtest` guest (one node); elsewhere it skips. A plain
//! `main`.

use dlm::ThreadedLockspace;
use dlm_core::{AsyncLockspace, Error, LockFlags, LockOptions, Lockspace, Mode, Status};
use dlm_tests::{BoxFut, join_all, poll_each_once};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A guard against a hang, not a timing assertion.
const HANG: Duration = Duration::from_secs(60);

fn blocking_api() {
    let a = Lockspace::create("krust", 0o600).expect("create");
    let b = Lockspace::open("krust").expect("open");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let mut held = a
        .lock(
            b"r",
            Mode::Ex,
            LockOptions::new()
                .lvb()
                .on_blocking(move |m| seen2.lock().unwrap().push(m)),
        )
        .expect("EX");
    held.lvb_mut()[..6].copy_from_slice(b"kernel");
    let noqueuebast = LockOptions::new().flags(LockFlags::NOQUEUEBAST);
    assert_eq!(
        b.try_lock(b"r", Mode::Pr, noqueuebast).unwrap_err(),
        Error::WouldBlock
    );
    // The failed NOQUEUE request sent the holder a blocking callback
    // with the blocked mode (NOQUEUEBAST).
    a.dispatch_timeout(HANG).expect("dispatch");
    assert_eq!(*seen.lock().unwrap(), vec![Mode::Pr]);
    // Leaving EX (here for PR) with VALBLK writes the LVB; b reads it.
    held.convert(Mode::Pr).expect("convert to PR");
    let r = b
        .lock(b"r", Mode::Pr, LockOptions::new().lvb())
        .expect("PR");
    assert!(r.lvb_valid());
    assert_eq!(&r.lvb()[..6], b"kernel");
    assert_eq!(r.unlock().expect("unlock"), Status::UNLOCKED);
    assert_eq!(held.unlock().expect("unlock"), Status::UNLOCKED);
    drop(b);
    a.release(false).expect("release");
    println!("kernel_rust: blocking API ok");
}

fn async_api() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let a = AsyncLockspace::create("kasync", 0o600).expect("create");
        let b = AsyncLockspace::open("kasync").expect("open");
        let holder = a
            .lock(b"r", Mode::Ex, LockOptions::new())
            .await
            .expect("EX");
        // Five contended requests, sent in order, granted in that order.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut futs: Vec<BoxFut<'_>> = Vec::new();
        for i in 0..5u32 {
            let (b, order) = (&b, order.clone());
            futs.push(Box::pin(async move {
                let l = b
                    .lock(b"r", Mode::Ex, LockOptions::new())
                    .await
                    .expect("queued EX");
                order.lock().unwrap().push(i);
                l.unlock().await.expect("unlock");
            }));
        }
        // Send them all (each sends its request on its first poll).
        poll_each_once(&mut futs).await;
        holder.unlock().await.expect("unlock");
        // (vmtest's per-test timeout guards against a hang here.)
        join_all(futs).await;
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);

        // A pending request whose future is dropped is cancelled: the
        // resource is free again at once afterwards.
        let holder = a
            .lock(b"c", Mode::Ex, LockOptions::new())
            .await
            .expect("EX");
        {
            let mut pending: BoxFut<'_> = Box::pin(async {
                let _ = b.lock(b"c", Mode::Ex, LockOptions::new()).await;
                unreachable!("granted while held");
            });
            poll_each_once(std::slice::from_mut(&mut pending)).await;
        }
        holder.unlock().await.expect("unlock");
        let again = b
            .try_lock(b"c", Mode::Ex, LockOptions::new())
            .await
            .expect("the cancelled request is gone");
        again.unlock().await.expect("unlock");
    });
    println!("kernel_rust: async API ok");
}

fn threaded_api() {
    let a = ThreadedLockspace::create("kthread", 0o600).expect("create");
    let b = Lockspace::open("kthread").expect("open");
    let (tx, rx) = mpsc::channel();
    let held = a
        .lock(b"r", Mode::Ex, LockOptions::new().blocking_sender(tx))
        .expect("EX");
    // The AST thread delivers the blocking callback by itself.
    let waiter = std::thread::spawn(move || {
        let l = b
            .lock(b"r", Mode::Cw, LockOptions::new())
            .expect("CW after the unlock");
        assert_eq!(l.mode(), Mode::Cw);
    });
    assert_eq!(rx.recv_timeout(HANG).expect("blocking callback"), Mode::Cw);
    held.unlock().expect("unlock");
    waiter.join().expect("waiter");
    // A conversion that cannot be granted at once fails and leaves the
    // mode alone.
    let mut l = a.lock(b"q", Mode::Pr, LockOptions::new()).expect("PR");
    let other = Lockspace::open("kthread").expect("open");
    let o = other.lock(b"q", Mode::Pr, LockOptions::new()).expect("PR");
    assert_eq!(l.try_convert(Mode::Ex).unwrap_err(), Error::WouldBlock);
    assert_eq!(l.mode(), Mode::Pr);
    drop(o);
    drop(l);
    println!("kernel_rust: threaded lockspace ok");
}

fn main() -> ExitCode {
    if let Some(skip) = dlm_tests::single_node_kernel_skip("kernel_rust", true, "the kernel DLM") {
        return skip;
    }
    blocking_api();
    async_api();
    threaded_api();
    ExitCode::SUCCESS
}
