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
//! tokens here; only the C ABI crate (`dlm-cabi`) turns them back into
//! pointers. Nothing in this crate is C-callable or takes a raw pointer.
//!
//! # The safe Rust API, three ways
//!
//! **Blocking**, with no thread of the library's: [`Lockspace`] and
//! [`Lock`]. Blocking calls dispatch results inline while they wait;
//! blocking callbacks and completions of [`Lockspace::lock_async`] run
//! inside them or in [`Lockspace::dispatch`].
//!
//! ```no_run
//! use dlm_core::{LockOptions, Lockspace, Mode};
//!
//! let ls = Lockspace::create("example", 0o600)?;
//! let lock = ls.lock(b"resource", Mode::Ex, LockOptions::new())?;
//! lock.unlock()?;
//! # Ok::<(), dlm_core::Error>(())
//! ```
//!
//! **fd-driven**, for an event loop: poll the lockspace's fd ([`AsFd`](std::os::fd::AsFd))
//! and call [`Lockspace::dispatch`] when it is readable; or, with the
//! `tokio` feature, **async**: `AsyncLockspace`, whose futures resolve on
//! completion, driven by the fd through tokio's `AsyncFd` (and, on dlmd,
//! by pipelined requests), with no thread per lockspace.
//!
//! ```no_run
//! use dlm_core::{LockOptions, Lockspace, Mode};
//! use std::os::fd::AsFd;
//!
//! let ls = Lockspace::open("example")?;
//! let id = ls.lock_async(b"resource", Mode::Pr, LockOptions::new(), |c, _| {
//!     println!("lock {} completed: {:?}", c.lkid, c.status);
//! })?;
//! let fd = ls.as_fd(); // register with poll/epoll/mio ...
//! # let _ = fd;
//! ls.dispatch()?; // ... and call this when it is readable
//! # let _ = id;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```ignore
//! // With `features = ["tokio"]`:
//! let ls = dlm_core::AsyncLockspace::create("example", 0o600)?;
//! let lock = ls.lock(b"resource", Mode::Ex, LockOptions::new()).await?;
//! lock.unlock().await?;
//! ```
//!
//! **Callbacks on a thread**: `dlm::ThreadedLockspace` in the
//! `dlm-pthread` crate runs blocking callbacks and completions on one
//! thread per lockspace, while blocking calls from any thread wait for it.

#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod asyncio;
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
#[doc(hidden)]
pub mod sync;
pub mod transport;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use asyncio::{AsyncLock, AsyncLockspace};
pub use codec::{LVB_LEN, LockParams, LockResult, Lvb, Request, Version};
pub use errno::Errno;
pub use flags::{LockFlags, LsFlags, RemoveFlags, SbFlags};
pub use lockspace::{Completion, Error, Lock, LockOptions, Lockspace, LvbMut};
pub use mode::Mode;
pub use name::{NAME_MAX, Name};
pub use status::Status;
