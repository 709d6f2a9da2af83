//! `cargo xtask vmtest`: runs programs against the real kernel DLM inside
//! qemu guests that boot Debian's own kernels.
//!
//! This module owns the whole host side of the VM harness: the private apt
//! configuration and the package cache under `<workspace>/.cache/vm/`
//! (kernels, busybox, corosync and dlm_controld fetched with `apt-get
//! download`, never installed on the host), the uncompressed `vmlinux` and
//! module extraction, the initramfs (written as a newc cpio archive by this
//! file), the qemu invocations (single node without a cluster manager, or
//! two nodes with corosync + dlm_controld over a `-netdev dgram` link on
//! UNIX sockets) and the per-test report. The guest side lives in
//! `xtask/vm/`: `init` (PID 1, busybox sh), `vmtest-barrier`, `nocmd.c`,
//! and the built-in smoke test (`dlmtest.c`, `smoke/*.sh`).
//!
//! Guest/host protocol: the guest prints `@@VMTEST <EVENT> ...` lines on the
//! serial console; everything else is test output or kernel messages.

use crate::host::{in_path, is_root};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

type Result<T> = std::result::Result<T, String>;

pub const USAGE: &str = "\
usage: cargo xtask vmtest [OPTIONS] [--] [TEST_BINARY...]

Boots Debian's kernels in qemu (TCG) and runs tests against the kernel DLM.
With no TEST_BINARY and no --scripts, runs the built-in smoke test (Debian's
libdlm via xtask/vm/dlmtest.c, one node and two nodes, both kernels).

