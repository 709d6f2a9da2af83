//! Differential test of `dlm_engine::Engine` against the literal reference
//! model of the `dlm-model` crate (docs/semantics.md Part C). The Part D
//! scenarios run on both, each checked against the spec, in the `dlm-tests`
//! crate's scenario table (`tests/tests/scenarios.rs`).
//!
//! The randomized test drives both through long random sequences of device
//! writes from 3–5 openers on 2–3 small resource names (so there is
//! contention), invalid requests included, and after every step compares
//! every write's return value and every opener's callbacks (kind, status,
//! flags, bast mode, LVB bytes, pointers, order), then checks the model's
//! invariants. Size it with `DLM_DIFF_CASES` (default 2000) and
//! `DLM_DIFF_STEPS` (maximum steps per case, default 200).

use dlm_core::{
    Errno, LVB_LEN, LockFlags as F, LockParams, LockResult, LsFlags, Mode, Name, RemoveFlags,
    Request,
};
use dlm_engine::{Engine, OwnerId as EOwner};
use dlm_model::{Model, OwnerId as MOwner};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::fmt;

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// Resource names: "r\0" names the same resource as "r" (zero-padded
/// equality) but not for orphan adoption (exact length).
const NAMES: [&[u8]; 3] = [b"r", b"s", b"r\0"];

/// Opaque user pointers, as small selectors (0 = a zero pointer).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ptrs {
    cast: u8,
    castparam: u8,
    bast: u8,
    bastparam: u8,
    lksb: u8,
}

impl Ptrs {
    fn castaddr(self) -> u64 {
        if self.cast == 0 {
            0
        } else {
            0xCA00 + u64::from(self.cast)
        }
    }
    fn castparam(self) -> u64 {
        if self.castparam == 0 {
            0
        } else {
            0xC900 + u64::from(self.castparam)
        }
    }
    fn bastaddr(self) -> u64 {
        if self.bast == 0 {
            0
        } else {
            0xBA00 + u64::from(self.bast)
        }
    }
    fn bastparam(self) -> u64 {
        if self.bastparam == 0 {
            0
        } else {
            0xB900 + u64::from(self.bastparam)
        }
    }
    fn lksb(self) -> u64 {
        if self.lksb == 0 {
            0
        } else {
            0x5B00 + u64::from(self.lksb)
        }
    }
}

impl fmt::Debug for Ptrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cast={:#x}/{:#x} bast={:#x}/{:#x} lksb={:#x}",
            self.castaddr(),
            self.castparam(),
            self.bastaddr(),
            self.bastparam(),
            self.lksb()
        )
    }
}

/// Which lock an operation names.
#[derive(Clone, Copy)]
enum Target {
    /// The n-th (modulo) existing non-orphan lock id, ascending. Orphans
    /// are only reached by adoption and purge: the kernel's by-id paths on
    /// an orphan touch its closed opener (`dlm_user_unlock` moves it to that
    /// opener's list), which the spec does not define.
    Nth(u8),
    /// A raw id (0, or one that does not exist).
    Raw(u32),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Nth(n) => write!(f, "lock#{n}"),
            Target::Raw(id) => write!(f, "id {id}"),
        }
    }
}

/// Whose pid a PURGE names.
#[derive(Clone, Copy, Debug)]
enum Pid {
    Zero,
    Own,
    NextOwner,
    Nobody,
}

#[derive(Clone)]
enum Op {
    Lock {
        o: u8,
        res: u8,
        mode: u8,
        flags: F,
        p: Ptrs,
    },
    Convert {
        o: u8,
        t: Target,
        mode: u8,
        flags: F,
        p: Ptrs,
        lvb: u8,
    },
    Unlock {
        o: u8,
        t: Target,
        flags: F,
        p: Ptrs,
        lvb: u8,
    },
    Cancel {
        o: u8,
        t: Target,
        p: Ptrs,
    },
    Deadlock {
        o: u8,
        t: Target,
        flags: F,
    },
    Adopt {
        o: u8,
        res: u8,
        mode: u8,
        flags: F,
        p: Ptrs,
    },
    Purge {
        o: u8,
        pid: Pid,
    },
    /// Close the opener and open a new one in its slot.
    Reopen {
        o: u8,
    },
    /// A write from the slot's previous (closed) opener.
    Stale {
        o: u8,
        t: Target,
    },
    CreateLs,
    RemoveLs {
        force: bool,
    },
}

