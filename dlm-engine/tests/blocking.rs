//! `dlm_core::dump::blocked_by` (the per-resource "what blocks this
//! request" function that dlmd's dump and the kernel's dump are analyzed
//! with) agrees with the engine's own grant logic on random request
//! sequences:
//! - at rest a waiting or converting request without a blocker is one
//!   the engine grants at the next grant pass on its resource (as the
//!   kernel, the engine does not run a full pass after every change: a
//!   request queued at the head with HEADQUE, or one freed by a
//!   CONVDEADLK demotion, waits for the next unlock, cancel or
//!   conversion on the resource), and every one with a blocker stays
//!   ungranted through such a pass;
//! - removing exactly a request's blockers gets it granted (for requests
//!   on resources without NOORDER requests).

use dlm_core::dump::{LockInfo, LockState, blocked_by};
use dlm_core::{LockFlags as F, LockParams, LsFlags, Name, Request};
use dlm_engine::{Engine, LockDump, LockOwner, OwnerId, ResourceDump};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Lock {
        o: usize,
        res: u8,
        mode: u8,
        flags: u32,
    },
    Convert {
        o: usize,
        id: u32,
        mode: u8,
        flags: u32,
    },
    Unlock {
        o: usize,
        id: u32,
        cancel: bool,
    },
}

const LOCK_FLAGS: [F; 4] = [F::NOORDER, F::EXPEDITE, F::NOQUEUE, F::HEADQUE];
const CONV_FLAGS: [F; 5] = [
    F::NOORDER,
    F::NODLCKWT,
    F::QUECVT,
    F::CONVDEADLK,
    F::NODLCKWT,
];

fn pick(set: &[F], bits: u32) -> F {
    set.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(F::empty(), |a, (_, &f)| a | f)
}

fn sparse() -> impl Strategy<Value = u32> {
    prop_oneof![4 => Just(0u32), 3 => (0..5u32).prop_map(|b| 1 << b)]
}

fn op() -> impl Strategy<Value = Op> {
    let o = || 0..4usize;
    prop_oneof![
        40 => (o(), 0..2u8, 0..6u8, sparse())
            .prop_map(|(o, res, mode, flags)| Op::Lock { o, res, mode, flags }),
        30 => (o(), 1..16u32, 0..6u8, sparse())
            .prop_map(|(o, id, mode, flags)| Op::Convert { o, id, mode, flags }),
        15 => (o(), 1..16u32, any::<bool>()).prop_map(|(o, id, cancel)| Op::Unlock { o, id, cancel }),
    ]
}

struct Side {
    e: Engine,
    minor: u32,
    owners: Vec<OwnerId>,
}

fn params(mode: u8, flags: F) -> LockParams {
    LockParams {
        mode,
        flags,
        castaddr: 1,
        castparam: 2,
        bastaddr: 3,
        bastparam: 4,
        lksb: 5,
        ..LockParams::default()
    }
}

impl Side {
    fn new() -> Side {
        let mut e = Engine::new();
        let minor = e
            .create_lockspace(Name::lockspace(b"t").unwrap(), LsFlags::empty())
            .unwrap();
        let owners = (0..4).map(|_| e.open(minor).unwrap()).collect();
        Side { e, minor, owners }
    }

    fn write(&mut self, o: usize, req: Request) {
        let _ = self.e.write(self.owners[o], &req, 100 + o as u32);
        for &owner in &self.owners {
            while self.e.pop_callback(owner).is_some() {}
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Lock {
                o,
                res,
                mode,
                flags,
            } => {
                let mut q = params(mode, pick(&LOCK_FLAGS, flags));
                q.name = Name::new(if res == 0 { b"r" } else { b"s" }).unwrap();
                self.write(o, Request::Lock(q));
            }
            Op::Convert { o, id, mode, flags } => {
                let mut q = params(mode, pick(&CONV_FLAGS, flags) | F::CONVERT);
                q.lkid = id;
                self.write(o, Request::Lock(q));
            }
            Op::Unlock { o, id, cancel } => {
                let mut q = params(0, if cancel { F::CANCEL } else { F::empty() });
                q.lkid = id;
                self.write(o, Request::Unlock(q));
            }
        }
    }

    /// Runs a grant pass on resource `name` (a grant pass follows an
    /// unlock): owner 0 takes an NL lock on it, granted at once, and
    /// unlocks it.
    fn grant_pass(&mut self, name: &Name) {
        let mut q = params(0, F::empty());
        q.name = *name;
        let id = self
            .e
            .write(self.owners[0], &Request::Lock(q), 100)
            .unwrap();
        let mut q = params(0, F::empty());
        q.lkid = id;
        self.write(0, Request::Unlock(q));
    }

    fn resources(&self) -> Vec<ResourceDump> {
        self.e.dump(self.minor).unwrap().resources
    }

    /// The owner index of a lock.
    fn owner_of(&self, l: &LockDump) -> usize {
        match l.owner {
            LockOwner::Owner(id) => self.owners.iter().position(|o| *o == id).unwrap(),
            _ => panic!("no orphans here"),
        }
    }
}

