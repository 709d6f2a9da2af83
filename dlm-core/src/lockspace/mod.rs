//! The safe Rust API without threads: [`Lockspace`] and [`Lock`].
//!
//! Everything here is driven by the caller's thread: blocking calls
//! dispatch results inline while they wait, and [`Lockspace::dispatch`]
//! delivers queued callbacks (blocking callbacks, completions of
//! asynchronous requests) when the lockspace's fd ([`AsFd`]) is readable,
//! for an event loop. Blocking callbacks carry the **mode** that is
//! blocked, which the C API drops.
//!
//! ```no_run
//! use dlm_core::{Lockspace, Mode, LockOptions};
//!
//! let ls = Lockspace::create("example", 0o600)?;
//! let mut lock = ls.lock(b"resource", Mode::Ex, LockOptions::new().lvb())?;
//! let mut counter = u64::from_ne_bytes(lock.lvb()[..8].try_into().unwrap());
//! counter += 1;
//! lock.lvb_mut()[..8].copy_from_slice(&counter.to_ne_bytes());
//! lock.unlock()?; // writes the LVB: the lock leaves EX with VALBLK
//! # Ok::<(), dlm_core::Error>(())
//! ```

mod error;
mod lock;
mod options;
mod table;
mod wait;

pub use error::Error;
pub use lock::{Lock, LvbMut};
pub(crate) use options::CompleteFn;
pub use options::LockOptions;
pub use table::Completion;

use lock::granted_mode;
use options::BastFn;
use table::{BAST_TOKEN, CAST_TOKEN, Shared, Table, completion_in};
use wait::{wait_readable, wait_readable_or};

use crate::codec::{LockParams, Lvb, RawResult, Request};
use crate::handle::{Deliver, Dispatched, Handle, OwnerGuard};
use crate::transport::Control;
use crate::{Errno, LockFlags, LsFlags, Mode, NAME_MAX, Name, SbFlags, Status};
use dlm_sys::{DLM_USER_LOCK, DLM_USER_UNLOCK};
use rustix::fd::{AsFd, BorrowedFd};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An open lockspace: one lock owner. Dropping it closes the handle:
/// its locks are released, persistent ones become orphans.
///
/// ```no_run
/// use dlm_core::{Error, LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::create("example", 0o600)?;
/// {
///     let _guard = ls.lock(b"critical-section", Mode::Ex, LockOptions::new())?;
///     // ... exclusive across every process and node using "example" ...
/// } // unlocked here
/// match ls.release(false) {
///     Ok(()) | Err(Error::Busy) => {} // Busy: others still use it
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), Error>(())
/// ```
pub struct Lockspace {
    name: Name,
    control: Control,
    /// The handle, with the table of this lockspace's requests under its
    /// state lock.
    handle: Handle<Table>,
}

impl fmt::Debug for Lockspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockspace")
            .field("name", &self.name)
            .field("backend", &self.control.backend())
            .finish()
    }
}

fn ls_name(name: &str) -> Result<Name, Error> {
    Name::lockspace(name.as_bytes()).map_err(Error::Sys)
}

impl Lockspace {
    fn from_device(name: Name, control: Control, device: crate::transport::Device) -> Lockspace {
        Lockspace {
            name,
            control,
            handle: Handle::new(device),
        }
    }

