//! Blocking callbacks with the mode that is blocked: one handle holds EX
//! on a resource and gives it up when told that another wants it.
//!
//! Run against dlmd: start one with `cargo xtask demo` (or `dlm daemon`),
//! or point at one with `DLMD_SOCKET=/path/dlmd.sock DLM_BACKEND=dlmd`, then
//! `cargo run -p dlm-core --example bast`.

use dlm_core::{LockOptions, Lockspace, Mode};
use std::sync::mpsc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let holder = Lockspace::create("example-bast", 0o600)?;
    let (tx, rx) = mpsc::channel();
    let held = holder.lock(
        b"resource",
        Mode::Ex,
        LockOptions::new().on_blocking(move |mode| {
            let _ = tx.send(mode);
        }),
    )?;
    println!("holder: EX granted");

    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        let waiter = s.spawn(|| -> Result<(), dlm_core::Error> {
            let other = Lockspace::open("example-bast")?;
            let lock = other.lock(b"resource", Mode::Pr, LockOptions::new())?;
            println!("waiter: PR granted");
            lock.unlock()?;
            Ok(())
        });
        // No thread here: the holder dispatches its callbacks itself.
        let blocked = loop {
            holder.dispatch_timeout(Duration::from_millis(100))?;
            if let Ok(mode) = rx.try_recv() {
                break mode;
            }
        };
        println!("holder: blocking a {blocked:?} request; unlocking");
        held.unlock()?;
        waiter.join().expect("waiter thread")?;
        Ok(())
    })?;
    Ok(())
}
