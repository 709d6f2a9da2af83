//! `cargo xtask bench [--json] [--only NAME..]`: every benchmark of the
//! project, in release mode.
//!
//! Each benchmark is a plain `harness = false` bench target that measures
//! its own baselines in the same run (the machines are noisy) and prints
//! one line per figure as a ratio against them, each the median of
//! interleaved rounds. This command runs them one after another and
//! prints their lines; `--only NAME` runs some.
//!
//! With `--json` the benchmarks run with `DLM_BENCH_JSON=1`: their
//! readable lines go to stderr (with this command's progress) and each
//! figure comes as one machine line on stdout (`@ratio KEY MEDIAN MIN
//! MAX` or `@size KEY VALUE`, see `dlm-engine/benches/report/mod.rs`).
//! This command gathers them into exactly one JSON object on stdout,
//! nested by benchmark:
//! `{"engine": {"pair_over_flock": {"median": 0.16, "min": 0.15, "max":
//! 0.17}, "bytes_per_lock": 209.3, ...}, "dlmd": {...}, "clib": {...}}`.

use crate::host;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// (name, package, package directory, bench target) of every benchmark.
const BENCHES: &[(&str, &str, &str, &str)] = &[
    ("engine", "dlm-engine", "dlm-engine", "engine"),
    ("dlmd", "dlmd", "dlmd", "dlmd"),
    ("clib", "dlm-tests", "tests", "clib"),
];

const USAGE: &str = "usage: cargo xtask bench [--json] [--only engine|dlmd|clib ...]";

/// One figure of a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    /// A ratio over rounds: median, min, max.
    Ratio(f64, f64, f64),
    /// A plain number.
    Size(f64),
}

