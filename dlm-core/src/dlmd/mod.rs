//! The dlmd backend: the wire protocol ([`proto`]) shared with the daemon,
//! and the client side of it ([`client`]). See `PROTOCOL.md` at the top of
//! the repository.

pub mod client;
pub mod proto;
