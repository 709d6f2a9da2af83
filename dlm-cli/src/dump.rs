//! The lock dump and the lockspace list, from whichever lock manager is in
//! use: dlmd's DUMP operation, or the kernel's debugfs files
//! (`/sys/kernel/debug/dlm/<lockspace>_locks`, format described in
//! `docs/kernel-lock-dump.md`) and sysfs (`/sys/kernel/dlm/`).

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

/// Mounts debugfs if it is not mounted yet.
fn ensure_debugfs() -> Result<(), String> {
    if Path::new(DEBUGFS).join("dlm").exists() {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "debugfs", "debugfs", DEBUGFS])
        .status()
        .map_err(|e| format!("mount debugfs: {e}"))?;
    if status.success() && Path::new(DEBUGFS).join("dlm").exists() {
        Ok(())
    } else {
        Err(format!(
            "the kernel's lock dump needs debugfs at {DEBUGFS} (mount -t debugfs debugfs {DEBUGFS}, as root)"
        ))
    }
}

fn kernel_locks(lockspace: Option<&Name>, json: bool) -> Result<String, String> {
    ensure_debugfs()?;
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
        if json {
            out.push_str(&format!(
                "{{\"lockspace\":{:?},\"kernel_locks\":{:?}}}\n",
                name, text
            ));
        } else {
            out.push_str(&format!(
                "lockspace \"{name}\" (kernel {})\n{text}",
                path.display()
            ));
        }
    }
    Ok(out)
}
