//! The v6 device codec: requests written to a DLM device (or sent to
//! dlmd) and the results read back, as exact bytes.
//!
//! One codec serves both backends: the kernel device and dlmd carry the
//! same `struct dlm_write_request` and `struct dlm_lock_result` bytes.
//! Every offset comes from the generated `dlm-sys` structs, so the layout
//! is the kernel header's, not a copy of it. User pointers (lksb, callback
//! addresses and parameters) travel as opaque 64-bit values: this module
//! never dereferences them.
//!
//! The decoders check every length and field they rely on and return an
//! error, never panic, on short, over-long or inconsistent input.

use crate::{Errno, LockFlags, LsFlags, Mode, NAME_MAX, Name, RemoveFlags, SbFlags, Status};
use core::mem::{MaybeUninit, offset_of, size_of};
use core::ops::Deref;
use dlm_sys as sys;

/// Length of a lock value block for user lockspaces (`DLM_USER_LVB_LEN`).
pub const LVB_LEN: usize = sys::DLM_USER_LVB_LEN as usize;
/// A lock value block.
pub type Lvb = [u8; LVB_LEN];
/// Size of the fixed part of a request (`struct dlm_write_request`): 120.
pub const REQUEST_LEN: usize = size_of::<sys::dlm_write_request>();
/// Largest request the device accepts: the fixed part and a 64-byte name.
pub const REQUEST_MAX: usize = REQUEST_LEN + NAME_MAX;
/// Size of a result without an LVB (`struct dlm_lock_result`): 72.
pub const RESULT_LEN: usize = size_of::<sys::dlm_lock_result>();
/// Size of a result with the LVB appended: 104.
pub const RESULT_LVB_LEN: usize = RESULT_LEN + LVB_LEN;
/// Size of `struct dlm_device_version`, the answer to a 12-byte read.
pub const VERSION_LEN: usize = size_of::<sys::dlm_device_version>();

/// Byte offsets of every field, from the generated structs.
mod off {
    use super::*;
    const I: usize = offset_of!(sys::dlm_write_request, i);
    pub const VERSION: usize = offset_of!(sys::dlm_write_request, version);
    pub const CMD: usize = offset_of!(sys::dlm_write_request, cmd);
    pub const IS64BIT: usize = offset_of!(sys::dlm_write_request, is64bit);
    pub const UNUSED: usize = offset_of!(sys::dlm_write_request, unused);
    pub const LOCK_UNUSED: usize = I + offset_of!(sys::dlm_lock_params, unused);

    pub const MODE: usize = I + offset_of!(sys::dlm_lock_params, mode);
    pub const NAMELEN: usize = I + offset_of!(sys::dlm_lock_params, namelen);
    pub const FLAGS: usize = I + offset_of!(sys::dlm_lock_params, flags);
    pub const LKID: usize = I + offset_of!(sys::dlm_lock_params, lkid);
    pub const PARENT: usize = I + offset_of!(sys::dlm_lock_params, parent);
    pub const XID: usize = I + offset_of!(sys::dlm_lock_params, xid);
    pub const TIMEOUT: usize = I + offset_of!(sys::dlm_lock_params, timeout);
    pub const CASTPARAM: usize = I + offset_of!(sys::dlm_lock_params, castparam);
    pub const CASTADDR: usize = I + offset_of!(sys::dlm_lock_params, castaddr);
    pub const BASTPARAM: usize = I + offset_of!(sys::dlm_lock_params, bastparam);
    pub const BASTADDR: usize = I + offset_of!(sys::dlm_lock_params, bastaddr);
    pub const LKSB: usize = I + offset_of!(sys::dlm_lock_params, lksb);
    pub const LVB: usize = I + offset_of!(sys::dlm_lock_params, lvb);
    pub const NAME: usize = I + offset_of!(sys::dlm_lock_params, name);

    pub const LS_FLAGS: usize = I + offset_of!(sys::dlm_lspace_params, flags);
    pub const LS_MINOR: usize = I + offset_of!(sys::dlm_lspace_params, minor);
    pub const LS_NAME: usize = I + offset_of!(sys::dlm_lspace_params, name);

    pub const PURGE_NODEID: usize = I + offset_of!(sys::dlm_purge_params, nodeid);
    pub const PURGE_PID: usize = I + offset_of!(sys::dlm_purge_params, pid);

