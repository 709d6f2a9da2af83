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

/// The version of dlmd's wire protocol (not the device interface's 6.0.2,
/// which VERSION reports): carried in the `reserved` word of the first
/// message of every connection and of every reply. A client and a dlmd of
/// different protocol versions refuse each other (PROTOCOL.md
/// "Versioning").
pub const PROTOCOL_VERSION: u32 = 1;
/// WRITE header flag (bit 0 of `reserved`): the caller waits for this
/// request's completion, which may then ride in the reply. Bits 1 to 31
/// carry how many results the client has taken from its callback socket
/// (modulo 2^31), see [`write_word`].
pub const WRITE_SYNC: u32 = 1;
/// Largest result in a reply: a `struct dlm_lock_result` with its LVB.
pub const RESULT_IN_REPLY_MAX: usize = crate::codec::RESULT_LVB_LEN;

/// The `reserved` word of a WRITE: [`WRITE_SYNC`] and the count of
/// results taken from the callback socket, or 0 for a request whose
/// completion goes to the callback socket.
pub fn write_word(sync: bool, taken: u32) -> u32 {
    if sync { WRITE_SYNC | (taken << 1) } else { 0 }
}

/// Largest message of replies dlmd sends on a request socket: the
/// replies to pipelined requests travel together, each as long as its
/// header's `tid` word says (PROTOCOL.md "Replies travel together";
/// [`split_replies`]). A client with one request outstanding gets one
/// reply per message.
pub const REPLIES_MAX_MSG: usize = 4096;

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
    /// A piece of dump text (or of a STATUS answer).
    DumpChunk = 8,
    /// Control: ask for dlmd's own status (no payload). Answered by a
    /// reply, then [`Op::DumpChunk`] messages of `key value` lines
    /// ([`super::status::DlmdStatus`]), the last one empty.
    Status = 9,
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
            9 => Op::Status,
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
    /// the writer's tid (orphan owner pid, PURGE of one's own locks). In
    /// a reply: the reply's length in bytes ([`split_replies`]).
    pub tid: u32,
    /// The protocol version ([`PROTOCOL_VERSION`]) in a connection's
    /// first message and in every reply; [`write_word`] in a WRITE.
    pub reserved: u32,
}

impl Header {
    /// A header for `op`: WRITE with `reserved` 0, every other operation
    /// with [`PROTOCOL_VERSION`].
    pub fn new(op: Op, seq: u32, tid: u32) -> Header {
        Header {
            op: op as u32,
            seq,
            tid,
            reserved: if op == Op::Write { 0 } else { PROTOCOL_VERSION },
        }
    }

    /// The header's bytes.
    pub fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (i, v) in [self.op, self.seq, self.tid, self.reserved]
            .iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
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
    let len = REPLY_LEN + extra.iter().map(|e| e.len()).sum::<usize>();
    let header = Header::new(Op::Reply, seq, u32::try_from(len).unwrap_or(u32::MAX));
    let mut out = message(header, &[&ret.to_ne_bytes()]);
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

/// The replies one message from dlmd holds, in order, each whole (its
/// header, `ret` and the bytes after it), cut where its header's `tid`
/// word (the reply's length) says.
pub fn split_replies(msg: &[u8]) -> Replies<'_> {
    Replies { rest: msg }
}

/// The iterator of [`split_replies`]: yields EPROTO (and then nothing)
/// for a reply whose length does not fit the message.
#[derive(Debug)]
pub struct Replies<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Replies<'a> {
    type Item = Result<&'a [u8], Errno>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = get_u32(self.rest, 8).map_or(0, |l| l as usize);
        if len < REPLY_LEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(Errno::EPROTO));
        }
        let (one, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok(one))
    }
}

/// Parses a reply to the request with sequence number `seq`: returns the
/// kernel-style return value and the bytes after it.
///
/// # Errors
/// EPROTO if the message is not a reply to `seq`.
pub fn parse_reply(msg: &[u8], seq: u32) -> Result<(i64, &[u8]), Errno> {
    parse_reply_header(msg, seq).map(|(_, ret, rest)| (ret, rest))
}

