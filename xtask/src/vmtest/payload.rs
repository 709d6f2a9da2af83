//! What goes into the guest besides the base system (`Payload`): the
//! test programs and their names, script directories, extra files from
//! `--file`, and the programs built on the host for it: C sources with
//! gcc (`nocmd`, the smoke test) and Rust tests with `cargo test --no-run`.

use super::Result;
use super::args::Opts;
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
    /// Everything the run puts in the guests: the smoke test (with
    /// `--smoke` or no tests given), `--file`s, `--scripts` and the test
    /// programs (given, or built by `--cargo-test`), each test under its
    /// own name.
    pub(super) fn assemble(
        opts: &Opts,
        root: &Path,
        vmdir: &Path,
        cache: &Cache,
    ) -> Result<Payload> {
        let mut payload = Payload::default();
        if opts.smoke {
            let src = vmdir.join("dlmtest.c");
            let th = build_c(
                cache,
                &src,
                "dlmtest",
                &["-D_REENTRANT", "-pthread", "-ldlm"],
            )?;
            let lt = build_c(cache, &src, "dlmtest_lt", &["-ldlm_lt"])?;
            payload.files.push((th, "/usr/bin/dlmtest".into()));
            payload.files.push((lt, "/usr/bin/dlmtest_lt".into()));
            payload.add_scripts(&vmdir.join("smoke"), "smoke")?;
        }
        for (host, guest) in &opts.files {
            let guest = guest.clone().unwrap_or_else(|| {
                format!(
                    "/vmtest/bin/{}",
                    host.file_name().unwrap_or_default().to_string_lossy()
                )
            });
            payload.files.push((must_exist(host)?, guest));
        }
        for dir in &opts.scripts {
            let name = must_exist(dir)?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scripts".into());
            payload.add_scripts(dir, &name)?;
        }
        let mut binaries = opts.binaries.clone();
        if !opts.cargo_test.is_empty() {
            binaries.extend(cargo_test_binaries(root, &opts.cargo_test)?);
        }
        for bin in &binaries {
            payload.add_binary(&must_exist(bin)?, &opts.bin_args)?;
        }
        if payload.tests.is_empty() {
            return Err("vmtest: nothing to run (no TEST_BINARY, no *.sh in --scripts)".into());
        }
        Ok(payload)
    }

    fn add_scripts(&mut self, dir: &Path, name: &str) -> Result<()> {
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

    fn add_binary(&mut self, bin: &Path, args: &[String]) -> Result<()> {
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

fn must_exist(p: &Path) -> Result<PathBuf> {
    fs::canonicalize(p).map_err(|e| format!("vmtest: {}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_drop_cargos_hash_and_stay_unique() {
        let mut p = Payload::default();
        let args = ["--test-threads=1".to_string(), "it's".to_string()];
        p.add_binary(Path::new("/t/deps/kernel_race-0123456789abcdef"), &args)
            .unwrap();
        p.add_binary(Path::new("/u/kernel_race"), &[]).unwrap();
        p.add_binary(Path::new("/u/a b"), &[]).unwrap();
        assert_eq!(
            p.tests,
            [
                (
                    "kernel_race".to_string(),
                    "/vmtest/bin/kernel_race --test-threads=1 'it'\\''s'".to_string()
                ),
                (
                    "kernel_race-2".to_string(),
                    "/vmtest/bin/kernel_race-2".to_string()
                ),
                ("a_b".to_string(), "/vmtest/bin/a_b".to_string()),
            ]
        );
        assert_eq!(p.files[1].1, "/vmtest/bin/kernel_race-2");
        assert_eq!(shell_quote(""), "''");
    }
}
