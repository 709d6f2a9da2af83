//! The host programs the harness runs (qemu, xz, zstd, gcc, ldd) and
//! installing the missing ones with apt-get, never removing anything from
//! the host; when the host's own sources lack a package, from bookworm
//! and bookworm-backports through the private apt configuration.

use super::Result;
use super::apt::Suites;
use super::cache::Cache;
use crate::host::{in_path, is_root};
use std::path::Path;
use std::process::Command;

pub(super) struct Tool {
    /// A program looked up in PATH, or an absolute file.
    what: &'static str,
    package: &'static str,
}

impl Tool {
    pub(super) fn bin(what: &'static str, package: &'static str) -> Tool {
        Tool { what, package }
    }
    pub(super) fn file(what: &'static str, package: &'static str) -> Tool {
        Tool { what, package }
    }
    fn present(&self) -> bool {
        if self.what.starts_with('/') {
            Path::new(self.what).exists()
        } else {
            in_path(self.what).is_some()
        }
    }
}

pub(super) fn ensure_host_tools(cache: &Cache, tools: &[Tool]) -> Result<()> {
    for needed in ["apt-get", "apt-cache", "dpkg-deb", "dpkg-query"] {
        if in_path(needed).is_none() {
            return Err(format!(
                "vmtest: {needed} not found: the VM harness needs a Debian (12) host with apt and dpkg"
            ));
        }
    }
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|t| !t.present())
        .map(|t| t.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "vmtest: missing host packages; run: sudo apt-get install -y --no-install-recommends {list}"
        ));
    }
    // --no-remove: never take anything away from the host. (Debian 12's
    // qemu-system-x86 7.2 would remove a backports qemu-utils 10, which
    // Breaks qemu-system-common << 8.0; then backports' qemu is the one.)
    println!(
        "vmtest: installing on the host: {list} (apt-get install -y --no-install-recommends --no-remove)"
    );
    let install = |cmd: &mut Command, pkgs: &[String]| {
        cmd.args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--no-remove",
        ])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    };
    let plain: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
    let mut ok = install(&mut Command::new("apt-get"), &plain);
    if !ok {
        println!("vmtest: apt-get install failed; running apt-get update and trying again");
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        ok = install(&mut Command::new("apt-get"), &plain);
    }
    if !ok {
        // the host's sources may lack bookworm-backports: use a private list
        let apt = cache.apt(Suites::HostTools)?;
        apt.update()?;
        // Backports as the target release for the packages *and* their
        // dependencies: a host that already has a backports qemu-utils
        // (Debian's images do) needs qemu-system-x86 and
        // qemu-system-common from backports too, or apt gives up with
        // "held broken packages".
        let pkgs: Vec<String> = ["-t", "bookworm-backports"]
            .into_iter()
            .map(str::to_owned)
            .chain(missing.iter().map(|p| p.to_string()))
            .collect();
        println!(
            "vmtest: trying again with bookworm-backports as the target release (private apt lists): {list}"
        );
        if !install(&mut apt.cmd("apt-get"), &pkgs) {
            return Err(format!(
                "vmtest: could not install {list} without removing packages; \
                 install them by hand (apt-get install {list})"
            ));
        }
    }
    match tools.iter().find(|t| !t.present()) {
        Some(t) => Err(format!(
            "vmtest: {} still missing after installing {}",
            t.what, t.package
        )),
        None => Ok(()),
    }
}
