//! dlmd as systemd runs it, with the real binary and no systemd: the test
//! plays the service manager.
//!
//! - `Type=notify`: a `SOCK_DGRAM` socket bound by the test is
//!   `$NOTIFY_SOCKET` (a path, and an abstract `@name`); `READY=1`
//!   arrives only once dlmd's socket accepts (a connect right after it
//!   succeeds, with no retry), `STOPPING=1` at SIGTERM.
//! - socket activation: the test binds and listens, passes the socket as
//!   fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set to dlmd's pid; a
//!   client is served, no lock file is made, and the socket file stays
//!   when dlmd stops (it belongs to the socket unit).
//! - logging: `--log-file` is reopened on SIGHUP (log rotation) and dlmd
//!   keeps running; journald priority prefixes appear only when
//!   `$JOURNAL_STREAM` names dlmd's real stderr.
//! - arguments: clap's `--help` and `--version`, exit status 2 for bad
//!   ones, and `--daemon` passing its own arguments on.

mod common;

use common::{Control, connect, dlmd_command, temp_dir, try_connect, wait_listening};
use rustix::net::{self, AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for something dlmd must do before it counts as
/// hung (a failure bound, not a timing assertion).
const HANG: Duration = Duration::from_secs(60);

/// A dlmd child killed when the test ends, also by a failed assertion:
/// an orphaned dlmd would keep the test harness's output pipe open.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// Waits (bounded) for dlmd to exit and returns its status.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < HANG, "dlmd did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `file` contains `text`; returns its contents.
fn wait_for_text(file: &Path, text: &str) -> String {
    let start = Instant::now();
    loop {
        let got = std::fs::read_to_string(file).unwrap_or_default();
        if got.contains(text) {
            return got;
        }
        assert!(
            start.elapsed() < HANG,
            "{} never contained {text:?}; it has {got:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A bound `SOCK_DGRAM` socket standing in for systemd's notify socket.
fn notify_socket(addr: &SocketAddrUnix) -> OwnedFd {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    net::bind(&fd, addr).expect("bind the notify socket");
    net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, Some(HANG))
        .expect("timeout");
    fd
}

fn recv_notification(fd: &OwnedFd) -> String {
    let mut buf = [0u8; 4096];
    let (n, _) = net::recv(fd, &mut buf[..], RecvFlags::empty())
        .expect("no notification from dlmd (timed out)");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Runs dlmd under a notify listener at `notify_var` (the value of
/// `$NOTIFY_SOCKET`) and checks READY=1 and STOPPING=1.
fn ready_once_accepting(notify: &OwnedFd, notify_var: &str, dir: &Path) {
    let path = dir.join("dlmd.sock");
    let mut dlmd = dlmd_command(&path)
        .env("NOTIFY_SOCKET", notify_var)
        .stderr(Stdio::inherit())
        .spawn()
        .map(Guard)
        .expect("spawn dlmd");
    let first = recv_notification(notify);
    assert_eq!(first, "READY=1");
    // No retry: once READY=1 is sent, the socket accepts.
    let mut ctl = Control {
        fd: try_connect(&path).expect("connect right after READY=1"),
        seq: 0,
    };
    assert!(ctl.version().0 >= 0, "a client is served");
    signal(&dlmd, rustix::process::Signal::TERM);
    assert_eq!(recv_notification(notify), "STOPPING=1");
    assert!(wait_exit(&mut dlmd).success());
}

#[test]
fn ready_is_sent_once_the_socket_accepts() {
    let dir = temp_dir();
    let notify_path = dir.join("notify");
    let notify = notify_socket(&SocketAddrUnix::new(&notify_path).unwrap());
    ready_once_accepting(&notify, notify_path.to_str().unwrap(), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ready_goes_to_an_abstract_notify_socket_too() {
    let dir = temp_dir();
    let name = format!("dlmd-test-notify-{}", std::process::id());
    let notify = notify_socket(&SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap());
    ready_once_accepting(&notify, &format!("@{name}"), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A listening `SOCK_SEQPACKET` socket bound at `path`, as a socket unit
/// (`ListenSequentialPacket=`) makes it.
fn listening_socket(path: &Path) -> OwnedFd {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).expect("bind");
    net::listen(&fd, 16).expect("listen");
    fd
}

/// dlmd with `fd` passed as fd 3, `LISTEN_FDS=1` and `LISTEN_PID` set to
/// its own pid (a shell sets `$$` and execs dlmd, keeping fd 3).
fn activated_dlmd(fd: &OwnedFd, socket_arg: &Path, extra_env: &[(&str, &str)]) -> Command {
    let inner = dlmd_command(socket_arg);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_remove("DLMD_SOCKET")
        .env_remove("NOTIFY_SOCKET")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null());
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only fcntl/dup2, which are async-signal-safe; `raw` stays open in
    // the parent (borrowed by `fd`) until the child has been spawned.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn socket_activation_serves_the_passed_socket() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let listener = listening_socket(&path);
    let notify_path = dir.join("notify");
    let notify = notify_socket(&SocketAddrUnix::new(&notify_path).unwrap());
    // --socket names another path: the passed socket wins, and nothing
    // is created there.
    let unused = dir.join("unused.sock");
    let mut dlmd = activated_dlmd(
        &listener,
        &unused,
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    )
    .stderr(Stdio::inherit())
    .spawn()
    .map(Guard)
    .expect("spawn dlmd");
    drop(listener);
    assert_eq!(recv_notification(&notify), "READY=1");
    let mut ctl = Control::connect(&path);
    assert!(ctl.version().0 >= 0, "a client is served");
    assert_eq!(
        ctl.create("activated", dlm_core::LsFlags::empty(), 0o600),
        0
    );
    assert!(ctl.dump(Some("activated")).is_ok());
    for p in [
        &unused,
        &dir.join("dlmd.sock.lock"),
        &dir.join("unused.sock.lock"),
    ] {
        assert!(!p.exists(), "{} was created", p.display());
    }
    drop(ctl);
    signal(&dlmd, rustix::process::Signal::TERM);
    assert!(wait_exit(&mut dlmd).success());
    // The socket file belongs to the socket unit: it stays.
    let meta = std::fs::symlink_metadata(&path).expect("the socket file stays");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socket_activation_refuses_what_is_not_a_listening_seqpacket_socket() {
    let dir = temp_dir();
    let file = std::fs::File::create(dir.join("not-a-socket")).unwrap();
    let out = activated_dlmd(&file.into(), &dir.join("dlmd.sock"), &[])
        .output()
        .expect("run dlmd");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("socket activation"), "{stderr}");
    assert!(!dir.join("dlmd.sock").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reopens_the_log_file_and_dlmd_keeps_running() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let log = dir.join("dlmd.log");
    let mut dlmd = dlmd_command(&path)
        .args(["--log-level", "debug", "--log-file"])
        .arg(&log)
        .stderr(Stdio::piped())
        .spawn()
        .map(Guard)
        .expect("spawn dlmd");
    wait_listening(&path);
    let first = wait_for_text(&log, "listening on");
    assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
    assert!(
        first.lines().all(|l| l.contains(" dlmd: ")),
        "plain lines with a time: {first:?}"
    );
    // Rotate: rename, then SIGHUP.
    let rotated = dir.join("dlmd.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(&dlmd, rustix::process::Signal::HUP);
    let fresh = wait_for_text(&log, "reopened");
    assert!(!fresh.contains("listening on"), "a new file: {fresh:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    // The next line (a connection, at debug level) goes to the new file.
    let conn = connect(&path);
    wait_for_text(&log, "connection");
    drop(conn);
    assert!(dlmd.try_wait().unwrap().is_none(), "SIGHUP stopped dlmd");
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        old,
        "nothing more went to the renamed file"
    );
    signal(&dlmd, rustix::process::Signal::TERM);
    assert!(wait_exit(&mut dlmd).success());
    wait_for_text(&log, "shutting down");
    // Nothing went to stderr: the log file has it all.
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut dlmd.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(stderr, "");
    let _ = std::fs::remove_dir_all(&dir);
}

/// dlmd's first stderr line, with `$JOURNAL_STREAM` set to `journal`
/// (`None`: the real `DEV:INODE` of that stderr file).
fn first_stderr_line(dir: &Path, journal: Option<&str>) -> String {
    let path = dir.join("dlmd.sock");
    let err_path = dir.join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let meta = err.metadata().unwrap();
    let stream = journal.map_or_else(|| format!("{}:{}", meta.dev(), meta.ino()), str::to_string);
    let mut dlmd = dlmd_command(&path)
        .args(["--log-level", "info"])
        .env("JOURNAL_STREAM", stream)
        .stderr(err)
        .spawn()
        .map(Guard)
        .expect("spawn dlmd");
    wait_listening(&path);
    let text = wait_for_text(&err_path, "\n");
    signal(&dlmd, rustix::process::Signal::TERM);
    assert!(wait_exit(&mut dlmd).success());
    text.lines().next().unwrap().to_string()
}

#[test]
fn journal_priorities_only_on_the_journal_stream() {
    let dir = temp_dir();
    let line = first_stderr_line(&dir, None);
    assert!(line.starts_with("<6>listening on "), "{line:?}");
    // Inherited from a parent, naming another stream: plain lines.
    let line = first_stderr_line(&dir, Some("1:1"));
    assert!(line.starts_with("dlmd: info: listening on "), "{line:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_and_version_are_clap_s() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dlmd"))
            .args(args)
            .output()
            .expect("run dlmd")
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage: dlmd [OPTIONS]"), "{text}");
    for option in [
        "--foreground",
        "--daemon",
        "--socket",
        "--log-level",
        "--log-file",
        "--admin-group",
        "--max-lockspaces-per-uid",
        "--max-locks-per-uid",
        "--max-connections-per-uid",
        "--dump",
        "--json",
        "--version",
    ] {
        assert!(text.contains(option), "--help lacks {option}");
    }
    // As before clap, a later option overrides an earlier one.
    let again = run(&["--log-level", "warn", "--log-level", "debug", "--help"]);
    assert!(again.status.success(), "{again:?}");
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("dlmd {}\n", env!("CARGO_PKG_VERSION"))
    );
    for bad in [
        &["--json"][..],
        &["--log-level", "loud"],
        &["--max-locks-per-uid", "-1"],
        &["--no-such-option"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{bad:?}: {stderr}");
    }
}

#[test]
fn daemon_passes_its_arguments_and_leaves_stderr_with_a_log_file() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let log = dir.join("dlmd.log");
    let out = Command::new(env!("CARGO_BIN_EXE_dlmd"))
        .arg("--daemon")
        .arg("--socket")
        .arg(&path)
        .arg("--log-file")
        .arg(&log)
        .args(["--log-level", "debug", "--max-locks-per-uid", "unlimited"])
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        // output() returns only when every holder of the pipes is gone:
        // the detached dlmd must not keep our stderr.
        .output()
        .expect("run dlmd --daemon");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    let conn = connect(&path);
    // --log-level debug reached the child: connections are logged.
    wait_for_text(&log, "connection");
    drop(conn);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    wait_for_text(&log, "shutting down");
    let _ = std::fs::remove_dir_all(&dir);
}
