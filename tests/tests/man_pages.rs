//! The manual pages and shell completions: every page (the hand-written
//! ones in `man/` and those `cargo xtask man` generates from dlm-cli's
//! clap definition) renders without a single warning from groff (`-ww`)
//! and mandoc's linter; the completions name every subcommand and option
//! of `dlm`; and the two example programs of `libdlm(3)`, cut out of the
//! page, compile against our header and run against dlmd.

use dlm_tests::Dlmd;
use dlm_tests::clib::{self, Flavour};
use std::path::PathBuf;
use std::process::Command;

/// The generated pages and completions, once per process.
fn generated() -> &'static PathBuf {
    static OUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let xtask = clib::profile_dir().join("xtask");
        assert!(
            xtask.exists(),
            "{} is missing: build it with `cargo build -p xtask`",
            xtask.display()
        );
        let out = dlm_tests::scratch_dir("man");
        let status = Command::new(xtask)
            .arg("man")
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run xtask man");
        assert!(status.success(), "xtask man: {status}");
        out
    })
}

fn pages() -> Vec<PathBuf> {
    let mut pages = Vec::new();
    for dir in [
        clib::workspace_root().join("man"),
        generated().join("man1"),
        generated().join("man8"),
    ] {
        for entry in std::fs::read_dir(&dir).expect("read the pages") {
            pages.push(entry.unwrap().path());
        }
    }
    pages.sort();
    assert!(pages.len() >= 7, "{pages:?}");
    pages
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
}

#[test]
fn every_page_renders_without_groff_warnings() {
    assert!(
        has("groff"),
        "groff is missing: apt-get install groff-base (cargo xtask test installs it)"
    );
    for page in pages() {
        let out = Command::new("groff")
            .args(["-ww", "-man", "-t", "-z"])
            .arg(&page)
            .output()
            .expect("run groff");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{}: {stderr}",
            page.display()
        );
    }
}

#[test]
fn every_page_passes_mandoc_lint() {
    if !has("mandoc") {
        eprintln!(
            "skipped: mandoc is missing (apt-get install mandoc; cargo xtask test installs it)"
        );
        return;
    }
    for page in pages() {
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(&page)
            .output()
            .expect("run mandoc");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{}:\n{text}",
            page.display()
        );
    }
}

#[test]
fn completions_know_every_subcommand_and_option() {
    let dir = generated().join("completions");
    let bash = std::fs::read_to_string(dir.join("dlm.bash")).unwrap();
    let zsh = std::fs::read_to_string(dir.join("_dlm")).unwrap();
    let fish = std::fs::read_to_string(dir.join("dlm.fish")).unwrap();
    for word in [
        "lock",
        "locks",
        "lockspaces",
        "create",
        "release",
        "purge",
        "daemon",
        "why",
        "status",
        "stats",
        "--stuck",
        "--prometheus",
        "--lockspace",
        "--nonblock",
        "--timeout",
        "--shared",
        "--conflict-exit-code",
        "--close",
        "--exclusive",
        "--force",
    ] {
        let bare = word.trim_start_matches('-');
        assert!(bash.contains(word), "bash completion lacks {word}");
        assert!(zsh.contains(word), "zsh completion lacks {word}");
        assert!(fish.contains(bare), "fish completion lacks {word}");
    }
    // The bash script parses.
    let status = Command::new("bash")
        .arg("-n")
        .arg(dir.join("dlm.bash"))
        .status()
        .expect("run bash");
    assert!(status.success(), "bash -n dlm.bash: {status}");
    // dlmd's completions, from its clap definition too.
    let bash = std::fs::read_to_string(dir.join("dlmd.bash")).unwrap();
    let zsh = std::fs::read_to_string(dir.join("_dlmd")).unwrap();
    let fish = std::fs::read_to_string(dir.join("dlmd.fish")).unwrap();
    for word in [
        "--foreground",
        "--daemon",
        "--socket",
        "--log-level",
        "--log-file",
        "--admin-group",
        "--max-locks-per-uid",
        "--dump",
        "--json",
    ] {
        let bare = word.trim_start_matches('-');
        assert!(bash.contains(word), "dlmd's bash completion lacks {word}");
        assert!(zsh.contains(word), "dlmd's zsh completion lacks {word}");
        assert!(fish.contains(bare), "dlmd's fish completion lacks {word}");
    }
    let status = Command::new("bash")
        .arg("-n")
        .arg(dir.join("dlmd.bash"))
        .status()
        .expect("run bash");
    assert!(status.success(), "bash -n dlmd.bash: {status}");
}

/// The example programs of a page: the text between `.EX` and `.EE`
/// that has a `main`, with roff's escapes undone.
fn examples(page: &str) -> Vec<String> {
    let text = std::fs::read_to_string(clib::workspace_root().join("man").join(page)).unwrap();
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (line, current.as_mut()) {
            (".EX", None) => current = Some(String::new()),
            (".EE", Some(_)) => out.push(current.take().unwrap()),
            (l, Some(c)) => {
                let l = l
                    .replace("\\-", "-")
                    .replace("\\e", "\\")
                    .replace("\\&", "");
                c.push_str(&l);
                c.push('\n');
            }
            _ => {}
        }
    }
    out.into_iter().filter(|e| e.contains("int main")).collect()
}

#[test]
fn the_libdlm_page_examples_compile_and_run() {
    let examples = examples("libdlm.3");
    assert_eq!(examples.len(), 2, "libdlm(3) has two example programs");
    for (i, (source, flavour)) in examples
        .iter()
        .zip([Flavour::Threads, Flavour::Lt])
        .enumerate()
    {
        let lib = clib::lib_dir();
        let inc = format!("-I{}", clib::workspace_root().join("include").display());
        let l = format!("-L{}", lib.display());
        let rpath = format!("-Wl,-rpath,{}", lib.display());
        let mut args = vec![inc.as_str(), l.as_str(), rpath.as_str()];
        match flavour {
            Flavour::Threads => args.extend(["-pthread", "-ldlm"]),
            Flavour::Lt => args.push("-ldlm_lt"),
        }
        let test = format!("man-example-{}", i + 1);
        let exe = dlm_tests::compile_c(&test, source, &args);
        let dlmd = Dlmd::start(&test);
        let out = clib::run_ok(&test, Command::new(&exe).envs(dlmd.env()));
        // Granted (status 0), with a lock id.
        assert!(out.starts_with("status 0, lock id "), "{test}: {out}");
        assert!(!out.contains("lock id 0\n"), "{test}: {out}");
    }
}

#[test]
fn dlmd_page_names_every_option_of_dlmd_help() {
    // dlmd(8) is generated from dlmd's clap definition, as `dlmd --help`
    // is: every option of the help is on the page, and the help is
    // clap's.
    let help = Command::new(dlm_tests::dlmd_binary())
        .arg("--help")
        .output()
        .expect("run dlmd --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: dlmd [OPTIONS]"), "{help}");
    let page = std::fs::read_to_string(generated().join("man8/dlmd.8"))
        .unwrap()
        .replace("\\-", "-");
    let options: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(options.len() >= 5, "{help}");
    for option in options {
        assert!(page.contains(option), "dlmd(8) does not describe {option}");
    }
}