fn mode_name(mode: u8) -> String {
    Mode::from_raw(mode.into()).map_or_else(|_| format!("mode{mode}"), |m| m.name().to_string())
}

fn flag_names(flags: F) -> String {
    if flags.is_empty() {
        return "0".into();
    }
    let s: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
    s.join("|")
}

fn name_str(res: u8) -> String {
    Name::new(NAMES[res as usize]).unwrap().to_string()
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Lock {
                o,
                res,
                mode,
                flags,
                p,
            } => {
                write!(
                    f,
                    "O{o} LOCK \"{}\" {} {} {p:?}",
                    name_str(res),
                    mode_name(mode),
                    flag_names(flags)
                )
            }
            Op::Convert {
                o,
                t,
                mode,
                flags,
                p,
                lvb,
            } => write!(
                f,
                "O{o} CONV {t:?} {} {} lvb={lvb} {p:?}",
                mode_name(mode),
                flag_names(flags)
            ),
            Op::Unlock {
                o,
                t,
                flags,
                p,
                lvb,
            } => {
                write!(f, "O{o} UNLOCK {t:?} {} lvb={lvb} {p:?}", flag_names(flags))
            }
            Op::Cancel { o, t, p } => write!(f, "O{o} CANCEL {t:?} {p:?}"),
            Op::Deadlock { o, t, flags } => write!(f, "O{o} DEADLOCK {t:?} {}", flag_names(flags)),
            Op::Adopt {
                o,
                res,
                mode,
                flags,
                p,
            } => write!(
                f,
                "O{o} ADOPT \"{}\" {} {} {p:?}",
                name_str(res),
                mode_name(mode),
                flag_names(flags)
            ),
            Op::Purge { o, pid } => write!(f, "O{o} PURGE pid={pid:?}"),
            Op::Reopen { o } => write!(f, "O{o} CLOSE+REOPEN"),
            Op::Stale { o, t } => write!(f, "O{o}(closed) UNLOCK {t:?}"),
            Op::CreateLs => write!(f, "CREATE_LOCKSPACE t"),
            Op::RemoveLs { force } => write!(f, "REMOVE_LOCKSPACE t force={force}"),
        }
    }
}

/// One step: an operation, and whether the openers' callbacks are read
/// afterwards (unread callbacks are counted, and stay queued).
#[derive(Clone)]
struct Step {
    op: Op,
    read: bool,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}{}",
            self.op,
            if self.read { "" } else { " (unread)" }
        )
    }
}

/// A whole random case.
#[derive(Clone)]
struct Case {
    owners: u8,
    names: u8,
    steps: Vec<Step>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = (0..self.names)
            .map(|n| format!("\"{}\"", name_str(n)))
            .collect();
        writeln!(
            f,
            "{} openers O0..O{}, names {}:",
            self.owners,
            self.owners - 1,
            names.join(" ")
        )?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:3}: {s:?}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn flags_from(common: &[F], rare: &[F]) -> impl Strategy<Value = F> + use<> {
    (
        prop::sample::subsequence(common.to_vec(), 0..=2),
        prop_oneof![8 => Just(None), 1 => prop::sample::select(rare.to_vec()).prop_map(Some)],
    )
        .prop_map(|(c, r)| c.into_iter().chain(r).fold(F::empty(), |a, b| a | b))
}

fn lock_flags() -> impl Strategy<Value = F> {
    flags_from(
        &[
            F::NOQUEUE,
            F::NOQUEUEBAST,
            F::VALBLK,
            F::HEADQUE,
            F::NOORDER,
            F::ALTPR,
            F::ALTCW,
            F::PERSISTENT,
            F::VALBLK,
            F::NOQUEUE,
        ],
        &[
            F::EXPEDITE,
            F::IVVALBLK,
            F::QUECVT,
            F::CONVDEADLK,
            F::NODLCKWT,
            F::ORPHAN,
            F::FORCEUNLOCK,
            F::FORCEUNLOCK,
        ],
    )
}

