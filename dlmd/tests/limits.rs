//! dlmd under a local user who tries to exhaust it (issue 12, items 3-5),
//! against the real daemon: unread dumps, per-uid limits, the
//! file-descriptor limit, results nobody reads, and a lock requested with
//! FORCEUNLOCK whose owner goes away. Tests that need a second uid run a
//! child of this executable under `setpriv` and skip, saying so, when not
//! root.

mod common;

use common::*;
use dlm_core::dlmd::proto::{self, Header, Op};
use dlm_core::{LockFlags, LsFlags, Mode, Request, Status};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{self, RecvFlags, SendFlags};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ENOMEM: i64 = -(libc::ENOMEM as i64);
const EAGAIN: i64 = -(libc::EAGAIN as i64);
const EMFILE: i64 = -(libc::EMFILE as i64);

/// dlmd on a fresh socket with extra arguments (after the harness's
/// "no limits" ones, so these win).
fn start(args: &[&str]) -> Daemon {
    Daemon::start_with("limits", args)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Makes `n` EX locks on resources `{prefix}{i}` through `h`, keeping
/// 256 requests in flight, reading every reply and result.
fn fill(h: &mut Handle, prefix: &str, n: u32, flags: LockFlags) {
    let mut buf = [0u8; proto::REPLIES_MAX_MSG];
    let (mut sent, mut done) = (0u32, 0u32);
    let base = h.seq + 1;
    while done < n {
        while sent < n && sent - done < 256 {
            let req = lock_req(&format!("{prefix}{sent}"), Mode::Ex, flags, 0, 0);
            let m = proto::message(
                Header::new(Op::Write, base + sent, 1),
                &[&req.encode(dlm_core::codec::Version::DEVICE)],
            );
            send(&h.req, &m);
            sent += 1;
        }
        let (len, _) = net::recv(&h.req, &mut buf, RecvFlags::empty()).unwrap();
        for ret in split_replies(&buf[..len], base + done) {
            assert!(ret > 0, "lock {done}: {ret}");
            done += 1;
        }
        while net::recv(&h.cb, &mut buf, RecvFlags::DONTWAIT).is_ok() {}
    }
    h.seq = base + n - 1;
}

/// Waits until dlmd has served everything sent to it so far (a round
/// trip on a new connection goes through its loop after the rest).
fn settle(path: &Path) {
    for _ in 0..3 {
        let mut c = Control::connect(path);
        assert_eq!(c.version().0, 0);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unread_dumps_do_not_grow_dlmd() {
    let d = start(&[]);
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("big", LsFlags::empty(), 0) >= 0);
    let mut h = Handle::open(&d.path, "big");
    fill(
        &mut h,
        "resource-with-a-longish-name-",
        300_000,
        LockFlags::empty(),
    );
    settle(&d.path);
    let before = d.rss();
    // 20 dumps nobody reads: each is ~30 MB of text if rendered whole.
    let mut dumpers: Vec<OwnedFd> = Vec::new();
    for i in 0..20 {
        let fd = connect(&d.path);
        send(&fd, &msg(Op::Dump, i + 1, &[b"big"]));
        dumpers.push(fd);
    }
    settle(&d.path);
    // Others are still served while the dumps wait.
    assert!(h.lock("other", Mode::Ex, LockFlags::empty(), 7) > 0);
    assert_eq!(h.result().status, Status::GRANTED);
    let after = d.rss();
    let grown = after.saturating_sub(before);
    println!(
        "RSS {:.1} MiB before, {:.1} MiB with 20 unread dumps",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    assert!(
        grown < 50 << 20,
        "20 unread dumps grew dlmd by {} MiB",
        grown >> 20
    );
    // A dump that is read is complete.
    let text = ctl.dump(Some("big")).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(" granted ")).count(),
        300_001
    );
    assert!(text.starts_with("lockspace \"big\" "), "{}", &text[..80]);
}

#[test]
fn a_forceunlock_lock_is_gone_after_its_owner_exits() {
    let d = start(&[]);
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("ls", LsFlags::empty(), 0o600) >= 0);
    // Closed handle, and a killed process.
    for how in ["close", "kill"] {
        let mut a = Handle::open(&d.path, "ls");
        assert!(
            a.lock("r", Mode::Ex, LockFlags::FORCEUNLOCK, 1) > 0,
            "{how}"
        );
        assert_eq!(a.result().status, Status::GRANTED);
        let mut b = Handle::open(&d.path, "ls");
        bounded(&b);
        let lb = b.lock("r", Mode::Ex, LockFlags::empty(), 2);
        assert!(lb > 0);
        assert!(b.try_result().is_none(), "a holds it");
        match how {
            "close" => drop(a),
            _ => {
                let mut child = spawn_helper("forceunlock", &d.path);
                let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
                let mut line = String::new();
                while !line.contains("locked") {
                    line.clear();
                    let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
                    assert!(n > 0, "the helper did not lock");
                }
                drop(a);
                // a's lock went; now the helper holds "r" until killed.
                let g = b.result();
                assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lb));
                assert_eq!(b.unlock(lb as u32, LockFlags::empty(), 2), 0);
                assert_eq!(b.result().status, Status::UNLOCKED);
                let lb2 = b.lock("r", Mode::Ex, LockFlags::empty(), 3);
                assert!(b.try_result().is_none(), "the helper holds it");
                child.kill().unwrap();
                child.wait().unwrap();
                let g = b.result();
                assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lb2));
                continue;
            }
        }
        let g = b.result();
        assert_eq!(
            (g.status, i64::from(g.lkid)),
            (Status::GRANTED, lb),
            "{how}"
        );
    }
    // A purge of one's own locks releases such a lock too.
    let mut c = Handle::open(&d.path, "ls");
    bounded(&c);
    let mut e = Handle::open(&d.path, "ls");
    let id = e.lock("p", Mode::Ex, LockFlags::FORCEUNLOCK, 1);
    assert!(id > 0);
    assert!(
        e.write(&Request::Purge {
            nodeid: 0,
            pid: e.tid
        }) == 0
    );
    assert!(c.lock("p", Mode::Ex, LockFlags::NOQUEUE, 4) > 0);
    assert_eq!(c.result().status, Status::GRANTED);
}

