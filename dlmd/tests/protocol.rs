//! dlmd against PROTOCOL.md: the real binary on a private socket, driven
//! with raw SEQPACKET messages (see `common`).

mod common;

use common::*;
use dlm_core::codec::Version;
use dlm_core::dlmd::proto::{self, Header, Op};
use dlm_core::{LockFlags, LsFlags, Mode, RemoveFlags, Request, Status};
use rustix::net::{self, SendFlags};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Waits (bounded) until dlmd reports no open handle in `ls`: closing a
/// socket is noticed by dlmd asynchronously.
fn wait_no_openers(ctl: &mut Control, ls: &str) {
    for _ in 0..3000 {
        let text = ctl.dump(Some(ls)).expect("dump");
        if text
            .lines()
            .next()
            .is_some_and(|l| l.contains(" openers 0 "))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the handles of {ls} never closed");
}

#[test]
fn version() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    let (ret, rest) = ctl.version();
    assert_eq!(ret, 0);
    assert_eq!(rest, Version::DEVICE.encode());
    assert_eq!(Version::decode(&rest).unwrap().to_string(), "6.0.2");
}

#[test]
fn create_and_remove() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    let minor = ctl.create("ls1", LsFlags::empty(), 0);
    assert!(minor >= 0, "CREATE returns the minor, got {minor}");
    // Again without NEWEXCL: same minor, creation count 2.
    assert_eq!(ctl.create("ls1", LsFlags::empty(), 0), minor);
    assert_eq!(ctl.create("ls1", LsFlags::NEWEXCL, 0), EEXIST);
    let other = ctl.create("ls2", LsFlags::NEWEXCL, 0);
    assert!(other >= 0 && other != minor);
    // The first REMOVE only drops the count.
    assert_eq!(ctl.remove(minor as u32, RemoveFlags::empty()), 0);
    assert!(ctl.dump(Some("ls1")).unwrap().contains(" created 1 "));
    drop(Handle::open(&d.path, "ls1"));
    wait_no_openers(&mut ctl, "ls1");
    assert_eq!(ctl.remove(minor as u32, RemoveFlags::empty()), 0);
    assert_eq!(open_raw(&d.path, "ls1").0, ENOENT);
    assert_eq!(ctl.remove(minor as u32, RemoveFlags::empty()), ENOENT);
    assert_eq!(ctl.dump(Some("ls1")), Err(ENOENT));
    // Bad names: CREATE decodes them as the kernel does.
    let bad = Request::CreateLockspace {
        flags: LsFlags::empty(),
        name: dlm_core::Name::EMPTY,
    }
    .encode(Version::DEVICE);
    assert_eq!(
        ctl.call(Op::Control, &[&[0; 8], &bad]).0,
        EINVAL,
        "empty lockspace name"
    );
    assert_eq!(ctl.call(Op::Control, &[&[0; 4]]).0, EINVAL, "no request");
    let lock = lock_bytes("r");
    assert_eq!(
        ctl.call(Op::Control, &[&[0; 8], &lock]).0,
        EINVAL,
        "LOCK on the control connection"
    );
    // The connection still works.
    assert_eq!(ctl.version().0, 0);
}

#[test]
fn remove_is_busy_with_locks_or_openers() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    let minor = ctl.create("busy", LsFlags::empty(), 0) as u32;

    // Another handle open, no locks: EBUSY, even with FORCEFREE.
    let h = Handle::open(&d.path, "busy");
    assert_eq!(ctl.remove(minor, RemoveFlags::empty()), EBUSY);
    assert_eq!(ctl.remove(minor, RemoveFlags::FORCEFREE), EBUSY);
    drop(h);
    wait_no_openers(&mut ctl, "busy");

    // A lock held by an open handle: EBUSY.
    let mut h = Handle::open(&d.path, "busy");
    let lkid = h.lock("r", Mode::Ex, LockFlags::PERSISTENT, 1);
    assert!(lkid > 0);
    assert_eq!(h.result().status, Status::GRANTED);
    assert_eq!(ctl.remove(minor, RemoveFlags::empty()), EBUSY);
    // Closing leaves the persistent lock as an orphan: still EBUSY
    // without FORCEFREE, gone with it.
    drop(h);
    wait_no_openers(&mut ctl, "busy");
    let text = ctl.dump(Some("busy")).unwrap();
    assert!(text.contains("owner orphan"), "orphan in dump:\n{text}");
    assert_eq!(ctl.remove(minor, RemoveFlags::empty()), EBUSY);
    assert_eq!(ctl.remove(minor, RemoveFlags::FORCEFREE), 0);
    assert_eq!(open_raw(&d.path, "busy").0, ENOENT);
}

