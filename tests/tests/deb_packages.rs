//! The Debian packages of `cargo xtask deb`, installed into a scratch dpkg
//! root (`dpkg --root`) rather than trusted: the file lists, the control
//! fields (Provides/Conflicts/Replaces of libdlm3 and libdlm-dev, a
//! `Depends` for every library the binaries need), md5sums (`dpkg
//! --verify`), stripped binaries whose debug information is in the
//! `-dbgsym` packages, no maintainer scripts; and C programs built with
//! the installed header and `.pc` files, run against dlmd with the
//! installed (stripped) libraries.
//!
//! The packages are built from this build's binaries (`xtask deb --from
//! target/<profile>`); `.ci/run` builds the release ones and runs lintian.
//! dpkg needs root to install: without it the tests say so and skip.

use dlm_tests::Dlmd;
use dlm_tests::clib;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGES: [&str; 5] = [
    "libdlm3-rs",
    "libdlm3-rs-dbgsym",
    "libdlm-rs-dev",
    "dlmd",
    "dlmd-dbgsym",
];

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); apt-get install dpkg-dev binutils"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn multiarch() -> String {
    output(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"))
        .trim()
        .to_string()
}

/// The `.deb` files, built once per process.
fn debs() -> &'static [PathBuf] {
    static DEBS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    DEBS.get_or_init(|| {
        let xtask = clib::profile_dir().join("xtask");
        assert!(
            xtask.exists(),
            "{} is missing: build it with `cargo build -p xtask`",
            xtask.display()
        );
        for bin in ["libdlm.so", "libdlm_lt.so", "dlmd", "dlm"] {
            let p = clib::profile_dir().join(bin);
            assert!(
                p.exists(),
                "{} is missing: run `cargo build --workspace`",
                p.display()
            );
        }
        let out = dlm_tests::scratch_dir("debs");
        let listed = output(
            Command::new(xtask)
                .arg("deb")
                .arg("--from")
                .arg(clib::profile_dir())
                .arg("--out")
                .arg(&out),
        );
        let debs: Vec<PathBuf> = listed
            .lines()
            .filter(|l| l.ends_with(".deb"))
            .map(PathBuf::from)
            .collect();
        assert_eq!(debs.len(), PACKAGES.len(), "{listed}");
        debs
    })
}

fn deb(name: &str) -> &'static Path {
    debs()
        .iter()
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}_"))
        })
        .unwrap_or_else(|| panic!("no {name} package in {:?}", debs()))
}

/// A scratch dpkg root with every package installed, once per process;
/// `None` (with the reason printed) when not root.
fn installed() -> Option<&'static Path> {
    static ROOT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        if !is_root() {
            eprintln!("skipped: installing into a dpkg root needs root");
            return None;
        }
        let root = dlm_tests::scratch_dir("dpkg-root");
        let admin = root.join("var/lib/dpkg");
        for dir in ["updates", "info", "triggers"] {
            std::fs::create_dir_all(admin.join(dir)).unwrap();
        }
        std::fs::write(admin.join("status"), "").unwrap();
        std::fs::write(admin.join("available"), "").unwrap();
        // The base system (libc6, libgcc-s1) is not in the scratch root.
        let install = || {
            output(
                Command::new("dpkg")
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .arg(format!("--root={}", root.display()))
                    .args(["--force-depends", "-i"])
                    .args(debs()),
            )
        };
        install();
        // Installing the same version again is an upgrade to dpkg: it
        // must go through as quietly (no scripts run, nothing restarted).
        install();
        Some(root)
    })
    .as_deref()
}

fn query(root: &Path, args: &[&str]) -> String {
    output(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(args),
    )
}

fn field(root: &Path, package: &str, name: &str) -> String {
    query(root, &["-W", &format!("-f=${{{name}}}"), package])
}

/// The files (not directories) a package installed, as absolute paths
/// inside the package.
fn file_list(root: &Path, package: &str) -> BTreeSet<String> {
    query(root, &["-L", package])
        .lines()
        .filter(|p| {
            let inside = root.join(p.trim_start_matches('/'));
            std::fs::symlink_metadata(inside).is_ok_and(|m| !m.is_dir())
        })
        .map(String::from)
        .collect()
}

