//! The dlmd backend: the wire protocol ([`proto`]) shared with the daemon.
//! See `PROTOCOL.md` at the top of the repository.

pub mod proto;
