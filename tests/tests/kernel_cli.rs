//! The `dlm` tool on the kernel DLM (dlm-cli's own tests run it on dlmd):
//! `dlm lock` holds an EX lock while its command runs, a second `dlm lock
//! -n` on the same name fails with exit status 1, and `dlm locks` prints
//! the kernel's debugfs dump (docs/kernel-lock-dump.md) with the held
//! lock: the resource name and granted mode EX (5), also as JSON;
//! `dlm lockspaces` lists the lockspace. Runs in a `cargo xtask vmtest`
//! guest (one node) where tests/vm/suite.sh put `dlm` on the PATH;
//! elsewhere it skips. A plain `main`.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// A guard against a hang, not a timing assertion.
const HANG: Duration = Duration::from_secs(60);

fn dlm(args: &[&str]) -> std::process::Output {
    Command::new("dlm").args(args).output().expect("run dlm")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn main() -> ExitCode {
    let have_dlm = Command::new("dlm")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if let Some(skip) = dlm_tests::single_node_kernel_skip(
        "kernel_cli",
        have_dlm,
        "the kernel DLM and the dlm tool on the PATH",
    ) {
        return skip;
    }
    // The holder: EX on "cli-res" in lockspace "kcli" until we kill it.
    let mut holder = Command::new("dlm")
        .args(["lock", "-l", "kcli", "cli-res", "--", "sleep", "600"])
        .spawn()
        .expect("spawn dlm lock");

    // Wait until the lock is held: `dlm lock -n` then fails with 1.
    let start = Instant::now();
    loop {
        let out = dlm(&["lock", "-n", "-l", "kcli", "cli-res", "--", "true"]);
        match out.status.code() {
            Some(1) => break,
            Some(0) => {}
            _ => panic!("dlm lock -n: {}", text(&out)),
        }
        assert!(start.elapsed() < HANG, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    let ls = dlm(&["lockspaces"]);
    assert!(ls.status.success(), "dlm lockspaces: {}", text(&ls));
    assert!(
        String::from_utf8_lossy(&ls.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some("kcli")),
        "kcli not listed: {}",
        text(&ls)
    );

    let dump = dlm(&["locks", "kcli"]);
    assert!(dump.status.success(), "dlm locks: {}", text(&dump));
    let out = String::from_utf8_lossy(&dump.stdout);
    // print_format2: ... sts grmode rqmode time_ms r_nodeid r_len r_name
    let line = out
        .lines()
        .find(|l| l.trim_end().ends_with("\"cli-res\"") || l.trim_end().ends_with("cli-res"))
        .unwrap_or_else(|| panic!("no line for cli-res: {}", text(&dump)));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert!(cols.len() >= 14, "short dump line {line:?}");
    assert_eq!(
        (cols[7], cols[8]),
        ("2", "5"),
        "sts granted, grmode EX: {line:?}"
    );

    let json = dlm(&["locks", "--json", "kcli"]);
    assert!(json.status.success(), "dlm locks --json: {}", text(&json));
    let j = String::from_utf8_lossy(&json.stdout);
    assert!(
        j.contains("\"lockspace\":\"kcli\"") || j.contains("\"lockspace\": \"kcli\""),
        "{}",
        text(&json)
    );
    assert!(j.contains("cli-res"), "{}", text(&json));

    // Killing the holder releases the lock (the kernel purges a closed
    // device's locks): `dlm lock -n` then succeeds.
    holder.kill().expect("kill holder");
    holder.wait().expect("reap holder");
    let out = dlm(&["lock", "-n", "-l", "kcli", "cli-res", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    println!("kernel_cli: dlm lock, lock -n, lockspaces, locks (text and JSON) ok");
    ExitCode::SUCCESS
}