    const SB: usize = offset_of!(sys::dlm_lock_result, lksb);
    pub const R_VERSION: usize = offset_of!(sys::dlm_lock_result, version);
    pub const R_LENGTH: usize = offset_of!(sys::dlm_lock_result, length);
    pub const R_ASTADDR: usize = offset_of!(sys::dlm_lock_result, user_astaddr);
    pub const R_ASTPARAM: usize = offset_of!(sys::dlm_lock_result, user_astparam);
    pub const R_USER_LKSB: usize = offset_of!(sys::dlm_lock_result, user_lksb);
    pub const R_STATUS: usize = SB + offset_of!(sys::dlm_lksb, sb_status);
    pub const R_LKID: usize = SB + offset_of!(sys::dlm_lksb, sb_lkid);
    pub const R_SBFLAGS: usize = SB + offset_of!(sys::dlm_lksb, sb_flags);
    pub const R_BAST_MODE: usize = offset_of!(sys::dlm_lock_result, bast_mode);
    pub const R_LVB_OFFSET: usize = offset_of!(sys::dlm_lock_result, lvb_offset);
}

// The name of a lock request follows the fixed part directly (x86_64).
const _: () = assert!(off::NAME == REQUEST_LEN);

#[inline(always)]
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

#[inline(always)]
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

// The getters are only called on buffers whose length was checked first.
#[inline(always)]
fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(b)
}

#[inline(always)]
fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(b)
}

#[inline(always)]
fn get_lvb(buf: &[u8], at: usize) -> Lvb {
    let mut lvb = [0; LVB_LEN];
    lvb.copy_from_slice(&buf[at..at + LVB_LEN]);
    lvb
}

/// A device interface version (`struct dlm_device_version`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Version {
    /// Major version: 6 for every kernel this library supports.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
}

impl Version {
    /// The interface version this library speaks, 6.0.2.
    pub const DEVICE: Version = Version {
        major: sys::DLM_DEVICE_VERSION_MAJOR,
        minor: sys::DLM_DEVICE_VERSION_MINOR,
        patch: sys::DLM_DEVICE_VERSION_PATCH,
    };

    /// Whether a device speaking [`Version::DEVICE`] accepts requests
    /// stamped with this version (the kernel's `check_version`: same
    /// major, minor not above ours; the patch level is not checked).
    pub fn is_compatible(self) -> bool {
        // The device's minor is 0, so "not above ours" means equal.
        self.major == Version::DEVICE.major && self.minor == Version::DEVICE.minor
    }

    /// The 12 bytes a version read returns.
    pub fn encode(self) -> [u8; VERSION_LEN] {
        let mut b = [0; VERSION_LEN];
        put_u32(&mut b, 0, self.major);
        put_u32(&mut b, 4, self.minor);
        put_u32(&mut b, 8, self.patch);
        b
    }

    /// Decodes the answer to a version read.
    ///
    /// # Errors
    /// EPROTO unless `bytes` is exactly 12 bytes long.
    pub fn decode(bytes: &[u8]) -> Result<Version, Errno> {
        if bytes.len() != VERSION_LEN {
            return Err(Errno::EPROTO);
        }
        Ok(Version {
            major: get_u32(bytes, 0),
            minor: get_u32(bytes, 4),
            patch: get_u32(bytes, 8),
        })
    }
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The parameters of a LOCK, UNLOCK or DEADLOCK request
/// (`struct dlm_lock_params`).
///
/// Which fields matter depends on the request: a new lock uses all of
/// them; a conversion ignores `name`; an unlock uses `lkid`, `flags`,
/// `castparam`, `lksb` and `lvb`; a deadlock-cancel `lkid` and `flags`.
/// Fields a request does not use are sent as zeros.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LockParams {
    /// The requested mode, as a raw byte (checked by the lock manager, so
    /// that a bad mode gets the kernel's EINVAL).
    pub mode: u8,
    /// Request flags, unknown bits included.
    pub flags: LockFlags,
    /// The lock to convert, unlock or cancel; 0 for a new lock.
    pub lkid: u32,
    /// Parent lock id: accepted and ignored by every kernel.
    pub parent: u32,
    /// Transaction id, stored and reported but without effect on locking.
    pub xid: u64,
    /// Lock timeout in centiseconds, ignored since Linux 6.4.
    pub timeout: u64,
    /// Completion callback parameter (opaque).
    pub castparam: u64,
    /// Completion callback address (opaque, must be non-zero for LOCK).
    pub castaddr: u64,
    /// Blocking callback parameter (opaque).
    pub bastparam: u64,
    /// Blocking callback address (opaque; 0 means no blocking callbacks).
    pub bastaddr: u64,
    /// The caller's lock status block (opaque, must be non-zero for LOCK).
    pub lksb: u64,
    /// The lock value block sent with the request.
    pub lvb: Lvb,
    /// The resource name (new requests and orphan adoption).
    pub name: Name,
}

