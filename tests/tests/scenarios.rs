//! The one table of device-level scenarios (`dlm_tests::scenarios`,
//! docs/semantics.md Part D: P, E, U, V, C and the X rows) on the two lock
//! managers that run in this process: the engine and the reference model
//! (the `dlm-model` crate). dlmd and the kernel run the same table in
//! `kernel_scenarios` (the kernel in the VM suite, `tests/vm/suite.sh`).
//!
//! - Each scenario id is in the table exactly once, and is a row of
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