#[test]
fn lock_and_unlock_with_casts() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    let minor = ctl.create("ls", LsFlags::empty(), 0);
    let mut h = Handle::open(&d.path, "ls");
    assert_eq!(i64::from(h.minor), minor);

    let lkid = h.lock("res", Mode::Ex, LockFlags::empty(), 7);
    assert!(lkid > 0, "LOCK returns the lock id, got {lkid}");
    // The completion was written before the reply: it is already there.
    let r = h.try_result().expect("completion queued before the reply");
    assert_eq!(r.status, Status::GRANTED);
    assert_eq!(i64::from(r.lkid), lkid);
    assert_eq!(r.astaddr, CASTADDR);
    assert_eq!(r.astparam, 7);
    assert_eq!(r.user_lksb, lksb_of(7));
    assert_eq!(r.bast_mode, None);
    assert!(h.try_result().is_none(), "exactly one result");

    // Conversion: 0 for the write, then a completion.
    let conv = h.write(&lock_req("res", Mode::Pr, LockFlags::CONVERT, 8, 0).with_lkid(lkid));
    assert_eq!(conv, 0);
    let r = h.result();
    assert_eq!((r.status, i64::from(r.lkid)), (Status::GRANTED, lkid));

    assert_eq!(h.unlock(lkid as u32, LockFlags::empty(), 9), 0);
    let r = h.try_result().expect("unlock completion before the reply");
    assert_eq!(r.status, Status::UNLOCKED);
    assert_eq!(i64::from(r.lkid), lkid);
    assert_eq!(r.astaddr, CASTADDR);
    // Unknown lock id: the kernel's ENOENT.
    assert_eq!(h.unlock(lkid as u32, LockFlags::empty(), 9), ENOENT);
    assert!(h.try_result().is_none());
}

trait WithLkid {
    fn with_lkid(self, lkid: i64) -> Request;
}

impl WithLkid for Request {
    fn with_lkid(self, lkid: i64) -> Request {
        match self {
            Request::Lock(mut p) => {
                p.lkid = lkid as u32;
                Request::Lock(p)
            }
            other => other,
        }
    }
}

#[test]
fn blocking_callback_goes_to_the_holder_only() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    let mut a = Handle::open(&d.path, "ls");
    let mut b = Handle::open(&d.path, "ls");
    let la = a.write(&lock_req("res", Mode::Ex, LockFlags::empty(), 1, BASTADDR));
    assert_eq!(a.result().status, Status::GRANTED);
    let lb = b.lock("res", Mode::Pr, LockFlags::empty(), 2);
    assert!(lb > 0);
    // b waits; a gets a blocking callback for PR, already queued when
    // b's reply arrived.
    let bast = a.try_result().expect("bast written before b's reply");
    assert_eq!(bast.bast_mode, Some(Mode::Pr));
    assert_eq!(bast.astaddr, BASTADDR);
    assert_eq!(i64::from(bast.lkid), la);
    assert!(b.try_result().is_none(), "b waits");
    // a unlocks: a gets EUNLOCK, b its grant.
    assert_eq!(a.unlock(la as u32, LockFlags::empty(), 3), 0);
    assert_eq!(a.result().status, Status::UNLOCKED);
    let g = b.try_result().expect("grant queued before a's reply");
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lb));
    assert_eq!(g.user_lksb, lksb_of(2));
}

#[test]
fn attach_needs_the_right_token_once() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0);
    let (ret, id, token, _req) = open_raw(&d.path, "ls");
    assert!(ret >= 0);
    assert_eq!(attach_raw(&d.path, id, token ^ 1).0, EINVAL);
    assert_eq!(attach_raw(&d.path, id + 100, token).0, EINVAL);
    let (ok, _cb) = attach_raw(&d.path, id, token);
    assert_eq!(ok, 0);
    assert_eq!(
        attach_raw(&d.path, id, token).0,
        EINVAL,
        "the token is used"
    );
    // A short ATTACH.
    let fd = connect(&d.path);
    send(&fd, &msg(Op::Attach, 3, &[&id.to_ne_bytes()]));
    assert_eq!(recv_reply(&fd, 3).0, EINVAL);
    // OPEN of an unknown lockspace.
    assert_eq!(open_raw(&d.path, "nope").0, ENOENT);
    assert_eq!(open_raw(&d.path, "").0, EINVAL);
}

