//! The libdlm functions themselves (docs/semantics.md B.2), flavour-neutral:
//! each returns a `Result`, and the shims of the two libraries turn it
//! into their return value and errno.
//!
//! Lock and unlock calls return the outcome as a [`Status`]:
//! asynchronous calls return [`Status::GRANTED`] once the request was
//! accepted; synchronous ones the completion's status (see
//! [`wait_ret`]). Pointer rules: the parent module's `# Safety`.

use super::*;
use dlm_core::codec::{LVB_LEN, LockParams, Lvb, Request, Version};
use dlm_core::transport::{Control, Device};
use dlm_core::{LockFlags, LsFlags, NAME_MAX};
use dlm_sys::{DLM_USER_LOCK, DLM_USER_UNLOCK};
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

static CONTROL: OnceLock<Control> = OnceLock::new();
static DEFAULT: Mutex<Option<Arc<Ls>>> = Mutex::new(None);

/// The process's control connection, opened on first use (which also
/// detects the version). A failed attempt is retried by the next call.
///
/// # Errors
/// ENOENT when no lock manager is reachable, ECONNREFUSED for a stale
/// dlmd socket, and the transport's other errors.
pub fn control() -> Result<&'static Control, Errno> {
    if let Some(c) = CONTROL.get() {
        return Ok(c);
    }
    let c = Control::connect()?;
    Ok(CONTROL.get_or_init(|| c))
}

/// `dlm_kernel_version`: the version the lock manager reports.
///
/// # Errors
/// As [`control`].
pub fn kernel_version() -> Result<Version, Errno> {
    control().map(Control::version)
}

/// `dlm_library_version`: the interface version this library speaks.
pub fn library_version() -> Version {
    Version::DEVICE
}

/// Stores a version's three numbers through the C caller's pointers.
///
/// # Safety
/// Each pointer is NULL or writable.
pub unsafe fn put_version(v: Version, maj: *mut u32, min: *mut u32, patch: *mut u32) {
    for (p, value) in [(maj, v.major), (min, v.minor), (patch, v.patch)] {
        // SAFETY: `p` is one of the three pointers this function's
        // contract says are NULL or writable; `as_mut` checks NULL.
        if let Some(p) = unsafe { p.as_mut() } {
            *p = value;
        }
    }
}

/// Reads a C lockspace name.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
unsafe fn c_str<'a>(name: *const c_char) -> Result<&'a [u8], Errno> {
    if name.is_null() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: checked non-NULL above; NUL-terminated by this function's
    // contract (libdlm.h: lockspace and resource names are C strings).
    Ok(unsafe { CStr::from_ptr(name) }.to_bytes())
}

/// A new registered record, its count handed to C.
fn into_handle(dev: Device, name: Name, created: bool) -> LsHandle {
    let ls = Arc::new(Ls::new(Handle::new(dev), name, created));
    register(&ls);
    LsHandle::from_arc(ls)
}

/// `dlm_new_lockspace` (and `dlm_create_lockspace` with flags 0).
///
/// # Errors
/// EINVAL (NULL, empty or over-long name), EEXIST (NEWEXCL), EACCES,
/// ENOENT/ECONNREFUSED (no lock manager).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
pub unsafe fn new_lockspace(name: *const c_char, mode: u32, flags: u32) -> Result<LsHandle, Errno> {
    // SAFETY: `name` is NULL or a C string, as `c_str` requires (this
    // function's contract).
    let name = Name::lockspace(unsafe { c_str(name) }?)?;
    let dev = control()?.create_lockspace(&name, mode, LsFlags::from_bits_retain(flags))?;
    Ok(into_handle(dev, name, true))
}

/// `dlm_open_lockspace`.
///
/// # Errors
/// ENOENT (no such lockspace, or no lock manager), EACCES, ECONNREFUSED.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
pub unsafe fn open_lockspace(name: *const c_char) -> Result<LsHandle, Errno> {
    // SAFETY: `name` is NULL or a C string, as `c_str` requires (this
    // function's contract).
    let bytes = unsafe { c_str(name) }?;
    // A name no lockspace can have is simply not found, as in C.
    let name = Name::lockspace(bytes).map_err(|_| Errno::ENOENT)?;
    let dev = control()?.open_lockspace(&name)?;
    Ok(into_handle(dev, name, false))
}

/// `dlm_close_lockspace`: closes the handle (its locks are released or
/// orphaned once no thread uses it any more). The threads library stops
/// the handle's AST thread first.
///
/// # Errors
/// ENOTCONN for NULL.
///
/// # Safety
/// `ls` is NULL or a live handle, which this call consumes.
pub unsafe fn close_lockspace(ls: LsHandle) -> Result<(), Errno> {
    // SAFETY: `ls` is NULL or live and C gives it up with this call
    // (this function's contract), which is what `take` requires.
    drop(unsafe { ls.take() }.ok_or(Errno::ENOTCONN)?);
    Ok(())
}

