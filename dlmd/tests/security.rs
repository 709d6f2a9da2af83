//! The security model of README "Security model" against the real dlmd
//! binary and real second users (`setpriv`): which sockets a client
//! trusts, who may connect, create, remove and open. Every test needs
//! root (to become other users) and skips with a printed reason
//! otherwise.
//!
//! Users: 65534 plays the attacker (or an ordinary user), 65533 the
//! victim (no `XDG_RUNTIME_DIR`, so it discovers `/tmp/dlmd-65533`),
//! 65532 and 65531 are groups.

mod common;

use common::*;
use dlm_core::{LockFlags, LsFlags, Mode, RemoveFlags, Status};
use rustix::net::{self, AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

const EPERM: i64 = -(libc::EPERM as i64);
const ATTACKER: u32 = 65534;
const VICTIM: u32 = 65533;
const ADMIN_GROUP: u32 = 65532;

/// The tests that use `/tmp/dlmd-65533` run one at a time.
static VICTIM_DIR: Mutex<()> = Mutex::new(());

fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    println!("{test}: skipped: needs root to run processes as other users");
    false
}

/// `setpriv` running `cmd` as `uid` (group `uid`), with exactly the
/// supplementary `groups`.
fn as_user(uid: u32, groups: &[u32], program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg("--").arg(program);
    cmd.env_remove("DLMD_SOCKET")
        .env_remove("XDG_RUNTIME_DIR")
        .env("DLM_BACKEND", "dlmd")
        .stdin(Stdio::null());
    cmd
}

/// This test binary's `helper` in `mode`, as `uid` with `groups`.
fn helper_as(uid: u32, groups: &[u32], mode: &str) -> Command {
    let mut cmd = as_user(uid, groups, &std::env::current_exe().unwrap());
    cmd.args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env("DLMD_TEST_HELPER", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The `helper: KEY VALUE` lines of a helper's output.
fn lines(out: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.split_once("helper: ").map(|(_, rest)| rest))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn run_helper(mut cmd: Command) -> std::collections::HashMap<String, String> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "helper failed: {out:?}");
    lines(&out.stdout)
}

