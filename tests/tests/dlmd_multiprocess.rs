//! Multi-process tests of the dlmd backend through the Rust API: real
//! processes, a real dlmd started by the test, no mocks.

use dlm_core::{Errno, Error, LockOptions, Lockspace, Mode};
use dlm_tests::Dlmd;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn client(dlmd: &Dlmd, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlm-test-client"));
    cmd.args(args).envs(dlmd.env());
    cmd
}

/// Starts a client and waits for its first line of output.
fn spawn_until_line(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

#[test]
fn lvb_counter_six_processes_by_300_rounds() {
    let dlmd = Dlmd::start_in_this_process("lvb_counter");
    let ls = Lockspace::create("counter", 0o600).unwrap();
    // An LVB lives only while some lock exists on its resource.
    let mut keeper = ls.lock(b"ctr", Mode::Nl, LockOptions::new().lvb()).unwrap();
    let children: Vec<Child> = (0..6)
        .map(|_| {
            client(&dlmd, &["counter", "counter", "ctr", "300"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    keeper.convert(Mode::Pr).unwrap();
    let value = u64::from_ne_bytes(keeper.lvb()[..8].try_into().unwrap());
    assert_eq!(value, 1800);
    assert!(keeper.lvb_valid());
}

#[test]
fn sigkill_of_a_holder_lets_its_waiter_in() {
    let dlmd = Dlmd::start_in_this_process("sigkill");
    let ls = Lockspace::create("kill", 0o600).unwrap();
    let (mut holder, line) = spawn_until_line(client(&dlmd, &["hold", "kill", "r", "EX"]));
    assert!(line.starts_with("locked"), "{line}");
    assert_eq!(
        ls.try_lock(b"r", Mode::Pr, LockOptions::new()).unwrap_err(),
        Error::WouldBlock
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let lock = ls
        .lock_timeout(b"r", Mode::Ex, LockOptions::new(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(lock.mode(), Mode::Ex);
}

#[test]
fn persistent_lock_survives_its_holder_then_is_adopted_or_purged() {
    let dlmd = Dlmd::start_in_this_process("persistent");
    let ls = Lockspace::create("orphans", 0o600).unwrap();

    // Adoption.
    let out = client(&dlmd, &["hold", "orphans", "p", "EX", "persistent"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let orphan_id: u32 = String::from_utf8_lossy(&out.stdout).trim()["locked ".len()..]
        .parse()
        .unwrap();
    assert_eq!(
        ls.try_lock(b"p", Mode::Pr, LockOptions::new()).unwrap_err(),
        Error::WouldBlock
    );
    assert_eq!(
        ls.adopt(b"p", Mode::Pr, LockOptions::new()).unwrap_err(),
        Error::WouldBlock
    );
    assert_eq!(
        ls.adopt(b"zz", Mode::Ex, LockOptions::new()).unwrap_err(),
        Error::Sys(Errno::ENOENT)
    );
    let adopted = ls.adopt(b"p", Mode::Ex, LockOptions::new()).unwrap();
    assert_eq!(adopted.id(), orphan_id);
    adopted.unlock().unwrap();
    drop(ls.try_lock(b"p", Mode::Ex, LockOptions::new()).unwrap());

    // Purge by the dead holder's pid.
    let child = client(&dlmd, &["hold", "orphans", "q", "EX", "persistent"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        ls.try_lock(b"q", Mode::Ex, LockOptions::new()).unwrap_err(),
        Error::WouldBlock
    );
    ls.purge(0, pid + 999_999).unwrap();
    assert_eq!(
        ls.try_lock(b"q", Mode::Ex, LockOptions::new()).unwrap_err(),
        Error::WouldBlock
    );
    ls.purge(0, pid).unwrap();
    drop(ls.try_lock(b"q", Mode::Ex, LockOptions::new()).unwrap());
}

#[test]
fn unprivileged_user_cannot_open_a_0600_lockspace() {
    let dlmd = Dlmd::start_in_this_process("eacces");
    let _ls = Lockspace::create("private", 0o600).unwrap();
    let _shared = Lockspace::create("shared", 0o666).unwrap();
    let as_nobody = |name: &str| {
        let out =
            std::os::unix::process::CommandExt::uid(&mut client(&dlmd, &["open", name]), 65534)
                .output()
                .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(as_nobody("private"), Errno::EACCES.raw().to_string());
    assert_eq!(as_nobody("shared"), "ok");
}

#[test]
fn dlmd_killed_under_load_fails_every_client_with_enotconn() {
    let mut dlmd = Dlmd::start_in_this_process("killed");
    let ls = Lockspace::create("load", 0o600).unwrap();
    let mut churners: Vec<(Child, String)> = (0..3)
        .map(|_| spawn_until_line(client(&dlmd, &["churn", "load", "hot"])))
        .collect();
    for (_, line) in &churners {
        assert_eq!(line.trim(), "started");
    }
    std::thread::sleep(Duration::from_millis(100));
    dlmd.kill();
    for (child, _) in &mut churners {
        let mut rest = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
        assert_eq!(rest.trim(), Errno::ENOTCONN.raw().to_string());
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(
        ls.lock(b"x", Mode::Ex, LockOptions::new()).unwrap_err(),
        Error::Sys(Errno::ENOTCONN)
    );
    assert_eq!(ls.dispatch(), Err(Errno::ENOTCONN));
    drop(ls);

    // A restarted dlmd serves new lockspaces.
    drop(dlmd);
    let _dlmd = Dlmd::start_in_this_process("killed-restarted");
    let ls = Lockspace::create("fresh", 0o600).unwrap();
    drop(ls.lock(b"x", Mode::Ex, LockOptions::new()).unwrap());
    let _ = std::io::stdout().flush();
}
