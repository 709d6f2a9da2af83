//! docs/semantics.md Part D's device-level scenarios (P, E, U, V, C, X), the
//! one table of `dlm_tests::scenarios`, against every lock manager there
//! is, with their traces compared.
//!
//! - With the kernel DLM (in a `cargo xtask vmtest` guest): the scenarios
//!   run on the kernel and on the engine in this process; every spec
//!   expectation the kernel fails and every trace line where it differs
//!   from the engine must be a known difference
//!   (`dlm_tests::scenarios::known`, docs/kernel-differences.md). When a
//!   dlmd binary is in the guest (`/vmtest/dlmd`), it runs there too and
//!   must give the engine's traces. The kernel's traces are printed
//!   between `@@TRACE` lines, so the console log records them.
//! - Without it (the host): the engine must meet every spec expectation,
//!   and a real dlmd (started on its own socket) must give the engine's
//!   traces.
//! - Both: the reference model (`dlm-model`) must give the engine's
//!   traces.
//!
//! A plain `main` (harness = false): exit 0 pass, 1 fail, 77 skip (a
//! guest with two nodes).

use dlm_core::transport::{Control, kernel};
use dlm_tests::scenarios::{self, EngineTarget, ModelTarget, Outcome, TransportTarget, known};
use std::process::ExitCode;

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Trace lines that only some targets can produce (raw device bytes).
fn comparable(t: &[String]) -> Vec<String> {
    t.iter()
        .filter(|l| !l.starts_with("[raw]"))
        .cloned()
        .collect()
}

/// Compares `other`'s outcomes with the engine's: every difference is a
/// failure line.
fn same_as_engine(
    label: &str,
    engine: &[Outcome],
    other: &[Outcome],
    raw_too: bool,
) -> Vec<String> {
    let mut fails = Vec::new();
    for (e, o) in engine.iter().zip(other) {
        if o.not_applicable.is_some() {
            continue;
        }
        if let Some((_, why)) = known::DLMD.iter().find(|(id, _)| *id == e.id) {
            let d = scenarios::diff(&comparable(&o.trace), &comparable(&e.trace));
            println!(
                "{}: {label} differs on purpose ({why}):\n  {}",
                e.id,
                d.join("\n  ")
            );
            continue;
        }
        let (a, b) = if raw_too {
            (o.trace.clone(), e.trace.clone())
        } else {
            (comparable(&o.trace), comparable(&e.trace))
        };
        let d = scenarios::diff(&a, &b);
        if !d.is_empty() {
            fails.push(format!(
                "{}: {label} (-) differs from the engine (+):\n  {}",
                e.id,
                d.join("\n  ")
            ));
        }
    }
    fails
}

/// The reference model on the same table: its traces must be the
/// engine's, raw bytes included (`tests/tests/scenarios.rs` checks the same
/// on the host; here it puts all four targets in one log).
fn model_as_engine(engine: &[Outcome], prefix: &str) -> Vec<String> {
    let model = scenarios::run_all(&mut ModelTarget::new(), prefix, None);
    let mut fails = Vec::new();
    for (e, m) in engine.iter().zip(&model) {
        let d = scenarios::diff(&m.trace, &e.trace);
        if !d.is_empty() {
            fails.push(format!(
                "{}: model (-) differs from the engine (+):\n  {}",
                e.id,
                d.join("\n  ")
            ));
        }
    }
    println!("model: {} scenarios compared with the engine", model.len());
    fails
}

fn engine_meets_spec(engine: &[Outcome]) -> Vec<String> {
    engine
        .iter()
        .filter(|o| !o.mismatches.is_empty() || o.not_applicable.is_some())
        .filter(|o| !known::ENGINE_DELIBERATE.iter().any(|(id, _)| *id == o.id))
        .map(|o| {
            format!(
                "{}: engine: {:?} {:?}",
                o.id, o.not_applicable, o.mismatches
            )
        })
        .collect()
}

