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
//! AST thread does). The role is a word of its own (the holder's thread
//! pointer): taken by one compare-and-swap, with or without the state
//! lock ([`Handle::wait_inline_recorded`] reads before it takes the lock
//! at all), and given back only under the state lock, so a waiter that
//! found it held and sleeps is always seen and woken.
//!
//! How a result reaches the application is the caller's business
//! ([`Deliver`]): the C ABI copies it into the caller's `struct dlm_lksb`
//! and calls a C function pointer; the Rust API resolves its own tokens.
//! The handle only guarantees the order: [`Deliver::record`] runs under
//! the handle's state lock (so a waiter's `done` check, also under that
//! lock, sees it), waiters are woken, then [`Deliver::call`] runs without
//! the state lock.
//!
//! The handle's owner keeps its own bookkeeping (`T`) under the same
//! state lock, so recording a result, a waiter's check and the owner's
//! updates take one lock, not two: the C ABI keeps its lock ids in flight
//! there, the Rust API its table of requests.
//!
//! A handle may have a **dispatch thread** (an AST thread of libdlm or
//! of `dlm::ThreadedLockspace`, [`Handle::set_dispatch_thread`]); the
//! synchronous calls' [`Handle::wait`] then waits for it to record their
//! results instead of reading them, and takes over when it stops.
//!
//! Results come from a [`Results`] source: the lockspace fd
//! ([`Device`]) in the libraries; a channel in the loom models (built
//! with `--cfg dlm_loom`, where [`crate::sync`] is loom's), which check
//! this very code: `cargo xtask loom`.

use crate::codec::{RawResult, ReadRaw, ResultSpace, result_space};
use crate::sync::{
    self, AtomicBool, AtomicU32, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, ThreadKey,
    this_thread,
};
use crate::transport::Device;
use crate::{Errno, Request};
use rustix::fd::BorrowedFd;
use std::time::Instant;

#[cfg(dlm_loom)]
pub mod channel;
#[cfg(all(test, dlm_loom))]
mod models;

/// The dispatch role's word once the lock manager went away
/// (`State::dead`): no thread's key, and not free, so nobody takes the
/// role again.
const GONE: ThreadKey = usize::MAX;

/// How dispatched results reach the application. `T` is the state the
/// handle's owner keeps under the handle's state lock (see [`Handle`]).
pub trait Deliver<T> {
    /// Records the result (for example, fills the caller's lksb) and says
    /// whether [`Deliver::call`] has anything to run for it. Runs under
    /// the handle's state lock, with the owner's state: it must not block
    /// or call back into the handle.
    fn record(&self, result: RawResult<'_>, state: &mut T) -> bool;
    /// Runs the result's callback, when [`Deliver::record`] said there is
    /// one. Runs without the state lock, with the dispatch role held by
    /// this thread: it may call back into the handle, including
    /// synchronous calls.
    fn call(&self, result: RawResult<'_>);
}

/// Where a handle's results come from: the lockspace fd ([`Device`]), or,
/// in the loom models, a channel a test thread feeds.
pub trait Results {
    /// What else may end a wait for a result: for a [`Device`], the
    /// wake-up fd an AST thread polls beside the lockspace fd.
    type Wake<'a>: Copy;

    /// Reads one result into `space` (blocking unless `nonblocking`;
    /// `None` when nothing is queued), unchecked: the handle checks it
    /// ([`crate::codec::Filled::decode`]) under its state lock. Called
    /// only by the dispatch role's holder.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away; EPROTO for a result
    /// too long; EINTR.
    fn read<'s>(&self, nonblocking: bool, space: &'s mut ResultSpace) -> ReadRaw<'s>;

    /// Blocks until a result is queued ([`Dispatched::One`]) or `wake`
    /// fires ([`Dispatched::Woken`], which wins when both hold);
    /// [`Dispatched::Empty`] when interrupted.
    ///
    /// # Errors
    /// The poll's errno.
    fn wait_readable(&self, wake: Self::Wake<'_>) -> Result<Dispatched, Errno>;
}

impl Results for Device {
    type Wake<'a> = BorrowedFd<'a>;

    #[inline(always)]
    fn read<'s>(&self, nonblocking: bool, space: &'s mut ResultSpace) -> ReadRaw<'s> {
        Device::read_raw(self, nonblocking, space)
    }

