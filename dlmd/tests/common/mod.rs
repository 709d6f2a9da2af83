//! A small raw client of the dlmd protocol for the tests: starts the real
//! `dlmd` binary on a private socket and speaks PROTOCOL.md with plain
//! rustix `SOCK_SEQPACKET` sockets, so that the daemon is tested against
//! the contract rather than against dlm-core's client.

#![allow(dead_code, missing_docs)]

use dlm_core::codec::{REQUEST_LEN, RESULT_LVB_LEN, Version};
use dlm_core::dlmd::proto::{self, Header, Op};
use dlm_core::{LockFlags, LockParams, LockResult, LsFlags, Mode, Name, RemoveFlags, Request};
use rustix::net::{
    self, AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

pub const EINVAL: i64 = -(libc::EINVAL as i64);
pub const ENOENT: i64 = -(libc::ENOENT as i64);
pub const EEXIST: i64 = -(libc::EEXIST as i64);
pub const EBUSY: i64 = -(libc::EBUSY as i64);
pub const EACCES: i64 = -(libc::EACCES as i64);
pub const EBADE: i64 = -(libc::EBADE as i64);

/// The castaddr every test lock uses, so results can be recognised.
pub const CASTADDR: u64 = 0xca57_0000_0000_0001;
/// The bastaddr of locks that want blocking callbacks.
pub const BASTADDR: u64 = 0xba57_0000_0000_0002;

/// The one dlmd launcher of all tests (`dlm_tests::Dlmd`): a running dlmd
/// on a private socket, killed and cleaned up on drop.
#[allow(unused_imports)]
pub use dlm_tests::{Dlmd as Daemon, dlmd_command, wait_listening};

/// A fresh directory, mode 0777, so that tests that switch uid can reach
/// the socket in it.
pub fn temp_dir() -> PathBuf {
    dlm_tests::fresh_dir("dlmd-test")
}

/// Spawns the dlmd binary listening on `path` (stderr inherited, so that
/// an unread pipe can never stall it).
pub fn spawn_dlmd(path: &Path) -> Child {
    dlmd_command(path)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dlmd")
}

/// Connects a blocking SEQPACKET socket to `path`.
pub fn try_connect(path: &Path) -> rustix::io::Result<OwnedFd> {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    // A guard against hangs: a test that waits this long has failed.
    let limit = Some(Duration::from_secs(30));
    net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, limit)?;
    Ok(fd)
}

pub fn connect(path: &Path) -> OwnedFd {
    try_connect(path).expect("connect to dlmd")
}

pub fn send(fd: &OwnedFd, msg: &[u8]) {
    net::send(fd, msg, SendFlags::NOSIGNAL).expect("send");
}

/// Receives one message (blocking); `None` at end of stream.
pub fn recv(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::DUMP_CHUNK + 64];
    match net::recv(fd, &mut buf[..], RecvFlags::empty()) {
        Ok((0, _)) => None,
        Ok((n, _)) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) => panic!("recv: {e}"),
    }
}

