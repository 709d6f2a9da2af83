//! The async API (cargo feature `tokio`): [`AsyncLockspace`] and
//! [`AsyncLock`], whose futures resolve when the lock manager completes
//! the request.
//!
//! There is no thread per lockspace: the futures themselves drive the
//! lockspace. A pending future waits, through tokio's [`AsyncFd`], for
//! the callback fd to become readable, then dispatches every queued
//! result (recording completions, running blocking callbacks) and looks
//! for its own completion; completions also wake the futures they
//! belong to, whoever dispatched them. On dlmd, requests are pipelined:
//! each is sent without waiting for the reply to the one before, so many
//! futures (of one task or of many) have requests in flight on the one
//! request socket at once, and their replies are read, in order, by
//! whichever future polls the request socket. On the kernel backend the
//! device's `write()` is synchronous and answers at once.
//!
//! Blocking callbacks ([`LockOptions::on_blocking`]) run inside the poll
//! of whichever future of the lockspace dispatches; with no future
//! pending, [`AsyncLockspace::dispatch`] delivers them.
//!
//! **Cancellation.** Dropping a pending lock future cancels the request:
//! the drop sends a CANCEL and waits (briefly: a cancel never waits for
//! other holders) until the request has ended; if the grant won the race,
//! the lock is unlocked. Either way no lock is left behind. Dropping a
//! pending conversion leaves the conversion queued (the lock is still
//! held; its [`AsyncLock::mode`] is the old one until a later conversion
//! completes). Dropping an [`AsyncLock`] unlocks it without waiting: the
//! unlock is sent and its reply and completion are ignored.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dlm_core::Error> {
//! use dlm_core::{AsyncLockspace, LockOptions, Mode};
//!
//! let ls = AsyncLockspace::create("example", 0o600)?;
//! // Two requests in flight at once on one lockspace.
//! let (a, b) = tokio::join!(
//!     ls.lock(b"a", Mode::Ex, LockOptions::new()),
//!     ls.lock(b"b", Mode::Pr, LockOptions::new()),
//! );
//! let (mut a, b) = (a?, b?);
//! a.convert(Mode::Pr).await?;
//! b.unlock().await?;
//! a.unlock().await?;
//! # Ok(())
//! # }
//! ```

use crate::lockspace::CompleteFn;
use crate::transport::Sent;
use crate::{
    Completion, Errno, Error, Lock, LockFlags, LockOptions, Lockspace, LvbMut, Mode, Name, Request,
    SbFlags, Status,
};
use rustix::fd::{AsFd, AsRawFd, RawFd};
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// An fd owned by the [`Lockspace`] beside it, registered with tokio.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `fd`, owned by the [`Lockspace`] of an [`AsyncLockspace`],
/// with tokio, for readability.
#[allow(unsafe_code)]
fn register(fd: rustix::fd::BorrowedFd<'_>) -> Result<AsyncFd<Fd>, Error> {
    // SAFETY: the fd belongs to the lockspace stored in the same
    // `AsyncLockspace`, which declares (and `release` drops) its
    // `AsyncFd`s before the lockspace: the fd stays open and the same
    // file for as long as the registration lives.
    unsafe { AsyncFd::register_with_interest(Fd(fd.as_raw_fd()), Interest::READABLE) }
        .map_err(|e| io_error(e.into()))
}

fn io_error(e: std::io::Error) -> Error {
    Error::Sys(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// A lockspace whose calls are futures, for tokio. Like [`Lockspace`],
/// it is one lock owner; dropping it closes the handle (releasing its
/// locks, orphaning persistent ones).
///
/// It must be made inside a tokio runtime with I/O enabled, and its
/// futures polled there. Share it between tasks with an `Arc`; its
/// futures borrow it.
///
/// ```no_run
/// # async fn demo() -> Result<(), dlm_core::Error> {
/// use dlm_core::{AsyncLockspace, Error, LockOptions, Mode};
///
/// let ls = AsyncLockspace::open("example")?;
/// match ls.try_lock(b"leader", Mode::Ex, LockOptions::new()).await {
///     Ok(lock) => println!("leader, lock id {}", lock.id()),
///     Err(Error::WouldBlock) => println!("someone else leads"),
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
pub struct AsyncLockspace {
    // Deregistered from tokio before the lockspace (and its fds) drop.
    callbacks: AsyncFd<Fd>,
    requests: Option<AsyncFd<Fd>>,
    notify: Arc<Notify>,
    ls: Lockspace,
}

impl fmt::Debug for AsyncLockspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncLockspace")
            .field("lockspace", &self.ls)
            .finish()
    }
}