/// Room for one LOCK or UNLOCK request ([`LockParams::encode_in`]): the
/// fixed part, then the name's 64 bytes, left uninitialised until the
/// name is written.
#[repr(C)]
pub struct RequestSpace {
    fixed: [u8; REQUEST_LEN],
    name: [MaybeUninit<u8>; NAME_MAX],
}

impl RequestSpace {
    /// An empty space (the fixed part's zeros are overwritten, so the
    /// compiler drops them).
    #[inline(always)]
    pub const fn new() -> RequestSpace {
        RequestSpace {
            fixed: [0; REQUEST_LEN],
            name: [MaybeUninit::uninit(); NAME_MAX],
        }
    }
}

impl Default for RequestSpace {
    fn default() -> RequestSpace {
        RequestSpace::new()
    }
}

/// A request to a DLM device or dlmd, one `write()`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Request {
    /// `DLM_USER_LOCK`: a new lock, a conversion (CONVERT) or an orphan
    /// adoption (ORPHAN).
    Lock(LockParams),
    /// `DLM_USER_UNLOCK`: unlock, cancel (CANCEL) or force-unlock.
    Unlock(LockParams),
    /// `DLM_USER_DEADLOCK`: cancel a request, reporting EDEADLK.
    Deadlock {
        /// The lock to cancel.
        lkid: u32,
        /// Unlock-style flags (normally none).
        flags: LockFlags,
    },
    /// `DLM_USER_PURGE`: force-unlock orphans (or the caller's own locks).
    Purge {
        /// Node whose locks to purge; 0 or the local node id for this node.
        nodeid: u32,
        /// Owner pid of the orphans to purge; 0 for all orphans.
        pid: u32,
    },
    /// `DLM_USER_CREATE_LOCKSPACE` (control device only).
    CreateLockspace {
        /// Creation flags, e.g. NEWEXCL.
        flags: LsFlags,
        /// The lockspace name.
        name: Name,
    },
    /// `DLM_USER_REMOVE_LOCKSPACE` (control device only).
    RemoveLockspace {
        /// FORCEFREE to release a lockspace that still has locks.
        flags: RemoveFlags,
        /// The lockspace device's minor number.
        minor: u32,
    },
}

/// Encoded request bytes, ready to write (at most [`REQUEST_MAX`]).
#[derive(Clone, Copy)]
pub struct RequestBuf {
    bytes: [u8; REQUEST_MAX],
    len: usize,
}

impl Deref for RequestBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::fmt::Debug for RequestBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("RequestBuf").field(&&**self).finish()
    }
}

/// Zero-fills `b` and writes a request's header (version, command,
/// 64-bit marker).
#[inline(always)]
fn put_header(b: &mut [u8; REQUEST_MAX], version: Version, cmd: u8) {
    *b = [0; REQUEST_MAX];
    put_u32(b, off::VERSION, version.major);
    put_u32(b, off::VERSION + 4, version.minor);
    put_u32(b, off::VERSION + 8, version.patch);
    b[off::CMD] = cmd;
    b[off::IS64BIT] = 1;
}

impl LockParams {
    /// Encodes a LOCK or UNLOCK request (`cmd`, a `DLM_USER_*` number)
    /// with these parameters, the resource name `name` and the LVB `lvb`
    /// (zeros for `None`), which stand in for `self.name` and
    /// `self.lvb`, so a caller holding them elsewhere need not copy them
    /// into the parameters first; returns how many bytes of `b` to write
    /// (the bytes after them are left as they were).
    /// [`Request::encode`] uses this for LOCK and UNLOCK.
    ///
    /// # Panics
    /// If `name` is longer than 64 bytes.
    #[inline(always)]
    pub fn encode_into(
        &self,
        cmd: u8,
        name: &[u8],
        lvb: Option<&Lvb>,
        version: Version,
        b: &mut [u8; REQUEST_MAX],
    ) -> usize {
        self.encode_fixed(cmd, name.len() as u8, lvb, version, b);
        b[off::NAME..off::NAME + name.len()].copy_from_slice(name);
        REQUEST_LEN + name.len()
    }

