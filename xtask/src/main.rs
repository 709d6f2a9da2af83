//! Project automation for dlm-rs, run as `cargo xtask <command>`.
//!
//! Each subcommand lives in its own module; this file only parses the
//! command line.

mod bench;
mod bindgen;
mod deb;
mod demo;
mod host;
mod loom;
mod man;
mod release;
mod test;
mod vmtest;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  bench [--json] [--only N..]
                      run the benchmarks (engine, dlmd, clib); ratios against
                      baselines measured in the same run (--json: one JSON
                      object on stdout, progress on stderr)
  demo                start dlmd (unless a DLM is reachable) and show two
                      processes taking and releasing a lock
  loom                run the loom models of the lockspace handle and its
                      AST thread, then check that they catch a mutant
  test [ARGS...]      install what the tests need, then run the whole
                      test suite (`cargo test --workspace ARGS...`)
  bindgen [--check]   regenerate dlm-sys from the system's UAPI headers
                      (--check: fail if the committed bindings are stale)
  release [--prefix DIR] [--from DIR]
                      build libdlm.so.3 and libdlm_lt.so.3 and install
                      them with libdlm.h and .pc files under DIR
                      (default target/dist; --from: use libraries
                      already built in DIR)
  deb [--out DIR] [--from DIR]
                      build the Debian packages (libdlm3-rs, libdlm-rs-dev,
                      dlmd and their -dbgsym packages) under DIR (default
                      target/debian; --from: use binaries already built
                      in DIR)
  man [--out DIR]     render dlm(1) and its subcommands' pages and the bash,
                      zsh and fish completions (default target/man)
  vmtest [OPTIONS] [--] [TEST_BINARY...]
                      run tests against the kernel DLM in qemu guests
                      (vmtest --help for the options)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bindgen") => match args.get(1).map(String::as_str) {
            None => bindgen::generate(bindgen::Mode::Write),
            Some("--check") => bindgen::generate(bindgen::Mode::Check),
            Some(other) => Err(format!("bindgen: unknown option {other:?}")),
        },
        Some("release") => release::run(&args[1..]),
        Some("test") => test::run(&args[1..]),
        Some("deb") => deb::run(&args[1..]),
        Some("man") => man::run(&args[1..]),
        Some("loom") => loom::run(&args[1..]),
        Some("demo") => demo::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("vmtest") => vmtest::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The root of the workspace (the parent of `xtask/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