    fn wait_readable(&self, wake: BorrowedFd<'_>) -> Result<Dispatched, Errno> {
        match Device::wait_readable(self, wake) {
            Err(Errno::EINTR) => Ok(Dispatched::Empty),
            Err(e) => Err(e),
            Ok((_, true)) => Ok(Dispatched::Woken),
            Ok((false, false)) => Ok(Dispatched::Empty),
            Ok((true, false)) => Ok(Dispatched::One),
        }
    }
}

#[derive(Debug, Default)]
struct State<T> {
    /// The lock manager went away (dlmd died): every wait ends.
    dead: Option<Errno>,
    /// Threads waiting on the condvar: a notify is a futex syscall, made
    /// only when someone waits.
    waiters: u32,
    /// What the handle's owner keeps under the state lock.
    owner: T,
}

/// The owner's state of a [`Handle`], borrowed under its state lock.
pub struct OwnerGuard<'a, T>(MutexGuard<'a, State<T>>);

impl<T> std::ops::Deref for OwnerGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.owner
    }
}

impl<T> std::ops::DerefMut for OwnerGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0.owner
    }
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

/// An open lockspace: one opener of the lock manager (`S`, where its
/// results come from), and its dispatcher.
#[derive(Debug)]
pub struct Handle<T, S = Device> {
    device: S,
    state: Mutex<State<T>>,
    cond: Condvar,
    /// The dispatch role: the holder's [`this_thread`], 0 when free,
    /// [`GONE`] for good once `State::dead` is set. Taken by a
    /// compare-and-swap (with or without the state lock), given back
    /// only under the state lock, so a waiter that saw it held under
    /// that lock is counted in `waiters` before the release looks at
    /// them.
    role: AtomicUsize,
    /// How many levels the holder holds the role beyond the first
    /// (nested dispatch from inside a callback): 0 whenever the role is
    /// free, so taking it need not store it. Touched only by the holder.
    depth: AtomicU32,
    /// A dispatch thread (an AST thread) delivers this handle's results.
    /// Changed only under the state lock, so a waiter's check, also under
    /// that lock, sees it change.
    threaded: AtomicBool,
}

impl<T: Default, S> Handle<T, S> {
    /// Wraps an opened device.
    pub fn new(device: S) -> Handle<T, S> {
        Handle {
            device,
            state: Mutex::default(),
            cond: Condvar::new(),
            role: AtomicUsize::new(0),
            depth: AtomicU32::new(0),
            threaded: AtomicBool::new(false),
        }
    }
}

impl<T> Handle<T, Device> {
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
}

impl<T, S: Results> Handle<T, S> {
    /// The underlying device.
    pub fn device(&self) -> &S {
        &self.device
    }

