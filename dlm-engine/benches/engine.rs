//! Engine benchmarks, as ratios against baselines measured in the same
//! run (no timed assertions anywhere; this prints numbers):
//!
//! - an uncontended lock+unlock pair (new EX lock, pop its cast, unlock,
//!   pop its cast) against one `flock(LOCK_EX)` + `flock(LOCK_UN)` pair on
//!   a temporary file (target: at most 0.5);
//! - the same pair with 1,000,000 other granted locks against 10,000
//!   (target: at most 1.5);
//! - draining a queue of 10,000 EX waiters against draining 100, per grant
//!   (target: at most 2: linear in total);
//! - memory per lock at 1,000,000 granted locks on 1,000,000 resources
//!   with 16-byte names, all callbacks drained, from a counting global
//!   allocator (target: at most 256 bytes), with the RSS delta;
//! - conversions: 10,000 locks granted NL on one resource each convert
//!   NL→EX (queued behind each other) and, once granted, back EX→NL, so
//!   each gets EX once, against the same with 100 locks, per grant
//!   (target: at most 2);
//! - adopting one orphan among 100,000 orphans (each on its own
//!   resource) against among 100, per adoption (target: at most 2).
//!
//! Each ratio is the median of rounds that measure both sides one after
//! the other (min and max are printed too). Run with
//! `cargo bench -p dlm-engine --bench engine`, or through
//! `cargo xtask bench [--json]`, which sets `DLM_BENCH_JSON`: then the
//! figures go to stdout as `@ratio KEY MEDIAN MIN MAX` / `@size KEY
//! VALUE` lines and the readable lines to stderr.

