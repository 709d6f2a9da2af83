//! The C programs of `c_api.rs` again, under valgrind: no memory error
//! and no byte definitely or indirectly lost, in our libraries or in
//! the way they hand memory to C (`--errors-for-leak-kinds=definite,
//! indirect`; process-lifetime globals are "still reachable" and
//! allowed, as in any C library).

use dlm_tests::Dlmd;
use dlm_tests::clib::{self, Flavour, Header};

fn under_valgrind(test: &str, file: &str, flavour: Flavour) {
    assert!(
        std::process::Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "valgrind is missing: apt-get install valgrind"
    );
    let libdir = clib::lib_dir();
    let exe = clib::compile(&format!("vg-{test}"), file, flavour, Header::Ours, libdir);
    let dlmd = Dlmd::start(&format!("vg-{test}"));
    let out = clib::run_ok(
        &format!("{file} ({flavour:?}) under valgrind"),
        &mut clib::command(&exe, &dlmd, libdir, true),
    );
    assert!(out.ends_with("all ok\n"), "{file}: {out}");
}

#[test]
fn valgrind_scenarios_lt() {
    under_valgrind("scen-lt", "scenarios.c", Flavour::Lt);
}

#[test]
fn valgrind_scenarios_threads() {
    under_valgrind("scen-thr", "scenarios.c", Flavour::Threads);
}

#[test]
fn valgrind_man_page_examples() {
    under_valgrind("man-ast", "man_ast_thread.c", Flavour::Threads);
    under_valgrind("man-poll", "man_poll.c", Flavour::Lt);
}

#[test]
fn valgrind_lvmlockd_pattern() {
    under_valgrind("lvmlockd", "lvmlockd.c", Flavour::Lt);
}

#[test]
fn valgrind_ocfs2_and_rgmanager_patterns() {
    under_valgrind("ocfs2", "ocfs2.c", Flavour::Lt);
    under_valgrind("rgmanager", "rgmanager.c", Flavour::Threads);
}
