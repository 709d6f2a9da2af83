//! dlm-engine: the lock manager, with the kernel DLM's semantics on one
//! node (spec Part C), pure and deterministic: no I/O, no threads, no
//! timers.
//!
//! An [`Engine`] holds lockspaces; each lockspace has openers
//! ([`OwnerId`]), resources and locks. Requests arrive as decoded
//! [`Request`]s, one per device `write()`, and [`Engine::write`] answers
//! exactly what the kernel's `write()` would. Callbacks (completions and
//! blocking callbacks) queue per owner and are taken with
//! [`Engine::pop_callback`], one `read()` each.

#![deny(unsafe_code)]

use dlm_core::{Errno, LockFlags, LockResult, Lvb, LsFlags, Mode, Name, RemoveFlags, Request};

/// One opener of a lockspace (one device fd / one dlmd handle). Opaque,
/// never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct OwnerId(u64);

/// The lock manager: every lockspace of one node.
#[derive(Default)]
pub struct Engine {
    _private: (),
}

impl Engine {
    /// An engine with no lockspaces.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// CREATE_LOCKSPACE: returns the lockspace's minor (a small unique
    /// integer).
    ///
    /// An existing name without NEWEXCL adds one to its creation count
    /// and returns the same minor.
    ///
    /// # Errors
    /// EEXIST for an existing name with NEWEXCL.
    pub fn create_lockspace(&mut self, _name: Name, _flags: LsFlags) -> Result<u32, Errno> {
        Err(Errno::EINVAL)
    }

    /// REMOVE_LOCKSPACE by minor.
    ///
    /// A creation count above 1 is decremented. At 1 the lockspace goes
    /// away, unless it is busy.
    ///
    /// # Errors
    /// ENOENT for an unknown minor; EBUSY if any lock object exists
    /// (orphans included) and FORCEFREE is not given; EBUSY if any opener
    /// is still open, regardless of FORCEFREE (where the kernel would
    /// block: DESIGN.md's deliberate difference).
    pub fn remove_lockspace(&mut self, _minor: u32, _flags: RemoveFlags) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    /// The minor of the lockspace called `name`, if it exists.
    pub fn find_lockspace(&self, _name: &Name) -> Option<u32> {
        None
    }

    /// Opens the lockspace device: a new owner.
    ///
    /// # Errors
    /// ENOENT if no lockspace has this minor.
    pub fn open(&mut self, _minor: u32) -> Result<OwnerId, Errno> {
        Err(Errno::ENOENT)
    }

    /// Closes an owner (spec A.7): persistent locks become orphans (a
    /// pending conversion reverted, a waiting request removed from the
    /// queue but kept as an orphan), the others are force-unlocked with
    /// IVVALBLK, unread callbacks are discarded. Unknown owners are
    /// ignored.
    pub fn close(&mut self, _owner: OwnerId) {}

    /// One device write by `owner`: LOCK (new / CONVERT / ORPHAN adopt),
    /// UNLOCK (plain / CANCEL / FORCEUNLOCK), DEADLOCK or PURGE.
    ///
    /// Returns what the kernel's `write()` returns: the lock id for LOCK,
    /// 0 otherwise. `tid` is the caller's thread id (the owner pid of
    /// orphans, and PURGE's notion of "the caller"). Every PURGE nodeid is
    /// the local node.
    ///
    /// # Errors
    /// The kernel's errnos (spec A.4, C.3, C.6, C.11): EINVAL for bad
    /// arguments, for CREATE/REMOVE requests and for an unknown or closed
    /// owner; ENOENT for an unknown lock id or orphan; EBUSY for a lock
    /// in the wrong state; EAGAIN for an orphan held in another mode.
    pub fn write(&mut self, _owner: OwnerId, _req: &Request, _tid: u32) -> Result<u32, Errno> {
        Err(Errno::EINVAL)
    }

    /// Takes the oldest queued callback of `owner`: exactly what a device
    /// `read()` with a 104-byte buffer returns, the LVB included when the
    /// A.5 rules attach one.
    pub fn pop_callback(&mut self, _owner: OwnerId) -> Option<LockResult> {
        None
    }

    /// The number of queued callbacks of `owner` (poll readiness); 0 for
    /// an unknown owner.
    pub fn pending_callbacks(&self, _owner: OwnerId) -> usize {
        0
    }

    /// A snapshot of lockspace `minor` for `dlm locks` and dlmd's dump,
    /// or `None` if no lockspace has this minor.
    pub fn dump(&self, _minor: u32) -> Option<LockspaceDump> {
        None
    }
}

/// A snapshot of one lockspace ([`Engine::dump`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LockspaceDump {
    /// The lockspace name.
    pub name: Name,
    /// The lockspace's minor.
    pub minor: u32,
    /// How many times it was created without being removed.
    pub create_count: u32,
    /// The number of open owners.
    pub openers: usize,
    /// Its resources, in no particular order.
    pub resources: Vec<ResourceDump>,
}

/// One resource of a [`LockspaceDump`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResourceDump {
    /// The resource name (as given by the request that created it).
    pub name: Name,
    /// The resource's LVB, if any lock on it has used one.
    pub lvb: Option<Lvb>,
    /// Whether the LVB is marked invalid (VALNOTVALID).
    pub lvb_invalid: bool,
    /// The granted queue, in order.
    pub granted: Vec<LockDump>,
    /// The convert queue, in order.
    pub converting: Vec<LockDump>,
    /// The wait queue, in order.
    pub waiting: Vec<LockDump>,
}

/// Who owns a lock in a [`ResourceDump`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockOwner {
    /// An open owner.
    Owner(OwnerId),
    /// An orphan: its owner closed, it was PERSISTENT.
    Orphan,
}

/// One lock of a [`ResourceDump`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LockDump {
    /// The lock id.
    pub id: u32,
    /// The granted mode, `None` while a new request waits.
    pub granted: Option<Mode>,
    /// The requested mode (equal to the granted mode when idle).
    pub requested: Mode,
    /// The owner.
    pub owner: LockOwner,
    /// The owner pid (the tid of the request that created it).
    pub pid: u32,
    /// The flags of the lock's latest request.
    pub flags: LockFlags,
}