options:
  --kernel 6.1|6.12|all   kernels to test (repeatable; default all)
  --nodes 1|2|all         guests per run (default: all for the smoke test, else 1)
  --cm none|corosync      cluster manager for one node (default none: configfs
                          by hand + nocmd); two nodes always use corosync
  --scripts DIR           run every DIR/*.sh in the guest (DIR is copied whole)
  --file HOST[:GUEST]     also put HOST (plus its shared libraries) in the guest
  --cargo-test 'ARGS'     build with `cargo test --no-run ARGS` and run each test
                          executable it reports (e.g. '-p tests --test kernel')
  --args 'ARGS'           arguments for every TEST_BINARY (split on whitespace)
  --env NAME=VALUE        environment for the tests (repeatable)
  --smoke                 run the smoke test as well as the given tests
  --no-dev-misc           no /dev/misc -> /dev symlink (only the devtmpfs names
                          /dev/dlm-control, /dev/dlm_<ls>); one node, cm none
  --test-timeout SECS     per test (default 300)
  --mem MB                guest memory (default 1024, more for big initramfs)
  --jobs N                guests run at the same time (default: CPU count)
  --refresh               re-run apt-get update and re-resolve package versions
  -v, --verbose           stream the guest consoles

Each test runs on every node with DLM_VMTEST_NODE, DLM_VMTEST_NODES,
DLM_VMTEST_KERNEL and DLM_VMTEST_CM set; /vmtest/bin is on PATH; exit 0 is
PASS, 77 is SKIP; `vmtest-barrier NAME` syncs the nodes. Cache: .cache/vm/
(DLM_VMTEST_CACHE overrides). Packages come from the Debian mirror of the
host's apt configuration (/etc/apt/sources.list, sources.list.d/*.list and
*.sources); DLM_VMTEST_MIRROR and DLM_VMTEST_SECURITY_MIRROR override it.
";

/// Debian's architecture and multiarch triplet of every guest.
const MULTIARCH: &str = "x86_64-linux-gnu";
/// The per-suite apt lists are refreshed after this long.
const RESOLVE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------
// command line

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    /// Debian 12's own kernel (bookworm, bookworm-updates, bookworm-security).
    V61,
    /// Debian's 6.12 kernel from bookworm-backports.
    V612,
}

impl Kernel {
    fn label(self) -> &'static str {
        match self {
            Kernel::V61 => "6.1",
            Kernel::V612 => "6.12",
        }
    }
    fn suites(self) -> Suites {
        match self {
            Kernel::V61 => Suites::Bookworm,
            Kernel::V612 => Suites::Backports,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cm {
    None,
    Corosync,
}

impl Cm {
    fn name(self) -> &'static str {
        match self {
            Cm::None => "none",
            Cm::Corosync => "corosync",
        }
    }
}

struct Opts {
    kernels: Vec<Kernel>,
    nodes: Vec<u32>,
    cm_single: Cm,
    binaries: Vec<PathBuf>,
    bin_args: Vec<String>,
    cargo_test: Vec<String>,
    scripts: Vec<PathBuf>,
    files: Vec<(PathBuf, Option<String>)>,
    env: Vec<(String, String)>,
    smoke: bool,
    dev_misc: bool,
    test_timeout: u64,
    mem: Option<u32>,
    jobs: usize,
    refresh: bool,
    verbose: bool,
}

fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        kernels: Vec::new(),
        nodes: Vec::new(),
        cm_single: Cm::None,
        binaries: Vec::new(),
        bin_args: Vec::new(),
        cargo_test: Vec::new(),
        scripts: Vec::new(),
        files: Vec::new(),
        env: Vec::new(),
        smoke: false,
        dev_misc: true,
        test_timeout: 300,
        mem: None,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        refresh: false,
        verbose: false,
    };
    let mut it = args.iter();
    let mut rest = false;
    while let Some(a) = it.next() {
        if rest || !a.starts_with('-') {
            o.binaries.push(PathBuf::from(a));
            continue;
        }
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("vmtest: {name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--" => rest = true,
            "--kernel" => {
                for k in val("--kernel")?.split(',') {
                    match k {
                        "6.1" => o.kernels.push(Kernel::V61),
                        "6.12" => o.kernels.push(Kernel::V612),
                        "all" => o.kernels.extend([Kernel::V61, Kernel::V612]),
                        other => {
                            return Err(format!(
                                "vmtest: unknown kernel {other:?} (6.1, 6.12, all)"
                            ));
                        }
                    }
                }
            }
            "--nodes" => {
                let v = val("--nodes")?;
                o.nodes = match v.as_str() {
                    "1" => vec![1],
                    "2" => vec![2],
                    "all" => vec![1, 2],
                    other => return Err(format!("vmtest: --nodes {other:?}: 1, 2 or all")),
                };
            }
            "--cm" => {
                o.cm_single = match val("--cm")?.as_str() {
                    "none" => Cm::None,
                    "corosync" => Cm::Corosync,
                    other => return Err(format!("vmtest: --cm {other:?}: none or corosync")),
                }
            }
            "--scripts" => o.scripts.push(PathBuf::from(val("--scripts")?)),
            "--file" => {
                let v = val("--file")?;
                match v.split_once(':') {
                    Some((h, g)) if g.starts_with('/') => {
                        o.files.push((PathBuf::from(h), Some(g.to_string())))
                    }
                    Some(_) => return Err(format!("vmtest: --file {v}: GUEST must be absolute")),
                    None => o.files.push((PathBuf::from(v), None)),
                }
            }
            "--cargo-test" => o
                .cargo_test
                .extend(val("--cargo-test")?.split_whitespace().map(String::from)),
            "--args" => o
                .bin_args
                .extend(val("--args")?.split_whitespace().map(String::from)),
            "--env" => {
                let v = val("--env")?;
                let (k, x) = v
                    .split_once('=')
                    .filter(|(k, _)| is_shell_name(k))
                    .ok_or_else(|| format!("vmtest: --env {v:?}: expected NAME=VALUE"))?;
                o.env.push((k.to_string(), x.to_string()));
            }
            "--smoke" => o.smoke = true,
            "--no-dev-misc" => o.dev_misc = false,
            "--test-timeout" => {
                o.test_timeout = val("--test-timeout")?
                    .parse()
                    .map_err(|_| "vmtest: --test-timeout takes seconds".to_string())?
            }
            "--mem" => {
                o.mem = Some(
                    val("--mem")?
                        .parse()
                        .map_err(|_| "vmtest: --mem takes megabytes".to_string())?,
                )
            }
            "--jobs" | "-j" => {
                o.jobs = val("--jobs")?
                    .parse::<usize>()
                    .map_err(|_| "vmtest: --jobs takes a number".to_string())?
                    .max(1)
            }
            "--refresh" => o.refresh = true,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("vmtest: unknown option {other:?}\n\n{USAGE}")),
        }
    }
    if o.kernels.is_empty() {
        o.kernels = vec![Kernel::V61, Kernel::V612];
    }
    let mut seen = Vec::new();
    o.kernels.retain(|k| {
        let new = !seen.contains(k);
        seen.push(*k);
        new
    });
    let smoke_only = o.binaries.is_empty() && o.scripts.is_empty() && o.cargo_test.is_empty();
    if smoke_only {
        o.smoke = true;
    }
    if o.nodes.is_empty() {
        // the smoke test alone covers two nodes too; given tests run on one
        o.nodes = if smoke_only { vec![1, 2] } else { vec![1] };
    }
    if !o.dev_misc && (o.cm_single == Cm::Corosync || o.nodes.contains(&2)) {
        return Err("vmtest: --no-dev-misc needs --nodes 1 and --cm none \
                    (dlm_controld opens /dev/misc/dlm-control)"
            .into());
    }
    Ok(o)
}

fn is_shell_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------
// entry point

/// Runs `cargo xtask vmtest ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    let t0 = Instant::now();
    let opts = parse_args(args)?;
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
        kernels.push(cache.prepare_kernel(*k, deb)?);
    }
    let nocmd = build_c(&cache, &vmdir.join("nocmd.c"), "nocmd", &[])?;
    let mut payload = Payload::default();
    if opts.smoke {
        let src = vmdir.join("dlmtest.c");
        let th = build_c(
            &cache,
            &src,
            "dlmtest",
            &["-D_REENTRANT", "-pthread", "-ldlm"],
        )?;
        let lt = build_c(&cache, &src, "dlmtest_lt", &["-ldlm_lt"])?;
        payload.files.push((th, "/usr/bin/dlmtest".into()));
        payload.files.push((lt, "/usr/bin/dlmtest_lt".into()));
        payload.add_scripts(&vmdir.join("smoke"), "smoke")?;
    }
    for (host, guest) in &opts.files {
        let guest = guest.clone().unwrap_or_else(|| {
            format!(
                "/vmtest/bin/{}",
                host.file_name().unwrap_or_default().to_string_lossy()
            )
        });
        payload.files.push((must_exist(host)?, guest));
    }
    for dir in &opts.scripts {
        let name = must_exist(dir)?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scripts".into());
        payload.add_scripts(dir, &name)?;
    }
    let mut binaries = opts.binaries.clone();
    if !opts.cargo_test.is_empty() {
        binaries.extend(cargo_test_binaries(&root, &opts.cargo_test)?);
    }
    for bin in &binaries {
        payload.add_binary(&must_exist(bin)?, &opts.bin_args)?;
    }
    if payload.tests.is_empty() {
        return Err("vmtest: nothing to run (no TEST_BINARY, no *.sh in --scripts)".into());
    }
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
    let (mut pass, mut fail, mut skip, mut broken) = (0, 0, 0, 0);
    for r in &reports {
        match r {
            Ok(r) => {
                for t in &r.tests {
                    match t.status {
                        Status::Pass => pass += 1,
                        Status::Skip => skip += 1,
                        Status::Fail => {
                            fail += 1;
                            println!("vmtest: FAIL {} on {}", t.name, r.title);
                        }
                    }
                }
                if r.setup_error.is_some() {
                    broken += 1;
                }
            }
            Err(_) => broken += 1,
        }
    }
    println!(
        "vmtest: {pass} passed, {fail} failed, {skip} skipped, {broken} runs broken; \
         {:.1} s in all (fetch {fetch_secs:.1} s, prepare {prep_secs:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    if fail > 0 || broken > 0 {
        Err(format!(
            "vmtest failed (guest logs in {})",
            ctx.cache.dir("logs").display()
        ))
    } else {
        Ok(())
    }
}

/// Builds tests with `cargo test --no-run ARGS` and returns the test
/// executables cargo reports.
fn cargo_test_binaries(root: &Path, args: &[String]) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("vmtest: cargo test --no-run {}", args.join(" "));
    let out = Command::new(&cargo)
        .current_dir(root)
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("vmtest: {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "vmtest: cargo test --no-run {} failed",
            args.join(" ")
        ));
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // one JSON object per line; std only, so find the field by hand
        let key = "\"executable\":\"";
        // test executables only, not the [[bin]]s cargo builds for them
        if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains("\"test\":true") {
            continue;
        }
        if let Some(rest) = line.find(key).map(|i| &line[i + key.len()..]) {
            if let Some(end) = rest.find('"') {
                bins.push(PathBuf::from(rest[..end].replace("\\\\", "\\")));
            }
        }
    }
    if bins.is_empty() {
        return Err(format!(
            "vmtest: cargo test --no-run {} built no test executable",
            args.join(" ")
        ));
    }
    Ok(bins)
}

fn must_exist(p: &Path) -> Result<PathBuf> {
    fs::canonicalize(p).map_err(|e| format!("vmtest: {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// host tools

struct Tool {
    /// A program looked up in PATH, or an absolute file.
    what: &'static str,
    package: &'static str,
}

impl Tool {
    fn bin(what: &'static str, package: &'static str) -> Tool {
        Tool { what, package }
    }
    fn file(what: &'static str, package: &'static str) -> Tool {
        Tool { what, package }
    }
    fn present(&self) -> bool {
        if self.what.starts_with('/') {
            Path::new(self.what).exists()
        } else {
            in_path(self.what).is_some()
        }
    }
}

fn ensure_host_tools(cache: &Cache, tools: &[Tool]) -> Result<()> {
    for needed in ["apt-get", "apt-cache", "dpkg-deb", "dpkg-query"] {
        if in_path(needed).is_none() {
            return Err(format!(
                "vmtest: {needed} not found: the VM harness needs a Debian (12) host with apt and dpkg"
            ));
        }
    }
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|t| !t.present())
        .map(|t| t.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "vmtest: missing host packages; run: sudo apt-get install -y --no-install-recommends {list}"
        ));
    }
    // --no-remove: never take anything away from the host. (Debian 12's
    // qemu-system-x86 7.2 would remove a backports qemu-utils 10, which
    // Breaks qemu-system-common << 8.0; then backports' qemu is the one.)
    println!(
        "vmtest: installing on the host: {list} (apt-get install -y --no-install-recommends --no-remove)"
    );
    let install = |cmd: &mut Command, pkgs: &[String]| {
        cmd.args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--no-remove",
        ])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    };
    let plain: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
    let mut ok = install(&mut Command::new("apt-get"), &plain);
    if !ok {
        println!("vmtest: apt-get install failed; running apt-get update and trying again");
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        ok = install(&mut Command::new("apt-get"), &plain);
    }
    if !ok {
        // the host's sources may lack bookworm-backports: use a private list
        let apt = cache.apt(Suites::HostTools)?;
        apt.update()?;
        let pkgs: Vec<String> = missing
            .iter()
            .map(|p| {
                let bpo = format!("{p}/bookworm-backports");
                let in_bpo = apt
                    .cmd("apt-cache")
                    .args(["show", &bpo])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if in_bpo { bpo } else { p.to_string() }
            })
            .collect();
        println!(
            "vmtest: trying again with bookworm-backports (private apt lists): {}",
            pkgs.join(" ")
        );
        if !install(&mut apt.cmd("apt-get"), &pkgs) {
            return Err(format!(
                "vmtest: could not install {list} without removing packages; \
                 install them by hand (apt-get install {list})"
            ));
        }
    }
    match tools.iter().find(|t| !t.present()) {
        Some(t) => Err(format!(
            "vmtest: {} still missing after installing {}",
            t.what, t.package
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// cache and private apt configuration

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Suites {
    Bookworm,
    Backports,
    /// Both, for host tools the host's own sources cannot install.
    HostTools,
}

impl Suites {
    fn name(self) -> &'static str {
        match self {
            Suites::Bookworm => "bookworm",
            Suites::Backports => "bookworm-backports",
            Suites::HostTools => "host-tools",
        }
    }
    /// The private sources.list, on the mirrors of the host's own apt
    /// configuration (`apt_sources`).
    fn sources_list(self) -> Result<String> {
        let mirrors = crate::apt_sources::mirrors()?;
        let mirror = &mirrors.archive;
        let key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
        Ok(match self {
            Suites::Bookworm => {
                let mut list = format!(
                    "deb {key} {mirror} bookworm main\n\
                     deb {key} {mirror} bookworm-updates main\n"
                );
                if let Some(security) = &mirrors.security {
                    list += &format!("deb {key} {security} bookworm-security main\n");
                }
                list
            }
            Suites::Backports => format!("deb {key} {mirror} bookworm-backports main\n"),
            Suites::HostTools => {
                Suites::Bookworm.sources_list()? + &Suites::Backports.sources_list()?
            }
        })
    }
}

/// What to fetch from a suite set.
enum Want {
    /// The package the named meta-package depends on (`linux-image-amd64`).
    KernelOf(&'static str),
    /// These packages plus every `lib*` package they need (first
    /// alternatives, recursively) that the host does not have installed;
    /// the host provides the rest through `ldd`.
    Closure(Vec<String>),
}

impl Want {
    fn key(&self) -> String {
        match self {
            Want::KernelOf(p) => format!("kernel-{p}"),
            Want::Closure(roots) => format!("closure-{}", roots.join("+")),
        }
    }
}

#[derive(Clone, Debug)]
struct Deb {
    version: String,
    path: PathBuf,
}

struct Cache {
    root: PathBuf,
}

impl Cache {
    fn new(root: PathBuf) -> Result<Cache> {
        fs::create_dir_all(&root)
            .map_err(|e| format!("vmtest: cannot create {}: {e}", root.display()))?;
        Ok(Cache { root })
    }

    fn dir(&self, sub: &str) -> PathBuf {
        let d = self.root.join(sub);
        let _ = fs::create_dir_all(&d);
        d
    }

    fn apt(&self, suites: Suites) -> Result<Apt> {
        let dir = self.dir(&format!("apt/{}", suites.name()));
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("vmtest: {}: {e}", dir.display()))?;
        }
        let list = dir.join("sources.list");
        write_if_changed(&list, suites.sources_list()?.as_bytes())?;
        Ok(Apt { dir, suites })
    }

    /// Resolves (at most once a day, or with --refresh) and downloads what
    /// `want` names from `suites`; returns the .deb files.
    fn fetch(&self, suites: Suites, want: &Want, refresh: bool) -> Result<Vec<Deb>> {
        let apt = self.apt(suites)?;
        let debdir = self.dir("debs");
        let resolved = apt.dir.join(format!("resolved-{}", want.key()));
        let fresh = !refresh && age(&resolved).is_some_and(|a| a < RESOLVE_MAX_AGE);
        let mut pkgs = if fresh {
            read_resolved(&resolved)
        } else {
            None
        };
        if pkgs.is_none() {
            match apt.update().and_then(|()| apt.resolve(want)) {
                Ok(p) => {
                    let text: String = p
                        .iter()
                        .map(|p| format!("{} {} {}\n", p.0, p.1, p.2))
                        .collect();
                    fs::write(&resolved, text)
                        .map_err(|e| format!("vmtest: {}: {e}", resolved.display()))?;
                    pkgs = Some(p);
                }
                Err(e) => match read_resolved(&resolved) {
                    Some(old) => {
                        println!(
                            "vmtest: warning: {e}\nvmtest: using the packages resolved before"
                        );
                        pkgs = Some(old);
                    }
                    None => return Err(e),
                },
            }
        }
        let pkgs = pkgs.unwrap_or_default();
        let mut debs = Vec::new();
        let mut missing = Vec::new();
        for (name, version, arch) in &pkgs {
            let path = debdir.join(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")));
            if !path.exists() {
                missing.push(format!("{name}={version}"));
            }
            debs.push(Deb {
                version: version.clone(),
                path,
            });
        }
        if !missing.is_empty() {
            println!(
                "vmtest: downloading from {}: {}",
                suites.name(),
                missing.join(" ")
            );
            apt.download(&missing, &debdir)?;
            if let Some(d) = debs.iter().find(|d| !d.path.exists()) {
                return Err(format!(
                    "vmtest: apt-get download did not produce {}",
                    d.path.display()
                ));
            }
        }
        Ok(debs)
    }

    /// `dpkg-deb -x` of a package into `x/<name>`, once.
    fn unpack(&self, deb: &Deb) -> Result<PathBuf> {
        let stem = deb
            .path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let dest = self.dir("x").join(&stem);
        if dest.join(".vmtest-unpacked").exists() {
            return Ok(dest);
        }
        let tmp = self.dir("x").join(format!(".{stem}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb.path).arg(&tmp))?;
        let _ = fs::remove_dir_all(&dest);
        fs::rename(&tmp, &dest).map_err(|e| format!("vmtest: {}: {e}", dest.display()))?;
        fs::write(dest.join(".vmtest-unpacked"), "").map_err(|e| e.to_string())?;
        Ok(dest)
    }

    fn prepare_kernel(&self, kernel: Kernel, deb: &Deb) -> Result<KernelImage> {
        let x = self.unpack(deb)?;
        let mut kver = None;
        let mut modroot = None;
        for base in ["lib/modules", "usr/lib/modules"] {
            if let Ok(rd) = fs::read_dir(x.join(base)) {
                for e in rd.flatten() {
                    kver = Some(e.file_name().to_string_lossy().into_owned());
                    modroot = Some(e.path());
                }
            }
        }
        let (kver, modroot) = kver
            .zip(modroot)
            .ok_or_else(|| format!("vmtest: no lib/modules in {}", deb.path.display()))?;
        let vmlinuz = ["boot", "usr/boot"]
            .iter()
            .map(|b| x.join(b).join(format!("vmlinuz-{kver}")))
            .find(|p| p.exists())
            .ok_or_else(|| format!("vmtest: no vmlinuz-{kver} in {}", deb.path.display()))?;
        let kdir = self.dir(&format!("kernels/{kver}"));
        let vmlinux = kdir.join("vmlinux");
        if !vmlinux.exists() {
            let t = Instant::now();
            extract_vmlinux(&vmlinuz, &vmlinux)?;
            println!(
                "vmtest: extracted vmlinux of {kver} ({:.0} MB) in {:.1} s",
                file_len(&vmlinux) as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
        }
        let mut index = HashMap::new();
        walk(&modroot.join("kernel"), &mut |p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            for ext in [".ko", ".ko.xz", ".ko.zst", ".ko.gz"] {
                if let Some(stem) = n.strip_suffix(ext) {
                    index.insert(stem.replace('-', "_"), p.to_path_buf());
                }
            }
        })?;
        let builtin = fs::read_to_string(modroot.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|n| n.trim_end_matches(".ko").replace('-', "_"))
            .collect();
        Ok(KernelImage {
            kernel,
            kver,
            version: deb.version.clone(),
            vmlinux,
            moddir: self.dir(&format!(
                "kernels/{}/modules",
                kdir.file_name().unwrap().to_string_lossy()
            )),
            index,
            builtin,
        })
    }
}

fn read_resolved(p: &Path) -> Option<Vec<(String, String, String)>> {
    let text = fs::read_to_string(p).ok()?;
    let v: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.to_string(),
                w.next()?.to_string(),
                w.next()?.to_string(),
            ))
        })
        .collect();
    (!v.is_empty()).then_some(v)
}

fn age(p: &Path) -> Option<Duration> {
    let m = fs::metadata(p).ok()?.modified().ok()?;
    SystemTime::now().duration_since(m).ok()
}

fn write_if_changed(p: &Path, data: &[u8]) -> Result<()> {
    if fs::read(p).ok().as_deref() != Some(data) {
        fs::write(p, data).map_err(|e| format!("vmtest: {}: {e}", p.display()))?;
    }
    Ok(())
}

struct Apt {
    dir: PathBuf,
    suites: Suites,
}

impl Apt {
    /// apt-get/apt-cache with the private configuration: our sources list,
    /// lists and cache directories; the host's apt state is untouched.
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        let d = &self.dir;
        c.arg("-q")
            .arg(format!(
                "-oDir::Etc::SourceList={}",
                d.join("sources.list").display()
            ))
            .arg("-oDir::Etc::SourceParts=/dev/null")
            .arg(format!("-oDir::State::Lists={}", d.join("lists").display()))
            .arg(format!("-oDir::Cache={}", d.join("cache").display()))
            .arg("-oAPT::Sandbox::User=root")
            .env("LC_ALL", "C");
        c
    }

    fn update(&self) -> Result<()> {
        let out = self
            .cmd("apt-get")
            .arg("update")
            .output()
            .map_err(|e| format!("vmtest: apt-get: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            || err
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W: Failed"))
        {
            return Err(format!(
                "vmtest: apt-get update for {} failed (is the mirror {} reachable? \
                 DLM_VMTEST_MIRROR sets another mirror):\n{err}",
                self.suites.name(),
                crate::apt_sources::mirrors().map_or("?", |m| m.archive.as_str())
            ));
        }
        Ok(())
    }

    fn depends(&self, pkgs: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
        let out = run_out(
            self.cmd("apt-cache")
                .args([
                    "depends",
                    "--no-recommends",
                    "--no-suggests",
                    "--no-conflicts",
                ])
                .args(["--no-breaks", "--no-replaces", "--no-enhances"])
                .args(pkgs),
        )?;
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut cur = None;
        let mut in_or_group = false;
        for line in out.lines() {
            if !line.starts_with(' ') {
                cur = Some(line.trim().to_string());
                map.entry(line.trim().to_string()).or_default();
                in_or_group = false;
                continue;
            }
            if line.starts_with("    ") {
                continue; // providers of a virtual package
            }
            let l = line.trim();
            let (or_next, l) = match l.strip_prefix('|') {
                Some(r) => (true, r),
                None => (false, l),
            };
            let was_in_group = in_or_group;
            in_or_group = or_next;
            if was_in_group {
                continue; // not the first alternative
            }
            if let Some(dep) = l
                .strip_prefix("Depends: ")
                .or_else(|| l.strip_prefix("PreDepends: "))
            {
                if !dep.starts_with('<') {
                    if let Some(c) = &cur {
                        map.entry(c.clone()).or_default().push(dep.to_string());
                    }
                }
            }
        }
        Ok(map)
    }

    /// (package, version, arch) of the candidate of each package.
    fn show(&self, pkgs: &[String]) -> Result<Vec<(String, String, String)>> {
        let out = run_out(
            self.cmd("apt-cache")
                .args(["show", "--no-all-versions"])
                .args(pkgs),
        )?;
        let mut res = Vec::new();
        for para in out.split("\n\n") {
            let field = |f: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_string()))
            };
            if let (Some(p), Some(v), Some(a)) =
                (field("Package:"), field("Version:"), field("Architecture:"))
            {
                res.push((p, v, a));
            }
        }
        Ok(res)
    }

    fn resolve(&self, want: &Want) -> Result<Vec<(String, String, String)>> {
        let names = match want {
            Want::KernelOf(meta) => {
                let deps = self.depends(&[meta.to_string()])?;
                let image = deps
                    .get(*meta)
                    .and_then(|d| d.iter().find(|d| d.starts_with("linux-image-")))
                    .ok_or_else(|| {
                        format!(
                            "vmtest: {meta} in {} names no linux-image",
                            self.suites.name()
                        )
                    })?;
                vec![image.clone()]
            }
            Want::Closure(roots) => {
                let installed = host_installed()?;
                let mut all: BTreeSet<String> = roots.iter().cloned().collect();
                let mut frontier: Vec<String> = roots.clone();
                while !frontier.is_empty() {
                    let deps = self.depends(&frontier)?;
                    frontier.clear();
                    for d in deps.values().flatten() {
                        if d.starts_with("lib") && !installed.contains(d) && all.insert(d.clone()) {
                            frontier.push(d.clone());
                        }
                    }
                }
                all.into_iter().collect()
            }
        };
        let shown = self.show(&names)?;
        for n in &names {
            if !shown.iter().any(|s| &s.0 == n) {
                return Err(format!(
                    "vmtest: package {n} not found in {}",
                    self.suites.name()
                ));
            }
        }
        Ok(shown)
    }

    fn download(&self, pkgs: &[String], into: &Path) -> Result<()> {
        let out = self
            .cmd("apt-get")
            .arg("download")
            .args(pkgs)
            .current_dir(into)
            .output()
            .map_err(|e| format!("vmtest: apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "vmtest: apt-get download {} failed:\n{}",
                pkgs.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

fn host_installed() -> Result<HashSet<String>> {
    let out = run_out(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Package}\t${db:Status-Abbrev}\n",
    ]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, s)| s.starts_with("ii"))
        .map(|(p, _)| p.to_string())
        .collect())
}

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

// ---------------------------------------------------------------------------
// kernel: vmlinux and modules

#[derive(Clone)]
struct KernelImage {
    kernel: Kernel,
    kver: String,
    version: String,
    vmlinux: PathBuf,
    /// Decompressed modules, cached.
    moddir: PathBuf,
    /// Module name (with '_') -> file in the unpacked package.
    index: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl KernelImage {
    /// The modules to insmod, dependencies first (the .deb has no
    /// modules.dep; dependencies come from each module's .modinfo).
    fn modules(&self, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            self.visit(&w.replace('-', "_"), &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) || self.builtin.contains(name) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("vmtest: module dependency loop at {name}"));
        }
        let src = self
            .index
            .get(name)
            .ok_or_else(|| format!("vmtest: kernel {} has no module {name}", self.kver))?;
        let ko = self.moddir.join(format!("{name}.ko"));
        if !ko.exists() {
            let s = src.to_string_lossy();
            let data = if s.ends_with(".xz") {
                decompress("xz", &["-dc"], &fs::read(src).map_err(|e| e.to_string())?)?
            } else if s.ends_with(".zst") {
                decompress("zstd", &["-dc"], &fs::read(src).map_err(|e| e.to_string())?)?
            } else if s.ends_with(".gz") {
                decompress("gzip", &["-dc"], &fs::read(src).map_err(|e| e.to_string())?)?
            } else {
                fs::read(src).map_err(|e| e.to_string())?
            };
            let tmp = ko.with_extension("tmp");
            fs::write(&tmp, &data).map_err(|e| format!("vmtest: {}: {e}", tmp.display()))?;
            fs::rename(&tmp, &ko).map_err(|e| e.to_string())?;
        }
        let data = fs::read(&ko).map_err(|e| e.to_string())?;
        let info = elf_section(&data, ".modinfo")
            .ok_or_else(|| format!("vmtest: {} has no .modinfo", ko.display()))?;
        for kv in info.split(|&b| b == 0) {
            if let Some(deps) = kv.strip_prefix(b"depends=") {
                for d in String::from_utf8_lossy(deps)
                    .split(',')
                    .filter(|d| !d.is_empty())
                {
                    self.visit(&d.replace('-', "_"), seen, order, depth + 1)?;
                }
            }
        }
        order.push((name.to_string(), ko));
        Ok(())
    }
}

/// The contents of the named section of a little-endian ELF64 file.
fn elf_section<'a>(d: &'a [u8], want: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?) as usize);
    if d.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(sh(shstrndx) + 0x18)?;
    for i in 0..shnum {
        let name_off = u32_at(sh(i))?;
        let name = d.get(strtab + name_off..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        if name == want.as_bytes() {
            let off = u64_at(sh(i) + 0x18)?;
            let size = u64_at(sh(i) + 0x20)?;
            return d.get(off..off + size);
        }
    }
    None
}

/// Whether `d` is a whole ELF64 image (its section headers are inside it).
fn complete_elf(d: &[u8]) -> bool {
    if d.len() < 64 || &d[..5] != b"\x7fELF\x02" {
        return false;
    }
    let shoff = u64::from_le_bytes(d[0x28..0x30].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes([d[0x3a], d[0x3b]]) as usize;
    let shnum = u16::from_le_bytes([d[0x3c], d[0x3d]]) as usize;
    shoff.saturating_add(shentsize * shnum) <= d.len()
}

/// Unpacks the ELF vmlinux from a bzImage, like the kernel's
/// scripts/extract-vmlinux: try each xz/zstd magic in turn through the
/// xz/zstd tools (6.1 is xz, 6.12 zstd) until one yields a whole ELF image.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<()> {
    let data = fs::read(vmlinuz).map_err(|e| format!("vmtest: {}: {e}", vmlinuz.display()))?;
    let formats: [(&[u8], &str, &[&str]); 2] = [
        (b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]),
        (b"\x28\xb5\x2f\xfd", "zstd", &["-dc"]),
    ];
    for (magic, prog, args) in formats {
        let mut from = 0;
        let mut tries = 0;
        while let Some(i) = find(&data[from..], magic) {
            let start = from + i;
            from = start + 1;
            tries += 1;
            if tries > 16 {
                break;
            }
            if in_path(prog).is_none() {
                return Err(format!(
                    "vmtest: {prog} not found: apt-get install -y {prog}"
                ));
            }
            let Ok(elf) = decompress(prog, args, &data[start..]) else {
                continue;
            };
            if complete_elf(&elf) {
                let tmp = out.with_extension("tmp");
                fs::write(&tmp, &elf).map_err(|e| format!("vmtest: {}: {e}", tmp.display()))?;
                return fs::rename(&tmp, out).map_err(|e| e.to_string());
            }
        }
    }
    Err(format!(
        "vmtest: no xz or zstd compressed ELF kernel found in {}",
        vmlinuz.display()
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Pipes `input` through `prog args`; returns what it wrote (also when it
/// complains about trailing data after the stream).
fn decompress(prog: &str, args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("vmtest: {prog}: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut outbuf = Vec::new();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(input);
        });
        let _ = stdout.read_to_end(&mut outbuf);
    });
    let _ = child.wait();
    if outbuf.is_empty() {
        return Err(format!("vmtest: {prog} produced nothing"));
    }
    Ok(outbuf)
}

// ---------------------------------------------------------------------------
// host-built C programs

fn build_c(cache: &Cache, src: &Path, name: &str, args: &[&str]) -> Result<PathBuf> {
    let out = cache.dir("build").join(name);
    let stamp = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let flags_file = cache.dir("build").join(format!("{name}.flags"));
    let flags = args.join(" ");
    let fresh = match (stamp(src), stamp(&out)) {
        (Some(s), Some(o)) => {
            o >= s && fs::read_to_string(&flags_file).ok().as_deref() == Some(&flags)
        }
        _ => false,
    };
    if fresh {
        return Ok(out);
    }
    let o = Command::new("gcc")
        .args(["-O2", "-g", "-Wall", "-o"])
        .arg(&out)
        .arg(src)
        .args(args)
        .output()
        .map_err(|e| format!("vmtest: gcc: {e} (apt-get install -y gcc)"))?;
    if !o.status.success() {
        return Err(format!(
            "vmtest: building {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    fs::write(&flags_file, flags).map_err(|e| e.to_string())?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// what goes into the guest besides the base system

#[derive(Default)]
struct Payload {
    /// (host file, guest path); ELF files bring their shared libraries.
    files: Vec<(PathBuf, String)>,
    /// (host dir, guest dir), copied whole.
    dirs: Vec<(PathBuf, String)>,
    /// (test name, shell command run in the guest).
    tests: Vec<(String, String)>,
}

impl Payload {
    fn add_scripts(&mut self, dir: &Path, name: &str) -> Result<()> {
        let name = sanitize(name);
        let gdir = format!("/vmtest/scripts/{name}");
        let mut scripts: Vec<String> = fs::read_dir(dir)
            .map_err(|e| format!("vmtest: {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sh"))
            .collect();
        scripts.sort();
        for s in scripts {
            self.tests.push((
                format!("{name}/{}", sanitize(&s)),
                format!("DLM_VMTEST_SCRIPTS={gdir} sh {gdir}/{}", shell_quote(&s)),
            ));
        }
        self.dirs.push((dir.to_path_buf(), gdir));
        Ok(())
    }

    fn add_binary(&mut self, bin: &Path, args: &[String]) -> Result<()> {
        let file = bin
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // cargo's test executables are NAME-<16 hex digits>
        let file = match file.rsplit_once('-') {
            Some((stem, h)) if h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
                stem.to_string()
            }
            _ => file,
        };
        let base = sanitize(&file);
        let mut name = base.clone();
        let mut n = 1;
        while self.tests.iter().any(|t| t.0 == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let guest = format!("/vmtest/bin/{name}");
        let mut cmd = shell_quote(&guest);
        for a in args {
            cmd.push(' ');
            cmd.push_str(&shell_quote(a));
        }
        self.files.push((bin.to_path_buf(), guest));
        self.tests.push((name, cmd));
        Ok(())
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

// ---------------------------------------------------------------------------
// initramfs

enum Entry {
    Dir,
    File { src: Src, mode: u32 },
    Symlink(String),
}

enum Src {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// Maps a path to Debian 12's merged-/usr layout (/lib -> usr/lib, ...), so
/// that host paths from `ldd` and package paths land in one tree.
fn usrmerge(p: &str) -> String {
    for top in ["/bin", "/sbin", "/lib", "/lib64"] {
        if p == top || p.starts_with(&format!("{top}/")) {
            return format!("/usr{p}");
        }
    }
    p.to_string()
}

struct Initramfs {
    entries: BTreeMap<String, Entry>,
    /// Libraries from outside the loader's default paths (put in
    /// /vmtest/lib): file name -> host path.
    private_libs: BTreeMap<String, PathBuf>,
    /// Host libraries already resolved.
    done: HashSet<PathBuf>,
}

impl Initramfs {
    fn new() -> Initramfs {
        let mut ir = Initramfs {
            entries: BTreeMap::new(),
            private_libs: BTreeMap::new(),
            done: HashSet::new(),
        };
        for top in ["bin", "sbin", "lib", "lib64"] {
            ir.dir(&format!("/usr/{top}"));
            ir.symlink(&format!("/{top}"), &format!("usr/{top}"));
        }
        for d in [
            "/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/etc", "/var", "/mnt",
        ] {
            ir.dir(d);
        }
        ir.symlink("/var/run", "/run");
        ir
    }

    fn dir(&mut self, p: &str) {
        let mut cur = String::new();
        for part in p.split('/').filter(|s| !s.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            self.entries.entry(cur.clone()).or_insert(Entry::Dir);
        }
    }

    fn parent(&mut self, p: &str) {
        if let Some((parent, _)) = p.rsplit_once('/') {
            if !parent.is_empty() {
                self.dir(parent);
            }
        }
    }

    fn symlink(&mut self, p: &str, target: &str) {
        self.parent(p);
        self.entries
            .insert(p.to_string(), Entry::Symlink(target.to_string()));
    }

    fn bytes(&mut self, p: &str, data: impl Into<Vec<u8>>, mode: u32) {
        let p = usrmerge(p);
        self.parent(&p);
        self.entries.insert(
            p,
            Entry::File {
                src: Src::Bytes(data.into()),
                mode,
            },
        );
    }

    fn host_file(&mut self, p: &str, host: &Path) -> Result<()> {
        let meta = fs::metadata(host).map_err(|e| format!("vmtest: {}: {e}", host.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let p = usrmerge(p);
        self.parent(&p);
        self.entries.insert(
            p,
            Entry::File {
                src: Src::Host(host.to_path_buf()),
                mode: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(())
    }

    /// Adds a host file; if it is a dynamic ELF file, also the shared
    /// libraries `ldd` finds for it. Libraries found under one of
    /// `sysroots` (unpacked packages) go to the same path below /; host
    /// libraries keep their host path.
    fn program(&mut self, guest: &str, host: &Path, sysroots: &[PathBuf]) -> Result<()> {
        self.host_file(guest, host)?;
        let mut head = [0u8; 4];
        let is_elf = fs::File::open(host)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == b"\x7fELF";
        if !is_elf {
            return Ok(());
        }
        let mut ldpath: Vec<String> = Vec::new();
        for r in sysroots {
            for d in [
                format!("usr/lib/{MULTIARCH}"),
                format!("lib/{MULTIARCH}"),
                "usr/lib".into(),
            ] {
                let p = r.join(d);
                if p.is_dir() {
                    ldpath.push(p.to_string_lossy().into_owned());
                }
            }
        }
        // the host's LD_LIBRARY_PATH (e.g. our target/ directory) applies
        // to test programs, not to the packaged cluster stack
        if let Some(host_ld) = std::env::var("LD_LIBRARY_PATH")
            .ok()
            .filter(|_| sysroots.is_empty())
        {
            ldpath.extend(
                host_ld
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        let out = Command::new("ldd")
            .arg(host)
            .env("LD_LIBRARY_PATH", ldpath.join(":"))
            .output()
            .map_err(|e| format!("vmtest: ldd: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || text.contains("statically linked") {
            return Ok(());
        }
        if !out.status.success() {
            return Err(format!("vmtest: ldd {} failed:\n{text}", host.display()));
        }
        let mut missing = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.contains("=> not found") {
                missing.push(line.split_whitespace().next().unwrap_or("").to_string());
                continue;
            }
            let path = match line.split_once("=>") {
                Some((_, r)) => r.trim(),
                None => line,
            };
            let path = path.split(" (0x").next().unwrap_or("").trim();
            if !path.contains('/') {
                continue; // linux-vdso.so.1
            }
            // keep absolute paths as ldd prints them (the loader's path is
            // the PT_INTERP the guest needs); anchor relative ones
            let hp = std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(path);
            let path = &*hp.to_string_lossy().into_owned();
            if !self.done.insert(hp.clone()) {
                continue;
            }
            let standard = [
                format!("/usr/lib/{MULTIARCH}"),
                "/usr/lib".into(),
                "/usr/lib64".into(),
            ];
            let host_dir = usrmerge(path.rsplit_once('/').map_or("/", |x| x.0));
            let gp = match sysroots.iter().find_map(|r| hp.strip_prefix(r).ok()) {
                Some(rel) => format!("/{}", rel.display()),
                None if standard.contains(&host_dir) => path.to_string(),
                None => {
                    // Elsewhere (a build tree, LD_LIBRARY_PATH): the host
                    // path may be hidden by a guest mount (/tmp), so these
                    // all go to /vmtest/lib, which is on LD_LIBRARY_PATH.
                    let base = hp
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    if let Some(other) = self.private_libs.insert(base.clone(), hp.clone()) {
                        if other != hp {
                            return Err(format!(
                                "vmtest: two libraries named {base}: {} and {}",
                                other.display(),
                                hp.display()
                            ));
                        }
                    }
                    format!("/vmtest/lib/{base}")
                }
            };
            self.host_file(&gp, &hp)?;
        }
        if !missing.is_empty() {
            return Err(format!(
                "vmtest: {} needs {} which ldd cannot find on the host (set LD_LIBRARY_PATH?)",
                host.display(),
                missing.join(", ")
            ));
        }
        Ok(())
    }

    /// Copies a host directory tree to `guest` (ELF files with their libraries).
    fn tree(&mut self, guest: &str, host: &Path) -> Result<()> {
        let mut files = Vec::new();
        walk(host, &mut |p| files.push(p.to_path_buf()))?;
        self.dir(guest);
        for f in files {
            let rel = f.strip_prefix(host).map_err(|e| e.to_string())?;
            self.program(&format!("{guest}/{}", rel.display()), &f, &[])?;
        }
        Ok(())
    }

    /// Writes a newc cpio archive (what the kernel unpacks as initramfs);
    /// uncompressed, which boots fastest under TCG. Returns its size.
    fn write(&self, out: &Path) -> Result<u64> {
        let tmp = out.with_extension("tmp");
        let f = fs::File::create(&tmp).map_err(|e| format!("vmtest: {}: {e}", tmp.display()))?;
        let mut w = Counted {
            inner: BufWriter::with_capacity(1 << 20, f),
            n: 0,
        };
        let io = |e: io::Error| format!("vmtest: writing {}: {e}", tmp.display());
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let name = path.trim_start_matches('/');
            let ino = ino as u32 + 1;
            match entry {
                Entry::Dir => cpio_header(&mut w, ino, 0o040755, 0, name, 2).map_err(io)?,
                Entry::Symlink(t) => {
                    cpio_header(&mut w, ino, 0o120777, t.len() as u64, name, 1).map_err(io)?;
                    w.write_all(t.as_bytes()).map_err(io)?;
                    pad4(&mut w).map_err(io)?;
                }
                Entry::File {
                    src: Src::Bytes(b),
                    mode,
                } => {
                    cpio_header(&mut w, ino, 0o100000 | mode, b.len() as u64, name, 1)
                        .map_err(io)?;
                    w.write_all(b).map_err(io)?;
                    pad4(&mut w).map_err(io)?;
                }
                Entry::File {
                    src: Src::Host(h),
                    mode,
                } => {
                    let data = fs::read(h).map_err(|e| format!("vmtest: {}: {e}", h.display()))?;
                    cpio_header(&mut w, ino, 0o100000 | mode, data.len() as u64, name, 1)
                        .map_err(io)?;
                    w.write_all(&data).map_err(io)?;
                    pad4(&mut w).map_err(io)?;
                }
            }
        }
        cpio_header(&mut w, 0, 0, 0, "TRAILER!!!", 1).map_err(io)?;
        w.flush().map_err(io)?;
        let n = w.n;
        drop(w);
        fs::rename(&tmp, out).map_err(|e| format!("vmtest: {}: {e}", out.display()))?;
        Ok(n)
    }
}

struct Counted<W: Write> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn cpio_header<W: Write>(
    w: &mut Counted<W>,
    ino: u32,
    mode: u32,
    size: u64,
    name: &str,
    nlink: u32,
) -> io::Result<()> {
    let size = u32::try_from(size).map_err(|_| io::Error::other(format!("{name}: over 4 GB")))?;
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        name.len() + 1,
        0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w)
}

fn pad4<W: Write>(w: &mut Counted<W>) -> io::Result<()> {
    let pad = (4 - (w.n % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..pad])
}

// ---------------------------------------------------------------------------
// the userland packages (busybox, corosync, dlm_controld)

struct Userland {
    roots: Vec<PathBuf>,
}

impl Userland {
    fn find(&self, rel: &str) -> Result<PathBuf> {
        for r in &self.roots {
            for cand in [rel.to_string(), format!("usr/{rel}")] {
                let p = r.join(&cand);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(format!("vmtest: {rel} not found in the unpacked packages"))
    }
}

fn corosync_conf(nodes: u32) -> String {
    let mut s = String::from(
        "totem {\n    version: 2\n    cluster_name: vmtest\n    transport: knet\n    ip_version: ipv6\n    \
         crypto_cipher: none\n    crypto_hash: none\n}\nnodelist {\n",
    );
    for n in 1..=nodes {
        s += &format!(
            "    node {{\n        ring0_addr: fd00::{n}\n        name: node{n}\n        nodeid: {n}\n    }}\n"
        );
    }
    s += "}\nquorum {\n    provider: corosync_votequorum\n";
    if nodes == 2 {
        s += "    two_node: 1\n";
    }
    s += "}\nlogging {\n    to_stderr: yes\n    to_logfile: no\n    to_syslog: no\n    timestamp: on\n}\n";
    s
}

// ---------------------------------------------------------------------------
// running guests

#[derive(Clone)]
struct JobSpec {
    kernel: KernelImage,
    nodes: u32,
    cm: Cm,
}

impl JobSpec {
    fn tag(&self) -> String {
        format!("{}-n{}", self.kernel.kernel.label(), self.nodes)
    }
    fn title(&self) -> String {
        format!(
            "kernel {} ({} {}), {} node{}, cm={}",
            self.kernel.kernel.label(),
            self.kernel.kver,
            self.kernel.version,
            self.nodes,
            if self.nodes > 1 { "s" } else { "" },
            self.cm.name()
        )
    }
}

struct RunCtx {
    cache: Cache,
    vmdir: PathBuf,
    userland: Userland,
    nocmd: PathBuf,
    payload: Payload,
    env: Vec<(String, String)>,
    test_timeout: u64,
    dev_misc: bool,
    mem: Option<u32>,
    verbose: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Pass,
    Fail,
    Skip,
}

struct TestReport {
    name: String,
    status: Status,
}

struct JobReport {
    title: String,
    tests: Vec<TestReport>,
    setup_error: Option<String>,
}

/// Runs the jobs, at most `capacity` guests at a time; prints each job's
/// report as it finishes.
fn run_jobs(ctx: &Arc<RunCtx>, jobs: Vec<JobSpec>, capacity: usize) -> Vec<Result<JobReport>> {
    let (tx, rx) = mpsc::channel();
    let mut pending: Vec<(usize, JobSpec)> = jobs.into_iter().enumerate().collect();
    let mut results: Vec<Option<Result<JobReport>>> = (0..pending.len()).map(|_| None).collect();
    let mut busy = 0usize;
    let mut running = 0usize;
    while !pending.is_empty() || running > 0 {
        while let Some(pos) = pending
            .iter()
            .position(|(_, j)| running == 0 || busy + j.nodes as usize <= capacity)
        {
            let (i, job) = pending.remove(pos);
            busy += job.nodes as usize;
            running += 1;
            let ctx = Arc::clone(ctx);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let nodes = job.nodes as usize;
                let (out, r) = run_job(&ctx, &job);
                let _ = tx.send((i, nodes, out, r));
            });
        }
        let Ok((i, nodes, out, r)) = rx.recv() else {
            break;
        };
        print!("{out}");
        let _ = io::stdout().flush();
        busy -= nodes;
        running -= 1;
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect()
}

/// One console line: seconds since qemu started, text.
type Line = (f64, String);

struct Guest {
    node: u32,
    child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    log: PathBuf,
    exited: Option<(Instant, String)>,
    killed: Option<String>,
}

fn run_job(ctx: &RunCtx, job: &JobSpec) -> (String, Result<JobReport>) {
    let mut out = String::new();
    let r = run_job_inner(ctx, job, &mut out);
    if let Err(e) = &r {
        out += &format!("vmtest: {}: {e}\n", job.title());
    }
    (out, r)
}

fn build_initramfs(ctx: &RunCtx, job: &JobSpec, dir: &Path) -> Result<(PathBuf, u64)> {
    let mut ir = Initramfs::new();
    let ul = &ctx.userland;
    ir.host_file("/usr/bin/busybox", &ul.find("bin/busybox")?)?;
    let script = |name: &str| {
        fs::read(ctx.vmdir.join(name)).map_err(|e| format!("{}/{name}: {e}", ctx.vmdir.display()))
    };
    ir.bytes("/init", script("init")?, 0o755);
    ir.bytes("/usr/bin/vmtest-barrier", script("vmtest-barrier")?, 0o755);
    ir.bytes("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    ir.bytes("/etc/group", "root:x:0:\n", 0o644);
    ir.bytes(
        "/etc/nsswitch.conf",
        "hosts: files\npasswd: files\ngroup: files\n",
        0o644,
    );
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for n in 1..=job.nodes {
        hosts += &format!("fd00::{n} node{n}\n");
    }
    ir.bytes("/etc/hosts", hosts, 0o644);

    let mut wanted = vec!["configfs", "dlm"];
    if job.nodes > 1 {
        wanted.extend(["virtio_pci", "virtio_net"]);
    }
    let mods = job.kernel.modules(&wanted)?;
    let mut order = String::new();
    for (name, ko) in &mods {
        ir.host_file(&format!("/lib/modules/vmtest/{name}.ko"), ko)?;
        order += name;
        order.push('\n');
    }
    ir.bytes("/etc/vmtest/modules", order, 0o644);

    // libgcc_s is loaded at run time (pthread_cancel, unwinding), so ldd
    // does not list it; corosync and Debian's threads libdlm need it.
    let gcc_s = Path::new("/lib").join(MULTIARCH).join("libgcc_s.so.1");
    if gcc_s.exists() {
        ir.host_file(&format!("/usr/lib/{MULTIARCH}/libgcc_s.so.1"), &gcc_s)?;
    }
    match job.cm {
        Cm::None => ir.program("/usr/sbin/nocmd", &ctx.nocmd, &[])?,
        Cm::Corosync => {
            for b in [
                "corosync",
                "corosync-quorumtool",
                "corosync-cfgtool",
                "corosync-cmapctl",
                "dlm_controld",
                "dlm_tool",
            ] {
                let host = ul.find(&format!("sbin/{b}"))?;
                ir.program(&format!("/usr/sbin/{b}"), &host, &ul.roots)?;
            }
            ir.bytes(
                "/etc/corosync/corosync.conf",
                corosync_conf(job.nodes),
                0o644,
            );
            ir.bytes(
                "/etc/dlm/dlm.conf",
                "protocol=tcp\nenable_fencing=0\nenable_startup_fencing=0\nlog_debug=1\n",
                0o644,
            );
        }
    }
    for (host, guest) in &ctx.payload.files {
        ir.program(guest, host, &[])?;
    }
    for (host, guest) in &ctx.payload.dirs {
        ir.tree(guest, host)?;
    }
    ir.dir("/vmtest/bin");
    let tests: String = ctx
        .payload
        .tests
        .iter()
        .map(|(n, c)| format!("{n}\t{c}\n"))
        .collect();
    ir.bytes("/vmtest/tests", tests, 0o644);
    let mut env = String::from("export PATH=/vmtest/bin:$PATH\nexport RUST_BACKTRACE=1\n");
    if !ir.private_libs.is_empty() {
        env += "export LD_LIBRARY_PATH=/vmtest/lib\n";
    }
    for (k, v) in &ctx.env {
        env += &format!("export {k}={}\n", shell_quote(v));
    }
    ir.bytes("/vmtest/env", env, 0o644);
    let path = dir.join("initramfs.cpio");
    let size = ir.write(&path)?;
    Ok((path, size))
}

fn run_job_inner(ctx: &RunCtx, job: &JobSpec, out: &mut String) -> Result<JobReport> {
    let t0 = Instant::now();
    let dir = ctx.cache.dir(&format!("run/{}", job.tag()));
    let (initramfs, size) = build_initramfs(ctx, job, &dir)?;
    let mem = ctx
        .mem
        .unwrap_or_else(|| 1024.max(512 + 3 * (size / (1 << 20)) as u32));
    let sockdir =
        std::env::temp_dir().join(format!("dlm-vmtest-{}-{}", std::process::id(), job.tag()));
    let _ = fs::remove_dir_all(&sockdir);
    fs::create_dir_all(&sockdir).map_err(|e| format!("{}: {e}", sockdir.display()))?;
    let logdir = ctx.cache.dir("logs");
    println!(
        "vmtest: starting {} (initramfs {:.1} MB, built in {:.2} s)",
        job.title(),
        size as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );

    let ntests = ctx.payload.tests.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(240 + ntests * (ctx.test_timeout + 15));
    let mut guests = Vec::new();
    for node in 1..=job.nodes {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-smp", "1", "-m"])
            .arg(mem.to_string())
            .arg("-kernel")
            .arg(&job.kernel.vmlinux)
            .arg("-initrd")
            .arg(&initramfs)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 quiet loglevel=4 panic=-1 vmtest.node={node} vmtest.nodes={} vmtest.cm={} vmtest.timeout={} vmtest.devmisc={}",
                job.nodes,
                job.cm.name(),
                ctx.test_timeout,
                u8::from(ctx.dev_misc)
            ))
            .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none"]);
        if job.nodes == 2 {
            let peer = 3 - node;
            let sock = |n: u32| sockdir.join(format!("n{n}.sock")).display().to_string();
            cmd.arg("-netdev").arg(format!(
                "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                sock(node),
                sock(peer)
            ));
            cmd.arg("-device").arg(format!(
                "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:{node:02x},romfile="
            ));
        }
        let log = logdir.join(format!("{}-node{node}.log", job.tag()));
        guests.push(spawn_guest(cmd, node, log, ctx.verbose, &job.tag())?);
    }

    // wait for all guests; a guest that dies leaves the others a short grace
    let mut timed_out = false;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        for g in guests.iter_mut() {
            if g.exited.is_none() {
                if let Ok(Some(st)) = g.child.try_wait() {
                    g.exited = Some((Instant::now(), format!("{st}")));
                }
            }
        }
        if guests.iter().all(|g| g.exited.is_some()) {
            break;
        }
        let now = Instant::now();
        if now > deadline {
            timed_out = true;
        }
        let first_exit = guests
            .iter()
            .filter_map(|g| g.exited.as_ref().map(|e| e.0))
            .min();
        let done_clean = guests
            .iter()
            .filter(|g| g.exited.is_some())
            .all(|g| has_marker(&g.lines, "@@VMTEST DONE"));
        let grace = if done_clean { 60 } else { 10 };
        let stop_others =
            first_exit.is_some_and(|t| now.duration_since(t) > Duration::from_secs(grace));
        if timed_out || stop_others {
            for g in guests.iter_mut().filter(|g| g.exited.is_none()) {
                let _ = g.child.kill();
                g.killed = Some(if timed_out {
                    "killed: the run timed out".into()
                } else {
                    "killed: another node had stopped".into()
                });
            }
        }
    }
    for g in guests.iter_mut() {
        for r in g.readers.drain(..) {
            let _ = r.join();
        }
        if let Some(k) = &g.killed {
            let mut f = fs::OpenOptions::new().append(true).open(&g.log).ok();
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "vmtest: {k}");
            }
        }
    }
    let _ = fs::remove_dir_all(&sockdir);

    // parse
    let parsed: Vec<Parsed> = guests
        .iter()
        .map(|g| parse_console(&g.lines.lock().unwrap()))
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    *out += &format!("vmtest: {} finished in {wall:.1} s\n", job.title());
    for (g, p) in guests.iter().zip(&parsed) {
        *out += &format!(
            "  node {}: ready after {}, {}; log {}\n",
            g.node,
            p.ready.map_or("-".into(), |t| format!("{t:.1} s")),
            match (&g.killed, &g.exited) {
                (Some(k), _) => k.clone(),
                (None, Some(_)) if p.done => "done".into(),
                (None, Some((_, st))) => format!("stopped early (panic?), qemu {st}"),
                (None, None) => "?".into(),
            },
            g.log.display()
        );
    }
    let mut setup_error = None;
    for (g, p) in guests.iter().zip(&parsed) {
        if p.ready.is_none() {
            let why = p
                .setup_failed
                .clone()
                .unwrap_or_else(|| "the guest never reached READY".into());
            *out += &format!("  SETUP FAILED on node {}: {why}\n", g.node);
            *out += &tail(&g.lines.lock().unwrap(), 60);
            setup_error = Some(why);
        }
    }
    let mut tests = Vec::new();
    for (name, _) in &ctx.payload.tests {
        let mut per_node = Vec::new();
        for p in &parsed {
            per_node.push(p.tests.get(name));
        }
        let rcs: Vec<Option<i32>> = per_node.iter().map(|t| t.and_then(|t| t.rc)).collect();
        let status = if rcs.iter().all(|r| *r == Some(77)) {
            Status::Skip
        } else if rcs.iter().all(|r| matches!(r, Some(0) | Some(77))) {
            Status::Pass
        } else {
            Status::Fail
        };
        let secs = per_node
            .iter()
            .filter_map(|t| t.and_then(|t| Some(t.end? - t.begin)))
            .fold(0.0, f64::max);
        let rc_text = if job.nodes == 1 {
            match rcs[0] {
                Some(rc) => format!("rc={rc}"),
                None => "did not finish".into(),
            }
        } else {
            rcs.iter()
                .enumerate()
                .map(|(i, r)| match r {
                    Some(rc) => format!("n{}:rc={rc}", i + 1),
                    None => format!("n{}:unfinished", i + 1),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let word = match status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        *out += &format!("  {word}  {name:<40} {secs:6.1} s  {rc_text}\n");
        if status == Status::Fail {
            for (i, t) in per_node.iter().enumerate() {
                let rc = t.and_then(|t| t.rc);
                if matches!(rc, Some(0) | Some(77)) || parsed[i].ready.is_none() {
                    continue; // passed, or the setup failure is shown above
                }
                let Some(t) = t else {
                    *out += &format!(
                        "    --- node {}: not run (the guest stopped before)\n",
                        i + 1
                    );
                    continue;
                };
                *out += &format!(
                    "    --- node {} output ({}):\n",
                    i + 1,
                    match rc {
                        Some(rc) if hit_timeout(t, ctx.test_timeout) => {
                            format!("exit status {rc}: TIMEOUT after {} s", ctx.test_timeout)
                        }
                        Some(rc) => format!("exit status {rc}"),
                        None => "did not finish; console up to the end of the guest".into(),
                    }
                );
                *out += &indent(&t.output, 200);
                if rc.is_some() {
                    // kernel lines from before the test are boot noise
                    let since = t.uptime.unwrap_or(0.0);
                    let lines: Vec<String> = parsed[i]
                        .dmesg
                        .iter()
                        .filter(|l| kernel_time(l).is_none_or(|k| k >= since))
                        .cloned()
                        .collect();
                    if !lines.is_empty() {
                        *out += "    --- dmesg and daemon logs:\n";
                        *out += &indent(&lines, 120);
                    }
                }
            }
        }
        tests.push(TestReport {
            name: name.clone(),
            status,
        });
    }
    Ok(JobReport {
        title: job.title(),
        tests,
        setup_error,
    })
}

fn spawn_guest(
    mut cmd: Command,
    node: u32,
    log: PathBuf,
    verbose: bool,
    tag: &str,
) -> Result<Guest> {
    let mut logf = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let _ = writeln!(logf, "CMD: {cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e} (apt-get install -y qemu-system-x86)"))?;
    let t0 = Instant::now();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let logf = Arc::new(Mutex::new(logf));
    let mut readers = Vec::new();
    let streams: Vec<(Box<dyn Read + Send>, &str)> = vec![
        (Box::new(child.stdout.take().unwrap()), ""),
        (Box::new(child.stderr.take().unwrap()), "qemu: "),
    ];
    for (mut stream, prefix) in streams {
        let lines = Arc::clone(&lines);
        let logf = Arc::clone(&logf);
        let tag = format!("[{tag} node{node}]");
        readers.push(std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                if n > 0 {
                    buf.extend_from_slice(&chunk[..n]);
                }
                while let Some(pos) =
                    buf.iter()
                        .position(|&b| b == b'\n')
                        .or(if n == 0 && !buf.is_empty() {
                            Some(buf.len())
                        } else {
                            None
                        })
                {
                    let raw: Vec<u8> = buf.drain(..(pos + 1).min(buf.len())).collect();
                    let text = String::from_utf8_lossy(&raw);
                    let text = format!(
                        "{prefix}{}",
                        text.trim_end_matches(['\n', '\r']).replace('\r', "")
                    );
                    let t = t0.elapsed().as_secs_f64();
                    let _ = writeln!(logf.lock().unwrap(), "[{t:8.3}] {text}");
                    if verbose {
                        println!("{tag} [{t:7.2}] {text}");
                    }
                    lines.lock().unwrap().push((t, text));
                }
                if n == 0 {
                    break;
                }
            }
        }));
    }
    Ok(Guest {
        node,
        child,
        lines,
        readers,
        log,
        exited: None,
        killed: None,
    })
}

fn has_marker(lines: &Mutex<Vec<Line>>, m: &str) -> bool {
    lines.lock().unwrap().iter().any(|(_, l)| l.starts_with(m))
}

#[derive(Default)]
struct TestRun {
    /// Host time of BEGIN.
    begin: f64,
    /// Guest uptime at BEGIN.
    uptime: Option<f64>,
    end: Option<f64>,
    rc: Option<i32>,
    output: Vec<String>,
}

#[derive(Default)]
struct Parsed {
    ready: Option<f64>,
    done: bool,
    setup_failed: Option<String>,
    tests: HashMap<String, TestRun>,
    dmesg: Vec<String>,
}

fn parse_console(lines: &[Line]) -> Parsed {
    let mut p = Parsed::default();
    let mut current: Option<String> = None;
    let mut in_dmesg = false;
    for (t, l) in lines {
        // a marker can follow firmware text that ended without a newline
        if let Some(rest) = l.find("@@VMTEST ").map(|i| &l[i + "@@VMTEST ".len()..]) {
            let mut w = rest.split_whitespace();
            match w.next() {
                Some("READY") => p.ready = Some(*t),
                Some("SETUP_FAILED") => {
                    p.setup_failed = Some(rest["SETUP_FAILED".len()..].trim().to_string())
                }
                Some("BEGIN") => {
                    if let Some(name) = w.next() {
                        current = Some(name.to_string());
                        p.tests.insert(
                            name.to_string(),
                            TestRun {
                                begin: *t,
                                uptime: w
                                    .find_map(|x| x.strip_prefix("uptime="))
                                    .and_then(|u| u.parse().ok()),
                                ..Default::default()
                            },
                        );
                    }
                }
                Some("END") => {
                    if let Some(name) = w.next() {
                        if let Some(tr) = p.tests.get_mut(name) {
                            tr.end = Some(*t);
                            tr.rc = w
                                .find_map(|x| x.strip_prefix("rc="))
                                .and_then(|r| r.parse().ok());
                        }
                    }
                    current = None;
                }
                Some("DMESG") => in_dmesg = true,
                Some("DONE") => {
                    in_dmesg = false;
                    p.done = true;
                }
                _ => {}
            }
            continue;
        }
        if let Some(tr) = current.as_ref().and_then(|c| p.tests.get_mut(c)) {
            tr.output.push(l.clone());
        } else if in_dmesg {
            p.dmesg.push(l.clone());
        }
    }
    p
}

/// Whether a test ran into the guest's per-test timeout (busybox timeout
/// sends SIGTERM: exit status 143).
fn hit_timeout(t: &TestRun, limit: u64) -> bool {
    t.rc == Some(143) && t.end.is_some_and(|e| e - t.begin + 0.5 >= limit as f64)
}

/// The timestamp of a kernel log line ("[   12.345678] ...").
fn kernel_time(l: &str) -> Option<f64> {
    let rest = l.trim_start().strip_prefix('[')?;
    rest.split_once(']')?.0.trim().parse().ok()
}

fn indent(lines: &[String], max: usize) -> String {
    let skip = lines.len().saturating_sub(max);
    let mut s = String::new();
    if skip > 0 {
        s += &format!("    | ... {skip} lines before\n");
    }
    for l in &lines[skip..] {
        s += &format!("    | {l}\n");
    }
    s
}

fn tail(lines: &[Line], max: usize) -> String {
    let v: Vec<String> = lines
        .iter()
        .map(|(t, l)| format!("[{t:7.2}] {l}"))
        .collect();
    indent(&v, max)
}
