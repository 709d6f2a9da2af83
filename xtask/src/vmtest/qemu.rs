//! The qemu side of a job: the command line of one guest (TCG, one CPU,
//! the serial console on stdio, the `vmtest.*` kernel parameters the
//! guest's `/init` reads, and for two nodes the link from `cluster`),
//! starting it with reader threads that timestamp and log its console,
//! and waiting for all guests of a job: when one stops, the others get a
//! short grace period; at the job's deadline all are killed.

use super::Result;
use super::cluster;
use super::runner::{JobSpec, RunCtx};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One console line: seconds since qemu started, text.
pub(super) type Line = (f64, String);

pub(super) struct Guest {
    pub(super) node: u32,
    child: Child,
    pub(super) lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub(super) log: PathBuf,
    pub(super) exited: Option<(Instant, String)>,
    pub(super) killed: Option<String>,
}

/// The qemu command line of guest `node` of `job`.
pub(super) fn command(
    ctx: &RunCtx,
    job: &JobSpec,
    node: u32,
    mem: u32,
    initramfs: &Path,
    sockdir: &Path,
) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-smp", "1", "-m"])
        .arg(mem.to_string())
        .arg("-kernel")
        .arg(&job.kernel.vmlinux)
        .arg("-initrd")
        .arg(initramfs)
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
        cluster::add_link(&mut cmd, sockdir, node);
    }
    cmd
}

/// Starts one guest; its console goes to `log` (and to stdout with
/// `--verbose`, prefixed with the job's tag and the node).
pub(super) fn spawn(
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

/// Waits until every guest has exited (or was killed), then for their
/// console readers; a killed guest's log says why.
pub(super) fn wait_all(guests: &mut [Guest], deadline: Instant) {
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
}

fn has_marker(lines: &Mutex<Vec<Line>>, m: &str) -> bool {
    lines.lock().unwrap().iter().any(|(_, l)| l.starts_with(m))
}
