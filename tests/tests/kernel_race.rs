//! Two processes creating the same new lockspace at the same moment: on
//! Linux 6.1 this hangs the kernel's device registration (docs/semantics.md
//! X.2) unless creations are serialised, which our library does
//! with its node-wide creation lock (`kernel::CreationLock`). Here two
//! processes, released at the same instant, create each of several new
//! lockspaces through the Rust API and take a lock in it; all must
//! succeed. Runs against the kernel in a `cargo xtask vmtest` guest (one
//! node); elsewhere it skips. A plain `main`.

use dlm_core::transport::Control;
use dlm_core::{LockOptions, Lockspace, Mode, Name};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ROUNDS: u32 = 8;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

/// A racer: waits for the start instant, creates the lockspace, locks.
fn racer(ls: &str, start_ms: u128) -> ExitCode {
    while now_ms() < start_ms {
        std::hint::spin_loop();
    }
    let space = Lockspace::create(ls, 0o600).expect("create");
    let l = space
        .lock(b"r", Mode::Pr, LockOptions::new())
        .expect("lock");
    drop(l);
    println!("{ls}: created and locked by pid {}", std::process::id());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if let (Ok(ls), Ok(start)) = (std::env::var("KR_LS"), std::env::var("KR_START")) {
        return racer(&ls, start.parse().expect("start"));
    }
    if let Some(skip) = dlm_tests::single_node_kernel_skip("kernel_race", true, "the kernel DLM") {
        return skip;
    }
    let exe = std::env::current_exe().expect("exe");
    for round in 0..ROUNDS {
        let ls = format!("race{round}");
        let start = now_ms() + 300;
        let kids: Vec<_> = (0..2)
            .map(|_| {
                Command::new(&exe)
                    .env("KR_LS", &ls)
                    .env("KR_START", start.to_string())
                    .spawn()
                    .expect("spawn racer")
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().expect("wait").success(), "{ls}: a racer failed");
        }
        // Both creation counts are still held (the racers closed without
        // releasing): drop them.
        let control = Control::connect().expect("control");
        let name = Name::lockspace(ls.as_bytes()).expect("name");
        let minor = control.open_lockspace(&name).expect("open").minor();
        for _ in 0..2 {
            control.remove_lockspace(minor, true).expect("remove");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("kernel_race: {ROUNDS} rounds of two racing creators, all succeeded");
    ExitCode::SUCCESS
}
