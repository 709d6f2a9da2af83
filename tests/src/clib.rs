//! Helpers for the tests of our C libraries: where the built
//! `libdlm.so`/`libdlm_lt.so` and our `libdlm.h` are, compiling C
//! programs against them (or against Debian's header), and running them
//! against a [`Dlmd`], optionally under valgrind.
//!
//! The libraries are those of this build (`target/<profile>/`, built by
//! `cargo build -p dlm-pthread -p dlm-lt`; `cargo xtask test` builds
//! them). Programs find them through a per-process directory of SONAME
//! links (`libdlm.so.3 -> target/<profile>/libdlm.so`), named by
//! `-rpath` and by `DLM_TEST_LIBDIR`, which the programs use to check
//! that the library they loaded is ours and not Debian's.

use crate::Dlmd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Which of our two C libraries a program links.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavour {
    /// `libdlm_lt.so.3`, no `-pthread`.
    Lt,
    /// `libdlm.so.3`, with `-pthread` (defines `_REENTRANT`).
    Threads,
}

/// Which `libdlm.h` a program is compiled against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Header {
    /// Ours, `include/libdlm.h`.
    Ours,
    /// Debian's `/usr/include/libdlm.h` (package libdlm-dev).
    System,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives one level below the workspace root")
        .to_path_buf()
}

/// `target/<profile>/` of this build.
pub fn profile_dir() -> PathBuf {
    crate::dlmd_binary()
        .parent()
        .expect("target/<profile>")
        .to_path_buf()
}

/// A directory holding SONAME and linker-name links to this build's
/// `libdlm.so` and `libdlm_lt.so`, created once per process.
///
/// # Panics
/// If the libraries were not built.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = crate::scratch_dir("c-libs");
        for lib in ["libdlm", "libdlm_lt"] {
            let built = profile_dir().join(format!("{lib}.so"));
            assert!(
                built.exists(),
                "{} is missing: build it with `cargo build -p dlm-pthread -p dlm-lt`",
                built.display()
            );
            let soname = format!("{lib}.so.3");
            std::os::unix::fs::symlink(&built, dir.join(&soname)).expect("symlink");
            std::os::unix::fs::symlink(&soname, dir.join(format!("{lib}.so"))).expect("symlink");
        }
        dir
    })
}

/// The C sources of the tests, `tests/c/`.
pub fn c_dir() -> PathBuf {
    workspace_root().join("tests/c")
}

/// Compiles `tests/c/<file>` for `flavour` against `header`, linked with
/// our library (searched in `libdir`, also used as the run path), and
/// returns the executable. `test` names the scratch directory.
///
/// # Panics
/// If the program does not compile.
pub fn compile(test: &str, file: &str, flavour: Flavour, header: Header, libdir: &Path) -> PathBuf {
    let source = std::fs::read_to_string(c_dir().join(file)).expect("read C source");
    let inc_c = format!("-I{}", c_dir().display());
    let inc_ours = format!("-I{}", workspace_root().join("include").display());
    let lib = format!("-L{}", libdir.display());
    let rpath = format!("-Wl,-rpath,{}", libdir.display());
    let mut args = vec![inc_c.as_str()];
    if header == Header::Ours {
        args.push(&inc_ours);
    }
    args.extend([lib.as_str(), rpath.as_str()]);
    match flavour {
        Flavour::Lt => args.push("-ldlm_lt"),
        Flavour::Threads => args.extend(["-pthread", "-ldlm"]),
    }
    args.push("-ldl");
    let name = format!("{test}-{flavour:?}-{header:?}").to_lowercase();
    crate::compile_c(&name, &source, &args)
}

/// A command running `exe` against `dlmd`, checking for our libraries in
/// `libdir`; under valgrind when `valgrind`.
pub fn command(exe: &Path, dlmd: &Dlmd, libdir: &Path, valgrind: bool) -> Command {
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--quiet",
            "--error-exitcode=97",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
        ])
        .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.envs(dlmd.env())
        .env("DLM_TEST_LIBDIR", libdir)
        .env("LD_LIBRARY_PATH", libdir);
    cmd
}

/// Runs `cmd`, asserting success, and returns its standard output.
///
/// # Panics
/// If it fails; the message has its output.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run C program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
