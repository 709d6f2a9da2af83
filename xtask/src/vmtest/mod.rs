//! `cargo xtask vmtest`: runs programs against the real kernel DLM inside
//! qemu guests that boot Debian's own kernels.
//!
//! This module is the host side of the VM harness; `run` goes through it
//! in order: host tools, packages, kernels and payload, jobs, summary. The
//! guest side lives in `xtask/vm/`: `init` (PID 1, busybox sh),
//! `vmtest-barrier`, `nocmd.c`, and the built-in smoke test (`dlmtest.c`,
//! `smoke/*.sh`). What each module owns:
//!
//! - [`args`]: the command line (`USAGE`, `Opts`), and the kernels (6.1,
//!   6.12) and cluster managers (none, corosync) a run can ask for.
//! - [`host_tools`]: qemu, xz, zstd, gcc and ldd on the host, installed
//!   with apt-get when missing (never removing anything).
//! - [`apt_sources`]: the Debian mirror, read from the host's apt
//!   configuration (`/etc/apt/sources.list*`); no mirror is in the code.
//! - [`apt`]: the private apt configuration per suite set (bookworm,
//!   bookworm-backports) and resolving what to download.
//! - [`cache`]: the package cache under `<workspace>/.cache/vm/`:
//!   resolved versions, `.deb` files fetched with `apt-get download`
//!   (never installed on the host), their unpacked trees.
//! - [`kernel`]: the uncompressed `vmlinux` extracted from a kernel
//!   package, and its modules in dependency order.
//! - [`payload`]: what the tests put in the guest (programs, scripts,
//!   `--file`s) and the programs built on the host for it (gcc, `cargo
//!   test --no-run`).
//! - [`initramfs`]: the guest's file tree with the shared libraries of its
//!   programs, written as a newc cpio archive.
//! - [`cluster`]: busybox, corosync and dlm_controld from their packages,
//!   the cluster configuration, and the link between two nodes (qemu
//!   `-netdev dgram` over UNIX sockets).
//! - [`runner`]: the jobs (a kernel with one or two nodes), run in
//!   parallel, each with its own initramfs.
//! - [`qemu`]: one guest's qemu command line, its console readers, waiting
//!   for and stopping the guests of a job.
//! - [`report`]: the `@@VMTEST` console protocol, each job's report and
//!   the totals.
//!
//! Guest/host protocol: the guest prints `@@VMTEST <EVENT> ...` lines on the
//! serial console; everything else is test output or kernel messages.

mod apt;
mod apt_sources;
mod args;
mod cache;
mod cluster;
mod host_tools;
mod initramfs;
mod kernel;
mod payload;
mod qemu;
mod report;
mod runner;

use apt::{Suites, Want};
use args::{Cm, Kernel};
use cache::Cache;
use cluster::Userland;
use host_tools::{Tool, ensure_host_tools};
use kernel::KernelImage;
use payload::{Payload, build_c};
use runner::{JobSpec, RunCtx, run_jobs};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

/// Debian's architecture and multiarch triplet of every guest.
const MULTIARCH: &str = "x86_64-linux-gnu";

/// Runs `cargo xtask vmtest ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    let t0 = Instant::now();
    let opts = args::parse_args(args)?;
    let root = crate::workspace_root();
    let vmdir = root.join("xtask/vm");
    let cache = Cache::new(match std::env::var_os("DLM_VMTEST_CACHE") {
        Some(p) => PathBuf::from(p),
        None => root.join(".cache/vm"),
    })?;
    let node_counts = opts.nodes.clone();
    let want_corosync = node_counts.iter().any(|&n| n > 1) || opts.cm_single == Cm::Corosync;

    // 1. host tools
    let mut tools = vec![
        Tool::bin("qemu-system-x86_64", "qemu-system-x86"),
        Tool::bin("xz", "xz-utils"),
        Tool::bin("gcc", "gcc"),
        Tool::bin("ldd", "libc-bin"),
    ];
    if opts.kernels.contains(&Kernel::V612) {
        tools.push(Tool::bin("zstd", "zstd"));
    }
    if opts.smoke {
        tools.push(Tool::file("/usr/include/libdlm.h", "libdlm-dev"));
    }
    ensure_host_tools(&cache, &tools)?;

    // 2. packages
    let t_fetch = Instant::now();
    let mut userland_roots = vec!["busybox-static".to_string()];
    if want_corosync {
        userland_roots.extend(["corosync".to_string(), "dlm-controld".to_string()]);
    }
    let userland_debs = cache.fetch(
        Suites::Bookworm,
        &Want::Closure(userland_roots),
        opts.refresh,
    )?;
    let mut kernel_debs = Vec::new();
    for &k in &opts.kernels {
        let debs = cache.fetch(
            k.suites(),
            &Want::KernelOf("linux-image-amd64"),
            opts.refresh,
        )?;
        kernel_debs.push((k, debs));
    }
    let fetch_secs = t_fetch.elapsed().as_secs_f64();

    // 3. unpack, extract, build
    let t_prep = Instant::now();
    let userland = Userland {
        roots: userland_debs
            .iter()
            .map(|d| cache.unpack(d))
            .collect::<Result<_>>()?,
    };
    let mut kernels = Vec::new();
    for (k, debs) in &kernel_debs {
        let deb = debs.first().ok_or("vmtest: no kernel package resolved")?;
        kernels.push(KernelImage::prepare(&cache, *k, deb)?);
    }
    let nocmd = build_c(&cache, &vmdir.join("nocmd.c"), "nocmd", &[])?;
    let payload = Payload::assemble(&opts, &root, &vmdir, &cache)?;
    let prep_secs = t_prep.elapsed().as_secs_f64();
    println!(
        "vmtest: packages ready in {fetch_secs:.1} s, kernels and host programs in {prep_secs:.1} s"
    );

    // 4. jobs
    let mut jobs = Vec::new();
    for &nodes in &node_counts {
        for kern in &kernels {
            let cm = if nodes > 1 {
                Cm::Corosync
            } else {
                opts.cm_single
            };
            jobs.push(JobSpec {
                kernel: kern.clone(),
                nodes,
                cm,
            });
        }
    }
    let ctx = Arc::new(RunCtx {
        cache,
        vmdir,
        userland,
        nocmd,
        payload,
        env: opts.env.clone(),
        test_timeout: opts.test_timeout,
        dev_misc: opts.dev_misc,
        mem: opts.mem,
        verbose: opts.verbose,
    });
    let reports = run_jobs(&ctx, jobs, opts.jobs);

    // 5. summary
    let n = report::totals(&reports);
    println!(
        "vmtest: {} passed, {} failed, {} skipped, {} runs broken; \
         {:.1} s in all (fetch {fetch_secs:.1} s, prepare {prep_secs:.1} s)",
        n.pass,
        n.fail,
        n.skip,
        n.broken,
        t0.elapsed().as_secs_f64()
    );
    if n.fail > 0 || n.broken > 0 {
        Err(format!(
            "vmtest failed (guest logs in {})",
            ctx.cache.dir("logs").display()
        ))
    } else {
        Ok(())
    }
}

/// Runs `cmd`; its stdout, or an error with its stderr.
fn run_out(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("vmtest: {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "vmtest: {cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    run_out(cmd).map(drop)
}

/// Calls `f` on every file below `dir`.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| format!("vmtest: {}: {e}", dir.display()))?;
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type().map_err(|e| e.to_string())?;
        if ft.is_dir() {
            walk(&p, f)?;
        } else {
            f(&p);
        }
    }
    Ok(())
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