/// Makes waiting for a result of `h` fail after a minute instead of
/// hanging (a lock that is never granted fails the test).
fn bounded(h: &Handle) {
    net::sockopt::set_socket_timeout(
        &h.cb,
        net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(60)),
    )
    .unwrap();
}

#[test]
fn lock_limit_per_uid() {
    if !is_root() {
        println!("lock_limit_per_uid: needs root (a second uid via setpriv); skipped");
        return;
    }
    let d = start(&["--max-locks-per-uid", "1000"]);
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("ls", LsFlags::empty(), 0o666) >= 0);
    // uid 65534: 1000 persistent locks, then ENOMEM; it exits, and its
    // orphans still count against it.
    let out = setpriv_helper("locks", &d.path).output().unwrap();
    assert!(out.status.success(), "helper: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1001st: ENOMEM"), "{text}");
    let out = setpriv_helper("onelock", &d.path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lock: ENOMEM"), "orphans count: {text}");
    // Everyone else still locks (root is never limited).
    let mut h = Handle::open(&d.path, "ls");
    fill(&mut h, "root", 2000, LockFlags::empty());
    // Once its orphans are purged, the uid may lock again.
    assert_eq!(h.write(&Request::Purge { nodeid: 0, pid: 0 }), 0);
    let out = setpriv_helper("onelock", &d.path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lock: ok"), "after the purge: {text}");
}

#[test]
fn connection_and_lockspace_limits_per_uid() {
    if !is_root() {
        println!("connection_and_lockspace_limits_per_uid: needs root; skipped");
        return;
    }
    // The helper runs as uid/gid 65534; creating lockspaces on a dlmd run
    // by root needs its admin group.
    let d = start(&[
        "--max-connections-per-uid",
        "4",
        "--max-lockspaces-per-uid",
        "2",
        "--admin-group",
        "65534",
    ]);
    let out = setpriv_helper("conns", &d.path).output().unwrap();
    assert!(out.status.success(), "helper: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("5th: {EMFILE}")), "{text}");
    assert!(text.contains(&format!("3rd lockspace: {ENOMEM}")), "{text}");
    // Root is not limited.
    let conns: Vec<Control> = (0..10).map(|_| Control::connect(&d.path)).collect();
    for mut c in conns {
        assert_eq!(c.version().0, 0);
    }
}

#[test]
fn at_its_fd_limit_dlmd_still_answers() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=40:40")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_dlmd"));
    let child = cmd
        .args(dlmd_command(&path).get_args())
        .env_remove("DLMD_SOCKET")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit dlmd");
    let d = Daemon { child, dir, path };
    wait_listening(&d.path);
    // Far more connections than it has descriptors for.
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..80u32 {
        let fd = connect(&d.path);
        let _ = net::send(&fd, &msg(Op::Version, i + 1, &[]), SendFlags::NOSIGNAL);
        match answer(&fd) {
            Some((0, _)) => held.push(fd),
            Some((ret, seq)) => {
                assert_eq!((ret, seq), (EAGAIN, 0), "a refusal");
                refused += 1;
            }
            None => panic!("connection {i} got no answer in 5 s"),
        }
    }
    assert!(refused > 0, "the limit was reached");
    // dlm-core's client turns the refusal into EAGAIN.
    assert_eq!(
        dlm_core::dlmd::client::Control::connect(&dlm_core::dlmd::proto::SocketPath::explicit(
            &d.path
        ))
        .and_then(|c| c.version())
        .map(drop),
        Err(dlm_core::Errno::EAGAIN)
    );
    // Once some close, new clients are served again.
    held.truncate(held.len() / 2);
    settle_after_close(&d.path);
}

