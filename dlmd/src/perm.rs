//! Who may do what on dlmd (PROTOCOL.md "Permissions", README "Security
//! model"): the peer of a connection (`SO_PEERCRED`, `SO_PEERGROUPS`),
//! who may connect at all, who may create and remove lockspaces, and the
//! owner/group/other check of a lockspace's mode made on OPEN, on CREATE
//! of an existing lockspace and on DUMP.
//!
//! The rules follow the kernel: creating and removing a lockspace needs
//! CAP_SYS_ADMIN there, so on a dlmd run by root CREATE and REMOVE need
//! uid 0 or membership of the `--admin-group` (the counterpart of a udev
//! rule that gives a group the control device); others get EPERM. A dlmd
//! run by an ordinary user serves only that user and root.

#![allow(unsafe_code)]

use dlm_core::{Errno, Name};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

/// `SO_PEERGROUPS` (asm-generic/socket.h; the libc crate lacks it).
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer of a connection, from `SO_PEERCRED` and `SO_PEERGROUPS` at
/// accept time (the credentials the client had when it connected).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Peer {
    /// The peer's process id (for logs and the dump).
    pub pid: u32,
    /// The peer's effective uid.
    pub uid: u32,
    /// The peer's effective gid.
    pub gid: u32,
    /// The peer's supplementary groups.
    pub groups: Arc<[u32]>,
}

impl Peer {
    /// The credentials of the process connected to `fd`.
    ///
    /// # Errors
    /// The errno of `getsockopt`.
    pub fn of(fd: impl AsFd) -> rustix::io::Result<Peer> {
        let c = rustix::net::sockopt::socket_peercred(&fd)?;
        Ok(Peer {
            pid: c.pid.as_raw_nonzero().get() as u32,
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
            groups: peer_groups(fd.as_fd())?.into(),
        })
    }

    /// Whether the peer is root, who may always open, create and remove.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether `gid` is the peer's group or one of its supplementary
    /// groups, as for file permissions.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The supplementary groups of the peer of `fd` (`SO_PEERGROUPS`).
fn peer_groups(fd: std::os::fd::BorrowedFd<'_>) -> rustix::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live, writable buffer of `len` bytes and
        // `len` is a valid socklen_t the kernel updates; `fd` is open.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n.min(groups.len()));
            return Ok(groups);
        }
        let e = rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        );
        // ERANGE: the kernel wrote the size it needs into `len`.
        if e != rustix::io::Errno::RANGE || n <= groups.len() {
            return Err(e);
        }
        groups.resize(n, 0);
    }
}

/// The gid of group `name` (a name from the group database, or a number).
///
/// # Errors
/// A message for the user when there is no such group.
pub fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = std::ffi::CString::new(name).map_err(|_| format!("bad group name {name:?}"))?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero bytes are a valid `struct group` (pointers null).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `cname` is NUL-terminated; `grp`, `buf` (of the length
        // passed) and `found` are live and writable for the call; the
        // result is read only through `found` before `buf` changes.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r == 0 && !found.is_null() {
            return Ok(grp.gr_gid);
        }
        return Err(if r == 0 {
            format!("no group named {name:?}")
        } else {
            format!(
                "looking up group {name:?}: {}",
                std::io::Error::from_raw_os_error(r)
            )
        });
    }
}

/// Who may connect, create and remove: fixed when dlmd starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Policy {
    /// The uid dlmd runs as (its effective uid).
    pub daemon_uid: u32,
    /// `--admin-group`: its members may create and remove lockspaces on
    /// a dlmd run by root.
    pub admin_gid: Option<u32>,
}

impl Policy {
    /// The policy of a dlmd running as `daemon_uid`.
    pub fn new(daemon_uid: u32, admin_gid: Option<u32>) -> Policy {
        Policy {
            daemon_uid,
            admin_gid,
        }
    }

    /// Whether `peer` may use this dlmd at all: everyone may use a dlmd
    /// run by root; a dlmd run by an ordinary user serves that user and
    /// root only.
    pub fn may_connect(&self, peer: &Peer) -> bool {
        self.daemon_uid == 0 || peer.is_root() || peer.uid == self.daemon_uid
    }

    /// Whether `peer` may create and remove lockspaces, as CAP_SYS_ADMIN
    /// may on the kernel: root, and on a dlmd run by root the members of
    /// the admin group; on a per-user dlmd, whoever may connect.
    pub fn may_administer(&self, peer: &Peer) -> bool {
        peer.is_root() || self.daemon_uid != 0 || self.admin_gid.is_some_and(|g| peer.in_group(g))
    }

    /// CREATE by `peer`: EPERM unless [`Policy::may_administer`]; for an
    /// existing lockspace (`existing`), EACCES unless `peer` may open it
    /// (as before NEWEXCL's EEXIST).
    ///
    /// # Errors
    /// EPERM or EACCES.
    pub fn check_create(&self, peer: &Peer, existing: Option<&LsMeta>) -> Result<(), Errno> {
        if !self.may_administer(peer) {
            return Err(Errno::EPERM);
        }
        match existing {
            Some(meta) if !meta.may_open(peer) => Err(Errno::EACCES),
            _ => Ok(()),
        }
    }

