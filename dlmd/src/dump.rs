//! The lock dump: the text dlmd sends for DUMP (one line per lockspace,
//! resource and lock, `key value` pairs after a leading word), and the
//! typed model it is read into is `dlm_core::dump::Dump` (shared with `dlm locks --json`).
//!
//! ```text
//! lockspace "ls" minor 1 created 1 openers 2 nresources 1 nlocks 2 uid 0 gid 0 mode 0600
//!   resource "res" lvb_valid yes lvb 0000…
//!     granted lkid 0x00000001 grmode EX rqmode -- pid 4242 owner 3 flags PERSISTENT seconds 12
//!     waiting lkid 0x00000002 grmode -- rqmode PR pid 4243 owner 4 flags - seconds 3
//! ```
//!
//! Names are quoted; printable ASCII stands for itself, `"` and `\` are
//! backslash-escaped, every other byte is `\xHH`. `seconds` is the
//! lock's age on its queue ([`dlm_engine::Engine::set_clock`]).

use crate::perm::LsMeta;
use dlm_core::{LockFlags, Lvb, Mode, Name};
#[cfg(test)]
use dlm_engine::LockspaceDump;
use dlm_engine::{DumpQueue, LockDump, LockOwner, LockspaceSummary, OwnerId};
use std::fmt::Write as _;

/// Appends the dump of one lockspace to `out` from a snapshot (the
/// unit tests' path; dlmd itself dumps incrementally with [`header`],
/// [`resource`] and [`lock_line`]). `owner_id` maps an engine owner to
/// the handle id OPEN reported (`None`: unknown).
#[cfg(test)]
pub fn render(
    out: &mut String,
    ls: &LockspaceDump,
    meta: Option<&LsMeta>,
    owner_id: &dyn Fn(OwnerId) -> Option<u64>,
) {
    let summary = LockspaceSummary {
        name: ls.name,
        minor: ls.minor,
        create_count: ls.create_count,
        openers: ls.openers,
        resources: ls.resources.len(),
        locks: ls.locks,
    };
    header(out, &summary, meta);
    let mut resources: Vec<_> = ls.resources.iter().collect();
    resources.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for r in resources {
        resource(out, &r.name, r.lvb.as_ref(), r.lvb_invalid);
        for (queue, locks) in [
            (DumpQueue::Granted, &r.granted),
            (DumpQueue::Converting, &r.converting),
            (DumpQueue::Waiting, &r.waiting),
            (DumpQueue::Detached, &r.detached),
        ] {
            for l in locks {
                lock_line(out, queue, l, owner_id);
            }
        }
    }
}

/// Appends the line that starts a lockspace's dump.
pub fn header(out: &mut String, ls: &LockspaceSummary, meta: Option<&LsMeta>) {
    out.push_str("lockspace ");
    quote(out, &ls.name);
    let _ = write!(
        out,
        " minor {} created {} openers {} nresources {} nlocks {}",
        ls.minor, ls.create_count, ls.openers, ls.resources, ls.locks
    );
    if let Some(m) = meta {
        let _ = write!(out, " uid {} gid {} mode {:04o}", m.uid, m.gid, m.mode);
    }
    out.push('\n');
}

