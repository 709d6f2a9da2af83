//! The one table of device-level scenarios (`dlm_tests::scenarios`,
//! docs/semantics.md Part D: P, E, U, V, C and the X rows) on the two lock
//! managers that run in this process: the engine and the reference model
//! (the `dlm-model` crate). dlmd and the kernel run the same table in
//! `kernel_scenarios` (the kernel in the VM suite, `tests/vm/suite.sh`).
//!
//! - Each scenario id is in the table exactly once, no test elsewhere is
//!   named after one, and is a row of
//!   docs/semantics.md Part D or Appendix X; each device-level row is in
//!   the table.
//! - The engine meets every spec expectation (but the deliberate
//!   differences of `known::ENGINE_DELIBERATE`).
//! - The model gives the engine's trace, line for line, raw device bytes
//!   included: two independent transcriptions of the rules agree on every
//!   scenario.

use dlm_tests::scenarios::{self, EngineTarget, ModelTarget, Outcome, known};
use std::collections::BTreeMap;
use std::path::Path;

/// The first cell of every table row of docs/semantics.md from Part D on
/// (Part D and Appendix X, whose X rows are scenarios too).
fn part_d_ids() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/semantics.md");
    let text = std::fs::read_to_string(path).expect("docs/semantics.md");
    let part_d = text
        .split("\n# Part D")
        .nth(1)
        .expect("docs/semantics.md has a Part D");
    part_d
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .map(str::trim)
        .filter(|c| {
            let mut ch = c.chars();
            ch.next().is_some_and(|f| f.is_ascii_uppercase()) && ch.as_str().parse::<u32>().is_ok()
        })
        .map(String::from)
        .collect()
}

#[test]
fn each_scenario_is_defined_once() {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for sc in scenarios::all() {
        *count.entry(sc.id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ids in the table more than once: {twice:?}"
    );
    let docs = part_d_ids();
    let undefined: Vec<_> = count
        .keys()
        .filter(|id| !docs.iter().any(|d| d == *id))
        .collect();
    assert!(
        undefined.is_empty(),
        "table ids with no Part D row in docs/semantics.md: {undefined:?}"
    );
    // The L rows are the C API's (tests/c/scenarios.c, tests/vm/kclib.c),
    // not device-level.
    let missing: Vec<_> = docs
        .iter()
        .filter(|d| !d.starts_with('L') && !count.contains_key(d.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "device-level Part D rows with no scenario in the table: {missing:?}"
    );
    println!("{} scenarios in the table", count.len());
}

/// Whether `name` is a test named after a device-level scenario id
/// (`e14_…`, `model_c3_…`): a second copy of a scenario.
fn named_after_a_scenario(name: &str) -> bool {
    let name = name.strip_prefix("model_").unwrap_or(name);
    let mut ch = name.chars();
    let first = ch.next().unwrap_or(' ');
    let rest = ch.as_str();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    "peuvcx".contains(first) && digits > 0 && rest[digits..].starts_with('_')
}

#[test]
fn no_scenario_is_written_twice() {
    // The table is the only copy: no Rust test elsewhere is named after a
    // scenario id (the L rows are the C API's and live in tests/c).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut copies = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut lines = text.lines().map(str::trim);
                while let Some(l) = lines.next() {
                    if l != "#[test]" {
                        continue;
                    }
                    let Some(f) = lines.next().and_then(|f| f.strip_prefix("fn ")) else {
                        continue;
                    };
                    let f = f.split('(').next().unwrap_or(f);
                    if named_after_a_scenario(f) {
                        copies.push(format!("{}: {f}", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        copies.is_empty(),
        "scenarios written outside the table (tests/src/scenarios/script.rs):\n{}",
        copies.join("\n")
    );
}

fn engine_run() -> Vec<Outcome> {
    scenarios::run_all(&mut EngineTarget::new(), "t", None)
}

#[test]
fn engine_meets_the_spec() {
    let out = engine_run();
    let fails: Vec<String> = out
        .iter()
        .filter(|o| !o.mismatches.is_empty() || o.not_applicable.is_some())
        .filter(|o| !known::ENGINE_DELIBERATE.iter().any(|(id, _)| *id == o.id))
        .map(|o| format!("{}: {:?} {:?}", o.id, o.not_applicable, o.mismatches))
        .collect();
    assert!(fails.is_empty(), "{}", fails.join("\n"));
    println!("engine: {} scenarios", out.len());
}

#[test]
fn model_gives_the_engine_traces() {
    let engine = engine_run();
    let model = scenarios::run_all(&mut ModelTarget::new(), "t", None);
    assert_eq!(engine.len(), model.len());
    let mut fails = Vec::new();
    for (e, m) in engine.iter().zip(&model) {
        let d = scenarios::diff(&m.trace, &e.trace);
        if !d.is_empty() || m.not_applicable != e.not_applicable {
            fails.push(format!(
                "{}: model (-) differs from the engine (+):\n  {}",
                e.id,
                d.join("\n  ")
            ));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
    println!("model: {} scenarios, the engine's traces", model.len());
}
