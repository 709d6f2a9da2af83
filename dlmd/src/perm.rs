//! Lockspace permissions (PROTOCOL.md "Permissions"): who created a
//! lockspace, its mode, and the owner/group/other check made on OPEN,
//! on CREATE of an existing lockspace and on REMOVE.

use dlm_core::Name;

/// The peer of a connection, from `SO_PEERCRED` at accept time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Peer {
    /// The peer's process id (for logs and the dump).
    pub pid: u32,
    /// The peer's effective uid.
    pub uid: u32,
    /// The peer's effective gid.
    pub gid: u32,
}

impl Peer {
    /// Whether the peer is root, who may always open and remove.
    pub fn is_root(&self) -> bool {
        self.uid == 0
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
    /// by the owner, group (the peer's gid) or other bits, or root.
    pub fn may_open(&self, peer: &Peer) -> bool {
        let bits = if peer.is_root() {
            return true;
        } else if peer.uid == self.uid {
            self.mode >> 6
        } else if peer.gid == self.gid {
            self.mode >> 3
        } else {
            self.mode
        };
        bits & 0o6 == 0o6
    }

    /// Whether `peer` may remove the lockspace: its creator or root.
    pub fn may_remove(&self, peer: &Peer) -> bool {
        peer.is_root() || peer.uid == self.uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer { pid: 1, uid, gid }
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

        assert!(ls.may_remove(&peer(1000, 1)));
        assert!(ls.may_remove(&peer(0, 1)));
        assert!(!ls.may_remove(&peer(1001, 100)));
    }
}
