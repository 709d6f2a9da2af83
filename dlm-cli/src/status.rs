//! `dlm status [--json]`: which lock manager answers and where, dlmd's
//! own status (STATUS: version, protocol, pid, uptime, counts, counters)
//! or the kernel's lockspaces, and the counts of the lock dump. Exit 0
//! when a lock manager answers, 3 when none does.

use crate::{Fail, control, dump};
use dlm_core::dlmd::status::DlmdStatus;
use dlm_core::transport::Control;
use serde::Serialize;
use std::process::ExitCode;

/// What `dlm status` found; the same keys on both backends (`null`
/// where a fact does not apply or is unknown).
#[derive(Serialize)]
struct Facts {
    backend: &'static str,
    /// dlmd's socket.
    socket: Option<String>,
    /// The kernel's devices.
    devices: Option<&'static str>,
    /// The device interface version, `6.0.2`.
    interface: String,
    /// This tool's version.
    dlm: &'static str,
    /// dlmd's own status (STATUS).
    dlmd: Option<DlmdStatus>,
    /// Why `dlmd` is null on the dlmd backend.
    dlmd_error: Option<String>,
    /// The kernel's lockspaces, from sysfs (readable without root).
    lockspace_names: Option<Vec<String>>,
    /// Why `lockspace_names` is null on the kernel backend.
    lockspace_names_error: Option<String>,
    /// Counts from the lock dump (what this user may see).
    dump: Option<DumpCounts>,
    /// Why `dump` is null.
    dump_error: Option<String>,
}

#[derive(Serialize)]
struct DumpCounts {
    /// Names (UTF-8, or `0x` and hex).
    lockspaces: Vec<String>,
    /// The same, as `dlm locks` shows them.
    #[serde(skip)]
    shown: Vec<String>,
    resources: usize,
    locks: usize,
    waiting: usize,
    deadlocks: usize,
}

/// `dlm status`, as text or (with `json`) one JSON object.
pub fn run(json: bool) -> Result<ExitCode, Fail> {
    let ctl = match control() {
        Ok(c) => c,
        Err(Fail(why)) => {
            if json {
                let o = serde_json::json!({ "backend": null, "error": why });
                println!("{o}");
            } else {
                println!("no lock manager: {why}");
            }
            return Ok(ExitCode::from(3));
        }
    };
    let facts = gather(&ctl);
    if json {
        let text = serde_json::to_string(&facts).map_err(|e| Fail(format!("json: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", text(&facts));
    }
    Ok(ExitCode::SUCCESS)
}

fn gather(ctl: &Control) -> Facts {
    let v = ctl.version();
    let mut f = Facts {
        backend: "",
        socket: None,
        devices: None,
        interface: format!("{}.{}.{}", v.major, v.minor, v.patch),
        dlm: env!("CARGO_PKG_VERSION"),
        dlmd: None,
        dlmd_error: None,
        lockspace_names: None,
        lockspace_names_error: None,
        dump: None,
        dump_error: None,
    };
    match ctl {
        Control::Dlmd(c, _, path) => {
            f.backend = "dlmd";
            f.socket = Some(path.path.display().to_string());
            match c.status() {
                Ok(Some(s)) => f.dlmd = Some(s),
                Ok(None) => f.dlmd_error = Some("dlmd does not report status".into()),
                Err(e) => f.dlmd_error = Some(format!("dlmd status unavailable: {e}")),
            }
        }
        Control::Kernel(_) => {
            f.backend = "kernel";
            f.devices = Some("/dev/misc/dlm-control (and dlm_<lockspace> per lockspace)");
            match dump::lockspaces(ctl) {
                Ok(names) => f.lockspace_names = Some(names),
                Err(e) => f.lockspace_names_error = Some(format!("unavailable: {e}")),
            }
        }
    }
    match dump::load(ctl, None) {
        Ok(d) => {
            f.dump = Some(DumpCounts {
                lockspaces: d
                    .lockspaces
                    .iter()
                    .map(|l| {
                        l.name
                            .clone()
                            .unwrap_or_else(|| format!("0x{}", l.name_hex))
                    })
                    .collect(),
                shown: d
                    .lockspaces
                    .iter()
                    .map(|l| dump::show_name(&l.name, &l.name_hex))
                    .collect(),
                resources: d.lockspaces.iter().map(|l| l.resources.len()).sum(),
                locks: d
                    .lockspaces
                    .iter()
                    .flat_map(|l| &l.resources)
                    .map(|r| r.locks.len())
                    .sum(),
                waiting: d.requests().count(),
                deadlocks: d.deadlocks.len(),
            });
        }
        Err(e) => f.dump_error = Some(format!("dump unavailable: {e}")),
    }
    f
}

/// `1d 2h 3m 4s`, leaving out leading zero units.
fn duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn text(f: &Facts) -> String {
    let mut out = format!("backend {}\n", f.backend);
    if let Some(s) = &f.socket {
        out += &format!("socket {s}\n");
    }
    if let Some(d) = f.devices {
        out += &format!("devices {d}\n");
    }
    if let Some(names) = &f.lockspace_names {
        out += &format!("lockspace names: {}\n", names.join(" "));
    }
    if let Some(e) = &f.lockspace_names_error {
        out += &format!("lockspace names {e}\n");
    }
    out += &format!("interface {}\ndlm {}\n", f.interface, f.dlm);
    let n = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
    if let Some(s) = &f.dlmd {
        out += &format!(
            "dlmd {} (pid {}, protocol {})\n",
            s.version.as_deref().unwrap_or("?"),
            n(s.pid.map(u64::from)),
            n(s.protocol.map(u64::from)),
        );
        out += &format!("uptime {}\n", s.uptime.map_or("?".into(), duration));
        out += &format!(
            "dlmd totals: lockspaces {}, resources {}, locks {}, handles {}, connections {}\n",
            n(s.lockspaces),
            n(s.resources),
            n(s.locks),
            n(s.handles),
            n(s.connections),
        );
        out += &format!(
            "since start: grants {}, blocking callbacks {}\n",
            n(s.grants),
            n(s.blocking_callbacks),
        );
    }
    if let Some(e) = &f.dlmd_error {
        out += &format!("{e}\n");
    }
    if let Some(d) = &f.dump {
        out += &format!(
            "lockspaces {} ({})\nresources {}\nlocks {}\nwaiting {}\ndeadlocks {}\n",
            d.shown.len(),
            d.shown.join(" "),
            d.resources,
            d.locks,
            d.waiting,
            d.deadlocks
        );
    }
    if let Some(e) = &f.dump_error {
        out += &format!("{e}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_leave_out_leading_zero_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3600), "1h 0m 0s");
        assert_eq!(duration(86_400 + 3 * 3600 + 61), "1d 3h 1m 1s");
    }
}