    /// The table of requests, under the handle's state lock until the
    /// guard drops (never held across a call into the handle).
    fn table(&self) -> OwnerGuard<'_, Table> {
        self.handle.owner()
    }

    /// Creates the lockspace (or joins it if it exists) and opens it.
    /// `mode` is the permission of a new lockspace (0 means 0600).
    ///
    /// # Errors
    /// [`Error::Sys`] with ENOENT or ECONNREFUSED when no lock manager is
    /// reachable, EPERM when the caller may not create lockspaces (on the
    /// kernel and on a dlmd run by root: only root and dlmd's admin
    /// group may), EACCES when it may not open an existing one or the
    /// discovered dlmd socket is not trusted, EINVAL for a bad name.
    pub fn create(name: &str, mode: u32) -> Result<Lockspace, Error> {
        Lockspace::create_with(name, mode, LsFlags::empty())
    }

    /// Creates a new lockspace, failing with EEXIST if it already exists.
    ///
    /// # Errors
    /// As [`Lockspace::create`], and [`Error::Sys`]`(EEXIST)`.
    pub fn new_exclusive(name: &str, mode: u32) -> Result<Lockspace, Error> {
        Lockspace::create_with(name, mode, LsFlags::NEWEXCL)
    }

    fn create_with(name: &str, mode: u32, flags: LsFlags) -> Result<Lockspace, Error> {
        let name = ls_name(name)?;
        let control = Control::connect()?;
        let device = control.create_lockspace(&name, mode, flags)?;
        Ok(Lockspace::from_device(name, control, device))
    }

    /// Opens an existing lockspace.
    ///
    /// # Errors
    /// [`Error::Sys`]`(ENOENT)` when it does not exist; EACCES when not
    /// permitted or the discovered dlmd socket is not trusted.
    pub fn open(name: &str) -> Result<Lockspace, Error> {
        let name = ls_name(name)?;
        let control = Control::connect()?;
        let device = control.open_lockspace(&name)?;
        Ok(Lockspace::from_device(name, control, device))
    }

    /// The lockspace's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Closes this handle (releasing or orphaning its locks) and drops one
    /// creation count of the lockspace, removing it when it was the last.
    /// With `force`, a lockspace that still has locks is removed anyway.
    ///
    /// # Errors
    /// [`Error::Busy`] when the lockspace still has locks (without
    /// `force`) or other openers; the handle is closed either way.
    pub fn release(self, force: bool) -> Result<(), Error> {
        let minor = self.handle.device().minor();
        let Lockspace {
            control, handle, ..
        } = self;
        drop(handle);
        control.remove_lockspace(minor, force).map_err(Error::from)
    }

    /// Delivers every queued callback (blocking callbacks, completions of
    /// asynchronous requests) without blocking; returns how many.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    pub fn dispatch(&self) -> Result<usize, Errno> {
        self.handle.drain(&Shared(&self.handle))
    }

    /// Waits up to `timeout` for a callback and delivers everything
    /// queued; returns how many were delivered.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    pub fn dispatch_timeout(&self, timeout: Duration) -> Result<usize, Errno> {
        wait_readable(self.handle.fd(), Some(timeout))?;
        self.dispatch()
    }

    /// Requests a lock and waits for it.
    ///
    /// # Errors
    /// [`Error::Cancelled`] or [`Error::Deadlock`] if the request was
    /// cancelled while waiting; [`Error::Sys`] for a refused request
    /// (EINVAL for a bad name or flags) or a lost lock manager.
    pub fn lock(&self, name: &[u8], mode: Mode, opts: LockOptions) -> Result<Lock<'_>, Error> {
        self.lock_flags(name, mode, opts, LockFlags::empty(), None)
    }

    /// Requests a lock without waiting for other holders.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when it cannot be granted at once; otherwise
    /// as [`Lockspace::lock`].
    pub fn try_lock(&self, name: &[u8], mode: Mode, opts: LockOptions) -> Result<Lock<'_>, Error> {
        self.lock_flags(name, mode, opts, LockFlags::NOQUEUE, None)
    }

    /// Requests a lock and waits at most `timeout` for it; on timeout the
    /// request is cancelled.
    ///
    /// # Errors
    /// [`Error::TimedOut`]; otherwise as [`Lockspace::lock`].
    pub fn lock_timeout(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
        timeout: Duration,
    ) -> Result<Lock<'_>, Error> {
        self.lock_flags(
            name,
            mode,
            opts,
            LockFlags::empty(),
            Some(Instant::now() + timeout),
        )
    }

    /// Requests a lock and waits for it until `deadline` (if any) passes
    /// or `wake` becomes readable (a signalfd or a self-pipe: an event
    /// loop's way to give up); then the request is cancelled, so nothing
    /// stays queued. A grant that wins the race with the cancel is
    /// returned as a [`Lock`]. `wake` is not read. It is watched only
    /// while this call dispatches the lockspace itself, not while a
    /// dispatcher thread ([`Lockspace::set_dispatch_thread`]) runs.
    ///
    /// # Errors
    /// [`Error::TimedOut`] at the deadline, [`Error::Interrupted`] when
    /// `wake` became readable; otherwise as [`Lockspace::lock`].
    pub fn lock_until(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
        deadline: Option<Instant>,
        wake: BorrowedFd<'_>,
    ) -> Result<Lock<'_>, Error> {
        let flags = opts.flags - LockFlags::CONVERT - LockFlags::WAIT;
        let (token, lkid) = self.submit(name, mode, flags, &opts, None, false)?;
        let completion = self.wait_token_or_wake(token, deadline, lkid, Some(wake));
        self.finish(token, mode, flags, completion)
    }

    fn lock_flags(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
        extra: LockFlags,
        deadline: Option<Instant>,
    ) -> Result<Lock<'_>, Error> {
        let flags = (opts.flags | extra) - LockFlags::CONVERT - LockFlags::WAIT;
        // Waited for here, reading through the device (a deadline polls
        // the socket instead): the completion may ride in dlmd's reply.
        let sync = deadline.is_none();
        let (token, lkid) = self.submit(name, mode, flags, &opts, None, sync)?;
        let completion = self.wait_token(token, deadline, lkid);
        self.finish(token, mode, flags, completion)
    }

    /// Sends a new lock request (or an ORPHAN adoption) whose results are
    /// routed to a fresh slot; returns the slot's token and the lock id.
    /// `sync`: the caller waits for the completion with
    /// [`Lockspace::wait_token`] (which reads results through the
    /// device), so it may ride in dlmd's reply.
    pub(crate) fn submit(
        &self,
        name: &[u8],
        mode: Mode,
        flags: LockFlags,
        opts: &LockOptions,
        on_complete: Option<CompleteFn>,
        sync: bool,
    ) -> Result<(u64, u32), Error> {
        if name.len() > NAME_MAX {
            return Err(Error::Sys(Errno::EINVAL));
        }
        let (token, params) = self.prepare_params(mode, flags, opts, on_complete);
        let dev = self.handle.device();
        let sent = dev.write_params(&params, DLM_USER_LOCK, name, Some(&params.lvb), sync);
        match sent {
            Ok(lkid) => Ok((token, lkid)),
            Err(e) => {
                self.table().free(token);
                Err(e.into())
            }
        }
    }

    /// Allocates the slot of a new lock request and builds the request.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn prepare_lock(
        &self,
        name: &[u8],
        mode: Mode,
        flags: LockFlags,
        opts: &LockOptions,
        on_complete: Option<CompleteFn>,
    ) -> Result<(u64, Request), Error> {
        let name = Name::new(name).map_err(Error::Sys)?;
        let (token, params) = self.prepare_params(mode, flags, opts, on_complete);
        Ok((token, Request::Lock(LockParams { name, ..params })))
    }

    /// Allocates the slot of a new lock request and builds its parameters
    /// (without the name).
    fn prepare_params(
        &self,
        mode: Mode,
        flags: LockFlags,
        opts: &LockOptions,
        on_complete: Option<CompleteFn>,
    ) -> (u64, LockParams) {
        let token = {
            let mut table = self.table();
            let token = table.alloc(opts.on_blocking.clone());
            if let Some(slot) = table.get(token) {
                slot.on_complete = on_complete;
            }
            token
        };
        let params = LockParams {
            mode: mode.raw(),
            flags,
            castaddr: CAST_TOKEN,
            castparam: token,
            bastaddr: if opts.on_blocking.is_some() {
                BAST_TOKEN
            } else {
                0
            },
            bastparam: token,
            lksb: token,
            ..LockParams::default()
        };
        (token, params)
    }

    /// Frees a slot: its results are ignored from now on.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn free_token(&self, token: u64) {
        self.table().free(token);
    }

    /// Sets the function the next completion of `token` calls (after it
    /// was recorded).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn set_on_complete(&self, token: u64, f: CompleteFn) {
        if let Some(slot) = self.table().get(token) {
            slot.on_complete = Some(f);
        }
    }

    /// The handle's device (for pipelined requests).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn device(&self) -> &crate::transport::Device {
        self.handle.device()
    }

    /// Turns the completion of a new request into a [`Lock`] or an error.
    pub(crate) fn finish(
        &self,
        token: u64,
        mode: Mode,
        flags: LockFlags,
        completion: Result<Completion, Error>,
    ) -> Result<Lock<'_>, Error> {
        match completion {
            Ok(c) if c.status.is_granted() => Ok(Lock {
                ls: self,
                token,
                lkid: c.lkid,
                mode: granted_mode(mode, flags, c.flags),
                flags,
            }),
            Ok(c) => {
                // The request ended (EAGAIN, ECANCEL, EDEADLK): no lock.
                self.table().free(token);
                Err(Error::from_status(c.status))
            }
            // Dispatch failed (the lock manager went away): the slot stays,
            // since a late result could still name it.
            Err(e) => Err(e),
        }
    }

    /// The completion recorded in `token`'s slot, if any.
    pub(crate) fn completion(&self, token: u64) -> Option<Completion> {
        self.handle
            .with_state_lock(|table| completion_in(table, token))
    }

    /// Waits for the completion recorded in `token`'s slot, cancelling the
    /// request `lkid` at the deadline.
    fn wait_token(
        &self,
        token: u64,
        deadline: Option<Instant>,
        lkid: u32,
    ) -> Result<Completion, Error> {
        self.wait_token_or_wake(token, deadline, lkid, None)
    }

    /// As [`Lockspace::wait_token`], and cancels the request when `wake`
    /// becomes readable (then the error is [`Error::Interrupted`]).
    fn wait_token_or_wake(
        &self,
        token: u64,
        deadline: Option<Instant>,
        lkid: u32,
        wake: Option<BorrowedFd<'_>>,
    ) -> Result<Completion, Error> {
        if deadline.is_some() || wake.is_some() {
            // Why the request was cancelled, once it was.
            let mut cancelled: Option<Error> = None;
            let mut woken = false;
            loop {
                if let Some(c) = self.completion(token) {
                    return match cancelled {
                        Some(why) if c.status == Status::CANCELLED => Err(why),
                        _ => Ok(c),
                    };
                }
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let expired = left.is_some_and(|l| l.is_zero());
                if (expired || woken) && cancelled.is_none() {
                    cancelled = Some(if woken {
                        Error::Interrupted
                    } else {
                        Error::TimedOut
                    });
                    let cancel = Request::Unlock(LockParams {
                        lkid,
                        flags: LockFlags::CANCEL,
                        lksb: token,
                        castparam: token,
                        ..LockParams::default()
                    });
                    self.handle.write(&cancel)?;
                    // The cancel may have raced with the grant; either way
                    // a completion follows, so wait without a deadline.
                    self.wait_for(&mut |table| completion_in(table, token).is_some())?;
                    continue;
                }
                if cancelled.is_none() {
                    match (self.handle.has_dispatch_thread(), deadline) {
                        (true, Some(deadline)) => {
                            // The dispatcher thread records it and wakes us
                            // (if the thread stops, the next round
                            // dispatches).
                            self.handle.wait_recorded_until(
                                |table: &mut Table| {
                                    completion_in(table, token).is_some()
                                        || !self.handle.has_dispatch_thread()
                                },
                                deadline,
                            )?;
                        }
                        (true, None) => {
                            self.wait_for(&mut |table| completion_in(table, token).is_some())?;
                        }
                        (false, _) => {
                            woken = wait_readable_or(self.handle.fd(), wake, left)?;
                            self.handle.drain(&Shared(&self.handle))?;
                        }
                    }
                }
            }
        }
        let mut got = None;
        self.wait_for(&mut |table| {
            got = completion_in(table, token);
            got.is_some()
        })?;
        Ok(got.expect("completion recorded"))
    }

    /// Waits until `done`: dispatching inline, or, while a dispatcher
    /// thread runs, waiting for it (and taking over if it stops).
    fn wait_for(&self, done: &mut dyn FnMut(&mut Table) -> bool) -> Result<(), Errno> {
        self.handle.wait(&Shared(&self.handle), done)
    }

    /// For a thread that dispatches this lockspace (dlm-pthread's
    /// `ThreadedLockspace`): says whether one runs. While one does,
    /// blocking calls of other threads wait for it to deliver their
    /// results instead of reading the fd themselves; when it stops,
    /// they take over. Set it to false before waking the thread to stop.
    pub fn set_dispatch_thread(&self, on: bool) {
        self.handle.set_dispatch_thread(on);
    }

    /// For a dispatcher thread: waits until a result is queued or `wake`
    /// is readable, and delivers one result (its callback runs on the
    /// calling thread).
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away; EINTR.
    pub fn dispatch_or_wake(&self, wake: BorrowedFd<'_>) -> Result<Dispatched, Errno> {
        self.handle.dispatch_one(&Shared(&self.handle), Some(wake))
    }

    /// Ends a lock request whose waiter went away (a dropped future):
    /// cancels it if it is still waiting, unlocks it if the grant won the
    /// race, and frees its slot. Blocks until the request ended, which
    /// never waits for other holders.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn abandon(&self, token: u64, lkid: u32) {
        if self.completion(token).is_none() {
            let cancel = Request::Unlock(LockParams {
                lkid,
                flags: LockFlags::CANCEL,
                lksb: token,
                castparam: token,
                ..LockParams::default()
            });
            // EBUSY: nothing to cancel (the grant is queued already).
            let _ = self.handle.write(&cancel);
        }
        if let Ok(c) = self.wait_token(token, None, lkid) {
            if c.status.is_granted() {
                if let Some(slot) = self.table().get(token) {
                    slot.status = Status::IN_PROGRESS;
                }
                let unlock = Request::Unlock(LockParams {
                    lkid,
                    lksb: token,
                    castparam: token,
                    ..LockParams::default()
                });
                if self.handle.write(&unlock).is_ok() {
                    let _ = self.wait_token(token, None, lkid);
                }
            }
        }
        self.free_token(token);
    }

    /// Adopts an orphan: a persistent lock on `name` held in `mode` whose
    /// owner closed. The adopted lock is held at once.
    ///
    /// # Errors
    /// [`Error::Sys`]`(ENOENT)` when there is no orphan of that name,
    /// [`Error::WouldBlock`] (EAGAIN) when one exists in another mode.
    pub fn adopt(&self, name: &[u8], mode: Mode, opts: LockOptions) -> Result<Lock<'_>, Error> {
        let flags = opts.flags | LockFlags::PERSISTENT | LockFlags::ORPHAN;
        let (token, lkid) =
            self.submit(name, mode, flags, &opts, None, false)
                .map_err(|e| match e {
                    Error::Sys(Errno::EAGAIN) => Error::WouldBlock,
                    e => e,
                })?;
        // An adoption has no completion: the write's answer is the outcome.
        if let Some(slot) = self.table().get(token) {
            slot.status = Status::GRANTED;
            slot.lkid = lkid;
        }
        Ok(Lock {
            ls: self,
            token,
            lkid,
            mode,
            flags: flags - LockFlags::ORPHAN,
        })
    }

    /// Force-unlocks orphans: those of process `pid`, or all with 0
    /// (`nodeid` is the cluster node; 0 means this one).
    ///
    /// # Errors
    /// [`Error::Sys`] with the lock manager's errno.
    pub fn purge(&self, nodeid: u32, pid: u32) -> Result<(), Error> {
        self.handle
            .write(&Request::Purge { nodeid, pid })
            .map(drop)
            .map_err(Error::from)
    }

    /// Requests a lock asynchronously: `on_complete` runs when the request
    /// completes, from [`Lockspace::dispatch`] or a blocking call of this
    /// lockspace, with the completion and the LVB (if requested). Returns
    /// the lock id; release it with [`Lockspace::unlock_id`].
    ///
    /// # Errors
    /// [`Error::Sys`] when the request is refused.
    pub fn lock_async(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
        on_complete: impl FnOnce(Completion, Option<Lvb>) + Send + 'static,
    ) -> Result<u32, Error> {
        let flags = opts.flags - LockFlags::CONVERT - LockFlags::WAIT;
        let (_, lkid) =
            self.submit(name, mode, flags, &opts, Some(Box::new(on_complete)), false)?;
        Ok(lkid)
    }

    /// Unlocks a lock made by [`Lockspace::lock_async`]; its completion
    /// handler is not called again, the unlock's status is returned
    /// ([`Status::UNLOCKED`]).
    ///
    /// # Errors
    /// [`Error::Sys`]`(ENOENT)` for an unknown lock id.
    pub fn unlock_id(&self, lkid: u32) -> Result<Status, Error> {
        let token = self.table().alloc(None);
        let req = Request::Unlock(LockParams {
            lkid,
            lksb: token,
            ..LockParams::default()
        });
        let res = self
            .handle
            .write(&req)
            .map_err(Error::from)
            .and_then(|_| self.wait_token(token, None, lkid));
        self.table().free(token);
        res.map(|c| c.status)
    }
}

impl Lockspace {
    /// The file descriptors whose open files hold this handle's locks:
    /// the kernel lockspace device, or the request and callback sockets
    /// of dlmd. They are close-on-exec; a program that clears that flag
    /// (`fcntl(F_SETFD)` in the child before `exec`) lets the new program
    /// inherit them, and the locks then last until the last process
    /// holding them closes them, as a child keeps a `flock(2)` lock of an
    /// inherited file (`dlm lock` does this for its command).
    pub fn owner_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.handle.device().owner_fds()
    }
}

impl AsFd for Lockspace {
    /// The fd to poll: readable when a callback is queued; then call
    /// [`Lockspace::dispatch`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.handle.fd()
    }
}
