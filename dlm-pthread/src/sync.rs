//! The synchronisation primitives of this crate: std's, or loom's when
//! built with `--cfg dlm_loom` (the loom models). Library code names
//! `crate::sync`, never `std::sync` or `std::thread` directly.

#[cfg(dlm_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(dlm_loom)]
pub(crate) use loom::thread;

#[cfg(not(dlm_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(dlm_loom))]
pub(crate) use std::thread;

/// Locks `m`, ignoring poisoning: a panic elsewhere must not wedge the
/// library (no panic crosses the C ABI, and state stays consistent
/// because every critical section here is a few assignments).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
