//! Device-level scenarios of docs/semantics.md Part D (P, E, U, V and C) as scripts
//! that run against any lock manager behind the [`Target`] trait: the
//! engine in this process ([`EngineTarget`]), or a [`Control`] of
//! `dlm_core::transport` ([`TransportTarget`]: the kernel DLM or dlmd).
//!
//! Each script writes a canonical text trace of everything observable:
//! every write's return value or errno and, per opener, every callback
//! read (kind, status, sb_flags, bast mode, lock id, user pointers, LVB
//! bytes) in order. It also checks the spec's expectations as it goes; a
//! failed expectation becomes a `!! spec:` line in the trace and a
//! mismatch in the [`Outcome`]. Two targets are compared by diffing their
//! traces ([`diff`]); the differences a kernel is known to have are in
//! [`known`] (and docs/kernel-differences.md).
//!
//! [`Control`]: dlm_core::transport::Control

mod script;
mod targets;

pub mod known;

pub use targets::{EngineTarget, InProcess, InProcessTarget, ModelTarget, TransportTarget};

use dlm_core::codec::{LockParams, LockResult};
use dlm_core::{Errno, LockFlags, LsFlags, Lvb, Mode, Name, Request, SbFlags, Status};
use std::fmt::Write as _;

/// An opener of a [`Target`]: an index into the target's table.
pub type Opener = usize;

/// A lock manager the scenarios run against: one device-level opener per
/// [`Opener`], requests as decoded [`Request`]s, callbacks as decoded
/// [`LockResult`]s. The optional capabilities (raw bytes, short reads,
/// blocking removal) return `None` where the target cannot express them;
/// the scenarios that need them are then reported as not applicable.
pub trait Target {
    /// A short label for reports: `kernel 6.12.95+deb12-amd64`, `dlmd`,
    /// `engine`.
    fn label(&self) -> String;
    /// CREATE_LOCKSPACE on the control interface; returns the minor.
    ///
    /// # Errors
    /// The lock manager's errno.
    fn create(&mut self, name: &Name, flags: LsFlags) -> Result<u32, Errno>;
    /// REMOVE_LOCKSPACE on the control interface.
    ///
    /// # Errors
    /// The lock manager's errno.
    fn remove(&mut self, minor: u32, force: bool) -> Result<(), Errno>;
    /// Opens lockspace `name`: a new opener.
    ///
    /// # Errors
    /// ENOENT when it does not exist.
    fn open(&mut self, name: &Name) -> Result<Opener, Errno>;
    /// One request written by opener `o` (from this thread).
    ///
    /// # Errors
    /// What the device's `write()` fails with.
    fn write(&mut self, o: Opener, req: &Request) -> Result<u32, Errno>;
    /// One non-blocking read of opener `o` with a 104-byte buffer.
    ///
    /// # Errors
    /// What the device's `read()` fails with (not EAGAIN: that is `None`).
    fn read(&mut self, o: Opener) -> Result<Option<LockResult>, Errno>;
    /// Whether `o` polls readable.
    fn poll(&mut self, o: Opener) -> bool;
    /// Closes opener `o`.
    fn close(&mut self, o: Opener);
    /// The thread id the target's writes are made with (the owner pid of
    /// the locks they create).
    fn tid(&self) -> u32;
    /// Opens `ls` from another thread, takes `name` in `mode` with
    /// PERSISTENT, reads the cast, closes the opener and lets the thread
    /// end; returns that thread's id (the orphan's owner pid).
    fn orphan_from_other_thread(&mut self, ls: &Name, name: &[u8], mode: Mode) -> u32;
    /// Raw bytes written to opener `o` (or to the control device for
    /// `None`). `None` when the target cannot send raw bytes.
    fn raw_write(&mut self, o: Option<Opener>, bytes: &[u8]) -> Option<Result<u32, Errno>>;
    /// One non-blocking raw read of `count` bytes from opener `o` (or the
    /// control device for `None`). `None` when not expressible.
    fn raw_read(&mut self, o: Option<Opener>, count: usize) -> Option<Result<Vec<u8>, Errno>>;
    /// REMOVE_LOCKSPACE while opener `o` is still open: starts the
    /// removal, waits `settle`, notes whether it has returned, closes `o`
    /// and returns (the removal's result, whether it had returned before
    /// the close).
    fn remove_while_open(
        &mut self,
        minor: u32,
        force: bool,
        o: Opener,
        settle: std::time::Duration,
    ) -> (Result<(), Errno>, bool);
}