/// Appends a resource's line.
pub fn resource(out: &mut String, name: &Name, lvb: Option<&Lvb>, lvb_invalid: bool) {
    out.push_str("  resource ");
    quote(out, name);
    match lvb {
        None => out.push_str(" lvb none"),
        Some(lvb) => {
            out.push_str(if lvb_invalid {
                " lvb_valid no lvb "
            } else {
                " lvb_valid yes lvb "
            });
            for b in lvb {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    out.push('\n');
}

/// Appends a lock's line. `owner_id` maps an engine owner to the handle
/// id OPEN reported (`None`: unknown).
pub fn lock_line(
    out: &mut String,
    queue: DumpQueue,
    l: &LockDump,
    owner_id: &dyn Fn(OwnerId) -> Option<u64>,
) {
    let queue = queue.name();
    let _ = write!(
        out,
        "    {queue} lkid {:#010x} grmode {} rqmode {} pid {} owner ",
        l.id,
        l.granted.map_or("--", Mode::name),
        l.requested.map_or("--", Mode::name),
        l.pid
    );
    match l.owner {
        LockOwner::Orphan => out.push_str("orphan"),
        LockOwner::Dead => out.push_str("dead"),
        LockOwner::Owner(o) => match owner_id(o) {
            Some(id) => {
                let _ = write!(out, "{id}");
            }
            None => out.push('?'),
        },
    }
    out.push_str(" flags ");
    flags(out, l.flags);
    if l.xid != 0 {
        let _ = write!(out, " xid {:#x}", l.xid);
    }
    let _ = write!(out, " seconds {}", l.seconds);
    out.push('\n');
}

fn flags(out: &mut String, f: LockFlags) {
    if f.is_empty() {
        out.push('-');
        return;
    }
    let mut first = true;
    let mut named = LockFlags::empty();
    for (name, bits) in f.iter_names() {
        if !first {
            out.push('|');
        }
        first = false;
        out.push_str(name);
        named |= bits;
    }
    let rest = f.bits() & !named.bits();
    if rest != 0 {
        if !first {
            out.push('|');
        }
        let _ = write!(out, "{rest:#x}");
    }
}

fn quote(out: &mut String, name: &Name) {
    out.push('"');
    for &b in name.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::dump::Dump;
    use dlm_engine::ResourceDump;

    fn sample() -> String {
        let lock = |id, granted, requested, pid, flags| LockDump {
            id,
            granted,
            requested,
            owner: LockOwner::Orphan,
            pid,
            flags,
            xid: if id == 1 { 0x77 } else { 0 },
            seconds: 0,
        };
        let ls = LockspaceDump {
            name: Name::lockspace(b"ls1").unwrap(),
            minor: 3,
            create_count: 1,
            openers: 0,
            locks: 3,
            resources: vec![ResourceDump {
                name: Name::new(b"r\"\\\x00z").unwrap(),
                lvb: Some([0xab; dlm_core::LVB_LEN]),
                lvb_invalid: true,
                granted: vec![lock(1, Some(Mode::Pr), None, 10, LockFlags::PERSISTENT)],
                converting: vec![lock(
                    2,
                    Some(Mode::Nl),
                    Some(Mode::Ex),
                    11,
                    LockFlags::CONVERT | LockFlags::from_bits_retain(0x4000_0000),
                )],
                waiting: vec![lock(0x10002, None, Some(Mode::Cw), 12, LockFlags::empty())],
                detached: vec![],
            }],
        };
        let meta = LsMeta {
            name: ls.name,
            uid: 5,
            gid: 6,
            mode: 0o640,
        };
        let mut out = String::new();
        render(&mut out, &ls, Some(&meta), &|_| None);
        out
    }

    #[test]
    fn text_is_readable() {
        let text = sample();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "lockspace \"ls1\" minor 3 created 1 openers 0 nresources 1 nlocks 3 uid 5 gid 6 mode 0640"
        );
        assert!(lines[1].starts_with("  resource \"r\\\"\\\\\\x00z\" lvb_valid no lvb abab"));
        assert_eq!(
            lines[2],
            "    granted lkid 0x00000001 grmode PR rqmode -- pid 10 owner orphan flags PERSISTENT xid 0x77 seconds 0"
        );
        assert_eq!(
            lines[3],
            "    converting lkid 0x00000002 grmode NL rqmode EX pid 11 owner orphan flags CONVERT|0x40000000 seconds 0"
        );
        assert_eq!(
            lines[4],
            "    waiting lkid 0x00010002 grmode -- rqmode CW pid 12 owner orphan flags - seconds 0"
        );
    }

    #[test]
    fn typed_dump() {
        let d = Dump::from_dlmd_text(&sample()).unwrap();
        let r = &d.lockspaces[0].resources[0];
        assert_eq!(d.lockspaces[0].name.as_deref(), Some("ls1"));
        assert_eq!(r.name.as_deref(), Some("r\"\\\u{0}z"));
        assert_eq!(r.name_hex, "72225c007a");
        let ids: Vec<u32> = r.locks.iter().map(|l| l.lkid).collect();
        assert_eq!(ids, [1, 2, 0x10002]);
        assert_eq!(r.locks[0].xid, Some(0x77));
        assert_eq!(r.locks[1].flags, ["CONVERT", "0x40000000"]);
        // The conversion to EX waits for the PR holder; the new CW
        // request for it and for the conversion ahead.
        assert_eq!(r.locks[1].blocked_by, [1]);
        assert_eq!(r.locks[2].blocked_by, [1, 2]);
        assert_eq!(r.locks[2].seconds, Some(0));
        let json = d.to_json();
        let back: Dump = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(json.starts_with("{\"version\":1,"), "{json}");
    }
}
