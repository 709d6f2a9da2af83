//! [`Handle`]: an open lockspace and its dispatcher, without threads.
//!
//! A handle owns one [`Device`] (one opener, one lock owner) and the
//! handle's **dispatch role**: whoever reads results from the device holds
//! it — an AST thread, `dlm_dispatch`, or a synchronous call dispatching
//! inline — so no result is ever read twice or lost. The role is held
//! while a result is recorded and its callback runs, so callbacks of one
//! handle never run concurrently and always in the device's order; it is
//! re-entrant for the thread that holds it, so a callback may make a
//! synchronous call that dispatches further results (nested, as libdlm's
//! AST thread does).
//!
//! How a result reaches the application is the caller's business
//! ([`Deliver`]): the C ABI copies it into the caller's `struct dlm_lksb`
//! and calls a C function pointer; the Rust API resolves its own tokens.
//! The handle only guarantees the order: [`Deliver::record`] runs under
//! the handle's state lock (so a waiter's `done` check, also under that
//! lock, sees it), waiters are woken, then [`Deliver::call`] runs without
//! the state lock.

use crate::codec::LockResult;
use crate::transport::Device;
use crate::{Errno, Request};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::BorrowedFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

/// How dispatched results reach the application.
pub trait Deliver {
    /// Records the result (for example, fills the caller's lksb). Runs
    /// under the handle's state lock: it must not block or call back into
    /// the handle.
    fn record(&self, result: &LockResult);
    /// Runs the result's callback, if any. Runs without the state lock,
    /// with the dispatch role held by this thread: it may call back into
    /// the handle, including synchronous calls.
    fn call(&self, result: &LockResult);
}

#[derive(Debug, Default)]
struct State {
    /// The thread holding the dispatch role, and how deeply (nested
    /// dispatch from inside a callback).
    dispatcher: Option<(ThreadId, u32)>,
    /// The lock manager went away (dlmd died): every wait ends.
    dead: Option<Errno>,
    /// Threads waiting on the condvar: a notify is a futex syscall, made
    /// only when someone waits.
    waiters: u32,
}

/// What one dispatch attempt did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dispatched {
    /// One result was read and delivered.
    One,
    /// Nothing was queued (non-blocking dispatch).
    Empty,
    /// The wake-up fd became readable: the caller was asked to stop.
    Woken,
}

/// An open lockspace: one opener of the lock manager, and its dispatcher.
#[derive(Debug)]
pub struct Handle {
    device: Device,
    state: Mutex<State>,
    cond: Condvar,
}

impl Handle {
    /// Wraps an opened device.
    pub fn new(device: Device) -> Handle {
        Handle {
            device,
            state: Mutex::default(),
            cond: Condvar::new(),
        }
    }

