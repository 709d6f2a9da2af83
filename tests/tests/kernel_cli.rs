//! The `dlm` tool on the kernel DLM (dlm-cli's own tests run it on dlmd):
//! `dlm lock` holds an EX lock while its command runs, a second `dlm lock
//! -n` on the same name fails with exit status 1, and `dlm locks` prints
//! the kernel's debugfs dump (docs/kernel-lock-dump.md) with the held
//! lock: the resource name and granted mode EX (5) and the owner's command
//! line, also as JSON, and leaves no debugfs mount behind; `dlm
//! lockspaces` lists the lockspace. SIGTERM to `dlm` while its command
//! (which ignores SIGTERM) runs keeps the lock until the command exits;
//! after SIGKILL of `dlm` the command's inherited lockspace device keeps
//! it, and the lock ends with the command. Runs in a `cargo xtask vmtest`
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

/// Whether debugfs is mounted at /sys/kernel/debug.
fn debugfs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .expect("read /proc/self/mounts")
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/kernel/debug") && l.contains("debugfs"))
}

/// `dlm lock -n` on `name` in lockspace kcli: its exit code.
fn try_lock(name: &str) -> Option<i32> {
    dlm(&["lock", "-n", "-l", "kcli", name, "--", "true"])
        .status
        .code()
}

/// Waits until `path` exists.
fn wait_for_file(path: &std::path::Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < HANG, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `dlm lock` on `name` with a command that ignores SIGTERM, writes
/// its pid to `dir/pid`, and runs until `dir/stop` exists (or a few
/// minutes passed); then it writes `dir/ended` and exits with 5.
fn stubborn_holder(dir: &std::path::Path, name: &str) -> (std::process::Child, u32) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    let script = format!(
        "trap '' TERM; echo $$ > {d}/pid.tmp; mv {d}/pid.tmp {d}/pid; n=0; \
         while [ ! -e {d}/stop ] && [ $n -lt 6000 ]; do sleep 0.05; n=$((n+1)); done; \
         touch {d}/ended; exit 5",
        d = dir.display()
    );
    let child = Command::new("dlm")
        .args(["lock", "-l", "kcli", name, "--", "sh", "-c", &script])
        .spawn()
        .expect("spawn dlm lock");
    wait_for_file(&dir.join("pid"));
    let pid = std::fs::read_to_string(dir.join("pid"))
        .expect("read pid")
        .trim()
        .parse()
        .expect("a pid");
    (child, pid)
}