/// Which of two futures finished first.
enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures; returns the first output.
async fn either<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Forgets a pipelined request's reply if its future is dropped.
struct ReplyGuard<'a> {
    ls: &'a Lockspace,
    seq: Option<u32>,
}

impl Drop for ReplyGuard<'_> {
    fn drop(&mut self) {
        if let Some(seq) = self.seq {
            self.ls.device().forget_reply(seq);
        }
    }
}

/// A lock request whose future may be dropped before it completes.
struct PendingLock<'a> {
    ls: &'a Lockspace,
    token: u64,
    /// The request was sent and dlmd's reply (the lock id) has not been
    /// taken yet.
    seq: Option<u32>,
    lkid: Option<u32>,
    /// Settled: nothing to clean up.
    done: bool,
}

impl Drop for PendingLock<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let lkid = match (self.lkid, self.seq) {
            (Some(lkid), _) => Some(lkid),
            (None, Some(seq)) => self.ls.device().wait_reply(seq).ok(),
            (None, None) => None,
        };
        match lkid {
            Some(lkid) => self.ls.abandon(self.token, lkid),
            None => self.ls.free_token(self.token),
        }
    }
}

impl AsyncLockspace {
    /// Creates the lockspace (or joins it if it exists) and opens it; see
    /// [`Lockspace::create`]. Call it inside a tokio runtime.
    ///
    /// # Errors
    /// As [`Lockspace::create`].
    pub fn create(name: &str, mode: u32) -> Result<AsyncLockspace, Error> {
        AsyncLockspace::new(Lockspace::create(name, mode)?)
    }

    /// Creates a new lockspace, failing with EEXIST if it exists; see
    /// [`Lockspace::new_exclusive`].
    ///
    /// # Errors
    /// As [`Lockspace::new_exclusive`].
    pub fn new_exclusive(name: &str, mode: u32) -> Result<AsyncLockspace, Error> {
        AsyncLockspace::new(Lockspace::new_exclusive(name, mode)?)
    }

    /// Opens an existing lockspace; see [`Lockspace::open`].
    ///
    /// # Errors
    /// As [`Lockspace::open`].
    pub fn open(name: &str) -> Result<AsyncLockspace, Error> {
        AsyncLockspace::new(Lockspace::open(name)?)
    }

    /// Makes an open lockspace async: registers its fds with the current
    /// tokio runtime.
    ///
    /// # Errors
    /// [`Error::Sys`] when tokio cannot register the fds (for example,
    /// outside a runtime with I/O enabled).
    pub fn new(ls: Lockspace) -> Result<AsyncLockspace, Error> {
        let callbacks = register(ls.as_fd())?;
        let requests = match ls.device().request_fd() {
            Some(fd) => Some(register(fd)?),
            None => None,
        };
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        ls.device()
            .set_reply_hook(Arc::new(move || n.notify_waiters()));
        Ok(AsyncLockspace {
            callbacks,
            requests,
            notify,
            ls,
        })
    }

    /// The lockspace's name.
    pub fn name(&self) -> &Name {
        self.ls.name()
    }

    /// Closes this handle and drops one creation count of the lockspace;
    /// see [`Lockspace::release`].
    ///
    /// # Errors
    /// [`Error::Busy`] when the lockspace still has locks (without
    /// `force`) or other openers; the handle is closed either way.
    pub fn release(self, force: bool) -> Result<(), Error> {
        let AsyncLockspace {
            callbacks,
            requests,
            ls,
            ..
        } = self;
        drop(callbacks);
        drop(requests);
        ls.release(force)
    }

    /// Waits until a callback is queued, then delivers every queued one
    /// (blocking callbacks, completions); returns how many. Lock futures
    /// do this themselves while they wait; call it to receive blocking
    /// callbacks while no future of this lockspace is pending.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    pub async fn dispatch(&self) -> Result<usize, Error> {
        loop {
            let mut guard = self.callbacks.readable().await.map_err(io_error)?;
            let n = self.ls.dispatch().map_err(Error::Sys)?;
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Requests a lock; resolves when it is granted.
    ///
    /// # Errors
    /// As [`Lockspace::lock`].
    pub async fn lock(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
    ) -> Result<AsyncLock<'_>, Error> {
        self.lock_flags(name, mode, opts, LockFlags::empty()).await
    }