fn convert_flags() -> impl Strategy<Value = F> {
    flags_from(
        &[
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
            F::VALBLK,
        ],
        &[F::EXPEDITE, F::ORPHAN, F::EXPEDITE | F::NOQUEUE],
    )
    .prop_map(|f| f | F::CONVERT)
}

fn unlock_flags() -> impl Strategy<Value = F> {
    flags_from(
        &[F::VALBLK, F::IVVALBLK, F::FORCEUNLOCK],
        &[F::CONVERT, F::FORCEUNLOCK | F::CANCEL, F::WAIT],
    )
}

fn deadlock_flags() -> impl Strategy<Value = F> {
    prop_oneof![
        6 => Just(F::empty()),
        1 => Just(F::CANCEL),
        1 => Just(F::VALBLK),
        1 => Just(F::IVVALBLK),
        1 => Just(F::FORCEUNLOCK),
        1 => Just(F::CONVERT),
    ]
}

fn mode() -> impl Strategy<Value = u8> {
    prop_oneof![40 => 0..=5u8, 1 => Just(6u8)]
}

/// Conversions mostly go up, where they block and deadlock.
fn convert_mode() -> impl Strategy<Value = u8> {
    prop_oneof![40 => 0..=5u8, 30 => 3..=5u8, 1 => Just(6u8)]
}

fn ptrs() -> impl Strategy<Value = Ptrs> {
    let nonzero = || prop_oneof![20 => 1..=3u8, 1 => Just(0u8)];
    (nonzero(), 0..=3u8, 0..=2u8, 0..=3u8, nonzero()).prop_map(
        |(cast, castparam, bast, bastparam, lksb)| Ptrs {
            cast,
            castparam,
            bast,
            bastparam,
            lksb,
        },
    )
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        12 => any::<u8>().prop_map(Target::Nth),
        1 => prop::sample::select(vec![0u32, 9999]).prop_map(Target::Raw),
    ]
}

/// Flags for the conversions of a "hot" case: the ones that reorder,
/// deadlock and demote.
fn hot_convert_flags() -> impl Strategy<Value = F> {
    flags_from(
        &[
            F::CONVDEADLK,
            F::NODLCKWT,
            F::HEADQUE,
            F::QUECVT,
            F::NOORDER,
            F::ALTCW,
            F::ALTPR,
            F::NOQUEUE,
            F::VALBLK,
            F::CONVDEADLK,
            F::NODLCKWT,
        ],
        &[F::NOQUEUEBAST],
    )
    .prop_map(|f| f | F::CONVERT)
}

/// One operation. A `hot` case has one resource, weak new locks and
/// conversions up, with the flags that make conversions interact.
fn op(hot: bool) -> impl Strategy<Value = Op> {
    let o = || 0..5u8;
    let res = || 0..3u8;
    let (lock_mode, conv_mode, conv_flags) = if hot {
        (
            prop_oneof![0..=3u8].boxed(),
            prop_oneof![2..=5u8].boxed(),
            hot_convert_flags().boxed(),
        )
    } else {
        (
            mode().boxed(),
            convert_mode().boxed(),
            convert_flags().boxed(),
        )
    };
    prop_oneof![
        30 => (o(), res(), lock_mode, lock_flags(), ptrs())
            .prop_map(|(o, res, mode, flags, p)| Op::Lock { o, res, mode, flags, p }),
        25 => (o(), target(), conv_mode, conv_flags, ptrs(), 0..4u8)
            .prop_map(|(o, t, mode, flags, p, lvb)| Op::Convert { o, t, mode, flags, p, lvb }),
        15 => (o(), target(), unlock_flags(), ptrs(), 0..4u8)
            .prop_map(|(o, t, flags, p, lvb)| Op::Unlock { o, t, flags, p, lvb }),
        8 => (o(), target(), ptrs()).prop_map(|(o, t, p)| Op::Cancel { o, t, p }),
        4 => (o(), target(), deadlock_flags()).prop_map(|(o, t, flags)| Op::Deadlock { o, t, flags }),
        4 => (o(), res(), mode(), prop::sample::select(vec![F::ORPHAN, F::ORPHAN | F::PERSISTENT]), ptrs())
            .prop_map(|(o, res, mode, flags, p)| Op::Adopt { o, res, mode, flags, p }),
        3 => (o(), prop::sample::select(vec![Pid::Zero, Pid::Own, Pid::NextOwner, Pid::Nobody]))
            .prop_map(|(o, pid)| Op::Purge { o, pid }),
        4 => o().prop_map(|o| Op::Reopen { o }),
        1 => (o(), target()).prop_map(|(o, t)| Op::Stale { o, t }),
        1 => Just(Op::CreateLs),
        1 => any::<bool>().prop_map(|force| Op::RemoveLs { force }),
    ]
}