    /// [`LockParams::encode_into`] into a [`RequestSpace`], whose name
    /// part is not zero-filled first; returns the bytes to write.
    ///
    /// # Panics
    /// If `name` is longer than 64 bytes.
    #[inline(always)]
    pub fn encode_in<'s>(
        &self,
        cmd: u8,
        name: &[u8],
        lvb: Option<&Lvb>,
        version: Version,
        space: &'s mut RequestSpace,
    ) -> &'s [u8] {
        self.encode_fixed(cmd, name.len() as u8, lvb, version, &mut space.fixed);
        let to = &mut space.name[..name.len()];
        #[allow(unsafe_code)]
        // SAFETY: `to` has `name.len()` bytes of room (the slicing panics
        // for a name over 64 bytes), and is borrowed mutably, so it
        // overlaps no `name`. (A plain copy: a loop of `MaybeUninit`
        // writes is not turned into one.)
        unsafe {
            core::ptr::copy_nonoverlapping(name.as_ptr(), to.as_mut_ptr().cast::<u8>(), name.len());
        }
        let len = REQUEST_LEN + name.len();
        #[allow(unsafe_code)]
        // SAFETY: `RequestSpace` is `repr(C)`, its fixed part (bytes,
        // initialised) directly followed by its name part (byte-sized
        // `MaybeUninit`s, no padding between), whose first `name.len()`
        // bytes were written just above: `len` initialised bytes,
        // borrowed from `space`.
        unsafe {
            core::slice::from_raw_parts(core::ptr::from_ref(space).cast::<u8>(), len)
        }
    }

    /// Writes the fixed part of a LOCK or UNLOCK request, every byte of
    /// it (the reserved ones as zeros): no need to zero-fill `b` first.
    #[inline(always)]
    fn encode_fixed<const N: usize>(
        &self,
        cmd: u8,
        namelen: u8,
        lvb: Option<&Lvb>,
        version: Version,
        b: &mut [u8; N],
    ) {
        put_u32(b, off::VERSION, version.major);
        put_u32(b, off::VERSION + 4, version.minor);
        put_u32(b, off::VERSION + 8, version.patch);
        b[off::CMD] = cmd;
        b[off::IS64BIT] = 1;
        b[off::UNUSED..off::UNUSED + 2].fill(0);
        b[off::LOCK_UNUSED..off::LOCK_UNUSED + 2].fill(0);
        b[off::MODE] = self.mode;
        b[off::NAMELEN] = namelen;
        put_u32(b, off::FLAGS, self.flags.bits());
        put_u32(b, off::LKID, self.lkid);
        put_u32(b, off::PARENT, self.parent);
        put_u64(b, off::XID, self.xid);
        put_u64(b, off::TIMEOUT, self.timeout);
        put_u64(b, off::CASTPARAM, self.castparam);
        put_u64(b, off::CASTADDR, self.castaddr);
        put_u64(b, off::BASTPARAM, self.bastparam);
        put_u64(b, off::BASTADDR, self.bastaddr);
        put_u64(b, off::LKSB, self.lksb);
        // Zeros first, unconditionally (the zeros of a fresh
        // `RequestSpace` there are then dropped as overwritten, which a
        // fill on one branch only did not let the compiler see).
        let to = &mut b[off::LVB..off::LVB + LVB_LEN];
        to.fill(0);
        if let Some(lvb) = lvb {
            to.copy_from_slice(lvb);
        }
    }
}

impl Request {
    /// The request's command number (`DLM_USER_*`).
    pub fn command(&self) -> u8 {
        (match self {
            Request::Lock(_) => sys::DLM_USER_LOCK,
            Request::Unlock(_) => sys::DLM_USER_UNLOCK,
            Request::Deadlock { .. } => sys::DLM_USER_DEADLOCK,
            Request::Purge { .. } => sys::DLM_USER_PURGE,
            Request::CreateLockspace { .. } => sys::DLM_USER_CREATE_LOCKSPACE,
            Request::RemoveLockspace { .. } => sys::DLM_USER_REMOVE_LOCKSPACE,
        }) as u8
    }