    /// Requests a lock without waiting for other holders.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when it cannot be granted at once; otherwise
    /// as [`Lockspace::lock`].
    pub async fn try_lock(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
    ) -> Result<AsyncLock<'_>, Error> {
        self.lock_flags(name, mode, opts, LockFlags::NOQUEUE).await
    }

    async fn lock_flags(
        &self,
        name: &[u8],
        mode: Mode,
        opts: LockOptions,
        extra: LockFlags,
    ) -> Result<AsyncLock<'_>, Error> {
        let flags = (opts.flags_of() | extra) - LockFlags::CONVERT - LockFlags::WAIT;
        let (token, req) = self
            .ls
            .prepare_lock(name, mode, flags, &opts, Some(self.wake_fn()))?;
        let mut pending = PendingLock {
            ls: &self.ls,
            token,
            seq: None,
            lkid: None,
            done: false,
        };
        match self.ls.device().send(&req) {
            Ok(Sent::Answered(lkid)) => pending.lkid = Some(lkid),
            Ok(Sent::Pending(seq)) => pending.seq = Some(seq),
            Err(e) => {
                pending.done = true;
                self.ls.free_token(token);
                return Err(e.into());
            }
        }
        if let Some(seq) = pending.seq {
            let reply = self.reply(seq).await;
            pending.seq = None;
            match reply {
                Ok(lkid) => pending.lkid = Some(lkid),
                Err(e) => {
                    pending.done = true;
                    self.ls.free_token(token);
                    return Err(e.into());
                }
            }
        }
        let completion = self.completion(token).await;
        pending.done = true;
        let lock = self.ls.finish(token, mode, flags, completion)?;
        Ok(AsyncLock {
            als: self,
            lock: Some(lock),
        })
    }

    /// The completion handler of this lockspace's futures: wakes them.
    fn wake_fn(&self) -> CompleteFn {
        let n = self.notify.clone();
        Box::new(move |_, _| n.notify_waiters())
    }

    /// Sends a request (pipelined on dlmd) and waits for its answer.
    async fn request(&self, req: &Request) -> Result<u32, Errno> {
        match self.ls.device().send(req)? {
            Sent::Answered(v) => Ok(v),
            Sent::Pending(seq) => self.reply(seq).await,
        }
    }

    /// Waits for the reply to pipelined request `seq`.
    async fn reply(&self, seq: u32) -> Result<u32, Errno> {
        let mut guard = ReplyGuard {
            ls: &self.ls,
            seq: Some(seq),
        };
        let requests = self.requests.as_ref().ok_or(Errno::EINVAL)?;
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(r) = self.ls.device().try_reply(seq) {
                guard.seq = None;
                return r;
            }
            match either(requests.readable(), notified).await {
                Either::Left(ready) => {
                    let mut ready = ready
                        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
                    if let Some(r) = self.ls.device().try_reply(seq) {
                        // Other replies may still be queued: leave the
                        // readiness set for their futures.
                        guard.seq = None;
                        return r;
                    }
                    // The socket was read empty.
                    ready.clear_ready();
                }
                Either::Right(()) => {}
            }
        }
    }

    /// Waits for the completion recorded in `token`'s slot, dispatching
    /// whatever is queued meanwhile.
    async fn completion(&self, token: u64) -> Result<Completion, Error> {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(c) = self.ls.completion(token) {
                return Ok(c);
            }
            match either(self.callbacks.readable(), notified).await {
                Either::Left(ready) => {
                    let mut ready = ready.map_err(io_error)?;
                    self.ls.dispatch().map_err(Error::Sys)?;
                    // Dispatch read the fd empty.
                    ready.clear_ready();
                }
                Either::Right(()) => {}
            }
        }
    }
}

/// A granted lock of an [`AsyncLockspace`]. Dropping it unlocks it
/// without waiting; [`AsyncLock::unlock`] waits and returns the status.
///
/// ```no_run
/// # async fn demo(ls: &dlm_core::AsyncLockspace) -> Result<(), dlm_core::Error> {
/// use dlm_core::{LockOptions, Mode};
///
/// let mut lock = ls.lock(b"config", Mode::Pr, LockOptions::new().lvb()).await?;
/// println!("generation {}", lock.lvb()[0]);
/// lock.convert(Mode::Ex).await?;
/// lock.lvb_mut()[0] += 1;
/// lock.unlock().await?; // writes the LVB
/// # Ok(())
/// # }
/// ```
pub struct AsyncLock<'a> {
    als: &'a AsyncLockspace,
    /// Always `Some` until the lock is consumed.
    lock: Option<Lock<'a>>,
}

