//! The private apt configuration: one sources list per suite set
//! (`Suites`) on the mirrors of the host's apt configuration
//! (`apt_sources`), with its own lists and archive directories under the
//! cache, so the host's apt state is never touched; and resolving what to
//! download (`Want`) with `apt-cache depends` and `apt-cache show`.

use super::{Result, run_out};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Suites {
    Bookworm,
    Backports,
    /// Both, for host tools the host's own sources cannot install.
    HostTools,
}

impl Suites {
    pub(super) fn name(self) -> &'static str {
        match self {
            Suites::Bookworm => "bookworm",
            Suites::Backports => "bookworm-backports",
            Suites::HostTools => "host-tools",
        }
    }
    /// The private sources.list, on the mirrors of the host's own apt
    /// configuration (`apt_sources`).
    pub(super) fn sources_list(self) -> Result<String> {
        let mirrors = super::apt_sources::mirrors()?;
        let mirror = &mirrors.archive;
        let key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
        Ok(match self {
            Suites::Bookworm => {
                let mut list = format!(
                    "deb {key} {mirror} bookworm main\n\
                     deb {key} {mirror} bookworm-updates main\n"
                );
                if let Some(security) = &mirrors.security {
                    list += &format!("deb {key} {security} bookworm-security main\n");
                }
                list
            }
            Suites::Backports => format!("deb {key} {mirror} bookworm-backports main\n"),
            Suites::HostTools => {
                Suites::Bookworm.sources_list()? + &Suites::Backports.sources_list()?
            }
        })
    }
}

/// What to fetch from a suite set.
pub(super) enum Want {
    /// The package the named meta-package depends on (`linux-image-amd64`).
    KernelOf(&'static str),
    /// These packages plus every `lib*` package they need (first
    /// alternatives, recursively) that the host does not have installed;
    /// the host provides the rest through `ldd`.
    Closure(Vec<String>),
}

impl Want {
    pub(super) fn key(&self) -> String {
        match self {
            Want::KernelOf(p) => format!("kernel-{p}"),
            Want::Closure(roots) => format!("closure-{}", roots.join("+")),
        }
    }
}

pub(super) struct Apt {
    pub(super) dir: PathBuf,
    pub(super) suites: Suites,
}

impl Apt {
    /// apt-get/apt-cache with the private configuration: our sources list,
    /// lists and cache directories; the host's apt state is untouched.
    pub(super) fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        let d = &self.dir;
        c.arg("-q")
            .arg(format!(
                "-oDir::Etc::SourceList={}",
                d.join("sources.list").display()
            ))
            .arg("-oDir::Etc::SourceParts=/dev/null")
            .arg(format!("-oDir::State::Lists={}", d.join("lists").display()))
            .arg(format!("-oDir::Cache={}", d.join("cache").display()))
            .arg("-oAPT::Sandbox::User=root")
            .env("LC_ALL", "C");
        c
    }

    pub(super) fn update(&self) -> Result<()> {
        let out = self
            .cmd("apt-get")
            .arg("update")
            .output()
            .map_err(|e| format!("vmtest: apt-get: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            || err
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W: Failed"))
        {
            return Err(format!(
                "vmtest: apt-get update for {} failed (is the mirror {} reachable? \
                 DLM_VMTEST_MIRROR sets another mirror):\n{err}",
                self.suites.name(),
                super::apt_sources::mirrors().map_or("?", |m| m.archive.as_str())
            ));
        }
        Ok(())
    }

    fn depends(&self, pkgs: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
        let out = run_out(
            self.cmd("apt-cache")
                .args([
                    "depends",
                    "--no-recommends",
                    "--no-suggests",
                    "--no-conflicts",
                ])
                .args(["--no-breaks", "--no-replaces", "--no-enhances"])
                .args(pkgs),
        )?;
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut cur = None;
        let mut in_or_group = false;
        for line in out.lines() {
            if !line.starts_with(' ') {
                cur = Some(line.trim().to_string());
                map.entry(line.trim().to_string()).or_default();
                in_or_group = false;
                continue;
            }
            if line.starts_with("    ") {
                continue; // providers of a virtual package
            }
            let l = line.trim();
            let (or_next, l) = match l.strip_prefix('|') {
                Some(r) => (true, r),
                None => (false, l),
            };
            let was_in_group = in_or_group;
            in_or_group = or_next;
            if was_in_group {
                continue; // not the first alternative
            }
            if let Some(dep) = l
                .strip_prefix("Depends: ")
                .or_else(|| l.strip_prefix("PreDepends: "))
            {
                if !dep.starts_with('<') {
                    if let Some(c) = &cur {
                        map.entry(c.clone()).or_default().push(dep.to_string());
                    }
                }
            }
        }
        Ok(map)
    }

    /// (package, version, arch) of the candidate of each package.
    fn show(&self, pkgs: &[String]) -> Result<Vec<(String, String, String)>> {
        let out = run_out(
            self.cmd("apt-cache")
                .args(["show", "--no-all-versions"])
                .args(pkgs),
        )?;
        let mut res = Vec::new();
        for para in out.split("\n\n") {
            let field = |f: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_string()))
            };
            if let (Some(p), Some(v), Some(a)) =
                (field("Package:"), field("Version:"), field("Architecture:"))
            {
                res.push((p, v, a));
            }
        }
        Ok(res)
    }

    pub(super) fn resolve(&self, want: &Want) -> Result<Vec<(String, String, String)>> {
        let names = match want {
            Want::KernelOf(meta) => {
                let deps = self.depends(&[meta.to_string()])?;
                let image = deps
                    .get(*meta)
                    .and_then(|d| d.iter().find(|d| d.starts_with("linux-image-")))
                    .ok_or_else(|| {
                        format!(
                            "vmtest: {meta} in {} names no linux-image",
                            self.suites.name()
                        )
                    })?;
                vec![image.clone()]
            }
            Want::Closure(roots) => {
                let installed = host_installed()?;
                let mut all: BTreeSet<String> = roots.iter().cloned().collect();
                let mut frontier: Vec<String> = roots.clone();
                while !frontier.is_empty() {
                    let deps = self.depends(&frontier)?;
                    frontier.clear();
                    for d in deps.values().flatten() {
                        if d.starts_with("lib") && !installed.contains(d) && all.insert(d.clone()) {
                            frontier.push(d.clone());
                        }
                    }
                }
                all.into_iter().collect()
            }
        };
        let shown = self.show(&names)?;
        for n in &names {
            if !shown.iter().any(|s| &s.0 == n) {
                return Err(format!(
                    "vmtest: package {n} not found in {}",
                    self.suites.name()
                ));
            }
        }
        Ok(shown)
    }

    pub(super) fn download(&self, pkgs: &[String], into: &Path) -> Result<()> {
        let out = self
            .cmd("apt-get")
            .arg("download")
            .args(pkgs)
            .current_dir(into)
            .output()
            .map_err(|e| format!("vmtest: apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "vmtest: apt-get download {} failed:\n{}",
                pkgs.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

fn host_installed() -> Result<HashSet<String>> {
    let out = run_out(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Package}\t${db:Status-Abbrev}\n",
    ]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, s)| s.starts_with("ii"))
        .map(|(p, _)| p.to_string())
        .collect())
}
