//! `cargo xtask demo`: the README's main command. Builds `dlm` and `dlmd`,
//! starts dlmd unless a lock manager is already reachable, and shows a
//! lock taken and released by two processes, with the lock dump while it
//! is held.
//!
//! As root it uses the machine's lock manager (`dlm daemon`: the kernel
//! DLM, a running dlmd, or a new system dlmd). An ordinary user may not
//! create lockspaces on a system lock manager (README "Security model"),
//! so for one the demo starts a private dlmd on a socket in a new 0700
//! directory, points its commands at it (`DLMD_SOCKET`,
//! `DLM_BACKEND=dlmd`) and stops it at the end.

use crate::host;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin(name: &str) -> PathBuf {
    crate::workspace_root().join("target/debug").join(name)
}

/// The private dlmd of an ordinary user's demo: stopped and its
/// directory removed on drop.
struct Private {
    dir: PathBuf,
    socket: PathBuf,
    pid: String,
}

impl Private {
    fn start() -> Result<Private, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("dlm-demo-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("dlmd.sock");
        println!(
            "$ dlmd --daemon --socket {}   # a private dlmd: ordinary users may not create lockspaces on the system's",
            socket.display()
        );
        let out = Command::new(bin("dlmd"))
            .args(["--daemon", "--log-level", "warn", "--socket"])
            .arg(&socket)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("dlmd: {e}"))?;
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || pid.is_empty() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("dlmd --daemon failed: {}", out.status));
        }
        println!("dlmd started on {} (pid {pid})", socket.display());
        Ok(Private { dir, socket, pid })
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the demonstration.
pub fn run() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    host::run(
        Command::new(cargo)
            .current_dir(crate::workspace_root())
            .args(["build", "--quiet", "-p", "dlm-cli", "-p", "dlmd"]),
    )?;
    let private = if host::is_root() {
        println!("$ dlm daemon");
        host::run(Command::new(bin("dlm")).arg("daemon"))?;
        None
    } else {
        Some(Private::start()?)
    };
    let dlm = |args: &[&str]| {
        let mut cmd = Command::new(bin("dlm"));
        cmd.args(args);
        if let Some(p) = &private {
            cmd.env("DLMD_SOCKET", &p.socket).env("DLM_BACKEND", "dlmd");
        }
        cmd
    };

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