#[test]
fn every_package_installs_into_a_scratch_root() {
    let Some(root) = installed() else { return };
    for package in PACKAGES {
        assert_eq!(
            field(root, package, "Status"),
            "install ok installed",
            "{package}"
        );
    }
    // md5sums: every installed file matches.
    output(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("--verify"),
    );
}

#[test]
fn file_lists() {
    let Some(root) = installed() else { return };
    let ma = multiarch();
    let lib = file_list(root, "libdlm3-rs");
    let want_lib: BTreeSet<String> = [
        format!("/usr/lib/{ma}/libdlm.so.3.0"),
        format!("/usr/lib/{ma}/libdlm.so.3"),
        format!("/usr/lib/{ma}/libdlm_lt.so.3.0"),
        format!("/usr/lib/{ma}/libdlm_lt.so.3"),
        "/usr/share/doc/libdlm3-rs/copyright".into(),
        "/usr/share/doc/libdlm3-rs/changelog.Debian.gz".into(),
        "/usr/share/lintian/overrides/libdlm3-rs".into(),
    ]
    .into();
    assert_eq!(lib, want_lib);

    let dev = file_list(root, "libdlm-rs-dev");
    for want in [
        "/usr/include/libdlm.h".to_string(),
        format!("/usr/lib/{ma}/libdlm.so"),
        format!("/usr/lib/{ma}/libdlm_lt.so"),
        format!("/usr/lib/{ma}/pkgconfig/libdlm.pc"),
        format!("/usr/lib/{ma}/pkgconfig/libdlm_lt.pc"),
        "/usr/share/man/man3/libdlm.3.gz".into(),
        "/usr/share/man/man3/dlm_create_lockspace.3.gz".into(),
        "/usr/share/man/man3/dlm_lock.3.gz".into(),
        "/usr/share/man/man3/dlm_lock_wait.3.gz".into(),
        "/usr/share/man/man3/dlm_dispatch.3.gz".into(),
        "/usr/share/doc/libdlm-rs-dev/copyright".into(),
    ] {
        assert!(dev.contains(&want), "libdlm-rs-dev lacks {want}: {dev:?}");
    }
    // Every one of the 26 functions has a page (a link to its group's).
    for function in [
        "dlm_create_lockspace",
        "dlm_new_lockspace",
        "dlm_open_lockspace",
        "dlm_close_lockspace",
        "dlm_release_lockspace",
        "dlm_ls_get_fd",
        "dlm_get_fd",
        "dlm_ls_purge",
        "dlm_kernel_version",
        "dlm_library_version",
        "dlm_lock",
        "dlm_ls_lock",
        "dlm_ls_lockx",
        "dlm_unlock",
        "dlm_ls_unlock",
        "dlm_ls_deadlock_cancel",
        "dlm_lock_wait",
        "dlm_ls_lock_wait",
        "dlm_unlock_wait",
        "dlm_ls_unlock_wait",
        "lock_resource",
        "unlock_resource",
        "dlm_dispatch",
        "dlm_pthread_init",
        "dlm_ls_pthread_init",
        "dlm_pthread_cleanup",
    ] {
        let page = root.join(format!("usr/share/man/man3/{function}.3.gz"));
        assert!(
            std::fs::metadata(&page).is_ok_and(|m| m.is_file()),
            "no page for {function}"
        );
    }
    // Nothing of the libraries' runtime in the dev package.
    assert!(dev.iter().all(|f| !f.contains(".so.3")), "{dev:?}");

    let daemon = file_list(root, "dlmd");
    for want in [
        // Beside dlm, which starts the dlmd next to itself for users
        // whose PATH has no sbin.
        "/usr/bin/dlmd",
        "/usr/bin/dlm",
        "/usr/lib/systemd/system/dlmd.service",
        "/usr/lib/systemd/system/dlmd.socket",
        "/usr/share/bash-completion/completions/dlmd",
        "/usr/share/zsh/vendor-completions/_dlmd",
        "/usr/share/fish/vendor_completions.d/dlmd.fish",
        "/usr/share/man/man8/dlmd.8.gz",
        "/usr/share/man/man1/dlm.1.gz",
        "/usr/share/man/man1/dlm-lock.1.gz",
        "/usr/share/bash-completion/completions/dlm",
        "/usr/share/zsh/vendor-completions/_dlm",
        "/usr/share/fish/vendor_completions.d/dlm.fish",
        "/usr/share/doc/dlmd/copyright",
        "/usr/share/doc/dlmd/changelog.Debian.gz",
        "/usr/share/doc/dlmd/README.Debian",
    ] {
        assert!(daemon.contains(want), "dlmd lacks {want}: {daemon:?}");
    }
    // The unit starts the installed daemon.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/dlmd.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| l.split_whitespace().next())
        .expect("dlmd.service has ExecStart");
    assert!(
        daemon.contains(exec),
        "ExecStart={exec} is not in the package"
    );
    // dlmd tells systemd when it is ready; the socket unit is optional.
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    assert!(unit.lines().any(|l| l == "RuntimeDirectoryPreserve=yes"));
    // Every file of every package is below /usr.
    for package in PACKAGES {
        for f in file_list(root, package) {
            assert!(f.starts_with("/usr/"), "{package}: {f}");
        }
    }
}