/// `dlm_release_lockspace`: closes the handle, then drops one creation
/// count of its lockspace (removing it when it was the last).
///
/// A lockspace created twice by this process is released twice, each
/// release dropping one count, as in C. Unlike C, the lock manager's
/// answer is returned, and a release that would wait for a handle of
/// this process from `dlm_open_lockspace` (no other handle of the
/// process carries a creation count) fails with EBUSY at once instead of
/// blocking forever. The handle is closed either way.
///
/// # Errors
/// ENOTCONN for NULL; EBUSY (locks or other openers remain); EPERM or
/// EACCES; ENOENT.
///
/// # Safety
/// `ls` is NULL or a live handle, which this call consumes.
pub unsafe fn release_lockspace(
    _name: *const c_char,
    ls: LsHandle,
    force: c_int,
) -> Result<(), Errno> {
    // SAFETY: `ls` is NULL or live and C gives it up with this call
    // (this function's contract), which is what `take` requires.
    let ls = unsafe { ls.take() }.ok_or(Errno::ENOTCONN)?;
    let minor = ls.handle.device().minor();
    let busy = release_would_wait_for_self(&ls.name, Arc::as_ptr(&ls));
    drop(ls);
    if busy {
        return Err(Errno::EBUSY);
    }
    control()?.remove_lockspace(minor, force != 0)
}

/// `dlm_ls_get_fd`: the pollable fd of a handle.
pub fn ls_get_fd(ls: &Ls) -> c_int {
    ls.handle.fd().as_raw_fd()
}

/// The default lockspace ("default"), opened (else created 0600) on
/// first need: for `dlm_lock`, `dlm_lock_wait`, `dlm_get_fd` and
/// `dlm_pthread_init`.
///
/// # Errors
/// The open/create errors.
pub fn open_default_ls() -> Result<Arc<Ls>, Errno> {
    let mut slot = lock(&DEFAULT);
    if let Some(ls) = &*slot {
        return Ok(ls.clone());
    }
    let name = Name::lockspace(b"default")?;
    let ctl = control()?;
    let (dev, created) = match ctl.open_lockspace(&name) {
        Ok(dev) => (dev, false),
        Err(_) => (ctl.create_lockspace(&name, 0o600, LsFlags::empty())?, true),
    };
    let ls = Arc::new(Ls::new(Handle::new(dev), name, created));
    register(&ls);
    *slot = Some(ls.clone());
    Ok(ls)
}

/// Forgets the default lockspace (`dlm_pthread_cleanup`); the caller
/// stops its AST thread and drops it, which closes it.
pub fn take_default() -> Option<Arc<Ls>> {
    let ls = lock(&DEFAULT).take();
    if let Some(ls) = &ls {
        unregister(ls);
    }
    ls
}

/// The default lockspace if it is open, for the calls that never open
/// it (`dlm_unlock`, `dlm_unlock_wait`, `unlock_resource`).
///
/// # Errors
/// ENOTCONN until it was opened.
pub fn default_ls_if_open() -> Result<Arc<Ls>, Errno> {
    lock(&DEFAULT).clone().ok_or(Errno::ENOTCONN)
}

/// `dlm_get_fd`: the default lockspace's fd, opening it first.
///
/// # Errors
/// As [`open_default_ls`].
pub fn get_fd() -> Result<c_int, Errno> {
    open_default_ls().map(|ls| ls_get_fd(&ls))
}

/// `dlm_dispatch`: delivers every queued result of the handle whose fd
/// this is, without blocking. A handle with an AST thread is left to it.
///
/// # Errors
/// EBADF when no open handle has this fd; ENOTCONN when the lock manager
/// went away.
pub fn dispatch(fd: c_int) -> Result<(), Errno> {
    let ls = find_by_fd(fd).ok_or(Errno::from_raw(libc::EBADF))?;
    if ls.is_threaded() {
        return Ok(());
    }
    ls.handle.drain(&CDeliver).map(drop)
}

/// The arguments of `dlm_ls_lock` and its relatives.
#[derive(Clone, Copy, Debug)]
pub struct LockArgs {
    /// Requested mode.
    pub mode: u32,
    /// The caller's status block.
    pub lksb: *mut Lksb,
    /// `LKF_*` flags, LKF_WAIT included.
    pub flags: u32,
    /// The resource name (`namelen` bytes).
    pub name: *const c_void,
    /// Length of the name.
    pub namelen: u32,
    /// Parent lock id (ignored by every kernel).
    pub parent: u32,
    /// Completion routine.
    pub astaddr: AstFn,
    /// Parameter of both routines.
    pub astarg: *mut c_void,
    /// Blocking routine.
    pub bastaddr: AstFn,
    /// Transaction id (`dlm_ls_lockx`).
    pub xid: u64,
    /// Timeout in centiseconds (`dlm_ls_lockx`; ignored since 6.4).
    pub timeout: u64,
}

