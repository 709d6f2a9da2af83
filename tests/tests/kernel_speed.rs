//! Speed on the kernel DLM, reported, never asserted: EX
//! `dlm_ls_lock_wait` + `dlm_ls_unlock_wait` pairs (1000 per run) through
//! Debian's libdlm3 and through ours, lt and threads builds, in
//! interleaved runs; the same pairs through ours on a dlmd in the same
//! guest; and through the safe Rust API (`dlm-test-client bench`). Each
//! ratio on the `@@SPEED` line (ours / Debian's, dlmd / kernel, Rust API /
//! our libdlm_lt) is the median of the per-run ratios: a run's programs run back
//! to back, so a slow spell of the host (a shared VM, under TCG) hits both
//! sides of a ratio; the ratio of the two medians, which such a spell can
//! move by 10 %, is printed beside it with the medians. Uses the programs
//! `tests/vm/build-kclib.sh` builds (`kclib-*` from `tests/vm/kclib.c`,
//! `dlm-test-client`);
//! skips without them. A plain `main`.

use std::path::Path;
use std::process::{Command, ExitCode};

const RUNS: usize = 21;
const PAIRS: &str = "1000";

fn bench(bin: &str, ours: bool, ls: &str, env: &[(&str, std::ffi::OsString)]) -> Option<f64> {
    let mut cmd = Command::new(format!("/vmtest/bin/{bin}"));
    cmd.args(["bench", ls, PAIRS]).envs(env.iter().cloned());
    if !ours {
        cmd.env_remove("LD_LIBRARY_PATH");
    }
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("pair_ns "))
        .and_then(|v| v.trim().parse().ok());
    if v.is_none() {
        println!(
            "{bin} {ls}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    v
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> ExitCode {
    if let Some(skip) = dlm_tests::single_node_kernel_skip(
        "kernel_speed",
        Path::new("/vmtest/bin/kclib-deb-lt").exists()
            && Path::new("/vmtest/bin/dlm-test-client").exists(),
        "the kernel DLM and tests/vm/suite.sh's programs",
    ) {
        return skip;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dlmd = dlm_tests::dlmd_binary_path()
        .exists()
        .then(|| dlm_tests::Dlmd::start("speed"));
    let dlmd_env: Vec<(&str, std::ffi::OsString)> =
        dlmd.as_ref().map(|d| d.env().to_vec()).unwrap_or_default();
    let kinds: [(&str, &str, bool, bool); 6] = [
        ("deb-lt", "kclib-deb-lt", false, false),
        ("ours-lt", "kclib-ours-lt", true, false),
        ("deb-thr", "kclib-deb-thr", false, false),
        ("ours-thr", "kclib-ours-thr", true, false),
        ("dlmd-lt", "kclib-ours-lt", true, true),
        ("rust", "dlm-test-client", true, false),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut runs: Vec<Vec<Option<f64>>> = Vec::new();
    for run in 0..RUNS {
        let mut this = vec![None; kinds.len()];
        for (i, (label, bin, ours, on_dlmd)) in kinds.iter().enumerate() {
            if *on_dlmd && dlmd.is_none() {
                continue;
            }
            let env: &[(&str, std::ffi::OsString)] = if *on_dlmd { &dlmd_env } else { &[] };
            if let Some(t) = bench(bin, *ours, &format!("kb{run}{label}"), env) {
                times[i].push(t);
                this[i] = Some(t);
            }
        }
        runs.push(this);
    }
    let med: Vec<Option<f64>> = times
        .iter_mut()
        .map(|v| (!v.is_empty()).then(|| median(v)))
        .collect();
    for ((label, ..), m) in kinds.iter().zip(&med) {
        match m {
            Some(m) => println!(
                "{label}: median {:.1} us per pair ({RUNS} runs of {PAIRS})",
                m / 1000.0
            ),
            None => println!("{label}: no result"),
        }
    }
    let ratio = |a: usize, b: usize| match (med[a], med[b]) {
        (Some(x), Some(y)) => format!("{:.3}", x / y),
        _ => "n/a".into(),
    };
    let us = |i: usize| med[i].map_or("n/a".into(), |m| format!("{:.1}", m / 1000.0));
    let paired = |a: usize, b: usize| {
        let mut r: Vec<f64> = runs
            .iter()
            .filter_map(|run| Some(run[a]? / run[b]?))
            .collect();
        if r.is_empty() {
            "n/a".into()
        } else {
            format!("{:.3}", median(&mut r))
        }
    };
    println!(
        "@@SPEED kernel {} lt ours/deb {} (medians {} / {} us, ratio {}) \
         threads ours/deb {} (medians {} / {} us, ratio {}) \
         dlmd/kernel {} (medians {} / {} us) \
         rust-api/lt {} (medians {} / {} us)",
        release.trim(),
        paired(1, 0),
        us(1),
        us(0),
        ratio(1, 0),
        paired(3, 2),
        us(3),
        us(2),
        ratio(3, 2),
        paired(4, 1),
        us(4),
        us(1),
        paired(5, 1),
        us(5),
        us(1),
    );
    ExitCode::SUCCESS
}
