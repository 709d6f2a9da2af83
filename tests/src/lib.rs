//! Helpers shared by the cross-crate tests in `tests/tests/`: compiling
//! and running small C programs with the system's gcc.
//!
//! The tests compare what gcc computes from the kernel's own UAPI headers
//! (sizes, offsets, request and result bytes) with what the Rust crates
//! produce. gcc is part of the supported build environment; a missing gcc
//! fails these tests with a message saying what to install.

use std::path::PathBuf;
use std::process::Command;

/// A fresh scratch directory for one test of this process.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("dlm-tests-{}", std::process::id()))
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Compiles `source` with gcc (extra arguments after the source file) and
/// returns the path of the executable.
///
/// # Panics
/// If gcc is missing or the program does not compile; the message has
/// gcc's diagnostics.
pub fn compile_c(test: &str, source: &str, extra_args: &[&str]) -> PathBuf {
    let dir = scratch_dir(test);
    let src = dir.join(format!("{test}.c"));
    let exe = dir.join(test);
    std::fs::write(&src, source).expect("write C source");
    let out = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(extra_args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}): install it with `apt-get install gcc`"));
    assert!(
        out.status.success(),
        "gcc failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Compiles and runs a C program that takes no input, and returns its
/// standard output.
///
/// # Panics
/// If it does not compile or exits unsuccessfully.
pub fn run_c(test: &str, source: &str) -> String {
    let exe = compile_c(test, source, &[]);
    let out = Command::new(&exe).output().expect("run compiled C program");
    assert!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("C program output is UTF-8")
}
