//! Our `libdlm.so.3` and `libdlm_lt.so.3` driven by C programs
//! (`tests/c/`), each against a dlmd started by the test: docs/semantics.md scenarios
//! L1–L14 in both flavours, the two examples of the original man page,
//! and the patterns of lvmlockd, ocfs2-tools and rgmanager. Every program
//! is compiled against our `libdlm.h` and against Debian's, and both
//! builds must pass; each checks that the library it loaded is ours.
//! The same programs run under valgrind in `c_valgrind.rs`.

use dlm_tests::Dlmd;
use dlm_tests::clib::{self, Flavour, Header};

/// Compiles `file` both ways and runs both builds against a fresh dlmd;
/// returns the output of the build against our header.
fn run_both_headers(test: &str, file: &str, flavour: Flavour) -> String {
    let libdir = clib::lib_dir();
    let mut ours = String::new();
    for header in [Header::Ours, Header::System] {
        let exe = clib::compile(test, file, flavour, header, libdir);
        let dlmd = Dlmd::start(&format!("{test}-{header:?}"));
        let out = clib::run_ok(
            &format!("{file} ({flavour:?}, {header:?} header)"),
            &mut clib::command(&exe, &dlmd, libdir, false),
        );
        assert!(out.ends_with("all ok\n"), "{file}: {out}");
        if header == Header::Ours {
            ours = out;
        }
    }
    ours
}

#[test]
fn scenarios_l1_to_l14_lt() {
    let out = run_both_headers("scen-lt", "scenarios.c", Flavour::Lt);
    for l in [
        "L1", "L2", "L3", "L4", "L5", "L6", "L7", "L10", "L12", "L13", "L14",
    ] {
        assert!(out.contains(&format!("{l} ok\n")), "{l} missing:\n{out}");
    }
}

#[test]
fn scenarios_l1_to_l14_threads() {
    let out = run_both_headers("scen-thr", "scenarios.c", Flavour::Threads);
    for l in [
        "L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8", "L9", "L10", "L11", "L12", "L13", "L14",
    ] {
        assert!(out.contains(&format!("{l} ok\n")), "{l} missing:\n{out}");
    }
}

#[test]
fn man_page_example_lockspace_with_ast_thread() {
    let out = run_both_headers("man-ast", "man_ast_thread.c", Flavour::Threads);
    assert!(out.starts_with("lock granted, id "), "{out}");
}

#[test]
fn man_page_example_poll_and_dispatch() {
    run_both_headers("man-poll", "man_poll.c", Flavour::Lt);
}

#[test]
fn lvmlockd_pattern() {
    let out = run_both_headers("lvmlockd", "lvmlockd.c", Flavour::Lt);
    assert!(out.contains("vglk ok\nadopt ok\n"), "{out}");
}

/// libdlm_lt: a synchronous cancel, from another thread, of a
/// `dlm_ls_lock_wait` blocked in its read (with the dispatch role taken by
/// compare-and-swap): both end with ECANCEL, the cancel is not taken for
/// one with nothing to cancel (EBUSY).
#[test]
fn lt_cancel_of_a_blocked_lock_wait_from_another_thread() {
    run_both_headers("lt-cancel", "lt_cancel_thread.c", Flavour::Lt);
}

#[test]
fn ocfs2_tools_dlopen_pattern() {
    run_both_headers("ocfs2", "ocfs2.c", Flavour::Lt);
}

#[test]
fn rgmanager_select_and_dispatch_loop() {
    run_both_headers("rgmanager", "rgmanager.c", Flavour::Threads);
}

/// Sizes, offsets, constants and function types of our header equal
/// Debian's (gcc rejects a function of another type with -Werror).
#[test]
fn header_is_abi_identical_to_debians() {
    assert!(
        std::path::Path::new("/usr/include/libdlm.h").exists(),
        "Debian's libdlm.h is missing: apt-get install libdlm-dev"
    );
    let libdir = clib::lib_dir();
    for flavour in [Flavour::Lt, Flavour::Threads] {
        let mut outs = Vec::new();
        for header in [Header::Ours, Header::System] {
            let exe = clib::compile("header-abi", "header_abi.c", flavour, header, libdir);
            outs.push(dlm_tests::clib::run_ok(
                "header_abi",
                std::process::Command::new(exe).env("LD_LIBRARY_PATH", libdir),
            ));
        }
        assert_eq!(
            outs[0], outs[1],
            "{flavour:?}: our header differs from Debian's"
        );
        assert!(
            outs[0].contains("sizeof(struct dlm_lksb) 24\n"),
            "{}",
            outs[0]
        );
        assert!(outs[0].contains("functions 1\n"));
        assert_eq!(outs[0].contains("threads 1\n"), flavour == Flavour::Threads);
    }
}