    /// Encodes the request as the bytes to write, stamped with `version`
    /// (the version the device reported).
    ///
    /// The buffer starts zero-filled, so unused fields are zeros (unlike
    /// the C library, whose UNLOCK requests carry stack garbage). A lock
    /// request is 120 bytes plus its name; a lockspace creation 120 bytes
    /// plus the name, which starts at offset 24; all others 120 bytes.
    pub fn encode(&self, version: Version) -> RequestBuf {
        let mut buf = RequestBuf {
            bytes: [0; REQUEST_MAX],
            len: 0,
        };
        buf.len = self.encode_into(version, &mut buf.bytes);
        buf
    }

    /// [`Request::encode`] into the caller's buffer (a hot path's stack
    /// buffer, without copying a [`RequestBuf`] out); returns how many
    /// bytes to write. Unused fields are zeros; bytes of `b` past the
    /// returned length are not part of the request.
    pub fn encode_into(&self, version: Version, b: &mut [u8; REQUEST_MAX]) -> usize {
        if let Request::Lock(p) | Request::Unlock(p) = self {
            return p.encode_into(self.command(), p.name.as_bytes(), Some(&p.lvb), version, b);
        }
        put_header(b, version, self.command());
        let mut len = REQUEST_LEN;
        match self {
            Request::Lock(_) | Request::Unlock(_) => unreachable!("encoded above"),
            Request::Deadlock { lkid, flags } => {
                put_u32(b, off::FLAGS, flags.bits());
                put_u32(b, off::LKID, *lkid);
            }
            Request::Purge { nodeid, pid } => {
                put_u32(b, off::PURGE_NODEID, *nodeid);
                put_u32(b, off::PURGE_PID, *pid);
            }
            Request::CreateLockspace { flags, name } => {
                put_u32(b, off::LS_FLAGS, flags.bits());
                let name = name.as_bytes();
                b[off::LS_NAME..off::LS_NAME + name.len()].copy_from_slice(name);
                len = REQUEST_LEN + name.len();
            }
            Request::RemoveLockspace { flags, minor } => {
                put_u32(b, off::LS_FLAGS, flags.bits());
                put_u32(b, off::LS_MINOR, *minor);
            }
        }
        len
    }

    /// Decodes the bytes of one `write()`, as the device does, and returns
    /// the version the writer stamped and the request.
    ///
    /// # Errors
    /// In the kernel's order: EINVAL for fewer than 120 or more than 184
    /// bytes; EBADE for a version other than 6.0.x; EINVAL for a 32-bit
    /// (`is64bit == 0`) request, which this implementation does not
    /// support; EINVAL for an unknown command (QUERY included), a lock
    /// name longer than the bytes written, and a lockspace name that is
    /// empty or longer than 64 bytes.
    pub fn decode(bytes: &[u8]) -> Result<(Version, Request), Errno> {
        if bytes.len() < REQUEST_LEN || bytes.len() > REQUEST_MAX {
            return Err(Errno::EINVAL);
        }
        let version = Version {
            major: get_u32(bytes, off::VERSION),
            minor: get_u32(bytes, off::VERSION + 4),
            patch: get_u32(bytes, off::VERSION + 8),
        };
        if !version.is_compatible() {
            return Err(Errno::EBADE);
        }
        if bytes[off::IS64BIT] == 0 {
            return Err(Errno::EINVAL);
        }
        let lock_params = |with_name: bool| -> Result<LockParams, Errno> {
            let namelen = bytes[off::NAMELEN] as usize;
            let name = if with_name {
                let end = off::NAME.checked_add(namelen).filter(|&e| e <= bytes.len());
                Name::new(&bytes[off::NAME..end.ok_or(Errno::EINVAL)?])?
            } else {
                Name::EMPTY
            };
            Ok(LockParams {
                mode: bytes[off::MODE],
                flags: LockFlags::from_bits_retain(get_u32(bytes, off::FLAGS)),
                lkid: get_u32(bytes, off::LKID),
                parent: get_u32(bytes, off::PARENT),
                xid: get_u64(bytes, off::XID),
                timeout: get_u64(bytes, off::TIMEOUT),
                castparam: get_u64(bytes, off::CASTPARAM),
                castaddr: get_u64(bytes, off::CASTADDR),
                bastparam: get_u64(bytes, off::BASTPARAM),
                bastaddr: get_u64(bytes, off::BASTADDR),
                lksb: get_u64(bytes, off::LKSB),
                lvb: get_lvb(bytes, off::LVB),
                name,
            })
        };
        let request = match u32::from(bytes[off::CMD]) {
            sys::DLM_USER_LOCK => Request::Lock(lock_params(true)?),
            sys::DLM_USER_UNLOCK => Request::Unlock(lock_params(false)?),
            sys::DLM_USER_DEADLOCK => Request::Deadlock {
                lkid: get_u32(bytes, off::LKID),
                flags: LockFlags::from_bits_retain(get_u32(bytes, off::FLAGS)),
            },
            sys::DLM_USER_PURGE => Request::Purge {
                nodeid: get_u32(bytes, off::PURGE_NODEID),
                pid: get_u32(bytes, off::PURGE_PID),
            },
            sys::DLM_USER_CREATE_LOCKSPACE => {
                // The kernel terminates the copied buffer at the end of the
                // write, so the name is a C string bounded by the write.
                let tail = &bytes[off::LS_NAME..];
                let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
                Request::CreateLockspace {
                    flags: LsFlags::from_bits_retain(get_u32(bytes, off::LS_FLAGS)),
                    name: Name::lockspace(&tail[..end])?,
                }
            }
            sys::DLM_USER_REMOVE_LOCKSPACE => Request::RemoveLockspace {
                flags: RemoveFlags::from_bits_retain(get_u32(bytes, off::LS_FLAGS)),
                minor: get_u32(bytes, off::LS_MINOR),
            },
            _ => return Err(Errno::EINVAL),
        };
        Ok((version, request))
    }
}

