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

use crate::codec::{LockParams, LockResult, Lvb, Request};
use crate::handle::{Deliver, Dispatched, Handle, OwnerGuard};
use crate::transport::Control;
use crate::{Errno, LockFlags, LsFlags, Mode, NAME_MAX, Name, SbFlags, Status};
use dlm_sys::{DLM_USER_LOCK, DLM_USER_UNLOCK};
use rustix::fd::{AsFd, BorrowedFd};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a lock operation did not succeed.
///
/// ```no_run
/// use dlm_core::{Error, LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// match ls.try_lock(b"r", Mode::Ex, LockOptions::new()) {
///     Ok(lock) => println!("got it: {}", lock.id()),
///     Err(Error::WouldBlock) => println!("held elsewhere"),
///     Err(e) => eprintln!("failed: {e} (errno {})", e.errno().raw()),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be granted at once (NOQUEUE; `EAGAIN`).
    WouldBlock,
    /// A conversion deadlock, or a deadlock-cancel (`EDEADLK`).
    Deadlock,
    /// The request was cancelled (`DLM_ECANCEL`).
    Cancelled,
    /// The wait timed out; the request was cancelled.
    TimedOut,
    /// The wait was interrupted (the `wake` fd of
    /// [`Lockspace::lock_until`] became readable); the request was
    /// cancelled (`EINTR`).
    Interrupted,
    /// The lock or lockspace is busy (`EBUSY`): a conversion is already
    /// pending, or the lockspace still has locks or openers.
    Busy,
    /// The call failed with this errno.
    Sys(Errno),
}

impl Error {
    fn from_status(status: Status) -> Error {
        match status {
            Status::AGAIN => Error::WouldBlock,
            Status::DEADLOCK => Error::Deadlock,
            Status::CANCELLED => Error::Cancelled,
            Status::TIMEDOUT => Error::TimedOut,
            other => Error::Sys(Errno::from_raw(other.raw())),
        }
    }

    /// The errno that the C API would report for this error.
    pub fn errno(self) -> Errno {
        match self {
            Error::WouldBlock => Errno::EAGAIN,
            Error::Deadlock => Errno::EDEADLK,
            Error::Cancelled => Errno::from_raw(Status::CANCELLED.raw()),
            Error::TimedOut => Errno::ETIMEDOUT,
            Error::Interrupted => Errno::EINTR,
            Error::Busy => Errno::EBUSY,
            Error::Sys(e) => e,
        }
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Error {
        if e == Errno::EBUSY {
            Error::Busy
        } else {
            Error::Sys(e)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => f.write_str("lock is held in an incompatible mode"),
            Error::Deadlock => f.write_str("conversion deadlock"),
            Error::Cancelled => f.write_str("request cancelled"),
            Error::TimedOut => f.write_str("timed out waiting for the lock"),
            Error::Interrupted => f.write_str("interrupted while waiting for the lock"),
            Error::Busy => f.write_str("busy"),
            Error::Sys(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

type BastFn = Arc<dyn Fn(Mode) + Send + Sync>;
pub(crate) type CompleteFn = Box<dyn FnOnce(Completion, Option<Lvb>) + Send>;

/// Options of a lock request: flags, LVB use, a blocking callback.
///
/// ```no_run
/// use dlm_core::{LockFlags, LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// let opts = LockOptions::new()
///     .lvb()
///     .persistent()
///     .flags(LockFlags::EXPEDITE)
///     .on_blocking(|mode| println!("another owner wants {mode:?}"));
/// let lock = ls.lock(b"r", Mode::Pr, opts)?;
/// # drop(lock);
/// # Ok::<(), dlm_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct LockOptions {
    flags: LockFlags,
    on_blocking: Option<BastFn>,
}

impl fmt::Debug for LockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockOptions")
            .field("flags", &self.flags)
            .field("on_blocking", &self.on_blocking.is_some())
            .finish()
    }
}

impl LockOptions {
    /// No flags, no LVB, no blocking callback.
    pub fn new() -> LockOptions {
        LockOptions::default()
    }

    /// Adds request flags (for example [`LockFlags::EXPEDITE`] or
    /// [`LockFlags::NOORDER`]). `NOQUEUE` is set by the `try_` calls.
    pub fn flags(mut self, flags: LockFlags) -> LockOptions {
        self.flags |= flags;
        self
    }

    /// Uses the lock value block: read on grant, written when the lock
    /// leaves PW or EX (down-conversion or unlock).
    pub fn lvb(self) -> LockOptions {
        self.flags(LockFlags::VALBLK)
    }

    /// Makes the lock persistent: when the lockspace handle closes (or the
    /// process dies) it becomes an orphan that [`Lockspace::adopt`] or
    /// [`Lockspace::purge`] can take over.
    pub fn persistent(self) -> LockOptions {
        self.flags(LockFlags::PERSISTENT)
    }

    /// Sends the blocked mode to `tx` whenever another request is blocked
    /// by this lock: [`LockOptions::on_blocking`] as a channel. A
    /// disconnected receiver is ignored.
    ///
    /// ```no_run
    /// use dlm_core::{LockOptions, Lockspace, Mode};
    /// use std::sync::mpsc;
    ///
    /// let ls = Lockspace::open("example")?;
    /// let (tx, rx) = mpsc::channel();
    /// let lock = ls.lock(b"r", Mode::Ex, LockOptions::new().blocking_sender(tx))?;
    /// ls.dispatch_timeout(std::time::Duration::from_secs(1))?;
    /// if let Ok(wanted) = rx.try_recv() {
    ///     println!("someone wants {wanted:?}");
    ///     lock.unlock()?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blocking_sender(self, tx: std::sync::mpsc::Sender<Mode>) -> LockOptions {
        self.on_blocking(move |mode| {
            let _ = tx.send(mode);
        })
    }

    /// The request flags set so far.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn flags_of(&self) -> LockFlags {
        self.flags
    }

