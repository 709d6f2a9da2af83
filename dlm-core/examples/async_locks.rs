//! The async API: twenty lock requests in flight at once on one
//! lockspace, from one task, then a contended name handed along in FIFO
//! order. Needs the `tokio` feature.
//!
//! Run against dlmd: start one with `cargo xtask demo` (or `dlm daemon`),
//! or point at one with `DLMD_SOCKET=/path/dlmd.sock DLM_BACKEND=dlmd`, then
//! `cargo run -p dlm-core --features tokio --example async_locks`.

use dlm_core::{AsyncLockspace, LockOptions, Mode};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ls = Arc::new(AsyncLockspace::create("example-async", 0o600)?);

    // Distinct names: all granted at once, the requests pipelined.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let ls = ls.clone();
        tasks.spawn(async move {
            let name = format!("item-{i}");
            let lock = ls
                .lock(name.as_bytes(), Mode::Ex, LockOptions::new())
                .await?;
            let id = lock.id();
            lock.unlock().await?;
            Ok::<_, dlm_core::Error>(id)
        });
    }
    let mut granted = 0;
    while let Some(res) = tasks.join_next().await {
        res??;
        granted += 1;
    }
    println!("{granted} locks granted and released");

    // One name: each task waits for the one before.
    for i in 0..5 {
        let ls = ls.clone();
        tasks.spawn(async move {
            let lock = ls.lock(b"shared", Mode::Ex, LockOptions::new()).await?;
            println!("task {i} holds the shared lock");
            lock.unlock().await?;
            Ok(0)
        });
    }
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    Ok(())
}