#[test]
fn control_fields() {
    let Some(root) = installed() else { return };
    let f = |p: &str, n: &str| field(root, p, n);
    assert_eq!(f("libdlm3-rs", "Provides"), "libdlm3 (= 4.2.0)");
    assert_eq!(f("libdlm3-rs", "Conflicts"), "libdlm3");
    assert_eq!(f("libdlm3-rs", "Replaces"), "libdlm3");
    assert_eq!(f("libdlm3-rs", "Multi-Arch"), "same");
    assert_eq!(f("libdlm3-rs", "Section"), "libs");
    assert_eq!(f("libdlm-rs-dev", "Provides"), "libdlm-dev (= 4.2.0)");
    assert_eq!(f("libdlm-rs-dev", "Conflicts"), "libdlm-dev");
    assert_eq!(f("libdlm-rs-dev", "Replaces"), "libdlm-dev");
    let version = f("libdlm3-rs", "Version");
    assert!(
        f("libdlm-rs-dev", "Depends").contains(&format!("libdlm3-rs (= {version})")),
        "{}",
        f("libdlm-rs-dev", "Depends")
    );
    for (dbg, of) in [("libdlm3-rs-dbgsym", "libdlm3-rs"), ("dlmd-dbgsym", "dlmd")] {
        assert_eq!(f(dbg, "Depends"), format!("{of} (= {version})"));
        assert_eq!(f(dbg, "Section"), "debug");
    }
    // The shlibs file lets programs built against us depend on libdlm3,
    // which either library package satisfies.
    let shlibs = std::fs::read_to_string(root.join("var/lib/dpkg/info/libdlm3-rs:amd64.shlibs"))
        .or_else(|_| std::fs::read_to_string(root.join("var/lib/dpkg/info/libdlm3-rs.shlibs")))
        .expect("libdlm3-rs installs a shlibs file");
    assert!(shlibs.contains("libdlm 3 libdlm3 (>= 4.2.0)"), "{shlibs}");
}

/// The Debian package of the host that ships a shared library.
fn host_package_of(soname: &str) -> String {
    let ma = multiarch();
    let path = [
        format!("/lib/{ma}/{soname}"),
        format!("/usr/lib/{ma}/{soname}"),
        format!("/lib64/{soname}"),
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or_else(|| panic!("{soname} not found on this host"));
    let owner = Command::new("dpkg").arg("-S").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&owner.stdout);
    if let Some(line) = text.lines().next() {
        return line.split(':').next().unwrap().trim().to_string();
    }
    // usrmerge: dpkg knows the file under the other name.
    let other = path
        .strip_prefix("/usr")
        .map(String::from)
        .unwrap_or_else(|| format!("/usr{path}"));
    let text = output(Command::new("dpkg").arg("-S").arg(&other));
    text.lines()
        .next()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn every_needed_library_is_in_depends() {
    let Some(root) = installed() else { return };
    let ma = multiarch();
    for (package, binaries) in [
        (
            "libdlm3-rs",
            vec![
                format!("usr/lib/{ma}/libdlm.so.3.0"),
                format!("usr/lib/{ma}/libdlm_lt.so.3.0"),
            ],
        ),
        (
            "dlmd",
            vec!["usr/bin/dlmd".to_string(), "usr/bin/dlm".to_string()],
        ),
    ] {
        let depends = field(root, package, "Depends");
        let names: Vec<&str> = depends
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .collect();
        for bin in binaries {
            let dynamic = output(Command::new("readelf").arg("-d").arg(root.join(&bin)));
            for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
                let soname = line
                    .split('[')
                    .nth(1)
                    .and_then(|s| s.split(']').next())
                    .unwrap();
                let sibling = PACKAGES.iter().any(|p| {
                    file_list(root, p)
                        .iter()
                        .any(|f| f.ends_with(&format!("/{soname}")))
                });
                let host = host_package_of(soname);
                assert!(
                    sibling || names.contains(&host.as_str()),
                    "{bin} needs {soname} ({host}), not in {package}'s Depends: {depends}"
                );
            }
        }
    }
}

