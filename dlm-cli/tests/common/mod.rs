//! What the `dlm` tests share: the `dlm` binary pointed at a test's
//! dlmd, a `dlm lock` that holds a lock until stopped, and the hang guard.

#![allow(dead_code)] // each test binary uses its own part

use dlm_tests::Dlmd;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A guard against a hang, not a timing assertion.
pub const HANG: Duration = Duration::from_secs(30);

/// `dlm` with the environment that points it at `dlmd`.
pub fn dlm(dlmd: &Dlmd) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlm"));
    cmd.envs(dlmd.env());
    // The signals dlm handles at their default disposition, whatever this
    // test inherited (a test run in the background of a non-interactive
    // shell starts with SIGINT and SIGQUIT ignored, and dlm and its
    // command would keep them so).
    // SAFETY: runs in the child before exec; signal() is
    // async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    cmd
}

/// `dlm lock -l LS NAME -- sh -c 'echo held; exec sleep 60'`, once it
/// holds the lock.
pub fn holder(dlmd: &Dlmd, ls: &str, name: &str) -> Child {
    let mut child = dlm(dlmd)
        .args([
            "lock",
            "-l",
            ls,
            name,
            "--",
            "sh",
            "-c",
            "echo held; exec sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut child).trim(), "held");
    child
}

/// The first line a child with piped stdout prints (the pipe stays open).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// Ends a `dlm lock` (such as a [`holder`]): SIGTERM reaches `dlm`, which
/// passes it on to the command and releases the lock once it exits.
pub fn stop(mut child: Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = child.wait();
}
