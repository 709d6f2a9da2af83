//! The synchronisation primitives of the workspace's threaded code:
//! std's, or loom's when built with `--cfg dlm_loom` (the loom models,
//! `cargo xtask loom`). [`crate::handle`] and dlm-pthread's AST threads
//! name these, never `std::sync` or `std::thread` directly, so the models
//! check the code that ships.
//!
//! Outside the models, [`Mutex`] and [`Condvar`] are this module's own
//! ([`futex`]: std's futex algorithms without poisoning, the mutex's
//! uncontended lock and unlock inlined); `Arc`, the atomics and threads
//! are std's. Process-global statics (a loom mutex cannot be
//! `const`-built) and transport locks that no model reaches stay std's;
//! [`lock`] serves every kind.
//!
//! Not part of the Rust API: public only for the workspace's C libraries.

#[cfg(dlm_loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
#[cfg(dlm_loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(dlm_loom)]
pub use loom::thread;

#[cfg(not(dlm_loom))]
pub use futex::{Condvar, Mutex, MutexGuard};
#[cfg(not(dlm_loom))]
pub use std::sync::Arc;
#[cfg(not(dlm_loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
#[cfg(not(dlm_loom))]
pub use std::thread;

#[cfg(not(dlm_loom))]
pub mod futex;

#[cfg(dlm_loom)]
use std::sync::PoisonError;
use std::time::Duration;

/// A mutex that [`lock`] can take: std's, and loom's in the models.
pub trait Lock {
    /// The guard [`lock`] returns.
    type Guard<'a>
    where
        Self: 'a;
    /// Locks, ignoring poisoning.
    fn lock_ignoring_poison(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> Lock for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        T: 'a;
    #[inline(always)]
    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(not(dlm_loom))]
impl<T: ?Sized> Lock for futex::Mutex<T> {
    type Guard<'a>
        = futex::MutexGuard<'a, T>
    where
        T: 'a;
    /// Never poisoned: just locks.
    #[inline(always)]
    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock()
    }
}

#[cfg(dlm_loom)]
impl<T> Lock for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        T: 'a;
    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Locks `m`, ignoring poisoning: a panic elsewhere must not wedge the
/// library (no panic crosses the C ABI, and every critical section of
/// the workspace leaves its data consistent at each step: a few
/// assignments, or a push onto a collection).
#[inline(always)]
pub fn lock<M: Lock + ?Sized>(m: &M) -> M::Guard<'_> {
    m.lock_ignoring_poison()
}

/// Waits on `cond`, ignoring poisoning (as [`lock`]).
#[cfg(dlm_loom)]
pub fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cond` (never poisoned).
#[cfg(not(dlm_loom))]
#[inline(always)]
pub fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard)
}

/// Waits on `cond` for at most `dur`, ignoring poisoning (as [`lock`]).
/// loom's condvar never times out: a model must not depend on it.
#[cfg(dlm_loom)]
pub fn wait_timeout<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    dur: Duration,
) -> MutexGuard<'a, T> {
    match cond.wait_timeout(guard, dur) {
        Ok((g, _)) => g,
        Err(e) => e.into_inner().0,
    }
}

/// Waits on `cond` for at most `dur` (never poisoned).
#[cfg(not(dlm_loom))]
pub fn wait_timeout<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    dur: Duration,
) -> MutexGuard<'a, T> {
    cond.wait_timeout(guard, dur).0
}

/// Who a thread is, as the holder of a handle's dispatch role
/// ([`this_thread`]): never 0, which a handle's role word uses for
/// "free".
pub type ThreadKey = usize;

/// The calling thread: its thread pointer, unique among live threads (a
/// `ThreadId` costs a TLS lookup and a reference count, `pthread_self` a
/// call). A thread never exits while it holds a dispatch role, which
/// every path gives back before returning, so a reused pointer cannot
/// be mistaken for the holder.
#[cfg(all(target_arch = "x86_64", not(dlm_loom)))]
#[allow(unsafe_code)]
#[inline(always)]
pub fn this_thread() -> ThreadKey {
    let tp: usize;
    // SAFETY: the x86-64 TLS ABI keeps the thread pointer itself at
    // %fs:0 (what `pthread_self` returns); reading it has no side effect.
    unsafe {
        core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    tp
}

/// The calling thread, as the holder of a dispatch role.
#[cfg(all(not(target_arch = "x86_64"), not(dlm_loom)))]
#[allow(unsafe_code)]
#[inline(always)]
pub fn this_thread() -> ThreadKey {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// The calling thread in a loom model: the thread pointer is the same
/// for every thread of a model (loom runs them as coroutines on one OS
/// thread), so each model thread draws a number of its own (from 1, never
/// reused within the process) the first time it asks.
#[cfg(dlm_loom)]
pub fn this_thread() -> ThreadKey {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    loom::thread_local! {
        static KEY: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    KEY.with(|k| *k)
}