fn case(max_steps: usize) -> impl Strategy<Value = Case> {
    (any::<bool>(), 3..=5u8, 2..=3u8)
        .prop_flat_map(move |(hot, owners, names)| {
            let names = if hot { 1 } else { names };
            let steps = prop::collection::vec(
                (op(hot), prop_oneof![5 => Just(true), 1 => Just(false)]),
                1..=max_steps,
            );
            (Just(owners), Just(names), steps)
        })
        .prop_map(|(owners, names, steps)| {
            // Map opener and name selectors into range here, so that the
            // printed case shows exactly what runs.
            let steps = steps
                .into_iter()
                .map(|(mut op, read)| {
                    match &mut op {
                        Op::Lock { o, res, .. } | Op::Adopt { o, res, .. } => {
                            *o %= owners;
                            *res %= names;
                        }
                        Op::Convert { o, .. }
                        | Op::Unlock { o, .. }
                        | Op::Cancel { o, .. }
                        | Op::Deadlock { o, .. }
                        | Op::Purge { o, .. }
                        | Op::Reopen { o }
                        | Op::Stale { o, .. } => *o %= owners,
                        Op::CreateLs | Op::RemoveLs { .. } => {}
                    }
                    Step { op, read }
                })
                .collect();
            Case {
                owners,
                names,
                steps,
            }
        })
}

// ---------------------------------------------------------------------------
// Running a case on both
// ---------------------------------------------------------------------------

struct Slot<EO> {
    e: EO,
    m: MOwner,
    /// The previous opener of this slot, closed.
    stale: Option<(EO, MOwner)>,
    tid: u32,
}

/// The API both sides share (spec'd in the engine's lib.rs).
trait Dlm {
    type Owner: Copy;
    fn create_lockspace(&mut self, name: Name, flags: LsFlags) -> Result<u32, Errno>;
    fn remove_lockspace(&mut self, minor: u32, flags: RemoveFlags) -> Result<(), Errno>;
    fn open(&mut self, minor: u32) -> Result<Self::Owner, Errno>;
    fn close(&mut self, owner: Self::Owner);
    fn write(&mut self, owner: Self::Owner, req: &Request, tid: u32) -> Result<u32, Errno>;
    fn pop_callback(&mut self, owner: Self::Owner) -> Option<LockResult>;
    fn pending_callbacks(&self, owner: Self::Owner) -> usize;
}

macro_rules! impl_dlm {
    ($t:ty, $o:ty) => {
        impl Dlm for $t {
            type Owner = $o;
            fn create_lockspace(&mut self, name: Name, flags: LsFlags) -> Result<u32, Errno> {
                <$t>::create_lockspace(self, name, flags)
            }
            fn remove_lockspace(&mut self, minor: u32, flags: RemoveFlags) -> Result<(), Errno> {
                <$t>::remove_lockspace(self, minor, flags)
            }
            fn open(&mut self, minor: u32) -> Result<$o, Errno> {
                <$t>::open(self, minor)
            }
            fn close(&mut self, owner: $o) {
                <$t>::close(self, owner)
            }
            fn write(&mut self, owner: $o, req: &Request, tid: u32) -> Result<u32, Errno> {
                <$t>::write(self, owner, req, tid)
            }
            fn pop_callback(&mut self, owner: $o) -> Option<LockResult> {
                <$t>::pop_callback(self, owner)
            }
            fn pending_callbacks(&self, owner: $o) -> usize {
                <$t>::pending_callbacks(self, owner)
            }
        }
    };
}

impl_dlm!(Engine, EOwner);
impl_dlm!(Model, MOwner);

struct Pair<E: Dlm = Engine> {
    engine: E,
    model: Model,
    e_minor: u32,
    m_minor: u32,
    slots: Vec<Slot<E::Owner>>,
    /// A transcript of the run so far, for the failure message.
    log: String,
}