/// One callback read from a lockspace device (`struct dlm_lock_result`,
/// plus the LVB when one is attached).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LockResult {
    /// The callback address: the lock's completion routine for a
    /// completion, its blocking routine for a blocking callback.
    pub astaddr: u64,
    /// The parameter for that routine.
    pub astparam: u64,
    /// The application's lksb from the lock's latest request.
    pub user_lksb: u64,
    /// The status (completions; 0 in blocking callbacks).
    pub status: Status,
    /// The lock id.
    pub lkid: u32,
    /// The status-block flags.
    pub flags: SbFlags,
    /// `Some(mode)` for a blocking callback: the mode that is blocked.
    /// `None` for a completion.
    pub bast_mode: Option<Mode>,
    /// The lock value block, when the result carries one.
    pub lvb: Option<Lvb>,
}

/// Encoded result bytes (72, or 104 with an LVB).
#[derive(Clone, Copy, Debug)]
pub struct ResultBuf {
    bytes: [u8; RESULT_LVB_LEN],
    len: usize,
}

impl ResultBuf {
    /// A copy of encoded result bytes received elsewhere (a result dlmd
    /// sent in a reply), unchecked as a read's bytes are: delivering
    /// them ([`raw_result_in`], [`Filled::decode`]) checks them.
    ///
    /// # Errors
    /// EPROTO for more than 104 bytes.
    pub fn copy_of(bytes: &[u8]) -> Result<ResultBuf, Errno> {
        let mut buf = ResultBuf {
            bytes: [0; RESULT_LVB_LEN],
            len: bytes.len(),
        };
        buf.bytes
            .get_mut(..bytes.len())
            .ok_or(Errno::EPROTO)?
            .copy_from_slice(bytes);
        Ok(buf)
    }
}

impl Deref for ResultBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl LockResult {
    /// Whether this is a blocking callback (`bast_mode != 0`).
    pub fn is_bast(&self) -> bool {
        self.bast_mode.is_some()
    }

    /// Encodes the result as a device `read()` of `room` bytes returns it:
    /// the LVB is attached only when there is room for it (104 bytes).
    ///
    /// # Errors
    /// EINVAL if `room` is below 72 bytes, as the device answers.
    pub fn encode(&self, room: usize) -> Result<ResultBuf, Errno> {
        if room < RESULT_LEN {
            return Err(Errno::EINVAL);
        }
        let mut buf = ResultBuf {
            bytes: [0; RESULT_LVB_LEN],
            len: RESULT_LEN,
        };
        let b = &mut buf.bytes;
        let v = Version::DEVICE;
        put_u32(b, off::R_VERSION, v.major);
        put_u32(b, off::R_VERSION + 4, v.minor);
        put_u32(b, off::R_VERSION + 8, v.patch);
        put_u64(b, off::R_ASTADDR, self.astaddr);
        put_u64(b, off::R_ASTPARAM, self.astparam);
        put_u64(b, off::R_USER_LKSB, self.user_lksb);
        put_u32(b, off::R_STATUS, self.status.to_kernel() as u32);
        put_u32(b, off::R_LKID, self.lkid);
        b[off::R_SBFLAGS] = self.flags.bits();
        b[off::R_BAST_MODE] = self.bast_mode.map_or(0, Mode::raw);
        if let Some(lvb) = self.lvb.filter(|_| room >= RESULT_LVB_LEN) {
            put_u32(b, off::R_LVB_OFFSET, RESULT_LEN as u32);
            b[RESULT_LEN..].copy_from_slice(&lvb);
            buf.len = RESULT_LVB_LEN;
        }
        put_u32(b, off::R_LENGTH, buf.len as u32);
        Ok(buf)
    }

