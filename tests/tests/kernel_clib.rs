//! Debian's libdlm3 against ours on the kernel DLM: the same C program
//! (`tests/vm/kclib.c`, docs/semantics.md D.6 L1, L2, L3, L7, L9, L12, L13, and L15
//! a bad mode, L16 a lockspace created and released twice) linked
//! once against each, in each flavour (lt and threads), must print the
//! same lines, except where README's table says ours differs on
//! purpose (listed in [`DELIBERATE`]).
//!
//! The four builds are made on the host by `tests/vm/suite.sh` and put in
//! the guest as `/vmtest/bin/kclib-{deb,ours}-{lt,thr}`. Debian's builds
//! run with no `LD_LIBRARY_PATH` (so they load `/usr/lib/.../libdlm*.so.3`),
//! ours with the harness's `/vmtest/lib`. Without the kernel DLM or the
//! programs, the test skips. A plain `main`.

use std::path::Path;
use std::process::{Command, ExitCode};

/// Output lines (by prefix) where ours differs from Debian's on purpose,
/// with the row of README's table.
const DELIBERATE: &[(&str, &str)] = &[(
    "L7 release=",
    "dlm_release_lockspace while others hold locks: C returns 0 with errno \
     EBUSY left behind; ours -1/EBUSY",
)];

fn run(bin: &str, ours: bool, ls: &str) -> (String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["scen", ls]);
    if !ours {
        cmd.env_remove("LD_LIBRARY_PATH");
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{bin}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn main() -> ExitCode {
    if let Some(skip) = dlm_tests::single_node_kernel_skip(
        "kernel_clib",
        Path::new("/vmtest/bin/kclib-deb-lt").exists(),
        "the kernel DLM and tests/vm/suite.sh's programs",
    ) {
        return skip;
    }
    let mut fails = 0;
    for flavour in ["lt", "thr"] {
        let deb = run(
            &format!("/vmtest/bin/kclib-deb-{flavour}"),
            false,
            &format!("kcd{flavour}"),
        );
        let ours = run(
            &format!("/vmtest/bin/kclib-ours-{flavour}"),
            true,
            &format!("kco{flavour}"),
        );
        println!("== {flavour}: Debian's ({})", deb.1.trim());
        print!("{}", deb.0);
        println!("== {flavour}: ours ({})", ours.1.trim());
        print!("{}", ours.0);
        if deb.1.contains("/vmtest/") || !ours.1.contains("/vmtest/lib/") {
            println!("FAIL {flavour}: the programs did not load the intended libraries");
            fails += 1;
        }
        if !deb.0.ends_with("done\n") || !ours.0.ends_with("done\n") {
            println!("FAIL {flavour}: a program did not finish");
            fails += 1;
        }
        // L16's lockspace, created twice and released twice, must not
        // outlive the program in the kernel (with either library).
        for ls in [format!("kcd{flavour}d"), format!("kco{flavour}d")] {
            if !Path::new("/sys/kernel/dlm").exists() {
                println!("{flavour}: no /sys/kernel/dlm; L16's kernel check not made");
            } else if Path::new("/sys/kernel/dlm").join(&ls).exists() {
                println!("FAIL {flavour}: lockspace {ls} is still in the kernel after L16");
                fails += 1;
            } else {
                println!("{flavour}: lockspace {ls} is gone from /sys/kernel/dlm");
            }
        }
        let (d, o): (Vec<&str>, Vec<&str>) = (deb.0.lines().collect(), ours.0.lines().collect());
        for i in 0..d.len().max(o.len()) {
            let (a, b) = (
                d.get(i).copied().unwrap_or(""),
                o.get(i).copied().unwrap_or(""),
            );
            if a == b {
                continue;
            }
            match DELIBERATE
                .iter()
                .find(|(p, _)| a.starts_with(p) && b.starts_with(p))
            {
                Some((_, why)) => {
                    println!("{flavour}: differs on purpose ({why}):\n  Debian: {a}\n  ours:   {b}")
                }
                None => {
                    println!(
                        "FAIL {flavour}: Debian's and ours differ:\n  Debian: {a}\n  ours:   {b}"
                    );
                    fails += 1;
                }
            }
        }
    }
    if fails == 0 {
        println!("kernel_clib: ok");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
