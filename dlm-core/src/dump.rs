//! The lock dump: dlmd's dump text, and the typed model ([`Dump`]) that
//! both backends' dumps are read into (`dlm locks --json`, `dlmd --dump
//! --json`, schema in `docs/lock-dump.md`), with what blocks each request
//! ([`blocked_by`]) and the deadlocks between owners ([`Dump::analyze`]).
//!
//! The text is one line per lockspace, resource and lock: a leading word,
//! then `key value` pairs; names are quoted (printable ASCII as is, `"`
//! and `\\` backslash-escaped, other bytes `\xHH`):
//!
//! ```text
//! lockspace "ls" minor 1 created 1 openers 2 uid 0 gid 0 mode 0600
//!   resource "res" lvb_valid yes lvb 0000…
//!     granted lkid 0x00000001 grmode EX rqmode EX pid 4242 owner 3 flags PERSISTENT seconds 12
//!     waiting lkid 0x00000002 grmode -- rqmode PR pid 4243 owner 4 flags - seconds 3
//! ```
//!
//! Readers ignore pairs they do not know (`seconds` came later).
//!
//! dlmd never reads other processes' `/proc`; a client adds each owner's
//! command line itself ([`with_commands`]), as a last pair `command
//! "argv joined by spaces"` on the lock lines whose pid it can see.

use crate::Mode;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The names of the lockspaces in a dump, as printable text.
pub fn lockspace_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| match tokenize(line)?.get(..2)? {
            [Token::Word(kind), Token::Name(name)] if kind == "lockspace" => {
                Some(String::from_utf8_lossy(name).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// The command line of process `pid` as one string (its arguments joined
/// by spaces), read from `/proc/PID/cmdline`; `None` when the process is
/// gone, not visible to the caller, or has no command line (a kernel
/// thread, a zombie).
pub fn command_line(pid: u32) -> Option<String> {
    if pid == 0 || !proc_is_ours() {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // A trailing NUL ends the last argument.
    let args = match args.split_last() {
        Some((last, rest)) if last.is_empty() => rest,
        _ => &args[..],
    };
    (!args.is_empty()).then(|| args.join(" "))
}

/// Whether `/proc` shows this process's pid namespace (`/proc/self` is
/// our own pid). In a new pid namespace with the host's `/proc` still
/// mounted, a pid from the lock manager would name another process.
fn proc_is_ours() -> bool {
    static OURS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| {
        std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str()?.parse::<u32>().ok())
            == Some(std::process::id())
    })
}

/// Appends `command "…"` to each lock line of dlmd's dump `text` whose
/// owner pid has a command line this process can read
/// ([`command_line`]); other lines stay as they are. dlmd serves one
/// host, so its pids are this host's (in dlmd's pid namespace).
pub fn with_commands(text: &str) -> String {
    with_commands_from(text, command_line)
}

fn with_commands_from(text: &str, lookup: impl Fn(u32) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_lock = words
            .first()
            .is_some_and(|w| QUEUES.contains(w) && !line.contains('"'));
        if is_lock {
            let pid = words
                .windows(2)
                .find(|kv| kv[0] == "pid")
                .and_then(|kv| kv[1].parse::<u32>().ok());
            if let Some(cmd) = pid.and_then(&lookup) {
                out.push_str(" command ");
                quote_bytes(&mut out, cmd.as_bytes());
            }
        }
        out.push('\n');
    }
    out
}

/// A dump name: printable ASCII as is, `"` and `\\` escaped, other
/// bytes `\xHH`, in quotes.
fn quote_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

/// One token of a dump line.
#[derive(Debug, PartialEq)]
enum Token {
    /// A quoted name, unescaped to its bytes.
    Name(Vec<u8>),
    /// A bare word.
    Word(String),
}

fn tokenize(line: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' => i += 1,
            b'"' => {
                let mut name = Vec::new();
                i += 1;
                loop {
                    match *b.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            match *b.get(i + 1)? {
                                b'x' => {
                                    let hex = line.get(i + 2..i + 4)?;
                                    name.push(u8::from_str_radix(hex, 16).ok()?);
                                    i += 4;
                                }
                                c => {
                                    name.push(c);
                                    i += 2;
                                }
                            }
                            continue;
                        }
                        c => name.push(c),
                    }
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Name(name));
            }
            _ => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b' ')
                    .map_or(b.len(), |p| i + p);
                tokens.push(Token::Word(line.get(i..end)?.to_owned()));
                i = end;
            }
        }
    }
    Some(tokens)
}