impl fmt::Debug for AsyncLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncLock")
            .field("lock", &self.lock)
            .finish()
    }
}

impl<'a> AsyncLock<'a> {
    fn inner(&self) -> &Lock<'a> {
        self.lock.as_ref().expect("a live AsyncLock holds its lock")
    }

    fn inner_mut(&mut self) -> &mut Lock<'a> {
        self.lock.as_mut().expect("a live AsyncLock holds its lock")
    }

    /// The lock id.
    pub fn id(&self) -> u32 {
        self.inner().id()
    }

    /// The granted mode.
    pub fn mode(&self) -> Mode {
        self.inner().mode()
    }

    /// The status-block flags of the latest completion.
    pub fn sb_flags(&self) -> SbFlags {
        self.inner().sb_flags()
    }

    /// Whether the lock value block is valid; see [`Lock::lvb_valid`].
    pub fn lvb_valid(&self) -> bool {
        self.inner().lvb_valid()
    }

    /// The lock value block as of the latest grant; see [`Lock::lvb`].
    pub fn lvb(&self) -> crate::Lvb {
        self.inner().lvb()
    }

    /// Changes the lock value block; see [`Lock::lvb_mut`].
    pub fn lvb_mut(&mut self) -> LvbMut<'_, 'a> {
        self.inner_mut().lvb_mut()
    }

    /// Converts to `mode`; resolves when the conversion is granted.
    ///
    /// # Errors
    /// As [`Lock::convert`].
    pub async fn convert(&mut self, mode: Mode) -> Result<(), Error> {
        self.convert_flags(mode, LockFlags::empty()).await
    }

    /// Converts to `mode` only if that can be granted at once.
    ///
    /// # Errors
    /// [`Error::WouldBlock`]: the lock keeps its mode.
    pub async fn try_convert(&mut self, mode: Mode) -> Result<(), Error> {
        self.convert_flags(mode, LockFlags::NOQUEUE).await
    }

    /// Converts with extra flags (for example CONVDEADLK or QUECVT).
    ///
    /// # Errors
    /// As [`Lock::convert`].
    pub async fn convert_flags(&mut self, mode: Mode, extra: LockFlags) -> Result<(), Error> {
        let als = self.als;
        let wake = als.wake_fn();
        let lock = self.inner_mut();
        let token = lock.token();
        als.ls.set_on_complete(token, wake);
        let (flags, req) = lock.convert_request(mode, extra)?;
        if let Err(e) = als.request(&req).await {
            lock.convert_not_sent();
            return Err(e.into());
        }
        let c = als.completion(token).await?;
        lock.end_convert(mode, flags, c)
    }

    /// Unlocks (writing the LVB when the lock holds PW or EX and uses
    /// it); resolves with the status when the unlock completes.
    ///
    /// # Errors
    /// As [`Lock::unlock`].
    pub async fn unlock(mut self) -> Result<Status, Error> {
        let als = self.als;
        let lock = self.lock.take().expect("a live AsyncLock holds its lock");
        let token = lock.token();
        als.ls.set_on_complete(token, als.wake_fn());
        let req = lock.unlock_request();
        lock.into_token();
        // The slot is freed however this future ends.
        struct Free<'a>(&'a Lockspace, u64);
        impl Drop for Free<'_> {
            fn drop(&mut self) {
                self.0.free_token(self.1);
            }
        }
        let _free = Free(&als.ls, token);
        als.request(&req).await?;
        Ok(als.completion(token).await?.status)
    }

    /// Leaves the lock held and forgets it; see [`Lock::keep`].
    pub fn keep(mut self) -> u32 {
        self.lock
            .take()
            .expect("a live AsyncLock holds its lock")
            .keep()
    }
}

impl Drop for AsyncLock<'_> {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let ls = lock.lockspace();
        let req = lock.unlock_request();
        // Results of the unlock are ignored from here on.
        ls.free_token(lock.into_token());
        if let Ok(Sent::Pending(seq)) = ls.device().send(&req) {
            ls.device().forget_reply(seq);
        }
    }
}

/// Futures of this module are `Send` (checked at compile time).
#[allow(dead_code)]
fn assert_send(ls: &AsyncLockspace) {
    fn is_send<T: Send>(_: T) {}
    is_send(ls.lock(b"r", Mode::Ex, LockOptions::new()));
    is_send(ls.dispatch());
}