    /// Calls `f` with the blocked mode whenever another request is blocked
    /// by this lock (a blocking callback). It runs on the thread that
    /// dispatches: inside a blocking call or [`Lockspace::dispatch`].
    pub fn on_blocking(mut self, f: impl Fn(Mode) + Send + Sync + 'static) -> LockOptions {
        self.on_blocking = Some(Arc::new(f));
        self
    }
}

/// What a completion reported.
///
/// ```no_run
/// use dlm_core::{LockOptions, Lockspace, Mode, Status};
/// use std::sync::mpsc;
///
/// let ls = Lockspace::open("example")?;
/// let (tx, rx) = mpsc::channel();
/// let id = ls.lock_async(b"r", Mode::Ex, LockOptions::new(), move |c, _lvb| {
///     let _ = tx.send(c);
/// })?;
/// while rx.try_recv().map(|c| assert_eq!(c.status, Status::GRANTED)).is_err() {
///     ls.dispatch_timeout(std::time::Duration::from_secs(1))?;
/// }
/// ls.unlock_id(id, false)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Completion {
    /// The lock id.
    pub lkid: u32,
    /// The status.
    pub status: Status,
    /// The status-block flags (DEMOTED, VALNOTVALID, ALTMODE).
    pub flags: SbFlags,
}

/// The record behind one lock's tokens: what its results update.
struct Slot {
    generation: u32,
    status: Status,
    lkid: u32,
    flags: SbFlags,
    lvb: Lvb,
    on_blocking: Option<BastFn>,
    on_complete: Option<CompleteFn>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    next_generation: u32,
}

impl Table {
    /// Allocates a slot; returns its token (generation and index, never 0).
    fn alloc(&mut self, on_blocking: Option<BastFn>) -> u64 {
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let slot = Slot {
            generation: self.next_generation,
            status: Status::IN_PROGRESS,
            lkid: 0,
            flags: SbFlags::empty(),
            lvb: [0; 32],
            on_blocking,
            on_complete: None,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        (u64::from(self.next_generation) << 32) | u64::from(index)
    }

    fn get(&mut self, token: u64) -> Option<&mut Slot> {
        let index = (token & 0xffff_ffff) as usize;
        let generation = (token >> 32) as u32;
        self.slots
            .get_mut(index)?
            .as_mut()
            .filter(|s| s.generation == generation)
    }

    fn free(&mut self, token: u64) {
        if self.get(token).is_some() {
            let index = (token & 0xffff_ffff) as u32;
            self.slots[index as usize] = None;
            self.free.push(index);
        }
    }
}

/// The completion routine address sent with every request. The device
/// needs a non-zero value; our results are routed by the lksb token.
const CAST_TOKEN: u64 = 1;
/// The blocking routine address, when the lock has a blocking callback.
const BAST_TOKEN: u64 = 2;

/// Delivers results into a lockspace's [`Table`] (kept under its handle's
/// state lock) and runs the callbacks the table names.
struct Shared<'a>(&'a Handle<Table>);

