//! dlm-cabi: the C ABI's logic, as plain Rust functions that both C
//! libraries (`libdlm.so.3` from `dlm-pthread`, `libdlm_lt.so.3` from
//! `dlm-lt`) call. It is the only crate of dlm-rs that dereferences a
//! pointer a C caller passed; dlm-core, beneath it, sees lksb and
//! callback pointers as opaque `u64` tokens.
//!
//! This crate owns what `libdlm.h` promises and nothing that needs a
//! thread: the process-global state (control connection, detected
//! version, the default lockspace), lockspace handles ([`LsHandle`]), the
//! C [`Deliver`] (filling the caller's `struct dlm_lksb` and calling its
//! AST), and every libdlm function with docs/semantics.md Part B's checks
//! and errnos. No symbol is exported from here: the two cdylib crates
//! generate thin `#[no_mangle]` shims with [`c_exports!`], each applying
//! its flavour's conventions ([`WaitFlavour`]).
//!
//! Speed: a synchronous call (`dlm_ls_lock_wait`, `dlm_ls_unlock_wait`)
//! is as cheap as the C library's only if it stays one function. The
//! functions on its path (here, in `dlm_core::handle`, the kernel device
//! and the codec) are `#[inline(always)]` (or generic), so each export
//! compiles to a single body, across the crate boundaries, that encodes
//! the request in place and takes the handle's state lock once
//! (libdlm_lt, whose `_wait` takes the dispatch role by compare-and-swap
//! and reads before it takes the lock) or twice (libdlm); a call
//! between them would be an indirect branch through the GOT (rustc emits
//! no direct calls to them in a cdylib), which qemu's TCG, where the
//! kernel tests run, resolves by a lookup each time.
//! `tests/vm/profile.sh` counts the instructions per operation against
//! Debian's library; check it after touching the path, as LLVM may stop
//! inlining something else when one more function is forced in.
//!
//! Deliberate differences from the C library (README's table): a
//! blocking callback leaves the lksb alone; an LVB is copied only into a
//! non-NULL `sb_lvbptr`; synchronous calls watch for the completion
//! addressed to the caller's lksb instead of substituting a waiter as
//! `castparam`; a synchronous cancel with nothing to cancel returns EBUSY
//! instead of hanging; `dlm_release_lockspace` reports EBUSY instead of
//! hiding it, and refuses (EBUSY) instead of blocking forever when the
//! release would wait for a handle of this same process that came from
//! `dlm_open_lockspace`; errno is never left at 0.
//!
//! # Safety
//!
//! The pointer rules (libdlm's contract), stated once for every function
//! here; each `unsafe fn` names the ones it relies on:
//!
//! - A `dlm_lshandle_t` ([`LsHandle`]) is either NULL or a value returned
//!   by [`new_lockspace`]/[`open_lockspace`] that has not been passed to
//!   [`close_lockspace`]/[`release_lockspace`] (a *live* handle). Handles
//!   are `Arc::into_raw` pointers, so every call borrows the record and
//!   threads that still use a handle keep its fd open.
//! - A `struct dlm_lksb *` passed to an operation must stay valid, and
//!   must not be freed, until that operation's completion was delivered
//!   (for `_wait` calls: until the call returns); its `sb_lvbptr`, when
//!   not NULL, points to 32 writable bytes.
//! - Callback addresses are C functions taking one `void *`; addresses in
//!   the first page (such as lvmlockd's `(void *)1` placeholders) are
//!   never called.
//! - Name pointers are NUL-terminated strings (lockspace names) or
//!   `namelen` readable bytes (resource names).

#![allow(unsafe_code)]

mod calls;
mod exports;

pub use calls::*;

use core::ffi::{c_char, c_int, c_uint, c_void};
use dlm_core::codec::RawResult;
use dlm_core::handle::{Deliver, Handle};
use dlm_core::sync::lock;
use dlm_core::{Errno, Name, Status};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// `struct dlm_lksb`, the application's lock status block (x86_64: 24
/// bytes).
#[repr(C)]
#[derive(Debug)]
pub struct Lksb {
    /// The outcome, a positive status (EINPROG while pending).
    pub sb_status: c_int,
    /// The lock id.
    pub sb_lkid: u32,
    /// `DLM_SBF_*` flags.
    pub sb_flags: c_char,
    /// The caller's 32-byte LVB buffer, or NULL.
    pub sb_lvbptr: *mut c_char,
}

const _: () = assert!(core::mem::size_of::<Lksb>() == core::mem::size_of::<dlm_sys::dlm_lksb>());