/// Not a test by itself: the child process of the tests.
#[test]
fn helper() {
    let Ok(mode) = std::env::var("DLMD_TEST_HELPER") else {
        return;
    };
    let socket = std::env::var_os("DLMD_TEST_SOCKET").map(PathBuf::from);
    match mode.as_str() {
        // A lock manager an attacker runs: it records how many bytes
        // each client sends, until a client sends "END".
        "fake-server" => fake_server(&socket.unwrap()),
        // A client that discovers its dlmd (no DLMD_SOCKET).
        "victim" => {
            let r = dlm_core::transport::Control::connect();
            println!("helper: connect {}", r.err().map_or(0, |e| e.raw()));
            let why = dlm_core::transport::dlmd_refusal();
            println!("helper: refusal {}", why.map_or("none".into(), |w| w.0));
        }
        // Raw protocol requests of an ordinary user on a root dlmd.
        "user" => {
            let path = socket.unwrap();
            let mut ctl = Control::connect(&path);
            let open = |ls: &str| Handle::try_open(&path, ls).map(|_| 0).unwrap_or_else(|e| e);
            for ls in ["ls600", "ls660", "ls666", "mine"] {
                println!("helper: open-{ls} {}", open(ls));
                println!(
                    "helper: create-{ls} {}",
                    ctl.create(ls, LsFlags::empty(), 0o666)
                );
            }
            let minor = std::env::var("DLMD_TEST_MINOR").unwrap().parse().unwrap();
            println!(
                "helper: remove {}",
                ctl.remove(minor, RemoveFlags::FORCEFREE)
            );
            let mut h = Handle::open(&path, "ls666");
            let lkid = h.lock("r", Mode::Ex, LockFlags::empty(), 1);
            let granted = lkid > 0 && h.result().status == Status::GRANTED;
            println!("helper: lock666 {}", i64::from(granted));
            println!(
                "helper: unlock666 {}",
                h.unlock(lkid as u32, LockFlags::empty(), 2)
            );
            let all = ctl.dump(None).unwrap();
            for ls in ["ls600", "ls660", "ls666"] {
                println!("helper: dump-{ls} {}", all.contains(&format!("\"{ls}\"")));
            }
        }
        // A member of the admin group.
        "admin" => {
            let path = socket.unwrap();
            let mut ctl = Control::connect(&path);
            let m = ctl.create("adm660", LsFlags::empty(), 0o660);
            println!("helper: create {}", i64::from(m >= 0));
            let root = std::env::var("DLMD_TEST_MINOR").unwrap().parse().unwrap();
            println!(
                "helper: remove-root {}",
                ctl.remove(root, RemoveFlags::empty())
            );
        }
        "open" => {
            let path = socket.unwrap();
            let ls = std::env::var("DLMD_TEST_LS").unwrap();
            let r = Handle::try_open(&path, &ls)
                .map(|_| 0)
                .unwrap_or_else(|e| e);
            println!("helper: open {r}");
        }
        // A raw connection: a reply, or end of stream.
        "version" => {
            let fd = connect(&socket.unwrap());
            let version = msg(dlm_core::dlmd::proto::Op::Version, 1, &[]);
            // dlmd may close before the request is even sent (EPIPE).
            let answer = match net::send(&fd, &version, net::SendFlags::NOSIGNAL) {
                Err(_) => 99,
                // A close with our request unread may read as a reset
                // (ECONNRESET) rather than end of stream: both are "closed".
                Ok(_) => {
                    let mut buf = [0u8; 256];
                    match net::recv(&fd, &mut buf, net::RecvFlags::empty()) {
                        Ok((n, _)) if n > 0 => {
                            dlm_core::dlmd::proto::parse_reply(&buf[..n], 1).map_or(-1, |r| r.0)
                        }
                        _ => 99,
                    }
                }
            };
            println!("helper: version {answer}");
        }
        other => panic!("unknown helper mode {other}"),
    }
}

fn fake_server(path: &Path) {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
    net::listen(&fd, 16).unwrap();
    println!("helper: listening 1");
    loop {
        let c = net::accept(&fd).unwrap();
        let limit = Some(std::time::Duration::from_secs(30));
        net::sockopt::set_socket_timeout(&c, net::sockopt::Timeout::Recv, limit).unwrap();
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            match net::recv(&c, &mut buf[..], RecvFlags::empty()) {
                Ok((n, _)) if &buf[..n] == b"END" => {
                    println!("helper: done 1");
                    return;
                }
                Ok((0, _)) | Err(_) => break,
                Ok((n, _)) => total += n,
            }
        }
        println!("helper: received {total}");
    }
}

/// A child process killed when the test ends, even by a panic (so that
/// no daemon outlives its test).
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The attacker's fake lock manager on `path`, started as `ATTACKER`.
struct FakeServer {
    child: Kill,
    path: PathBuf,
}

impl FakeServer {
    fn start(path: &Path) -> FakeServer {
        let mut child = Kill(
            helper_as(ATTACKER, &[], "fake-server")
                .env("DLMD_TEST_SOCKET", path)
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(child.0.stdout.as_mut().unwrap());
        let mut line = String::new();
        while !line.contains("helper: listening") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "fake server ended");
        }
        FakeServer {
            child,
            path: path.to_owned(),
        }
    }

    /// Ends the server (after every earlier connection was handled) and
    /// returns the bytes each client sent.
    fn finish(mut self) -> Vec<usize> {
        let fd = connect(&self.path);
        send(&fd, b"END");
        let mut out = String::new();
        self.child
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(self.child.0.wait().unwrap().success());
        assert!(out.contains("helper: done"), "{out}");
        out.lines()
            .filter_map(|l| l.strip_prefix("helper: received "))
            .map(|n| n.parse().unwrap())
            .collect()
    }
}