/// The completion recorded in `token`'s slot, if any.
fn completion_in(table: &mut Table, token: u64) -> Option<Completion> {
    let slot = table.get(token)?;
    (slot.status != Status::IN_PROGRESS).then_some(Completion {
        lkid: slot.lkid,
        status: slot.status,
        flags: slot.flags,
    })
}

impl Deliver<Table> for Shared<'_> {
    fn record(&self, res: &LockResult, table: &mut Table) -> bool {
        if res.is_bast() {
            return true;
        }
        let Some(slot) = table.get(res.user_lksb) else {
            return false;
        };
        slot.status = res.status;
        slot.lkid = res.lkid;
        slot.flags = res.flags;
        if let Some(lvb) = res.lvb {
            slot.lvb = lvb;
        }
        slot.on_complete.is_some()
    }

    fn call(&self, res: &LockResult) {
        if let Some(mode) = res.bast_mode {
            let f = self.0.with_state_lock(|table| {
                table.get(res.user_lksb).and_then(|s| s.on_blocking.clone())
            });
            if let Some(f) = f {
                f(mode);
            }
            return;
        }
        let done = self
            .0
            .with_state_lock(|table| table.get(res.user_lksb).and_then(|s| s.on_complete.take()));
        if let Some(f) = done {
            let completion = Completion {
                lkid: res.lkid,
                status: res.status,
                flags: res.flags,
            };
            f(completion, res.lvb);
        }
    }
}

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
    /// reachable, EACCES when not permitted, EINVAL for a bad name.
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
    /// [`Error::Sys`]`(ENOENT)` when it does not exist; EACCES.
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
        let (token, lkid) = self.submit(name, mode, flags, &opts, None)?;
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
        let (token, lkid) = self.submit(name, mode, flags, &opts, None)?;
        let completion = self.wait_token(token, deadline, lkid);
        self.finish(token, mode, flags, completion)
    }

    /// Sends a new lock request (or an ORPHAN adoption) whose results are
    /// routed to a fresh slot; returns the slot's token and the lock id.
    pub(crate) fn submit(
        &self,
        name: &[u8],
        mode: Mode,
        flags: LockFlags,
        opts: &LockOptions,
        on_complete: Option<CompleteFn>,
    ) -> Result<(u64, u32), Error> {
        if name.len() > NAME_MAX {
            return Err(Error::Sys(Errno::EINVAL));
        }
        let (token, params) = self.prepare_params(mode, flags, opts, on_complete);
        match self
            .handle
            .device()
            .write_params(&params, DLM_USER_LOCK, name)
        {
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
        self.handle
            .dispatch_one(&Shared(&self.handle), false, Some(wake))
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
        let (token, lkid) = self
            .submit(name, mode, flags, &opts, None)
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
        let (_, lkid) = self.submit(name, mode, flags, &opts, Some(Box::new(on_complete)))?;
        Ok(lkid)
    }

    /// Unlocks (or, with `cancel`, cancels the pending request of) a lock
    /// made by [`Lockspace::lock_async`]; its completion handler is not
    /// called again, the unlock's status is returned.
    ///
    /// # Errors
    /// [`Error::Sys`]`(ENOENT)` for an unknown lock id.
    pub fn unlock_id(&self, lkid: u32, cancel: bool) -> Result<Status, Error> {
        let token = self.table().alloc(None);
        let flags = if cancel {
            LockFlags::CANCEL
        } else {
            LockFlags::empty()
        };
        let req = Request::Unlock(LockParams {
            lkid,
            flags,
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

/// Waits until `fd` or `wake` is readable or the timeout passes; returns
/// whether `wake` is readable.
fn wait_readable_or(
    fd: BorrowedFd<'_>,
    wake: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> Result<bool, Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let Some(wake) = wake else {
        wait_readable(fd, timeout)?;
        return Ok(false);
    };
    let mut fds = [
        PollFd::new(&fd, PollFlags::IN),
        PollFd::new(&wake, PollFlags::IN),
    ];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) => Ok(!fds[1].revents().is_empty()),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits until `fd` is readable or the timeout passes.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<(), Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A granted lock. Dropping it unlocks it; [`Lock::unlock`] returns the
/// status; [`Lock::keep`] leaves it held (a persistent lock then becomes
/// an orphan when the lockspace closes).
///
/// ```no_run
/// use dlm_core::{Error, LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// let mut lock = ls.lock(b"r", Mode::Pr, LockOptions::new())?;
/// match lock.try_convert(Mode::Ex) {
///     Ok(()) => assert_eq!(lock.mode(), Mode::Ex),
///     Err(Error::WouldBlock) => assert_eq!(lock.mode(), Mode::Pr),
///     Err(e) => return Err(e),
/// }
/// lock.unlock()?;
/// # Ok::<(), Error>(())
/// ```
pub struct Lock<'ls> {
    ls: &'ls Lockspace,
    token: u64,
    lkid: u32,
    mode: Mode,
    flags: LockFlags,
}

impl fmt::Debug for Lock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("lkid", &self.lkid)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<'ls> Lock<'ls> {
    /// The lock id.
    pub fn id(&self) -> u32 {
        self.lkid
    }

    /// The granted mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The status-block flags of the latest completion.
    pub fn sb_flags(&self) -> SbFlags {
        self.ls
            .table()
            .get(self.token)
            .map_or(SbFlags::empty(), |s| s.flags)
    }

    /// Whether the lock value block is valid (the latest completion did
    /// not report VALNOTVALID).
    pub fn lvb_valid(&self) -> bool {
        !self.sb_flags().contains(SbFlags::VALNOTVALID)
    }

    /// The lock value block as of the latest grant (or as set by
    /// [`Lock::lvb_mut`]). Requires [`LockOptions::lvb`] to be meaningful.
    pub fn lvb(&self) -> Lvb {
        self.ls.table().get(self.token).map_or([0; 32], |s| s.lvb)
    }

    /// Changes the lock value block; it is written to the resource when the
    /// lock next leaves PW or EX (down-conversion or unlock).
    pub fn lvb_mut(&mut self) -> LvbMut<'_, 'ls> {
        LvbMut {
            lvb: self.lvb(),
            lock: self,
        }
    }

    /// Converts to `mode`, waiting for it.
    ///
    /// # Errors
    /// [`Error::Deadlock`] on a conversion deadlock (the lock keeps its
    /// mode); [`Error::Busy`] if a conversion is already pending.
    pub fn convert(&mut self, mode: Mode) -> Result<(), Error> {
        self.convert_flags(mode, LockFlags::empty())
    }

    /// Converts to `mode` only if that can be granted at once.
    ///
    /// # Errors
    /// [`Error::WouldBlock`]: the lock keeps its mode.
    pub fn try_convert(&mut self, mode: Mode) -> Result<(), Error> {
        self.convert_flags(mode, LockFlags::NOQUEUE)
    }

    /// Converts with extra flags (for example CONVDEADLK or QUECVT).
    ///
    /// # Errors
    /// As [`Lock::convert`].
    pub fn convert_flags(&mut self, mode: Mode, extra: LockFlags) -> Result<(), Error> {
        let flags = self.start_convert(mode, extra)?;
        let completion = self.ls.wait_token(self.token, None, self.lkid)?;
        self.end_convert(mode, flags, completion)
    }

    /// Sends a conversion; returns the flags it carried.
    pub(crate) fn start_convert(
        &mut self,
        mode: Mode,
        extra: LockFlags,
    ) -> Result<LockFlags, Error> {
        let (flags, req) = self.convert_request(mode, extra)?;
        if let Err(e) = self.ls.handle.write(&req) {
            self.convert_not_sent();
            return Err(e.into());
        }
        Ok(flags)
    }

    /// Marks the lock's slot as waiting and builds a conversion request;
    /// returns it with the flags it carries.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn convert_request(
        &mut self,
        mode: Mode,
        extra: LockFlags,
    ) -> Result<(LockFlags, Request), Error> {
        let flags = (self.flags - LockFlags::NOQUEUE) | extra | LockFlags::CONVERT;
        let bastaddr = {
            let mut table = self.ls.table();
            let slot = table.get(self.token).ok_or(Error::Sys(Errno::ENOENT))?;
            slot.status = Status::IN_PROGRESS;
            if slot.on_blocking.is_some() {
                BAST_TOKEN
            } else {
                0
            }
        };
        let req = Request::Lock(LockParams {
            mode: mode.raw(),
            flags,
            lkid: self.lkid,
            castaddr: CAST_TOKEN,
            castparam: self.token,
            bastaddr,
            bastparam: self.token,
            lksb: self.token,
            lvb: self.lvb(),
            ..LockParams::default()
        });
        Ok((flags, req))
    }

    /// A conversion built by [`Lock::convert_request`] was refused:
    /// nothing was queued, so the last status is put back.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn convert_not_sent(&self) {
        if let Some(slot) = self.ls.table().get(self.token) {
            slot.status = Status::GRANTED;
        }
    }

    /// The token the lock's results are routed by.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// The lockspace the lock belongs to.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn lockspace(&self) -> &'ls Lockspace {
        self.ls
    }

    /// Forgets the lock without unlocking it or freeing its slot; returns
    /// its token (the caller unlocks and frees it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_token(self) -> u64 {
        let this = std::mem::ManuallyDrop::new(self);
        this.token
    }

    /// Applies a conversion's completion.
    pub(crate) fn end_convert(
        &mut self,
        mode: Mode,
        flags: LockFlags,
        c: Completion,
    ) -> Result<(), Error> {
        if c.status.is_granted() {
            self.mode = granted_mode(mode, flags, c.flags);
            Ok(())
        } else {
            Err(Error::from_status(c.status))
        }
    }

    /// Unlocks, writing the LVB when the lock holds PW or EX and uses it.
    ///
    /// # Errors
    /// [`Error::Sys`] when the unlock is refused or the lock manager went
    /// away.
    pub fn unlock(self) -> Result<Status, Error> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unlock()
    }

    fn do_unlock(&self) -> Result<Status, Error> {
        let res = self
            .start_unlock()
            .and_then(|_| self.ls.wait_token(self.token, None, self.lkid));
        self.ls.table().free(self.token);
        res.map(|c| c.status)
    }

    /// Sends the unlock (with the LVB when the lock uses it).
    pub(crate) fn start_unlock(&self) -> Result<(), Error> {
        self.ls
            .handle
            .device()
            .write_params(&self.unlock_params(), DLM_USER_UNLOCK, &[])
            .map(drop)
            .map_err(Error::from)
    }

    /// Marks the lock's slot as waiting and builds its unlock request
    /// (with the LVB when the lock uses it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn unlock_request(&self) -> Request {
        Request::Unlock(self.unlock_params())
    }

    /// [`Lock::unlock_request`]'s parameters.
    fn unlock_params(&self) -> LockParams {
        let flags = self.flags & LockFlags::VALBLK;
        let lvb = match self.ls.table().get(self.token) {
            Some(slot) => {
                slot.status = Status::IN_PROGRESS;
                slot.lvb
            }
            None => [0; 32],
        };
        LockParams {
            lkid: self.lkid,
            flags,
            lksb: self.token,
            castparam: self.token,
            lvb,
            ..LockParams::default()
        }
    }

    /// Leaves the lock held and forgets it; returns its id. A persistent
    /// lock becomes an orphan when the lockspace handle closes; any other
    /// lock is released then.
    pub fn keep(self) -> u32 {
        let this = std::mem::ManuallyDrop::new(self);
        this.lkid
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let _ = self.do_unlock();
    }
}