/// A C callback: `void (*)(void *)`.
pub type AstFn = Option<unsafe extern "C" fn(*mut c_void)>;

/// A `dlm_lshandle_t` as C holds it: NULL, or an `Arc<Ls>` handed out
/// by [`Arc::into_raw`]. Every conversion between the two goes through
/// [`LsHandle::as_ls`], [`LsHandle::borrow`], [`LsHandle::share`] and
/// `LsHandle::take` (for close and release). `#[repr(transparent)]`, so
/// exports take and return it where `libdlm.h` has `dlm_lshandle_t`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LsHandle(*mut c_void);

impl LsHandle {
    /// The NULL handle, returned with errno on failure.
    pub const NULL: LsHandle = LsHandle(core::ptr::null_mut());

    /// Gives one count of `ls` to C.
    fn from_arc(ls: Arc<Ls>) -> LsHandle {
        LsHandle(Arc::into_raw(ls).cast_mut().cast())
    }

    /// The record this handle points to (NULL for [`LsHandle::NULL`]);
    /// not dereferenced here. Also the key under which the threads
    /// library keeps a handle's AST thread (`Arc::as_ptr` of the same
    /// record gives the same address).
    #[inline(always)]
    pub fn as_ls(self) -> *const Ls {
        self.0.cast_const().cast()
    }

    /// Whether this is NULL.
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    /// Borrows the record behind the handle, for the length of the call.
    ///
    /// # Errors
    /// ENOTCONN for NULL.
    ///
    /// # Safety
    /// The handle is NULL or live (module doc), and stays live while the
    /// borrow is used: C may not close a handle that another of its calls
    /// is using.
    #[inline(always)]
    pub unsafe fn borrow<'a>(self) -> Result<&'a Ls, Errno> {
        // SAFETY: a live handle is an `Arc::into_raw` pointer whose count
        // C holds, so the `Ls` is alive; it is never mutated in place.
        unsafe { self.as_ls().as_ref() }.ok_or(Errno::ENOTCONN)
    }

    /// A new counted reference to the record, for a thread that outlives
    /// the call.
    ///
    /// # Errors
    /// ENOTCONN for NULL.
    ///
    /// # Safety
    /// The handle is NULL or live.
    pub unsafe fn share(self) -> Result<Arc<Ls>, Errno> {
        if self.is_null() {
            return Err(Errno::ENOTCONN);
        }
        let p = self.as_ls();
        // SAFETY: a live handle came from `Arc::into_raw` and C holds one
        // count, so the count is at least one; the count added here is
        // owned by the returned `Arc`.
        unsafe {
            Arc::increment_strong_count(p);
            Ok(Arc::from_raw(p))
        }
    }

    /// Takes the count C held back (the handle is dead afterwards) and
    /// unregisters the record; `None` for NULL.
    ///
    /// # Safety
    /// The handle is NULL or live, and C gives it up with this call.
    unsafe fn take(self) -> Option<Arc<Ls>> {
        if self.is_null() {
            return None;
        }
        // SAFETY: a live handle came from `Arc::into_raw` with one count
        // that C owned and now gives up (close or release).
        let ls = unsafe { Arc::from_raw(self.as_ls()) };
        unregister(&ls);
        Some(ls)
    }
}

/// libdlm's "operation in progress" marker in `sb_status`.
pub const EINPROG: c_int = Status::IN_PROGRESS.raw();

/// Which library's synchronous-call rules apply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitFlavour {
    /// libdlm_lt: the caller always dispatches the handle inline.
    Lt,
    /// libdlm: an AST thread, when the handle has one, dispatches; the
    /// caller dispatches inline only when there is none (or when it is
    /// that thread).
    Threads,
}

/// The completion routine of synchronous requests: the kernel rejects a
/// NULL one, and the caller learns the outcome from its lksb.
pub extern "C" fn sync_ast(_arg: *mut c_void) {}

/// Sets the calling thread's `errno`. Inlined: libdlm_lt sets it on
/// every synchronous unlock (EUNLOCK), part of the hot path.
#[inline(always)]
pub fn set_errno(e: Errno) {
    // SAFETY: `__errno_location` returns the calling thread's errno
    // slot, valid for the thread's lifetime.
    unsafe { *libc::__errno_location() = e.raw() };
}

/// Runs `f`, turning a panic into `fail` with errno EIO: no panic crosses
/// the C ABI.
pub fn guard<R>(fail: R, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            set_errno(Errno::EIO);
            fail
        }
    }
}