/// Runs the victim's discovery: (errno of connect, the refusal text).
fn victim() -> (i32, String) {
    let r = run_helper(helper_as(VICTIM, &[], "victim"));
    (r["connect"].parse().unwrap(), r["refusal"].clone())
}

/// `dlmd --dump` as the victim (a discovering client too): its stderr.
fn victim_dump() -> String {
    let out = as_user(VICTIM, &[], Path::new(env!("CARGO_BIN_EXE_dlmd")))
        .arg("--dump")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

fn victim_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/dlmd-{VICTIM}"))
}

fn clean_victim_dir() {
    let d = victim_dir();
    if std::fs::symlink_metadata(&d).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&d).unwrap();
    } else {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// A system dlmd's socket would be discovered before the per-user path.
fn system_socket_absent(test: &str) -> bool {
    if Path::new(dlm_core::dlmd::proto::SYSTEM_SOCKET).exists() {
        println!(
            "{test}: skipped: {} exists, so clients use it before the per-user path",
            dlm_core::dlmd::proto::SYSTEM_SOCKET
        );
        return false;
    }
    true
}

#[test]
fn a_per_user_directory_made_by_another_user_is_refused_before_connecting() {
    if !root_or_skip("attacker dir") || !system_socket_absent("attacker dir") {
        return;
    }
    let _serial = VICTIM_DIR.lock().unwrap_or_else(|e| e.into_inner());
    clean_victim_dir();
    // The attacker made /tmp/dlmd-65533 first and listens in it.
    let dir = victim_dir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&dir, ATTACKER);
    let fake = FakeServer::start(&dir.join("dlmd.sock"));
    let (errno, why) = victim();
    let dump = victim_dump();
    let sent = fake.finish();
    clean_victim_dir();
    assert_eq!(errno, libc::EACCES, "{why}");
    assert_eq!(
        why,
        format!(
            "not trusting the dlmd socket /tmp/dlmd-{VICTIM}/dlmd.sock: its directory \
             /tmp/dlmd-{VICTIM} is owned by uid {ATTACKER} (nobody), not uid {VICTIM}"
        )
    );
    assert_eq!(dump, format!("dlmd: {why}"));
    assert!(sent.is_empty(), "no client may even connect: {sent:?}");
}

#[test]
fn a_per_user_symlink_made_by_another_user_is_refused_before_connecting() {
    if !root_or_skip("attacker symlink") || !system_socket_absent("attacker symlink") {
        return;
    }
    let _serial = VICTIM_DIR.lock().unwrap_or_else(|e| e.into_inner());
    clean_victim_dir();
    // The attacker's symlink points to a directory that looks right
    // (the victim's uid, 0700) with the attacker's server in it: refused
    // for being a symlink.
    let target = temp_dir();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
    let fake = FakeServer::start(&target.join("dlmd.sock"));
    chown(&target, VICTIM);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&target, victim_dir()).unwrap();
    chown(&victim_dir(), ATTACKER);
    let (errno, why) = victim();
    // Let the server be reached again to end it.
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sent = fake.finish();
    clean_victim_dir();
    let _ = std::fs::remove_dir_all(&target);
    assert_eq!(errno, libc::EACCES, "{why}");
    assert_eq!(
        why,
        format!(
            "not trusting the dlmd socket /tmp/dlmd-{VICTIM}/dlmd.sock: its directory \
             /tmp/dlmd-{VICTIM} is a symlink"
        )
    );
    assert!(sent.is_empty(), "no client may even connect: {sent:?}");
}