/// The lock stays held: `dlm lock -n` fails with 1, again and again.
fn assert_still_held(name: &str) {
    for _ in 0..10 {
        assert_eq!(
            try_lock(name),
            Some(1),
            "the lock on {name} was released while the command runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to `dlm`: passed on to the command, which ignores it; the lock
/// stays until the command exits, and is free when `dlm` returns.
fn sigterm_keeps_the_lock() {
    let dir = std::env::temp_dir().join("kcli-term");
    let (mut held, _) = stubborn_holder(&dir, "term-res");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(held.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill -TERM");
    assert_still_held("term-res");
    assert!(
        held.try_wait().expect("try_wait").is_none(),
        "dlm died of SIGTERM"
    );
    std::fs::write(dir.join("stop"), "").expect("stop");
    assert_eq!(held.wait().expect("wait").code(), Some(5));
    assert_eq!(try_lock("term-res"), Some(0), "held after dlm returned");
}

/// SIGKILL of `dlm`: the command inherited the lockspace device, which
/// keeps the lock until the command exits.
fn sigkill_leaves_the_lock_with_the_command() {
    let dir = std::env::temp_dir().join("kcli-kill");
    let (mut held, pid) = stubborn_holder(&dir, "kill-res");
    // The command holds the kernel lockspace device open.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the command's fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        fds.iter().any(|p| p.ends_with("/dlm_kcli")),
        "the command has no lockspace device: {fds:?}"
    );
    held.kill().expect("kill -KILL");
    held.wait().expect("reap dlm");
    assert_still_held("kill-res");
    std::fs::write(dir.join("stop"), "").expect("stop");
    wait_for_file(&dir.join("ended"));
    let ended = Instant::now();
    loop {
        match try_lock("kill-res") {
            Some(0) => break,
            Some(1) => assert!(
                ended.elapsed() < Duration::from_secs(1),
                "kill-res still held 1 s after the command ended"
            ),
            other => panic!("dlm lock -n: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    sigterm_keeps_the_lock();
    sigkill_leaves_the_lock_with_the_command();

    // `dlm locks` must leave no debugfs mount behind: start without one
    // (in the guest only; a host's mount is left alone).
    let in_guest = std::env::var_os("DLM_VMTEST_NODE").is_some();
    if in_guest && debugfs_mounted() {
        let st = Command::new("umount").arg("/sys/kernel/debug").status();
        assert!(st.is_ok_and(|s| s.success()), "umount debugfs");
    }
    let debugfs_before = debugfs_mounted();
    // The holder: EX on "cli-res" in lockspace "kcli" until we stop it.
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
        .find(|l| {
            let name = l.split_whitespace().nth(13);
            name == Some("\"cli-res\"") || name == Some("cli-res")
        })
        .unwrap_or_else(|| panic!("no line for cli-res: {}", text(&dump)));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert!(cols.len() >= 14, "short dump line {line:?}");
    assert_eq!(
        (cols[7], cols[8]),
        ("2", "5"),
        "sts granted, grmode EX: {line:?}"
    );
    // The owner's command line, read by dlm from /proc.
    assert!(
        line.ends_with(" command \"dlm lock -l kcli cli-res -- sleep 600\""),
        "no command line: {line:?}"
    );
    assert_eq!(
        debugfs_mounted(),
        debugfs_before,
        "dlm locks left debugfs mounted"
    );

    // A waiter behind the holder: the typed dump shows it blocked by the
    // holder's lock, and both ages from the kernel's time column.
    let mut waiter = Command::new("dlm")
        .args(["lock", "-l", "kcli", "cli-res", "--", "true"])
        .spawn()
        .expect("spawn waiter");
    let start = Instant::now();
    let (dump, json) = loop {
        let json = dlm(&["locks", "--json", "kcli"]);
        assert!(json.status.success(), "dlm locks --json: {}", text(&json));
        let v: serde_json::Value = serde_json::from_slice(&json.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&json)));
        let n = v["lockspaces"][0]["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "cli-res"))
            .and_then(|r| r["locks"].as_array())
            .map_or(0, Vec::len);
        let waited = v["lockspaces"][0]["resources"][0]["locks"][1]["seconds"]
            .as_u64()
            .unwrap_or(0);
        if n == 2 && waited >= 2 {
            break (v, text(&json));
        }
        assert!(
            start.elapsed() < HANG,
            "no waiter aged 2 s in the dump: {}",
            text(&json)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(dump["version"], 1, "{json}");
    assert_eq!(dump["backend"], "kernel", "{json}");
    assert_eq!(dump["lockspaces"][0]["name"], "kcli", "{json}");
    let res = &dump["lockspaces"][0]["resources"][0];
    assert_eq!(res["name"], "cli-res", "{json}");
    assert_eq!(res["name_hex"], "636c692d726573", "{json}");
    let (held, wait) = (&res["locks"][0], &res["locks"][1]);
    assert_eq!(held["state"], "granted", "{json}");
    assert_eq!(held["grmode"], "EX", "{json}");
    assert_eq!(held["nodeid"], 0, "{json}");
    assert_eq!(held["pid"], holder.id(), "{json}");
    assert_eq!(
        held["command"], "dlm lock -l kcli cli-res -- sleep 600",
        "{json}"
    );
    assert!(held["seconds"].as_u64().unwrap() >= 2, "{json}");
    assert_eq!(held["blocked_by"], serde_json::json!([]), "{json}");
    assert_eq!(wait["state"], "waiting", "{json}");
    assert_eq!(wait["rqmode"], "EX", "{json}");
    assert_eq!(wait["grmode"], serde_json::Value::Null, "{json}");
    assert_eq!(wait["pid"], waiter.id(), "{json}");
    assert_eq!(
        wait["blocked_by"],
        serde_json::json!([held["lkid"].as_u64().unwrap()]),
        "{json}"
    );
    assert_eq!(dump["deadlocks"], serde_json::json!([]), "{json}");
    // --stuck 1: exit 1 with the waiter listed.
    let stuck = dlm(&["locks", "kcli", "--stuck", "1"]);
    assert_eq!(stuck.status.code(), Some(1), "{}", text(&stuck));
    assert_eq!(
        String::from_utf8_lossy(&stuck.stdout).lines().count(),
        1,
        "{}",
        text(&stuck)
    );
    assert_eq!(
        debugfs_mounted(),
        debugfs_before,
        "dlm locks --json left debugfs mounted"
    );
    // The waiter gives up on SIGTERM (its request is cancelled).
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(waiter.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill -TERM waiter");
    assert_eq!(waiter.wait().expect("reap waiter").code(), Some(128 + 15));

    // SIGTERM to the holder reaches `sleep`, which dies of it; dlm unlocks
    // and exits with 128+15: `dlm lock -n` then succeeds at once.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(holder.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill -TERM holder");
    assert_eq!(holder.wait().expect("reap holder").code(), Some(128 + 15));
    let out = dlm(&["lock", "-n", "-l", "kcli", "cli-res", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    println!(
        "kernel_cli: dlm lock, lock -n, lockspaces, locks (text, typed JSON with blocked_by and \
         seconds, --stuck, command lines, no debugfs left mounted), SIGTERM and SIGKILL of dlm \
         while the command runs ok"
    );
    ExitCode::SUCCESS
}