fn params(mode: u8, flags: F, lkid: u32, p: Ptrs, lvb: u8, name: &[u8]) -> LockParams {
    LockParams {
        mode,
        flags,
        lkid,
        parent: 0,
        xid: 0,
        timeout: 0,
        castparam: p.castparam(),
        castaddr: p.castaddr(),
        bastparam: p.bastparam(),
        bastaddr: p.bastaddr(),
        lksb: p.lksb(),
        lvb: [lvb; LVB_LEN],
        name: Name::new(name).unwrap(),
    }
}

fn show(r: &LockResult) -> String {
    let lvb = match r.lvb {
        None => String::new(),
        Some(l) if l.iter().all(|&b| b == l[0]) => format!(" lvb=[{};32]", l[0]),
        Some(l) => format!(" lvb={l:?}"),
    };
    match r.bast_mode {
        Some(m) => format!(
            "bast({m}) id {} ast={:#x}/{:#x} lksb={:#x} st={} fl={:?}",
            r.lkid,
            r.astaddr,
            r.astparam,
            r.user_lksb,
            r.status.raw(),
            r.flags
        ),
        None => format!(
            "cast({}, fl {:#x}) id {} ast={:#x}/{:#x} lksb={:#x}{lvb}",
            r.status,
            r.flags.bits(),
            r.lkid,
            r.astaddr,
            r.astparam,
            r.user_lksb
        ),
    }
}

impl<E: Dlm> Pair<E> {
    fn new(mut engine: E, owners: u8) -> Pair<E> {
        let mut model = Model::new();
        let name = Name::lockspace(b"t").unwrap();
        let e_minor = engine
            .create_lockspace(name, LsFlags::empty())
            .expect("engine create");
        let m_minor = model
            .create_lockspace(name, LsFlags::empty())
            .expect("model create");
        let slots = (0..owners)
            .map(|i| Slot {
                e: engine.open(e_minor).expect("engine open"),
                m: model.open(m_minor).expect("model open"),
                stale: None,
                tid: 1000 + u32::from(i),
            })
            .collect();
        Pair {
            engine,
            model,
            e_minor,
            m_minor,
            slots,
            log: String::new(),
        }
    }

    fn lkid(&self, t: Target) -> u32 {
        match t {
            Target::Raw(id) => id,
            Target::Nth(n) => {
                let ids = self.model.live_ids(self.m_minor);
                // With no lock (orphans aside), an id nobody has.
                if ids.is_empty() {
                    9999
                } else {
                    ids[n as usize % ids.len()]
                }
            }
        }
    }

    /// One write on both sides; the returns must agree.
    fn write(&mut self, o: u8, req: Request) -> Result<(), String> {
        let s = &self.slots[o as usize];
        let e = self.engine.write(s.e, &req, s.tid);
        let m = self.model.write(s.m, &req, s.tid);
        self.log.push_str(&format!("      write -> {m:?}\n"));
        if e != m {
            return Err(format!(
                "write returned {e:?} from the engine, {m:?} from the model"
            ));
        }
        Ok(())
    }

