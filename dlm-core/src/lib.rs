//! dlm-core: the Linux DLM for Rust, without threads.
//!
//! This crate owns everything both C libraries, dlmd and the Rust API
//! share, and nothing that needs a thread:
//!
//! - typed values: [`Mode`], [`LockFlags`], [`SbFlags`], [`LsFlags`],
//!   [`Status`] (a lock's outcome) and [`Errno`] (a failure);
//! - the kernel's argument rules ([`check`]), with its errnos;
//! - the v6 device codec ([`codec`]): requests and results as the exact
//!   bytes the kernel device and dlmd exchange;
//! - the dlmd wire protocol ([`dlmd::proto`]).
//!
//! User pointers (lksb, callbacks and their parameters) are opaque `u64`
//! tokens here; only the C ABI layer turns them back into pointers.

#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod asyncio;
pub mod cabi;
pub mod check;
pub mod codec;
pub mod dlmd;
pub mod dump;
mod errno;
mod flags;
pub mod handle;
mod lockspace;
mod mode;
mod name;
mod status;
pub mod transport;

#[cfg(feature = "tokio")]
pub use asyncio::{AsyncLock, AsyncLockspace};
pub use codec::{LVB_LEN, LockParams, LockResult, Lvb, Request, Version};
pub use errno::Errno;
pub use flags::{LockFlags, LsFlags, RemoveFlags, SbFlags};
pub use lockspace::{Completion, Error, Lock, LockOptions, Lockspace, LvbMut};
pub use mode::Mode;
pub use name::{NAME_MAX, Name};
pub use status::Status;