/// Receives one message if one is queued.
pub fn try_recv(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match net::recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
        Ok((n, _)) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(rustix::io::Errno::AGAIN) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

/// Receives a reply to `seq`: its `ret` and the bytes after it.
pub fn recv_reply(fd: &OwnedFd, seq: u32) -> (i64, Vec<u8>) {
    let msg = recv(fd).expect("dlmd closed the connection instead of replying");
    let (ret, rest) = proto::parse_reply(&msg, seq)
        .unwrap_or_else(|e| panic!("not a reply to {seq}: {e:?} {msg:?}"));
    (ret, rest.to_vec())
}

/// The replies in one message from dlmd (the replies to pipelined
/// requests travel together), checked to answer `seq`, `seq + 1`, …:
/// each one's `ret`.
pub fn split_replies(msg: &[u8], seq: u32) -> Vec<i64> {
    proto::split_replies(msg)
        .zip(seq..)
        .map(|(one, seq)| {
            let one = one.unwrap_or_else(|e| panic!("not whole replies: {e:?} {msg:?}"));
            proto::parse_reply(one, seq)
                .unwrap_or_else(|e| panic!("not a reply to {seq}: {e:?} {one:?}"))
                .0
        })
        .collect()
}

pub fn msg(op: Op, seq: u32, payload: &[&[u8]]) -> Vec<u8> {
    proto::message(Header::new(op, seq, std::process::id()), payload)
}

pub fn name(s: &str) -> Name {
    Name::new(s.as_bytes()).unwrap()
}

/// A control connection.
pub struct Control {
    pub fd: OwnedFd,
    pub seq: u32,
}

impl Control {
    pub fn connect(path: &Path) -> Control {
        Control {
            fd: connect(path),
            seq: 0,
        }
    }

    /// One request, one reply.
    pub fn call(&mut self, op: Op, payload: &[&[u8]]) -> (i64, Vec<u8>) {
        self.seq += 1;
        send(&self.fd, &msg(op, self.seq, payload));
        recv_reply(&self.fd, self.seq)
    }

    pub fn version(&mut self) -> (i64, Vec<u8>) {
        self.call(Op::Version, &[])
    }

    pub fn create(&mut self, ls: &str, flags: LsFlags, mode: u32) -> i64 {
        let req = Request::CreateLockspace {
            flags,
            name: Name::lockspace(ls.as_bytes()).unwrap(),
        };
        self.control(&req, mode)
    }

    pub fn remove(&mut self, minor: u32, flags: RemoveFlags) -> i64 {
        self.control(&Request::RemoveLockspace { flags, minor }, 0)
    }

    pub fn control(&mut self, req: &Request, mode: u32) -> i64 {
        let bytes = req.encode(Version::DEVICE);
        let mut prefix = [0u8; 8];
        prefix[..4].copy_from_slice(&mode.to_ne_bytes());
        self.call(Op::Control, &[&prefix, &bytes]).0
    }

    /// DUMP: the text, or the negative errno.
    pub fn dump(&mut self, ls: Option<&str>) -> Result<String, i64> {
        let (ret, _) = self.call(Op::Dump, &[ls.unwrap_or("").as_bytes()]);
        if ret < 0 {
            return Err(ret);
        }
        let mut text = Vec::new();
        loop {
            let m = recv(&self.fd).expect("dump chunk");
            let (h, chunk) = Header::parse(&m).unwrap();
            assert_eq!(h.op, Op::DumpChunk as u32);
            assert_eq!(h.seq, self.seq);
            if chunk.is_empty() {
                return Ok(String::from_utf8(text).unwrap());
            }
            text.extend_from_slice(chunk);
        }
    }
}

/// A lockspace handle: request socket and callback socket.
pub struct Handle {
    pub req: OwnedFd,
    pub cb: OwnedFd,
    pub minor: u32,
    pub id: u64,
    pub seq: u32,
    pub tid: u32,
}

/// OPEN on a new request socket: (ret, owner id, token, the socket).
pub fn open_raw(path: &Path, ls: &str) -> (i64, u64, u64, OwnedFd) {
    let fd = connect(path);
    send(&fd, &msg(Op::Open, 1, &[ls.as_bytes()]));
    let (ret, rest) = recv_reply(&fd, 1);
    if ret < 0 {
        return (ret, 0, 0, fd);
    }
    assert_eq!(rest.len(), 16, "OPEN reply carries owner id and token");
    let id = u64::from_ne_bytes(rest[..8].try_into().unwrap());
    let token = u64::from_ne_bytes(rest[8..].try_into().unwrap());
    (ret, id, token, fd)
}

/// ATTACH on a new callback socket: (ret, the socket).
pub fn attach_raw(path: &Path, id: u64, token: u64) -> (i64, OwnedFd) {
    let fd = connect(path);
    send(
        &fd,
        &msg(Op::Attach, 9, &[&id.to_ne_bytes(), &token.to_ne_bytes()]),
    );
    let (ret, rest) = recv_reply(&fd, 9);
    assert!(rest.is_empty());
    (ret, fd)
}

impl Handle {
    /// Opens and attaches, or returns OPEN's negative errno.
    pub fn try_open(path: &Path, ls: &str) -> Result<Handle, i64> {
        let (ret, id, token, req) = open_raw(path, ls);
        if ret < 0 {
            return Err(ret);
        }
        let (aret, cb) = attach_raw(path, id, token);
        assert_eq!(aret, 0, "ATTACH with the right token");
        Ok(Handle {
            req,
            cb,
            minor: ret as u32,
            id,
            seq: 1,
            tid: std::process::id(),
        })
    }

    pub fn open(path: &Path, ls: &str) -> Handle {
        Handle::try_open(path, ls).expect("OPEN")
    }

    /// Sends raw WRITE payload bytes and returns the reply's `ret`.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> i64 {
        self.seq += 1;
        send(
            &self.req,
            &proto::message(Header::new(Op::Write, self.seq, self.tid), &[bytes]),
        );
        let (ret, rest) = recv_reply(&self.req, self.seq);
        assert!(rest.is_empty());
        ret
    }

    /// Sends `req` marked synchronous, saying `taken` results were read
    /// from the callback socket; returns the reply's `ret` and the result
    /// riding in it, if any.
    #[allow(dead_code)]
    pub fn write_sync(&mut self, req: &Request, taken: u32) -> (i64, Option<LockResult>) {
        self.seq += 1;
        let mut h = Header::new(Op::Write, self.seq, self.tid);
        h.reserved = proto::write_word(true, taken);
        send(
            &self.req,
            &proto::message(h, &[&req.encode(Version::DEVICE)]),
        );
        let (ret, rest) = recv_reply(&self.req, self.seq);
        let rode = (!rest.is_empty())
            .then(|| LockResult::decode(&rest).expect("a valid dlm_lock_result in the reply"));
        (ret, rode)
    }

    pub fn write(&mut self, req: &Request) -> i64 {
        self.write_bytes(&req.encode(Version::DEVICE))
    }

    /// A new lock request; lksb and castparam are derived from `tag`.
    pub fn lock(&mut self, res: &str, mode: Mode, flags: LockFlags, tag: u64) -> i64 {
        self.write(&lock_req(res, mode, flags, tag, 0))
    }

    pub fn unlock(&mut self, lkid: u32, flags: LockFlags, tag: u64) -> i64 {
        self.write(&Request::Unlock(LockParams {
            lkid,
            flags,
            castparam: tag,
            lksb: lksb_of(tag),
            ..LockParams::default()
        }))
    }

    /// The next result (blocking).
    pub fn result(&self) -> LockResult {
        let m = recv(&self.cb).expect("callback socket closed");
        assert!(
            m.len() == 72 || m.len() == RESULT_LVB_LEN,
            "result size {}",
            m.len()
        );
        LockResult::decode(&m).expect("a valid dlm_lock_result")
    }

    /// The next result, if one is queued now.
    pub fn try_result(&self) -> Option<LockResult> {
        try_recv(&self.cb).map(|m| LockResult::decode(&m).expect("a valid dlm_lock_result"))
    }
}

pub fn lksb_of(tag: u64) -> u64 {
    0x1000_0000 + tag
}

pub fn lock_req(res: &str, mode: Mode, flags: LockFlags, tag: u64, bastaddr: u64) -> Request {
    Request::Lock(LockParams {
        mode: mode.raw(),
        flags,
        castparam: tag,
        castaddr: CASTADDR,
        bastparam: tag,
        bastaddr,
        lksb: lksb_of(tag),
        name: name(res),
        ..LockParams::default()
    })
}

/// A LOCK request's bytes, for tests that mangle them.
pub fn lock_bytes(res: &str) -> Vec<u8> {
    let b = lock_req(res, Mode::Ex, LockFlags::empty(), 1, 0).encode(Version::DEVICE);
    assert!(b.len() >= REQUEST_LEN);
    b.to_vec()
}