/// The queues of a resource, in dump order.
const QUEUES: [&str; 4] = ["granted", "converting", "waiting", "detached"];

// ---- the typed dump ---------------------------------------------------

/// The schema version of [`Dump`] (the `"version"` of `dlm locks --json`).
pub const VERSION: u32 = 1;

/// A lock dump of one node: its lockspaces, their resources and locks,
/// and the deadlocks found in it ([`Dump::analyze`]). The JSON of
/// `dlm locks --json`; the schema is described in `docs/lock-dump.md`.
///
/// A dump is read a little at a time and is not an atomic snapshot:
/// locks may have changed between two resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dump {
    /// [`VERSION`].
    pub version: u32,
    /// `"dlmd"` or `"kernel"`.
    pub backend: String,
    /// The lockspaces.
    pub lockspaces: Vec<LockspaceDump>,
    /// Cycles in the wait-for graph between lock owners.
    pub deadlocks: Vec<Deadlock>,
}

/// One lockspace of a [`Dump`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockspaceDump {
    /// The name, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The name's bytes in hex.
    pub name_hex: String,
    /// dlmd's number for the lockspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<u64>,
    /// Its handles open now (dlmd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openers: Option<u64>,
    /// Owner uid, gid and mode of dlmd's lockspace (`"0600"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// See `uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// See `uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Its resources with locks.
    pub resources: Vec<ResourceDump>,
}

/// One resource of a [`LockspaceDump`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDump {
    /// The name, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The name's bytes in hex.
    pub name_hex: String,
    /// The lock value block in hex, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvb: Option<String>,
    /// Whether the LVB is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvb_valid: Option<bool>,
    /// Its locks in queue order: granted, converting, waiting, detached.
    pub locks: Vec<LockInfo>,
}

/// Where a lock is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockState {
    /// Granted, nothing pending.
    Granted,
    /// Granted `grmode`, converting to `rqmode`.
    Converting,
    /// A new request for `rqmode`.
    Waiting,
    /// dlmd only: an orphan on no queue (its owner closed).
    Detached,
}

/// One lock of a [`ResourceDump`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The lock id.
    pub lkid: u32,
    /// The owner process (on the lock's node).
    pub pid: u32,
    /// The owner's command line (argv joined by spaces), when its pid is
    /// local and visible to the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its queue.
    pub state: LockState,
    /// The granted mode (`"EX"` …), `null` for a waiting request.
    #[serde(with = "mode_serde")]
    pub grmode: Option<Mode>,
    /// The requested mode, `null` when nothing is pending.
    #[serde(with = "mode_serde")]
    pub rqmode: Option<Mode>,
    /// Seconds in its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// The node that owns it, where known (kernel: 0 is this node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodeid: Option<u32>,
    /// Its flag names (`"PERSISTENT"` …; unnamed bits in hex).
    pub flags: Vec<String>,
    /// The `lkid`s of the locks that keep this request from being
    /// granted ([`blocked_by`]); empty for a granted lock.
    pub blocked_by: Vec<u32>,
    /// dlmd: the handle id of the owner, `"orphan"` or `"dead"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// dlmd: the transaction id of its latest request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid: Option<u64>,
}

impl LockInfo {
    /// Whether the lock is a pending request (waiting or converting).
    pub fn is_request(&self) -> bool {
        matches!(self.state, LockState::Waiting | LockState::Converting)
    }
}

/// A cycle in the wait-for graph: each owner waits for a lock held (or
/// requested ahead) by the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlock {
    /// The owners in the cycle.
    pub pids: Vec<u32>,
    /// The locks in the cycle: the waiting requests and their blockers.
    pub lkids: Vec<u32>,
}

