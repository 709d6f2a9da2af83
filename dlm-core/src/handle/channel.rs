//! A [`Results`] source for the loom models (`--cfg dlm_loom` only): a
//! queue that a model's threads feed, in place of the lockspace fd, and
//! a stop flag in place of an AST thread's wake-up fd.
//!
//! It keeps the fd's semantics that [`Handle`](super::Handle) relies on:
//! a blocking read waits for a result; a non-blocking one returns `None`
//! when nothing is queued; once the lock manager went away
//! ([`Channel::hang_up`]) reads fail with ENOTCONN; the wake-up stays in
//! effect once given and wins over a queued result.

use super::{Deliver, Dispatched, Handle, Results};
use crate::codec::{LockResult, RESULT_LVB_LEN, RawResult, ReadRaw, ResultSpace, raw_result_in};
use crate::sync::{Arc, AtomicU32, Condvar, Mutex, Ordering, ThreadKey, lock, this_thread, wait};
use crate::{Errno, SbFlags, Status};
use std::collections::VecDeque;

#[derive(Debug, Default)]
struct Queue {
    results: VecDeque<LockResult>,
    woken: bool,
    gone: bool,
    /// Reads that failed because the lock manager went away.
    failed: usize,
}

/// Results fed by the model, read by the handle's dispatcher.
#[derive(Debug, Default)]
pub struct Channel {
    queue: Mutex<Queue>,
    cond: Condvar,
}

impl Channel {
    /// Queues one result (what the lock manager writes to the fd).
    pub fn send(&self, result: LockResult) {
        lock(&self.queue).results.push_back(result);
        self.cond.notify_all();
    }

    /// Fires the wake-up (what an AST thread's eventfd write does).
    pub fn wake(&self) {
        lock(&self.queue).woken = true;
        self.cond.notify_all();
    }

    /// The lock manager goes away: reads fail with ENOTCONN once the
    /// queued results are read.
    pub fn hang_up(&self) {
        lock(&self.queue).gone = true;
        self.cond.notify_all();
    }

    /// How many reads failed because the lock manager went away: a wait
    /// that starts afterwards must see it without reading (on the kernel,
    /// after an EPROTO, such a read would block).
    pub fn failed_reads(&self) -> usize {
        lock(&self.queue).failed
    }

    /// How many results are queued, unread.
    pub fn unread(&self) -> usize {
        lock(&self.queue).results.len()
    }
}

impl Results for Channel {
    /// The channel's own stop flag ([`Channel::wake`]).
    type Wake<'a> = ();

    fn read<'s>(&self, nonblocking: bool, space: &'s mut ResultSpace) -> ReadRaw<'s> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(r) = q.results.pop_front() {
                // The bytes the fd would give.
                return raw_result_in(space, &r.encode(RESULT_LVB_LEN)?).map(Some);
            }
            if q.gone {
                q.failed += 1;
                return Err(Errno::ENOTCONN);
            }
            if nonblocking {
                return Ok(None);
            }
            q = wait(&self.cond, q);
        }
    }

    fn wait_readable(&self, (): ()) -> Result<Dispatched, Errno> {
        let mut q = lock(&self.queue);
        loop {
            if q.woken {
                return Ok(Dispatched::Woken);
            }
            if !q.results.is_empty() || q.gone {
                return Ok(Dispatched::One);
            }
            q = wait(&self.cond, q);
        }
    }
}

/// A completion of lock `lkid`, granted; `callback` says whether it
/// names a callback to run (0 stands for the synchronous calls' routine,
/// which the C ABI skips).
pub fn completion(lkid: u32, callback: bool) -> LockResult {
    LockResult {
        astaddr: u64::from(callback),
        astparam: 0,
        user_lksb: u64::from(lkid),
        status: Status::GRANTED,
        lkid,
        flags: SbFlags::empty(),
        bast_mode: None,
        lvb: None,
    }
}

/// Threads inside a callback of a [`ModelLs`], innermost last, and the
/// callbacks run so far.
#[derive(Debug, Default)]
struct Calls {
    active: Vec<ThreadKey>,
    ran: Vec<u32>,
}