/// Parses a machine line (`@ratio KEY MEDIAN MIN MAX`, `@size KEY
/// VALUE`); `None` for any other line. Keys are `[a-z0-9_]+` and numbers
/// finite, so the JSON built from them is valid by construction.
pub fn parse_line(line: &str) -> Option<(String, Figure)> {
    let mut w = line.split_whitespace();
    let kind = w.next()?;
    let key = w.next()?;
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let nums: Vec<f64> = w
        .map(|s| s.parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect::<Option<_>>()?;
    let fig = match (kind, nums.as_slice()) {
        ("@ratio", &[m, lo, hi]) => Figure::Ratio(m, lo, hi),
        ("@size", &[v]) => Figure::Size(v),
        _ => return None,
    };
    Some((key.to_string(), fig))
}

/// A finite number as JSON.
fn num(x: f64) -> String {
    // Rust prints finite f64s as plain decimals ("0.5", "209", "1e-7" is
    // never produced by Display), all valid JSON numbers.
    format!("{x}")
}

/// The JSON object of the figures of each benchmark, in run order.
pub fn to_json(areas: &[(String, Vec<(String, Figure)>)]) -> String {
    let mut out = String::from("{");
    for (i, (area, figs)) in areas.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("\"{area}\": {{"));
        for (j, (key, fig)) in figs.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            match fig {
                Figure::Ratio(m, lo, hi) => out.push_str(&format!(
                    "\"{key}\": {{\"median\": {}, \"min\": {}, \"max\": {}}}",
                    num(*m),
                    num(*lo),
                    num(*hi)
                )),
                Figure::Size(v) => out.push_str(&format!("\"{key}\": {}", num(*v))),
            }
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// Runs the benchmarks (all, or those named after `--only`).
pub fn run(args: &[String]) -> Result<(), String> {
    let mut json = false;
    let mut only: Option<Vec<&str>> = None;
    for a in args {
        match (a.as_str(), only.as_mut()) {
            ("--json", _) => json = true,
            ("--only", None) => only = Some(Vec::new()),
            (name, Some(list)) if BENCHES.iter().any(|b| b.0 == name) => list.push(name),
            _ => return Err(USAGE.into()),
        }
    }
    let only = match only {
        None => BENCHES.iter().map(|b| b.0).collect(),
        Some(list) if !list.is_empty() => list,
        Some(_) => return Err(USAGE.into()),
    };
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Progress (and everything but the JSON) goes to stderr with --json.
    let say = |s: String| {
        if json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    // The dlmd and C-library benchmarks start dlmd and load our libraries.
    let mut build = Command::new(&cargo);
    build
        .current_dir(&root)
        .args(["build", "--release", "--workspace"]);
    if json {
        build.stdout(Stdio::null());
    }
    host::run(&mut build)?;
    let mut failed = Vec::new();
    let mut areas = Vec::new();
    for &(name, package, dir, target) in BENCHES.iter().filter(|b| only.contains(&b.0)) {
        if !root
            .join(dir)
            .join("benches")
            .join(format!("{target}.rs"))
            .exists()
        {
            say(format!(
                "== {name}: no benchmark yet ({dir}/benches/{target}.rs)"
            ));
            continue;
        }
        say(format!("== {name} ({package}, bench {target})"));
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args(["bench", "--quiet", "-p", package, "--bench", target]);
        if !json {
            let status = cmd.status().map_err(|e| format!("cargo bench: {e}"))?;
            if !status.success() {
                failed.push(name);
            }
            continue;
        }
        let mut child = cmd
            .env("DLM_BENCH_JSON", "1")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cargo bench: {e}"))?;
        let mut figs = Vec::new();
        for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
            let line = line.map_err(|e| format!("cargo bench output: {e}"))?;
            match parse_line(&line) {
                Some((key, fig)) => {
                    eprintln!("   {name}.{key} = {fig:?}");
                    figs.push((key, fig));
                }
                None => eprintln!("{line}"),
            }
        }
        let status = child.wait().map_err(|e| format!("cargo bench: {e}"))?;
        if !status.success() {
            failed.push(name);
        }
        areas.push((name.to_string(), figs));
    }
    if json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", to_json(&areas)).map_err(|e| format!("stdout: {e}"))?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmarks failed: {}", failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_lines_parse() {
        assert_eq!(
            parse_line("@ratio pair_over_flock 0.1600 0.1500 0.1700"),
            Some(("pair_over_flock".into(), Figure::Ratio(0.16, 0.15, 0.17)))
        );
        assert_eq!(
            parse_line("@size bytes_per_lock 209.3"),
            Some(("bytes_per_lock".into(), Figure::Size(209.3)))
        );
        for bad in [
            "engine pair / flock pair = 0.160",
            "@ratio key 1 2",
            "@ratio Key\" 1 2 3",
            "@size key inf",
            "@size key NaN",
            "@size key 1 2",
            "@other key 1",
            "",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    /// The JSON parses (python3's json module) and has the documented
    /// shape: areas of figures, each ratio an object with median, min
    /// and max, each size a plain number.
    #[test]
    fn json_has_the_documented_shape() {
        let areas = vec![
            (
                "engine".to_string(),
                vec![
                    (
                        "pair_over_flock".to_string(),
                        Figure::Ratio(0.16, 0.15, 0.2),
                    ),
                    ("bytes_per_lock".to_string(), Figure::Size(209.0)),
                    (
                        "drain_10k_over_100".to_string(),
                        Figure::Ratio(1.0, 0.9, 1.25),
                    ),
                ],
            ),
            ("dlmd".to_string(), vec![]),
            (
                "clib".to_string(),
                vec![("rust_over_c".to_string(), Figure::Ratio(1.0, 1e-7, 3e20))],
            ),
        ];
        let text = to_json(&areas);
        let check = r#"
import json, sys
d = json.loads(sys.stdin.read())
assert list(d) == ["engine", "dlmd", "clib"], d
e = d["engine"]
assert e["pair_over_flock"] == {"median": 0.16, "min": 0.15, "max": 0.2}, e
assert e["bytes_per_lock"] == 209, e
assert d["dlmd"] == {}, d
r = d["clib"]["rust_over_c"]
assert set(r) == {"median", "min", "max"} and r["max"] == 3e20 and r["min"] == 1e-7, r
print("ok")
"#;
        let mut child = match Command::new("python3")
            .args(["-c", check])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: python3 is not available ({e})");
                return;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{text}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{text}");
    }
}