#[test]
fn malformed_messages_get_einval_and_the_connection_goes_on() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0);
    let mut h = Handle::open(&d.path, "ls");

    // Shorter than a header: EINVAL with seq 0.
    send(&h.req, &[1, 2, 3]);
    assert_eq!(recv_reply(&h.req, 0).0, EINVAL);
    send(&h.req, &[]);
    assert_eq!(recv_reply(&h.req, 0).0, EINVAL);
    // Short, long and over-long WRITE payloads.
    assert_eq!(h.write_bytes(&[0; 50]), EINVAL);
    let good = lock_bytes("r");
    assert_eq!(h.write_bytes(&good[..119]), EINVAL);
    let mut long = good.clone();
    long.resize(185, 0);
    assert_eq!(h.write_bytes(&long), EINVAL);
    assert_eq!(h.write_bytes(&[0xee; 4000]), EINVAL);
    // Wrong version: EBADE; 32-bit request: EINVAL; unknown command.
    let mut v5 = good.clone();
    v5[0..4].copy_from_slice(&5u32.to_ne_bytes());
    assert_eq!(h.write_bytes(&v5), EBADE);
    let mut bits32 = good.clone();
    bits32[std::mem::offset_of!(dlm_sys::dlm_write_request, is64bit)] = 0;
    assert_eq!(h.write_bytes(&bits32), EINVAL);
    let mut cmd = good.clone();
    cmd[std::mem::offset_of!(dlm_sys::dlm_write_request, cmd)] = 99;
    assert_eq!(h.write_bytes(&cmd), EINVAL);
    // Lockspace requests on a request socket.
    let create = Request::CreateLockspace {
        flags: LsFlags::empty(),
        name: name("zz"),
    };
    assert_eq!(h.write(&create), EINVAL);
    // Operations that do not belong to a request socket.
    for op in [99u32, Op::Open as u32, Op::Version as u32, Op::Reply as u32] {
        h.seq += 1;
        send(
            &h.req,
            &proto::message(
                Header {
                    op,
                    seq: h.seq,
                    tid: 1,
                    reserved: 0,
                },
                &[b"ls"],
            ),
        );
        assert_eq!(recv_reply(&h.req, h.seq).0, EINVAL, "op {op}");
    }
    // Junk on the callback socket is ignored.
    send(&h.cb, b"junk junk junk junk");
    // Still serving: a lock and its result.
    let lkid = h.lock("r", Mode::Ex, LockFlags::empty(), 5);
    assert!(lkid > 0);
    let r = h.result();
    assert_eq!((r.status, i64::from(r.lkid)), (Status::GRANTED, lkid));

    // The control connection too.
    assert_eq!(ctl.call(Op::Write, &[&good]).0, EINVAL);
    assert_eq!(ctl.call(Op::Attach, &[&[0; 16]]).0, EINVAL);
    assert_eq!(ctl.call(Op::Version, &[b"x"]).0, EINVAL);
    assert_eq!(ctl.version().0, 0);

    // An undecided connection with a bad first message: EINVAL, closed.
    for first in [
        &[9u8, 9][..],
        &msg(Op::Write, 4, &[&good])[..],
        &msg(Op::Reply, 4, &[])[..],
    ] {
        let fd = connect(&d.path);
        send(&fd, first);
        let m = recv(&fd).expect("a reply before closing");
        assert_eq!(
            proto::parse_reply(&m, proto::get_u32(&m, 4).unwrap())
                .unwrap()
                .0,
            EINVAL
        );
        assert!(recv(&fd).is_none(), "closed after a bad first message");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_and_together() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0);
    let h = Handle::open(&d.path, "ls");
    // Sent while dlmd is stopped, so that it finds them all queued.
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let n = 200u32;
    for i in 0..n {
        let req = lock_req(
            &format!("r{i}"),
            Mode::Ex,
            LockFlags::empty(),
            u64::from(i),
            0,
        );
        let bytes = req.encode(Version::DEVICE);
        send(
            &h.req,
            &proto::message(Header::new(Op::Write, 1000 + i, 1), &[&bytes]),
        );
    }
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    let (mut ids, mut messages) = (Vec::new(), 0);
    while ids.len() < n as usize {
        let msg = recv(&h.req).expect("replies");
        assert!(msg.len() <= proto::REPLIES_MAX_MSG, "{} bytes", msg.len());
        messages += 1;
        let rets = split_replies(&msg, 1000 + ids.len() as u32);
        assert!(rets.iter().all(|&ret| ret > 0), "{rets:?}");
        ids.extend(rets);
    }
    assert_eq!(ids.len(), n as usize);
    // Replies of 24 bytes: up to 170 fit in a message, dlmd puts up to
    // 32 in one, and it reads 64 requests per round.
    assert!(
        messages <= n as usize / 32 + 4,
        "{n} replies came in {messages} messages"
    );
    for (i, id) in ids.iter().enumerate() {
        let r = h.result();
        assert_eq!((i64::from(r.lkid), r.astparam), (*id, i as u64));
    }
}