// The constructors take the C functions' parameters in their order.
#[allow(clippy::too_many_arguments)]
impl LockArgs {
    /// The arguments of `dlm_ls_lock` and `dlm_lock`.
    #[inline(always)]
    pub fn ls_lock(
        mode: u32,
        lksb: *mut Lksb,
        flags: u32,
        name: *const c_void,
        namelen: c_uint,
        parent: u32,
        astaddr: AstFn,
        astarg: *mut c_void,
        bastaddr: AstFn,
    ) -> Self {
        LockArgs {
            mode,
            lksb,
            flags,
            name,
            namelen,
            parent,
            astaddr,
            astarg,
            bastaddr,
            xid: 0,
            timeout: 0,
        }
    }

    /// The arguments of `dlm_ls_lockx`: those of `dlm_ls_lock` plus the
    /// transaction id and timeout (already read from their pointers).
    pub fn ls_lockx(
        mode: u32,
        lksb: *mut Lksb,
        flags: u32,
        name: *const c_void,
        namelen: c_uint,
        parent: u32,
        astaddr: AstFn,
        astarg: *mut c_void,
        bastaddr: AstFn,
        xid: u64,
        timeout: u64,
    ) -> Self {
        LockArgs {
            xid,
            timeout,
            ..Self::ls_lock(
                mode, lksb, flags, name, namelen, parent, astaddr, astarg, bastaddr,
            )
        }
    }

    /// The arguments of `dlm_ls_lock_wait` and `dlm_lock_wait`: no
    /// completion routine ([`sync_ast`] is used), and `bastarg` is the
    /// blocking routine's parameter.
    #[inline(always)]
    pub fn ls_lock_wait(
        mode: u32,
        lksb: *mut Lksb,
        flags: u32,
        name: *const c_void,
        namelen: c_uint,
        parent: u32,
        bastarg: *mut c_void,
        bastaddr: AstFn,
    ) -> Self {
        Self::ls_lock(
            mode, lksb, flags, name, namelen, parent, None, bastarg, bastaddr,
        )
    }

    /// The arguments of `lock_resource`'s synchronous request: no
    /// parent, LVB or blocking routine.
    fn lock_resource(mode: u32, lksb: *mut Lksb, flags: u32, name: &[u8]) -> Self {
        Self::ls_lock_wait(
            mode,
            lksb,
            flags,
            name.as_ptr().cast(),
            name.len() as c_uint,
            0,
            core::ptr::null_mut(),
            None,
        )
    }
}

#[inline(always)]
fn fn_addr(f: AstFn) -> u64 {
    f.map_or(0, |f| f as usize as u64)
}

/// Reads `sb_status`.
///
/// # Safety
/// `lksb` is valid.
unsafe fn status_of(lksb: *mut Lksb) -> c_int {
    // SAFETY: `lksb` is valid (this function's contract); volatile
    // another thread, under the handle's state lock) writes it.
    unsafe { core::ptr::addr_of!((*lksb).sb_status).read_volatile() }
}

/// Sets `sb_status`.
///
/// # Safety
/// `lksb` is valid.
unsafe fn set_status(lksb: *mut Lksb, status: c_int) {
    // SAFETY: `lksb` is valid (this function's contract); volatile
    // because a waiter polls it.
    unsafe { core::ptr::addr_of_mut!((*lksb).sb_status).write_volatile(status) }
}

/// The caller's LVB, to send when VALBLK asks for it and there is one
/// (the request then carries zeros).
///
/// # Safety
/// `lksb` is valid; its `sb_lvbptr` is NULL or 32 readable bytes, which
/// stay valid for `'a`.
#[inline(always)]
unsafe fn lvb_of<'a>(lksb: *mut Lksb, flags: LockFlags) -> Option<&'a Lvb> {
    if !flags.contains(LockFlags::VALBLK) {
        return None;
    }
    // SAFETY: `lksb` is valid (this function's contract).
    let src = unsafe { (*lksb).sb_lvbptr };
    // SAFETY: a non-NULL `sb_lvbptr` points to 32 readable bytes, valid
    // for `'a` (this function's contract, libdlm's rule for the LVB
    // buffer); a byte array needs no alignment.
    unsafe { src.cast::<Lvb>().as_ref() }
}