mod mode_serde {
    use crate::Mode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(m.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        match v {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("bad mode {v:?}"))),
        }
    }
}

/// A name as (UTF-8 text when valid, hex).
pub fn name_fields(bytes: &[u8]) -> (Option<String>, String) {
    let text = std::str::from_utf8(bytes).ok().map(str::to_owned);
    (text, hex(bytes))
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex to bytes.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Which locks of one resource keep each request from being granted,
/// by the grant rules of the lock manager (those of the kernel's
/// `_can_be_granted`, which dlm-engine implements): `locks` in queue order
/// (granted, converting, waiting; detached locks are ignored); the
/// result has one list of lock ids per lock, empty for granted locks.
///
/// A converting lock is blocked by every other granted or converting lock
/// whose granted mode is incompatible with its requested mode, and, unless
/// NOORDER, by the conversions ahead of it. A waiting request is blocked by
/// the granted or converting locks whose granted mode is incompatible with
/// its requested mode and, unless NOORDER, by every conversion and by the
/// requests ahead of it. EXPEDITE requests are blocked by nothing. A
/// request with no blocker is granted at the next grant pass on its
/// resource. Mostly there is none at rest, since every change that can
/// free a request runs a pass; as in the kernel, two do not: a new
/// HEADQUE request put at the head of the wait queue (blocked only by
/// the requests it jumped), and a waiting request freed when a
/// CONVDEADLK conversion is demoted to NL (only the convert queue is
/// passed over then). Such a request waits for the next unlock, cancel
/// or conversion on the resource. dlm-engine's tests check this against
/// its grant logic.
pub fn blocked_by(locks: &[LockInfo]) -> Vec<Vec<u32>> {
    let flag = |l: &LockInfo, f: &str| l.flags.iter().any(|x| x == f);
    let holds = |l: &LockInfo| matches!(l.state, LockState::Granted | LockState::Converting);
    locks
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let Some(rq) = me.rqmode.filter(|_| me.is_request()) else {
                return Vec::new();
            };
            if flag(me, "EXPEDITE") {
                return Vec::new();
            }
            let ordered = !flag(me, "NOORDER");
            locks
                .iter()
                .enumerate()
                .filter(|&(j, l)| {
                    if j == i {
                        return false;
                    }
                    let conflicts = holds(l) && l.grmode.is_some_and(|g| !g.compatible(rq));
                    let ahead = ordered
                        && match me.state {
                            LockState::Converting => l.state == LockState::Converting && j < i,
                            _ => {
                                l.state == LockState::Converting
                                    || (l.state == LockState::Waiting && j < i)
                            }
                        };
                    conflicts || ahead
                })
                .map(|(_, l)| l.lkid)
                .collect()
        })
        .collect()
}

impl Dump {
    /// An empty dump of `backend`.
    pub fn new(backend: &str) -> Dump {
        Dump {
            version: VERSION,
            backend: backend.to_owned(),
            lockspaces: Vec::new(),
            deadlocks: Vec::new(),
        }
    }

    /// The dump of dlmd's dump `text` ([`parse_dlmd`]), with each local
    /// owner's command line, analyzed ([`Dump::analyze`], ppid rule
    /// included).
    ///
    /// # Errors
    /// The number of the first line that is not dump text.
    pub fn from_dlmd_text(text: &str) -> Result<Dump, usize> {
        let mut dump = Dump::new("dlmd");
        dump.lockspaces = parse_dlmd(text, &command_line)?;
        dump.analyze(&parent_pid);
        Ok(dump)
    }

