//! A mutex and a condvar on Linux futexes, without poisoning: the
//! [`super::Mutex`] and [`super::Condvar`] of the libraries (loom's
//! replace them in the models, so the models check the code that uses
//! them, as with std's).
//!
//! The algorithms are std's futex mutex and condvar (library/std's
//! `sys::sync::mutex::futex` and `sys::sync::condvar::futex`), minus the
//! poison flag. std's mutex checks the panic count on every lock and
//! unlock and its `lock` is not inlined across the crate boundary: the
//! handle's state lock, taken on every synchronous operation, costs
//! about 30 instructions more that way (`tests/vm/profile.sh`). The
//! workspace ignores poisoning anyway ([`super::lock`]): a panic
//! elsewhere must not wedge the library.
//!
//! Mutex states: 0 unlocked, 1 locked, 2 locked with (possibly) waiters
//! sleeping on the futex.

// The crate's only `unsafe` outside `sync::this_thread`: the mutex's
// `Sync` and its guard's access to the data, each argued below.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use rustix::thread::futex;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Blocks while `*word == expected` (or until woken, a signal, or
/// `timeout`); returns whether the wait timed out.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: d.subsec_nanos().into(),
    });
    matches!(
        futex::wait(word, futex::Flags::PRIVATE, expected, ts.as_ref()),
        Err(rustix::io::Errno::TIMEDOUT)
    )
}

/// Wakes up to `n` threads blocked on `word`.
fn futex_wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, n);
}

/// A mutual exclusion lock protecting a `T`; never poisoned.
#[derive(Default)]
pub struct Mutex<T: ?Sized> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one thread at a time (the
// guard exists only while `state` is locked), so sharing it between
// threads is sound when `T` may move between threads, as for std's.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU32::new(UNLOCKED),
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, blocking until the lock is free. Uncontended: one
    /// compare-and-swap, inlined.
    #[inline(always)]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        MutexGuard {
            mutex: self,
            _data: PhantomData,
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        // Spin a little first: critical sections here are a few stores.
        let mut state = self.spin();
        if state == UNLOCKED {
            match self
                .state
                .compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed)
            {
                Ok(_) => return,
                Err(s) => state = s,
            }
        }
        loop {
            // Mark it contended (whoever unlocks then wakes a sleeper); if
            // it was unlocked meanwhile, this took it.
            if state != CONTENDED && self.state.swap(CONTENDED, Acquire) == UNLOCKED {
                return;
            }
            futex_wait(&self.state, CONTENDED, None);
            state = self.spin();
        }
    }

    /// Spins while the lock is held without waiters; returns the state.
    fn spin(&self) -> u32 {
        let mut spins = 100;
        loop {
            let state = self.state.load(Relaxed);
            if state != LOCKED || spins == 0 {
                return state;
            }
            core::hint::spin_loop();
            spins -= 1;
        }
    }

    #[inline(always)]
    fn unlock(&self) {
        if self.state.swap(UNLOCKED, Release) == CONTENDED {
            self.wake();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self) {
        futex_wake(&self.state, 1);
    }
}

impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &(self.state.load(Relaxed) != UNLOCKED))
            .finish_non_exhaustive()
    }
}

/// The lock of a [`Mutex`], held until dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// The guard hands out `&T` and `&mut T`: shared between threads only
    /// when `T` is `Sync` (as std's guard), whatever the mutex allows.
    _data: PhantomData<&'a mut T>,
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock,
        // so no other reference to the data is live.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock,
        // and `&mut self` makes this the only reference through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

/// A condition variable for [`Mutex`]: a futex word counting
/// notifications, so a notify between unlocking and sleeping is not lost.
#[derive(Debug, Default)]
pub struct Condvar {
    seq: AtomicU32,
}

impl Condvar {
    /// A new condvar.
    pub const fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
        }
    }

    /// Unlocks `guard`'s mutex, waits for a notification (or a spurious
    /// wake-up), and locks it again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_optional(guard, None).0
    }

    /// [`Condvar::wait`] for at most `dur`; also says whether it timed
    /// out.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        dur: Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        self.wait_optional(guard, Some(dur))
    }

    fn wait_optional<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        dur: Option<Duration>,
    ) -> (MutexGuard<'a, T>, bool) {
        // The count is read before unlocking: a notify after the unlock
        // changes it, and the futex wait then returns at once.
        let seq = self.seq.load(Relaxed);
        let mutex = guard.mutex;
        drop(guard);
        let timed_out = futex_wait(&self.seq, seq, dur);
        (mutex.lock(), timed_out)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Relaxed);
        futex_wake(&self.seq, 1);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Relaxed);
        futex_wake(&self.seq, i32::MAX as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::{Condvar, Mutex};
    use std::sync::Arc;
    use std::time::Duration;

    /// Contended increments from several threads lose none.
    #[test]
    fn mutex_excludes() {
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 80_000);
    }

    /// A waiter sees the state its notifier set; a timed wait with no
    /// notifier times out.
    #[test]
    fn condvar_wakes_and_times_out() {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p = pair.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            *p.0.lock() = true;
            p.1.notify_all();
        });
        let mut ready = pair.0.lock();
        while !*ready {
            ready = pair.1.wait(ready);
        }
        drop(ready);
        t.join().unwrap();
        let (_g, timed_out) = pair
            .1
            .wait_timeout(pair.0.lock(), Duration::from_millis(10));
        assert!(timed_out);
    }
}