/// Sets EINPROG in the lksb, then writes a LOCK or UNLOCK request with
/// `p`, `name` and the caller's LVB (when VALBLK asks for it), encoded
/// straight from the caller's arguments (the hot path of every call: no
/// intermediate [`Request`], and the LVB copied once, into the request).
///
/// # Safety
/// `lksb` is valid; its `sb_lvbptr` is NULL or 32 readable bytes.
#[inline(always)]
unsafe fn write_params(
    ls: &Ls,
    p: &LockParams,
    cmd: u32,
    name: &[u8],
    lksb: *mut Lksb,
    sync: bool,
) -> Result<u32, Errno> {
    // SAFETY: `lksb` is valid, its `sb_lvbptr` NULL or 32 readable bytes
    // until this returns (this function's contract).
    let lvb = unsafe { lvb_of(lksb, p.flags) };
    // SAFETY: `lksb` is valid (this function's contract).
    unsafe { set_status(lksb, EINPROG) };
    // With `sync`, the caller waits for the completion: on dlmd it may
    // ride in the reply (PROTOCOL.md "One answer per synchronous
    // operation").
    ls.handle.device().write_params(p, cmd, name, lvb, sync)
}

/// `dlm_ls_lock`'s local checks (B.2, in the C library's order, then the
/// mode), then the LOCK request: EINPROG into the lksb first, the new
/// lock id into `sb_lkid` after. Returns the lock id whose completion is
/// awaited, to be noted in flight ([`note_in_flight`]); `None` for an
/// orphan adoption, which has no completion.
///
/// # Safety
/// The pointers of `a` follow the module's rules.
#[inline(always)]
unsafe fn send_lock(
    ls: &Ls,
    a: &LockArgs,
    castaddr: u64,
    sync: bool,
) -> Result<Option<u32>, Errno> {
    let lksb = a.lksb;
    if lksb.is_null() {
        return Err(Errno::EINVAL);
    }
    let flags = LockFlags::from_bits_retain(a.flags);
    let convert = flags.contains(LockFlags::CONVERT);
    // SAFETY: `lksb` was checked non-NULL above; valid by the
    // module's rules (this function's contract).
    let (lvbptr, lkid) = unsafe { ((*lksb).sb_lvbptr, (*lksb).sb_lkid) };
    if flags.contains(LockFlags::VALBLK) && lvbptr.is_null() {
        return Err(Errno::EINVAL);
    }
    if !convert && a.namelen as usize > NAME_MAX {
        return Err(Errno::EINVAL);
    }
    if a.mode > 5 {
        // SAFETY: `lksb` was checked non-NULL above; valid by the
        // module's rules (this function's contract).
        return Err(unsafe { refuse_mode(lksb) });
    }
    let name: &[u8] = if convert || a.namelen == 0 {
        &[]
    } else if a.name.is_null() {
        return Err(Errno::EINVAL);
    } else {
        // SAFETY: `namelen` (at most 64) readable bytes at `name`.
        unsafe { core::slice::from_raw_parts(a.name.cast::<u8>(), a.namelen as usize) }
    };
    let p = LockParams {
        mode: a.mode as u8,
        flags: flags - LockFlags::WAIT,
        lkid,
        parent: a.parent,
        xid: a.xid,
        timeout: a.timeout,
        castparam: a.astarg as usize as u64,
        castaddr,
        bastparam: a.astarg as usize as u64,
        bastaddr: fn_addr(a.bastaddr),
        lksb: lksb as usize as u64,
        // Sent from the lksb's `sb_lvbptr` by `write_params`.
        lvb: [0; LVB_LEN],
        name: Name::EMPTY,
    };
    // SAFETY: `lksb` was checked non-NULL above and is valid, its
    // `sb_lvbptr` NULL or 32 readable bytes, by the module's rules (this
    // function's contract).
    let id = unsafe { write_params(ls, &p, DLM_USER_LOCK, name, lksb, sync) }?;
    if id > 0 {
        // SAFETY: `lksb` was checked non-NULL above and is valid by the
        // module's rules (this function's contract).
        unsafe { core::ptr::addr_of_mut!((*lksb).sb_lkid).write_volatile(id) };
    }
    let adoption = flags.contains(LockFlags::ORPHAN) && !convert;
    Ok((!adoption).then_some(if id > 0 { id } else { lkid }))
}

/// A mode above EX: EINVAL, after EINPROG in the lksb as the C library
/// leaves it (it sets EINPROG, then the kernel refuses the mode). Out of
/// line, so the hot path's code stays as it was.
///
/// # Safety
/// `lksb` is valid.
#[cold]
#[inline(never)]
unsafe fn refuse_mode(lksb: *mut Lksb) -> Errno {
    // SAFETY: `lksb` is valid (this function's contract).
    unsafe { set_status(lksb, EINPROG) };
    Errno::EINVAL
}