    fn run(&mut self, step: &Step) -> Result<(), String> {
        self.log.push_str(&format!("  {step:?}\n"));
        match step.op {
            Op::Lock {
                o,
                res,
                mode,
                flags,
                p,
            } => {
                self.write(
                    o,
                    Request::Lock(params(mode, flags, 0, p, 0, NAMES[res as usize])),
                )?;
            }
            Op::Adopt {
                o,
                res,
                mode,
                flags,
                p,
            } => {
                self.write(
                    o,
                    Request::Lock(params(mode, flags, 0, p, 0, NAMES[res as usize])),
                )?;
            }
            Op::Convert {
                o,
                t,
                mode,
                flags,
                p,
                lvb,
            } => {
                let id = self.lkid(t);
                self.log.push_str(&format!("      (lock id {id})\n"));
                self.write(o, Request::Lock(params(mode, flags, id, p, lvb, b"")))?;
            }
            Op::Unlock {
                o,
                t,
                flags,
                p,
                lvb,
            } => {
                let id = self.lkid(t);
                self.log.push_str(&format!("      (lock id {id})\n"));
                self.write(o, Request::Unlock(params(0, flags, id, p, lvb, b"")))?;
            }
            Op::Cancel { o, t, p } => {
                let id = self.lkid(t);
                self.log.push_str(&format!("      (lock id {id})\n"));
                self.write(o, Request::Unlock(params(0, F::CANCEL, id, p, 0, b"")))?;
            }
            Op::Deadlock { o, t, flags } => {
                let id = self.lkid(t);
                self.log.push_str(&format!("      (lock id {id})\n"));
                self.write(o, Request::Deadlock { lkid: id, flags })?;
            }
            Op::Purge { o, pid } => {
                let n = self.slots.len();
                let pid = match pid {
                    Pid::Zero => 0,
                    Pid::Own => self.slots[o as usize].tid,
                    Pid::NextOwner => self.slots[(o as usize + 1) % n].tid,
                    Pid::Nobody => 4242,
                };
                self.log.push_str(&format!("      (pid {pid})\n"));
                self.write(o, Request::Purge { nodeid: 0, pid })?;
            }
            Op::Reopen { o } => {
                let s = &mut self.slots[o as usize];
                self.engine.close(s.e);
                self.model.close(s.m);
                s.stale = Some((s.e, s.m));
                s.e = self
                    .engine
                    .open(self.e_minor)
                    .map_err(|e| format!("engine open: {e:?}"))?;
                s.m = self
                    .model
                    .open(self.m_minor)
                    .map_err(|e| format!("model open: {e:?}"))?;
            }
            Op::Stale { o, t } => {
                let id = self.lkid(t);
                let s = &self.slots[o as usize];
                if let Some((eo, mo)) = s.stale {
                    let req = Request::Unlock(params(0, F::empty(), id, Ptrs::ZERO, 0, b""));
                    let e = self.engine.write(eo, &req, s.tid);
                    let m = self.model.write(mo, &req, s.tid);
                    self.log.push_str(&format!("      write -> {m:?}\n"));
                    if e != m || m != Err(Errno::EINVAL) {
                        return Err(format!("closed opener's write: engine {e:?}, model {m:?}"));
                    }
                }
            }
            Op::CreateLs => {
                let name = Name::lockspace(b"t").unwrap();
                let e = self.engine.create_lockspace(name, LsFlags::empty());
                let m = self.model.create_lockspace(name, LsFlags::empty());
                self.log.push_str(&format!("      -> {m:?}\n"));
                if e != Ok(self.e_minor) || m != Ok(self.m_minor) {
                    return Err(format!("create: engine {e:?}, model {m:?}"));
                }
            }
            Op::RemoveLs { force } => {
                let flags = if force {
                    RemoveFlags::FORCEFREE
                } else {
                    RemoveFlags::empty()
                };
                let e = self.engine.remove_lockspace(self.e_minor, flags);
                let m = self.model.remove_lockspace(self.m_minor, flags);
                self.log.push_str(&format!("      -> {m:?}\n"));
                if e != m {
                    return Err(format!("remove: engine {e:?}, model {m:?}"));
                }
                // Openers are always open here, so the lockspace survives.
                if m.is_ok()
                    && self
                        .model
                        .find_lockspace(&Name::lockspace(b"t").unwrap())
                        .is_none()
                {
                    return Err("the lockspace went away while open".into());
                }
            }
        }
        self.compare_callbacks(step.read)?;
        self.model
            .check_invariants()
            .map_err(|e| format!("model invariant: {e}"))
    }