#[test]
fn a_client_that_does_not_read_stalls_only_itself() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    let mut slow = Handle::open(&d.path, "ls");
    let mut other = Handle::open(&d.path, "ls");

    // 1500 lock/unlock pairs whose 3000 results nobody reads: far more
    // than a socket buffer holds (but fewer than dlmd's bound on unread
    // results, see `unread_results_hold_back_only_their_handle`). dlmd
    // keeps them queued and goes on.
    let pairs = 1500u64;
    for i in 0..pairs {
        let lkid = slow.lock("slow", Mode::Ex, LockFlags::empty(), i);
        assert!(lkid > 0);
        assert_eq!(slow.unlock(lkid as u32, LockFlags::empty(), i), 0);
        if i % 1000 == 0 {
            // Another client is served meanwhile.
            let l = other.lock("fast", Mode::Pr, LockFlags::empty(), i);
            assert_eq!(other.result().status, Status::GRANTED);
            assert_eq!(other.unlock(l as u32, LockFlags::empty(), i), 0);
            assert_eq!(other.result().status, Status::UNLOCKED);
        }
    }
    // Now every result arrives, in order.
    for i in 0..pairs {
        let g = slow.result();
        assert_eq!((g.status, g.astparam), (Status::GRANTED, i), "pair {i}");
        let u = slow.result();
        assert_eq!((u.status, u.lkid), (Status::UNLOCKED, g.lkid), "pair {i}");
    }
    assert!(slow.try_result().is_none());

    // Requests whose replies are not read: dlmd stops reading them, and
    // serves everybody else.
    let mut sent = 0u32;
    let bogus = Request::Unlock(dlm_core::LockParams {
        lkid: 0x7fff_fff0,
        ..Default::default()
    })
    .encode(Version::DEVICE);
    loop {
        let m = proto::message(Header::new(Op::Write, sent, 1), &[&bogus]);
        match net::send(&slow.req, &m, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(_) => sent += 1,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("send: {e}"),
        }
        assert!(sent < 1_000_000, "the request socket never filled up");
    }
    assert_eq!(ctl.version().0, 0);
    let l = other.lock("fast", Mode::Ex, LockFlags::empty(), 1);
    assert!(l > 0);
    assert_eq!(other.result().status, Status::GRANTED);
    let mut seq = 0;
    while seq < sent {
        let msg = recv(&slow.req).expect("replies");
        for ret in split_replies(&msg, seq) {
            assert_eq!(ret, ENOENT);
            seq += 1;
        }
    }
}

#[test]
fn closing_a_handle_releases_its_locks() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    // Closing the request socket.
    let mut a = Handle::open(&d.path, "ls");
    let mut b = Handle::open(&d.path, "ls");
    assert!(a.lock("res", Mode::Ex, LockFlags::empty(), 1) > 0);
    assert_eq!(a.result().status, Status::GRANTED);
    let lb = b.lock("res", Mode::Ex, LockFlags::empty(), 2);
    assert!(b.try_result().is_none());
    drop(a.req);
    let g = b.result();
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lb));
    // dlmd closed a's callback socket too.
    assert!(recv(&a.cb).is_none());

    // Closing only the callback socket is an owner close as well.
    let mut c = Handle::open(&d.path, "ls");
    let lc = c.lock("res", Mode::Ex, LockFlags::empty(), 3);
    assert!(c.try_result().is_none());
    drop(c.cb);
    assert!(recv(&c.req).is_none(), "request socket closed by dlmd");
    assert_eq!(b.unlock(lb as u32, LockFlags::empty(), 4), 0);
    assert_eq!(b.result().status, Status::UNLOCKED);
    // c's waiting request went away with c: the resource is free.
    assert!(lc > 0);
    assert!(b.lock("res", Mode::Ex, LockFlags::NOQUEUE, 5) > 0);
    assert_eq!(b.result().status, Status::GRANTED);
}

/// Runs this test binary's `helper` test in a child process.
fn spawn_helper(mode: &str, socket: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env("DLMD_TEST_HELPER", mode)
        .env("DLMD_TEST_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

/// Not a test by itself: the child process of the tests that need one.
#[test]
fn helper() {
    let Ok(mode) = std::env::var("DLMD_TEST_HELPER") else {
        return;
    };
    let path = PathBuf::from(std::env::var_os("DLMD_TEST_SOCKET").unwrap());
    match mode.as_str() {
        "hold" => {
            let mut h = Handle::open(&path, "ls");
            let lkid = h.lock("res", Mode::Ex, LockFlags::empty(), 1);
            assert_eq!(h.result().status, Status::GRANTED);
            println!("helper: locked {lkid}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        "user" => {
            let mut ctl = Control::connect(&path);
            let open = |ls: &str| Handle::try_open(&path, ls).map(|_| 0).unwrap_or_else(|e| e);
            println!("helper: open600 {}", open("ls600"));
            println!("helper: open660 {}", open("ls660"));
            println!("helper: open666 {}", open("ls666"));
            println!(
                "helper: create600 {}",
                ctl.create("ls600", LsFlags::empty(), 0)
            );
            println!(
                "helper: create666 {}",
                ctl.create("ls666", LsFlags::empty(), 0)
            );
            let minor = std::env::var("DLMD_TEST_MINOR").unwrap().parse().unwrap();
            println!(
                "helper: remove666 {}",
                ctl.remove(minor, RemoveFlags::empty())
            );
            println!(
                "helper: dump600 {}",
                ctl.dump(Some("ls600")).map(|_| 0).unwrap_or_else(|e| e)
            );
            let all = ctl.dump(None).unwrap();
            println!("helper: dumpall-has-600 {}", all.contains("\"ls600\""));
            println!(
                "helper: createmine {}",
                ctl.create("mine", LsFlags::empty(), 0)
            );
            println!("helper: openmine {}", open("mine"));
        }
        other => panic!("unknown helper mode {other}"),
    }
}

fn helper_lines(out: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.split_once("helper: ").map(|(_, rest)| rest))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn a_killed_client_releases_its_locks() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    let mut child = spawn_helper("hold", &d.path).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = loop {
        let line = lines.next().expect("helper output").unwrap();
        if let Some((_, id)) = line.split_once("helper: locked ") {
            break id.parse::<i64>().unwrap();
        }
    };
    assert!(held > 0);
    let mut b = Handle::open(&d.path, "ls");
    let lb = b.lock("res", Mode::Ex, LockFlags::empty(), 2);
    assert!(b.try_result().is_none(), "held by the helper");
    let dump = ctl.dump(Some("ls")).unwrap();
    assert!(dump.contains(&format!("pid {}", child.id())), "{dump}");
    child.kill().unwrap();
    child.wait().unwrap();
    let g = b.result();
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lb));
}

