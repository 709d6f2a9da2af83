//! Shell-level tests of `dlm`: real `dlm` processes against a real dlmd.

use dlm_tests::Dlmd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn dlm(dlmd: &Dlmd) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlm"));
    cmd.envs(dlmd.env());
    cmd
}

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

/// Starts `dlm lock … -- sleep 60` and waits until it holds the lock.
fn holder(dlmd: &Dlmd, name: &str) -> std::process::Child {
    let child = dlm(dlmd)
        .args([
            "lock",
            "-l",
            "cli",
            name,
            "--",
            "sh",
            "-c",
            "echo held; exec sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    child
}

#[test]
fn nonblocking_exits_1_when_held_and_the_lock_is_released_on_sigterm() {
    let dlmd = Dlmd::start("cli-n");
    let mut held = holder(&dlmd, "r");
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
    let mut held = holder(&dlmd, "r");
    let start = Instant::now();
    let status = dlm(&dlmd)
        .args(["lock", "-l", "cli", "-w", "0.5", "r", "--", "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(start.elapsed() >= Duration::from_millis(500));
    held.kill().unwrap();
    held.wait().unwrap();
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

    let mut held = holder(&dlmd, "res");
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
    assert!(
        json.starts_with("{\"lockspaces\":[{\"name\":\"cli\""),
        "{json}"
    );
    held.kill().unwrap();
    held.wait().unwrap();

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
