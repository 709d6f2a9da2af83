//! What systemd expects of a daemon, without linking libsystemd:
//!
//! - readiness (`Type=notify`): [`notify`] sends `READY=1` (and
//!   `STOPPING=1`) as one datagram to `$NOTIFY_SOCKET`, a path or an
//!   abstract name written `@name`;
//! - socket activation (`dlmd.socket`): [`listen_fd`] takes the listening
//!   socket systemd passes as fd 3 when `$LISTEN_PID` is our pid and
//!   `$LISTEN_FDS` is 1.
//!
//! Outside systemd both do nothing.

#![allow(unsafe_code)]

use rustix::net::{self, AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Sends `state` (e.g. `READY=1`) to the service manager, if
/// `$NOTIFY_SOCKET` names one; a failure is logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return;
    };
    let bytes = path.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddrUnix::new_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddrUnix::new(bytes),
        _ => {
            log::warn!("NOTIFY_SOCKET={path:?} is neither a path nor @abstract; not notifying");
            return;
        }
    };
    let sent = addr.and_then(|addr| {
        let fd = net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        net::sendto(&fd, state.as_bytes(), SendFlags::NOSIGNAL, &addr)
    });
    match sent {
        Ok(_) => log::debug!("notified the service manager: {state}"),
        Err(e) => log::warn!("cannot notify {path:?} ({state}): {e}"),
    }
}

/// The listening socket passed by socket activation, or `None` when
/// dlmd was not socket-activated (`$LISTEN_PID` missing or another
/// process's).
///
/// # Errors
/// A one-line message when the passed fds are not one listening
/// `SOCK_SEQPACKET` Unix socket.
pub fn listen_fd() -> Result<Option<OwnedFd>, String> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    if var("LISTEN_PID") != Some(std::process::id()) {
        return Ok(None);
    }
    match var("LISTEN_FDS") {
        Some(1) => {}
        n => {
            return Err(format!(
                "socket activation passed {} sockets; dlmd takes exactly one",
                n.map_or("no".to_string(), |n| n.to_string())
            ));
        }
    }
    // Validate before taking ownership: a borrowed view first.
    let borrowed = rustix::fs::fstat(
        // SAFETY: `$LISTEN_PID` is our pid, so the service manager passed
        // fd 3 to this process for us; `fstat` fails harmlessly (EBADF)
        // if it is not open. The borrow ends before anything closes it.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(LISTEN_FDS_START) },
    );
    if let Err(e) = borrowed {
        return Err(format!("socket activation: fd 3: {e}"));
    }
    // SAFETY: fd 3 is open (fstat above) and was passed to this process
    // by the service manager for dlmd; nothing else in dlmd opened,
    // owns or closes it, and this function runs once, at start.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let check = || -> rustix::io::Result<bool> {
        Ok(net::sockopt::socket_domain(&fd)? == AddressFamily::UNIX
            && net::sockopt::socket_type(&fd)? == SocketType::SEQPACKET
            && net::sockopt::socket_acceptconn(&fd)?)
    };
    match check() {
        Ok(true) => {}
        Ok(false) => {
            return Err(
                "socket activation: fd 3 is not a listening SOCK_SEQPACKET Unix socket \
                 (ListenSequentialPacket= in the socket unit)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("socket activation: fd 3: {e}")),
    }
    rustix::io::ioctl_fionbio(&fd, true).map_err(|e| format!("socket activation: {e}"))?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| format!("socket activation: {e}"))?;
    Ok(Some(fd))
}