/// What one scenario produced on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The scenario id (`E14`).
    pub id: &'static str,
    /// The trace, one observation per line.
    pub trace: Vec<String>,
    /// The failed spec expectations (also marked in the trace).
    pub mismatches: Vec<String>,
    /// Set when the target could not run the scenario (why).
    pub not_applicable: Option<String>,
}

/// A scenario: an id from docs/semantics.md Part D and the script.
pub struct Scenario {
    /// Spec id, e.g. `E14`.
    pub id: &'static str,
    /// The script.
    pub run: fn(&mut Session<'_>),
}

/// Every device-level scenario of Part D, in spec order.
pub fn all() -> Vec<Scenario> {
    script::all()
}

/// Default user pointers of opener number `k` (1-based): completion
/// address/parameter, blocking address/parameter, lksb.
fn default_ptrs(k: usize) -> (u64, u64, u64, u64, u64) {
    let k = k as u64;
    (0xca00 + k, 0xc000 + k, 0xba00 + k, 0xb000 + k, 0x5b00 + k)
}

/// A running scenario: its lockspace on the target, its openers O1, O2...
/// (opened on first use), its trace.
pub struct Session<'t> {
    target: &'t mut dyn Target,
    /// The scenario's lockspace name.
    pub ls: Name,
    /// The lockspace's minor.
    pub minor: u32,
    openers: Vec<Option<Opener>>,
    trace: Vec<String>,
    mismatches: Vec<String>,
    not_applicable: Option<String>,
    created: bool,
    removed: bool,
}

/// One expected read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exp {
    /// A completion with this kernel status (negative) and sb_flags.
    Cast(i32, u8),
    /// A completion with status, flags and these LVB bytes (`None`: no
    /// LVB attached).
    CastLvb(i32, u8, Option<Lvb>),
    /// A blocking callback for this mode.
    Bast(Mode),
    /// Nothing pending.
    Nothing,
}

/// A 32-byte LVB holding `s` then zeros.
pub fn lvb(s: &str) -> Lvb {
    let mut l = [0u8; 32];
    l[..s.len()].copy_from_slice(s.as_bytes());
    l
}

