//! `cargo xtask test`: the whole test suite on a fresh machine.
//!
//! Installs what the tests need beyond the Rust toolchain (gcc for the C
//! programs, libclang for the bindings freshness test, dpkg-dev, groff
//! and mandoc for the packages and manual pages), then runs
//! `cargo test --workspace` with any extra arguments passed through.

use crate::host::{self, Need, Present};
use std::process::Command;

/// What the test suite needs on the host.
pub const NEEDS: &[Need] = &[
    Need::program("gcc", "gcc"),
    Need {
        present: Present::Check(|| crate::bindgen::libclang_available().is_ok()),
        package: "libclang-dev",
    },
    Need::file("/usr/include/linux/dlm_device.h", "linux-libc-dev"),
    // The C library tests: valgrind runs, Debian's header to compare ours
    // with, the packaging checks, and the Python ctypes client.
    Need::program("valgrind", "valgrind"),
    Need::file("/usr/include/libdlm.h", "libdlm-dev"),
    Need::program("objdump", "binutils"),
    Need::program("nm", "binutils"),
    Need::program("pkg-config", "pkg-config"),
    Need::program("python3", "python3"),
    // The Debian packages (tests/tests/deb_packages.rs) and the manual
    // pages (tests/tests/man_pages.rs).
    Need::program("dpkg-shlibdeps", "dpkg-dev"),
    Need::program("groff", "groff-base"),
    Need::program("mandoc", "mandoc"),
];

/// Installs the prerequisites and runs the workspace's tests.
pub fn run(extra: &[String]) -> Result<(), String> {
    host::ensure(NEEDS)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The tests start the dlmd binary and link C programs against the
    // libraries, so build every target first.
    host::run(
        Command::new(&cargo)
            .current_dir(crate::workspace_root())
            .args(["build", "--workspace"]),
    )?;
    host::run(
        Command::new(cargo)
            .current_dir(crate::workspace_root())
            .args(["test", "--workspace"])
            .args(extra),
    )
}