#[test]
fn permissions_for_another_uid() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("ls600", LsFlags::empty(), 0) >= 0);
    assert!(ctl.create("ls660", LsFlags::empty(), 0o660) >= 0);
    let m666 = ctl.create("ls666", LsFlags::empty(), 0o666);
    assert!(m666 >= 0);
    let out = spawn_helper("user", &d.path)
        .uid(65534)
        .gid(65534)
        .env("DLMD_TEST_MINOR", m666.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "helper failed: {out:?}");
    let r = helper_lines(&out.stdout);
    let get = |k: &str| {
        r.get(k)
            .unwrap_or_else(|| panic!("no {k} in {r:?}"))
            .as_str()
    };
    let eacces = EACCES.to_string();
    let eperm = (-i64::from(libc::EPERM)).to_string();
    assert_eq!(get("open600"), eacces);
    assert_eq!(get("open660"), eacces, "not in the group");
    assert_eq!(get("open666"), "0");
    // On a dlmd run by root, CREATE and REMOVE need root (or the admin
    // group), as CAP_SYS_ADMIN on the kernel: existing or not.
    assert_eq!(get("create600"), eperm);
    assert_eq!(get("create666"), eperm);
    assert_eq!(get("remove666"), eperm);
    assert_eq!(get("dump600"), eacces);
    assert_eq!(get("dumpall-has-600"), "false");
    assert_eq!(get("createmine"), eperm);
    assert_eq!(get("openmine"), ENOENT.to_string());
    // Root may open anything; ls666 kept its single creation count.
    drop(Handle::open(&d.path, "ls600"));
    wait_no_openers(&mut ctl, "ls600");
    assert_eq!(ctl.remove(m666 as u32, RemoveFlags::empty()), 0);
    assert_eq!(open_raw(&d.path, "ls666").0, ENOENT);
}

