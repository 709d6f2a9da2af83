//! Shared helpers for docs/semantics.md Part D scenario tests: a fresh lockspace
//! `t`, openers O1, O2, … with their own thread ids, the spec's LOCK /
//! CONV / UNLOCK / CANCEL operations, and assertions on what a
//! non-blocking read returns (`cast(status, sb_flags)`, `bast(mode)`, `—`).

#![allow(dead_code)]

use dlm_core::{
    Errno, LVB_LEN, LockFlags as F, LockParams, LockResult, LsFlags, Lvb, Mode, Name, Request,
    SbFlags, Status,
};
use dlm_engine::{Engine, OwnerId};

#[allow(unused_imports)]
pub use dlm_core::Mode::{Cr as CR, Cw as CW, Ex as EX, Nl as NL, Pr as PR, Pw as PW};

/// Default user pointers: every request passes non-zero values.
pub const CASTADDR: u64 = 0xca57;
pub const CASTPARAM: u64 = 0xca99;
pub const BASTADDR: u64 = 0xba57;
pub const BASTPARAM: u64 = 0xba99;
pub const LKSB: u64 = 0x15b;

pub const NONE: F = F::empty();

/// An LVB holding `s` followed by zero padding ("LVB=X").
pub fn lvb(s: &str) -> Lvb {
    let mut b = [0; LVB_LEN];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b
}

pub const ZEROS: Lvb = [0; LVB_LEN];

/// An opener: its owner id and the thread id it writes with.
#[derive(Clone, Copy, Debug)]
pub struct O {
    pub id: OwnerId,
    pub tid: u32,
}

/// A fresh engine with lockspace `t`.
pub struct T {
    pub e: Engine,
    pub minor: u32,
    next_tid: u32,
}

impl T {
    pub fn new() -> T {
        T::with_engine(Engine::new())
    }

    pub fn with_engine(mut e: Engine) -> T {
        let minor = e
            .create_lockspace(Name::lockspace(b"t").unwrap(), LsFlags::empty())
            .unwrap();
        T {
            e,
            minor,
            next_tid: 1000,
        }
    }

    pub fn open(&mut self) -> O {
        self.next_tid += 1;
        O {
            id: self.e.open(self.minor).unwrap(),
            tid: self.next_tid,
        }
    }

    /// Default parameters for a request on `name`.
    pub fn params(name: &[u8], mode: Mode, flags: F) -> LockParams {
        LockParams {
            mode: mode.raw(),
            flags,
            castparam: CASTPARAM,
            castaddr: CASTADDR,
            bastparam: BASTPARAM,
            bastaddr: BASTADDR,
            lksb: LKSB,
            name: Name::new(name).unwrap(),
            ..LockParams::default()
        }
    }

    pub fn write(&mut self, o: O, req: Request) -> Result<u32, Errno> {
        self.e.write(o.id, &req, o.tid)
    }

    /// LOCK(O, name, mode, flags): the write's return value.
    pub fn lock(&mut self, o: O, name: &str, mode: Mode, flags: F) -> Result<u32, Errno> {
        self.lock_p(o, T::params(name.as_bytes(), mode, flags))
    }

    pub fn lock_p(&mut self, o: O, p: LockParams) -> Result<u32, Errno> {
        self.write(o, Request::Lock(p))
    }

    /// LOCK that must succeed; returns the lock id.
    pub fn take(&mut self, o: O, name: &str, mode: Mode, flags: F) -> u32 {
        self.lock(o, name, mode, flags).expect("LOCK accepted")
    }

    /// CONV(O, id, mode, flags[, lvb]).
    pub fn conv(&mut self, o: O, id: u32, mode: Mode, flags: F) -> Result<u32, Errno> {
        self.conv_lvb(o, id, mode, flags, ZEROS)
    }

    pub fn conv_lvb(
        &mut self,
        o: O,
        id: u32,
        mode: Mode,
        flags: F,
        lvb: Lvb,
    ) -> Result<u32, Errno> {
        let mut p = T::params(b"", mode, flags | F::CONVERT);
        p.lkid = id;
        p.lvb = lvb;
        self.lock_p(o, p)
    }

    /// UNLOCK(O, id, flags).
    pub fn unlock(&mut self, o: O, id: u32, flags: F) -> Result<u32, Errno> {
        self.write(o, Request::Unlock(unlock_params(id, flags)))
    }

    /// CANCEL(O, id).
    pub fn cancel(&mut self, o: O, id: u32) -> Result<u32, Errno> {
        self.unlock(o, id, F::CANCEL)
    }

    /// A non-blocking read.
    pub fn read(&mut self, o: O) -> Option<LockResult> {
        self.e.pop_callback(o.id)
    }

    /// The read returns `cast(status, sb_flags)` for lock `id`.
    #[track_caller]
    pub fn cast(&mut self, o: O, id: u32, status: Status, flags: SbFlags) -> LockResult {
        let r = self.read(o).expect("a callback, got nothing");
        assert!(r.bast_mode.is_none(), "expected a cast, got {r:?}");
        assert_eq!((r.lkid, r.status, r.flags), (id, status, flags), "{r:?}");
        assert_eq!((r.astaddr, r.user_lksb), (CASTADDR, LKSB), "{r:?}");
        r
    }

    /// The read returns `cast(0, 0)` for lock `id`.
    #[track_caller]
    pub fn granted(&mut self, o: O, id: u32) -> LockResult {
        self.cast(o, id, Status::GRANTED, SbFlags::empty())
    }

    /// The read returns `bast(mode)` for lock `id`.
    #[track_caller]
    pub fn bast(&mut self, o: O, id: u32, mode: Mode) {
        let r = self.read(o).expect("a bast, got nothing");
        assert_eq!(r.bast_mode, Some(mode), "{r:?}");
        assert_eq!(r.lkid, id, "{r:?}");
        assert_eq!(
            (r.status, r.flags, r.lvb),
            (Status::GRANTED, SbFlags::empty(), None)
        );
        assert_eq!((r.astaddr, r.astparam), (BASTADDR, BASTPARAM), "{r:?}");
    }

    /// The read returns `—`: nothing pending.
    #[track_caller]
    pub fn nothing(&mut self, o: O) {
        assert_eq!(self.read(o), None);
        assert_eq!(self.e.pending_callbacks(o.id), 0);
    }

    /// Takes a lock and reads its grant.
    pub fn hold(&mut self, o: O, name: &str, mode: Mode, flags: F) -> u32 {
        let id = self.take(o, name, mode, flags);
        let r = self.read(o).expect("grant");
        assert_eq!(
            (r.lkid, r.status, r.bast_mode),
            (id, Status::GRANTED, None),
            "{r:?}"
        );
        id
    }

    /// Probes whether `name` would grant `mode` at once (a NOQUEUE request
    /// by a fresh opener, which is then closed): true for cast(0).
    pub fn probe(&mut self, name: &str, mode: Mode) -> bool {
        let p = self.open();
        let id = self.take(p, name, mode, F::NOQUEUE);
        let r = self.read(p).expect("probe cast");
        assert_eq!(r.lkid, id);
        self.e.close(p.id);
        match r.status {
            Status::GRANTED => true,
            Status::AGAIN => false,
            s => panic!("probe got {s:?}"),
        }
    }
}

/// Parameters of an UNLOCK request as our libdlm sends it (zero-filled).
pub fn unlock_params(id: u32, flags: F) -> LockParams {
    LockParams {
        lkid: id,
        flags,
        castparam: CASTPARAM,
        lksb: LKSB,
        ..LockParams::default()
    }
}