    /// Decodes the bytes of one result `read()` ([`RawResult::decode`]).
    ///
    /// # Errors
    /// As [`RawResult::decode`].
    #[inline(always)]
    pub fn decode(bytes: &[u8]) -> Result<LockResult, Errno> {
        RawResult::decode(bytes).map(LockResult::from)
    }
}

/// Room for the bytes of one result `read()` (104, the largest result),
/// left uninitialised until the read fills it.
pub type ResultSpace = [MaybeUninit<u8>; RESULT_LVB_LEN];

/// A [`ResultSpace`], uninitialised.
#[inline(always)]
pub const fn result_space() -> ResultSpace {
    [MaybeUninit::uninit(); RESULT_LVB_LEN]
}

/// What a read of one result into a [`ResultSpace`] gives: the bytes it
/// filled, not yet checked, `None` when a non-blocking read found
/// nothing, or the error.
pub type ReadRaw<'s> = Result<Option<Filled<'s>>, Errno>;

/// The bytes a read filled at the start of a [`ResultSpace`], unchecked:
/// [`Filled::decode`] checks them. (The dispatcher decodes after taking
/// its state lock, so that only the byte count, not the checked view,
/// is kept across it.)
#[derive(Clone, Copy, Debug)]
pub struct Filled<'s> {
    space: &'s ResultSpace,
    n: usize,
}

impl<'s> Filled<'s> {
    /// The first `n` bytes of `space`.
    ///
    /// # Safety
    /// Those bytes were initialised: written, or filled by a read into
    /// `space` that returned `n`.
    #[allow(unsafe_code)]
    #[inline(always)]
    pub unsafe fn new(space: &'s mut ResultSpace, n: usize) -> Filled<'s> {
        Filled { space, n }
    }

    /// Checks the bytes as [`RawResult::decode`] does.
    ///
    /// # Errors
    /// EPROTO as [`RawResult::decode`], or for more than 104 bytes.
    #[inline(always)]
    pub fn decode(self) -> Result<RawResult<'s>, Errno> {
        // SAFETY: `Filled::new`'s contract: the first `n` bytes of
        // `space` were initialised.
        #[allow(unsafe_code)]
        RawResult::decode(unsafe { filled(self.space, self.n) }?)
    }
}

/// One result read, checked, its fields read where the bytes lie (the
/// read's [`ResultSpace`]): what a delivery needs without a decoded
/// [`LockResult`] moved around first. [`LockResult::from`] decodes it all.
#[derive(Clone, Copy, Debug)]
pub struct RawResult<'a> {
    fixed: &'a [u8; RESULT_LEN],
    lvb: Option<&'a Lvb>,
}