/// [`parse_reply`], with the reply's header (whose `reserved` word is
/// the daemon's protocol version).
///
/// # Errors
/// EPROTO if the message is not a reply to `seq`.
pub fn parse_reply_header(msg: &[u8], seq: u32) -> Result<(Header, i64, &[u8]), Errno> {
    let (h, payload) = Header::parse(msg).map_err(|_| Errno::EPROTO)?;
    if h.op != Op::Reply as u32 || h.seq != seq || h.tid as usize != msg.len() {
        return Err(Errno::EPROTO);
    }
    let ret = get_u64(payload, 0).ok_or(Errno::EPROTO)? as i64;
    Ok((h, ret, &payload[8..]))
}

/// A client and a dlmd of different protocol versions: the one-line
/// message naming both.
pub fn mismatch_message(client: u32, daemon: u32) -> String {
    format!(
        "dlmd speaks protocol version {daemon}, this client version {client}: \
         restart dlmd after upgrading it, or use a client of the same release"
    )
}

/// The system-wide socket path, used when it exists (a dlmd started by
/// root, shared by all users).
pub const SYSTEM_SOCKET: &str = "/run/dlmd/dlmd.sock";

/// How a client found a dlmd socket, which decides what it checks before
/// trusting it (README "Security model").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trust {
    /// `$DLMD_SOCKET`, or a path a program gave: the user's choice,
    /// used as it is.
    Explicit,
    /// [`SYSTEM_SOCKET`]: its directory must be a root-owned directory
    /// that group and others cannot write, and the server must run as
    /// root.
    System,
    /// `$XDG_RUNTIME_DIR/dlmd.sock` or `/tmp/dlmd-$UID/dlmd.sock`: the
    /// directory must be a real directory (not a symlink) owned by the
    /// caller, with no access for group or others (0700), and the server
    /// must run as the caller or root.
    PerUser,
}

/// A dlmd socket path and how far it is trusted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SocketPath {
    /// The socket file.
    pub path: PathBuf,
    /// What must hold before the client uses it.
    pub trust: Trust,
}

impl SocketPath {
    /// A path the user chose: not checked.
    pub fn explicit(path: impl Into<PathBuf>) -> SocketPath {
        SocketPath {
            path: path.into(),
            trust: Trust::Explicit,
        }
    }

    /// The socket's directory.
    pub fn dir(&self) -> &std::path::Path {
        self.path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
    }