#[test]
fn dump_shows_locks_and_json() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0);
    let mut h = Handle::open(&d.path, "ls");
    let lkid = h.lock("res", Mode::Ex, LockFlags::empty(), 1);
    assert_eq!(h.result().status, Status::GRANTED);
    let mut w = Handle::open(&d.path, "ls");
    let wid = w.lock("res", Mode::Pr, LockFlags::empty(), 2);
    let text = ctl.dump(Some("ls")).unwrap();
    let pid = std::process::id();
    assert!(text.starts_with("lockspace \"ls\" minor "), "{text}");
    assert!(text.contains(" openers 2 "), "{text}");
    assert!(text.contains("  resource \"res\""), "{text}");
    assert!(
        text.contains(&format!(
            "    granted lkid {lkid:#010x} grmode EX rqmode -- pid {pid} owner {} flags",
            h.id
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "    waiting lkid {wid:#010x} grmode -- rqmode PR pid {pid}"
        )),
        "{text}"
    );
    assert_eq!(ctl.dump(None).unwrap(), text, "one lockspace: same dump");
    assert_eq!(ctl.dump(Some("none")), Err(ENOENT));

    // The same through `dlmd --dump`.
    let out = Command::new(env!("CARGO_BIN_EXE_dlmd"))
        .args(["--dump", "ls", "--socket"])
        .arg(&d.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
    let out = Command::new(env!("CARGO_BIN_EXE_dlmd"))
        .args(["--dump", "--json"])
        .env("DLMD_SOCKET", &d.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8(out.stdout).unwrap();
    // The typed dump: the waiter is blocked by the holder.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], 1, "{json}");
    assert_eq!(v["lockspaces"][0]["name"], "ls", "{json}");
    let locks = &v["lockspaces"][0]["resources"][0]["locks"];
    assert_eq!(locks[0]["lkid"], lkid, "{json}");
    assert_eq!(locks[0]["state"], "granted", "{json}");
    assert_eq!(locks[0]["grmode"], "EX", "{json}");
    assert_eq!(locks[0]["rqmode"], serde_json::Value::Null, "{json}");
    assert_eq!(locks[0]["pid"], pid, "{json}");
    assert_eq!(locks[1]["lkid"], wid, "{json}");
    assert_eq!(locks[1]["state"], "waiting", "{json}");
    assert_eq!(locks[1]["blocked_by"], serde_json::json!([lkid]), "{json}");
    let out = Command::new(env!("CARGO_BIN_EXE_dlmd"))
        .args(["--dump", "none", "--socket"])
        .arg(&d.path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_second_instance_is_refused() {
    let mut d = Daemon::start("dlmd");
    let second = dlmd_command(&d.path).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already"), "{err}");
    assert!(d.alive());
    assert_eq!(Control::connect(&d.path).version().0, 0);
}

#[test]
fn a_stale_socket_is_replaced_and_sigterm_removes_it() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    {
        // A socket file nobody listens on, as a killed dlmd leaves.
        let fd = net::socket(net::AddressFamily::UNIX, net::SocketType::SEQPACKET, None).unwrap();
        net::bind(&fd, &net::SocketAddrUnix::new(&path).unwrap()).unwrap();
    }
    assert!(path.exists());
    assert_eq!(
        try_connect(&path).unwrap_err(),
        rustix::io::Errno::CONNREFUSED
    );
    let mut d = Daemon {
        child: spawn_dlmd(&path),
        dir,
        path: path.clone(),
    };
    wait_listening(&path);
    assert_eq!(Control::connect(&path).version().0, 0);
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "SIGTERM removes the socket");
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = temp_dir();
    let path = dir.join("dlmd.sock");
    std::fs::write(&path, b"precious").unwrap();
    let out = dlmd_command(&path).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_close_is_seen_before_the_next_request() {
    // As with a kernel device, whose close() completes before the next
    // write(): removing a lockspace right after closing its last handle
    // works, and a lock closed by one handle is free for the next
    // request of another.
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    for _ in 0..100 {
        let minor = ctl.create("gone", LsFlags::empty(), 0) as u32;
        let mut h = Handle::open(&d.path, "gone");
        assert!(h.lock("r", Mode::Ex, LockFlags::empty(), 1) > 0);
        drop(h);
        assert_eq!(ctl.remove(minor, RemoveFlags::empty()), 0);
    }
    ctl.create("ls", LsFlags::empty(), 0);
    let mut b = Handle::open(&d.path, "ls");
    for i in 0..100 {
        let mut a = Handle::open(&d.path, "ls");
        assert!(a.lock("r", Mode::Ex, LockFlags::empty(), i) > 0);
        drop(a);
        let l = b.lock("r", Mode::Ex, LockFlags::NOQUEUE, i);
        assert!(l > 0);
        assert_eq!(b.result().status, Status::GRANTED, "round {i}");
        assert_eq!(b.unlock(l as u32, LockFlags::empty(), i), 0);
        assert_eq!(b.result().status, Status::UNLOCKED);
    }
}

#[test]
fn a_large_dump_comes_in_chunks() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("big", LsFlags::empty(), 0);
    let mut h = Handle::open(&d.path, "big");
    let n = 2000;
    for i in 0..n {
        assert!(h.lock(&format!("resource-{i:05}"), Mode::Pr, LockFlags::empty(), i) > 0);
        assert_eq!(h.result().status, Status::GRANTED);
    }
    // Read the chunks one by one: several, each at most DUMP_CHUNK.
    ctl.seq += 1;
    send(&ctl.fd, &msg(Op::Dump, ctl.seq, &[b"big"]));
    assert_eq!(recv_reply(&ctl.fd, ctl.seq).0, 0);
    let mut chunks = 0;
    let mut text = Vec::new();
    loop {
        let m = recv(&ctl.fd).unwrap();
        let (hdr, chunk) = Header::parse(&m).unwrap();
        assert_eq!((hdr.op, hdr.seq), (Op::DumpChunk as u32, ctl.seq));
        assert!(chunk.len() <= proto::DUMP_CHUNK);
        if chunk.is_empty() {
            break;
        }
        chunks += 1;
        text.extend_from_slice(chunk);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(chunks > 2, "{chunks} chunks for {} bytes", text.len());
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("    granted "))
            .count(),
        n as usize
    );
    assert!(text.contains("  resource \"resource-01999\""));
    // The connection goes on afterwards.
    assert_eq!(ctl.version().0, 0);
}

