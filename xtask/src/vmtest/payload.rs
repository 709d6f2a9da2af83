//! What goes into the guest besides the base system (`Payload`): the
//! test programs and their names, script directories, extra files from
//! `--file`, and the programs built on the host for it: C sources with
//! gcc (`nocmd`, the smoke test) and Rust tests with `cargo test --no-run`.

use super::Result;
use super::cache::Cache;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Default)]
pub(super) struct Payload {
    /// (host file, guest path); ELF files bring their shared libraries.
    pub(super) files: Vec<(PathBuf, String)>,
    /// (host dir, guest dir), copied whole.
    pub(super) dirs: Vec<(PathBuf, String)>,
    /// (test name, shell command run in the guest).
    pub(super) tests: Vec<(String, String)>,
}

impl Payload {
    pub(super) fn add_scripts(&mut self, dir: &Path, name: &str) -> Result<()> {
        let name = sanitize(name);
        let gdir = format!("/vmtest/scripts/{name}");
        let mut scripts: Vec<String> = fs::read_dir(dir)
            .map_err(|e| format!("vmtest: {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sh"))
            .collect();
        scripts.sort();
        for s in scripts {
            self.tests.push((
                format!("{name}/{}", sanitize(&s)),
                format!("DLM_VMTEST_SCRIPTS={gdir} sh {gdir}/{}", shell_quote(&s)),
            ));
        }
        self.dirs.push((dir.to_path_buf(), gdir));
        Ok(())
    }

    pub(super) fn add_binary(&mut self, bin: &Path, args: &[String]) -> Result<()> {
        let file = bin
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // cargo's test executables are NAME-<16 hex digits>
        let file = match file.rsplit_once('-') {
            Some((stem, h)) if h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
                stem.to_string()
            }
            _ => file,
        };
        let base = sanitize(&file);
        let mut name = base.clone();
        let mut n = 1;
        while self.tests.iter().any(|t| t.0 == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let guest = format!("/vmtest/bin/{name}");
        let mut cmd = shell_quote(&guest);
        for a in args {
            cmd.push(' ');
            cmd.push_str(&shell_quote(a));
        }
        self.files.push((bin.to_path_buf(), guest));
        self.tests.push((name, cmd));
        Ok(())
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Builds tests with `cargo test --no-run ARGS` and returns the test
/// executables cargo reports.
pub(super) fn cargo_test_binaries(root: &Path, args: &[String]) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("vmtest: cargo test --no-run {}", args.join(" "));
    let out = Command::new(&cargo)
        .current_dir(root)
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("vmtest: {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "vmtest: cargo test --no-run {} failed",
            args.join(" ")
        ));
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // one JSON object per line; std only, so find the field by hand
        let key = "\"executable\":\"";
        // test executables only, not the [[bin]]s cargo builds for them
        if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains("\"test\":true") {
            continue;
        }
        if let Some(rest) = line.find(key).map(|i| &line[i + key.len()..]) {
            if let Some(end) = rest.find('"') {
                bins.push(PathBuf::from(rest[..end].replace("\\\\", "\\")));
            }
        }
    }
    if bins.is_empty() {
        return Err(format!(
            "vmtest: cargo test --no-run {} built no test executable",
            args.join(" ")
        ));
    }
    Ok(bins)
}

/// Builds a C program from `src` into the cache once (again when the
/// source is newer or the flags changed).
pub(super) fn build_c(cache: &Cache, src: &Path, name: &str, args: &[&str]) -> Result<PathBuf> {
    let out = cache.dir("build").join(name);
    let stamp = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let flags_file = cache.dir("build").join(format!("{name}.flags"));
    let flags = args.join(" ");
    let fresh = match (stamp(src), stamp(&out)) {
        (Some(s), Some(o)) => {
            o >= s && fs::read_to_string(&flags_file).ok().as_deref() == Some(&flags)
        }
        _ => false,
    };
    if fresh {
        return Ok(out);
    }
    let o = Command::new("gcc")
        .args(["-O2", "-g", "-Wall", "-o"])
        .arg(&out)
        .arg(src)
        .args(args)
        .output()
        .map_err(|e| format!("vmtest: gcc: {e} (apt-get install -y gcc)"))?;
    if !o.status.success() {
        return Err(format!(
            "vmtest: building {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    fs::write(&flags_file, flags).map_err(|e| e.to_string())?;
    Ok(out)
}
