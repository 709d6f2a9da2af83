//! Reading dlmd's lock dump text: the lockspace names in it, and its
//! conversion to JSON (for `dlm locks --json` and `dlmd --dump --json`).
//!
//! The text is one line per lockspace, resource and lock: a leading word,
//! then `key value` pairs; names are quoted (printable ASCII as is, `"`
//! and `\\` backslash-escaped, other bytes `\xHH`):
//!
//! ```text
//! lockspace "ls" minor 1 created 1 openers 2 uid 0 gid 0 mode 0600
//!   resource "res" lvb_valid yes lvb 0000…
//!     granted lkid 0x00000001 grmode EX rqmode EX pid 4242 owner 3 flags PERSISTENT
//!     waiting lkid 0x00000002 grmode -- rqmode PR pid 4243 owner 4 flags -
//! ```
//!
//! dlmd never reads other processes' `/proc`; a client adds each owner's
//! command line itself ([`with_commands`]), as a last pair `command
//! "argv joined by spaces"` on the lock lines whose pid it can see.

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
    if pid == 0 {
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

/// Converts dump text (as dlmd writes it) to a JSON document:
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
        let json = to_json(&text).unwrap();
        assert!(
            json.contains("\"command\":\"sh -c \\\"x\\\" \\u00c3\\u00a9\""),
            "{json}"
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

    #[test]
    fn json() {
        let json = to_json(SAMPLE).unwrap();
        assert!(json.starts_with("{\"lockspaces\":[{\"name\":\"a\",\"minor\":1,\"created\":1,\"openers\":2,\"resources\":[{\"name\":\"r\\u0001\",\"lvb_valid\":false"), "{json}");
        assert!(json.contains("\"lkid\":1,\"grmode\":\"EX\""), "{json}");
        assert!(
            json.contains("\"flags\":[\"PERSISTENT\",\"0x40000000\"]"),
            "{json}"
        );
        assert!(
            json.ends_with("{\"name\":\"b\",\"minor\":2,\"resources\":[]}]}"),
            "{json}"
        );
        assert_eq!(to_json("").unwrap(), "{\"lockspaces\":[]}");
        assert_eq!(to_json("bogus\n"), Err(1));
        assert_eq!(to_json("lockspace \"a\n"), Err(1));
    }
}
