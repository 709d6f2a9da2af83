//! The lock dump and the lockspace list, from whichever lock manager is in
//! use: dlmd's DUMP operation, or the kernel's debugfs files
//! (`/sys/kernel/debug/dlm/<lockspace>_locks`, format described in
//! `docs/kernel-lock-dump.md`) and sysfs (`/sys/kernel/dlm/`).
//!
//! Each lock is shown with its owner's command line where this process
//! can read it (`/proc/PID/cmdline`): dlmd never looks at other processes,
//! the client does.

use dlm_core::Name;
use dlm_core::dump::{Dump, LockInfo, LockState, LockspaceDump, ResourceDump};
use dlm_core::transport::Control;
use std::path::Path;

const DEBUGFS: &str = "/sys/kernel/debug";
const SYSFS_DLM: &str = "/sys/kernel/dlm";

/// The lock dump of one lockspace or all, as text (`dlm locks`).
/// dlmd's dump is shown from the typed model with each request's
/// blockers; the kernel's `_locks` files as they are, with command lines.
pub fn locks_text(ctl: &Control, lockspace: Option<&Name>) -> Result<String, String> {
    match ctl {
        Control::Dlmd(..) => Ok(render_text(&load(ctl, lockspace)?)),
        Control::Kernel(_) => kernel_locks_text(lockspace),
    }
}

/// The typed dump of one lockspace or all, with `blocked_by` and
/// `deadlocks` filled in.
pub fn load(ctl: &Control, lockspace: Option<&Name>) -> Result<Dump, String> {
    let dump = match ctl {
        Control::Dlmd(..) => {
            let text = ctl.dump(lockspace).map_err(|e| match e {
                dlm_core::Errno::ENOENT => "no such lockspace".to_string(),
                e => format!("lock dump: {e}"),
            })?;
            Dump::from_dlmd_text(&text).map_err(|line| format!("malformed dump at line {line}"))?
        }
        Control::Kernel(_) => {
            let mut dump = kernel_dump(lockspace)?;
            dump.analyze(&dlm_core::dump::parent_pid);
            dump
        }
    };
    Ok(dump)
}

/// A mode name or `--`.
fn mode(m: Option<dlm_core::Mode>) -> &'static str {
    m.map_or("--", dlm_core::Mode::name)
}

/// A name for text output: quoted UTF-8, or `0x` and hex.
pub fn show_name(name: &Option<String>, hex: &str) -> String {
    match name {
        Some(n) => format!("{n:?}"),
        None => format!("0x{hex}"),
    }
}

/// One lock as a line of `dlm locks`.
pub fn lock_line(l: &LockInfo) -> String {
    let state = match l.state {
        LockState::Granted => "granted",
        LockState::Converting => "converting",
        LockState::Waiting => "waiting",
        LockState::Detached => "detached",
    };
    let mut line = format!(
        "{state} lkid {:#010x} grmode {} rqmode {} pid {}",
        l.lkid,
        mode(l.grmode),
        mode(l.rqmode),
        l.pid
    );
    if let Some(n) = l.nodeid {
        line.push_str(&format!(" nodeid {n}"));
    }
    if let Some(o) = &l.owner {
        line.push_str(&format!(" owner {o}"));
    }
    line.push_str(" flags ");
    line.push_str(&if l.flags.is_empty() {
        "-".to_string()
    } else {
        l.flags.join("|")
    });
    if let Some(s) = l.seconds {
        line.push_str(&format!(" seconds {s}"));
    }
    if !l.blocked_by.is_empty() {
        let ids: Vec<String> = l.blocked_by.iter().map(|i| format!("{i:#x}")).collect();
        line.push_str(&format!(" blocked_by {}", ids.join(",")));
    }
    if let Some(c) = &l.command {
        line.push_str(&format!(" command {c:?}"));
    }
    line
}

