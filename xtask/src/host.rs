//! What the host machine must have for a command, and installing it.
//!
//! The README's commands must work on a fresh Debian machine with only the
//! Rust toolchain: each command lists what it needs ([`Need`]) and
//! [`ensure`] installs the missing Debian packages with apt-get when it
//! runs as root, or stops with the exact command to run otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A host requirement: satisfied when a program is on `PATH` or a file
/// exists, provided by a Debian package.
pub struct Need {
    /// What must be present.
    pub present: Present,
    /// The Debian package that provides it.
    pub package: &'static str,
}

/// How to tell that a requirement is met.
pub enum Present {
    /// A program that must be found on `PATH`.
    Program(&'static str),
    /// A file that must exist.
    File(&'static str),
    /// A check that returns true when the requirement is met.
    Check(fn() -> bool),
}

impl Need {
    /// A program found on `PATH`.
    pub const fn program(name: &'static str, package: &'static str) -> Need {
        Need {
            present: Present::Program(name),
            package,
        }
    }

    /// A file that must exist.
    pub const fn file(path: &'static str, package: &'static str) -> Need {
        Need {
            present: Present::File(path),
            package,
        }
    }

    fn is_met(&self) -> bool {
        match self.present {
            Present::Program(name) => in_path(name).is_some(),
            Present::File(path) => Path::new(path).exists(),
            Present::Check(check) => check(),
        }
    }
}

/// Where `prog` is: on `PATH`, or in `/usr/sbin` or `/sbin` (which a
/// non-login root shell may lack on its `PATH`).
pub fn in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Makes sure every requirement is met, installing the missing packages
/// with apt-get when running as root.
///
/// # Errors
/// A message naming the packages and the command to install them, when
/// they are missing and cannot be installed here.
pub fn ensure(needs: &[Need]) -> Result<(), String> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|n| !n.is_met())
        .map(|n| n.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() || in_path("apt-get").is_none() {
        return Err(format!(
            "missing packages: {}; run `sudo {install}`",
            missing.join(" ")
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("apt-get: {e}"))
    };
    // --no-remove: never take anything away from the host.
    let install_args: Vec<&str> = ["install", "-y", "-q", "--no-remove"]
        .into_iter()
        .chain(missing.iter().copied())
        .collect();
    let mut status = apt(&install_args)?;
    if !status.success() {
        // A fresh machine may have no package lists yet.
        apt(&["update", "-q"])?;
        status = apt(&install_args)?;
    }
    if !status.success() {
        return Err(format!("`{install}` failed"));
    }
    match needs.iter().find(|n| !n.is_met()) {
        Some(n) => Err(format!(
            "{} is still missing after installing it",
            n.package
        )),
        None => Ok(()),
    }
}

/// Runs a command with inherited output, failing with its description.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}
