//! `dlm locks --stuck`, `dlm why` and `dlm stats`: views of
//! the typed lock dump ([`dlm_core::dump::Dump`]).

use crate::dump::{lock_line, show_name};
use dlm_core::dlmd::status::DlmdStatus;
use dlm_core::dump::{Dump, LockInfo, LockState, LockspaceDump, ResourceDump};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The dump cut down to the resources with a request (waiting or
/// converting) at least `secs` old; whether there is any.
pub fn stuck(dump: &Dump, secs: u64) -> (Dump, bool) {
    let old = |l: &LockInfo| l.is_request() && l.seconds.unwrap_or(0) >= secs;
    let mut out = Dump::new(&dump.backend);
    let mut any = false;
    for ls in &dump.lockspaces {
        let resources: Vec<ResourceDump> = ls
            .resources
            .iter()
            .filter(|r| r.locks.iter().any(old))
            .cloned()
            .collect();
        if !resources.is_empty() {
            any = true;
            out.lockspaces.push(LockspaceDump {
                resources,
                ..ls.clone()
            });
        }
    }
    let ids: Vec<u32> = out
        .requests()
        .filter(|(_, _, l)| old(l))
        .map(|(_, _, l)| l.lkid)
        .collect();
    out.deadlocks = dump
        .deadlocks
        .iter()
        .filter(|d| d.lkids.iter().any(|i| ids.contains(i)))
        .cloned()
        .collect();
    (out, any)
}

/// The text of `--stuck`: one line per old request.
pub fn stuck_text(dump: &Dump, secs: u64) -> String {
    let mut out = String::new();
    for (ls, r, l) in dump.requests() {
        if l.seconds.unwrap_or(0) >= secs {
            let _ = writeln!(
                out,
                "lockspace {} resource {} {}",
                show_name(&ls.name, &ls.name_hex),
                show_name(&r.name, &r.name_hex),
                lock_line(l)
            );
        }
    }
    out
}

/// One process, as `pid N (command)`.
fn who(l: &LockInfo) -> String {
    let mut s = format!("pid {}", l.pid);
    if let Some(n) = l.nodeid.filter(|&n| n != 0) {
        let _ = write!(s, " on node {n}");
    }
    if let Some(c) = &l.command {
        let _ = write!(s, " ({c})");
    }
    s
}

fn age(l: &LockInfo) -> String {
    l.seconds.map_or(String::new(), |s| format!(" for {s}s"))
}

fn mode(m: Option<dlm_core::Mode>) -> &'static str {
    m.map_or("--", dlm_core::Mode::name)
}

/// `dlm why`: the text for resource `name` of the (one-lockspace) dump,
/// or `None` when the resource has no locks.
pub fn why(dump: &Dump, name: &[u8]) -> Option<String> {
    let hex = dlm_core::dump::hex(name);
    let ls = dump.lockspaces.first()?;
    let r = ls.resources.iter().find(|r| r.name_hex == hex)?;
    let mut out = format!(
        "resource {} in lockspace {}\n",
        show_name(&r.name, &r.name_hex),
        show_name(&ls.name, &ls.name_hex)
    );
    out.push_str("holders:\n");
    for l in r.locks.iter().filter(|l| l.grmode.is_some()) {
        let _ = writeln!(
            out,
            "  lkid {:#x} {} {}, held{}",
            l.lkid,
            mode(l.grmode),
            who(l),
            if l.state == LockState::Granted {
                age(l)
            } else {
                format!(", converting to {}{}", mode(l.rqmode), age(l))
            }
        );
    }
    out.push_str("queue:\n");
    for l in r.locks.iter().filter(|l| l.is_request()) {
        let what = if l.state == LockState::Converting {
            format!("converting {} -> {}", mode(l.grmode), mode(l.rqmode))
        } else {
            format!("waiting for {}", mode(l.rqmode))
        };
        let _ = writeln!(out, "  lkid {:#x} {what} {}{}", l.lkid, who(l), age(l));
        let mut path = vec![l.lkid];
        let mut seen = Vec::new();
        chain(&mut out, ls, r, l, 2, &mut path, &mut seen);
    }
    for d in &dump.deadlocks {
        if d.lkids.iter().any(|i| r.locks.iter().any(|l| l.lkid == *i)) {
            let pids: Vec<String> = d.pids.iter().map(u32::to_string).collect();
            let ids: Vec<String> = d.lkids.iter().map(|i| format!("{i:#x}")).collect();
            let _ = writeln!(
                out,
                "DEADLOCK: processes {} wait for each other (locks {})",
                pids.join(", "),
                ids.join(", ")
            );
        }
    }
    Some(out)
}

