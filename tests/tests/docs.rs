//! The repository explains itself: every section and scenario id the code
//! and docs cite (`C.3.2`, `Part D`, `E14`, `U4`, …) is defined in
//! `docs/semantics.md` (a heading or a table row of its own); no tracked
//! file names notes that are not in the repository or holds a path of the
//! machine it was written on; and no URL names a real host (package
//! registries and mirrors come from the user's own configuration).
//!
//! The files checked are `git ls-files` (or, without git, every file under
//! the workspace except `target/` and hidden directories).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The repository's files, relative to the root.
fn files() -> Vec<PathBuf> {
    let root = root();
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output();
    if let Some(out) = out.ok().filter(|o| o.status.success()) {
        return out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| !p.starts_with("target") && root.join(p).is_file())
            .collect();
    }
    println!("git ls-files unavailable: walking the tree");
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(root.join(&dir)).expect("read_dir").flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || (dir.as_os_str().is_empty() && name == "target") {
                continue;
            }
            let rel = dir.join(&*name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(rel);
            } else {
                found.push(rel);
            }
        }
    }
    found
}

/// The text files among `files()`, with their contents.
fn texts() -> Vec<(PathBuf, String)> {
    files()
        .into_iter()
        .filter_map(|p| {
            let text = fs::read_to_string(root().join(&p)).ok()?;
            Some((p, text))
        })
        .collect()
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The ids cited in `text`: section ids (`A.5`, `C.3.2`), scenario ids
/// (`P1`, `E34`, `U4`, `V9`, `C10`, `L14`, `X2`) and `Part D` /
/// `Appendix X`.
fn cited(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut ids = BTreeSet::new();
    for i in 0..b.len() {
        if !b[i].is_ascii_uppercase() || (i > 0 && is_word(b[i - 1])) {
            continue;
        }
        // section: X.n(.n)*
        if b.get(i + 1) == Some(&b'.') && b.get(i + 2).is_some_and(u8::is_ascii_digit) {
            let mut j = i + 2;
            loop {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                } else {
                    break;
                }
            }
            if !b.get(j).copied().is_some_and(is_word) {
                ids.insert(text[i..j].to_string());
            }
            continue;
        }
        // scenario: one of PEUVCLX, then one or two digits
        if b"PEUVCLX".contains(&b[i]) {
            let mut j = i + 1;
            while j < b.len() && j <= i + 2 && b[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 1 && !b.get(j).copied().is_some_and(is_word) {
                ids.insert(text[i..j].to_string());
            }
        }
    }
    for word in ["Part ", "Appendix "] {
        for (at, _) in text.match_indices(word) {
            let rest = &b[at + word.len()..];
            if rest.first().is_some_and(u8::is_ascii_uppercase)
                && !rest.get(1).copied().is_some_and(is_word)
            {
                ids.insert(format!("{word}{}", rest[0] as char));
            }
        }
    }
    ids
}

/// Tokens that look like ids but are not citations, with the reason.
const NOT_IDS: &[(&str, &str)] = &[("V61", "xtask's Kernel::V61, kernel 6.1")];

/// The ids `docs/semantics.md` defines: the first word of a heading (or
/// `Part` or `Appendix` and its letter), or the first cell of a table
/// row.
fn defined(semantics: &str) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for (n, line) in semantics.lines().enumerate() {
        let head = if let Some(h) = line.strip_prefix('#') {
            let h = h.trim_start_matches('#').trim();
            let mut w = h.split_whitespace();
            match (w.next(), w.next()) {
                (Some(p @ ("Part" | "Appendix")), Some(l)) => Some(format!("{p} {l}")),
                (Some(id), _) => Some(id.to_string()),
                _ => None,
            }
        } else if let Some(row) = line.strip_prefix('|') {
            row.split('|').next().map(|c| c.trim().to_string())
        } else {
            None
        };
        if let Some(id) = head.filter(|h| cited(h).contains(h)) {
            if let Some(first) = ids.insert(id.clone(), n + 1) {
                panic!(
                    "docs/semantics.md defines {id} twice (lines {first} and {})",
                    n + 1
                );
            }
        }
    }
    ids
}

#[test]
fn every_cited_id_is_defined_in_semantics() {
    let semantics =
        fs::read_to_string(root().join("docs/semantics.md")).expect("docs/semantics.md");
    let defined = defined(&semantics);
    // the scanner finds the ids it must, and the definitions are there
    for id in [
        "A.5",
        "C.3.2",
        "Part D",
        "Appendix X",
        "E1",
        "E34",
        "L14",
        "X4",
    ] {
        assert!(
            cited(&format!("see {id}.")).contains(id),
            "scanner misses {id}"
        );
        assert!(defined.contains_key(id), "docs/semantics.md lacks {id}");
    }
    assert!(cited("V612 E2BIG 0xC1 x86 C.5x").is_empty());

    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = BTreeSet::new();
    for (path, text) in texts() {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let script = path.starts_with(".ci");
        if !matches!(ext, "rs" | "c" | "h" | "sh" | "md") && !script {
            continue;
        }
        for id in cited(&text) {
            if NOT_IDS.iter().any(|(t, _)| *t == id) {
                continue;
            }
            total.insert(id.clone());
            if !defined.contains_key(&id) {
                missing
                    .entry(id)
                    .or_default()
                    .push(path.display().to_string());
            }
        }
    }
    println!(
        "{} distinct ids cited, {} defined in docs/semantics.md",
        total.len(),
        defined.len()
    );
    assert!(
        missing.is_empty(),
        "cited but not defined in docs/semantics.md: {missing:#?}"
    );
}

#[test]
fn no_file_names_outside_notes_or_machine_paths() {
    // Built from pieces so that this file does not hit itself.
    let forbidden: Vec<String> = [
        ["DESIGN", ".md"],
        ["CLIENTS", ".md"],
        ["STYLE", ".md"],
        ["DLM-", "SEMANTICS"],
        ["shared", "/"],
        ["/wo", "rk/"],
        ["/ho", "me/"],
        ["/Us", "ers/"],
    ]
    .iter()
    .map(|p| p.concat())
    .collect();
    let mut hits = Vec::new();
    for (path, text) in texts() {
        for (n, line) in text.lines().enumerate() {
            for f in &forbidden {
                if line.contains(f.as_str()) {
                    hits.push(format!("{}:{}: {f}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(hits.is_empty(), "{hits:#?}");
}

#[test]
fn urls_name_no_real_host() {
    let mut hits = Vec::new();
    for (path, text) in texts() {
        // Cargo writes the registry's address into the lock file itself.
        if path == Path::new("Cargo.lock") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            // (built from pieces so that this file does not hit itself)
            for scheme in [["http", "://"].concat(), ["https", "://"].concat()] {
                for (at, _) in line.match_indices(scheme.as_str()) {
                    let host: String = line[at + scheme.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                        .collect();
                    if !host.ends_with(".invalid") {
                        hits.push(format!("{}:{}: {scheme}{host}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "URLs must use reserved .invalid hosts: {hits:#?}"
    );
}