/// Notes `lkid` in flight unless its completion was already recorded.
/// Runs under the handle's state lock, so a completion recorded meanwhile
/// (its status is no longer EINPROG) is not mistaken for pending.
///
/// # Safety
/// `lksb` is the request's valid lksb.
unsafe fn note_in_flight(in_flight: &mut InFlight, lksb: *mut Lksb, lkid: u32) {
    // SAFETY: `lksb` is valid (this function's contract).
    if unsafe { status_of(lksb) } == EINPROG {
        in_flight.insert(lkid);
    }
}

/// What a synchronous call's completion completes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Awaited {
    /// A request or conversion of this lock: noted in flight by the
    /// wait's first check (under the state lock it takes anyway).
    Request(u32),
    /// An unlock.
    Unlock,
    /// A cancel of this lock's request or conversion, which the kernel
    /// answers with no completion at all when nothing is in flight.
    Cancel(u32),
}

/// Waits until the completion addressed to `lksb` was recorded, and
/// returns its status (docs/semantics.md B.3, the "Rust recommendation").
///
/// For a [`Awaited::Cancel`], the wait also ends when the lock has no
/// request or conversion of this handle in flight: a cancel with nothing
/// to cancel. `sb_status` is then set to EBUSY.
///
/// # Safety
/// `lksb` is valid until this returns.
#[inline(always)]
unsafe fn wait_for(
    ls: &Ls,
    flavour: WaitFlavour,
    lksb: *mut Lksb,
    awaited: Awaited,
) -> Result<Status, Errno> {
    let mut to_note = match awaited {
        Awaited::Request(id) => Some(id),
        _ => None,
    };
    let mut nothing_to_cancel = false;
    let done = |in_flight: &mut InFlight| {
        if let Some(id) = to_note.take() {
            // SAFETY: `lksb` is valid until `wait_for` returns, and this
            // closure runs only inside it.
            unsafe { note_in_flight(in_flight, lksb, id) };
        }
        // SAFETY: `lksb` is valid until `wait_for` returns, and this
        // closure runs only inside it.
        if unsafe { status_of(lksb) } != EINPROG {
            return true;
        }
        if let Awaited::Cancel(id) = awaited {
            if !in_flight.contains(id) && ls.awaited.load(Ordering::Relaxed) != id {
                nothing_to_cancel = true;
                return true;
            }
        }
        false
    };
    match flavour {
        // With an AST thread, wait for it to record the completion; when
        // it stops, or without one, dispatch inline.
        WaitFlavour::Threads => ls.handle.wait(&CDeliver, done)?,
        WaitFlavour::Lt => ls.handle.wait_inline(&CDeliver, done)?,
    }
    // SAFETY: `lksb` is valid until this returns (this function's
    // contract).
    let status = unsafe { status_of(lksb) };
    if status == EINPROG && nothing_to_cancel {
        // SAFETY: `lksb` is valid until this returns (this function's
        // contract).
        unsafe { set_status(lksb, Errno::EBUSY.raw()) };
        return Ok(Status::from_raw(Errno::EBUSY.raw()));
    }
    Ok(Status::from_raw(status))
}