/// The blockers of `l` (on resource `r`), then what they wait for in
/// turn, anywhere in the lockspace. `path`: the locks above this one
/// (a blocker among them closes a cycle); `seen`: the locks already
/// explained for this request (not repeated).
fn chain(
    out: &mut String,
    ls: &LockspaceDump,
    r: &ResourceDump,
    l: &LockInfo,
    depth: usize,
    path: &mut Vec<u32>,
    seen: &mut Vec<u32>,
) {
    let pad = "  ".repeat(depth);
    for b in &l.blocked_by {
        let Some(bl) = r.locks.iter().find(|x| x.lkid == *b) else {
            continue;
        };
        let how = match bl.state {
            LockState::Granted => format!("holds {}{}", mode(bl.grmode), age(bl)),
            LockState::Converting => format!(
                "holds {} converting to {}{}",
                mode(bl.grmode),
                mode(bl.rqmode),
                age(bl)
            ),
            _ => format!("is queued ahead for {}{}", mode(bl.rqmode), age(bl)),
        };
        let _ = writeln!(
            out,
            "{pad}blocked by lkid {:#x}: {} {how}",
            bl.lkid,
            who(bl)
        );
        if path.contains(&bl.lkid) {
            let _ = writeln!(out, "{pad}  (a cycle: see DEADLOCK)");
            continue;
        }
        if seen.contains(&bl.lkid) {
            continue;
        }
        seen.push(bl.lkid);
        path.push(bl.lkid);
        if bl.is_request() {
            chain(out, ls, r, bl, depth + 1, path, seen);
        }
        // What the blocker's owner (or a process it started) waits for
        // elsewhere.
        for r2 in &ls.resources {
            for w in r2.locks.iter().filter(|w| {
                w.is_request()
                    && w.nodeid == bl.nodeid
                    && w.lkid != bl.lkid
                    && (w.pid == bl.pid || (w.nodeid.unwrap_or(0) == 0 && descends(w.pid, bl.pid)))
            }) {
                let by = if w.pid == bl.pid {
                    String::new()
                } else {
                    format!(" (its descendant {})", who(w))
                };
                let _ = writeln!(
                    out,
                    "{pad}  which waits{by} on resource {}: lkid {:#x} for {}{}",
                    show_name(&r2.name, &r2.name_hex),
                    w.lkid,
                    mode(w.rqmode),
                    age(w)
                );
                if path.contains(&w.lkid) {
                    let _ = writeln!(out, "{pad}    (a cycle: see DEADLOCK)");
                    continue;
                }
                if seen.contains(&w.lkid) {
                    continue;
                }
                seen.push(w.lkid);
                path.push(w.lkid);
                chain(out, ls, r2, w, depth + 2, path, seen);
                path.pop();
            }
        }
        path.pop();
    }
}

/// Whether local process `pid` descends from `ancestor` (ppid chain).
fn descends(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        match dlm_core::dump::parent_pid(p) {
            Some(pp) if pp == ancestor => return true,
            Some(pp) if pp > 1 && pp != p => p = pp,
            _ => return false,
        }
    }
    false
}

