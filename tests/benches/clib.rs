//! The C library against the Rust API on one dlmd: a
//! `dlm_ls_lock_wait` + `dlm_ls_unlock_wait` pair (EX, no contention)
//! through our release `libdlm_lt.so` (loaded with `dlopen` from
//! `target/release`, and checked to be that file), against
//! `Lockspace::lock` + `Lock::unlock` through dlm-core, in interleaved
//! rounds in one process. Prints each side's time per pair and the median
//! ratio (Rust / C; the target is within 5%).
//!
//! Run with `cargo xtask bench --only clib` (it builds the release
//! libraries and dlmd first), or `cargo bench -p dlm-tests --bench clib`
//! after `cargo build --release -p dlm-lt -p dlmd`. `CLIB_BENCH_PAIRS`
//! and `CLIB_BENCH_ROUNDS` change the size (default 2000 pairs, 15
//! rounds). With `DLM_BENCH_JSON` set (`cargo xtask bench --json`) the
//! figure also goes to stdout as a machine line (`report/mod.rs` of the
//! engine benchmark).

#![allow(unsafe_code)]

#[path = "../../dlm-engine/benches/report/mod.rs"]
mod report;

use dlm_core::{LockOptions, Lockspace, Mode};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[repr(C)]
struct Lksb {
    sb_status: c_int,
    sb_lkid: u32,
    sb_flags: c_char,
    sb_lvbptr: *mut c_char,
}

type CreateFn = unsafe extern "C" fn(*const c_char, u32) -> *mut c_void;
type ReleaseFn = unsafe extern "C" fn(*const c_char, *mut c_void, c_int) -> c_int;
type LockWaitFn = unsafe extern "C" fn(
    *mut c_void,
    u32,
    *mut Lksb,
    u32,
    *const c_void,
    u32,
    u32,
    *mut c_void,
    Option<unsafe extern "C" fn(*mut c_void)>,
    *mut c_void,
) -> c_int;
type UnlockWaitFn = unsafe extern "C" fn(*mut c_void, u32, u32, *mut Lksb) -> c_int;

/// Our libdlm_lt.so, opened and its functions looked up.
struct CLib {
    create: CreateFn,
    release: ReleaseFn,
    lock_wait: LockWaitFn,
    unlock_wait: UnlockWaitFn,
}

fn sym(lib: *mut c_void, name: &CStr) -> *mut c_void {
    // SAFETY: `lib` is a live dlopen handle and `name` a C string.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    assert!(!p.is_null(), "{name:?} missing");
    p
}

impl CLib {
    fn open(path: &std::path::Path) -> CLib {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a plain dlopen of a library path.
        let lib = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!lib.is_null(), "dlopen {} failed", path.display());
        let lock = sym(lib, c"dlm_ls_lock_wait");
        // It must be ours: the symbol comes from the file we named.
        // SAFETY: Dl_info is plain data; all-zero is a valid value.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr fills `info` for an address inside a loaded object.
        let found = unsafe { libc::dladdr(lock, &mut info) };
        assert_ne!(found, 0);
        // SAFETY: dli_fname is a C string owned by the loader.
        let from = unsafe { CStr::from_ptr(info.dli_fname) };
        assert_eq!(
            std::fs::canonicalize(from.to_str().unwrap()).unwrap(),
            std::fs::canonicalize(path).unwrap(),
            "dlm_ls_lock_wait does not come from our library"
        );
        // SAFETY: the symbols have these C signatures (include/libdlm.h).
        unsafe {
            CLib {
                create: std::mem::transmute::<*mut c_void, CreateFn>(sym(
                    lib,
                    c"dlm_create_lockspace",
                )),
                release: std::mem::transmute::<*mut c_void, ReleaseFn>(sym(
                    lib,
                    c"dlm_release_lockspace",
                )),
                lock_wait: std::mem::transmute::<*mut c_void, LockWaitFn>(lock),
                unlock_wait: std::mem::transmute::<*mut c_void, UnlockWaitFn>(sym(
                    lib,
                    c"dlm_ls_unlock_wait",
                )),
            }
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let exe = std::env::current_exe().unwrap();
    let release: PathBuf = exe.parent().and_then(|d| d.parent()).unwrap().into();
    let lib_path = release.join("libdlm_lt.so");
    if !lib_path.exists() {
        eprintln!(
            "clib bench: {} is missing (cargo build --release -p dlm-lt)",
            lib_path.display()
        );
        std::process::exit(1);
    }
    let pairs = env_usize("CLIB_BENCH_PAIRS", 2000);
    let rounds = env_usize("CLIB_BENCH_ROUNDS", 15);
    let _dlmd = dlm_tests::Dlmd::start_in_this_process("bench-clib");

    let c = CLib::open(&lib_path);
    let ls_name = c"bench";
    // SAFETY: a valid name; the handle is used by this thread only.
    let cls = unsafe { (c.create)(ls_name.as_ptr(), 0o600) };
    assert!(!cls.is_null(), "dlm_create_lockspace failed");
    let rls = Lockspace::open("bench").unwrap();

    let c_pairs = |n: usize| -> Duration {
        let mut lksb = Lksb {
            sb_status: 0,
            sb_lkid: 0,
            sb_flags: 0,
            sb_lvbptr: std::ptr::null_mut(),
        };
        let name = b"c-resource";
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: live handle, valid lksb and name for the call.
            let rc = unsafe {
                (c.lock_wait)(
                    cls,
                    5, // LKM_EXMODE
                    &mut lksb,
                    0,
                    name.as_ptr().cast(),
                    name.len() as u32,
                    0,
                    std::ptr::null_mut(),
                    None,
                    std::ptr::null_mut(),
                )
            };
            assert!(
                rc == 0 && lksb.sb_status == 0,
                "lock: {rc} {}",
                lksb.sb_status
            );
            // SAFETY: as above.
            let rc = unsafe { (c.unlock_wait)(cls, lksb.sb_lkid, 0, &mut lksb) };
            assert_eq!(rc, 0, "unlock");
        }
        start.elapsed()
    };
    let rust_pairs = |n: usize| -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            let lock = rls
                .lock(b"rust-resource", Mode::Ex, LockOptions::new())
                .unwrap();
            lock.unlock().unwrap();
        }
        start.elapsed()
    };

    // Warm up both paths.
    c_pairs(pairs / 10 + 1);
    rust_pairs(pairs / 10 + 1);
    let mut ratios = Vec::new();
    let (mut c_total, mut r_total) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        // Alternate which goes first, so drift hits both alike.
        let (tc, tr) = if round % 2 == 0 {
            let tc = c_pairs(pairs);
            (tc, rust_pairs(pairs))
        } else {
            let tr = rust_pairs(pairs);
            (c_pairs(pairs), tr)
        };
        c_total += tc;
        r_total += tr;
        ratios.push(tr.as_secs_f64() / tc.as_secs_f64());
    }
    let out = report::Report::from_env();
    let stats = report::Stats::of(&ratios);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (pairs * rounds) as f64;
    out.line("clib: lock_wait+unlock_wait pair through libdlm_lt.so (dlmd)");
    out.line(format!("  C (libdlm_lt.so): {:.2} us/pair", per(c_total)));
    out.line(format!("  Rust (dlm-core):  {:.2} us/pair", per(r_total)));
    out.ratio(
        "rust_over_c",
        stats,
        format!("  median ratio Rust/C over {rounds} rounds of {pairs}: {stats} (target <= 1.05)"),
    );
    out.finish();

    drop(rls);
    // SAFETY: the handle is live and released once.
    unsafe { (c.release)(ls_name.as_ptr(), cls, 1) };
}
