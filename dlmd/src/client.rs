//! `dlmd --dump`: a client of a running dlmd that asks for the lock dump
//! and prints it (as text, or converted to JSON).

use dlm_core::dlmd::client::connect_checked;
use dlm_core::dlmd::proto::{self, ConnectError, Header, Op, SocketPath};
use rustix::net::{self, RecvFlags, SendFlags};
use std::time::Duration;

/// Fetches the dump of `lockspace` (or of every lockspace the caller may
/// open) from the dlmd listening on `path` (a discovered socket is
/// checked before anything is sent, see `dlm_core::dlmd::client`).
///
/// # Errors
/// A message for the user: no dlmd, an untrusted or refused connection,
/// an error reply (ENOENT: no such lockspace; EACCES) or a protocol
/// error.
pub fn fetch_dump(path: &SocketPath, lockspace: Option<&str>) -> Result<String, String> {
    let fd = connect_checked(path).map_err(|e| match e {
        ConnectError::Untrusted(u) => u.to_string(),
        ConnectError::Sys(e) => format!("cannot reach dlmd at {}: {e}", path.path.display()),
    })?;
    // A generous limit so that a wedged daemon cannot hang the caller
    // forever.
    let limit = Some(Duration::from_secs(30));
    let _ = net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, limit);
    let _ = net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Send, limit);

    let name = lockspace.unwrap_or("").as_bytes();
    let msg = proto::message(Header::new(Op::Dump, 1, std::process::id()), &[name]);
    net::send(&fd, &msg, SendFlags::NOSIGNAL).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::DUMP_CHUNK + 64];
    let n = recv(&fd, &mut buf)?;
    if let Ok((h, ret, _)) = proto::parse_reply_header(&buf[..n], 0) {
        if ret == -i64::from(libc::EPROTONOSUPPORT) {
            return Err(proto::mismatch_message(proto::PROTOCOL_VERSION, h.reserved));
        }
    }
    let (h, ret, _) =
        proto::parse_reply_header(&buf[..n], 1).map_err(|e| format!("bad reply: {e:?}"))?;
    if h.reserved != proto::PROTOCOL_VERSION {
        return Err(proto::mismatch_message(proto::PROTOCOL_VERSION, h.reserved));
    }
    if ret < 0 {
        let err = std::io::Error::from_raw_os_error((-ret) as i32);
        return Err(match lockspace {
            Some(ls) => format!("dump of lockspace {ls:?}: {err}"),
            None => format!("dump: {err}"),
        });
    }
    let mut text = Vec::new();
    loop {
        let n = recv(&fd, &mut buf)?;
        let (h, payload) = Header::parse(&buf[..n]).map_err(|_| "short message".to_owned())?;
        if h.op != Op::DumpChunk as u32 || h.seq != 1 {
            return Err(format!("unexpected message op {} seq {}", h.op, h.seq));
        }
        if payload.is_empty() {
            break;
        }
        text.extend_from_slice(payload);
    }
    String::from_utf8(text).map_err(|_| "dump text is not UTF-8".to_owned())
}

fn recv(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        match net::recv(fd, &mut *buf, RecvFlags::empty()) {
            Ok((_, 0)) => return Err("dlmd closed the connection".to_owned()),
            Ok((_, n)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}
