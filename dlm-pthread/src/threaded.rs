//! [`ThreadedLockspace`]: the safe Rust API with callbacks on a thread.
//!
//! A [`dlm_core::Lockspace`] plus one AST thread (the machinery of module
//! `ast`, which the C library's `dlm_ls_pthread_init` uses too): blocking
//! callbacks and completions of asynchronous requests run on that
//! thread, in the lock manager's order; blocking calls from any other
//! thread wait for the thread to deliver their results (they never read
//! the lockspace fd themselves while it runs). The thread is stopped by
//! an eventfd and joined when the lockspace is dropped or released,
//! before its fd closes.

use crate::ast::{AstThread, Source, Step};
use dlm_core::sync::Arc;
use dlm_core::{Error, Lockspace};
use rustix::event::{EventfdFlags, eventfd};
use rustix::fd::{AsFd, OwnedFd};
use std::fmt;

/// A lockspace and the eventfd that stops its thread.
struct LsThread {
    ls: Lockspace,
    wake: OwnedFd,
}

impl Source for LsThread {
    fn dispatch(&self) -> Step {
        Step::after(self.ls.dispatch_or_wake(self.wake.as_fd()))
    }

    fn wake(&self) {
        crate::ast::wake_eventfd(self.wake.as_fd());
    }

    fn set_threaded(&self, on: bool) {
        self.ls.set_dispatch_thread(on);
    }
}

/// A lockspace whose callbacks run on a thread of its own. It
/// dereferences to [`Lockspace`], so every call of the no-thread API is
/// there: blocking calls may be made from any thread (and from the
/// callbacks themselves); completion handlers of
/// [`Lockspace::lock_async`] and blocking callbacks (a closure with
/// [`LockOptions::on_blocking`](dlm_core::LockOptions::on_blocking), or a
/// channel with
/// [`LockOptions::blocking_sender`](dlm_core::LockOptions::blocking_sender))
/// run on the lockspace's thread, with the blocked mode. Do not call
/// [`Lockspace::dispatch`]: the thread dispatches.
///
/// Dropping it stops the thread (a callback in flight runs to its end),
/// joins it, then closes the handle (releasing its locks, orphaning
/// persistent ones).
///
/// ```no_run
/// use dlm::ThreadedLockspace;
/// use dlm_core::{LockOptions, Mode};
/// use std::sync::mpsc;
///
/// let ls = ThreadedLockspace::create("example", 0o600)?;
/// let (tx, rx) = mpsc::channel();
/// let lock = ls.lock(b"r", Mode::Ex, LockOptions::new().blocking_sender(tx))?;
/// // The thread delivers the blocking callback while this one waits.
/// let wanted = rx.recv().expect("a blocking callback");
/// println!("another owner wants {wanted:?}");
/// lock.unlock()?;
/// # Ok::<(), dlm_core::Error>(())
/// ```
pub struct ThreadedLockspace {
    thread: Option<AstThread<LsThread>>,
    /// Always `Some` until consumed by [`ThreadedLockspace::into_lockspace`].
    inner: Option<Arc<LsThread>>,
}

impl fmt::Debug for ThreadedLockspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadedLockspace")
            .field("lockspace", &**self)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl ThreadedLockspace {
    /// Creates the lockspace (or joins it) and opens it, with its thread;
    /// see [`Lockspace::create`].
    ///
    /// # Errors
    /// As [`Lockspace::create`]; EAGAIN when the thread cannot start.
    pub fn create(name: &str, mode: u32) -> Result<ThreadedLockspace, Error> {
        ThreadedLockspace::new(Lockspace::create(name, mode)?)
    }

    /// Creates a new lockspace (EEXIST if it exists), with its thread.
    ///
    /// # Errors
    /// As [`Lockspace::new_exclusive`]; EAGAIN.
    pub fn new_exclusive(name: &str, mode: u32) -> Result<ThreadedLockspace, Error> {
        ThreadedLockspace::new(Lockspace::new_exclusive(name, mode)?)
    }

    /// Opens an existing lockspace, with its thread.
    ///
    /// # Errors
    /// As [`Lockspace::open`]; EAGAIN.
    pub fn open(name: &str) -> Result<ThreadedLockspace, Error> {
        ThreadedLockspace::new(Lockspace::open(name)?)
    }

    /// Starts the thread of an open lockspace.
    ///
    /// # Errors
    /// [`Error::Sys`] when the eventfd or the thread cannot be made.
    pub fn new(ls: Lockspace) -> Result<ThreadedLockspace, Error> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| Error::Sys(e.into()))?;
        let inner = Arc::new(LsThread { ls, wake });
        let thread = AstThread::start(inner.clone()).map_err(Error::Sys)?;
        Ok(ThreadedLockspace {
            thread: Some(thread),
            inner: Some(inner),
        })
    }

    /// Stops and joins the thread; the lockspace stays open, dispatched
    /// by its blocking calls (and [`Lockspace::dispatch`]) from now on.
    ///
    /// # Errors
    /// [`Error::Busy`] when called from the lockspace's own thread (a
    /// callback), which cannot join itself; the lockspace is closed when
    /// that callback returns.
    pub fn into_lockspace(mut self) -> Result<Lockspace, Error> {
        self.stop();
        let inner = self.inner.take().expect("a live ThreadedLockspace");
        Arc::try_unwrap(inner)
            .map(|t| t.ls)
            .map_err(|_| Error::Busy)
    }

    /// Stops the thread, then releases the lockspace; see
    /// [`Lockspace::release`].
    ///
    /// # Errors
    /// As [`Lockspace::release`].
    pub fn release(self, force: bool) -> Result<(), Error> {
        self.into_lockspace()?.release(force)
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
    }
}

impl std::ops::Deref for ThreadedLockspace {
    type Target = Lockspace;
    fn deref(&self) -> &Lockspace {
        &self.inner.as_ref().expect("a live ThreadedLockspace").ls
    }
}

impl Drop for ThreadedLockspace {
    fn drop(&mut self) {
        self.stop();
    }
}