    #[inline(always)]
    fn lock_state(&self) -> MutexGuard<'_, State<T>> {
        sync::lock(&self.state)
    }

    /// The owner's state, under the handle's state lock until the guard
    /// drops. Never hold it across a call into the handle.
    pub fn owner(&self) -> OwnerGuard<'_, T> {
        OwnerGuard(self.lock_state())
    }

    /// Runs `f` under the handle's state lock (the lock [`Deliver::record`]
    /// runs under), with the handle's lock ids in flight: for noting a
    /// request sent, or setting up what a waiter waits for.
    pub fn with_state_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock_state().owner)
    }

    /// Says whether a dispatch thread (an AST thread) delivers this
    /// handle's results. While one does, [`Handle::wait`] with
    /// `follow_thread` waits for it instead of reading results itself;
    /// when it stops, such waiters take over. Set it to false *before*
    /// waking the thread to stop: the wake-up that ends the thread's
    /// dispatch, which gives the dispatch role back and wakes waiters,
    /// then also ends their wait for it.
    pub fn set_dispatch_thread(&self, on: bool) {
        let _st = self.lock_state();
        self.threaded.store(on, Ordering::SeqCst);
    }

    /// Whether a dispatch thread delivers this handle's results.
    #[inline(always)]
    pub fn has_dispatch_thread(&self) -> bool {
        self.threaded.load(Ordering::SeqCst)
    }

    /// Takes the role for `me` if it is free, or deepens it if `me` holds
    /// it; false when another thread holds it. Called under the state
    /// lock.
    #[inline(always)]
    fn enter(&self, me: ThreadKey, may_take: bool) -> bool {
        // Only `me` ever stores `me`, so a relaxed load sees it if so.
        let holder = self.role.load(Ordering::Relaxed);
        if holder == me {
            let depth = self.depth.load(Ordering::Relaxed);
            self.depth.store(depth + 1, Ordering::Relaxed);
            true
        } else {
            holder == 0 && may_take && self.take_free(me)
        }
    }

    /// Takes the role for `me` if nobody holds it: one compare-and-swap,
    /// with or without the state lock. Acquire: the holder sees what the
    /// previous holder recorded before giving it back.
    #[inline(always)]
    fn take_free(&self, me: ThreadKey) -> bool {
        if self
            .role
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // `depth` is 0 already: the last holder left it so.
            true
        } else {
            false
        }
    }

    /// Gives one level of the role back. Called by the holder, under the
    /// state lock (followed by [`Handle::notify`]), when `State::dead`
    /// has not changed since it took the role (so is not set: the role
    /// is not taken once it is): no callback ran meanwhile, and no read
    /// failed.
    #[inline(always)]
    fn leave(&self) {
        self.leave_as(0);
    }

    /// [`Handle::leave`] when `State::dead` may have been set since the
    /// role was taken (`st`'s): the last level gives it back as [`GONE`]
    /// then, so nobody takes it again, least of all by the
    /// compare-and-swap of [`Handle::wait_inline_recorded`], which does
    /// not look at `State::dead` (it would read a lock manager that went
    /// away).
    #[inline(always)]
    fn leave_checked(&self, st: &State<T>) {
        self.leave_as(if st.dead.is_some() { GONE } else { 0 });
    }

    #[inline(always)]
    fn leave_as(&self, free: ThreadKey) {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth > 0 {
            self.depth.store(depth - 1, Ordering::Relaxed);
        } else {
            self.role.store(free, Ordering::Release);
        }
    }

    /// Waits on the condvar, counted in `waiters`.
    fn wait_cond<'a>(&self, mut st: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        st.waiters += 1;
        let mut st = sync::wait(&self.cond, st);
        st.waiters -= 1;
        st
    }

    /// Wakes the waiters, if any.
    #[inline(always)]
    fn notify(&self, st: &State<T>) {
        if st.waiters > 0 {
            self.cond.notify_all();
        }
    }

    /// Reads and delivers one result, holding the dispatch role; waits
    /// for one to arrive. With `wake`, the wait also ends when it fires
    /// ([`Dispatched::Woken`]), which is how an AST thread is stopped
    /// without `pthread_cancel`.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away (every waiter of the handle
    /// is woken with it); EPROTO for a malformed result; EINTR.
    #[inline]
    pub fn dispatch_one(
        &self,
        deliver: &dyn Deliver<T>,
        wake: Option<S::Wake<'_>>,
    ) -> Result<Dispatched, Errno> {
        self.dispatch_one_as(deliver, false, wake)
    }

    /// Reads and delivers at most one result without waiting for one
    /// ([`Dispatched::Empty`] when none is queued).
    ///
    /// # Errors
    /// As [`Handle::dispatch_one`].
    #[inline]
    pub fn try_dispatch_one(&self, deliver: &dyn Deliver<T>) -> Result<Dispatched, Errno> {
        self.dispatch_one_as(deliver, true, None)
    }

    /// [`Handle::dispatch_one`] (blocking) or
    /// [`Handle::try_dispatch_one`] (`nonblocking`).
    fn dispatch_one_as(
        &self,
        deliver: &dyn Deliver<T>,
        nonblocking: bool,
        wake: Option<S::Wake<'_>>,
    ) -> Result<Dispatched, Errno> {
        let me = this_thread();
        let mut st = self.lock_state();
        loop {
            // Before `enter`: once the lock manager went away, the role
            // is `GONE`, never free again.
            if let Some(e) = st.dead {
                return Err(e);
            }
            if self.enter(me, true) {
                break;
            }
            st = self.wait_cond(st);
        }
        drop(st);
        let ready = match (wake, nonblocking) {
            (Some(wake), false) => self.device.wait_readable(wake),
            _ => Ok(Dispatched::One),
        };
        let mut space = result_space();
        let outcome = match ready {
            Ok(Dispatched::One) => self.device.read(nonblocking || wake.is_some(), &mut space),
            Ok(other) => {
                let st = self.lock_state();
                self.leave();
                self.notify(&st);
                return Ok(other);
            }
            Err(e) => Err(e),
        };
        let (st, got) = self.deliver(deliver, outcome);
        drop(st);
        got.map(|one| {
            if one {
                Dispatched::One
            } else {
                Dispatched::Empty
            }
        })
    }

    /// Delivers what a read by the role holder returned and gives one
    /// level of the role back. Returns the state lock (held) and whether
    /// a result was delivered. A result is checked and recorded under the
    /// state lock; its callback, if any, runs with the role but without
    /// the lock. A lost lock manager ends every wait.
    #[inline(always)]
    fn deliver<D: Deliver<T> + ?Sized>(
        &self,
        deliver: &D,
        outcome: ReadRaw<'_>,
    ) -> (MutexGuard<'_, State<T>>, Result<bool, Errno>) {
        // Nothing to record: only the role to give back. (Decided before
        // the state lock, so that only the bytes read are kept across
        // it, not which of three outcomes the read had.)
        let filled = match outcome {
            Ok(Some(filled)) => filled,
            Ok(None) => {
                let st = self.lock_state();
                self.leave();
                #[cfg(not(dlm_loom_mutant))]
                self.notify(&st);
                return (st, Ok(false));
            }
            Err(e) => return self.read_failed(self.lock_state(), e),
        };
        let mut st = self.lock_state();
        // Checked only now: across the lock, only the bytes are kept.
        let result = match filled.decode() {
            Ok(result) => result,
            Err(e) => return self.read_failed(st, e),
        };
        if deliver.record(result, &mut st.owner) {
            self.notify(&st);
            drop(st);
            deliver.call(result);
            st = self.lock_state();
            // A dispatch nested in the callback may have lost the lock
            // manager.
            self.leave_checked(&st);
        } else {
            self.leave();
        }
        // `cargo xtask loom` checks that a model catches the loss of this
        // wake-up (waiters for the role would sleep forever).
        #[cfg(not(dlm_loom_mutant))]
        self.notify(&st);
        (st, Ok(true))
    }

    /// [`Handle::deliver`] of a read that failed (or gave bytes that are
    /// not a result): a lost lock manager ends every wait.
    #[cold]
    fn read_failed<'a>(
        &self,
        mut st: MutexGuard<'a, State<T>>,
        e: Errno,
    ) -> (MutexGuard<'a, State<T>>, Result<bool, Errno>) {
        if matches!(e, Errno::ENOTCONN | Errno::EPROTO) {
            st.dead = Some(e);
        }
        self.leave_checked(&st);
        #[cfg(not(dlm_loom_mutant))]
        self.notify(&st);
        (st, Err(e))
    }

    /// Waits until `done` (checked under the state lock, with the owner's
    /// state) returns true: the wait of every synchronous call.
    ///
    /// While a dispatch thread runs ([`Handle::set_dispatch_thread`]),
    /// this thread only waits for it to record results (it never reads
    /// them itself), and takes over dispatching when the thread stops;
    /// otherwise it dispatches results itself whenever nobody else holds
    /// the dispatch role. Either way, a thread that holds the role
    /// already (a synchronous call inside a callback) dispatches further
    /// results itself.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    #[inline(always)]
    pub fn wait<D: Deliver<T> + ?Sized>(
        &self,
        deliver: &D,
        mut done: impl FnMut(&mut T) -> bool,
    ) -> Result<(), Errno> {
        loop {
            let threaded = self.has_dispatch_thread();
            let mut finished = false;
            self.wait_while(
                deliver,
                |owner: &mut T| {
                    finished = done(owner);
                    // A thread started or stopped: wait the other way.
                    finished || self.has_dispatch_thread() != threaded
                },
                !threaded,
                None::<&fn() -> bool>,
                || {},
            )?;
            if finished {
                return Ok(());
            }
        }
    }

    /// [`Handle::wait`] for a handle that never has a dispatch thread
    /// (libdlm_lt): dispatches inline whenever nobody else holds the
    /// role, without checking for a thread.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    #[inline(always)]
    pub fn wait_inline<D: Deliver<T> + ?Sized>(
        &self,
        deliver: &D,
        done: impl FnMut(&mut T) -> bool,
    ) -> Result<(), Errno> {
        self.wait_while(deliver, done, true, None::<&fn() -> bool>, || {})
    }

    /// [`Handle::wait_inline`] without the state lock before the first
    /// read: when the role is free, it is taken by one compare-and-swap,
    /// `reading` runs (with the role held), and the first result is read;
    /// the state lock is taken only to record it. `recorded` must say,
    /// without the state lock, whether `done` is already true because a
    /// result was recorded; it runs after the role was taken, so it sees
    /// what every earlier holder recorded (for the C ABI: the lksb's
    /// status). When the role is held, this is [`Handle::wait_inline`]
    /// (`reading` does not run).
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    #[inline(always)]
    pub fn wait_inline_recorded<D: Deliver<T> + ?Sized>(
        &self,
        deliver: &D,
        recorded: impl Fn() -> bool,
        reading: impl FnOnce(),
        done: impl FnMut(&mut T) -> bool,
    ) -> Result<(), Errno> {
        self.wait_while(deliver, done, true, Some(&recorded), reading)
    }

    /// [`Handle::wait`] one way: dispatching whenever the role is free
    /// (`may_dispatch`), or only waiting for its holder. With `recorded`
    /// ([`Handle::wait_inline_recorded`]), the first read may start
    /// without the state lock.
    #[inline(always)]
    fn wait_while<D: Deliver<T> + ?Sized, Q: Fn() -> bool>(
        &self,
        deliver: &D,
        mut done: impl FnMut(&mut T) -> bool,
        may_dispatch: bool,
        recorded: Option<&Q>,
        reading: impl FnOnce(),
    ) -> Result<(), Errno> {
        // The uncontended path: the role by one compare-and-swap, then
        // the read; the state lock only to record the result. A result
        // of ours that an earlier holder recorded is seen through the
        // role's acquire (`recorded`), so the read cannot wait for a
        // result that was already taken. (`Some(true)`: the role was
        // taken but there is nothing to read.) Once the lock manager
        // went away, the role is `GONE`: the compare-and-swap fails.
        let fast = match recorded {
            Some(recorded) if may_dispatch && self.take_free(this_thread()) => Some(recorded()),
            _ => None,
        };
        let mut st = if fast == Some(false) {
            reading();
            let mut space = result_space();
            let (next, got) = self.deliver(deliver, self.device.read(false, &mut space));
            match got {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            next
        } else {
            // Check and take the role under one lock, so a result
            // recorded by another dispatcher in between cannot be missed.
            let st = self.lock_state();
            if fast.is_some() {
                self.leave();
                #[cfg(not(dlm_loom_mutant))]
                self.notify(&st);
            }
            st
        };
        loop {
            if done(&mut st.owner) {
                return Ok(());
            }
            if let Some(e) = st.dead {
                return Err(e);
            }
            // The thread pointer read again, not kept across the first
            // read (a register fewer, or a store fewer, on the way there).
            if !self.enter(this_thread(), may_dispatch) {
                st = self.wait_cond(st);
                continue;
            }
            drop(st);
            let mut space = result_space();
            let (next, got) = self.deliver(deliver, self.device.read(false, &mut space));
            st = next;
            match got {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits, without dispatching, until `done` (checked under the state
    /// lock) returns true or `deadline` passes; returns whether `done`
    /// came true. For a thread that leaves dispatching to another (an AST
    /// thread), which wakes it each time it records a result.
    ///
    /// # Errors
    /// ENOTCONN when the lock manager went away.
    pub fn wait_recorded_until(
        &self,
        mut done: impl FnMut(&mut T) -> bool,
        deadline: Instant,
    ) -> Result<bool, Errno> {
        let mut st = self.lock_state();
        loop {
            if done(&mut st.owner) {
                return Ok(true);
            }
            if let Some(e) = st.dead {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            st.waiters += 1;
            let mut next = sync::wait_timeout(&self.cond, st, left);
            next.waiters -= 1;
            st = next;
        }
    }

    /// Dispatches every queued result without blocking; returns how many.
    ///
    /// # Errors
    /// As [`Handle::dispatch_one`].
    pub fn drain(&self, deliver: &dyn Deliver<T>) -> Result<usize, Errno> {
        let mut n = 0;
        while self.try_dispatch_one(deliver)? == Dispatched::One {
            n += 1;
        }
        Ok(n)
    }
}
