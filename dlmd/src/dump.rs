//! The lock dump: the text dlmd sends for DUMP (one line per lockspace,
//! resource and lock, `key value` pairs after a leading word), and the
//! conversion of that text to JSON for `dlmd --dump --json`.
//!
//! ```text
//! lockspace "ls" minor 1 created 1 openers 2 nresources 1 nlocks 2 uid 0 gid 0 mode 0600
//!   resource "res" lvb_valid yes lvb 0000…
//!     granted lkid 0x00000001 grmode EX rqmode -- pid 4242 owner 3 flags PERSISTENT
//!     waiting lkid 0x00000002 grmode -- rqmode PR pid 4243 owner 4 flags -
//! ```
//!
//! Names are quoted; printable ASCII stands for itself, `"` and `\` are
//! backslash-escaped, every other byte is `\xHH`. In JSON a name is a
//! string with one code point per byte (U+0000..U+00FF).

use crate::perm::LsMeta;
use dlm_core::{LockFlags, Mode, Name};
use dlm_engine::{LockDump, LockOwner, LockspaceDump, OwnerId};
use std::fmt::Write as _;

/// Appends the dump of one lockspace to `out`. `owner_id` maps an engine
/// owner to the handle id OPEN reported (`None`: unknown).
pub fn render(
    out: &mut String,
    ls: &LockspaceDump,
    meta: Option<&LsMeta>,
    owner_id: &dyn Fn(OwnerId) -> Option<u64>,
) {
    out.push_str("lockspace ");
    quote(out, &ls.name);
    let _ = write!(
        out,
        " minor {} created {} openers {} nresources {} nlocks {}",
        ls.minor,
        ls.create_count,
        ls.openers,
        ls.resources.len(),
        ls.locks
    );
    if let Some(m) = meta {
        let _ = write!(out, " uid {} gid {} mode {:04o}", m.uid, m.gid, m.mode);
    }
    out.push('\n');
    let mut resources: Vec<_> = ls.resources.iter().collect();
    resources.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for r in resources {
        out.push_str("  resource ");
        quote(out, &r.name);
        match &r.lvb {
            None => out.push_str(" lvb none"),
            Some(lvb) => {
                out.push_str(if r.lvb_invalid {
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
        for (queue, locks) in [
            ("granted", &r.granted),
            ("converting", &r.converting),
            ("waiting", &r.waiting),
            ("detached", &r.detached),
        ] {
            for l in locks {
                lock_line(out, queue, l, owner_id);
            }
        }
    }
}

fn lock_line(
    out: &mut String,
    queue: &str,
    l: &LockDump,
    owner_id: &dyn Fn(OwnerId) -> Option<u64>,
) {
    let _ = write!(
        out,
        "    {queue} lkid {:#010x} grmode {} rqmode {} pid {} owner ",
        l.id,
        l.granted.map_or("--", mode_name),
        l.requested.map_or("--", mode_name),
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
    out.push('\n');
}

/// The mode's name as libdlm spells it without the `LKM_` prefix.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Nl => "NL",
        Mode::Cr => "CR",
        Mode::Cw => "CW",
        Mode::Pr => "PR",
        Mode::Pw => "PW",
        Mode::Ex => "EX",
    }
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

/// Converts dump text (as [`render`] writes it) to a JSON document:
/// `{"lockspaces":[{…,"resources":[{…,"granted":[…],"converting":[…],
/// "waiting":[…],"detached":[…]}]}]}`. Numbers become numbers, `yes`/`no` booleans,
/// `flags` an array of names.
///
/// # Errors
/// The number of the first line that is not dump text.
pub fn to_json(text: &str) -> Result<String, usize> {
    let mut out = String::from("{\"lockspaces\":[");
    // Which containers are open: 0 none, 1 lockspace, 2 resource.
    let mut depth = 0;
    let mut first_ls = true;
    let mut first_res = true;
    // The current resource's lock lines, by queue, as JSON objects.
    let mut queues: [Vec<String>; 4] = Default::default();
    let close_resource = |out: &mut String, queues: &mut [Vec<String>; 4]| {
        for (name, q) in QUEUES.iter().zip(queues.iter_mut()) {
            let _ = write!(out, ",\"{name}\":[{}]", q.join(","));
            q.clear();
        }
        out.push('}');
    };
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let tokens = tokenize(line).ok_or(n + 1)?;
        let (Some(Token::Word(kind)), rest) = (tokens.first(), tokens.get(1..).unwrap_or(&[]))
        else {
            return Err(n + 1);
        };
        match kind.as_str() {
            "lockspace" | "resource" => {
                let Some(Token::Name(name)) = rest.first() else {
                    return Err(n + 1);
                };
                if depth == 2 {
                    close_resource(&mut out, &mut queues);
                }
                if kind == "lockspace" {
                    if depth >= 1 {
                        out.push_str("]}");
                    }
                    if !first_ls {
                        out.push(',');
                    }
                    first_ls = false;
                    first_res = true;
                    depth = 1;
                } else {
                    if depth == 0 {
                        return Err(n + 1);
                    }
                    if !first_res {
                        out.push(',');
                    }
                    first_res = false;
                    depth = 2;
                }
                out.push_str("{\"name\":");
                json_bytes(&mut out, name);
                pairs(&mut out, &rest[1..]).ok_or(n + 1)?;
                if kind == "lockspace" {
                    out.push_str(",\"resources\":[");
                }
            }
            "granted" | "converting" | "waiting" | "detached" => {
                if depth != 2 {
                    return Err(n + 1);
                }
                let q = match kind.as_str() {
                    "granted" => 0,
                    "converting" => 1,
                    "waiting" => 2,
                    _ => 3,
                };
                let mut obj = String::from("{\"queue\":");
                json_bytes(&mut obj, kind.as_bytes());
                pairs(&mut obj, rest).ok_or(n + 1)?;
                obj.push('}');
                queues[q].push(obj);
            }
            _ => return Err(n + 1),
        }
    }
    if depth == 2 {
        close_resource(&mut out, &mut queues);
    }
    if depth >= 1 {
        out.push_str("]}");
    }
    out.push_str("]}");
    Ok(out)
}

/// Appends `,"key":value` for each pair of tokens.
fn pairs(out: &mut String, tokens: &[Token]) -> Option<()> {
    if tokens.len() % 2 != 0 {
        return None;
    }
    for kv in tokens.chunks(2) {
        let Token::Word(key) = &kv[0] else {
            return None;
        };
        out.push(',');
        json_bytes(out, key.as_bytes());
        out.push(':');
        match &kv[1] {
            Token::Name(bytes) => json_bytes(out, bytes),
            Token::Word(v) => json_value(out, key, v),
        }
    }
    Some(())
}

fn json_value(out: &mut String, key: &str, v: &str) {
    if key == "flags" {
        out.push('[');
        if v != "-" {
            for (i, f) in v.split('|').enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_bytes(out, f.as_bytes());
            }
        }
        out.push(']');
    } else if v == "yes" || v == "no" {
        out.push_str(if v == "yes" { "true" } else { "false" });
    } else if let Some(hex) = v
        .strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
    {
        let _ = write!(out, "{hex}");
    } else if !v.is_empty()
        && v.bytes().all(|c| c.is_ascii_digit())
        && (v == "0" || !v.starts_with('0'))
        && v.parse::<u64>().is_ok()
    {
        out.push_str(v);
    } else {
        json_bytes(out, v.as_bytes());
    }
}

/// A JSON string with one code point per byte.
fn json_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
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
            "    granted lkid 0x00000001 grmode PR rqmode -- pid 10 owner orphan flags PERSISTENT xid 0x77"
        );
        assert_eq!(
            lines[3],
            "    converting lkid 0x00000002 grmode NL rqmode EX pid 11 owner orphan flags CONVERT|0x40000000"
        );
        assert_eq!(
            lines[4],
            "    waiting lkid 0x00010002 grmode -- rqmode CW pid 12 owner orphan flags -"
        );
    }

    #[test]
    fn json_conversion() {
        let json = to_json(&sample()).unwrap();
        assert!(json.starts_with(
            "{\"lockspaces\":[{\"name\":\"ls1\",\"minor\":3,\"created\":1,\"openers\":0,\
             \"nresources\":1,\"nlocks\":3,\"uid\":5,\"gid\":6,\"mode\":\"0640\",\"resources\":[{\"name\":\
             \"r\\\"\\\\\\u0000z\",\"lvb_valid\":false,\"lvb\":\"abab"
        ));
        assert!(json.contains(
            "\"granted\":[{\"queue\":\"granted\",\"lkid\":1,\"grmode\":\"PR\",\"rqmode\":\"--\",\
             \"pid\":10,\"owner\":\"orphan\",\"flags\":[\"PERSISTENT\"],\"xid\":119}]"
        ));
        assert!(json.contains("\"flags\":[\"CONVERT\",\"0x40000000\"]"));
        assert!(json.ends_with("\"flags\":[]}],\"detached\":[]}]}]}"));
        assert_eq!(to_json("").unwrap(), "{\"lockspaces\":[]}");
        assert_eq!(
            to_json("lockspace \"a\" minor 1\n").unwrap(),
            "{\"lockspaces\":[{\"name\":\"a\",\"minor\":1,\"resources\":[]}]}"
        );
        assert_eq!(to_json("bogus\n"), Err(1));
        assert_eq!(to_json("lockspace \"a\n"), Err(1));
        assert_eq!(to_json("lockspace \"a\"\n    granted lkid 1\n"), Err(2));
    }
}
