//! `cargo xtask loom`: the loom models of the dispatch role, run against
//! the real `dlm_core::handle::Handle`.
//!
//! The models are the unit tests whose path contains `handle` in
//! dlm-core (the handle alone) and dlm-pthread (with its AST thread),
//! built with `--cfg dlm_loom` so that `dlm_core::sync` is loom's. They
//! run in release mode in `target/loom`, with at most
//! `LOOM_MAX_PREEMPTIONS` preemptions (3 unless set), printing cargo
//! test's line per model.
//!
//! Then the check of the checker: the same models built with
//! `--cfg dlm_loom_mutant` too, which removes the wake-up the handle
//! gives when it releases the dispatch role. Each model runs in its own
//! process (loom aborts on a deadlock); every model that fails prints
//! `mutant caught: <test name>`, and the command fails when none does.

use std::path::Path;
use std::process::{Command, Stdio};

/// The crates whose models run, and the filter that selects them.
const PACKAGES: &[&str] = &["dlm-core", "dlm-pthread"];
const FILTER: &str = "handle";

/// Runs the models, then the mutant check.
pub fn run(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err("usage: cargo xtask loom".into());
    }
    let root = crate::workspace_root();
    let started = std::time::Instant::now();

    println!("== loom models (--cfg dlm_loom, target/loom)");
    crate::host::run(cargo(&root, "target/loom", "--cfg dlm_loom").args(["--lib", FILTER]))?;

    println!("== mutant: the handle's wake-up on releasing the dispatch role removed");
    let target = "target/loom-mutant";
    let built = cargo(&root, target, "--cfg dlm_loom --cfg dlm_loom_mutant")
        .args(["--lib", "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !built.status.success() {
        return Err("building the mutant failed".into());
    }
    let mut caught = Vec::new();
    for exe in executables(&String::from_utf8_lossy(&built.stdout)) {
        for test in list(&exe)? {
            let out = Command::new(&exe)
                .args(["--exact", &test, "--test-threads=1"])
                .env("LOOM_MAX_PREEMPTIONS", preemptions())
                .output()
                .map_err(|e| format!("{exe}: {e}"))?;
            if out.status.success() {
                println!("mutant missed: {test}");
            } else {
                println!("mutant caught: {test}");
                caught.push(test);
            }
        }
    }
    println!(
        "== loom: {:.0}s, the mutant caught by {} model(s)",
        started.elapsed().as_secs_f64(),
        caught.len()
    );
    if caught.is_empty() {
        Err("no loom model caught the mutant".into())
    } else {
        Ok(())
    }
}

/// `LOOM_MAX_PREEMPTIONS` from the environment, else 3.
fn preemptions() -> String {
    std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "3".into())
}

/// `cargo test --release` of the models' crates with `cfgs` added to
/// RUSTFLAGS, in `target`. The release profile's fat LTO and single
/// codegen unit buy nothing here, so they are turned off for the build.
fn cargo(root: &Path, target: &str, cfgs: &str) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let flags = match std::env::var("RUSTFLAGS") {
        Ok(f) if !f.is_empty() => format!("{f} {cfgs}"),
        _ => cfgs.to_string(),
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .env("RUSTFLAGS", flags)
        .env("CARGO_TARGET_DIR", root.join(target))
        .env("LOOM_MAX_PREEMPTIONS", preemptions())
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .args(["test", "--release"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd
}

/// The test executables in cargo's JSON messages.
fn executables(json: &str) -> Vec<String> {
    const KEY: &str = "\"executable\":\"";
    json.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find(KEY)? + KEY.len();
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_string())
        })
        .collect()
}

/// The models in one test executable (`--list` prints `name: test`).
fn list(exe: &str) -> Result<Vec<String>, String> {
    let out = Command::new(exe)
        .args(["--list", FILTER])
        .output()
        .map_err(|e| format!("{exe} --list: {e}"))?;
    if !out.status.success() {
        return Err(format!("{exe} --list failed"));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}
