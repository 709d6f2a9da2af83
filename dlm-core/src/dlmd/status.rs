//! dlmd's STATUS answer (PROTOCOL.md "Control operations"): `key value`
//! lines, rendered by dlmd and read by clients. As with the dump text, a
//! client ignores keys it does not know, and a key that is missing is
//! unknown (`None`), so dlmd may add keys without breaking older clients.

use serde::Serialize;
use std::fmt::Write as _;

/// What a running dlmd reports about itself: every field is `None` when
/// its key was missing or unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DlmdStatus {
    /// dlmd's package version (`version`).
    pub version: Option<String>,
    /// The wire protocol version dlmd speaks (`protocol`).
    pub protocol: Option<u32>,
    /// dlmd's process id (`pid`).
    pub pid: Option<u32>,
    /// When dlmd started, in seconds since the Unix epoch (`started`).
    pub started: Option<u64>,
    /// Whole seconds since dlmd started, on a monotonic clock (`uptime`).
    pub uptime: Option<u64>,
    /// Lockspaces that exist (`lockspaces`).
    pub lockspaces: Option<u64>,
    /// Resources that exist (`resources`).
    pub resources: Option<u64>,
    /// Lock objects that exist, orphans included (`locks`).
    pub locks: Option<u64>,
    /// Open connections to dlmd, the asker's included (`connections`).
    pub connections: Option<u64>,
    /// Open lockspace handles (`handles`).
    pub handles: Option<u64>,
    /// Grants since dlmd started (`grants`, PROTOCOL.md for what counts).
    pub grants: Option<u64>,
    /// Blocking callbacks queued since dlmd started
    /// (`blocking_callbacks`).
    pub blocking_callbacks: Option<u64>,
}

impl DlmdStatus {
    /// Reads the `key value` lines of a STATUS answer. Unknown keys and
    /// lines that do not parse are ignored.
    pub fn parse(text: &str) -> DlmdStatus {
        let mut s = DlmdStatus::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let n = || value.parse::<u64>().ok();
            match key {
                "version" => s.version = Some(value.to_owned()),
                "protocol" => s.protocol = value.parse().ok(),
                "pid" => s.pid = value.parse().ok(),
                "started" => s.started = n(),
                "uptime" => s.uptime = n(),
                "lockspaces" => s.lockspaces = n(),
                "resources" => s.resources = n(),
                "locks" => s.locks = n(),
                "connections" => s.connections = n(),
                "handles" => s.handles = n(),
                "grants" => s.grants = n(),
                "blocking_callbacks" => s.blocking_callbacks = n(),
                _ => {}
            }
        }
        s
    }

    /// The `key value` lines of the known fields, in a fixed order
    /// (`None` fields are left out); [`DlmdStatus::parse`] reads them back.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                let _ = writeln!(out, "{key} {v}");
            }
        };
        let s = |v: Option<u64>| v.map(|n| n.to_string());
        put("version", self.version.clone());
        put("protocol", self.protocol.map(|n| n.to_string()));
        put("pid", self.pid.map(|n| n.to_string()));
        put("started", s(self.started));
        put("uptime", s(self.uptime));
        put("lockspaces", s(self.lockspaces));
        put("resources", s(self.resources));
        put("locks", s(self.locks));
        put("connections", s(self.connections));
        put("handles", s(self.handles));
        put("grants", s(self.grants));
        put("blocking_callbacks", s(self.blocking_callbacks));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_unknown_keys_and_missing_keys() {
        let s = DlmdStatus {
            version: Some("1.2.3".into()),
            protocol: Some(1),
            pid: Some(42),
            started: Some(1_700_000_000),
            uptime: Some(5),
            lockspaces: Some(1),
            resources: Some(2),
            locks: Some(3),
            connections: Some(4),
            handles: Some(2),
            grants: Some(10),
            blocking_callbacks: Some(7),
        };
        assert_eq!(DlmdStatus::parse(&s.to_text()), s);
        // A newer dlmd's extra keys and junk lines are ignored; an older
        // one's missing keys are unknown.
        let p = DlmdStatus::parse("pid 7\nfuture_key 1 2\n\nnonsense\ngrants x\nlocks 3\n");
        assert_eq!(
            p,
            DlmdStatus {
                pid: Some(7),
                locks: Some(3),
                ..DlmdStatus::default()
            }
        );
    }
}
