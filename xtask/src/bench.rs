//! `cargo xtask bench`: every benchmark of the project, in release mode.
//!
//! Each benchmark is a plain `harness = false` bench target that measures
//! its own baseline in the same run (the machines are noisy) and prints
//! one line per figure as a ratio against it. This command runs them one
//! after another and prints their lines; `--only NAME` runs one.

use crate::host;
use std::process::Command;

/// (name, package, package directory, bench target) of every benchmark.
const BENCHES: &[(&str, &str, &str, &str)] = &[
    ("engine", "dlm-engine", "dlm-engine", "engine"),
    ("dlmd", "dlmd", "dlmd", "dlmd"),
    ("clib", "dlm-tests", "tests", "clib"),
];

/// Runs the benchmarks (all, or those named after `--only`).
pub fn run(args: &[String]) -> Result<(), String> {
    let only: Vec<&str> = match args {
        [] => BENCHES.iter().map(|b| b.0).collect(),
        [flag, rest @ ..] if flag == "--only" && !rest.is_empty() => {
            rest.iter().map(String::as_str).collect()
        }
        _ => return Err("usage: cargo xtask bench [--only engine|dlmd|clib ...]".into()),
    };
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The dlmd and C-library benchmarks start dlmd and load our libraries.
    host::run(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--release", "--workspace"]),
    )?;
    let mut failed = Vec::new();
    for &(name, package, dir, target) in BENCHES.iter().filter(|b| only.contains(&b.0)) {
        if !root
            .join(dir)
            .join("benches")
            .join(format!("{target}.rs"))
            .exists()
        {
            println!("== {name}: no benchmark yet ({dir}/benches/{target}.rs)");
            continue;
        }
        println!("== {name} ({package}, bench {target})");
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["bench", "--quiet", "-p", package, "--bench", target])
            .status()
            .map_err(|e| format!("cargo bench: {e}"))?;
        if !status.success() {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmarks failed: {}", failed.join(", ")))
    }
}