/// libdlm_lt's wait for the completion of request `lkid` (no AST thread):
/// when the dispatch role is free, it is taken by one compare-and-swap
/// and the completion read before the state lock is taken, once, to
/// record it. The request is then not noted in flight before the read;
/// `Ls::awaited` says instead that it is, for a synchronous cancel from
/// another thread. When the role is held, or the first result read is
/// not this one, the request is noted as [`wait_for`] notes it.
///
/// # Safety
/// `lksb` is valid until this returns.
#[inline(always)]
unsafe fn wait_granted_inline(ls: &Ls, lksb: *mut Lksb, lkid: u32) -> Result<Status, Errno> {
    let completed = || {
        // SAFETY: `lksb` is valid until `wait_granted_inline` returns,
        // and this closure runs only inside it.
        let status = unsafe { status_of(lksb) };
        status != EINPROG
    };
    let mut to_note = Some(lkid);
    let waited = ls.handle.wait_inline_recorded(
        &Awaiting { ls, lksb, lkid },
        completed,
        // Only the role's holder writes `awaited`: a plain store.
        || ls.awaited.store(lkid, Ordering::Relaxed),
        |in_flight: &mut InFlight| {
            if completed() {
                return true;
            }
            if let Some(id) = to_note.take() {
                // The role was held by another: noted as `wait_for` notes.
                // SAFETY: as `completed`.
                unsafe { note_in_flight(in_flight, lksb, id) };
            }
            false
        },
    );
    if waited.is_err() {
        // The read failed before anything was recorded (the lock manager
        // went away): nothing is in flight any more. Only if this call
        // set it.
        let _ = ls
            .awaited
            .compare_exchange(lkid, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
    waited?;
    // SAFETY: `lksb` is valid until this returns (this function's
    // contract).
    Ok(Status::from_raw(unsafe { status_of(lksb) }))
}

/// [`CDeliver`] for the reads of [`wait_granted_inline`]: the first
/// result it records (under the state lock, with the dispatch role held)
/// ends `Ls::awaited`, and the request is noted in flight instead unless
/// that result completed it, in the same critical section: a cancel
/// checking under the state lock sees one or the other.
struct Awaiting<'a> {
    ls: &'a Ls,
    lksb: *mut Lksb,
    lkid: u32,
}

impl Deliver<InFlight> for Awaiting<'_> {
    #[inline(always)]
    fn record(&self, r: RawResult<'_>, in_flight: &mut InFlight) -> bool {
        CDeliver::fill(r, in_flight);
        // Only the role's holder (this thread) writes `awaited`.
        if self.ls.awaited.load(Ordering::Relaxed) == self.lkid {
            self.ls.awaited.store(0, Ordering::Relaxed);
            // SAFETY: `lksb` is valid until `wait_granted_inline`
            // returns, and this runs only inside it.
            if unsafe { status_of(self.lksb) } == EINPROG {
                // SAFETY: as above.
                unsafe { note_in_flight(in_flight, self.lksb, self.lkid) };
            }
        }
        CDeliver::wants_call(r)
    }

    // Inlined, so the handle's callback path needs no `Awaiting` in
    // memory (it was stored on every call, for this one use).
    #[inline(always)]
    fn call(&self, r: RawResult<'_>) {
        CDeliver.call(r);
    }
}

/// `dlm_ls_lock` (and `dlm_lock`, `dlm_ls_lockx`): an asynchronous
/// request or conversion; with LKF_WAIT, a synchronous one.
///
/// # Errors
/// ENOSYS (`range` not NULL); EINVAL (NULL lksb, VALBLK without an LVB
/// buffer, a name over 64 bytes, a mode above EX); the lock manager's
/// errno.
///
/// # Safety
/// The pointers of `a` follow the module's rules.
pub unsafe fn ls_lock(
    ls: &Ls,
    flavour: WaitFlavour,
    a: &LockArgs,
    range: *const c_void,
) -> Result<Status, Errno> {
    no_range(range)?;
    if a.flags & LockFlags::WAIT.bits() != 0 {
        // SAFETY: the same `a`; with LKF_WAIT this call returns only
        // after the completion, within the lksb's validity.
        return unsafe { ls_lock_wait(ls, flavour, a) };
    }
    // SAFETY: `a`'s pointers follow the module's rules (this
    // function's contract), as `send_lock` requires.
    if let Some(lkid) = unsafe { send_lock(ls, a, fn_addr(a.astaddr), false) }? {
        ls.handle
            // SAFETY: `send_lock` accepted `a.lksb` (non-NULL); the
            // caller keeps it valid until the completion.
            .with_state_lock(|in_flight| unsafe { note_in_flight(in_flight, a.lksb, lkid) });
    }
    Ok(Status::GRANTED)
}

/// `dlm_ls_lock_wait` (and `dlm_lock_wait`): a synchronous request or
/// conversion. `a.astarg` is the blocking routine's parameter; the
/// completion routine is [`sync_ast`].
///
/// # Errors
/// As [`ls_lock`]; ENOTCONN if the lock manager went away while waiting.
///
/// # Safety
/// The pointers of `a` follow the module's rules.
#[inline(always)]
pub unsafe fn ls_lock_wait(ls: &Ls, flavour: WaitFlavour, a: &LockArgs) -> Result<Status, Errno> {
    // SAFETY: `a`'s pointers follow the module's rules (this
    // function's contract), as `send_lock` requires.
    match unsafe {
        send_lock(
            ls,
            a,
            sync_ast as extern "C" fn(*mut c_void) as usize as u64,
            true,
        )
    }? {
        // SAFETY: `send_lock` accepted `a.lksb` (non-NULL); the caller
        // keeps it valid until this returns (this function's contract).
        Some(lkid) if flavour == WaitFlavour::Lt => unsafe {
            wait_granted_inline(ls, a.lksb, lkid)
        },
        // SAFETY: as above.
        Some(lkid) => unsafe { wait_for(ls, flavour, a.lksb, Awaited::Request(lkid)) },
        // An adoption has no completion: the write's answer is all.
        None => Ok(Status::GRANTED),
    }
}

