//! Who may act on a lock (issue 12, item 6): within a lockspace, may an
//! opener convert, unlock or cancel another opener's lock by its id? The
//! kernel has no owner check (`dlm_user_convert`, `dlm_user_unlock` and
//! `dlm_user_cancel` find the lock by id alone); scenarios C10 (UNLOCK),
//! X5 (CONVERT) and X6 (CANCEL) record what it does, and the engine and
//! dlmd must do the same: the write succeeds, the lock stays its owner's,
//! and the owner receives the callbacks with the caller's pointers.
//!
//! In a `cargo xtask vmtest` guest (one node) the scenarios run on the
//! kernel (their traces are printed between `@@TRACE` lines), on the
//! engine and, when the harness put it there, on dlmd; elsewhere on the
//! engine and a real dlmd. A plain `main`: exit 0 pass, 1 fail, 77 skip.

use dlm_core::transport::{Control, kernel};
use dlm_tests::scenarios::{self, EngineTarget, Outcome, TransportTarget};
use std::process::ExitCode;

const IDS: &[&str] = &["C10", "X5", "X6"];

/// Failure lines: a spec expectation `out` misses, or a trace line where
/// it differs from the engine's `eng`.
fn compare(label: &str, out: &[Outcome], eng: &[Outcome]) -> Vec<String> {
    let mut fails = Vec::new();
    for (o, e) in out.iter().zip(eng) {
        if !o.mismatches.is_empty() || o.not_applicable.is_some() {
            fails.push(format!(
                "{}: {label} fails the expectation: {:?} {:?}",
                o.id, o.not_applicable, o.mismatches
            ));
        }
        let d = scenarios::diff(&o.trace, &e.trace);
        if !d.is_empty() {
            fails.push(format!(
                "{}: {label} (-) differs from the engine (+):\n  {}",
                o.id,
                d.join("\n  ")
            ));
        }
    }
    fails
}

fn main() -> ExitCode {
    let in_guest = std::env::var_os("DLM_VMTEST_NODE").is_some();
    if in_guest && std::env::var("DLM_VMTEST_NODES").as_deref() != Ok("1") {
        return ExitCode::from(77);
    }
    let mut et = EngineTarget::new();
    let eout = scenarios::run_all(&mut et, "o", Some(IDS));
    let mut fails = compare("engine", &eout, &eout);
    if kernel::is_present() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let control = Control::connect().expect("open the kernel's dlm-control");
        let mut kt = TransportTarget::new(control, format!("kernel {release}"));
        let kout = scenarios::run_all(&mut kt, "o", Some(IDS));
        println!("@@TRACE kernel {release}");
        print!("{}", scenarios::render(&kout));
        println!("@@TRACE end");
        fails.extend(compare(&format!("kernel {release}"), &kout, &eout));
    } else if in_guest {
        println!("no kernel DLM in this guest");
        return ExitCode::FAILURE;
    }
    if !in_guest || dlm_tests::dlmd_binary_path().exists() {
        let dlmd = dlm_tests::Dlmd::start("owners");
        let control = Control::connect_dlmd(dlmd.socket().to_path_buf()).expect("dlmd");
        let mut dt = TransportTarget::new(control, "dlmd");
        let dout = scenarios::run_all(&mut dt, "o", Some(IDS));
        print!("dlmd:\n{}", scenarios::render(&dout));
        fails.extend(compare("dlmd", &dout, &eout));
    }
    if fails.is_empty() {
        println!("kernel_owners: ok ({} scenarios)", IDS.len());
        ExitCode::SUCCESS
    } else {
        for f in &fails {
            println!("FAIL {f}");
        }
        ExitCode::FAILURE
    }
}
