//! A cluster-wide counter kept in a lock value block: each run adds N
//! (default 1000) under an EX lock, one increment per lock, and prints
//! the total.
//!
//! Run against dlmd: start one with `cargo xtask demo` (or `dlm daemon`),
//! or point at one with `DLMD_SOCKET=/path/dlmd.sock DLM_BACKEND=dlmd`, then
//! `cargo run -p dlm-core --example counter -- 1000`. Runs in parallel add
//! up exactly.

use dlm_core::{LockOptions, Lockspace, Mode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    let ls = Lockspace::create("example-counter", 0o600)?;
    // An NL lock keeps the resource (and its LVB) alive between
    // increments of this process.
    let _keeper = ls.lock(b"counter", Mode::Nl, LockOptions::new())?;
    let mut last = 0;
    for _ in 0..n {
        let mut lock = ls.lock(b"counter", Mode::Ex, LockOptions::new().lvb())?;
        let value = u64::from_ne_bytes(lock.lvb()[..8].try_into()?) + 1;
        lock.lvb_mut()[..8].copy_from_slice(&value.to_ne_bytes());
        lock.unlock()?; // leaving EX with the LVB writes it
        last = value;
    }
    println!("counter: {last}");
    Ok(())
}