#[test]
fn another_users_server_is_refused_before_anything_is_sent() {
    if !root_or_skip("attacker server") || !system_socket_absent("attacker server") {
        return;
    }
    let _serial = VICTIM_DIR.lock().unwrap_or_else(|e| e.into_inner());
    clean_victim_dir();
    // The victim's directory is right, but the attacker's server listens
    // in it (bound while the directory was open).
    let dir = victim_dir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let fake = FakeServer::start(&dir.join("dlmd.sock"));
    chown(&dir, VICTIM);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (errno, why) = victim();
    let dump = victim_dump();
    let sent = fake.finish();
    clean_victim_dir();
    assert_eq!(errno, libc::EACCES, "{why}");
    assert_eq!(
        why,
        format!(
            "not trusting the dlmd socket /tmp/dlmd-{VICTIM}/dlmd.sock: the server runs as \
             uid {ATTACKER} (nobody), not uid {VICTIM} or root"
        )
    );
    assert_eq!(dump, format!("dlmd: {why}"));
    // Connected (to learn the server's uid), then closed: nothing sent.
    assert!(!sent.is_empty(), "the victim connected");
    assert!(sent.iter().all(|&n| n == 0), "bytes sent: {sent:?}");
}

#[test]
fn the_victims_own_dlmd_is_trusted() {
    if !root_or_skip("own dlmd") || !system_socket_absent("own dlmd") {
        return;
    }
    let _serial = VICTIM_DIR.lock().unwrap_or_else(|e| e.into_inner());
    clean_victim_dir();
    let child = Kill(
        as_user(VICTIM, &[], Path::new(env!("CARGO_BIN_EXE_dlmd")))
            .args(["--foreground", "--log-level", "warn"])
            .spawn()
            .unwrap(),
    );
    wait_listening(&victim_dir().join("dlmd.sock"));
    let (errno, why) = victim();
    drop(child);
    clean_victim_dir();
    assert_eq!((errno, why.as_str()), (0, "none"));
}

#[test]
fn the_system_socket_needs_a_root_directory_and_a_root_server() {
    use dlm_core::dlmd::client::connect_checked;
    use dlm_core::dlmd::proto::{ConnectError, SocketPath, Trust};
    if !root_or_skip("system socket") {
        return;
    }
    // The checks of /run/dlmd, on a directory of this test's own.
    let dir = temp_dir();
    let sys = SocketPath {
        path: dir.join("dlmd.sock"),
        trust: Trust::System,
    };
    let refused = |why: &str| {
        let e = connect_checked(&sys).unwrap_err();
        assert!(
            matches!(&e, ConnectError::Untrusted(u) if u.0.ends_with(why)),
            "{e:?} does not end with {why:?}"
        );
    };
    let fake = FakeServer::start(&sys.path);
    // temp_dir() is 0777: writable by others.
    refused("has mode 0777 (writable by group or others)");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&dir, ATTACKER);
    refused(&format!(
        "is owned by uid {ATTACKER} (nobody), not uid 0 (root)"
    ));
    chown(&dir, 0);
    refused(&format!(
        "the server runs as uid {ATTACKER} (nobody), not root"
    ));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(fake.finish(), [0], "one connection, nothing sent");
    // A root dlmd in a root 0755 directory is trusted.
    let mut d = Daemon::start("dlmd");
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sys = SocketPath {
        path: d.path.clone(),
        trust: Trust::System,
    };
    assert!(connect_checked(&sys).is_ok());
    d.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ordinary_users_cannot_create_or_remove_on_a_root_dlmd() {
    if !root_or_skip("create/remove") {
        return;
    }
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("ls600", LsFlags::empty(), 0) >= 0);
    assert!(ctl.create("ls660", LsFlags::empty(), 0o660) >= 0);
    let m666 = ctl.create("ls666", LsFlags::empty(), 0o666);
    assert!(m666 >= 0);
    let r = run_helper({
        let mut c = helper_as(ATTACKER, &[], "user");
        c.env("DLMD_TEST_SOCKET", &d.path)
            .env("DLMD_TEST_MINOR", m666.to_string());
        c
    });
    let eperm = EPERM.to_string();
    let eacces = EACCES.to_string();
    let enoent = ENOENT.to_string();
    for (k, v) in [
        ("open-ls600", &eacces),
        ("open-ls660", &eacces),
        ("open-ls666", &"0".to_string()),
        ("open-mine", &enoent),
        // CREATE needs root (or the admin group), new or existing.
        ("create-ls600", &eperm),
        ("create-ls660", &eperm),
        ("create-ls666", &eperm),
        ("create-mine", &eperm),
        ("remove", &eperm),
        // A 0666 lockspace made by root is usable by everyone.
        ("lock666", &"1".to_string()),
        ("unlock666", &"0".to_string()),
    ] {
        assert_eq!(&r[k], v, "{k} in {r:?}");
    }
    // The dump lists only what they may open.
    let dumped = [&r["dump-ls600"], &r["dump-ls660"], &r["dump-ls666"]];
    assert_eq!(dumped, ["false", "false", "true"], "{r:?}");
    // Nothing of theirs stayed: ls666 has its single creation count.
    assert_eq!(ctl.remove(m666 as u32, RemoveFlags::empty()), 0);
    assert_eq!(open_raw(&d.path, "ls666").0, ENOENT);
}

