//! STATUS (op 9) against PROTOCOL.md: the real dlmd, raw SEQPACKET
//! messages (see `common`), and dlm-core's client on top.

mod common;

use common::*;
use dlm_core::dlmd::proto::{self, Header, Op};
use dlm_core::dlmd::status::DlmdStatus;
use dlm_core::{LockFlags, LsFlags, Mode, Status};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// STATUS on `fd` as request `seq`: its `ret`, and the `key value` lines
/// that follow it as DUMP_CHUNK messages (each line checked), by key.
fn status_raw(fd: &std::os::fd::OwnedFd, seq: u32) -> (i64, HashMap<String, String>) {
    send(fd, &msg(Op::Status, seq, &[]));
    let (ret, rest) = recv_reply(fd, seq);
    assert!(rest.is_empty(), "nothing after ret: {rest:?}");
    let mut keys = HashMap::new();
    if ret < 0 {
        return (ret, keys);
    }
    let mut text = Vec::new();
    loop {
        let m = recv(fd).expect("a DUMP_CHUNK");
        let (h, chunk) = Header::parse(&m).unwrap();
        assert_eq!((h.op, h.seq), (Op::DumpChunk as u32, seq));
        assert_eq!(h.reserved, proto::PROTOCOL_VERSION);
        if chunk.is_empty() {
            break;
        }
        text.extend_from_slice(chunk);
    }
    let text = String::from_utf8(text).unwrap();
    for line in text.lines() {
        let (k, v) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("not `key value`: {line:?}"));
        assert!(
            k.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{line:?}"
        );
        assert!(
            keys.insert(k.to_owned(), v.to_owned()).is_none(),
            "{k} twice"
        );
    }
    (ret, keys)
}

fn num(keys: &HashMap<String, String>, k: &str) -> u64 {
    keys.get(k)
        .unwrap_or_else(|| panic!("no {k} in {keys:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} not a number: {keys:?}"))
}

/// dlm-core's typed status of the dlmd at `path`.
fn typed(path: &Path) -> DlmdStatus {
    let ctl = dlm_core::dlmd::client::Control::connect(&proto::SocketPath::explicit(path))
        .expect("connect");
    ctl.status()
        .expect("STATUS")
        .expect("this dlmd knows STATUS")
}

