//! Shell-level tests of `dlm`: real `dlm` processes against a real dlmd.

mod common;

use common::{HANG, dlm, holder, stop};
use dlm_tests::Dlmd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn four_parallel_lock_loops_increment_a_counter_file_exactly() {
    let dlmd = Dlmd::start("cli-counter");
    let dir = dlm_tests::scratch_dir("cli-counter-file");
    let file = dir.join("counter");
    std::fs::write(&file, "0\n").unwrap();
    let script = format!(
        "for i in $(seq 500); do {dlm} lock -l cli counter -- sh -c 'n=$(cat {f}); echo $((n+1)) > {f}' || exit 1; done",
        dlm = env!("CARGO_BIN_EXE_dlm"),
        f = file.display()
    );
    let loops: Vec<_> = (0..4)
        .map(|_| {
            Command::new("sh")
                .arg("-c")
                .arg(&script)
                .envs(dlmd.env())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut l in loops {
        assert!(l.wait().unwrap().success());
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "2000");
}

/// Sends `sig` to a process.
fn signal(pid: u32, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig)
        .unwrap();
}

/// `dlm lock -n` on `name` in lockspace "cli": its exit code.
fn try_lock(dlmd: &Dlmd, name: &str) -> Option<i32> {
    dlm(dlmd)
        .args(["lock", "-l", "cli", "-n", name, "--", "true"])
        .status()
        .unwrap()
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

/// Waits until lockspace "cli" has a waiting request.
fn wait_queued(dlmd: &Dlmd) {
    let start = Instant::now();
    while !dump(dlmd).contains("waiting lkid") {
        assert!(start.elapsed() < HANG, "the request never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The lock dump of lockspace "cli", as text.
fn dump(dlmd: &Dlmd) -> String {
    let out = dlm(dlmd).args(["locks", "cli"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A `dlm lock` whose command ignores SIGTERM, says "held", and runs until
/// `dir/stop` exists; it then writes `dir/ended` and exits with status 5.
/// (It gives up waiting after a minute or more, so that a failed test
/// leaves no process behind for long.)
fn stubborn_holder(
    dlmd: &Dlmd,
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> std::process::Child {
    let script = format!(
        "trap '' TERM; echo held; n=0; \
         while [ ! -e {d}/stop ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done; \
         touch {d}/ended; exit 5",
        d = dir.display()
    );
    let mut child = dlm(dlmd)
        .args(["lock", "-l", "cli"])
        .args(extra)
        .args([name, "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    child
}

/// While the command runs, `dlm lock -n` on its name keeps failing with
/// the conflict code (checked several times over a while, so that a
/// `dlm` that let go on the signal is caught).
fn assert_still_held(dlmd: &Dlmd, name: &str) {
    for _ in 0..10 {
        assert_eq!(
            try_lock(dlmd, name),
            Some(1),
            "the lock was released while the command still runs"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn sigterm_of_dlm_is_passed_to_the_command_and_the_lock_is_held_until_it_exits() {
    let dlmd = Dlmd::start("cli-term");
    let dir = dlm_tests::scratch_dir("cli-term-files");
    let mut held = stubborn_holder(&dlmd, &dir, "r", &[]);
    signal(held.id(), rustix::process::Signal::TERM);
    assert_still_held(&dlmd, "r");
    assert!(held.try_wait().unwrap().is_none(), "dlm exited on SIGTERM");
    std::fs::write(dir.join("stop"), "").unwrap();
    // dlm returns the command's status, and only once the lock is free.
    assert_eq!(held.wait().unwrap().code(), Some(5));
    assert!(dir.join("ended").exists());
    assert_eq!(try_lock(&dlmd, "r"), Some(0));
}

#[test]
fn signals_to_dlm_reach_the_command_pid() {
    let dlmd = Dlmd::start("cli-forward");
    let dir = dlm_tests::scratch_dir("cli-forward-files");
    let script = format!(
        "trap 'echo TERM >> {d}/got' TERM; trap 'echo HUP >> {d}/got' HUP; \
         trap 'echo INT >> {d}/got; exit 0' INT; echo held; \
         n=0; while [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done",
        d = dir.display()
    );
    let mut held = dlm(&dlmd)
        .args(["lock", "-l", "cli", "r", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(held.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let got = dir.join("got");
    let wait_lines = |n: usize| {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&got).unwrap_or_default();
            if text.lines().count() >= n {
                return text;
            }
            assert!(start.elapsed() < HANG, "the command got {text:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    signal(held.id(), rustix::process::Signal::TERM);
    assert_eq!(wait_lines(1), "TERM\n");
    signal(held.id(), rustix::process::Signal::HUP);
    assert_eq!(wait_lines(2), "TERM\nHUP\n");
    assert_eq!(try_lock(&dlmd, "r"), Some(1));
    signal(held.id(), rustix::process::Signal::INT);
    assert_eq!(held.wait().unwrap().code(), Some(0));
    assert_eq!(wait_lines(3), "TERM\nHUP\nINT\n");
    assert_eq!(try_lock(&dlmd, "r"), Some(0));
}

#[test]
fn sigkill_of_dlm_leaves_the_lock_with_the_command_until_it_exits() {
    let dlmd = Dlmd::start("cli-kill");
    let dir = dlm_tests::scratch_dir("cli-kill-files");
    let mut held = stubborn_holder(&dlmd, &dir, "r", &[]);
    held.kill().unwrap();
    held.wait().unwrap();
    // The command inherited the handle's sockets: dlmd still sees the
    // owner, and the lock stays.
    assert_still_held(&dlmd, "r");
    std::fs::write(dir.join("stop"), "").unwrap();
    wait_for_file(&dir.join("ended"));
    // The lock ends with the command's last close: at most a moment later.
    let ended = Instant::now();
    loop {
        match try_lock(&dlmd, "r") {
            Some(0) => break,
            Some(1) => assert!(
                ended.elapsed() < Duration::from_secs(1),
                "still held 1 s after the command ended"
            ),
            other => panic!("dlm lock -n: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_close_the_command_does_not_keep_the_lock() {
    let dlmd = Dlmd::start("cli-close");
    let dir = dlm_tests::scratch_dir("cli-close-files");
    let mut held = stubborn_holder(&dlmd, &dir, "r", &["-o"]);
    assert_eq!(try_lock(&dlmd, "r"), Some(1));
    held.kill().unwrap();
    held.wait().unwrap();
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-w", "10", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "-o: the lock died with dlm");
    std::fs::write(dir.join("stop"), "").unwrap();
    wait_for_file(&dir.join("ended"));
}

#[test]
fn a_signal_ignored_when_dlm_starts_stays_ignored() {
    // As a shell's background job: SIGINT ignored on entry neither cancels
    // the wait nor ends the command, which inherits the disposition.
    let dlmd = Dlmd::start("cli-ignored");
    let held = holder(&dlmd, "cli", "r");
    let mut cmd = dlm(&dlmd);
    // SAFETY: runs in the child before exec (after dlm()'s own reset);
    // signal() is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let waiter = cmd
        .args([
            "lock",
            "-l",
            "cli",
            "r",
            "--",
            "sh",
            "-c",
            "kill -INT $$; echo ran",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_queued(&dlmd);
    signal(waiter.id(), rustix::process::Signal::INT);
    // Still queued after the signal was delivered (dlm reads it at once
    // when it handles it; give it the time to act if it wrongly did).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        dump(&dlmd).contains("waiting lkid"),
        "SIGINT cancelled the wait"
    );
    stop(held);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
}

#[test]
fn a_signal_while_waiting_cancels_the_request_and_exits_128_plus_the_signal() {
    use rustix::process::Signal;
    let dlmd = Dlmd::start("cli-wait-signal");
    let held = holder(&dlmd, "cli", "r");
    for (sig, code) in [(Signal::TERM, 143), (Signal::INT, 130), (Signal::HUP, 129)] {
        let waiter = dlm(&dlmd)
            .args(["lock", "-l", "cli", "r", "--", "echo", "never"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Queued: the dump shows the waiting request.
        wait_queued(&dlmd);
        signal(waiter.id(), sig);
        let out = waiter.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{sig:?}: {out:?}");
        assert!(out.stdout.is_empty(), "the command ran");
        let text = dump(&dlmd);
        assert!(!text.contains("waiting"), "left queued: {text}");
    }
    // Nothing queued ahead: once the holder is gone, another client gets
    // it at once.
    stop(held);
    assert_eq!(try_lock(&dlmd, "r"), Some(0));
}

#[test]
fn timeout_values_are_checked_without_a_panic() {
    let dlmd = Dlmd::start("cli-timeouts");
    for bad in [
        "inf",
        "1e30",
        "-inf",
        "NaN",
        "-1",
        "-0.5",
        "31536000.5",
        "abc",
        "",
    ] {
        let out = dlm(&dlmd)
            .args(["lock", "-l", "cli", "-w", bad, "r", "--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "-w {bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "-w {bad:?}: {err}");
        assert!(err.starts_with("dlm: timeout"), "-w {bad:?}: {err}");
    }
    // Valid: fractions, 0 and exactly one year; the lock is free.
    for good in ["0", "0.25", "31536000", "1e-3"] {
        let status = dlm(&dlmd)
            .args(["lock", "-l", "cli", "-w", good, "r", "--", "true"])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0), "-w {good}");
    }
    // Held: 0 and a fraction time out with the conflict code.
    let held = holder(&dlmd, "cli", "r");
    for w in ["0", "0.1"] {
        let status = dlm(&dlmd)
            .args(["lock", "-l", "cli", "-w", w, "r", "--", "true"])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1), "-w {w}");
    }
    assert!(
        !dump(&dlmd).contains("waiting"),
        "a timed-out request stayed"
    );
    stop(held);
}

#[test]
fn shared_locks_have_two_holders_at_once_and_exclude_ex() {
    let dlmd = Dlmd::start("cli-shared");
    let dir = dlm_tests::scratch_dir("cli-shared-files");
    let a = stubborn_holder(&dlmd, &dir, "r", &["-s"]);
    // A second shared holder while the first holds: both at once.
    let b = stubborn_holder(&dlmd, &dir, "r", &["--shared"]);
    let text = dump(&dlmd);
    assert_eq!(text.matches("grmode PR").count(), 2, "{text}");
    assert_eq!(
        try_lock(&dlmd, "r"),
        Some(1),
        "EX while shared holders hold"
    );
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-x", "-n", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-s", "-n", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "a third reader");
    std::fs::write(dir.join("stop"), "").unwrap();
    for mut h in [a, b] {
        assert_eq!(h.wait().unwrap().code(), Some(5));
    }
    assert_eq!(try_lock(&dlmd, "r"), Some(0));
}

#[test]
fn conflict_exit_code_command_string_and_environment() {
    let dlmd = Dlmd::start("cli-flock-options");
    let held = holder(&dlmd, "cli", "r");
    let code = |args: &[&str]| {
        dlm(&dlmd)
            .args(["lock", "-l", "cli"])
            .args(args)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(code(&["-n", "-E", "42", "r", "--", "true"]), Some(42));
    assert_eq!(
        code(&[
            "--conflict-exit-code",
            "43",
            "-w",
            "0.05",
            "r",
            "--",
            "true"
        ]),
        Some(43)
    );
    stop(held);
    assert_eq!(code(&["-E", "42", "-n", "r", "--", "true"]), Some(0));
    // -c runs the string with sh -c; the status is the command's.
    assert_eq!(code(&["r", "-c", "exit 9"]), Some(9));
    assert_eq!(code(&["--command", "kill -KILL $$", "r"]), Some(128 + 9));
    // The command knows what it holds.
    for (args, mode) in [
        (&[][..], "EX"),
        (&["-s"][..], "PR"),
        (&["-x"][..], "EX"),
        (&["-m", "CW"][..], "CW"),
    ] {
        let out = dlm(&dlmd)
            .args(["lock", "-l", "cli"])
            .args(args)
            .args(["res", "-c", "echo $DLM_LOCKSPACE/$DLM_RESOURCE/$DLM_MODE"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("cli/res/{mode}\n"),
            "{args:?}"
        );
    }
    // The command without `--`, as flock takes it.
    let out = dlm(&dlmd)
        .args(["lock", "-l", "cli", "res", "echo", "a", "-n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a -n\n");
    // A command that is not there: one line, 127, and the lock is free.
    let out = dlm(&dlmd)
        .args(["lock", "-l", "cli", "res", "--", "/nonexistent/cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert_eq!(try_lock(&dlmd, "res"), Some(0));
}

#[test]
fn the_lock_is_free_when_dlm_returns_even_if_the_command_left_children() {
    let dlmd = Dlmd::start("cli-leftover");
    // The command leaves a background process holding the inherited fds.
    let out = dlm(&dlmd)
        .args([
            "lock",
            "-l",
            "cli",
            "r",
            "-c",
            "sleep 30 >/dev/null 2>&1 & echo $!",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        try_lock(&dlmd, "r"),
        Some(0),
        "dlm returned holding the lock"
    );
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    signal(pid, rustix::process::Signal::KILL);
}

#[test]
fn the_lock_dump_names_each_owners_command_line() {
    let dlmd = Dlmd::start("cli-dump-cmd");
    let held = holder(&dlmd, "cli", "res");
    let want = format!(
        "{} lock -l cli res -- sh -c echo held; exec sleep 60",
        env!("CARGO_BIN_EXE_dlm")
    );
    let text = dump(&dlmd);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("granted"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(&format!(" command \"{want}\"")), "{line}");
    let json = dlm(&dlmd)
        .args(["locks", "--json", "cli"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(json.contains(&format!("\"command\":\"{want}\"")), "{json}");
    stop(held);
}

#[test]
fn names_longer_than_64_bytes_are_refused_with_their_length() {
    let dlmd = Dlmd::start("cli-names");
    let long = "r".repeat(70);
    let out = dlm(&dlmd)
        .args(["lock", "-l", "cli", &long, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "dlm: resource name is 70 bytes; at most 64\n"
    );
    let out = dlm(&dlmd)
        .args(["lock", "-l", &"l".repeat(65), "r", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "dlm: lockspace name is 65 bytes; at most 64\n"
    );
    for sub in ["create", "release", "purge", "locks"] {
        let out = dlm(&dlmd).args([sub, &"l".repeat(70)]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "dlm: lockspace name is 70 bytes; at most 64\n",
            "{sub}"
        );
    }
    let ok = "r".repeat(64);
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", &ok, "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn nonblocking_exits_1_when_held_and_the_lock_is_released_on_sigterm() {
    let dlmd = Dlmd::start("cli-n");
    let mut held = holder(&dlmd, "cli", "r");
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-n", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    // A shared request is refused too; a different name is free.
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-m", "PR", "-n", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let status = dlm(&dlmd)
        .args([
            "lock", "-l", "cli", "-n", "other", "--", "sh", "-c", "exit 7",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7), "the command's own status");

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(held.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    held.wait().unwrap();
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-w", "10", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn wait_times_out_with_exit_1() {
    let dlmd = Dlmd::start("cli-w");
    let held = holder(&dlmd, "cli", "r");
    let start = Instant::now();
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-w", "0.5", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(start.elapsed() >= Duration::from_millis(500));
    stop(held);
}

#[test]
fn clear_messages_for_failures() {
    let dlmd = Dlmd::start("cli-errors");
    let out = dlm(&dlmd)
        .args(["lock", "-m", "XX", "r", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad mode"));

    let out = dlm(&dlmd).args(["release", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such lockspace"),
        "{out:?}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["lock", "r", "--", "true"])
        .env("DLM_BACKEND", "dlmd")
        .env("DLMD_SOCKET", "/nonexistent/dlmd.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no DLM reachable") && err.contains("/nonexistent/dlmd.sock"),
        "{err}"
    );

    // Permission denied for another user.
    assert!(
        dlm(&dlmd)
            .args(["create", "private", "--mode", "600"])
            .status()
            .unwrap()
            .success()
    );
    let mut as_nobody = dlm(&dlmd);
    as_nobody.args(["lock", "-l", "private", "r", "--", "true"]);
    std::os::unix::process::CommandExt::uid(&mut as_nobody, 65534);
    let out = as_nobody.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
}

#[test]
fn lockspaces_create_release_and_the_lock_dump() {
    let dlmd = Dlmd::start("cli-admin");
    assert!(
        dlm(&dlmd)
            .args(["create", "adm", "--exclusive"])
            .status()
            .unwrap()
            .success()
    );
    let out = dlm(&dlmd)
        .args(["create", "adm", "--exclusive"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let list = dlm(&dlmd).arg("lockspaces").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "adm");

    let held = holder(&dlmd, "cli", "res");
    let text = dlm(&dlmd).args(["locks", "cli"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("resource \"res\""), "{text}");
    assert!(
        text.contains("granted") && text.contains("grmode EX"),
        "{text}"
    );
    let json = dlm(&dlmd)
        .args(["locks", "--json", "cli"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&json.stdout);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], 1, "{json}");
    assert_eq!(v["lockspaces"][0]["name"], "cli", "{json}");
    stop(held);

    assert!(
        dlm(&dlmd)
            .args(["release", "adm"])
            .status()
            .unwrap()
            .success()
    );
    let list = dlm(&dlmd).arg("lockspaces").output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains("adm"));
}

#[test]
fn a_terminal_interrupt_reaches_the_command_once() {
    // dlm and its command in the foreground process group of a terminal of
    // their own: ^C sends SIGINT to both (si_code SI_KERNEL); dlm must not
    // send it again.
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    let dlmd = Dlmd::start("cli-tty");
    let dir = dlm_tests::scratch_dir("cli-tty-files");
    // SAFETY: posix_openpt returns a new fd (or -1) that we own.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(
        master >= 0,
        "posix_openpt: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh fd that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mfd = std::os::fd::AsRawFd::as_raw_fd(&master);
    // SAFETY: grantpt/unlockpt/ptsname on our pty master; ptsname's
    // static buffer is copied at once (no other thread calls it).
    let slave = unsafe {
        assert_eq!(libc::grantpt(mfd), 0);
        assert_eq!(libc::unlockpt(mfd), 0);
        std::ffi::CStr::from_ptr(libc::ptsname(mfd)).to_owned()
    };
    let slave: CString = slave;
    let script = format!(
        "trap 'echo INT >> {d}/got' INT; touch {d}/ready; n=0; \
         while [ ! -e {d}/stop ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done",
        d = dir.display()
    );
    let mut cmd = dlm(&dlmd);
    cmd.args(["lock", "-l", "cli", "r", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: runs in the child before exec: setsid, open and ioctl are
    // async-signal-safe, and `slave` was prepared before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(slave.as_ptr(), libc::O_RDWR);
            if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 || libc::dup2(fd, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut held = cmd.spawn().unwrap();
    wait_for_file(&dir.join("ready"));
    // ^C on the terminal.
    let mut m = std::fs::File::from(master);
    std::io::Write::write_all(&mut m, b"\x03").unwrap();
    wait_for_file(&dir.join("got"));
    // Time for a second, forwarded SIGINT to arrive if dlm sent one.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(try_lock(&dlmd, "r"), Some(1), "dlm let go on ^C");
    std::fs::write(dir.join("stop"), "").unwrap();
    assert_eq!(held.wait().unwrap().code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.join("got")).unwrap(),
        "INT\n",
        "the command got the terminal's SIGINT twice"
    );
}

#[test]
fn a_lockspace_only_root_may_create_is_named_with_the_command_to_run() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root to run dlm as another user");
        return;
    }
    // dlmd runs as root here: ordinary users may not create lockspaces.
    let dlmd = Dlmd::start("cli-create-perm");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_dlm"))
        .args(["lock", "-l", "team", "r", "--", "true"])
        .envs(dlmd.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("dlm: lockspace team does not exist, and only root")
            && err.contains("`dlm create team --mode 0666`")
            && err.contains("`sg GROUP -c 'dlm create team --mode 0660'`"),
        "{err}"
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_dlm"))
        .args(["create", "team", "--mode", "666"])
        .envs(dlmd.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "dlm: lockspace team: not permitted: creating and removing lockspaces needs root \
         (or dlmd's --admin-group)"
    );
}

#[test]
fn an_untrusted_discovered_socket_is_refused_with_its_reason() {
    if std::path::Path::new(dlm_core::dlmd::proto::SYSTEM_SOCKET).exists() {
        println!("skipped: a system dlmd socket is discovered first");
        return;
    }
    // $XDG_RUNTIME_DIR open to everyone: not trusted, nothing connects.
    let dir = std::env::temp_dir().join(format!("dlm-cli-xdg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["lock", "r", "--", "true"])
        .env("DLM_BACKEND", "dlmd")
        .env_remove("DLMD_SOCKET")
        .env("XDG_RUNTIME_DIR", &dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "dlm: not trusting the dlmd socket {0}/dlmd.sock: its directory {0} has mode 0777 \
             (open to group or others; it must be 0700)",
            dir.display()
        )
    );
}
