//! The installable tree of `cargo xtask release`, checked rather than
//! trusted: file layout and links, SONAMEs, exactly Debian's exported
//! symbols (docs/libdlm-clients.md), only libc, libgcc_s and the loader as NEEDED,
//! no symbol versions, BIND_NOW, the header, each `.pc` naming its own
//! library; and C programs built with `pkg-config` against the installed
//! tree, run against dlmd.

use dlm_tests::Dlmd;
use dlm_tests::clib;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian 4.2.0's `libdlm.so.3` exports (docs/libdlm-clients.md).
const LIBDLM: &[&str] = &[
    "dlm_close_lockspace",
    "dlm_create_lockspace",
    "dlm_dispatch",
    "dlm_get_fd",
    "dlm_kernel_version",
    "dlm_library_version",
    "dlm_lock",
    "dlm_lock_wait",
    "dlm_ls_deadlock_cancel",
    "dlm_ls_get_fd",
    "dlm_ls_lock",
    "dlm_ls_lock_wait",
    "dlm_ls_lockx",
    "dlm_ls_pthread_init",
    "dlm_ls_purge",
    "dlm_ls_unlock",
    "dlm_ls_unlock_wait",
    "dlm_new_lockspace",
    "dlm_open_lockspace",
    "dlm_pthread_cleanup",
    "dlm_pthread_init",
    "dlm_release_lockspace",
    "dlm_unlock",
    "dlm_unlock_wait",
    "lock_resource",
    "unlock_resource",
];

/// The five functions `libdlm_lt.so.3` lacks.
const THREADS_ONLY: &[&str] = &[
    "dlm_pthread_init",
    "dlm_ls_pthread_init",
    "dlm_pthread_cleanup",
    "lock_resource",
    "unlock_resource",
];

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} ({e}); apt-get install binutils pkg-config")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `cargo xtask release --prefix <scratch> --from target/<profile>`
/// once per process and returns the prefix.
fn release_tree() -> &'static Path {
    static TREE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        let xtask = clib::profile_dir().join("xtask");
        assert!(
            xtask.exists(),
            "{} is missing: build it with `cargo build -p xtask`",
            xtask.display()
        );
        // Make sure the libraries exist before packaging them.
        clib::lib_dir();
        let prefix = dlm_tests::scratch_dir("release").join("usr");
        output(
            Command::new(xtask)
                .arg("release")
                .arg("--prefix")
                .arg(&prefix)
                .arg("--from")
                .arg(clib::profile_dir()),
        );
        prefix
    })
}

#[test]
fn layout_links_and_header() {
    let lib = release_tree().join("lib");
    for stem in ["libdlm", "libdlm_lt"] {
        assert!(lib.join(format!("{stem}.so.3.0")).is_file());
        for link in [format!("{stem}.so.3"), format!("{stem}.so")] {
            let to = std::fs::read_link(lib.join(&link)).expect("a symlink");
            assert_eq!(to, Path::new(&format!("{stem}.so.3.0")), "{link}");
        }
    }
    let ours = std::fs::read(clib::workspace_root().join("include/libdlm.h")).unwrap();
    assert_eq!(
        std::fs::read(release_tree().join("include/libdlm.h")).unwrap(),
        ours
    );
}

fn check_library(file: &str, soname: &str, exports: &[&str]) {
    let path = release_tree().join("lib").join(file);
    let p = output(Command::new("objdump").arg("-p").arg(&path));
    let field = |name: &str| -> Vec<String> {
        p.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap_or("").to_string())
            })
            .collect()
    };
    assert_eq!(field("SONAME"), vec![soname.to_string()]);
    let needed = field("NEEDED");
    assert!(needed.iter().any(|n| n == "libc.so.6"), "{needed:?}");
    for n in &needed {
        assert!(
            ["libc.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"].contains(&n.as_str()),
            "{file} needs {n}"
        );
    }
    assert!(
        !p.contains("Version definitions"),
        "{file} defines symbol versions"
    );
    let dynamic = output(Command::new("readelf").arg("-d").arg(&path));
    assert!(dynamic.contains("BIND_NOW"), "{file} is not BIND_NOW");

    let nm = output(Command::new("nm").args(["-D", "--defined-only"]).arg(&path));
    let mut got: Vec<&str> = nm
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    got.sort_unstable();
    let mut want = exports.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{file}: exported symbols");
    // Exported as functions, unversioned.
    let t = output(Command::new("objdump").arg("-T").arg(&path));
    for sym in exports {
        let line = t
            .lines()
            .find(|l| l.split_whitespace().last() == Some(sym))
            .unwrap_or_else(|| panic!("{sym} not in objdump -T"));
        assert!(line.contains(" DF ") && line.contains("Base"), "{line}");
    }
}

#[test]
fn libdlm_exports_sonames_and_needed() {
    assert_eq!(LIBDLM.len(), 26);
    check_library("libdlm.so.3.0", "libdlm.so.3", LIBDLM);
}

#[test]
fn libdlm_lt_exports_sonames_and_needed() {
    let lt: Vec<&str> = LIBDLM
        .iter()
        .copied()
        .filter(|s| !THREADS_ONLY.contains(s))
        .collect();
    assert_eq!(lt.len(), 21);
    check_library("libdlm_lt.so.3.0", "libdlm_lt.so.3", &lt);
}

fn pkg_config(args: &[&str]) -> String {
    let pc = release_tree().join("lib/pkgconfig");
    output(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", pc)
            .args(args),
    )
}

#[test]
fn pkg_config_files_name_their_own_library() {
    let prefix = release_tree().display().to_string();
    let dlm = pkg_config(&["--cflags", "--libs", "libdlm"]);
    let lt = pkg_config(&["--cflags", "--libs", "libdlm_lt"]);
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        words(&dlm),
        [
            format!("-I{prefix}/include"),
            format!("-L{prefix}/lib"),
            "-ldlm".into(),
            "-lpthread".into()
        ]
    );
    assert_eq!(
        words(&lt),
        [
            format!("-I{prefix}/include"),
            format!("-L{prefix}/lib"),
            "-ldlm_lt".into()
        ]
    );
    assert_eq!(pkg_config(&["--modversion", "libdlm_lt"]).trim(), "4.2.0");
}

/// Builds `tests/c/<file>` with `pkg-config` against the installed tree
/// and runs it against dlmd.
fn build_and_run_installed(test: &str, file: &str, package: &str, extra: &[&str]) {
    let lib = release_tree().join("lib");
    let flags = pkg_config(&["--cflags", "--libs", package]);
    let inc = format!("-I{}", clib::c_dir().display());
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    let mut args: Vec<&str> = vec![&inc, &rpath];
    args.extend(extra);
    args.extend(flags.split_whitespace());
    args.push("-ldl");
    let source = std::fs::read_to_string(clib::c_dir().join(file)).unwrap();
    let exe = dlm_tests::compile_c(test, &source, &args);
    let dlmd = Dlmd::start(test);
    let out = clib::run_ok(
        file,
        Command::new(&exe)
            .envs(dlmd.env())
            .env("DLM_TEST_LIBDIR", &lib),
    );
    assert!(out.ends_with("all ok\n"), "{out}");
}

#[test]
fn c_programs_link_against_the_installed_tree() {
    build_and_run_installed("installed-lt", "man_poll.c", "libdlm_lt", &[]);
    build_and_run_installed(
        "installed-threads",
        "man_ast_thread.c",
        "libdlm",
        &["-pthread"],
    );
}