#[test]
fn status_reports_version_uptime_counts_and_exact_counters() {
    let d = Daemon::start("dlmd-status");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // STATUS may be a connection's first message: it makes a control
    // connection.
    let ctl = connect(&d.path);
    let (ret, k0) = status_raw(&ctl, 1);
    assert_eq!(ret, 0);
    assert_eq!(k0["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(num(&k0, "protocol"), u64::from(proto::PROTOCOL_VERSION));
    assert_eq!(num(&k0, "protocol"), 1);
    assert_eq!(num(&k0, "pid"), u64::from(d.pid()));
    let started = num(&k0, "started");
    assert!(
        started <= now + 1 && started + 60 >= now,
        "{started} vs {now}"
    );
    assert!(num(&k0, "uptime") < 60, "{k0:?}");
    for k in ["lockspaces", "resources", "locks", "handles"] {
        assert_eq!(num(&k0, k), 0, "{k}");
    }
    assert_eq!(num(&k0, "connections"), 1, "the asker's own");
    assert_eq!((num(&k0, "grants"), num(&k0, "blocking_callbacks")), (0, 0));

    // A payload is EINVAL; the connection goes on.
    send(&ctl, &msg(Op::Status, 2, &[b"x"]));
    assert_eq!(recv_reply(&ctl, 2).0, EINVAL);
    let mut c = Control { fd: ctl, seq: 2 };
    c.create("ls", LsFlags::empty(), 0);

    // A holds EX asking for blocking callbacks; B asks for PR: A gets
    // one; A unlocks; B is granted. Two grants, one blocking callback.
    let mut a = Handle::open(&d.path, "ls");
    let mut b = Handle::open(&d.path, "ls");
    let la = a.write(&lock_req("res", Mode::Ex, LockFlags::empty(), 1, BASTADDR));
    assert_eq!(a.result().status, Status::GRANTED);
    let lb = b.lock("res", Mode::Pr, LockFlags::empty(), 2);
    assert_eq!(a.result().bast_mode, Some(Mode::Pr));
    c.seq += 1;
    let (_, k1) = status_raw(&c.fd, c.seq);
    assert_eq!((num(&k1, "grants"), num(&k1, "blocking_callbacks")), (1, 1));
    assert_eq!((num(&k1, "resources"), num(&k1, "locks")), (1, 2), "{k1:?}");
    assert_eq!(a.unlock(la as u32, LockFlags::empty(), 3), 0);
    assert_eq!(a.result().status, Status::UNLOCKED);
    let g = b.result();
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lb));
    c.seq += 1;
    let (_, k2) = status_raw(&c.fd, c.seq);
    assert_eq!((num(&k2, "grants"), num(&k2, "blocking_callbacks")), (2, 1));
    assert_eq!(num(&k2, "lockspaces"), 1);
    assert_eq!((num(&k2, "resources"), num(&k2, "locks")), (1, 1));
    assert_eq!(num(&k2, "handles"), 2);
    // The control connection and two sockets per handle.
    assert_eq!(num(&k2, "connections"), 5);

    // A conversion is a grant too; a refused request is not.
    let conv = lock_req("res", Mode::Ex, LockFlags::CONVERT, 4, 0);
    let conv = match conv {
        dlm_core::Request::Lock(mut p) => {
            p.lkid = lb as u32;
            dlm_core::Request::Lock(p)
        }
        other => other,
    };
    assert_eq!(b.write(&conv), 0);
    assert_eq!(b.result().status, Status::GRANTED);
    assert!(a.lock("res", Mode::Ex, LockFlags::NOQUEUE, 5) > 0);
    assert_eq!(a.result().status, Status::AGAIN);

    // dlm-core's client reads the same facts, typed.
    let s = typed(&d.path);
    assert_eq!(s.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(s.protocol, Some(1));
    assert_eq!(s.pid, Some(d.pid()));
    assert_eq!(s.started, Some(started));
    assert_eq!((s.grants, s.blocking_callbacks), (Some(3), Some(1)));
    assert_eq!(
        (s.lockspaces, s.resources, s.locks),
        (Some(1), Some(1), Some(1))
    );
    // Its own control connection is counted while it asks.
    assert_eq!((s.handles, s.connections), (Some(2), Some(6)));
}

#[test]
fn status_is_a_control_operation_only_and_open_to_every_peer() {
    let d = Daemon::start("dlmd-status-role");
    let mut c = Control::connect(&d.path);
    c.create("ls", LsFlags::empty(), 0);
    // On a request socket STATUS is not served: EINVAL, and the handle
    // goes on.
    let mut h = Handle::open(&d.path, "ls");
    h.seq += 1;
    send(&h.req, &msg(Op::Status, h.seq, &[]));
    assert_eq!(recv_reply(&h.req, h.seq).0, EINVAL);
    assert!(h.lock("r", Mode::Ex, LockFlags::empty(), 1) > 0);
    assert_eq!(h.result().status, Status::GRANTED);
    // After VERSION, on the same connection, as a later request.
    c.version();
    c.seq += 1;
    let (ret, keys) = status_raw(&c.fd, c.seq);
    assert_eq!(ret, 0);
    assert_eq!(num(&keys, "grants"), 1);
    // A dump still works afterwards: STATUS left the connection clean.
    assert!(c.dump(Some("ls")).unwrap().contains("grmode EX"));

    // Another uid, which may open no lockspace here, gets the counts
    // (they name nothing) when it runs as root's guest.
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env("DLMD_STATUS_SOCKET", &d.path)
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "helper failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("helper: ret 0 grants 1 locks 1\n"), "{text}");
}

/// Not a test by itself: the other uid's process of the test above.
#[test]
fn helper() {
    let Some(path) = std::env::var_os("DLMD_STATUS_SOCKET") else {
        return;
    };
    let fd = connect(Path::new(&path));
    let (ret, keys) = status_raw(&fd, 1);
    println!(
        "helper: ret {ret} grants {} locks {}",
        num(&keys, "grants"),
        num(&keys, "locks")
    );
}

/// A dlmd from before STATUS answers it with -EINVAL: dlm-core's client
/// reports no status (`None`) rather than an error. Played by a fake
/// server that answers VERSION and refuses every other operation.
#[test]
fn a_dlmd_without_status_gives_none() {
    use rustix::net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let dir = temp_dir();
    let path = dir.join("old.sock");
    let listener = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    net::listen(&listener, 1).unwrap();
    let server = std::thread::spawn(move || {
        let fd = net::accept(&listener).unwrap();
        while let Some(m) = recv(&fd) {
            let (h, _) = Header::parse(&m).unwrap();
            let reply = if h.op == Op::Version as u32 {
                proto::reply(h.seq, 0, &[&dlm_core::codec::Version::DEVICE.encode()])
            } else {
                proto::reply(h.seq, EINVAL, &[])
            };
            send(&fd, &reply);
        }
    });
    let ctl = dlm_core::dlmd::client::Control::connect(&proto::SocketPath::explicit(&path))
        .expect("connect");
    ctl.version().expect("VERSION");
    assert_eq!(ctl.status(), Ok(None));
    drop(ctl);
    server.join().unwrap();
}