/// Mutable access to a lock's LVB; the change is stored when dropped.
///
/// ```no_run
/// use dlm_core::{LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// let mut lock = ls.lock(b"r", Mode::Ex, LockOptions::new().lvb())?;
/// lock.lvb_mut()[0] = 7;
/// assert_eq!(lock.lvb()[0], 7);
/// lock.convert(Mode::Nl)?; // leaving EX writes it to the resource
/// # Ok::<(), dlm_core::Error>(())
/// ```
pub struct LvbMut<'a, 'ls> {
    lvb: Lvb,
    lock: &'a mut Lock<'ls>,
}

impl std::ops::Deref for LvbMut<'_, '_> {
    type Target = Lvb;
    fn deref(&self) -> &Lvb {
        &self.lvb
    }
}

impl std::ops::DerefMut for LvbMut<'_, '_> {
    fn deref_mut(&mut self) -> &mut Lvb {
        &mut self.lvb
    }
}

impl Drop for LvbMut<'_, '_> {
    fn drop(&mut self) {
        if let Some(slot) = self.lock.ls.table().get(self.lock.token) {
            slot.lvb = self.lvb;
        }
    }
}

/// The mode a lock holds after a grant: the alternate mode when the
/// completion says ALTMODE.
fn granted_mode(requested: Mode, flags: LockFlags, sb: SbFlags) -> Mode {
    if !sb.contains(SbFlags::ALTMODE) {
        requested
    } else if flags.contains(LockFlags::ALTPR) {
        Mode::Pr
    } else {
        Mode::Cw
    }
}
