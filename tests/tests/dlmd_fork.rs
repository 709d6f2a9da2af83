//! The thread id a dlmd request carries (the owner pid dlmd records on a
//! lock, as the kernel records the writer's) is cached per thread by the
//! client; a child of `fork()` must send its own, not the parent's. The
//! parent takes a lock (caching its id), forks, and the child takes a
//! lock: the dump shows each lock with its own process's pid. A plain
//! `main` (fork wants a process without the test harness's threads).

#![allow(unsafe_code)]

use dlm_core::transport::Control;
use dlm_core::{LockOptions, Lockspace, Mode, Name};
use std::process::ExitCode;

/// The pid on the dump line of the lock held on resource `res`.
fn pid_of(res: &str) -> Option<u32> {
    let text = Control::connect()
        .ok()?
        .dump(Some(&Name::lockspace(b"fork").ok()?))
        .ok()?;
    let mut in_res = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"resource") => in_res = words.get(1) == Some(&format!("\"{res}\"").as_str()),
            Some(&"granted") if in_res => {
                let at = words.iter().position(|w| *w == "pid")?;
                return words.get(at + 1)?.parse().ok();
            }
            _ => {}
        }
    }
    None
}

fn main() -> ExitCode {
    let _dlmd = dlm_tests::Dlmd::start_in_this_process("dlmd_fork");
    let ls = Lockspace::create("fork", 0o600).expect("create");
    let parent = ls
        .lock(b"parent", Mode::Ex, LockOptions::new())
        .expect("lock");
    assert_eq!(pid_of("parent"), Some(std::process::id()));

    // SAFETY: this process has no other threads (no test harness); the
    // child only uses its own new handle and leaves with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let ok = (|| {
            let ls = Lockspace::open("fork").ok()?;
            let l = ls.lock(b"child", Mode::Ex, LockOptions::new()).ok()?;
            let seen = pid_of("child");
            drop(l);
            Some(seen == Some(std::process::id()))
        })();
        // SAFETY: ends the child without running the parent's exit code.
        unsafe { libc::_exit(if ok == Some(true) { 0 } else { 1 }) };
    }
    assert!(child > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's lock did not carry the child's pid (status {status:#x})"
    );
    drop(parent);
    println!("dlmd_fork: parent and forked child each recorded with their own pid");
    ExitCode::SUCCESS
}
