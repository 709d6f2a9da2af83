//! AST threads: one per lockspace handle that asked for one, started and
//! stopped without `pthread_cancel`.
//!
//! The thread loops on [`Source::dispatch`], which delivers one result
//! (running its callback on this thread) or reports that the thread was
//! asked to stop. Stopping is: tell waiters the handle is no longer
//! dispatched by a thread ([`Source::set_threaded`], so synchronous calls
//! that were waiting for the thread take over dispatching), wake the
//! thread ([`Source::wake`]: a wake-up fd it polls beside the lockspace
//! fd), then join it. A callback in flight therefore always runs to its
//! end, and the lockspace fd, owned by the source the thread holds, is
//! closed only after the join.
//!
//! The logic is generic over [`Source`] so that loom can check it with
//! dlm-core's real handle fed through a channel in place of the fds
//! (`handle_models`, run by `cargo xtask loom`).

use dlm_core::Errno;
use dlm_core::sync::{Arc, Mutex, lock, thread};

#[cfg(all(test, dlm_loom))]
mod handle_models;

/// What one dispatch step did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Step {
    /// Delivered a result (or nothing): go on.
    Continue,
    /// Woken to stop, or the lock manager went away: end the thread.
    Stop,
}

impl Step {
    /// What the thread does after one dispatch attempt: stop when woken
    /// or when the lock manager is gone, otherwise go on.
    pub(crate) fn after(r: Result<dlm_core::handle::Dispatched, dlm_core::Errno>) -> Step {
        use dlm_core::handle::Dispatched;
        match r {
            Ok(Dispatched::Woken) => Step::Stop,
            Ok(Dispatched::One | Dispatched::Empty) | Err(dlm_core::Errno::EINTR) => Step::Continue,
            Err(_) => Step::Stop,
        }
    }
}

/// Wakes an AST thread waiting in dispatch through its eventfd. A write of
/// 1 cannot block (the counter is far from overflowing) and the fd stays
/// readable afterwards.
#[cfg(not(dlm_loom))]
pub(crate) fn wake_eventfd(fd: rustix::fd::BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// What an AST thread dispatches: a lockspace handle and its wake-up fd.
pub(crate) trait Source: Send + Sync + 'static {
    /// Blocks until a result was delivered (its callback has returned) or
    /// [`Source::wake`] was called.
    fn dispatch(&self) -> Step;
    /// Makes the current or next [`Source::dispatch`] return
    /// [`Step::Stop`]; stays in effect.
    fn wake(&self);
    /// Tells synchronous waiters whether a thread dispatches the handle.
    fn set_threaded(&self, on: bool);
}

/// A running AST thread.
pub(crate) struct AstThread<S: Source> {
    source: Arc<S>,
    join: thread::JoinHandle<()>,
}

impl<S: Source> AstThread<S> {
    /// Starts a thread dispatching `source`.
    ///
    /// # Errors
    /// EAGAIN when the thread cannot be created.
    pub(crate) fn start(source: Arc<S>) -> Result<AstThread<S>, Errno> {
        source.set_threaded(true);
        let s = source.clone();
        let join = spawn(move || {
            while s.dispatch() == Step::Continue {}
            // The lock manager may have gone: waiters dispatch (and see
            // the error) themselves.
            s.set_threaded(false);
        });
        match join {
            Some(join) => Ok(AstThread { source, join }),
            None => {
                source.set_threaded(false);
                Err(Errno::EAGAIN)
            }
        }
    }

    /// Stops the thread: waiters first, then the wake-up, then the join.
    /// Called from the thread's own callback, it cannot join itself: the
    /// thread ends when the callback returns.
    pub(crate) fn stop(self) {
        self.source.set_threaded(false);
        self.source.wake();
        if self.join.thread().id() != thread::current().id() {
            let _ = self.join.join();
        }
    }
}

#[cfg(not(dlm_loom))]
fn spawn(f: impl FnOnce() + Send + 'static) -> Option<thread::JoinHandle<()>> {
    thread::Builder::new().name("dlm-ast".into()).spawn(f).ok()
}

#[cfg(dlm_loom)]
fn spawn(f: impl FnOnce() + Send + 'static) -> Option<thread::JoinHandle<()>> {
    Some(thread::spawn(f))
}

/// The AST threads of the process, by handle.
pub(crate) struct Registry<S: Source> {
    threads: Mutex<Vec<(usize, AstThread<S>)>>,
}

impl<S: Source> Registry<S> {
    /// An empty registry.
    #[cfg(not(dlm_loom))]
    pub(crate) const fn new() -> Registry<S> {
        Registry {
            threads: Mutex::new(Vec::new()),
        }
    }

    /// An empty registry (loom's mutex is not `const`).
    #[cfg(dlm_loom)]
    pub(crate) fn new() -> Registry<S> {
        Registry {
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Starts the AST thread of handle `key`, with the source `make`
    /// builds.
    ///
    /// # Errors
    /// EEXIST when the handle has one already; `make`'s errors; EAGAIN.
    pub(crate) fn start(
        &self,
        key: usize,
        make: impl FnOnce() -> Result<Arc<S>, Errno>,
    ) -> Result<(), Errno> {
        let mut threads = lock(&self.threads);
        if threads.iter().any(|(k, _)| *k == key) {
            return Err(Errno::EEXIST);
        }
        let t = AstThread::start(make()?)?;
        threads.push((key, t));
        Ok(())
    }

    /// Stops and joins the AST thread of handle `key`, if it has one.
    /// The registry is not locked during the join, so a callback on that
    /// thread may start or stop other handles' threads.
    pub(crate) fn stop(&self, key: usize) {
        let t = {
            let mut threads = lock(&self.threads);
            let at = threads.iter().position(|(k, _)| *k == key);
            at.map(|i| threads.swap_remove(i).1)
        };
        if let Some(t) = t {
            t.stop();
        }
    }
}