/// A handle as a model uses it: the real [`Handle`] over a [`Channel`],
/// with owner state recording each result's lock id, and callbacks that
/// check they never run on two threads at once.
#[derive(Debug)]
pub struct ModelLs {
    /// The handle under test.
    pub handle: Handle<Vec<u32>, Channel>,
    /// In the callback of lock `.0`, wait synchronously for lock `.1`
    /// (a callback that re-enters the handle).
    nested: Option<(u32, u32)>,
    calls: Mutex<Calls>,
    /// One bit per lock id (1 to 32) recorded, as the C ABI's lksb
    /// status: written by the recording dispatcher, read without the
    /// state lock by [`ModelLs::wait_inline_recorded_for`]. Relaxed: the
    /// dispatch role's release and acquire must order it.
    seen: AtomicU32,
}

impl ModelLs {
    /// A handle; see [`ModelLs::nested`] for `nested`.
    pub fn new(nested: Option<(u32, u32)>) -> Arc<ModelLs> {
        Arc::new(ModelLs {
            handle: Handle::new(Channel::default()),
            nested,
            calls: Mutex::default(),
            seen: AtomicU32::new(0),
        })
    }

    /// Queues lock `lkid`'s completion (with a callback to run, or none).
    pub fn send(&self, lkid: u32, callback: bool) {
        self.handle.device().send(completion(lkid, callback));
    }

    /// A synchronous call's wait for lock `lkid`'s completion, as
    /// libdlm's `_wait` and the Rust API's blocking calls wait
    /// ([`Handle::wait`]).
    ///
    /// # Errors
    /// As [`Handle::wait`].
    pub fn wait_for(&self, lkid: u32) -> Result<(), Errno> {
        self.handle
            .wait(self, |got: &mut Vec<u32>| got.contains(&lkid))
    }

    /// The same, as libdlm_lt's `_wait` waits ([`Handle::wait_inline`]).
    ///
    /// # Errors
    /// As [`Handle::wait`].
    pub fn wait_inline_for(&self, lkid: u32) -> Result<(), Errno> {
        self.handle
            .wait_inline(self, |got: &mut Vec<u32>| got.contains(&lkid))
    }

    /// The same, as libdlm_lt's `dlm_ls_unlock_wait` waits
    /// ([`Handle::wait_inline_recorded`]): the role by a compare-and-swap
    /// when it is free, and the first read without the state lock.
    ///
    /// # Errors
    /// As [`Handle::wait`].
    pub fn wait_inline_recorded_for(&self, lkid: u32) -> Result<(), Errno> {
        let bit = 1u32 << (lkid % 32);
        self.handle.wait_inline_recorded(
            self,
            || self.seen.load(Ordering::Relaxed) & bit != 0,
            || {},
            |got: &mut Vec<u32>| got.contains(&lkid),
        )
    }

    /// The lock ids recorded, in order.
    pub fn delivered(&self) -> Vec<u32> {
        self.handle.owner().clone()
    }

    /// The lock ids whose callbacks ran to their end, in order.
    pub fn callbacks(&self) -> Vec<u32> {
        lock(&self.calls).ran.clone()
    }

    /// Whether a callback is running.
    pub fn in_callback(&self) -> bool {
        !lock(&self.calls).active.is_empty()
    }
}

impl Deliver<Vec<u32>> for ModelLs {
    fn record(&self, result: RawResult<'_>, got: &mut Vec<u32>) -> bool {
        got.push(result.lkid());
        let seen = self.seen.load(Ordering::Relaxed);
        self.seen
            .store(seen | 1 << (result.lkid() % 32), Ordering::Relaxed);
        result.astaddr() != 0
    }

    fn call(&self, result: RawResult<'_>) {
        let me = this_thread();
        {
            let mut calls = lock(&self.calls);
            assert!(
                calls.active.iter().all(|&t| t == me),
                "callbacks of one handle ran on two threads at once"
            );
            calls.active.push(me);
        }
        if let Some((of, then)) = self.nested {
            if result.lkid() == of {
                let nested = self.wait_for(then);
                assert!(
                    nested == Ok(()) || nested == Err(Errno::ENOTCONN),
                    "the nested wait: {nested:?}"
                );
            }
        }
        let mut calls = lock(&self.calls);
        calls.active.pop();
        calls.ran.push(result.lkid());
    }
}
