//! Flag sets: lock request flags ([`LockFlags`]), status-block flags
//! ([`SbFlags`]) and lockspace flags ([`LsFlags`], [`RemoveFlags`]).
//!
//! Values are those of `linux/dlmconstants.h`, `linux/dlm.h` and
//! `linux/dlm_device.h` (taken from `dlm-sys`). Unknown bits are kept: the
//! kernel accepts unknown lock flag bits, and a request must travel with
//! exactly the bits its caller gave.

use dlm_sys as sys;

bitflags::bitflags! {
    /// Flags of a lock, conversion, unlock or cancel request (`DLM_LKF_*`,
    /// `LKF_*` in libdlm.h).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct LockFlags: u32 {
        /// Fail with EAGAIN instead of queueing.
        const NOQUEUE = sys::DLM_LKF_NOQUEUE;
        /// Unlock only: cancel a waiting request or pending conversion.
        const CANCEL = sys::DLM_LKF_CANCEL;
        /// Convert the existing lock named by the lock id.
        const CONVERT = sys::DLM_LKF_CONVERT;
        /// Carry the 32-byte lock value block.
        const VALBLK = sys::DLM_LKF_VALBLK;
        /// Queue the conversion behind already queued conversions.
        const QUECVT = sys::DLM_LKF_QUECVT;
        /// Invalidate the resource's LVB (when leaving PW/EX).
        const IVVALBLK = sys::DLM_LKF_IVVALBLK;
        /// Resolve a conversion deadlock by demoting the granted mode to NL.
        const CONVDEADLK = sys::DLM_LKF_CONVDEADLK;
        /// The lock survives its owner's close as an orphan.
        const PERSISTENT = sys::DLM_LKF_PERSISTENT;
        /// Queue a deadlocked conversion anyway, with a self-bast.
        const NODLCKWT = sys::DLM_LKF_NODLCKWT;
        /// Not implemented by the kernel; accepted.
        const NODLCKBLK = sys::DLM_LKF_NODLCKBLK;
        /// New NL requests only: grant at once, ignoring queues.
        const EXPEDITE = sys::DLM_LKF_EXPEDITE;
        /// With NOQUEUE: send blocking callbacks even though the request fails.
        const NOQUEUEBAST = sys::DLM_LKF_NOQUEUEBAST;
        /// Insert at the head of the wait or convert queue.
        const HEADQUE = sys::DLM_LKF_HEADQUE;
        /// Grant as soon as compatible, ignoring queue order.
        const NOORDER = sys::DLM_LKF_NOORDER;
        /// Adopt an orphan instead of creating a lock.
        const ORPHAN = sys::DLM_LKF_ORPHAN;
        /// If the requested mode is blocked, try PR.
        const ALTPR = sys::DLM_LKF_ALTPR;
        /// If the requested mode is blocked, try CW.
        const ALTCW = sys::DLM_LKF_ALTCW;
        /// Unlock even a waiting or converting lock.
        const FORCEUNLOCK = sys::DLM_LKF_FORCEUNLOCK;
        /// Ignored since Linux 6.4 (lock timeouts were removed).
        const TIMEOUT = sys::DLM_LKF_TIMEOUT;
        /// libdlm only: a synchronous call. Never sent to the device.
        const WAIT = 0x8000_0000;
        // Unknown bits are accepted and kept, like the kernel does.
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// Flags of a lock status block (`sb_flags`, `DLM_SBF_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct SbFlags: u8 {
        /// The granted mode was demoted to NL to break a conversion deadlock.
        const DEMOTED = sys::DLM_SBF_DEMOTED as u8;
        /// The resource's lock value block is marked invalid.
        const VALNOTVALID = sys::DLM_SBF_VALNOTVALID as u8;
        /// Granted in the alternate mode (ALTPR/ALTCW).
        const ALTMODE = sys::DLM_SBF_ALTMODE as u8;
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// Lockspace creation flags (`DLM_LSFL_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct LsFlags: u32 {
        /// Deprecated since Linux 6.4; accepted and ignored.
        const TIMEWARN = sys::DLM_LSFL_TIMEWARN;
        /// Kernel-internal meaning; no effect for device users.
        const FS = 0x4;
        /// Fail with EEXIST if the lockspace already exists.
        const NEWEXCL = sys::DLM_LSFL_NEWEXCL;
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// Flags of a lockspace removal (`DLM_USER_LSFLG_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct RemoveFlags: u32 {
        /// Never implemented by the kernel; accepted.
        const AUTOFREE = sys::DLM_USER_LSFLG_AUTOFREE;
        /// Release even if locks exist.
        const FORCEFREE = sys::DLM_USER_LSFLG_FORCEFREE;
        const _ = !0;
    }
}
