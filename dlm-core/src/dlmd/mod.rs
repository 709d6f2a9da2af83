//! The dlmd backend: the wire protocol ([`proto`]) shared with the daemon,
//! the client side of it ([`client`]), and dlmd's STATUS answer
//! ([`status`]). See `PROTOCOL.md` at the top of
//! the repository.

pub mod client;
pub mod proto;
pub mod status;