/// Writes an UNLOCK request (zero-filled; VALBLK sends the caller's LVB).
///
/// # Safety
/// `lksb` is NULL or valid.
#[inline(always)]
unsafe fn write_unlock(
    ls: &Ls,
    lkid: u32,
    flags: u32,
    lksb: *mut Lksb,
    astarg: *mut c_void,
    sync: bool,
) -> Result<LockFlags, Errno> {
    if lkid == 0 || lksb.is_null() {
        return Err(Errno::EINVAL);
    }
    let flags = LockFlags::from_bits_retain(flags);
    let p = LockParams {
        flags: flags - LockFlags::WAIT,
        lkid,
        castparam: astarg as usize as u64,
        lksb: lksb as usize as u64,
        // Sent from the lksb's `sb_lvbptr` by `write_params`.
        ..LockParams::default()
    };
    // SAFETY: `lksb` was checked non-NULL above; valid, its `sb_lvbptr`
    // NULL or 32 readable bytes, by this function's contract (the
    // module's rules).
    unsafe { write_params(ls, &p, DLM_USER_UNLOCK, &[], lksb, sync) }?;
    Ok(flags)
}

/// `dlm_ls_unlock` (and `dlm_unlock`): an asynchronous unlock or cancel;
/// with LKF_WAIT, a synchronous one.
///
/// # Errors
/// EINVAL (lock id 0, NULL lksb); the lock manager's errno.
///
/// # Safety
/// `lksb` is NULL or valid until the completion.
pub unsafe fn ls_unlock(
    ls: &Ls,
    flavour: WaitFlavour,
    lkid: u32,
    flags: u32,
    lksb: *mut Lksb,
    astarg: *mut c_void,
) -> Result<Status, Errno> {
    if flags & LockFlags::WAIT.bits() != 0 {
        // SAFETY: the same `lksb`; with LKF_WAIT this call returns only
        // after the completion, so "valid until the completion" covers it.
        return unsafe { ls_unlock_wait(ls, flavour, lkid, flags, lksb) };
    }
    // SAFETY: `lksb` is NULL or valid until the completion (this
    // function's contract), as `write_unlock` requires.
    unsafe { write_unlock(ls, lkid, flags, lksb, astarg, false) }?;
    Ok(Status::GRANTED)
}

/// `dlm_ls_unlock_wait` (and `dlm_unlock_wait`): a synchronous unlock or
/// cancel. A cancel with nothing to cancel ends with status EBUSY.
///
/// # Errors
/// As [`ls_unlock`].
///
/// # Safety
/// `lksb` is NULL or valid.
#[inline(always)]
pub unsafe fn ls_unlock_wait(
    ls: &Ls,
    flavour: WaitFlavour,
    lkid: u32,
    flags: u32,
    lksb: *mut Lksb,
) -> Result<Status, Errno> {
    // SAFETY: `lksb` is NULL or valid (this function's contract), as
    // `write_unlock` requires.
    let flags = unsafe { write_unlock(ls, lkid, flags, lksb, core::ptr::null_mut(), true) }?;
    let awaited = if flags.contains(LockFlags::CANCEL) {
        Awaited::Cancel(lkid)
    } else if flavour == WaitFlavour::Lt {
        // An unlock notes nothing before it reads, and without an AST
        // thread nobody else need be waited for: the dispatch role by one
        // compare-and-swap when it is free, the state lock only to record
        // the completion.
        let unlocked = || {
            // SAFETY: `lksb` was checked non-NULL by `write_unlock` and is
            // valid until this returns (this function's contract).
            let status = unsafe { status_of(lksb) };
            status != EINPROG
        };
        ls.handle.wait_inline_recorded(
            &CDeliver,
            unlocked,
            || {},
            |_: &mut InFlight| unlocked(),
        )?;
        // SAFETY: as above.
        return Ok(Status::from_raw(unsafe { status_of(lksb) }));
    } else {
        Awaited::Unlock
    };
    // SAFETY: `lksb` was checked non-NULL by `write_unlock` and is valid
    // until this returns (this function's contract).
    unsafe { wait_for(ls, flavour, lksb, awaited) }
}

/// `dlm_ls_deadlock_cancel`: the flags go to the lock manager unfiltered
/// (so LKF_WAIT gets its EINVAL).
///
/// # Errors
/// EINVAL for lock id 0; the lock manager's errno.
pub fn deadlock_cancel(ls: &Ls, lkid: u32, flags: u32) -> Result<(), Errno> {
    if lkid == 0 {
        return Err(Errno::EINVAL);
    }
    let flags = LockFlags::from_bits_retain(flags);
    ls.handle
        .write(&Request::Deadlock { lkid, flags })
        .map(drop)
}