    /// Checks the socket's directory (`lstat`, so a symlink is refused),
    /// before anything connects.
    ///
    /// # Errors
    /// [`ConnectError::Untrusted`] when the directory must not be
    /// trusted; [`ConnectError::Sys`] when it cannot be examined (ENOENT:
    /// nothing there).
    pub fn check_dir(&self) -> Result<(), ConnectError> {
        use std::os::unix::fs::MetadataExt;
        let caller = rustix::process::geteuid().as_raw();
        let (owner, forbidden) = match self.trust {
            Trust::Explicit => return Ok(()),
            Trust::System => (0, 0o022),
            Trust::PerUser => (caller, 0o077),
        };
        let dir = self.dir();
        let meta = std::fs::symlink_metadata(dir).map_err(|e| {
            ConnectError::Sys(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
        let problem = if meta.file_type().is_symlink() {
            Some("is a symlink".to_string())
        } else if !meta.is_dir() {
            Some("is not a directory".to_string())
        } else if meta.uid() != owner {
            Some(format!(
                "is owned by {}, not {}",
                who(meta.uid()),
                who(owner)
            ))
        } else if meta.mode() & forbidden != 0 {
            Some(format!(
                "has mode {:04o} ({})",
                meta.mode() & 0o7777,
                if self.trust == Trust::System {
                    "writable by group or others"
                } else {
                    "open to group or others; it must be 0700"
                }
            ))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(p) => Err(ConnectError::Untrusted(Untrusted(format!(
                "not trusting the dlmd socket {}: its directory {} {p}",
                self.path.display(),
                dir.display()
            )))),
        }
    }

    /// Checks the uid of the server that accepted the connection
    /// (`SO_PEERCRED`), before anything is sent.
    ///
    /// # Errors
    /// [`ConnectError::Untrusted`]: why the server must not be trusted.
    pub fn check_server(&self, server_uid: u32) -> Result<(), ConnectError> {
        let caller = rustix::process::geteuid().as_raw();
        let ok = match self.trust {
            Trust::Explicit => true,
            Trust::System => server_uid == 0,
            Trust::PerUser => server_uid == 0 || server_uid == caller,
        };
        if ok {
            return Ok(());
        }
        let expected = if self.trust == Trust::System || caller == 0 {
            "root".to_string()
        } else {
            format!("{} or root", who(caller))
        };
        Err(ConnectError::Untrusted(Untrusted(format!(
            "not trusting the dlmd socket {}: the server runs as {}, not {expected}",
            self.path.display(),
            who(server_uid)
        ))))
    }
}

impl From<PathBuf> for SocketPath {
    fn from(path: PathBuf) -> SocketPath {
        SocketPath::explicit(path)
    }
}

impl From<&std::path::Path> for SocketPath {
    fn from(path: &std::path::Path) -> SocketPath {
        SocketPath::explicit(path)
    }
}

/// Why a discovered socket was refused: one line naming the path and
/// its owner. Callers of the C API see EACCES.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Untrusted(pub String);

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Untrusted {}

/// Why a connection to dlmd was not made.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ConnectError {
    /// A system call failed (ENOENT: no socket, ECONNREFUSED: nobody
    /// listens).
    Sys(Errno),
    /// The socket was found but is not trusted; nothing was sent.
    Untrusted(Untrusted),
}

impl ConnectError {
    /// The errno callers of the C API see: EACCES for an untrusted
    /// socket, as `connect(2)` answers a socket the caller may not use.
    pub fn errno(&self) -> Errno {
        match self {
            ConnectError::Sys(e) => *e,
            ConnectError::Untrusted(_) => Errno::EACCES,
        }
    }
}

/// `uid N (name)`, or `uid N` when the user database has no name.
fn who(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// Where a client looks for dlmd, in order: `$DLMD_SOCKET` (trusted as
/// the user's choice); the system socket if it exists; then
/// `$XDG_RUNTIME_DIR/dlmd.sock`, else `/tmp/dlmd-$UID/dlmd.sock`. The
/// first candidate is the one used, with the [`Trust`] of its kind.
pub fn client_socket_path() -> SocketPath {
    if let Some(p) = std::env::var_os("DLMD_SOCKET").filter(|p| !p.is_empty()) {
        return SocketPath::explicit(p);
    }
    if std::path::Path::new(SYSTEM_SOCKET).exists() {
        return SocketPath {
            path: SYSTEM_SOCKET.into(),
            trust: Trust::System,
        };
    }
    SocketPath {
        path: per_user_socket_path(),
        trust: Trust::PerUser,
    }
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

    #[test]
    fn a_per_user_directory_must_be_a_real_0700_directory_of_the_caller() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("dlm-proto-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("d");
        std::fs::create_dir_all(&dir).unwrap();
        let at = |d: &std::path::Path, trust| SocketPath {
            path: d.join("dlmd.sock"),
            trust,
        };
        let refused = |sp: &SocketPath| match sp.check_dir() {
            Err(ConnectError::Untrusted(u)) => u.0,
            other => panic!("{other:?}"),
        };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(at(&dir, Trust::PerUser).check_dir(), Ok(()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let why = refused(&at(&dir, Trust::PerUser));
        assert!(
            why.ends_with("has mode 0750 (open to group or others; it must be 0700)"),
            "{why}"
        );
        assert_eq!(at(&dir, Trust::Explicit).check_dir(), Ok(()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let why = refused(&at(&link, Trust::PerUser));
        assert!(why.ends_with("is a symlink"), "{why}");
        let gone = base.join("missing");
        assert_eq!(
            at(&gone, Trust::PerUser).check_dir(),
            Err(ConnectError::Sys(Errno::ENOENT))
        );
        // The server: the caller or root for a per-user path, root for
        // the system one.
        let me = rustix::process::geteuid().as_raw();
        assert!(at(&dir, Trust::PerUser).check_server(me).is_ok());
        assert!(at(&dir, Trust::PerUser).check_server(0).is_ok());
        assert!(at(&dir, Trust::System).check_server(0).is_ok());
        assert!(at(&dir, Trust::System).check_server(me.max(1)).is_err());
        assert!(
            at(&dir, Trust::PerUser)
                .check_server(me.wrapping_add(12345))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
