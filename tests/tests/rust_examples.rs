//! dlm-core's examples (`counter`, `bast`, `async_locks`) build and run
//! against a test-started dlmd, with the output their docs promise.

use dlm_tests::Dlmd;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Builds the examples (in a target directory of their own, so that this
/// cargo does not wait for the one running the tests); returns where
/// they are.
fn build_examples() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("rust-examples");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "-p", "dlm-core", "--features", "tokio"])
        .arg("--examples")
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the examples failed");
    target.join("debug").join("examples")
}

fn run(dlmd: &Dlmd, exe: PathBuf, args: &[&str]) -> std::process::Child {
    Command::new(exe)
        .args(args)
        .envs(dlmd.env())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start example")
}

fn stdout(out: Output) -> String {
    assert!(out.status.success(), "example failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn examples_run_against_dlmd() {
    let dir = build_examples();
    let dlmd = Dlmd::start("rust-examples");

    // Two counters at once: their increments add up exactly.
    let a = run(&dlmd, dir.join("counter"), &["300"]);
    let b = run(&dlmd, dir.join("counter"), &["300"]);
    let totals: Vec<u64> = [a, b]
        .into_iter()
        .map(|c| {
            let out = stdout(c.wait_with_output().unwrap());
            out.trim()
                .strip_prefix("counter: ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(totals.iter().max(), Some(&600), "{totals:?}");

    let out = stdout(
        run(&dlmd, dir.join("bast"), &[])
            .wait_with_output()
            .unwrap(),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "holder: EX granted",
            "holder: blocking a Pr request; unlocking",
            "waiter: PR granted"
        ]
    );

    let out = stdout(
        run(&dlmd, dir.join("async_locks"), &[])
            .wait_with_output()
            .unwrap(),
    );
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines[0], "20 locks granted and released");
    let tasks: Vec<String> = (0..5)
        .map(|i| format!("task {i} holds the shared lock"))
        .collect();
    assert_eq!(lines[1..], tasks);
}