/// One open lockspace handle: the opener, plus what the C library keeps
/// about it.
#[derive(Debug)]
pub struct Ls {
    handle: Handle<InFlight>,
    name: Name,
    /// The handle came from a create (it carries one creation count of
    /// the lockspace), not from `dlm_open_lockspace`.
    created: bool,
    /// The lock id whose completion a libdlm_lt `_wait` is reading with
    /// the dispatch role taken by compare-and-swap, without having noted
    /// it in flight under the state lock (0: none): a synchronous cancel
    /// of that lock from another thread has something to cancel. Set
    /// only by the role's holder, cleared by the same call.
    awaited: AtomicU32,
}

impl Ls {
    fn new(handle: Handle<InFlight>, name: Name, created: bool) -> Ls {
        Ls {
            handle,
            name,
            created,
            awaited: AtomicU32::new(0),
        }
    }

    /// The underlying handle (device and dispatch role).
    pub fn handle(&self) -> &Handle<InFlight> {
        &self.handle
    }

    /// The lockspace's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Says whether an AST thread dispatches this handle. Waiters of
    /// synchronous calls re-check this: when the thread stops, they take
    /// over dispatching. Call with `false` *before* waking the thread, so
    /// the wake-up that ends its dispatch also wakes them.
    pub fn set_threaded(&self, on: bool) {
        self.handle.set_dispatch_thread(on);
    }

    /// Whether an AST thread dispatches this handle.
    pub fn is_threaded(&self) -> bool {
        self.handle.has_dispatch_thread()
    }
}

/// Delivers results the way libdlm does (docs/semantics.md B.2 `dlm_dispatch`), with
/// the fixes of B.6: the lksb is filled only by completions, the LVB
/// only into a non-NULL `sb_lvbptr`.
#[derive(Debug)]
pub struct CDeliver;

/// Whether a callback address can be a function (not NULL, not a
/// placeholder such as `(void *)1` in the first page).
fn callable(addr: u64) -> bool {
    addr >= 4096
}

impl CDeliver {
    /// [`Deliver::record`] without its answer: fills the lksb of a
    /// completion (a blocking callback records nothing).
    #[inline(always)]
    pub(crate) fn fill(r: RawResult<'_>, in_flight: &mut InFlight) {
        if r.is_bast() {
            return;
        }
        let lkid = r.lkid();
        in_flight.remove(lkid);
        let lksb = r.user_lksb() as usize as *mut Lksb;
        if lksb.is_null() {
            return;
        }
        // SAFETY: `user_lksb` is the lksb pointer the C caller passed with
        // this lock's latest request (the lock manager echoes it back
        // unread); libdlm's contract keeps it valid until this, its
        // completion, is delivered (module doc).
        unsafe {
            core::ptr::addr_of_mut!((*lksb).sb_lkid).write_volatile(lkid);
            core::ptr::addr_of_mut!((*lksb).sb_flags).write_volatile(r.flags().bits() as c_char);
            if let Some(lvb) = r.lvb() {
                let dst = core::ptr::addr_of!((*lksb).sb_lvbptr).read_volatile();
                if !dst.is_null() {
                    core::ptr::copy_nonoverlapping(lvb.as_ptr(), dst.cast::<u8>(), lvb.len());
                }
            }
            // The status last: a waiter polling it sees the rest filled.
            core::ptr::addr_of_mut!((*lksb).sb_status).write_volatile(r.status().raw());
        }
    }

    /// [`Deliver::record`]'s answer: whether [`Deliver::call`] has a
    /// routine to run. The synchronous calls' completion routine does
    /// nothing: skipping it lets the dispatcher give the role back at
    /// once. (Worked out after the lksb is filled, where it is needed:
    /// kept across the filling, it went through memory.)
    #[inline(always)]
    pub(crate) fn wants_call(r: RawResult<'_>) -> bool {
        let astaddr = r.astaddr();
        astaddr != sync_ast as extern "C" fn(*mut c_void) as usize as u64 && callable(astaddr)
    }
}

impl Deliver<InFlight> for CDeliver {
    #[inline(always)]
    fn record(&self, r: RawResult<'_>, in_flight: &mut InFlight) -> bool {
        CDeliver::fill(r, in_flight);
        CDeliver::wants_call(r)
    }

    fn call(&self, r: RawResult<'_>) {
        if !callable(r.astaddr()) {
            return;
        }
        let addr = r.astaddr() as usize;
        // SAFETY: an address past the first page is the `astaddr` or
        // `bastaddr` a C caller passed with this lock, echoed unread by
        // the lock manager: a function `void (*)(void *)` by libdlm.h's
        // prototype.
        let f: unsafe extern "C" fn(*mut c_void) = unsafe { core::mem::transmute(addr) };
        // SAFETY: the caller's AST, called with the parameter it gave for
        // it, as libdlm does.
        unsafe { f(r.astparam() as usize as *mut c_void) };
    }
}