    /// The dump as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a dump serializes")
    }

    /// Fills in each lock's `blocked_by` ([`blocked_by`]) and the
    /// dump's `deadlocks`. `parent` gives a local process's parent pid
    /// (for the ppid rule: a process waits for what its descendants wait
    /// for); pass `|_| None` to leave it out.
    pub fn analyze(&mut self, parent: &dyn Fn(u32) -> Option<u32>) {
        for ls in &mut self.lockspaces {
            for r in &mut ls.resources {
                let blockers = blocked_by(&r.locks);
                for (l, b) in r.locks.iter_mut().zip(blockers) {
                    l.blocked_by = b;
                }
            }
        }
        self.deadlocks = self.find_deadlocks(parent);
    }

    fn find_deadlocks(&self, parent: &dyn Fn(u32) -> Option<u32>) -> Vec<Deadlock> {
        // Owners: (nodeid, pid); edges labelled with (request, blocker).
        type Owner = (u32, u32);
        let mut edges: Vec<(Owner, Owner, u32, u32)> = Vec::new();
        for ls in &self.lockspaces {
            for r in &ls.resources {
                for l in &r.locks {
                    for b in &l.blocked_by {
                        let Some(bl) = r.locks.iter().find(|x| x.lkid == *b) else {
                            continue;
                        };
                        let from = (l.nodeid.unwrap_or(0), l.pid);
                        let to = (bl.nodeid.unwrap_or(0), bl.pid);
                        edges.push((from, to, l.lkid, bl.lkid));
                        // The ppid rule: the waiter's local ancestors wait too.
                        if from.0 == 0 {
                            let mut p = from.1;
                            let mut depth = 0;
                            while let Some(pp) = parent(p).filter(|&pp| pp > 1 && pp != p) {
                                edges.push(((0, pp), to, l.lkid, bl.lkid));
                                p = pp;
                                depth += 1;
                                if depth > 64 {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut nodes: Vec<Owner> = edges.iter().flat_map(|e| [e.0, e.1]).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let idx = |o: &Owner| nodes.binary_search(o).expect("listed");
        let mut adj: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for e in &edges {
            adj[idx(&e.0)].push(idx(&e.1));
        }
        let comps = sccs(&adj);
        let mut out = Vec::new();
        for comp in comps {
            let cyclic = comp.len() > 1 || adj[comp[0]].contains(&comp[0]);
            if !cyclic {
                continue;
            }
            let in_comp = |o: &Owner| comp.contains(&idx(o));
            let mut pids: Vec<u32> = comp.iter().map(|&n| nodes[n].1).collect();
            pids.sort_unstable();
            pids.dedup();
            let mut lkids: Vec<u32> = edges
                .iter()
                .filter(|e| in_comp(&e.0) && in_comp(&e.1))
                .flat_map(|e| [e.2, e.3])
                .collect();
            lkids.sort_unstable();
            lkids.dedup();
            out.push(Deadlock { pids, lkids });
        }
        out
    }

    /// The pending requests (waiting or converting) with their
    /// lockspace and resource.
    pub fn requests(&self) -> impl Iterator<Item = (&LockspaceDump, &ResourceDump, &LockInfo)> {
        self.lockspaces.iter().flat_map(|ls| {
            ls.resources.iter().flat_map(move |r| {
                r.locks
                    .iter()
                    .filter(|l| l.is_request())
                    .map(move |l| (ls, r, l))
            })
        })
    }
}

/// Tarjan's strongly connected components (iterative).
fn sccs(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on[root] = true;
        while let Some(&mut (v, ref mut k)) = call.last_mut() {
            if let Some(&w) = adj[v].get(*k) {
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    call.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(u, _)) = call.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// The parent pid of local process `pid` (`/proc/PID/stat`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Parses dlmd's dump text into lockspaces (with each local owner's
/// command line from `command`), `blocked_by` not yet filled in.
///
/// # Errors
/// The number of the first line that is not dump text.
pub fn parse_dlmd(
    text: &str,
    command: &dyn Fn(u32) -> Option<String>,
) -> Result<Vec<LockspaceDump>, usize> {
    let mut out: Vec<LockspaceDump> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = n + 1;
        let tokens = tokenize(line).ok_or(bad)?;
        let Some((Token::Word(kind), rest)) = tokens.split_first() else {
            continue;
        };
        let (name, pairs) = match rest.split_first() {
            Some((Token::Name(name), pairs)) if kind == "lockspace" || kind == "resource" => {
                (Some(name.as_slice()), pairs)
            }
            _ => (None, rest),
        };
        if pairs.len() % 2 != 0 {
            return Err(bad);
        }
        let mut kv: Vec<(&str, &Token)> = Vec::new();
        for p in pairs.chunks(2) {
            let Token::Word(k) = &p[0] else {
                return Err(bad);
            };
            kv.push((k.as_str(), &p[1]));
        }
        let word = |k: &str| {
            kv.iter()
                .find(|(key, _)| *key == k)
                .and_then(|(_, v)| match v {
                    Token::Word(w) => Some(w.as_str()),
                    Token::Name(_) => None,
                })
        };
        let num = |k: &str| -> Option<u64> {
            let w = word(k)?;
            match w.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => w.parse().ok(),
            }
        };
        match (kind.as_str(), name) {
            ("lockspace", Some(name)) => {
                let (name, name_hex) = name_fields(name);
                out.push(LockspaceDump {
                    name,
                    name_hex,
                    minor: num("minor"),
                    openers: num("openers"),
                    uid: num("uid").and_then(|v| u32::try_from(v).ok()),
                    gid: num("gid").and_then(|v| u32::try_from(v).ok()),
                    mode: word("mode").map(str::to_owned),
                    resources: Vec::new(),
                });
            }
            ("resource", Some(name)) => {
                let ls = out.last_mut().ok_or(bad)?;
                let (name, name_hex) = name_fields(name);
                ls.resources.push(ResourceDump {
                    name,
                    name_hex,
                    lvb: word("lvb").filter(|v| *v != "none").map(str::to_owned),
                    lvb_valid: word("lvb_valid").map(|v| v == "yes"),
                    locks: Vec::new(),
                });
            }
            (q, None) if QUEUES.contains(&q) => {
                let r = out
                    .last_mut()
                    .and_then(|ls| ls.resources.last_mut())
                    .ok_or(bad)?;
                let state = match q {
                    "granted" => LockState::Granted,
                    "converting" => LockState::Converting,
                    "waiting" => LockState::Waiting,
                    _ => LockState::Detached,
                };
                let mode = |k: &str| word(k).and_then(|m| m.parse::<Mode>().ok());
                let pid = num("pid").and_then(|v| u32::try_from(v).ok()).ok_or(bad)?;
                let lkid = num("lkid").and_then(|v| u32::try_from(v).ok()).ok_or(bad)?;
                let flags = match word("flags") {
                    None | Some("-") => Vec::new(),
                    Some(f) => f.split('|').map(str::to_owned).collect(),
                };
                r.locks.push(LockInfo {
                    lkid,
                    pid,
                    command: command(pid),
                    state,
                    grmode: mode("grmode"),
                    rqmode: mode("rqmode"),
                    seconds: num("seconds"),
                    nodeid: None,
                    flags,
                    blocked_by: Vec::new(),
                    owner: word("owner").map(str::to_owned),
                    xid: num("xid"),
                });
            }
            _ => return Err(bad),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "lockspace \"a\" minor 1 created 1 openers 2\n  resource \"r\\x01\" lvb_valid no lvb 00ff\n    granted lkid 0x00000001 grmode EX rqmode EX pid 42 owner 3 flags PERSISTENT|0x40000000\nlockspace \"b\" minor 2\n";

    #[test]
    fn commands() {
        let text = with_commands_from(SAMPLE, |pid| {
            (pid == 42).then(|| "sh -c \"x\" \u{e9}".to_string())
        });
        assert!(
            text.contains("flags PERSISTENT|0x40000000 command \"sh -c \\\"x\\\" \\xc3\\xa9\"\n"),
            "{text}"
        );
        // Lines without a visible pid stay as they were.
        assert_eq!(with_commands_from(SAMPLE, |_| None), SAMPLE);
        let me = command_line(std::process::id()).unwrap();
        assert!(!me.is_empty() && !me.contains('\0'), "{me}");
        assert_eq!(command_line(0), None);
    }

    #[test]
    fn names() {
        assert_eq!(lockspace_names(SAMPLE), ["a", "b"]);
    }
}