#[test]
fn the_admin_group_may_create_and_group_bits_honour_supplementary_groups() {
    if !root_or_skip("admin group") {
        return;
    }
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let child = Kill(
        dlmd_command(&path)
            .arg("--admin-group")
            .arg(ADMIN_GROUP.to_string())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_listening(&path);
    let mut ctl = Control::connect(&path);
    let root_ls = ctl.create("rootls", LsFlags::empty(), 0);
    assert!(root_ls >= 0);
    // An admin (supplementary group 65532) creates "adm660", group
    // 65534 (its gid), mode 0660; and may remove root's lockspace, as a
    // user of dlm-control may on the kernel.
    let r = run_helper({
        let mut c = helper_as(ATTACKER, &[ADMIN_GROUP], "admin");
        c.env("DLMD_TEST_SOCKET", &path)
            .env("DLMD_TEST_MINOR", root_ls.to_string());
        c
    });
    assert_eq!(
        (r["create"].as_str(), r["remove-root"].as_str()),
        ("1", "0")
    );
    assert_eq!(open_raw(&path, "rootls").0, ENOENT);
    // Another user opens adm660 through a supplementary group only.
    let open = |groups: &[u32]| {
        let mut c = helper_as(VICTIM, groups, "open");
        c.env("DLMD_TEST_SOCKET", &path)
            .env("DLMD_TEST_LS", "adm660");
        run_helper(c)["open"].clone()
    };
    assert_eq!(open(&[ATTACKER]), "0");
    assert_eq!(open(&[]), EACCES.to_string());
    // Without the admin group, the same user may not create.
    let r = run_helper({
        let mut c = helper_as(ATTACKER, &[], "admin");
        c.env("DLMD_TEST_SOCKET", &path).env("DLMD_TEST_MINOR", "0");
        c
    });
    assert_eq!(r["create"], "0");
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_per_user_dlmd_serves_only_its_user_and_root() {
    if !root_or_skip("per-user dlmd") {
        return;
    }
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let child = Kill(
        as_user(ATTACKER, &[], Path::new(env!("CARGO_BIN_EXE_dlmd")))
            .args(["--foreground", "--log-level", "warn", "--socket"])
            .arg(&path)
            .spawn()
            .unwrap(),
    );
    wait_listening(&path);
    let version = |uid: u32| {
        let mut c = helper_as(uid, &[], "version");
        c.env("DLMD_TEST_SOCKET", &path);
        run_helper(c)["version"].clone()
    };
    assert_eq!(version(ATTACKER), "0", "its own user");
    assert_eq!(
        version(VICTIM),
        "99",
        "another user: closed without a reply"
    );
    assert_eq!(Control::connect(&path).version().0, 0, "root");
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lockspace_creation_is_not_logged_at_info() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let mut cmd = dlmd_command(&path);
    let mut child = cmd
        .args(["--log-level", "info"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(&path);
    let mut ctl = Control::connect(&path);
    for i in 0..50 {
        let m = ctl.create(&format!("ls{i}"), LsFlags::empty(), 0);
        assert_eq!(ctl.remove(m as u32, RemoveFlags::empty()), 0);
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Start and stop only: per-client events are debug.
    assert!(log.lines().count() <= 3, "{log}");
}
