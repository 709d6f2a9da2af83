//! The engine's per-resource aggregates (the O(1) grant predicate, the
//! incremental pending grant pass, the bast scan shortcuts) never change
//! a result: random request sequences give identical write returns,
//! callbacks and lock dumps with aggregates on every resource and with
//! none (every query a literal queue walk).

use dlm_core::{LVB_LEN, LockFlags as F, LockParams, LsFlags, Name, Request};
use dlm_engine::{Engine, OwnerId};
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
        lvb: u8,
    },
    Unlock {
        o: usize,
        id: u32,
        flags: u32,
    },
    Deadlock {
        o: usize,
        id: u32,
    },
    Purge {
        o: usize,
        pid: u32,
    },
    Reopen {
        o: usize,
    },
}

const LOCK_FLAGS: [F; 12] = [
    F::NOQUEUE,
    F::NOQUEUEBAST,
    F::VALBLK,
    F::HEADQUE,
    F::NOORDER,
    F::ALTPR,
    F::ALTCW,
    F::PERSISTENT,
    F::EXPEDITE,
    F::IVVALBLK,
    F::ORPHAN,
    F::NOORDER,
];
const CONV_FLAGS: [F; 12] = [
    F::NOQUEUE,
    F::VALBLK,
    F::IVVALBLK,
    F::CONVDEADLK,
    F::NODLCKWT,
    F::QUECVT,
    F::HEADQUE,
    F::NOORDER,
    F::ALTPR,
    F::ALTCW,
    F::PERSISTENT,
    F::NOQUEUEBAST,
];
const UNLOCK_FLAGS: [F; 4] = [F::CANCEL, F::VALBLK, F::IVVALBLK, F::FORCEUNLOCK];

fn pick(set: &[F], bits: u32) -> F {
    set.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(F::empty(), |a, (_, &f)| a | f)
}

fn sparse() -> impl Strategy<Value = u32> {
    // Mostly zero or one flag, sometimes two.
    prop_oneof![3 => Just(0u32), 4 => (0..12u32).prop_map(|b| 1 << b),
        2 => (0..12u32, 0..12u32).prop_map(|(a, b)| (1 << a) | (1 << b))]
}

fn op() -> impl Strategy<Value = Op> {
    let o = || 0..4usize;
    prop_oneof![
        30 => (o(), 0..2u8, 0..6u8, sparse())
            .prop_map(|(o, res, mode, flags)| Op::Lock { o, res, mode, flags }),
        25 => (o(), 1..24u32, 0..6u8, sparse(), 0..3u8)
            .prop_map(|(o, id, mode, flags, lvb)| Op::Convert { o, id, mode, flags, lvb }),
        20 => (o(), 1..24u32, 0..16u32).prop_map(|(o, id, flags)| Op::Unlock { o, id, flags }),
        3 => (o(), 1..24u32).prop_map(|(o, id)| Op::Deadlock { o, id }),
        2 => (o(), 0..3u32).prop_map(|(o, pid)| Op::Purge { o, pid }),
        3 => o().prop_map(|o| Op::Reopen { o }),
    ]
}

struct Side {
    e: Engine,
    minor: u32,
    owners: Vec<OwnerId>,
}

impl Side {
    fn new(threshold: u32) -> Side {
        let mut e = Engine::new();
        e.set_aggregate_threshold(threshold);
        let minor = e
            .create_lockspace(Name::lockspace(b"t").unwrap(), LsFlags::empty())
            .unwrap();
        let owners = (0..4).map(|_| e.open(minor).unwrap()).collect();
        Side { e, minor, owners }
    }

    fn apply(&mut self, op: &Op) -> String {
        let p = |mode: u8, flags: F| LockParams {
            mode,
            flags,
            castaddr: 1,
            castparam: 2,
            bastaddr: 3,
            bastparam: 4,
            lksb: 5,
            ..LockParams::default()
        };
        let (o, req) = match *op {
            Op::Lock {
                o,
                res,
                mode,
                flags,
            } => {
                let mut q = p(mode, pick(&LOCK_FLAGS, flags));
                q.name = Name::new(if res == 0 { b"r" } else { b"s" }).unwrap();
                (o, Request::Lock(q))
            }
            Op::Convert {
                o,
                id,
                mode,
                flags,
                lvb,
            } => {
                let mut q = p(mode, pick(&CONV_FLAGS, flags) | F::CONVERT);
                q.lkid = id;
                q.lvb = [lvb; LVB_LEN];
                (o, Request::Lock(q))
            }
            Op::Unlock { o, id, flags } => {
                let mut q = p(0, pick(&UNLOCK_FLAGS, flags));
                q.lkid = id;
                (o, Request::Unlock(q))
            }
            Op::Deadlock { o, id } => (
                o,
                Request::Deadlock {
                    lkid: id,
                    flags: F::empty(),
                },
            ),
            Op::Purge { o, pid } => (
                o,
                Request::Purge {
                    nodeid: 0,
                    pid: pid + 100,
                },
            ),
            Op::Reopen { o } => {
                self.e.close(self.owners[o]);
                self.owners[o] = self.e.open(self.minor).unwrap();
                return String::from("reopen");
            }
        };
        let tid = 100 + o as u32;
        let ret = self.e.write(self.owners[o], &req, tid);
        let mut out = format!("{ret:?}");
        for &owner in &self.owners {
            while let Some(cb) = self.e.pop_callback(owner) {
                out += &format!("\n{owner:?} {cb:?}");
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_match_queue_walks(ops in prop::collection::vec(op(), 1..250)) {
        let mut with = Side::new(0);
        let mut without = Side::new(u32::MAX);
        for (n, op) in ops.iter().enumerate() {
            let a = with.apply(op);
            let b = without.apply(op);
            prop_assert_eq!(&a, &b, "step {} {:?}", n, op);
            prop_assert_eq!(with.e.dump(with.minor), without.e.dump(without.minor));
        }
    }
}