/// Waits (bounded) until a fresh client is served normally.
fn settle_after_close(path: &Path) {
    for _ in 0..100 {
        let fd = connect(path);
        send(&fd, &msg(Op::Version, 1, &[]));
        if let Some((0, 1)) = answer(&fd) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("dlmd never served a new client again");
}

/// The first message on `fd` as (ret, seq), waiting at most 5 s.
fn answer(fd: &OwnedFd) -> Option<(i64, u32)> {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let five = Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    };
    if poll(&mut fds, Some(&five)).ok()? == 0 {
        return None;
    }
    let mut buf = [0u8; 64];
    let n = match net::recv(fd, &mut buf, RecvFlags::DONTWAIT) {
        Ok((n, _)) => n,
        // A reset before the refusal (see dlm-core's client).
        Err(rustix::io::Errno::CONNRESET) => net::recv(fd, &mut buf, RecvFlags::DONTWAIT).ok()?.0,
        Err(_) => return None,
    };
    let (h, rest) = Header::parse(&buf[..n]).ok()?;
    Some((proto::get_u64(rest, 0)? as i64, h.seq))
}

#[test]
fn unread_results_hold_back_only_their_handle() {
    let d = start(&[]);
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("ls", LsFlags::empty(), 0) >= 0);
    let slow = Handle::open(&d.path, "ls");
    let mut other = Handle::open(&d.path, "ls");
    // NOQUEUE requests on a resource `other` holds: each one's result
    // (EAGAIN) is queued for `slow`, which never reads its callback
    // socket but reads every reply.
    assert!(other.lock("held", Mode::Ex, LockFlags::empty(), 1) > 0);
    assert_eq!(other.result().status, Status::GRANTED);
    let req = lock_req("held", Mode::Ex, LockFlags::NOQUEUE, 5, 0)
        .encode(dlm_core::codec::Version::DEVICE);
    let total = 100_000u32;
    let (mut sent, mut replies) = (0u32, 0u32);
    let mut buf = [0u8; proto::REPLIES_MAX_MSG];
    let rss0 = d.rss();
    loop {
        while sent < total {
            let m = proto::message(Header::new(Op::Write, sent + 1, 1), &[&req]);
            match net::send(&slow.req, &m, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(_) => sent += 1,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        // Take the replies that come within a second; none: held back.
        let mut fds = [PollFd::new(&slow.req, PollFlags::IN)];
        let one = Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        if poll(&mut fds, Some(&one)).unwrap() == 0 {
            break;
        }
        while let Ok((n, _)) = net::recv(&slow.req, &mut buf, RecvFlags::DONTWAIT) {
            for ret in split_replies(&buf[..n], replies + 1) {
                assert!(ret > 0);
                replies += 1;
            }
        }
        assert!(replies < total, "never held back");
    }
    println!("held back after {replies} replies ({sent} requests sent)");
    assert!(replies < 10_000, "held back late: {replies}");
    let grown = d.rss().saturating_sub(rss0);
    assert!(grown < 20 << 20, "dlmd grew by {} MiB", grown >> 20);
    // Everybody else is served meanwhile.
    assert_eq!(ctl.version().0, 0);
    assert!(other.lock("free", Mode::Ex, LockFlags::empty(), 2) > 0);
    assert_eq!(other.result().status, Status::GRANTED);
    // Reading the results lets the rest through, nothing lost or merged.
    let mut results = 0u32;
    while results < total || replies < total {
        let mut rbuf = [0u8; 128];
        while let Ok((n, _)) = net::recv(&slow.cb, &mut rbuf, RecvFlags::DONTWAIT) {
            assert!(n >= 72);
            results += 1;
        }
        while sent < total {
            let m = proto::message(Header::new(Op::Write, sent + 1, 1), &[&req]);
            match net::send(&slow.req, &m, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(_) => sent += 1,
                Err(_) => break,
            }
        }
        while let Ok((n, _)) = net::recv(&slow.req, &mut buf, RecvFlags::DONTWAIT) {
            for ret in split_replies(&buf[..n], replies + 1) {
                assert!(ret > 0);
                replies += 1;
            }
        }
        let mut fds = [
            PollFd::new(&slow.cb, PollFlags::IN),
            PollFd::new(&slow.req, PollFlags::IN),
        ];
        let five = Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        assert!(
            (results == total && replies == total) || poll(&mut fds, Some(&five)).unwrap() > 0,
            "stuck at {results} results, {replies} replies"
        );
    }
    assert_eq!((results, replies), (total, total));
}

fn spawn_helper(mode: &str, socket: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env("DLMD_LIMITS_HELPER", mode)
        .env("DLMD_LIMITS_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// This executable as uid 65534 (setpriv), in helper `mode`.
fn setpriv_helper(mode: &str, socket: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ])
    .arg(std::env::current_exe().unwrap())
    .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
    .env("DLMD_LIMITS_HELPER", mode)
    .env("DLMD_LIMITS_SOCKET", socket)
    .stdin(Stdio::null());
    cmd
}

/// Not a test by itself: the child process of the tests that need one.
#[test]
fn helper() {
    let Ok(mode) = std::env::var("DLMD_LIMITS_HELPER") else {
        return;
    };
    let path = PathBuf::from(std::env::var_os("DLMD_LIMITS_SOCKET").unwrap());
    match mode.as_str() {
        "forceunlock" => {
            let mut h = Handle::open(&path, "ls");
            let id = h.lock("r", Mode::Ex, LockFlags::FORCEUNLOCK, 9);
            assert!(id > 0);
            println!("locked {id}");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "locks" => {
            let mut h = Handle::open(&path, "ls");
            fill(&mut h, "u", 1000, LockFlags::PERSISTENT);
            let ret = h.lock("u1000", Mode::Ex, LockFlags::PERSISTENT, 1);
            println!(
                "1001st: {}",
                if ret == ENOMEM {
                    "ENOMEM".to_owned()
                } else {
                    ret.to_string()
                }
            );
        }
        "onelock" => {
            let mut h = Handle::open(&path, "ls");
            let ret = h.lock("one", Mode::Nl, LockFlags::empty(), 1);
            println!(
                "lock: {}",
                match ret {
                    ENOMEM => "ENOMEM".to_owned(),
                    r if r > 0 => "ok".to_owned(),
                    r => r.to_string(),
                }
            );
        }
        "conns" => {
            let mut fds = Vec::new();
            for i in 1..=5u32 {
                let fd = connect(&path);
                let _ = net::send(&fd, &msg(Op::Version, i, &[]), SendFlags::NOSIGNAL);
                let (ret, seq) = answer(&fd).expect("an answer");
                if i == 5 {
                    println!("5th: {ret} (seq {seq})");
                } else {
                    assert_eq!(ret, 0);
                }
                fds.push(fd);
            }
            fds.truncate(1);
            // dlmd notices the four closes when it next polls: until then
            // a new connection may still be refused (bounded wait).
            for i in 0.. {
                let fd = connect(&path);
                let _ = net::send(&fd, &msg(Op::Version, 1, &[]), SendFlags::NOSIGNAL);
                match answer(&fd) {
                    Some((0, _)) => break,
                    _ if i < 500 => std::thread::sleep(std::time::Duration::from_millis(10)),
                    other => panic!("still refused after the closes: {other:?}"),
                }
            }
            let mut c = Control::connect(&path);
            for (i, name) in ["a", "b", "c"].iter().enumerate() {
                let ret = c.create(name, LsFlags::empty(), 0);
                if i == 2 {
                    println!("3rd lockspace: {ret}");
                } else {
                    assert!(ret >= 0, "{ret}");
                }
            }
        }
        other => panic!("unknown helper mode {other}"),
    }
}

#[test]
fn a_stopped_dlmd_makes_clients_fail_not_hang() {
    let d = start(&[]);
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    // dlm-core's client: the connection is queued in the backlog, the
    // first reply never comes; it gives up (bounded) with EAGAIN.
    // (In a thread, so that a client that hangs fails the test.)
    let (tx, rx) = std::sync::mpsc::channel();
    let path = d.path.clone();
    std::thread::spawn(move || {
        let got = dlm_core::dlmd::client::Control::connect(
            &dlm_core::dlmd::proto::SocketPath::explicit(&path),
        )
        .and_then(|c| c.version());
        let _ = tx.send(got);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the client hung on a stopped dlmd");
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    assert_eq!(got.map(drop), Err(dlm_core::Errno::EAGAIN));
    // And once dlmd runs again, clients are served.
    let c = dlm_core::dlmd::client::Control::connect(&dlm_core::dlmd::proto::SocketPath::explicit(
        &d.path,
    ))
    .unwrap();
    assert_eq!(c.version().unwrap(), dlm_core::codec::Version::DEVICE);
}
