//! `cargo xtask demo`: the README's main command. Builds `dlm` and `dlmd`,
//! starts dlmd unless a lock manager is already reachable, and shows a
//! lock taken and released by two processes, with the lock dump while it
//! is held.

use crate::host;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin(name: &str) -> PathBuf {
    crate::workspace_root().join("target/debug").join(name)
}

fn dlm(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("dlm"));
    cmd.args(args);
    cmd
}

/// Runs the demonstration.
pub fn run() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    host::run(
        Command::new(cargo)
            .current_dir(crate::workspace_root())
            .args(["build", "--quiet", "-p", "dlm-cli", "-p", "dlmd"]),
    )?;
    println!("$ dlm daemon");
    host::run(&mut dlm(&["daemon"]))?;

    let hold = "echo \"[A] holds demo-resource in EX for 2 seconds\"; sleep 2; echo \"[A] done: the lock is released\"";
    println!("\n$ dlm lock -l demo demo-resource -- sh -c '...'   # process A, in the background");
    let mut a = dlm(&[
        "lock",
        "-l",
        "demo",
        "demo-resource",
        "--",
        "sh",
        "-c",
        hold,
    ])
    .spawn()
    .map_err(|e| format!("dlm: {e}"))?;
    std::thread::sleep(Duration::from_millis(500));

    println!("\n$ dlm lock -l demo -n demo-resource -- true     # process B, without waiting");
    let status = dlm(&["lock", "-l", "demo", "-n", "demo-resource", "--", "true"])
        .status()
        .map_err(|e| format!("dlm: {e}"))?;
    println!(
        "[B] exit status {} (1: the lock is held by A)",
        status.code().unwrap_or(-1)
    );

    println!("\n$ dlm locks demo");
    host::run(&mut dlm(&["locks", "demo"]))?;

    println!("\n$ dlm lock -l demo demo-resource -- echo ...    # process B waits for A");
    host::run(&mut dlm(&[
        "lock",
        "-l",
        "demo",
        "demo-resource",
        "--",
        "echo",
        "[B] got demo-resource after A released it",
    ]))?;
    let a_status = a.wait().map_err(|e| format!("dlm: {e}"))?;
    if !a_status.success() || status.code() != Some(1) {
        return Err("the demonstration did not go as expected".into());
    }
    println!("\n$ dlm locks demo   # nothing held any more");
    host::run(dlm(&["locks", "demo"]).stderr(Stdio::inherit()))?;
    Ok(())
}