fn fmt_lvb(l: &Lvb) -> String {
    let end = l.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if end == 0 {
        return "zeros".into();
    }
    let body = &l[..end];
    if body.iter().all(|b| b.is_ascii_graphic()) {
        format!("\"{}\"", String::from_utf8_lossy(body))
    } else {
        body.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn fmt_errno(e: Errno) -> String {
    let name = match e {
        Errno::EPERM => "EPERM",
        Errno::ENOENT => "ENOENT",
        Errno::EAGAIN => "EAGAIN",
        Errno::EBUSY => "EBUSY",
        Errno::EEXIST => "EEXIST",
        Errno::ENODEV => "ENODEV",
        Errno::EINVAL => "EINVAL",
        Errno::EDEADLK => "EDEADLK",
        Errno::EBADE => "EBADE",
        Errno::ENOTCONN => "ENOTCONN",
        Errno::EACCES => "EACCES",
        Errno::EPROTO => "EPROTO",
        _ => return format!("errno {}", e.raw()),
    };
    name.to_string()
}

/// `Ok(n)` as `n`, errors by name.
pub fn fmt_ret(r: &Result<u32, Errno>) -> String {
    match r {
        Ok(n) => n.to_string(),
        Err(e) => fmt_errno(*e),
    }
}

fn fmt_flags(f: LockFlags) -> String {
    if f.is_empty() {
        return "0".into();
    }
    let mut parts: Vec<String> = f.iter_names().map(|(n, _)| n.to_string()).collect();
    let unknown = f.bits() & !LockFlags::all().bits();
    if unknown != 0 || parts.is_empty() {
        parts.push(format!("{:#x}", f.bits()));
    }
    parts.join("|")
}

/// A callback as one trace line.
pub fn fmt_result(r: &LockResult) -> String {
    let kind = match r.bast_mode {
        Some(m) => format!("bast({})", m.name()),
        None => format!("cast({},{})", r.status.to_kernel(), r.flags.bits()),
    };
    let mut s = format!(
        "{kind} id={} ast={:x}/{:x} lksb={:x}",
        r.lkid, r.astaddr, r.astparam, r.user_lksb
    );
    if r.bast_mode.is_some() {
        let _ = write!(s, " st={} fl={}", r.status.to_kernel(), r.flags.bits());
    }
    match &r.lvb {
        Some(l) => {
            let _ = write!(s, " lvb={}", fmt_lvb(l));
        }
        None => s.push_str(" nolvb"),
    }
    s
}

impl Exp {
    fn matches(&self, got: &Option<LockResult>) -> bool {
        match (self, got) {
            (Exp::Nothing, None) => true,
            (Exp::Bast(m), Some(r)) => r.bast_mode == Some(*m),
            (Exp::Cast(st, fl), Some(r)) => {
                r.bast_mode.is_none()
                    && r.status == Status::from_kernel(*st)
                    && r.flags == SbFlags::from_bits_retain(*fl)
            }
            (Exp::CastLvb(st, fl, l), Some(r)) => Exp::Cast(*st, *fl).matches(got) && r.lvb == *l,
            _ => false,
        }
    }
}

/// Builder of one LOCK / CONVERT / UNLOCK request.
#[derive(Clone, Copy, Debug)]
pub struct Req {
    /// The parameters as they will be written.
    pub p: LockParams,
}

impl Req {
    /// Sets the user pointers (castaddr, castparam, bastaddr, bastparam,
    /// lksb).
    pub fn ptrs(mut self, ca: u64, cp: u64, ba: u64, bp: u64, sb: u64) -> Req {
        (self.p.castaddr, self.p.castparam) = (ca, cp);
        (self.p.bastaddr, self.p.bastparam) = (ba, bp);
        self.p.lksb = sb;
        self
    }
    /// Sets the request's LVB field.
    pub fn lvb(mut self, l: Lvb) -> Req {
        self.p.lvb = l;
        self
    }
    /// Sets the timeout field.
    pub fn timeout(mut self, t: u64) -> Req {
        self.p.timeout = t;
        self
    }
}

impl<'t> Session<'t> {
    /// Creates the scenario's lockspace `ls` on `target`.
    fn begin(target: &'t mut dyn Target, ls: &str) -> Session<'t> {
        let ls = Name::lockspace(ls.as_bytes()).expect("scenario lockspace name");
        let minor = target.create(&ls, LsFlags::empty());
        let mut s = Session {
            target,
            ls,
            minor: 0,
            openers: Vec::new(),
            trace: Vec::new(),
            mismatches: Vec::new(),
            not_applicable: None,
            created: false,
            removed: false,
        };
        match minor {
            Ok(m) => (s.minor, s.created) = (m, true),
            Err(e) => s.not_applicable = Some(format!("create lockspace: {}", fmt_errno(e))),
        }
        s
    }

    /// Closes every opener and removes the lockspace (forced).
    fn end(mut self, id: &'static str) -> Outcome {
        for o in std::mem::take(&mut self.openers).into_iter().flatten() {
            self.target.close(o);
        }
        if self.created && !self.removed {
            let _ = self.target.remove(self.minor, true);
        }
        Outcome {
            id,
            trace: self.trace,
            mismatches: self.mismatches,
            not_applicable: self.not_applicable,
        }
    }

    /// The target (for scenario steps with no helper).
    pub fn target(&mut self) -> &mut dyn Target {
        self.target
    }

    /// Marks the scenario as not applicable on this target.
    pub fn not_applicable(&mut self, why: &str) {
        if self.not_applicable.is_none() {
            self.not_applicable = Some(why.to_string());
        }
    }

    /// Adds a free-form line to the trace.
    pub fn note(&mut self, line: impl Into<String>) {
        self.trace.push(line.into());
    }

    /// Records a failed expectation.
    pub fn mismatch(&mut self, what: String) {
        self.trace.push(format!("!! spec: {what}"));
        self.mismatches.push(what);
    }

    /// Checks a value against the spec: records a mismatch when they differ.
    pub fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.mismatch(format!("{what}: got {got:?}, expected {want:?}"));
        }
    }

    /// The target opener of scenario opener `k` (1-based), opening it on
    /// first use.
    pub fn op(&mut self, k: usize) -> Opener {
        if self.openers.len() <= k {
            self.openers.resize(k + 1, None);
        }
        if let Some(o) = self.openers[k] {
            return o;
        }
        let o = self.target.open(&self.ls).expect("open scenario lockspace");
        self.openers[k] = Some(o);
        o
    }

    /// Closes scenario opener `k`.
    pub fn close(&mut self, k: usize) {
        if let Some(o) = self.openers.get_mut(k).and_then(Option::take) {
            self.target.close(o);
        }
        self.trace.push(format!("O{k} close"));
    }

    /// A new-lock request of opener `k` with its default pointers.
    pub fn req(&self, k: usize, name: &[u8], mode: Mode, flags: LockFlags) -> Req {
        let (ca, cp, ba, bp, sb) = default_ptrs(k);
        Req {
            p: LockParams {
                mode: mode.raw(),
                flags,
                castaddr: ca,
                castparam: cp,
                bastaddr: ba,
                bastparam: bp,
                lksb: sb,
                name: Name::new(name).expect("name"),
                ..LockParams::default()
            },
        }
    }

    /// A conversion request of opener `k` with its default pointers.
    pub fn conv_req(&self, k: usize, id: u32, mode: Mode, flags: LockFlags) -> Req {
        let mut r = self.req(k, b"", mode, flags | LockFlags::CONVERT);
        r.p.lkid = id;
        r
    }

    /// An unlock request of opener `k`.
    pub fn unlock_req(&self, k: usize, id: u32, flags: LockFlags) -> Req {
        let (_, cp, _, _, sb) = default_ptrs(k);
        Req {
            p: LockParams {
                flags,
                lkid: id,
                castparam: cp,
                lksb: sb,
                ..LockParams::default()
            },
        }
    }

    fn write_traced(&mut self, k: usize, req: &Request, what: String) -> Result<u32, Errno> {
        let o = self.op(k);
        let r = self.target.write(o, req);
        self.trace.push(format!("O{k} {what} -> {}", fmt_ret(&r)));
        r
    }

    /// Writes a LOCK request built with [`Session::req`] (or modified).
    pub fn lock_with(&mut self, k: usize, r: Req) -> Result<u32, Errno> {
        let p = r.p;
        let what = if p.flags.contains(LockFlags::CONVERT) {
            format!(
                "CONV id={} {} {}",
                p.lkid,
                mode_name(p.mode),
                fmt_flags(p.flags - LockFlags::CONVERT)
            )
        } else {
            format!(
                "LOCK {:?} {} {}",
                String::from_utf8_lossy(p.name.as_bytes()),
                mode_name(p.mode),
                fmt_flags(p.flags)
            )
        };
        let what = if p.lvb != [0; 32] {
            format!("{what} lvb={}", fmt_lvb(&p.lvb))
        } else {
            what
        };
        self.write_traced(k, &Request::Lock(p), what)
    }

    /// LOCK(Ok, name, mode, flags).
    pub fn lock(
        &mut self,
        k: usize,
        name: &str,
        mode: Mode,
        flags: LockFlags,
    ) -> Result<u32, Errno> {
        let r = self.req(k, name.as_bytes(), mode, flags);
        self.lock_with(k, r)
    }

    /// LOCK that the spec says returns a lock id; returns it (0 on error,
    /// recorded as a mismatch).
    pub fn lock_id(&mut self, k: usize, name: &str, mode: Mode, flags: LockFlags) -> u32 {
        let r = self.lock(k, name, mode, flags);
        self.ok_id(r)
    }

    /// LOCK, then the cast expected for an immediate grant (status 0,
    /// flags 0) is read; returns the id.
    pub fn granted(&mut self, k: usize, name: &str, mode: Mode, flags: LockFlags) -> u32 {
        let id = self.lock_id(k, name, mode, flags);
        self.expect(k, Exp::Cast(0, 0));
        id
    }

    /// LOCK expected to be queued (no callback); returns the id.
    pub fn queued(&mut self, k: usize, name: &str, mode: Mode, flags: LockFlags) -> u32 {
        let id = self.lock_id(k, name, mode, flags);
        self.expect(k, Exp::Nothing);
        id
    }

    fn ok_id(&mut self, r: Result<u32, Errno>) -> u32 {
        match r {
            Ok(id) => id,
            Err(e) => {
                self.mismatch(format!("write failed with {}", fmt_errno(e)));
                0
            }
        }
    }

    /// CONV(Ok, id, mode, flags).
    pub fn conv(&mut self, k: usize, id: u32, mode: Mode, flags: LockFlags) -> Result<u32, Errno> {
        let r = self.conv_req(k, id, mode, flags);
        self.lock_with(k, r)
    }

    /// CONV with an LVB field.
    pub fn conv_lvb(
        &mut self,
        k: usize,
        id: u32,
        mode: Mode,
        flags: LockFlags,
        l: &str,
    ) -> Result<u32, Errno> {
        let r = self.conv_req(k, id, mode, flags).lvb(lvb(l));
        self.lock_with(k, r)
    }

    /// Writes an UNLOCK request built with [`Session::unlock_req`].
    pub fn unlock_with(&mut self, k: usize, r: Req) -> Result<u32, Errno> {
        let p = r.p;
        let what = format!("UNLOCK id={} {}", p.lkid, fmt_flags(p.flags));
        self.write_traced(k, &Request::Unlock(p), what)
    }

    /// UNLOCK(Ok, id, flags).
    pub fn unlock(&mut self, k: usize, id: u32, flags: LockFlags) -> Result<u32, Errno> {
        let r = self.unlock_req(k, id, flags);
        self.unlock_with(k, r)
    }

    /// CANCEL(Ok, id).
    pub fn cancel(&mut self, k: usize, id: u32) -> Result<u32, Errno> {
        self.unlock(k, id, LockFlags::CANCEL)
    }

    /// DEADLOCK(Ok, id, flags).
    pub fn deadlock(&mut self, k: usize, id: u32, flags: LockFlags) -> Result<u32, Errno> {
        let req = Request::Deadlock { lkid: id, flags };
        self.write_traced(k, &req, format!("DEADLOCK id={id} {}", fmt_flags(flags)))
    }

    /// PURGE(Ok, nodeid, pid); `pid_label` names the pid in the trace
    /// (thread ids differ between runs).
    pub fn purge(
        &mut self,
        k: usize,
        nodeid: u32,
        pid: u32,
        pid_label: &str,
    ) -> Result<u32, Errno> {
        let req = Request::Purge { nodeid, pid };
        self.write_traced(k, &req, format!("PURGE {nodeid} {pid_label}"))
    }

    /// The caller's thread id as the target sees it.
    pub fn tid(&self) -> u32 {
        self.target.tid()
    }

    /// One non-blocking read of opener `k`, traced.
    pub fn read(&mut self, k: usize) -> Option<LockResult> {
        let o = self.op(k);
        match self.target.read(o) {
            Ok(Some(r)) => {
                self.trace.push(format!("O{k} <- {}", fmt_result(&r)));
                Some(r)
            }
            Ok(None) => {
                self.trace.push(format!("O{k} <- none"));
                None
            }
            Err(e) => {
                self.trace
                    .push(format!("O{k} <- read error {}", fmt_errno(e)));
                None
            }
        }
    }

    /// Reads opener `k` and checks the result against `want`.
    pub fn expect(&mut self, k: usize, want: Exp) -> Option<LockResult> {
        let got = self.read(k);
        if !want.matches(&got) {
            self.mismatch(format!("O{k}: expected {want:?}"));
        }
        got
    }

    /// Reads opener `k` and checks the result against `want` and its lock
    /// id against `id`.
    pub fn expect_id(&mut self, k: usize, want: Exp, id: u32) -> Option<LockResult> {
        let got = self.expect(k, want);
        if let Some(r) = &got {
            if r.lkid != id {
                self.mismatch(format!("O{k}: expected lock id {id}, got {}", r.lkid));
            }
        }
        got
    }

    /// Marks the lockspace as gone (a scenario removed it).
    pub fn set_removed(&mut self) {
        self.removed = true;
    }

    /// Checks a write result against the spec.
    pub fn expect_ret(&mut self, got: Result<u32, Errno>, want: Result<u32, Errno>) {
        if got != want {
            self.mismatch(format!(
                "write: got {}, expected {}",
                fmt_ret(&got),
                fmt_ret(&want)
            ));
        }
    }

    /// Whether opener `k` polls readable (traced).
    pub fn poll(&mut self, k: usize) -> bool {
        let o = self.op(k);
        let p = self.target.poll(o);
        self.trace.push(format!("O{k} poll -> {p}"));
        p
    }

    /// Whether `mode` on `name` would be granted at once, asked by opener
    /// `k` (one the scenario uses for nothing else): a NOQUEUE LOCK, its
    /// cast read, the opener closed (which frees the probe's lock). A
    /// state check any target can answer (there is no lock dump on the
    /// kernel's device).
    pub fn probe(&mut self, k: usize, name: &str, mode: Mode) -> bool {
        let id = self.lock_id(k, name, mode, LockFlags::NOQUEUE);
        let got = self.read(k);
        let granted = match &got {
            Some(r) if r.bast_mode.is_none() && r.lkid == id => match r.status {
                Status::GRANTED => Some(true),
                Status::AGAIN => Some(false),
                _ => None,
            },
            _ => None,
        };
        if granted.is_none() {
            self.mismatch(format!(
                "O{k}: probe expected cast(0) or cast(-11) for id {id}"
            ));
        }
        self.close(k);
        granted.unwrap_or(false)
    }

    /// A [`Session::probe`] that must answer `want`.
    pub fn expect_probe(&mut self, k: usize, name: &str, mode: Mode, want: bool) {
        let got = self.probe(k, name, mode);
        if got != want {
            self.mismatch(format!(
                "{name:?} {} {}",
                mode.name(),
                if want { "not grantable" } else { "grantable" }
            ));
        }
    }

    /// Reads every pending callback of opener `k` (traced).
    pub fn drain(&mut self, k: usize) {
        while self.read(k).is_some() {}
    }
}

fn mode_name(raw: u8) -> String {
    Mode::from_raw(raw.into()).map_or_else(|_| format!("mode{raw}"), |m| m.name().to_string())
}

/// Runs one scenario on `target` in a fresh lockspace `<prefix><id>`.
pub fn run_one(target: &mut dyn Target, sc: &Scenario, prefix: &str) -> Outcome {
    let ls = format!("{prefix}{}", sc.id);
    let mut s = Session::begin(target, &ls);
    if s.not_applicable.is_none() {
        (sc.run)(&mut s);
    }
    s.end(sc.id)
}

/// Runs every scenario (or those whose id is in `only`) on `target`.
pub fn run_all(target: &mut dyn Target, prefix: &str, only: Option<&[&str]>) -> Vec<Outcome> {
    all()
        .iter()
        .filter(|sc| only.is_none_or(|ids| ids.contains(&sc.id)))
        .map(|sc| run_one(target, sc, prefix))
        .collect()
}

/// The lines where two traces differ, as `-left` / `+right` lines (a
/// plain positional diff: scenario traces are short and aligned).
pub fn diff(left: &[String], right: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..left.len().max(right.len()) {
        match (left.get(i), right.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    out.push(format!("-{a}"));
                }
                if let Some(b) = b {
                    out.push(format!("+{b}"));
                }
            }
        }
    }
    out
}

/// A whole run as text: one block per scenario.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        let _ = writeln!(s, "== {}", o.id);
        if let Some(why) = &o.not_applicable {
            let _ = writeln!(s, "   n/a: {why}");
        }
        for l in &o.trace {
            let _ = writeln!(s, "   {l}");
        }
    }
    s
}