    /// The underlying device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The pollable fd: readable when a result is queued.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.device.fd()
    }

    /// Sends one request; returns what the kernel's `write()` returns.
    ///
    /// # Errors
    /// The lock manager's errno; ENOTCONN when dlmd went away.
    pub fn write(&self, req: &Request) -> Result<u32, Errno> {
        self.device.write(req)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the handle's state lock (the lock [`Deliver::record`]
    /// runs under): for setting up or checking what a waiter waits for.
    pub fn with_state_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.lock_state();
        f()
    }

    /// Takes the dispatch role (waiting for another holder to finish), or
    /// deepens it if this thread already holds it.
    fn acquire_role(&self) -> MutexGuard<'_, State> {
        let me = std::thread::current().id();
        let mut st = self.lock_state();
        loop {
            match st.dispatcher {
                None => {
                    st.dispatcher = Some((me, 1));
                    return st;
                }
                Some((t, depth)) if t == me => {
                    st.dispatcher = Some((t, depth + 1));
                    return st;
                }
                Some(_) => st = self.wait_cond(st),
            }
        }
    }

    /// Waits on the condvar, counted in `waiters`.
    fn wait_cond<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.waiters += 1;
        let mut st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        st.waiters -= 1;
        st
    }

    /// Wakes the waiters, if any (`st` is dropped first).
    fn notify(&self, st: MutexGuard<'_, State>) {
        let any = st.waiters > 0;
        drop(st);
        if any {
            self.cond.notify_all();
        }
    }

    fn release_role(&self) {
        let mut st = self.lock_state();
        st.dispatcher = match st.dispatcher {
            Some((t, depth)) if depth > 1 => Some((t, depth - 1)),
            _ => None,
        };
        self.notify(st);
    }

    /// Reads and delivers at most one result, holding the dispatch role.
    ///
    /// Blocking unless `nonblocking`; with `wake`, the wait also ends when
    /// that fd becomes readable ([`Dispatched::Woken`]), which is how an
    /// AST thread is stopped without `pthread_cancel`.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away (every waiter of the handle
    /// is woken with it); EPROTO for a malformed result; EINTR.
    pub fn dispatch_one(
        &self,
        deliver: &dyn Deliver,
        nonblocking: bool,
        wake: Option<BorrowedFd<'_>>,
    ) -> Result<Dispatched, Errno> {
        let st = self.acquire_role();
        if let Some(e) = st.dead {
            drop(st);
            self.release_role();
            return Err(e);
        }
        drop(st);
        let outcome = self.read_and_deliver(deliver, nonblocking, wake);
        self.finish_dispatch(&outcome);
        outcome
    }

    /// Gives the role back; a lost lock manager ends every wait.
    fn finish_dispatch(&self, outcome: &Result<Dispatched, Errno>) {
        if let Err(e @ (Errno::ENOTCONN | Errno::EPROTO)) = outcome {
            self.lock_state().dead = Some(*e);
        }
        self.release_role();
    }

    fn read_and_deliver(
        &self,
        deliver: &dyn Deliver,
        nonblocking: bool,
        wake: Option<BorrowedFd<'_>>,
    ) -> Result<Dispatched, Errno> {
        if let (Some(wake), false) = (wake, nonblocking) {
            let dev = self.device.fd();
            let mut fds = [
                PollFd::new(&dev, PollFlags::IN),
                PollFd::new(&wake, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(Dispatched::Empty),
                Err(e) => return Err(Errno::from_raw(e.raw_os_error())),
            }
            if !fds[1].revents().is_empty() {
                return Ok(Dispatched::Woken);
            }
            if fds[0].revents().is_empty() {
                return Ok(Dispatched::Empty);
            }
        }
        let Some(result) = self.device.read(nonblocking || wake.is_some())? else {
            return Ok(Dispatched::Empty);
        };
        let st = self.lock_state();
        deliver.record(&result);
        self.notify(st);
        deliver.call(&result);
        Ok(Dispatched::One)
    }

    /// Waits until `done` (checked under the state lock) returns true.
    ///
    /// With `may_dispatch`, this thread dispatches results itself whenever
    /// nobody else holds the dispatch role (and always when it holds the
    /// role already: a synchronous call inside a callback); otherwise it
    /// only waits for the thread that dispatches (an AST thread) to record
    /// the result it waits for.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    pub fn wait(
        &self,
        deliver: &dyn Deliver,
        done: &mut dyn FnMut() -> bool,
        may_dispatch: bool,
    ) -> Result<(), Errno> {
        let me = std::thread::current().id();
        loop {
            // Check and take the role under one lock, so a result recorded
            // by another dispatcher in between cannot be missed.
            let mut st = self.lock_state();
            loop {
                if done() {
                    return Ok(());
                }
                if let Some(e) = st.dead {
                    return Err(e);
                }
                match st.dispatcher {
                    Some((t, depth)) if t == me => {
                        st.dispatcher = Some((t, depth + 1));
                        break;
                    }
                    None if may_dispatch => {
                        st.dispatcher = Some((me, 1));
                        break;
                    }
                    _ => st = self.wait_cond(st),
                }
            }
            drop(st);
            let outcome = self.read_and_deliver(deliver, false, None);
            self.finish_dispatch(&outcome);
            match outcome {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Dispatches every queued result without blocking; returns how many.
    ///
    /// # Errors
    /// As [`Handle::dispatch_one`].
    pub fn drain(&self, deliver: &dyn Deliver) -> Result<usize, Errno> {
        let mut n = 0;
        while self.dispatch_one(deliver, true, None)? == Dispatched::One {
            n += 1;
        }
        Ok(n)
    }
}