fn kernel_run() -> Vec<String> {
    let release = release();
    let control = Control::connect().expect("open the kernel's dlm-control");
    assert!(
        matches!(control, Control::Kernel(_)),
        "DLM_BACKEND selects dlmd"
    );
    let mut kt = TransportTarget::new(control, format!("kernel {release}"));
    let kout = scenarios::run_all(&mut kt, "k", None);
    let mut et = EngineTarget::new();
    let eout = scenarios::run_all(&mut et, "k", None);
    println!("@@TRACE kernel {release}");
    print!("{}", scenarios::render(&kout));
    println!("@@TRACE end");

    let mut fails = engine_meets_spec(&eout);
    fails.extend(model_as_engine(&eout, "k"));
    let mut listed = 0;
    for (k, e) in kout.iter().zip(&eout) {
        let d = scenarios::diff(&k.trace, &e.trace);
        let kernel_lines: Vec<&str> = d.iter().filter_map(|l| l.strip_prefix('-')).collect();
        match known::lookup(&release, k.id) {
            None => {
                if !k.mismatches.is_empty() || k.not_applicable.is_some() {
                    fails.push(format!(
                        "{}: kernel fails the spec: {:?} {:?}",
                        k.id, k.not_applicable, k.mismatches
                    ));
                }
                if !d.is_empty() {
                    fails.push(format!(
                        "{}: kernel (-) differs from the engine (+):\n  {}",
                        k.id,
                        d.join("\n  ")
                    ));
                }
            }
            Some(kn) => {
                listed += 1;
                if kn.kernel_lines != kernel_lines.as_slice() {
                    fails.push(format!(
                        "{}: known difference changed; kernel (-) vs engine (+) now:\n  {}",
                        k.id,
                        d.join("\n  ")
                    ));
                }
                if kn.spec_mismatch == k.mismatches.is_empty() {
                    fails.push(format!("{}: spec mismatches now {:?}", k.id, k.mismatches));
                }
            }
        }
    }
    println!(
        "kernel {release}: {} scenarios, {listed} with a known difference",
        kout.len()
    );
    // dlmd in the same guest, when the harness put it there.
    let dlmd_bin = dlm_tests::dlmd_binary_path();
    if dlmd_bin.exists() {
        let dlmd = dlm_tests::Dlmd::start("scenarios");
        let control = Control::connect_dlmd(dlmd.socket().to_path_buf()).expect("dlmd");
        let mut dt = TransportTarget::new(control, "dlmd");
        let dout = scenarios::run_all(&mut dt, "d", None);
        let mut et = EngineTarget::new();
        let eout = scenarios::run_all(&mut et, "d", None);
        fails.extend(same_as_engine("dlmd", &eout, &dout, false));
        println!(
            "dlmd in the guest: {} scenarios compared with the engine",
            dout.len()
        );
    }
    fails
}

fn host_run() -> Vec<String> {
    let mut et = EngineTarget::new();
    let eout = scenarios::run_all(&mut et, "h", None);
    let mut fails = engine_meets_spec(&eout);
    fails.extend(model_as_engine(&eout, "h"));
    let dlmd = dlm_tests::Dlmd::start("scenarios");
    let control = Control::connect_dlmd(dlmd.socket().to_path_buf()).expect("dlmd");
    let mut dt = TransportTarget::new(control, "dlmd");
    let dout = scenarios::run_all(&mut dt, "h", None);
    fails.extend(same_as_engine("dlmd", &eout, &dout, false));
    println!("host: {} scenarios on the engine and on dlmd", eout.len());
    fails
}

fn main() -> ExitCode {
    let in_guest = std::env::var_os("DLM_VMTEST_NODE").is_some();
    if in_guest && std::env::var("DLM_VMTEST_NODES").as_deref() != Ok("1") {
        return ExitCode::from(77);
    }
    let fails = if kernel::is_present() {
        kernel_run()
    } else if in_guest {
        println!("no kernel DLM in this guest");
        return ExitCode::FAILURE;
    } else {
        host_run()
    };
    if fails.is_empty() {
        println!("kernel_scenarios: ok");
        ExitCode::SUCCESS
    } else {
        for f in &fails {
            println!("FAIL {f}");
        }
        println!("kernel_scenarios: {} failures", fails.len());
        ExitCode::FAILURE
    }
}
