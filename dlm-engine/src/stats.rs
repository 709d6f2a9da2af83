//! The engine's running totals ([`Engine::stats`]): counts of what it
//! holds and of what it did since it was created, each kept up to date
//! as operations settle, so that reading them costs O(1) however many
//! locks there are (dlmd's STATUS, PROTOCOL.md).

use crate::Engine;
use crate::space::Lockspace;

/// The engine's totals over all its lockspaces ([`Engine::stats`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct EngineStats {
    /// Lockspaces that exist.
    pub lockspaces: usize,
    /// Resources that exist (each has at least one lock object).
    pub resources: usize,
    /// Lock objects that exist: granted, converting, waiting, and
    /// orphans (as a lockspace's dump counts them).
    pub locks: usize,
    /// Grants since the engine was created: each time a request was
    /// granted a mode (a new lock, an upward or downward conversion, at
    /// once or after waiting, its alternate mode included). Refusals,
    /// unlocks, cancellations and orphan adoptions are not grants.
    pub grants: u64,
    /// Blocking callbacks queued to their lock's owner since the engine
    /// was created (after the kernel's suppression of repeated ones; a
    /// callback still queued when its owner closes is counted but never
    /// read).
    pub blocking_callbacks: u64,
}

/// What one lockspace has done since the engine last settled it, and
/// its counts as the engine's totals include them.
#[derive(Default)]
pub(crate) struct Tally {
    /// Grants since the last settle.
    pub grants: u64,
    /// Blocking callbacks queued since the last settle.
    pub basts: u64,
    /// Lock objects included in the engine's total.
    locks: usize,
    /// Resources included in the engine's total.
    resources: usize,
}

/// Moves what lockspace `ls` did since the last call into `totals`.
pub(crate) fn settle(totals: &mut EngineStats, ls: &mut Lockspace) {
    let t = &mut ls.tally;
    totals.grants += std::mem::take(&mut t.grants);
    totals.blocking_callbacks += std::mem::take(&mut t.basts);
    let resources = ls.res.len() - ls.free_res.len();
    totals.locks = totals.locks + ls.nobjects - t.locks;
    totals.resources = totals.resources + resources - t.resources;
    t.locks = ls.nobjects;
    t.resources = resources;
}

/// Takes a removed (settled) lockspace's counts out of `totals`.
pub(crate) fn retire(totals: &mut EngineStats, ls: &Lockspace) {
    totals.locks -= ls.tally.locks;
    totals.resources -= ls.tally.resources;
}

impl Engine {
    /// The engine's totals: what it holds now and what it did since it
    /// was created. O(1).
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            lockspaces: self.by_name.len(),
            ..self.totals
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, EngineStats};
    use dlm_core::{LockFlags, LockParams, LsFlags, Mode, Name, RemoveFlags, Request};

    fn lock(e: &mut Engine, o: crate::OwnerId, mode: Mode, flags: LockFlags, lkid: u32) -> u32 {
        let p = LockParams {
            mode: mode.raw(),
            flags,
            lkid,
            castaddr: 0x1000,
            bastaddr: 0x3000,
            lksb: 0x2000,
            name: Name::new(b"r").unwrap(),
            ..LockParams::default()
        };
        e.write(o, &Request::Lock(p), 1).unwrap()
    }

    #[test]
    fn grants_and_blocking_callbacks_are_counted_exactly() {
        let mut e = Engine::new();
        assert_eq!(e.stats(), EngineStats::default());
        let minor = e
            .create_lockspace(Name::lockspace(b"t").unwrap(), LsFlags::empty())
            .unwrap();
        let (a, b) = (e.open(minor).unwrap(), e.open(minor).unwrap());
        let la = lock(&mut e, a, Mode::Ex, LockFlags::empty(), 0);
        let lb = lock(&mut e, b, Mode::Pr, LockFlags::empty(), 0);
        // a holds EX (1 grant), b waits and a gets one bast.
        let s = e.stats();
        assert_eq!((s.grants, s.blocking_callbacks), (1, 1));
        assert_eq!((s.lockspaces, s.resources, s.locks), (1, 1, 2));
        // A refusal is neither a grant nor (without NOQUEUEBAST) a bast.
        let p = LockParams {
            mode: Mode::Ex.raw(),
            flags: LockFlags::NOQUEUE,
            castaddr: 0x1000,
            lksb: 0x2000,
            name: Name::new(b"r").unwrap(),
            ..LockParams::default()
        };
        e.write(b, &Request::Lock(p), 1).unwrap();
        assert_eq!(e.stats().grants, 1);
        assert_eq!(e.stats().blocking_callbacks, 1);
        // A downward conversion of a is a grant; it lets b in: another.
        lock(&mut e, a, Mode::Pr, LockFlags::CONVERT, la);
        let s = e.stats();
        assert_eq!((s.grants, s.blocking_callbacks), (3, 1));
        // Unlocks are not grants; the lock objects go.
        let u = |lkid| {
            Request::Unlock(LockParams {
                lkid,
                castaddr: 0x1000,
                lksb: 0x2000,
                ..LockParams::default()
            })
        };
        e.write(a, &u(la), 1).unwrap();
        e.write(b, &u(lb), 1).unwrap();
        let s = e.stats();
        assert_eq!((s.grants, s.resources, s.locks), (3, 0, 0));
        // A lockspace removed with its locks takes them out of the totals.
        lock(&mut e, a, Mode::Ex, LockFlags::PERSISTENT, 0);
        e.close(a);
        e.close(b);
        assert_eq!((e.stats().locks, e.stats().resources), (1, 1));
        e.remove_lockspace(minor, RemoveFlags::FORCEFREE).unwrap();
        let s = e.stats();
        assert_eq!((s.lockspaces, s.resources, s.locks), (0, 0, 0));
        assert_eq!((s.grants, s.blocking_callbacks), (4, 1));
    }
}