impl<'a> RawResult<'a> {
    /// Checks the bytes of one result `read()`.
    ///
    /// # Errors
    /// EPROTO when the buffer is shorter than 72 bytes, its `length` field
    /// differs from the bytes read, its major version is not 6, its LVB
    /// offset is neither 0 (72 bytes) nor 72 (104 bytes), its
    /// `bast_mode` is above EX, or a blocking callback carries an LVB.
    #[inline(always)]
    pub fn decode(bytes: &'a [u8]) -> Result<RawResult<'a>, Errno> {
        let Some((fixed, rest)) = bytes.split_first_chunk::<RESULT_LEN>() else {
            return Err(Errno::EPROTO);
        };
        if get_u32(fixed, off::R_LENGTH) as usize != bytes.len()
            || get_u32(fixed, off::R_VERSION) != Version::DEVICE.major
        {
            return Err(Errno::EPROTO);
        }
        let lvb = match (get_u32(fixed, off::R_LVB_OFFSET) as usize, rest.len()) {
            (0, 0) => None,
            (RESULT_LEN, LVB_LEN) => rest.first_chunk::<LVB_LEN>(),
            _ => return Err(Errno::EPROTO),
        };
        let bast = fixed[off::R_BAST_MODE];
        if bast != 0 && (lvb.is_some() || Mode::from_raw(bast.into()).is_err()) {
            return Err(Errno::EPROTO);
        }
        Ok(RawResult { fixed, lvb })
    }

    /// [`LockResult::astaddr`].
    #[inline(always)]
    pub fn astaddr(&self) -> u64 {
        get_u64(self.fixed, off::R_ASTADDR)
    }

    /// [`LockResult::astparam`].
    #[inline(always)]
    pub fn astparam(&self) -> u64 {
        get_u64(self.fixed, off::R_ASTPARAM)
    }

    /// [`LockResult::user_lksb`].
    #[inline(always)]
    pub fn user_lksb(&self) -> u64 {
        get_u64(self.fixed, off::R_USER_LKSB)
    }

    /// [`LockResult::status`].
    #[inline(always)]
    pub fn status(&self) -> Status {
        Status::from_kernel(get_u32(self.fixed, off::R_STATUS) as i32)
    }

    /// [`LockResult::lkid`].
    #[inline(always)]
    pub fn lkid(&self) -> u32 {
        get_u32(self.fixed, off::R_LKID)
    }

    /// [`LockResult::flags`].
    #[inline(always)]
    pub fn flags(&self) -> SbFlags {
        SbFlags::from_bits_retain(self.fixed[off::R_SBFLAGS])
    }

    /// Whether this is a blocking callback.
    #[inline(always)]
    pub fn is_bast(&self) -> bool {
        self.fixed[off::R_BAST_MODE] != 0
    }

    /// [`LockResult::bast_mode`].
    #[inline(always)]
    pub fn bast_mode(&self) -> Option<Mode> {
        match self.fixed[off::R_BAST_MODE] {
            0 => None,
            // Checked by `decode`: a mode.
            m => Mode::from_raw(m.into()).ok(),
        }
    }

    /// [`LockResult::lvb`], in place.
    #[inline(always)]
    pub fn lvb(&self) -> Option<&'a Lvb> {
        self.lvb
    }
}

impl From<RawResult<'_>> for LockResult {
    #[inline(always)]
    fn from(r: RawResult<'_>) -> LockResult {
        LockResult {
            astaddr: r.astaddr(),
            astparam: r.astparam(),
            user_lksb: r.user_lksb(),
            status: r.status(),
            lkid: r.lkid(),
            flags: r.flags(),
            bast_mode: r.bast_mode(),
            lvb: r.lvb().copied(),
        }
    }
}

/// Copies encoded result `bytes` (a [`ResultBuf`], or a result dlmd sent
/// in a reply) into `space`, unchecked ([`Filled::decode`] checks them):
/// for a result that was not read straight into the space.
///
/// # Errors
/// EPROTO for more than 104 bytes.
pub fn raw_result_in<'a>(space: &'a mut ResultSpace, bytes: &[u8]) -> Result<Filled<'a>, Errno> {
    let Some(dst) = space.get_mut(..bytes.len()) else {
        return Err(Errno::EPROTO);
    };
    for (d, &b) in dst.iter_mut().zip(bytes) {
        d.write(b);
    }
    // SAFETY: the first `bytes.len()` bytes of `space` were written just
    // above.
    #[allow(unsafe_code)]
    Ok(unsafe { Filled::new(space, bytes.len()) })
}

/// The first `n` bytes of `space`, as bytes (EPROTO past its end).
///
/// # Errors
/// EPROTO when `n` is over 104.
///
/// # Safety
/// Those bytes were initialised: written, or filled by a read into
/// `space` that returned `n`.
#[allow(unsafe_code)]
#[inline(always)]
pub unsafe fn filled(space: &ResultSpace, n: usize) -> Result<&[u8], Errno> {
    let part: &[MaybeUninit<u8>] = space.get(..n).ok_or(Errno::EPROTO)?;
    // SAFETY: initialised, by this function's contract; `MaybeUninit<u8>`
    // has the layout of `u8`.
    Ok(unsafe { &*(core::ptr::from_ref(part) as *const [u8]) })
}