use dlm_core::{LockFlags as F, LockParams, LsFlags, Mode, Name, Request, Status};
use dlm_engine::{Engine, OwnerId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Instant;

mod report;
use report::Report;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every method forwards to the system allocator with the same
// arguments; the counter has no effect on allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> isize {
    ALLOCATED.load(Relaxed)
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn params(name: &[u8], mode: Mode, flags: F) -> LockParams {
    LockParams {
        mode: mode.raw(),
        flags,
        castaddr: 1,
        castparam: 2,
        bastaddr: 3,
        bastparam: 4,
        lksb: 5,
        name: Name::new(name).unwrap(),
        ..LockParams::default()
    }
}

fn unlock(id: u32) -> Request {
    Request::Unlock(LockParams {
        lkid: id,
        lksb: 5,
        ..LockParams::default()
    })
}

/// An engine with one lockspace and one owner.
fn engine() -> (Engine, OwnerId) {
    let mut e = Engine::new();
    let m = e
        .create_lockspace(Name::lockspace(b"bench").unwrap(), LsFlags::empty())
        .unwrap();
    let o = e.open(m).unwrap();
    (e, o)
}

/// A 16-byte resource name.
fn name16(i: usize) -> [u8; 16] {
    let mut n = *b"res-000000000000";
    let digits = format!("{i:012}");
    n[4..].copy_from_slice(digits.as_bytes());
    n
}

/// Adds `n` granted EX locks on `n` resources with 16-byte names,
/// draining each cast.
fn populate(e: &mut Engine, o: OwnerId, n: usize) {
    for i in 0..n {
        let req = Request::Lock(params(&name16(i), Mode::Ex, F::empty()));
        e.write(o, &req, 1).unwrap();
        e.pop_callback(o).unwrap();
    }
}

/// Nanoseconds per engine lock+unlock pair.
fn engine_pair(e: &mut Engine, o: OwnerId, iters: u32) -> f64 {
    let req = Request::Lock(params(b"the-bench-lock!!", Mode::Ex, F::empty()));
    let start = Instant::now();
    for _ in 0..iters {
        let id = e.write(o, black_box(&req), 1).unwrap();
        let c = e.pop_callback(o).unwrap();
        debug_assert_eq!(c.status, Status::GRANTED);
        e.write(o, &unlock(id), 1).unwrap();
        black_box(e.pop_callback(o).unwrap());
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

/// Nanoseconds per flock(LOCK_EX) + flock(LOCK_UN) pair.
fn flock_pair(iters: u32) -> f64 {
    let path = std::env::temp_dir().join(format!("dlm-engine-bench-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let fd = file.as_raw_fd();
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: flock on a file descriptor this function owns.
        #[allow(unsafe_code)]
        unsafe {
            assert_eq!(libc::flock(black_box(fd), libc::LOCK_EX), 0);
            assert_eq!(libc::flock(fd, libc::LOCK_UN), 0);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
    drop(file);
    let _ = std::fs::remove_file(path);
    ns
}

/// Nanoseconds per grant while draining `waiters` EX waiters on one
/// resource: unlock the holder, then unlock each lock as its grant
/// arrives. With `owners > 1` the waiters are spread over that many
/// owners.
fn drain(waiters: usize, owners: usize) -> f64 {
    let mut e = Engine::new();
    let m = e
        .create_lockspace(Name::lockspace(b"drain").unwrap(), LsFlags::empty())
        .unwrap();
    let os: Vec<OwnerId> = (0..owners).map(|_| e.open(m).unwrap()).collect();
    let req = Request::Lock(params(b"queue", Mode::Ex, F::empty()));
    let holder = e.write(os[0], &req, 1).unwrap();
    for i in 0..waiters {
        e.write(os[i % owners], &req, 1).unwrap();
    }
    for &o in &os {
        while e.pop_callback(o).is_some() {}
    }
    let start = Instant::now();
    e.write(os[0], &unlock(holder), 1).unwrap();
    let mut granted = 0;
    let mut k = 0;
    while granted < waiters {
        let o = os[k % owners];
        k += 1;
        while let Some(cb) = e.pop_callback(o) {
            if cb.bast_mode.is_none() && cb.status == Status::GRANTED {
                granted += 1;
                e.write(o, &unlock(cb.lkid), 1).unwrap();
            }
        }
    }
    start.elapsed().as_nanos() as f64 / waiters as f64
}

/// Nanoseconds per EX grant: `n` locks granted NL on one resource each
/// convert NL→EX, queued behind each other; each converts back EX→NL as
/// soon as its grant arrives. Timed from the first conversion request.
fn convert_drain(n: usize) -> f64 {
    let (mut e, o) = engine();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(
            e.write(o, &Request::Lock(params(b"convq", Mode::Nl, F::empty())), 1)
                .unwrap(),
        );
        e.pop_callback(o).unwrap();
    }
    // 0: NL, 1: asked for EX, 2: granted EX and asked for NL again, 3: done.
    let mut state = vec![0u8; ids.iter().max().map_or(0, |&m| m as usize + 1)];
    let convert = |id: u32, mode: Mode| {
        let mut p = params(b"convq", mode, F::CONVERT);
        p.lkid = id;
        Request::Lock(p)
    };
    let start = Instant::now();
    for &id in &ids {
        e.write(o, &convert(id, Mode::Ex), 1).unwrap();
        state[id as usize] = 1;
    }
    let mut granted = 0;
    while granted < n {
        let cb = e
            .pop_callback(o)
            .expect("a callback while conversions are pending");
        if cb.bast_mode.is_some() || cb.status != Status::GRANTED {
            continue;
        }
        let s = &mut state[cb.lkid as usize];
        if *s == 1 {
            *s = 2;
            granted += 1;
            e.write(o, &convert(cb.lkid, Mode::Nl), 1).unwrap();
        } else {
            *s = 3;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    black_box(&e);
    ns
}

/// Nanoseconds per cycle of: open, adopt one orphan among `n` orphans
/// (PR locks, each on its own resource), close (which orphans it again).
fn orphan_adopt(n: usize, cycles: u32) -> f64 {
    let mut e = Engine::new();
    let m = e
        .create_lockspace(Name::lockspace(b"orphans").unwrap(), LsFlags::empty())
        .unwrap();
    let o = e.open(m).unwrap();
    for i in 0..n {
        e.write(
            o,
            &Request::Lock(params(&name16(i), Mode::Pr, F::PERSISTENT)),
            1,
        )
        .unwrap();
        e.pop_callback(o).unwrap();
    }
    e.close(o);
    let adopt = Request::Lock(params(&name16(n / 2), Mode::Pr, F::PERSISTENT | F::ORPHAN));
    let start = Instant::now();
    for _ in 0..cycles {
        let o = e.open(m).unwrap();
        black_box(e.write(o, black_box(&adopt), 1).unwrap());
        e.close(o);
    }
    start.elapsed().as_nanos() as f64 / f64::from(cycles)
}

/// Mean of `reps` runs of `f` (to lift small runs above timer noise).
fn mean(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..reps).map(|_| f()).sum::<f64>() / reps as f64
}

fn main() {
    // `cargo test --benches` runs this with --test; keep it quick.
    let quick = std::env::args().any(|a| a == "--test");
    let scale = if quick { 100 } else { 1 };
    let rounds = if quick { 1 } else { 7 };
    let out = Report::from_env();

    let iters = (1_000_000 / scale) as u32;
    let (mut e0, o0) = engine();
    let (mut eng, mut fl) = (Vec::new(), Vec::new());
    let r = out.rounds(rounds, || {
        let f = flock_pair(iters);
        let p = engine_pair(&mut e0, o0, iters);
        fl.push(f);
        eng.push(p);
        p / f
    });
    out.ratio(
        "pair_over_flock",
        r,
        format!(
            "engine pair / flock pair = {r} (engine {:.0} ns, flock {:.0} ns)",
            report::median(&eng),
            report::median(&fl)
        ),
    );
    drop(e0);

    let n = 1_000_000 / scale;
    let (a0, r0) = (allocated(), rss());
    let (mut e1m, o1m) = engine();
    populate(&mut e1m, o1m, n);
    let (a1, r1) = (allocated(), rss());
    let per_lock = (a1 - a0) as f64 / n as f64;
    let footprint = e1m.footprint() as f64 / n as f64;
    let (mut e10k, o10k) = engine();
    populate(&mut e10k, o10k, 10_000 / scale);
    let (mut big, mut small) = (Vec::new(), Vec::new());
    let r = out.rounds(rounds, || {
        let s = engine_pair(&mut e10k, o10k, iters);
        let b = engine_pair(&mut e1m, o1m, iters);
        small.push(s);
        big.push(b);
        b / s
    });
    out.ratio(
        "pair_1m_over_10k",
        r,
        format!(
            "pair with 1M other locks / pair with 10k = {r} ({:.0} ns vs {:.0} ns)",
            report::median(&big),
            report::median(&small)
        ),
    );
    out.size(
        "bytes_per_lock",
        (per_lock * 10.0).round() / 10.0,
        format!(
            "memory per lock at {n} granted locks on {n} resources (16-byte names) = \
             {per_lock:.1} bytes (allocator; RSS delta {:.1} bytes/lock; slabs and tables \
             {footprint:.1} bytes/lock)",
            (r1 - r0) as f64 / n as f64,
        ),
    );
    drop(e1m);
    drop(e10k);

    let (mut big, mut small) = (Vec::new(), Vec::new());
    let r = out.rounds(rounds, || {
        let s = mean(20, || drain(100, 1));
        let b = drain(10_000 / scale, 1);
        small.push(s);
        big.push(b);
        b / s
    });
    out.ratio(
        "drain_10k_over_100",
        r,
        format!(
            "drain 10,000 EX waiters / drain 100, per grant = {r} ({:.0} ns vs {:.0} ns per grant)",
            report::median(&big),
            report::median(&small)
        ),
    );
    let r = out.rounds(rounds, || {
        mean(3, || drain(10_000 / scale, 100)) / mean(20, || drain(100, 100))
    });
    out.line(format!(
        "drain 10,000 EX waiters of 100 owners / drain 100, per grant = {r}"
    ));

    let (mut big, mut small) = (Vec::new(), Vec::new());
    let r = out.rounds(rounds, || {
        let s = mean(20, || convert_drain(100));
        let b = convert_drain(10_000 / scale);
        small.push(s);
        big.push(b);
        b / s
    });
    out.ratio(
        "convert_drain_10k_over_100",
        r,
        format!(
            "convert NL->EX->NL, 10,000 locks on one resource / 100, per grant = {r} \
             ({:.0} ns vs {:.0} ns per grant)",
            report::median(&big),
            report::median(&small)
        ),
    );

    let cycles = (100_000 / scale) as u32;
    let (mut big, mut small) = (Vec::new(), Vec::new());
    let r = out.rounds(rounds, || {
        let s = orphan_adopt(100, cycles);
        let b = orphan_adopt(100_000 / scale, cycles);
        small.push(s);
        big.push(b);
        b / s
    });
    out.ratio(
        "orphan_adopt_100k_over_100",
        r,
        format!(
            "open + adopt one orphan among 100,000 + close / among 100 = {r} \
             ({:.0} ns vs {:.0} ns per cycle)",
            report::median(&big),
            report::median(&small)
        ),
    );
    out.finish();
}