/// A Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `dlm stats --prometheus`: gauges from the dump; with dlmd's STATUS
/// (dlmd only) its counters, start time and version too.
pub fn prometheus(dump: &Dump, dlmd: Option<&DlmdStatus>) -> String {
    let mut out = String::new();
    let b = label(&dump.backend);
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
    };
    gauge(&mut out, "dlm_lockspaces", "Lockspaces.");
    let _ = writeln!(
        out,
        "dlm_lockspaces{{backend=\"{b}\"}} {}",
        dump.lockspaces.len()
    );
    let lsname = |ls: &LockspaceDump| label(&show_plain(&ls.name, &ls.name_hex));
    gauge(&mut out, "dlm_resources", "Resources with locks.");
    for ls in &dump.lockspaces {
        let _ = writeln!(
            out,
            "dlm_resources{{backend=\"{b}\",lockspace=\"{}\"}} {}",
            lsname(ls),
            ls.resources.len()
        );
    }
    gauge(
        &mut out,
        "dlm_locks",
        "Locks by state and mode (the granted mode of granted locks, the requested mode of requests).",
    );
    for ls in &dump.lockspaces {
        let mut by: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for l in ls.resources.iter().flat_map(|r| &r.locks) {
            let (state, m) = match l.state {
                LockState::Granted => ("granted", l.grmode),
                LockState::Converting => ("converting", l.rqmode),
                LockState::Waiting => ("waiting", l.rqmode),
                LockState::Detached => ("detached", l.grmode),
            };
            *by.entry((state, mode(m))).or_default() += 1;
        }
        for ((state, m), n) in by {
            let _ = writeln!(
                out,
                "dlm_locks{{backend=\"{b}\",lockspace=\"{}\",state=\"{state}\",mode=\"{m}\"}} {n}",
                lsname(ls)
            );
        }
    }
    gauge(
        &mut out,
        "dlm_waiters",
        "Pending requests (waiting or converting).",
    );
    gauge(
        &mut out,
        "dlm_oldest_wait_seconds",
        "Age of the oldest pending request (0: none).",
    );
    for ls in &dump.lockspaces {
        let reqs = || {
            ls.resources
                .iter()
                .flat_map(|r| &r.locks)
                .filter(|l| l.is_request())
        };
        let _ = writeln!(
            out,
            "dlm_waiters{{backend=\"{b}\",lockspace=\"{}\"}} {}",
            lsname(ls),
            reqs().count()
        );
        let _ = writeln!(
            out,
            "dlm_oldest_wait_seconds{{backend=\"{b}\",lockspace=\"{}\"}} {}",
            lsname(ls),
            reqs().filter_map(|l| l.seconds).max().unwrap_or(0)
        );
    }
    gauge(
        &mut out,
        "dlm_deadlocks",
        "Cycles in the wait-for graph between lock owners.",
    );
    let _ = writeln!(
        out,
        "dlm_deadlocks{{backend=\"{b}\"}} {}",
        dump.deadlocks.len()
    );
    if let Some(s) = dlmd {
        dlmd_metrics(&mut out, &b, s);
    }
    out
}

/// The metrics of dlmd's STATUS: counters since its start, its start
/// time and an info series; a key dlmd did not send is left out.
fn dlmd_metrics(out: &mut String, b: &str, s: &DlmdStatus) {
    let mut metric = |name: &str, kind: &str, help: &str, labels: String, v: Option<u64>| {
        if let Some(v) = v {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{backend=\"{b}\"{labels}}} {v}");
        }
    };
    metric(
        "dlm_grants_total",
        "counter",
        "Grants since dlmd started: new locks and conversions, at once or after waiting.",
        String::new(),
        s.grants,
    );
    metric(
        "dlm_blocking_callbacks_total",
        "counter",
        "Blocking callbacks queued to lock holders since dlmd started.",
        String::new(),
        s.blocking_callbacks,
    );
    metric(
        "dlm_dlmd_start_time_seconds",
        "gauge",
        "When dlmd started, in seconds since the Unix epoch.",
        String::new(),
        s.started,
    );
    metric(
        "dlm_dlmd_info",
        "gauge",
        "dlmd's package and protocol versions (always 1).",
        format!(
            ",version=\"{}\",protocol=\"{}\"",
            label(s.version.as_deref().unwrap_or("unknown")),
            s.protocol.map_or("unknown".to_string(), |p| p.to_string())
        ),
        Some(1),
    );
}

/// A name as plain text (UTF-8, or `0x` and hex).
fn show_plain(name: &Option<String>, hex: &str) -> String {
    name.clone().unwrap_or_else(|| format!("0x{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
