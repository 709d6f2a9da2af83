//! What the kernel DLM does with a lock requested with
//! `DLM_LKF_FORCEUNLOCK` among its flags when its owner goes away (issue
//! 12, item 5). At close the kernel force-unlocks every non-persistent
//! lock of the device fd (`unlock_proc_lock`), and `validate_unlock_args`
//! refuses a FORCEUNLOCK on a lock whose own flags already hold it, so
//! such a lock may outlive its owner. This records it: a child process
//! takes EX on a resource with FORCEUNLOCK in the request's flags and
//! exits without unlocking; the parent then tries EX (NOQUEUE) on the same
//! resource, and tries again after a PURGE of all orphans. It prints what
//! it saw and checks that it is what both Debian kernels (6.1 and 6.12)
//! were seen to do: the lock stays, granted to nobody, through the exit
//! and a PURGE; only a forced release of the lockspace frees it. dlmd
//! releases it instead (docs/kernel-differences.md). Runs in a `cargo xtask vmtest` guest
//! (one node, a throwaway lockspace); elsewhere it skips. A plain `main`.

use dlm_core::{Error, LockFlags, LockOptions, Lockspace, Mode};
use std::process::ExitCode;

const LS: &str = "kforceunl";
const CHILD: &str = "KERNEL_FORCEUNLOCK_CHILD";

/// The child: EX with FORCEUNLOCK in the flags, then exit holding it.
fn child() -> ExitCode {
    let ls = Lockspace::open(LS).expect("child: open");
    let l = ls
        .lock(
            b"r",
            Mode::Ex,
            LockOptions::new().flags(LockFlags::FORCEUNLOCK),
        )
        .expect("child: EX with FORCEUNLOCK");
    println!("kernel_forceunlock: child holds lock {:#x}", l.id());
    // Exit without unlocking: the close of the device does the rest.
    std::process::exit(0);
}

fn try_ex(ls: &Lockspace) -> &'static str {
    match ls.try_lock(b"r", Mode::Ex, LockOptions::new()) {
        Ok(l) => {
            drop(l);
            "gone"
        }
        Err(Error::WouldBlock) => "kept",
        Err(e) => panic!("EX NOQUEUE: {e}"),
    }
}

fn main() -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    if let Some(skip) =
        dlm_tests::single_node_kernel_skip("kernel_forceunlock", true, "the kernel DLM")
    {
        return skip;
    }
    let ls = Lockspace::create(LS, 0o600).expect("create");
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD, "1")
        .status()
        .expect("child");
    assert!(status.success(), "child: {status}");
    let after_exit = try_ex(&ls);
    ls.purge(0, 0).expect("purge");
    let after_purge = try_ex(&ls);
    let release = match ls.release(true) {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("{e}"),
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "kernel_forceunlock: kernel {}: a FORCEUNLOCK lock after its owner exited: {after_exit}; \
         after PURGE: {after_purge}; forced release: {release}",
        kernel.trim()
    );
    assert_eq!(
        (after_exit, after_purge, release.as_str()),
        ("kept", "kept", "ok")
    );
    ExitCode::SUCCESS
}