    /// REMOVE by `peer`: on a dlmd run by root, root and the admin group
    /// may remove any lockspace (as dlm-control's users may on the
    /// kernel); on a per-user dlmd, the lockspace's creator and root.
    ///
    /// # Errors
    /// EPERM.
    pub fn check_remove(&self, peer: &Peer, meta: Option<&LsMeta>) -> Result<(), Errno> {
        let allowed = if self.daemon_uid == 0 {
            self.may_administer(peer)
        } else {
            meta.is_none_or(|m| peer.is_root() || peer.uid == m.uid)
        };
        if allowed { Ok(()) } else { Err(Errno::EPERM) }
    }
}

/// What dlmd records about a lockspace besides the engine's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LsMeta {
    /// The lockspace name (to notice when REMOVE made it go away).
    pub name: Name,
    /// The creator's uid.
    pub uid: u32,
    /// The creator's gid.
    pub gid: u32,
    /// Permission bits (`0o777` at most); CREATE's 0 is stored as 0600.
    pub mode: u32,
}

impl LsMeta {
    /// The record of a lockspace created by `peer` with CREATE's `mode`.
    pub fn new(name: Name, peer: &Peer, mode: u32) -> LsMeta {
        LsMeta {
            name,
            uid: peer.uid,
            gid: peer.gid,
            mode: if mode & 0o777 == 0 {
                0o600
            } else {
                mode & 0o777
            },
        }
    }

    /// Whether `peer` may open the lockspace: read and write permission
    /// by the owner, group (the peer's gid or a supplementary group) or
    /// other bits, or root.
    pub fn may_open(&self, peer: &Peer) -> bool {
        let bits = if peer.is_root() {
            return true;
        } else if peer.uid == self.uid {
            self.mode >> 6
        } else if peer.in_group(self.gid) {
            self.mode >> 3
        } else {
            self.mode
        };
        bits & 0o6 == 0o6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: Arc::new([]),
        }
    }

    #[test]
    fn owner_group_other_bits() {
        let name = Name::lockspace(b"ls").unwrap();
        let ls = LsMeta::new(name, &peer(1000, 100), 0);
        assert_eq!(ls.mode, 0o600);
        assert!(ls.may_open(&peer(1000, 5)));
        assert!(!ls.may_open(&peer(1001, 100)), "group lacks rw in 0600");
        assert!(!ls.may_open(&peer(1001, 5)));
        assert!(ls.may_open(&peer(0, 0)), "root may always open");

        let ls = LsMeta::new(name, &peer(1000, 100), 0o660);
        assert!(ls.may_open(&peer(1001, 100)));
        assert!(!ls.may_open(&peer(1001, 101)));
        // Read without write is not enough.
        let ls = LsMeta::new(name, &peer(1000, 100), 0o644);
        assert!(!ls.may_open(&peer(1001, 101)));
        let ls = LsMeta::new(name, &peer(1000, 100), 0o666);
        assert!(ls.may_open(&peer(1001, 101)));
        // The owner class decides for the owner even when others may.
        let ls = LsMeta::new(name, &peer(1000, 100), 0o066);
        assert!(!ls.may_open(&peer(1000, 100)));
    }

    #[test]
    fn supplementary_groups_count_for_the_group_bits() {
        let name = Name::lockspace(b"ls").unwrap();
        let ls = LsMeta::new(name, &peer(0, 50), 0o660);
        let mut p = peer(1001, 100);
        assert!(!ls.may_open(&p));
        p.groups = Arc::new([7, 50]);
        assert!(ls.may_open(&p));
    }

    #[test]
    fn create_and_remove_follow_the_kernel_on_a_root_dlmd() {
        let name = Name::lockspace(b"ls").unwrap();
        let root = Policy::new(0, Some(50));
        let user = peer(1001, 100);
        let mut admin = peer(1002, 100);
        admin.groups = Arc::new([50]);
        let mine = LsMeta::new(name, &user, 0o600);
        assert_eq!(root.check_create(&user, None), Err(Errno::EPERM));
        assert_eq!(root.check_create(&admin, None), Ok(()));
        assert_eq!(root.check_create(&peer(0, 0), None), Ok(()));
        assert_eq!(root.check_create(&admin, Some(&mine)), Err(Errno::EACCES));
        assert_eq!(root.check_remove(&user, Some(&mine)), Err(Errno::EPERM));
        assert_eq!(root.check_remove(&admin, Some(&mine)), Ok(()));
        let no_group = Policy::new(0, None);
        assert_eq!(no_group.check_create(&admin, None), Err(Errno::EPERM));
        assert!(no_group.may_connect(&user));

        // A per-user dlmd: its user and root only, as before otherwise.
        let own = Policy::new(1001, None);
        assert!(own.may_connect(&user) && own.may_connect(&peer(0, 0)));
        assert!(!own.may_connect(&admin));
        assert_eq!(own.check_create(&user, None), Ok(()));
        let roots = LsMeta::new(name, &peer(0, 0), 0o666);
        assert_eq!(own.check_remove(&user, Some(&roots)), Err(Errno::EPERM));
        assert_eq!(own.check_remove(&user, Some(&mine)), Ok(()));
    }
}
