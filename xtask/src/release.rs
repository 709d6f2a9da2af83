//! `cargo xtask release [--prefix DIR] [--from DIR]`: an installable tree
//! of the two C libraries.
//!
//! Builds `dlm-pthread` and `dlm-lt` in release mode (or, with `--from`,
//! takes `libdlm.so` and `libdlm_lt.so` already built in that directory)
//! and lays out, under the prefix (default `target/dist`):
//!
//! ```text
//! lib/libdlm.so.3.0      lib/libdlm.so.3 -> libdlm.so.3.0      lib/libdlm.so -> libdlm.so.3.0
//! lib/libdlm_lt.so.3.0   lib/libdlm_lt.so.3 -> libdlm_lt.so.3.0 lib/libdlm_lt.so -> libdlm_lt.so.3.0
//! lib/pkgconfig/libdlm.pc  lib/pkgconfig/libdlm_lt.pc
//! include/libdlm.h
//! ```
//!
//! as Debian installs libdlm3 and libdlm-dev, with the prefix written into
//! the `.pc` files, each naming its own library.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The API level the libraries and header provide (dlm 4.2.0's).
pub const API_VERSION: &str = "4.2.0";

/// The libraries: file stem, pkg-config description, link flags.
const LIBS: [(&str, &str, &str); 2] = [
    (
        "libdlm",
        "The Linux DLM library, with AST threads (dlm-rs)",
        "-ldlm -lpthread",
    ),
    (
        "libdlm_lt",
        "The Linux DLM library, without threads (dlm-rs)",
        "-ldlm_lt",
    ),
];

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<(), String> {
    let root = crate::workspace_root();
    let mut prefix = root.join("target/dist");
    let mut from = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--prefix" => prefix = PathBuf::from(it.next().ok_or("--prefix needs a directory")?),
            "--from" => from = Some(PathBuf::from(it.next().ok_or("--from needs a directory")?)),
            other => return Err(format!("release: unknown argument {other:?}")),
        }
    }
    let built = match from {
        Some(dir) => dir,
        None => build(&root)?,
    };
    let prefix = absolute(&prefix)?;
    install(&root, &built, &prefix)?;
    println!("installed into {}", prefix.display());
    Ok(())
}

pub fn absolute(p: &Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Builds both libraries in release mode; returns where they are.
fn build(root: &Path) -> Result<PathBuf, String> {
    build_packages(root, &["dlm-pthread", "dlm-lt"])
}

/// Builds the given packages in release mode; returns where they are.
pub fn build_packages(root: &Path, packages: &[&str]) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release"])
        .args(packages.iter().flat_map(|p| ["-p", p]))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release of {} failed",
            packages.join(", ")
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(absolute(&target)?.join("release"))
}

pub fn io<T>(what: &Path, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what.display()))
}

/// Replaces `link` with a symlink to `to`.
pub fn symlink(to: &str, link: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(link);
    io(link, std::os::unix::fs::symlink(to, link))
}

/// The pkg-config file of one library.
fn pc_file(prefix: &Path, libdir: &str, name: &str, description: &str, libs: &str) -> String {
    format!(
        "prefix={prefix}\n\
         exec_prefix=${{prefix}}\n\
         includedir=${{prefix}}/include\n\
         libdir=${{exec_prefix}}/{libdir}\n\
         \n\
         Name: {name}\n\
         Description: {description}\n\
         Version: {API_VERSION}\n\
         Cflags: -I${{includedir}}\n\
         Libs: -L${{libdir}} {libs}\n",
        prefix = prefix.display()
    )
}

/// Lays out the tree under `prefix` from the libraries in `built`.
fn install(root: &Path, built: &Path, prefix: &Path) -> Result<(), String> {
    install_into(root, built, Path::new("/"), prefix, "lib")
}

/// Lays out the tree for `prefix` (as the `.pc` files name it) under
/// `destdir` (a staging directory, `/` to install in place), with the
/// libraries in `prefix/libdir` (`lib`, or Debian's multiarch
/// `lib/x86_64-linux-gnu`).
pub fn install_into(
    root: &Path,
    built: &Path,
    destdir: &Path,
    prefix: &Path,
    libdir: &str,
) -> Result<(), String> {
    let staged = destdir.join(prefix.strip_prefix("/").unwrap_or(prefix));
    let lib = staged.join(libdir);
    let pkgconfig = lib.join("pkgconfig");
    let include = staged.join("include");
    for dir in [&lib, &pkgconfig, &include] {
        io(dir, std::fs::create_dir_all(dir))?;
    }
    for (stem, description, libs) in LIBS {
        let src = built.join(format!("{stem}.so"));
        let real = format!("{stem}.so.3.0");
        let dst = lib.join(&real);
        let _ = std::fs::remove_file(&dst);
        io(&src, std::fs::copy(&src, &dst))?;
        symlink(&real, &lib.join(format!("{stem}.so.3")))?;
        symlink(&real, &lib.join(format!("{stem}.so")))?;
        let pc = pkgconfig.join(format!("{stem}.pc"));
        io(
            &pc,
            std::fs::write(&pc, pc_file(prefix, libdir, stem, description, libs)),
        )?;
    }
    let header = root.join("include/libdlm.h");
    let dst = include.join("libdlm.h");
    io(&header, std::fs::copy(&header, &dst))?;
    Ok(())
}