#[test]
fn binaries_are_stripped_with_debug_information_in_dbgsym() {
    let Some(root) = installed() else { return };
    let ma = multiarch();
    for bin in [
        format!("usr/lib/{ma}/libdlm.so.3.0"),
        format!("usr/lib/{ma}/libdlm_lt.so.3.0"),
        "usr/bin/dlmd".to_string(),
        "usr/bin/dlm".to_string(),
    ] {
        let path = root.join(&bin);
        let sections = output(Command::new("readelf").arg("-S").arg(&path));
        assert!(!sections.contains(".debug_info"), "{bin} has debug info");
        assert!(!sections.contains(" .symtab"), "{bin} has a symbol table");
        assert!(sections.contains(".gnu_debuglink"), "{bin}: no debuglink");
        let notes = output(Command::new("readelf").arg("-n").arg(&path));
        let id = notes
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .unwrap_or_else(|| panic!("{bin}: no build id"));
        let debug = root.join(format!(
            "usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        ));
        let dbg_sections = output(Command::new("readelf").arg("-S").arg(&debug));
        assert!(
            dbg_sections.contains(".debug_info"),
            "{}: no debug info",
            debug.display()
        );
    }
}

#[test]
fn no_maintainer_scripts() {
    // An upgrade must not restart dlmd, and the libraries use dpkg's
    // ldconfig trigger: no package has scripts.
    for package in PACKAGES {
        let info = output(Command::new("dpkg-deb").arg("--info").arg(deb(package)));
        for script in ["preinst", "postinst", "prerm", "postrm", "config"] {
            assert!(
                !info
                    .lines()
                    .any(|l| l.split_whitespace().nth(2) == Some(script)),
                "{package} has a {script}:\n{info}"
            );
        }
    }
    let triggers = output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb("libdlm3-rs"))
            .arg("triggers"),
    );
    assert_eq!(triggers.trim(), "activate-noawait ldconfig");
}

#[test]
fn installed_programs_and_libraries_work() {
    let Some(root) = installed() else { return };
    let ma = multiarch();
    let libdir = root.join(format!("usr/lib/{ma}"));
    for bin in ["usr/bin/dlmd", "usr/bin/dlm"] {
        let v = output(Command::new(root.join(bin)).arg("--version"));
        assert!(v.contains(env!("CARGO_PKG_VERSION")), "{bin}: {v}");
    }
    // The two C examples, built with pkg-config against the installed
    // header and .pc files and run with the installed, stripped libraries.
    for (file, package, extra) in [
        ("man_poll.c", "libdlm_lt", &[][..]),
        ("man_ast_thread.c", "libdlm", &["-pthread"][..]),
    ] {
        let flags = output(
            Command::new("pkg-config")
                .env("PKG_CONFIG_SYSROOT_DIR", root)
                .env("PKG_CONFIG_LIBDIR", libdir.join("pkgconfig"))
                .args(["--cflags", "--libs", package]),
        );
        let inc = format!("-I{}", clib::c_dir().display());
        let rpath = format!("-Wl,-rpath,{}", libdir.display());
        let mut args: Vec<&str> = vec![&inc, &rpath];
        args.extend(extra);
        args.extend(flags.split_whitespace());
        args.push("-ldl");
        let source = std::fs::read_to_string(clib::c_dir().join(file)).unwrap();
        let test = format!("deb-{package}");
        let exe = dlm_tests::compile_c(&test, &source, &args);
        let dlmd = Dlmd::start(&test);
        let out = clib::run_ok(
            file,
            Command::new(&exe)
                .envs(dlmd.env())
                .env("DLM_TEST_LIBDIR", &libdir),
        );
        assert!(out.ends_with("all ok\n"), "{out}");
    }
}
