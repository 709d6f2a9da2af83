//! The package cache under `<workspace>/.cache/vm/` (or
//! `DLM_VMTEST_CACHE`): resolved package versions (refreshed once a day
//! or with `--refresh`), the downloaded `.deb` files (`apt-get download`,
//! never installed on the host) and their unpacked trees.

use super::apt::{Apt, Suites, Want};
use super::{Result, run_ok};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The per-suite apt lists are refreshed after this long.
const RESOLVE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub(super) struct Deb {
    pub(super) version: String,
    pub(super) path: PathBuf,
}

pub(super) struct Cache {
    root: PathBuf,
}

impl Cache {
    pub(super) fn new(root: PathBuf) -> Result<Cache> {
        fs::create_dir_all(&root)
            .map_err(|e| format!("vmtest: cannot create {}: {e}", root.display()))?;
        Ok(Cache { root })
    }

    pub(super) fn dir(&self, sub: &str) -> PathBuf {
        let d = self.root.join(sub);
        let _ = fs::create_dir_all(&d);
        d
    }

    pub(super) fn apt(&self, suites: Suites) -> Result<Apt> {
        let dir = self.dir(&format!("apt/{}", suites.name()));
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("vmtest: {}: {e}", dir.display()))?;
        }
        let list = dir.join("sources.list");
        write_if_changed(&list, suites.sources_list()?.as_bytes())?;
        Ok(Apt { dir, suites })
    }

    /// Resolves (at most once a day, or with --refresh) and downloads what
    /// `want` names from `suites`; returns the .deb files.
    pub(super) fn fetch(&self, suites: Suites, want: &Want, refresh: bool) -> Result<Vec<Deb>> {
        let apt = self.apt(suites)?;
        let debdir = self.dir("debs");
        let resolved = apt.dir.join(format!("resolved-{}", want.key()));
        let fresh = !refresh && age(&resolved).is_some_and(|a| a < RESOLVE_MAX_AGE);
        let mut pkgs = if fresh {
            read_resolved(&resolved)
        } else {
            None
        };
        if pkgs.is_none() {
            match apt.update().and_then(|()| apt.resolve(want)) {
                Ok(p) => {
                    let text: String = p
                        .iter()
                        .map(|p| format!("{} {} {}\n", p.0, p.1, p.2))
                        .collect();
                    fs::write(&resolved, text)
                        .map_err(|e| format!("vmtest: {}: {e}", resolved.display()))?;
                    pkgs = Some(p);
                }
                Err(e) => match read_resolved(&resolved) {
                    Some(old) => {
                        println!(
                            "vmtest: warning: {e}\nvmtest: using the packages resolved before"
                        );
                        pkgs = Some(old);
                    }
                    None => return Err(e),
                },
            }
        }
        let pkgs = pkgs.unwrap_or_default();
        let mut debs = Vec::new();
        let mut missing = Vec::new();
        for (name, version, arch) in &pkgs {
            let path = debdir.join(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")));
            if !path.exists() {
                missing.push(format!("{name}={version}"));
            }
            debs.push(Deb {
                version: version.clone(),
                path,
            });
        }
        if !missing.is_empty() {
            println!(
                "vmtest: downloading from {}: {}",
                suites.name(),
                missing.join(" ")
            );
            apt.download(&missing, &debdir)?;
            if let Some(d) = debs.iter().find(|d| !d.path.exists()) {
                return Err(format!(
                    "vmtest: apt-get download did not produce {}",
                    d.path.display()
                ));
            }
        }
        Ok(debs)
    }

    /// `dpkg-deb -x` of a package into `x/<name>`, once.
    pub(super) fn unpack(&self, deb: &Deb) -> Result<PathBuf> {
        let stem = deb
            .path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let dest = self.dir("x").join(&stem);
        if dest.join(".vmtest-unpacked").exists() {
            return Ok(dest);
        }
        let tmp = self.dir("x").join(format!(".{stem}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb.path).arg(&tmp))?;
        let _ = fs::remove_dir_all(&dest);
        fs::rename(&tmp, &dest).map_err(|e| format!("vmtest: {}: {e}", dest.display()))?;
        fs::write(dest.join(".vmtest-unpacked"), "").map_err(|e| e.to_string())?;
        Ok(dest)
    }
}

fn read_resolved(p: &Path) -> Option<Vec<(String, String, String)>> {
    let text = fs::read_to_string(p).ok()?;
    let v: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.to_string(),
                w.next()?.to_string(),
                w.next()?.to_string(),
            ))
        })
        .collect();
    (!v.is_empty()).then_some(v)
}

fn age(p: &Path) -> Option<Duration> {
    let m = fs::metadata(p).ok()?.modified().ok()?;
    SystemTime::now().duration_since(m).ok()
}

fn write_if_changed(p: &Path, data: &[u8]) -> Result<()> {
    if fs::read(p).ok().as_deref() != Some(data) {
        fs::write(p, data).map_err(|e| format!("vmtest: {}: {e}", p.display()))?;
    }
    Ok(())
}
