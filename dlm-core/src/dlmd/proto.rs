//! The dlmd wire protocol: message headers, operation codes and the
//! socket discovery rule, shared by the client transport and the daemon.
//! `PROTOCOL.md` at the top of the repository is the prose version.
//!
//! Every message on a dlmd socket is one `SOCK_SEQPACKET` record. Requests
//! and replies start with a 16-byte [`Header`]; results on a callback
//! socket are bare `struct dlm_lock_result` bytes, exactly what a kernel
//! device `read()` returns, so one dispatcher reads both backends.

use crate::Errno;
use crate::codec::{REQUEST_MAX, VERSION_LEN};
use std::path::PathBuf;

/// Size of a [`Header`] on the wire.
pub const HEADER_LEN: usize = 16;
/// Largest request message: a header, an 8-byte prefix and a full request.
pub const MAX_REQUEST_MSG: usize = HEADER_LEN + 8 + REQUEST_MAX;
/// Size of a plain reply: a header and the 8-byte return value.
pub const REPLY_LEN: usize = HEADER_LEN + 8;
/// Size of an OPEN reply: a plain reply plus owner id and token.
pub const OPEN_REPLY_LEN: usize = REPLY_LEN + 16;
/// Size of a VERSION reply: a plain reply plus `struct dlm_device_version`.
pub const VERSION_REPLY_LEN: usize = REPLY_LEN + VERSION_LEN;
/// Largest chunk of dump text in one message.
pub const DUMP_CHUNK: usize = 32 * 1024;

/// Operation codes. The first message on a connection fixes its role:
/// a control operation makes it a control connection, [`Op::Open`] a
/// request socket, [`Op::Attach`] a callback socket.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// Control: ask for the device interface version.
    Version = 1,
    /// Control: a CREATE_LOCKSPACE or REMOVE_LOCKSPACE request (payload:
    /// u32 permission mode, u32 zero, then the v6 request bytes).
    Control = 2,
    /// Control: ask for the lock dump (payload: a lockspace name, or
    /// nothing for all lockspaces). Answered by a reply, then
    /// [`Op::DumpChunk`] messages, the last one empty.
    Dump = 3,
    /// Request socket, first message: open a lockspace by name (payload:
    /// the name). The reply carries the minor (or -errno), the owner id
    /// and a one-time token for [`Op::Attach`].
    Open = 4,
    /// Request socket: one v6 request (LOCK, UNLOCK, DEADLOCK, PURGE).
    /// The reply carries what the kernel's `write()` would return.
    Write = 5,
    /// Callback socket, first message: attach to an owner (payload: owner
    /// id, token). The reply (on this socket) is 0 or -errno; afterwards
    /// only results arrive.
    Attach = 6,
    /// Every answer: the header echoes the request's sequence number.
    Reply = 7,
    /// A piece of dump text.
    DumpChunk = 8,
}

impl Op {
    /// The operation with this code.
    pub fn from_raw(raw: u32) -> Option<Op> {
        Some(match raw {
            1 => Op::Version,
            2 => Op::Control,
            3 => Op::Dump,
            4 => Op::Open,
            5 => Op::Write,
            6 => Op::Attach,
            7 => Op::Reply,
            8 => Op::DumpChunk,
            _ => return None,
        })
    }
}

/// The header of every request and reply (native byte order: the socket
/// never leaves the host).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// What the message is.
    pub op: u32,
    /// The request's sequence number; a reply echoes it.
    pub seq: u32,
    /// The caller's thread id (requests); dlmd uses it as the kernel uses
    /// the writer's tid (orphan owner pid, PURGE of one's own locks).
    pub tid: u32,
    /// Zero.
    pub reserved: u32,
}

impl Header {
    /// A header for `op`.
    pub fn new(op: Op, seq: u32, tid: u32) -> Header {
        Header {
            op: op as u32,
            seq,
            tid,
            reserved: 0,
        }
    }

    /// Appends the header's bytes to `out`.
    pub fn put(&self, out: &mut Vec<u8>) {
        for v in [self.op, self.seq, self.tid, self.reserved] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
    }