/// Every handle this process has open, to find a handle by its fd
/// (`dlm_dispatch`) and to refuse a release that would block on itself.
static OPEN: Mutex<Vec<Weak<Ls>>> = Mutex::new(Vec::new());

fn open_list() -> MutexGuard<'static, Vec<Weak<Ls>>> {
    lock(&OPEN)
}

fn register(ls: &Arc<Ls>) {
    let mut open = open_list();
    open.retain(|w| w.strong_count() > 0);
    open.push(Arc::downgrade(ls));
}

fn unregister(ls: &Arc<Ls>) {
    open_list().retain(|w| w.strong_count() > 0 && !core::ptr::eq(w.as_ptr(), Arc::as_ptr(ls)));
}

/// Finds an open handle by its pollable fd.
fn find_by_fd(fd: c_int) -> Option<Arc<Ls>> {
    use std::os::fd::AsRawFd;
    open_list()
        .iter()
        .filter_map(Weak::upgrade)
        .find(|ls| ls.handle.fd().as_raw_fd() == fd)
}

/// Whether releasing `me` would make the lock manager wait for this
/// very process: no other handle of this process carries a creation
/// count of the lockspace (so this release may be the last one, which
/// waits until every opener has closed), but one that came from
/// `dlm_open_lockspace` is still open. Another created handle means the
/// release only drops a count, as the kernel does, and returns at once.
fn release_would_wait_for_self(name: &Name, me: *const Ls) -> bool {
    let (mut created, mut opened) = (false, false);
    for ls in open_list().iter().filter_map(Weak::upgrade) {
        if ls.name == *name && !core::ptr::eq(Arc::as_ptr(&ls), me) {
            if ls.created {
                created = true;
            } else {
                opened = true;
            }
        }
    }
    opened && !created
}

/// The lock ids of a handle with a request or conversion in flight
/// (noted by whoever sent it, dropped when its completion is read).
///
/// Most programs have a handful in flight, so they live in a short
/// vector (a push and a scan of a few words per operation); past 32 they
/// move to a hash set. Lock ids are small integers the lock manager
/// chose, not attacker-controlled keys, so a multiplicative hash serves
/// there.
#[derive(Debug, Default)]
pub struct InFlight {
    few: Vec<u32>,
    many: HashSet<u32, BuildHasherDefault<IdHasher>>,
}

impl InFlight {
    /// How many ids the vector holds before the hash set takes over.
    const FEW: usize = 32;

    /// Notes that `lkid` has a request in flight.
    #[inline(always)]
    pub fn insert(&mut self, lkid: u32) {
        if self.many.is_empty() && self.few.len() < Self::FEW {
            if !self.few.contains(&lkid) {
                self.few.push(lkid);
            }
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(lkid);
        }
    }

    /// Drops `lkid` (its completion was read).
    #[inline(always)]
    pub fn remove(&mut self, lkid: u32) {
        // Nothing in flight (the synchronous calls' usual case): one test.
        if self.few.is_empty() && self.many.is_empty() {
            return;
        }
        if let Some(i) = self.few.iter().rposition(|&id| id == lkid) {
            self.few.swap_remove(i);
        } else if !self.many.is_empty() {
            self.many.remove(&lkid);
        }
    }

    /// Whether `lkid` has a request in flight.
    pub fn contains(&self, lkid: u32) -> bool {
        self.few.contains(&lkid) || self.many.contains(&lkid)
    }
}

/// A Fibonacci hash of a lock id.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    /// Past `FEW` ids the set moves to its hash set and keeps every id;
    /// removing them all brings it back to the vector.
    #[test]
    fn in_flight_keeps_every_id_across_the_switch() {
        let mut s = InFlight::default();
        let ids: Vec<u32> = (1..=200).map(|i| i * 0x0001_0003).collect();
        for &id in &ids {
            s.insert(id);
            s.insert(id);
        }
        assert!(ids.iter().all(|&id| s.contains(id)));
        for &id in ids.iter().step_by(2) {
            s.remove(id);
        }
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(s.contains(id), i % 2 == 1, "id {id:#x}");
        }
        for &id in ids.iter().skip(1).step_by(2) {
            s.remove(id);
        }
        assert!(s.many.is_empty() && s.few.is_empty());
        s.insert(7);
        assert_eq!(s.few, [7]);
        s.remove(8);
        assert!(s.contains(7));
    }
}
