//! Running the jobs: one job is one kernel with one or two nodes
//! (`JobSpec`); everything the jobs share (the cache, the userland, the
//! payload, the options) is in `RunCtx`. Jobs run in parallel up to the
//! `--jobs` budget of guests; each builds its initramfs, starts its guests
//! (`qemu`), waits for them and hands the consoles to `report`.

use super::args::Cm;
use super::cache::Cache;
use super::cluster::{self, Userland};
use super::initramfs::Initramfs;
use super::kernel::KernelImage;
use super::payload::{Payload, shell_quote};
use super::qemu;
use super::report::{self, JobReport};
use super::{MULTIARCH, Result};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub(super) struct JobSpec {
    pub(super) kernel: KernelImage,
    pub(super) nodes: u32,
    pub(super) cm: Cm,
}

impl JobSpec {
    pub(super) fn tag(&self) -> String {
        format!("{}-n{}", self.kernel.kernel.label(), self.nodes)
    }
    pub(super) fn title(&self) -> String {
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

pub(super) struct RunCtx {
    pub(super) cache: Cache,
    pub(super) vmdir: PathBuf,
    pub(super) userland: Userland,
    pub(super) nocmd: PathBuf,
    pub(super) payload: Payload,
    pub(super) env: Vec<(String, String)>,
    pub(super) test_timeout: u64,
    pub(super) dev_misc: bool,
    pub(super) mem: Option<u32>,
    pub(super) verbose: bool,
}

/// Runs the jobs, at most `capacity` guests at a time; prints each job's
/// report as it finishes.
pub(super) fn run_jobs(
    ctx: &Arc<RunCtx>,
    jobs: Vec<JobSpec>,
    capacity: usize,
) -> Vec<Result<JobReport>> {
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

fn run_job(ctx: &RunCtx, job: &JobSpec) -> (String, Result<JobReport>) {
    let mut out = String::new();
    let r = run_job_inner(ctx, job, &mut out);
    if let Err(e) = &r {
        out += &format!("vmtest: {}: {e}\n", job.title());
    }
    (out, r)
}

/// The initramfs of a job: busybox and the guest scripts, the kernel
/// modules, the cluster manager (`nocmd` or corosync) and the payload.
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
    ir.bytes("/etc/hosts", cluster::hosts(job.nodes), 0o644);

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
        Cm::Corosync => cluster::add_corosync(&mut ir, ul, job.nodes)?,
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
    if ir.has_private_libs() {
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
        let cmd = qemu::command(ctx, job, node, mem, &initramfs, &sockdir);
        let log = logdir.join(format!("{}-node{node}.log", job.tag()));
        guests.push(qemu::spawn(cmd, node, log, ctx.verbose, &job.tag())?);
    }

    qemu::wait_all(&mut guests, deadline);
    let _ = fs::remove_dir_all(&sockdir);
    Ok(report::job_report(ctx, job, &guests, t0, out))
}