/// `dlm_ls_purge`: force-unlocks orphans of `pid` (0: all) on `nodeid`.
///
/// # Errors
/// The lock manager's errno.
pub fn purge(ls: &Ls, nodeid: c_int, pid: c_int) -> Result<(), Errno> {
    let req = Request::Purge {
        nodeid: nodeid as u32,
        pid: pid as u32,
    };
    ls.handle.write(&req).map(drop)
}

/// The return value of a lock or unlock call in each flavour: libdlm_lt
/// reports a synchronous outcome other than 0 or EUNLOCK as -1 with
/// errno = the status, and leaves errno at EUNLOCK after an unlock as C
/// does; libdlm returns 0 and leaves it in the lksb. Failures are -1
/// with errno in both.
#[inline(always)]
pub fn wait_ret(flavour: WaitFlavour, r: Result<Status, Errno>) -> c_int {
    match r {
        Ok(s) if flavour == WaitFlavour::Threads || s.is_granted() => 0,
        Ok(s) if s == Status::UNLOCKED => {
            set_errno(Errno::from_raw(s.raw()));
            0
        }
        Ok(s) => {
            set_errno(Errno::from_raw(s.raw()));
            -1
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// The usual "0, or -1 with errno" return.
pub fn int_ret(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// A handle return: the handle, or NULL with errno.
pub fn handle_ret(r: Result<LsHandle, Errno>) -> LsHandle {
    r.unwrap_or_else(|e| {
        set_errno(e);
        LsHandle::NULL
    })
}

/// An fd return: the fd, or -1 with errno.
pub fn fd_ret(r: Result<c_int, Errno>) -> c_int {
    r.unwrap_or_else(|e| {
        set_errno(e);
        -1
    })
}

/// `range` of `dlm_lock`, `dlm_lock_wait` and `dlm_ls_lock_wait` (ranges
/// were never supported): ENOSYS unless NULL.
///
/// # Errors
/// ENOSYS for a non-NULL `range`.
#[inline(always)]
pub fn no_range(range: *const c_void) -> Result<(), Errno> {
    if range.is_null() {
        Ok(())
    } else {
        Err(Errno::ENOSYS)
    }
}

/// `lock_resource` on an open default lockspace `ls`: a synchronous
/// request named by a C string, without LVB or blocking routine. Returns
/// 0 when granted, else -1; errno is the status either way.
///
/// # Safety
/// `resource` is a NUL-terminated string; `lockid` is NULL or valid.
pub unsafe fn lock_resource(
    ls: &Ls,
    resource: *const c_char,
    mode: c_int,
    flags: c_int,
    lockid: *mut c_int,
) -> c_int {
    if lockid.is_null() {
        set_errno(Errno::EINVAL);
        return -1;
    }
    // SAFETY: `resource` is a C string (this function's contract), as
    // `c_str` requires.
    let name = match unsafe { c_str(resource) } {
        Ok(n) => n,
        Err(e) => {
            set_errno(e);
            return -1;
        }
    };
    let mut lksb = Lksb {
        sb_status: 0,
        sb_lkid: 0,
        sb_flags: 0,
        sb_lvbptr: core::ptr::null_mut(),
    };
    let flags = flags as u32;
    if flags & LockFlags::CONVERT.bits() != 0 {
        // SAFETY: `lockid` was checked non-NULL above and is valid by
        // this function's contract.
        lksb.sb_lkid = unsafe { *lockid } as u32;
    }
    let a = LockArgs::lock_resource(mode as u32, &mut lksb, flags, name);
    // SAFETY: `lksb` lives on this stack frame until the wait returns.
    match unsafe { ls_lock_wait(ls, WaitFlavour::Threads, &a) } {
        Ok(status) => {
            // SAFETY: `lockid` was checked non-NULL above and is valid by
            // this function's contract.
            unsafe { *lockid = lksb.sb_lkid as c_int };
            set_errno(Errno::from_raw(status.raw()));
            if status.is_granted() { 0 } else { -1 }
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// `unlock_resource` on the open default lockspace `ls`: a synchronous
/// unlock. Returns 0 when unlocked (errno EUNLOCK), else -1 with errno.
pub fn unlock_resource(ls: &Ls, lockid: c_int) -> c_int {
    let mut lksb = Lksb {
        sb_status: 0,
        sb_lkid: 0,
        sb_flags: 0,
        sb_lvbptr: core::ptr::null_mut(),
    };
    // SAFETY: `lksb` lives on this stack frame until the wait returns.
    match unsafe { ls_unlock_wait(ls, WaitFlavour::Threads, lockid as u32, 0, &mut lksb) } {
        Ok(status) => {
            set_errno(Errno::from_raw(status.raw()));
            if status == Status::UNLOCKED { 0 } else { -1 }
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}