/// The engine's queues as the dump model's locks, in queue order.
fn model(r: &ResourceDump) -> Vec<LockInfo> {
    let one = |l: &LockDump, state| l.model(state);
    let mut v: Vec<LockInfo> = r
        .granted
        .iter()
        .map(|l| one(l, LockState::Granted))
        .collect();
    v.extend(r.converting.iter().map(|l| one(l, LockState::Converting)));
    v.extend(r.waiting.iter().map(|l| one(l, LockState::Waiting)));
    v
}

fn find(r: &ResourceDump, id: u32) -> Option<(&LockDump, LockState)> {
    fn q(v: &[LockDump], id: u32, s: LockState) -> Option<(&LockDump, LockState)> {
        v.iter().find(|l| l.id == id).map(|l| (l, s))
    }
    q(&r.granted, id, LockState::Granted)
        .or_else(|| q(&r.converting, id, LockState::Converting))
        .or_else(|| q(&r.waiting, id, LockState::Waiting))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn blocked_by_matches_the_engines_grants(
        ops in prop::collection::vec(op(), 1..80),
        pick_req in any::<prop::sample::Index>(),
    ) {
        let mut side = Side::new();
        for op in &ops {
            side.apply(op);
            for r in side.resources() {
                let locks = model(&r);
                let b = blocked_by(&locks);
                for (l, b) in locks.iter().zip(&b) {
                    prop_assert!(
                        l.is_request() || b.is_empty(),
                        "granted lock {:#x} blocked by {:?} in {:?}", l.lkid, b, r
                    );
                }
                let free: Vec<u32> = locks
                    .iter()
                    .zip(&b)
                    .filter(|(l, b)| l.is_request() && b.is_empty())
                    .map(|(l, _)| l.lkid)
                    .collect();
                if free.is_empty() {
                    continue;
                }
                // Requests with no blocker wait only for a grant pass:
                // after one they are granted, and the others are not.
                let blocked: Vec<u32> = locks
                    .iter()
                    .zip(&b)
                    .filter(|(l, b)| l.is_request() && !b.is_empty())
                    .map(|(l, _)| l.lkid)
                    .collect();
                side.grant_pass(&r.name);
                let after = side.resources().into_iter().find(|x| x.name == r.name).unwrap();
                for id in free {
                    let state = find(&after, id).map(|(_, s)| s);
                    prop_assert_eq!(
                        state, Some(LockState::Granted),
                        "{:#x} had no blocker in {:?} but a grant pass left it: {:?}", id, r, after
                    );
                }
                let noorder = locks.iter().any(|l| l.flags.iter().any(|f| f == "NOORDER"));
                for id in blocked.into_iter().filter(|_| !noorder) {
                    let state = find(&after, id).map(|(_, s)| s);
                    prop_assert!(
                        state != Some(LockState::Granted),
                        "{:#x} had a blocker in {:?} but a grant pass granted it: {:?}", id, r, after
                    );
                }
            }
        }
        // Remove one request's blockers, and only them: it is granted.
        let requests: Vec<(ResourceDump, u32, Vec<u32>)> = side
            .resources()
            .into_iter()
            .flat_map(|r| {
                let locks = model(&r);
                let b = blocked_by(&locks);
                let noorder = locks.iter().any(|l| l.flags.iter().any(|f| f == "NOORDER"));
                locks
                    .iter()
                    .zip(b)
                    // With NOORDER requests on the resource the grant
                    // order is not the queue order: a lock that is no
                    // blocker now may be granted first and block it then.
                    .filter(|(l, _)| l.is_request() && !noorder)
                    .map(|(l, b)| (r.clone(), l.lkid, b))
                    .collect::<Vec<_>>()
            })
            .collect();
        if requests.is_empty() {
            return Ok(());
        }
        let (r, id, blockers) = requests[pick_req.index(requests.len())].clone();
        let want = find(&r, id).unwrap().0.requested;
        // Each blocker as it is now (removing one may have granted the
        // next): cancel what it requests, unlock what it holds.
        let now = |side: &Side, b: u32| {
            let r = side.resources().into_iter().find(|x| x.name == r.name)?;
            find(&r, b).map(|(l, s)| (*l, s))
        };
        for b in blockers {
            let Some((l, state)) = now(&side, b) else { continue };
            let o = side.owner_of(&l);
            if state != LockState::Granted {
                let mut q = params(0, F::CANCEL);
                q.lkid = b;
                side.write(o, Request::Unlock(q));
            }
            if now(&side, b).is_some_and(|(l, _)| l.granted.is_some()) {
                let mut q = params(0, F::empty());
                q.lkid = b;
                side.write(o, Request::Unlock(q));
            }
        }
        let after = side.resources().into_iter().find(|x| x.name == r.name).unwrap();
        let (l, state) = find(&after, id).unwrap();
        prop_assert_eq!(state, LockState::Granted, "{:#x} not granted: {:?}", id, after);
        prop_assert_eq!(l.granted, want);
    }
}