    /// Splits a message into its header and payload.
    ///
    /// # Errors
    /// EINVAL if the message is shorter than a header.
    pub fn parse(msg: &[u8]) -> Result<(Header, &[u8]), Errno> {
        if msg.len() < HEADER_LEN {
            return Err(Errno::EINVAL);
        }
        let word = |i: usize| u32::from_ne_bytes(msg[i * 4..i * 4 + 4].try_into().unwrap());
        Ok((
            Header {
                op: word(0),
                seq: word(1),
                tid: word(2),
                reserved: word(3),
            },
            &msg[HEADER_LEN..],
        ))
    }
}

/// Builds a message: header, then payload pieces.
pub fn message(header: Header, payload: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.iter().map(|p| p.len()).sum::<usize>());
    header.put(&mut out);
    for p in payload {
        out.extend_from_slice(p);
    }
    out
}

/// A reply: header echoing `seq`, the return value, then `extra` bytes.
pub fn reply(seq: u32, ret: i64, extra: &[&[u8]]) -> Vec<u8> {
    let mut out = message(Header::new(Op::Reply, seq, 0), &[&ret.to_ne_bytes()]);
    for e in extra {
        out.extend_from_slice(e);
    }
    out
}

/// Reads a native-endian u64 at `at` of `bytes`, if present.
pub fn get_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
}

/// Reads a native-endian u32 at `at` of `bytes`, if present.
pub fn get_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
}

/// Parses a reply to the request with sequence number `seq`: returns the
/// kernel-style return value and the bytes after it.
///
/// # Errors
/// EPROTO if the message is not a reply to `seq`.
pub fn parse_reply(msg: &[u8], seq: u32) -> Result<(i64, &[u8]), Errno> {
    let (h, payload) = Header::parse(msg).map_err(|_| Errno::EPROTO)?;
    if h.op != Op::Reply as u32 || h.seq != seq {
        return Err(Errno::EPROTO);
    }
    let ret = get_u64(payload, 0).ok_or(Errno::EPROTO)? as i64;
    Ok((ret, &payload[8..]))
}

/// The system-wide socket path, used when it exists (a dlmd started by
/// root, shared by all users).
pub const SYSTEM_SOCKET: &str = "/run/dlmd/dlmd.sock";

/// Where a client looks for dlmd, in order: `$DLMD_SOCKET`; the system
/// socket if it exists; `$XDG_RUNTIME_DIR/dlmd.sock`;
/// `/tmp/dlmd-$UID/dlmd.sock`. The first candidate is the one used.
pub fn client_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DLMD_SOCKET").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if std::path::Path::new(SYSTEM_SOCKET).exists() {
        return SYSTEM_SOCKET.into();
    }
    per_user_socket_path()
}

/// Where a daemon listens: `$DLMD_SOCKET`; the system socket when running
/// as root; otherwise the per-user path of [`client_socket_path`].
pub fn daemon_socket_path(is_root: bool) -> PathBuf {
    if let Some(p) = std::env::var_os("DLMD_SOCKET").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if is_root {
        return SYSTEM_SOCKET.into();
    }
    per_user_socket_path()
}

fn per_user_socket_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("dlmd.sock");
    }
    let uid = rustix::process::getuid().as_raw();
    PathBuf::from(format!("/tmp/dlmd-{uid}/dlmd.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let msg = message(Header::new(Op::Write, 7, 1234), &[b"abc"]);
        let (h, p) = Header::parse(&msg).unwrap();
        assert_eq!(h, Header::new(Op::Write, 7, 1234));
        assert_eq!(p, b"abc");
        assert_eq!(Header::parse(&msg[..15]), Err(Errno::EINVAL));
        let r = reply(7, -22, &[&[1, 2]]);
        assert_eq!(parse_reply(&r, 7), Ok((-22, &[1u8, 2][..])));
        assert_eq!(parse_reply(&r, 8), Err(Errno::EPROTO));
        assert_eq!(Op::from_raw(Op::DumpChunk as u32), Some(Op::DumpChunk));
        assert_eq!(Op::from_raw(99), None);
    }
}