/// The text of `dlm locks`.
pub fn render_text(dump: &Dump) -> String {
    let mut out = String::new();
    for ls in &dump.lockspaces {
        out.push_str(&format!("lockspace {}", show_name(&ls.name, &ls.name_hex)));
        if let Some(m) = ls.minor {
            out.push_str(&format!(" minor {m}"));
        }
        if let Some(o) = ls.openers {
            out.push_str(&format!(" openers {o}"));
        }
        out.push('\n');
        for r in &ls.resources {
            out.push_str(&format!("  resource {}", show_name(&r.name, &r.name_hex)));
            if let Some(lvb) = &r.lvb {
                let valid = if r.lvb_valid == Some(false) {
                    "no"
                } else {
                    "yes"
                };
                out.push_str(&format!(" lvb_valid {valid} lvb {lvb}"));
            }
            out.push('\n');
            for l in &r.locks {
                out.push_str("    ");
                out.push_str(&lock_line(l));
                out.push('\n');
            }
        }
    }
    for d in &dump.deadlocks {
        let ids: Vec<String> = d.lkids.iter().map(|i| format!("{i:#x}")).collect();
        let pids: Vec<String> = d.pids.iter().map(u32::to_string).collect();
        out.push_str(&format!(
            "deadlock pids {} lkids {}\n",
            pids.join(","),
            ids.join(",")
        ));
    }
    out
}

/// The names of the lockspaces.
pub fn lockspaces(ctl: &Control) -> Result<Vec<String>, String> {
    match ctl {
        Control::Dlmd(..) => {
            let text = ctl.dump(None).map_err(|e| format!("lock dump: {e}"))?;
            Ok(dlm_core::dump::lockspace_names(&text))
        }
        Control::Kernel(_) => {
            let dir = std::fs::read_dir(SYSFS_DLM).map_err(|e| format!("{SYSFS_DLM}: {e}"))?;
            let mut names: Vec<String> = dir
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            Ok(names)
        }
    }
}

/// Whether debugfs is mounted at [`DEBUGFS`].
fn debugfs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next(), f.next(), f.next());
            dir == Some(DEBUGFS) && fstype == Some("debugfs")
        })
    })
}

/// debugfs, mounted for one dump when it was not mounted already, and
/// unmounted again when dropped: `dlm locks` leaves no mount behind.
struct Debugfs {
    mounted_here: bool,
}

impl Debugfs {
    fn ensure() -> Result<Debugfs, String> {
        let unavailable = || {
            format!(
                "the kernel's lock dump needs debugfs at {DEBUGFS} (mount -t debugfs debugfs {DEBUGFS}, as root)"
            )
        };
        if debugfs_mounted() || Path::new(DEBUGFS).join("dlm").exists() {
            return Ok(Debugfs {
                mounted_here: false,
            });
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "debugfs", "debugfs", DEBUGFS])
            .status()
            .map_err(|e| format!("mount debugfs: {e}"))?;
        if !status.success() {
            return Err(unavailable());
        }
        let debugfs = Debugfs { mounted_here: true };
        if Path::new(DEBUGFS).join("dlm").exists() {
            Ok(debugfs)
        } else {
            Err(unavailable())
        }
    }
}

impl Drop for Debugfs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = std::process::Command::new("umount").arg(DEBUGFS).status();
        }
    }
}