#[test]
fn daemon_mode_returns_once_listening() {
    let dir = temp_dir();
    let path = dir.join("d.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_dlmd"))
        .args(["--daemon", "--log-level", "warn", "--socket"])
        .arg(&path)
        .stdin(Stdio::null())
        // The daemon keeps stderr for its log: not a pipe we wait on.
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // No waiting: it listens already.
    assert_eq!(Control::connect(&path).version().0, 0);
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    for _ in 0..3000 {
        if !path.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!path.exists(), "SIGTERM removes the socket");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_user_daemon_listens_in_its_runtime_dir() {
    // Not root, no DLMD_SOCKET: $XDG_RUNTIME_DIR/dlmd.sock, in a 0700
    // directory of the user's own (clients trust no other).
    let dir = temp_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlmd"))
        .args(["--log-level", "warn"])
        .env_remove("DLMD_SOCKET")
        .env("XDG_RUNTIME_DIR", &dir)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let path = dir.join("dlmd.sock");
    wait_listening(&path);
    let mut ctl = Control::connect(&path);
    assert_eq!(ctl.version().0, 0);
    // Root (this test) may open the lockspace its user created... once
    // it exists; the daemon's owner created it.
    assert!(ctl.create("mine", LsFlags::empty(), 0) >= 0);
    assert!(Handle::try_open(&path, "mine").is_ok());
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_half_close_is_an_owner_close_confirmed_by_eof() {
    // dlm-core's synchronous close: shut the request socket down for
    // writing, wait for dlmd's end of it; by then the owner is closed.
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0);
    let mut a = Handle::open(&d.path, "ls");
    assert!(a.lock("r", Mode::Ex, LockFlags::empty(), 1) > 0);
    assert_eq!(a.result().status, Status::GRANTED);
    net::shutdown(&a.req, net::Shutdown::Write).unwrap();
    assert!(recv(&a.req).is_none(), "dlmd closes its end");
    assert!(recv(&a.cb).is_none(), "and the callback socket");
    let text = ctl.dump(Some("ls")).unwrap();
    assert!(
        text.contains(" openers 0 ") && !text.contains("granted"),
        "{text}"
    );
}

/// A synchronous request that completes at once gets its completion in
/// the reply and nothing on the callback socket; an asynchronous one
/// (reserved word 0) keeps it on the callback socket, as before.
#[test]
fn a_synchronous_request_gets_its_completion_in_the_reply() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    let mut a = Handle::open(&d.path, "ls");
    let mut b = Handle::open(&d.path, "ls");

    // Granted.
    let (lkid, rode) = a.write_sync(&lock_req("r", Mode::Ex, LockFlags::empty(), 1, 0), 0);
    let r = rode.expect("the grant rides in the reply");
    assert_eq!((r.status, i64::from(r.lkid)), (Status::GRANTED, lkid));
    assert_eq!(r.user_lksb, lksb_of(1));
    assert!(a.try_result().is_none(), "nothing on the callback socket");
    // Refused at once (NOQUEUE against a's EX): EAGAIN in the reply.
    let (lb, rode) = b.write_sync(&lock_req("r", Mode::Pr, LockFlags::NOQUEUE, 2, 0), 0);
    assert!(lb > 0);
    assert_eq!(
        rode.expect("EAGAIN rides").status,
        Status::from_raw(libc::EAGAIN)
    );
    // Unlocked.
    let unlock = Request::Unlock(dlm_core::LockParams {
        lkid: lkid as u32,
        castparam: 3,
        lksb: lksb_of(3),
        ..Default::default()
    });
    let (ret, rode) = a.write_sync(&unlock, 0);
    assert_eq!(ret, 0);
    assert_eq!(rode.expect("EUNLOCK rides").status, Status::UNLOCKED);
    assert!(a.try_result().is_none() && b.try_result().is_none());

    // An asynchronous request: the reply carries only `ret`.
    let l = a.lock("r", Mode::Ex, LockFlags::empty(), 4);
    assert_eq!(a.result().status, Status::GRANTED);
    // A synchronous request that is queued: no result yet; it comes on
    // the callback socket when granted.
    let (lq, rode) = b.write_sync(&lock_req("r", Mode::Ex, LockFlags::empty(), 5, 0), 0);
    assert!(lq > 0 && rode.is_none());
    assert_eq!(a.unlock(l as u32, LockFlags::empty(), 6), 0);
    assert_eq!(a.result().status, Status::UNLOCKED);
    let g = b.result();
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, lq));
}