    /// Compares every opener's queued callbacks; reads them if `read`.
    fn compare_callbacks(&mut self, read: bool) -> Result<(), String> {
        for (i, s) in self.slots.iter().enumerate() {
            let (pe, pm) = (
                self.engine.pending_callbacks(s.e),
                self.model.pending_callbacks(s.m),
            );
            if pe != pm {
                return Err(format!(
                    "O{i}: {pe} callbacks pending in the engine, {pm} in the model"
                ));
            }
            if let Some((eo, mo)) = s.stale {
                let (pe, pm) = (
                    self.engine.pending_callbacks(eo),
                    self.model.pending_callbacks(mo),
                );
                if pe != 0 || pm != 0 || self.engine.pop_callback(eo).is_some() {
                    return Err(format!(
                        "O{i}'s closed opener has callbacks: engine {pe}, model {pm}"
                    ));
                }
            }
            if !read {
                continue;
            }
            loop {
                let e = self.engine.pop_callback(s.e);
                let m = self.model.pop_callback(s.m);
                if let Some(m) = &m {
                    self.log
                        .push_str(&format!("      O{i} reads {}\n", show(m)));
                }
                if e != m {
                    return Err(format!(
                        "O{i} read from the engine: {}\n      from the model: {}",
                        e.as_ref().map_or("nothing".into(), show),
                        m.as_ref().map_or("nothing".into(), show)
                    ));
                }
                if m.is_none() {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Ptrs {
    const ZERO: Ptrs = Ptrs {
        cast: 0,
        castparam: 0,
        bast: 0,
        bastparam: 0,
        lksb: 0,
    };
}

fn run_case<E: Dlm>(engine: E, case: &Case) -> Result<(), TestCaseError> {
    let mut pair = Pair::new(engine, case.owners);
    for (i, step) in case.steps.iter().enumerate() {
        if let Err(e) = pair.run(step) {
            return Err(TestCaseError::fail(format!(
                "step {i}: {e}\ntranscript (model's view):\n{}",
                pair.log
            )));
        }
    }
    // Finally, everything still queued must match too.
    let last = Step {
        op: Op::CreateLs,
        read: true,
    };
    pair.log.push_str("  (final read)\n");
    pair.compare_callbacks(last.read)
        .map_err(|e| TestCaseError::fail(format!("final read: {e}\ntranscript:\n{}", pair.log)))?;
    // DLM_DIFF_SHOW=1 prints one case's transcript (to see what runs).
    if std::env::var_os("DLM_DIFF_SHOW").is_some() {
        println!("{}", pair.log);
    }
    Ok(())
}

/// Runs `cases` random cases against `side`; on failure, panics with the
/// shrunk case and its transcript. Panics inside a case are failures too
/// (their messages are kept, the default hook's noise for each shrink
/// attempt is not).
fn run_random<E: Dlm>(side: fn() -> E, cases: u32, steps: usize) {
    let mut runner = TestRunner::new(Config {
        cases: cases.max(1),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    });
    let me = std::thread::current().name().map(str::to_owned);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name().map(str::to_owned) != me {
            hook(info);
        }
    }));
    let result = runner.run(&case(steps), |c| run_case(side(), &c));
    let _ = std::panic::take_hook();
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn engine_matches_model() {
    let cases = env("DLM_DIFF_CASES", 2000);
    let steps = env("DLM_DIFF_STEPS", 200) as usize;
    run_random(Engine::new, cases, steps);
}

/// The same with aggregates kept on every resource from the first lock
/// (the engine's counted paths: the convert queue without a walk, bast
/// walks that stop early), which the small random cases rarely reach at
/// the default threshold.
#[test]
fn engine_with_aggregates_matches_model() {
    let cases = env("DLM_DIFF_CASES", 2000);
    let steps = env("DLM_DIFF_STEPS", 200) as usize;
    run_random(
        || {
            let mut e = Engine::new();
            e.set_aggregate_threshold(0);
            e
        },
        cases,
        steps,
    );
}

/// The model against a second copy of itself: its invariants hold on
/// random sequences, and it is deterministic (independent of the engine).
#[test]
fn model_keeps_its_invariants() {
    let cases = env("DLM_DIFF_CASES", 2000) / 4;
    let steps = env("DLM_DIFF_STEPS", 200) as usize;
    run_random(Model::new, cases, steps);
}

// ---------------------------------------------------------------------------
// Directed differential cases: corners the random cases reach rarely
// ---------------------------------------------------------------------------

use Mode::{Cr, Ex, Nl, Pr};

fn lock_op(o: u8, mode: Mode, flags: F) -> Step {
    Step {
        op: Op::Lock {
            o,
            res: 0,
            mode: mode.raw(),
            flags,
            p: Ptrs {
                cast: 1,
                castparam: 1,
                bast: 1,
                bastparam: 1,
                lksb: 1,
            },
        },
        read: true,
    }
}

fn conv_op(o: u8, nth: u8, mode: Mode, flags: F, lvb: u8) -> Step {
    Step {
        op: Op::Convert {
            o,
            t: Target::Nth(nth),
            mode: mode.raw(),
            flags: flags | F::CONVERT,
            p: Ptrs {
                cast: 2,
                castparam: 2,
                bast: 2,
                bastparam: 2,
                lksb: 2,
            },
            lvb,
        },
        read: true,
    }
}

fn unlock_op(o: u8, nth: u8, flags: F) -> Step {
    Step {
        op: Op::Unlock {
            o,
            t: Target::Nth(nth),
            flags,
            p: Ptrs::ZERO,
            lvb: 7,
        },
        read: true,
    }
}

fn check_directed(steps: Vec<Step>) {
    let case = Case {
        owners: 3,
        names: 1,
        steps,
    };
    if let Err(e) = run_case(Engine::new(), &case) {
        panic!("{case:?}{e}");
    }
}

/// A queued conversion granted in its alternate mode, which equals its
/// granted mode: PR -> EX | ALTPR | NODLCKWT queues despite a deadlock,
/// then the deadlock goes away and a pass grants it PR. (The model follows
/// docs/semantics.md C.5 here, it moves to the grant queue; see `rules::grant_lock`.)
#[test]
fn directed_alt_mode_equal_to_granted_mode() {
    use Mode::Cw;
    check_directed(vec![
        lock_op(0, Pr, F::empty()), // id 1
        lock_op(1, Pr, F::empty()), // id 2
        lock_op(2, Nl, F::empty()), // id 3
        conv_op(2, 2, Ex, F::empty(), 0),
        conv_op(1, 1, Ex, F::NODLCKWT | F::ALTPR, 0),
        Step {
            op: Op::Cancel {
                o: 2,
                t: Target::Nth(2),
                p: Ptrs::ZERO,
            },
            read: true,
        },
        lock_op(2, Cw, F::NOQUEUE),
        conv_op(1, 1, Ex, F::empty(), 0),
        unlock_op(0, 0, F::empty()),
    ]);
}

/// FORCEUNLOCK carried by a lock request: a later force-unlock (and the
/// close) meet it in the lock's flags (the kernel answers EINVAL).
#[test]
fn directed_forceunlock_in_lock_flags() {
    check_directed(vec![
        lock_op(0, Ex, F::FORCEUNLOCK),
        lock_op(1, Ex, F::empty()),
        unlock_op(0, 0, F::FORCEUNLOCK),
        unlock_op(0, 0, F::empty()),
        lock_op(0, Ex, F::FORCEUNLOCK),
        Step {
            op: Op::Reopen { o: 0 },
            read: true,
        },
        lock_op(2, Pr, F::NOQUEUE),
    ]);
}

/// A NOQUEUE conversion that fails leaves its requested mode behind on the
/// granted lock; the grant queue's insertion order (`lkb_add_ordered`)
/// then puts a later grant behind it, which orders one opener's basts.
#[test]
fn directed_stale_requested_mode_orders_grant_queue() {
    check_directed(vec![
        lock_op(1, Pr, F::empty()), // id 1
        lock_op(0, Cr, F::empty()), // id 2
        conv_op(0, 1, Ex, F::NOQUEUE, 0),
        lock_op(0, Cr, F::empty()), // id 3, behind id 2
        lock_op(2, Ex, F::empty()), // O0: bast for 2, then for 3
    ]);
}

/// A deadlock-cancel of a granted lock leaves its mark; the next real
/// cancel reports EDEADLK. A failed VALBLK conversion still allocates the
/// LVB buffer, so later casts carry one.
#[test]
fn directed_deadlock_mark_and_failed_valblk_conversion() {
    check_directed(vec![
        lock_op(0, Pr, F::empty()),
        lock_op(1, Pr, F::empty()),
        Step {
            op: Op::Deadlock {
                o: 1,
                t: Target::Nth(1),
                flags: F::empty(),
            },
            read: true,
        },
        conv_op(1, 1, Ex, F::empty(), 0),
        conv_op(1, 1, Ex, F::VALBLK, 3),
        Step {
            op: Op::Cancel {
                o: 1,
                t: Target::Nth(1),
                p: Ptrs::ZERO,
            },
            read: true,
        },
        conv_op(1, 1, Cr, F::QUECVT | F::VALBLK, 4),
        conv_op(1, 1, Nl, F::empty(), 5),
    ]);
}
