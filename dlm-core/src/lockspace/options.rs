//! [`LockOptions`] and the callback types a request carries.

use super::*;

pub(super) type BastFn = Arc<dyn Fn(Mode) + Send + Sync>;
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
    pub(super) flags: LockFlags,
    pub(super) on_blocking: Option<BastFn>,
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