/// The order of a handle's results never changes: a completion rides in
/// the reply only when the client has read everything dlmd sent to the
/// handle (the count in the request), so it never overtakes an earlier
/// callback, and later callbacks follow it on the callback socket.
#[test]
fn a_completion_never_overtakes_an_earlier_callback() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    let mut a = Handle::open(&d.path, "ls");
    let mut b = Handle::open(&d.path, "ls");

    // a holds "x" with a blocking callback; b's request queues a BAST
    // for a on a's callback socket, unread.
    let (lx, rode) = a.write_sync(&lock_req("x", Mode::Ex, LockFlags::empty(), 1, BASTADDR), 0);
    assert_eq!(rode.unwrap().status, Status::GRANTED);
    let lb = b.lock("x", Mode::Pr, LockFlags::empty(), 2);
    assert!(lb > 0);
    // a's own synchronous request completes at once, but a has read
    // none of the one result dlmd sent it: the completion goes behind
    // the BAST on the callback socket.
    let (ly, rode) = a.write_sync(&lock_req("y", Mode::Ex, LockFlags::empty(), 3, 0), 0);
    assert!(rode.is_none(), "must not overtake the unread BAST");
    let bast = a.result();
    assert_eq!((bast.bast_mode, i64::from(bast.lkid)), (Some(Mode::Pr), lx));
    let g = a.result();
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, ly));
    // Now a has read both: the next one rides again.
    let (lz, rode) = a.write_sync(&lock_req("z", Mode::Ex, LockFlags::empty(), 4, 0), 2);
    assert_eq!(rode.map(|r| i64::from(r.lkid)), Some(lz));

    // An asynchronous request of a still pending (queued behind b's
    // lock) when a synchronous one completes: the synchronous one rides,
    // the asynchronous completion comes later on the callback socket.
    let lw = b.lock("w", Mode::Ex, LockFlags::empty(), 5);
    assert_eq!(b.result().status, Status::GRANTED);
    let la = a.lock("w", Mode::Ex, LockFlags::empty(), 6);
    let (lv, rode) = a.write_sync(&lock_req("v", Mode::Ex, LockFlags::empty(), 7, 0), 2);
    assert_eq!(rode.map(|r| i64::from(r.lkid)), Some(lv));
    assert!(a.try_result().is_none());
    assert_eq!(b.unlock(lw as u32, LockFlags::empty(), 8), 0);
    let g = a.result();
    assert_eq!((g.status, i64::from(g.lkid)), (Status::GRANTED, la));

    // An asynchronous completion already sent (granted at once, unread)
    // when a synchronous request completes: behind it, on the socket.
    let lu = a.lock("u", Mode::Ex, LockFlags::empty(), 9);
    let (lt, rode) = a.write_sync(&lock_req("t", Mode::Ex, LockFlags::empty(), 10, 0), 3);
    assert!(rode.is_none());
    assert_eq!(i64::from(a.result().lkid), lu);
    assert_eq!(i64::from(a.result().lkid), lt);

    // A BAST to the requester itself, caused by its own synchronous
    // request: the first of its results (the BAST) rides in the reply,
    // the completion follows on the callback socket once granted.
    let (ls1, rode) = a.write_sync(
        &lock_req("s", Mode::Pr, LockFlags::empty(), 11, BASTADDR),
        5,
    );
    assert_eq!(rode.map(|r| i64::from(r.lkid)), Some(ls1));
    let (ls2, rode) = a.write_sync(&lock_req("s", Mode::Ex, LockFlags::empty(), 12, 0), 5);
    assert!(ls2 > 0);
    let bast = rode.expect("the BAST for a's PR rides");
    assert_eq!(
        (bast.bast_mode, i64::from(bast.lkid)),
        (Some(Mode::Ex), ls1)
    );
    assert!(a.try_result().is_none(), "the EX waits");
}

/// A client of another protocol version is refused with EPROTONOSUPPORT
/// in a sequence-0 reply that carries dlmd's version, and the connection
/// is closed; a library client that meets a dlmd of another version
/// refuses it, naming both versions.
#[test]
fn mismatched_protocol_versions_refuse_each_other() {
    let d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    ctl.create("ls", LsFlags::empty(), 0o666);
    for (op, payload) in [
        (Op::Open, &b"ls"[..]),
        (Op::Version, &[][..]),
        (Op::Dump, &[][..]),
    ] {
        for version in [0, proto::PROTOCOL_VERSION + 1] {
            let fd = connect(&d.path);
            let mut h = Header::new(op, 1, 1);
            h.reserved = version;
            send(&fd, &proto::message(h, &[payload]));
            let m = recv(&fd).expect("a refusal");
            let (h, ret, _) = proto::parse_reply_header(&m, 0).unwrap();
            assert_eq!(ret, -i64::from(libc::EPROTONOSUPPORT));
            assert_eq!(h.reserved, proto::PROTOCOL_VERSION);
            assert!(recv(&fd).is_none(), "closed after the refusal");
        }
    }
    // dlmd goes on serving clients of its own version.
    assert_eq!(ctl.version().0, 0);

    // A peer that answers like a dlmd from before versioning (reserved
    // word 0 in its replies): the library refuses it.
    let dir = temp_dir();
    let path = dir.join("old.sock");
    let listener = net::socket(net::AddressFamily::UNIX, net::SocketType::SEQPACKET, None).unwrap();
    net::bind(&listener, &net::SocketAddrUnix::new(&path).unwrap()).unwrap();
    net::listen(&listener, 4).unwrap();
    let old = std::thread::spawn(move || {
        let fd = net::accept(&listener).unwrap();
        let mut buf = [0u8; 256];
        let n = net::recv(&fd, &mut buf, net::RecvFlags::empty()).unwrap().0;
        let (h, _) = Header::parse(&buf[..n]).unwrap();
        assert_eq!(
            h.reserved,
            proto::PROTOCOL_VERSION,
            "the client says its version"
        );
        let mut reply = proto::reply(h.seq, 0, &[&Version::DEVICE.encode()]);
        reply[12..16].copy_from_slice(&0u32.to_ne_bytes());
        net::send(&fd, &reply, SendFlags::empty()).unwrap();
    });
    let err = dlm_core::transport::Control::connect_dlmd(path.clone()).unwrap_err();
    old.join().unwrap();
    assert_eq!(err, dlm_core::Errno::EPROTONOSUPPORT);
    let why = dlm_core::dlmd::client::version_mismatch().expect("a message");
    assert!(
        why.contains("version 0") && why.contains(&format!("version {}", proto::PROTOCOL_VERSION)),
        "{why}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
