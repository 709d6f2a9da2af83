//! The lock dump and the lockspace list, from whichever lock manager is in
//! use: dlmd's DUMP operation, or the kernel's debugfs files
//! (`/sys/kernel/debug/dlm/<lockspace>_locks`, format described in
//! `docs/kernel-lock-dump.md`) and sysfs (`/sys/kernel/dlm/`).
//!
//! Each lock is shown with its owner's command line where this process
//! can read it (`/proc/PID/cmdline`): dlmd never looks at other processes,
//! the client does.

use dlm_core::Name;
use dlm_core::transport::Control;
use std::path::Path;

const DEBUGFS: &str = "/sys/kernel/debug";
const SYSFS_DLM: &str = "/sys/kernel/dlm";

/// The lock dump text of one lockspace or all, as text or JSON.
pub fn locks(ctl: &Control, lockspace: Option<&Name>, json: bool) -> Result<String, String> {
    match ctl {
        Control::Dlmd(..) => {
            let text = ctl.dump(lockspace).map_err(|e| match e {
                dlm_core::Errno::ENOENT => "no such lockspace".to_string(),
                e => format!("lock dump: {e}"),
            })?;
            let text = dlm_core::dump::with_commands(&text);
            if json {
                dlm_core::dump::to_json(&text)
                    .map_err(|line| format!("malformed dump at line {line}"))
            } else {
                Ok(text)
            }
        }
        Control::Kernel(_) => kernel_locks(lockspace, json),
    }
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

fn kernel_locks(lockspace: Option<&Name>, json: bool) -> Result<String, String> {
    let _debugfs = Debugfs::ensure()?;
    let names: Vec<String> = match lockspace {
        Some(n) => vec![String::from_utf8_lossy(n.as_bytes()).into_owned()],
        None => {
            let dir = std::fs::read_dir(SYSFS_DLM).map_err(|e| format!("{SYSFS_DLM}: {e}"))?;
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        }
    };
    let mut out = String::new();
    for name in names {
        let path = Path::new(DEBUGFS).join("dlm").join(format!("{name}_locks"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (annotated, commands) = kernel_commands(&text);
        if json {
            let commands: Vec<String> = commands
                .iter()
                .map(|(pid, cmd)| format!("\"{pid}\":{}", json_string(cmd)))
                .collect();
            out.push_str(&format!(
                "{{\"lockspace\":{},\"kernel_locks\":{},\"commands\":{{{}}}}}\n",
                json_string(&name),
                json_string(&text),
                commands.join(",")
            ));
        } else {
            out.push_str(&format!(
                "lockspace \"{name}\" (kernel {})\n{annotated}",
                path.display()
            ));
        }
    }
    Ok(out)
}

/// A JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
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