/// Adds ` command "…"` to each lock line of a kernel `_locks` file whose
/// owner is on this node and visible here; also returns those pids'
/// command lines.
fn kernel_commands(text: &str) -> (String, Vec<(u32, String)>) {
    let mut out = String::with_capacity(text.len());
    let mut found: Vec<(u32, String)> = Vec::new();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let cols: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    out.push_str(header);
    out.push('\n');
    for line in lines {
        out.push_str(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |i: Option<usize>| i.and_then(|i| words.get(i).copied());
        // nodeid 0: the lock is this node's, so its pid is one of ours.
        let local = field(col("nodeid")) == Some("0");
        let pid = field(col("pid")).and_then(|p| p.parse::<u32>().ok());
        if let (true, Some(pid)) = (local, pid) {
            let known = found
                .iter()
                .find(|(p, _)| *p == pid)
                .map(|(_, c)| c.clone());
            if let Some(cmd) = known.or_else(|| dlm_core::dump::command_line(pid)) {
                out.push_str(&format!(" command {cmd:?}"));
                if !found.iter().any(|(p, _)| *p == pid) {
                    found.push((pid, cmd));
                }
            }
        }
        out.push('\n');
    }
    (out, found)
}

/// The kernel's lockspace names to dump.
fn kernel_names(lockspace: Option<&Name>) -> Result<Vec<String>, String> {
    Ok(match lockspace {
        Some(n) => vec![String::from_utf8_lossy(n.as_bytes()).into_owned()],
        None => {
            let dir = std::fs::read_dir(SYSFS_DLM).map_err(|e| format!("{SYSFS_DLM}: {e}"))?;
            let mut v: Vec<String> = dir
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    })
}

/// Reads one lockspace's `_locks` file.
fn read_kernel_file(name: &str) -> Result<String, String> {
    let path = Path::new(DEBUGFS).join("dlm").join(format!("{name}_locks"));
    // Names are printed as raw bytes: keep the text readable whatever
    // they hold.
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                "{}: {e} (the kernel's lock dump needs root)",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn kernel_locks_text(lockspace: Option<&Name>) -> Result<String, String> {
    let _debugfs = Debugfs::ensure()?;
    let mut out = String::new();
    for name in kernel_names(lockspace)? {
        let text = read_kernel_file(&name)?;
        let (annotated, _) = kernel_commands(&text);
        out.push_str(&format!(
            "lockspace \"{name}\" (kernel {DEBUGFS}/dlm/{name}_locks)\n{annotated}"
        ));
    }
    Ok(out)
}

fn kernel_dump(lockspace: Option<&Name>) -> Result<Dump, String> {
    let _debugfs = Debugfs::ensure()?;
    let mut dump = Dump::new("kernel");
    for name in kernel_names(lockspace)? {
        let text = read_kernel_file(&name)?;
        let (n, hex) = dlm_core::dump::name_fields(name.as_bytes());
        dump.lockspaces.push(LockspaceDump {
            name: n,
            name_hex: hex,
            resources: parse_kernel_locks(&text, &dlm_core::dump::command_line)?,
            ..LockspaceDump::default()
        });
    }
    Ok(dump)
}

/// Parses a kernel `_locks` file (`print_format2`, described in
/// `docs/kernel-lock-dump.md`) into resources, locks in file order
/// (each resource's grant, convert, then wait queue).
pub fn parse_kernel_locks(
    text: &str,
    command: &dyn Fn(u32) -> Option<String>,
) -> Result<Vec<ResourceDump>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let need =
        |name: &str| col(name).ok_or_else(|| format!("kernel lock dump has no {name} column"));
    let (c_id, c_node, c_pid, c_ex, c_sts, c_gr, c_rq, c_name) = (
        need("id")?,
        need("nodeid")?,
        need("pid")?,
        need("exflags")?,
        need("sts")?,
        need("grmode")?,
        need("rqmode")?,
        need("r_name")?,
    );
    let c_time = col("time_us").or_else(|| col("time_ms"));
    let mut out: Vec<ResourceDump> = Vec::new();
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        // The name is last and may hold spaces: split off the columns
        // before it.
        let mut rest = line;
        let mut cols = Vec::new();
        for _ in 0..c_name {
            let t = rest.trim_start();
            let end = t.find(' ').unwrap_or(t.len());
            cols.push(&t[..end]);
            rest = &t[end..];
        }
        let raw = rest.trim_start();
        let name: Vec<u8> = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(q) => q.as_bytes().to_vec(),
            None => dlm_core::dump::unhex(raw).unwrap_or_else(|| raw.as_bytes().to_vec()),
        };
        let bad = || format!("malformed kernel lock dump line {line:?}");
        let get = |i: usize| cols.get(i).copied().ok_or_else(bad);
        let int = |i: usize| -> Result<i64, String> { get(i)?.parse().map_err(|_| bad()) };
        let lkid = u32::from_str_radix(get(c_id)?, 16).map_err(|_| bad())?;
        let nodeid = u32::try_from(int(c_node)?).map_err(|_| bad())?;
        let pid = u32::try_from(int(c_pid)?).map_err(|_| bad())?;
        let exflags = u32::from_str_radix(get(c_ex)?, 16).map_err(|_| bad())?;
        let state = match int(c_sts)? {
            1 => LockState::Waiting,
            2 => LockState::Granted,
            3 => LockState::Converting,
            _ => return Err(bad()),
        };
        let mode = |i: usize| -> Result<Option<dlm_core::Mode>, String> {
            let m = int(i)?;
            Ok((0..6).contains(&m).then(|| dlm_core::Mode::ALL[m as usize]))
        };
        // print_format2: microseconds since the lock entered its queue.
        let seconds = match c_time {
            Some(i) => Some(get(i)?.parse::<u64>().map_err(|_| bad())? / 1_000_000),
            None => None,
        };
        let flags = dlm_core::LockFlags::from_bits_retain(exflags);
        let mut names: Vec<String> = flags.iter_names().map(|(n, _)| n.to_owned()).collect();
        let named: u32 = flags
            .iter_names()
            .map(|(_, b)| b.bits())
            .fold(0, |a, b| a | b);
        if exflags & !named != 0 {
            names.push(format!("{:#x}", exflags & !named));
        }
        let (n, hex) = dlm_core::dump::name_fields(&name);
        if out.last().is_none_or(|r| r.name_hex != hex) {
            out.push(ResourceDump {
                name: n,
                name_hex: hex,
                ..ResourceDump::default()
            });
        }
        let r = out.last_mut().expect("pushed");
        r.locks.push(LockInfo {
            lkid,
            pid,
            command: if nodeid == 0 { command(pid) } else { None },
            state,
            grmode: mode(c_gr)?,
            rqmode: mode(c_rq)?,
            seconds,
            nodeid: Some(nodeid),
            flags: names,
            blocked_by: Vec::new(),
            owner: None,
            xid: None,
        });
    }
    // Queue order within each resource: granted, converting, waiting.
    for r in &mut out {
        r.locks.sort_by_key(|l| match l.state {
            LockState::Granted => 0,
            LockState::Converting => 1,
            _ => 2,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_file_parses_into_the_model() {
        let text = "id nodeid remid pid xid exflags flags sts grmode rqmode time_ms r_nodeid r_len r_name\n\
             1 0 0 10 0 0 0 2 5 -1 3000000 0 3 \"a b\"\n\
             2 2 7 11 0 0 0 1 -1 3 1500000 0 3 \"a b\"\n\
             3 0 0 12 0 0 0 2 0 -1 0 0 2 00ff\n";
        let r = super::parse_kernel_locks(text, &|_| None).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name.as_deref(), Some("a b"));
        assert_eq!(r[0].locks[0].seconds, Some(3));
        assert_eq!(r[0].locks[1].nodeid, Some(2));
        assert_eq!(r[0].locks[1].state, dlm_core::dump::LockState::Waiting);
        assert_eq!(dlm_core::dump::blocked_by(&r[0].locks)[1], [1]);
        assert_eq!(r[1].name, None);
        assert_eq!(r[1].name_hex, "00ff");
    }

    #[test]
    fn kernel_lines_get_their_owners_command() {
        let me = std::process::id();
        let text = format!(
            "id nodeid remid pid xid exflags flags sts grmode rqmode time_ms r_nodeid r_len r_name\n\
             1 0 0 {me} 0 0 0 2 5 -1 0 0 1 \"r\"\n\
             2 3 0 {me} 0 0 0 2 3 -1 0 0 1 \"s\"\n"
        );
        let (out, found) = super::kernel_commands(&text);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains(" command \""), "{out}");
        assert!(!lines[2].contains("command"), "a remote node's pid: {out}");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, me);
    }
}
