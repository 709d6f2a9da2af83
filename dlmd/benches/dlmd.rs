//! dlmd benchmarks (a plain `harness = false` program; not a test): run
//! with `cargo bench -p dlmd`. Every figure is a ratio measured in the
//! same run, so the machine's speed cancels out, and each is the median
//! of rounds that measure both sides one after the other (min and max
//! printed too):
//!
//! (a) a synchronous lock+unlock pair (two WRITEs, each answered by one
//!     reply carrying its result) against one bare `SOCK_SEQPACKET` echo
//!     round trip between two processes (`pair_over_echo`, client and
//!     servers on different CPUs; `pair_over_echo_one_cpu`, everything on
//!     one CPU); the floor is 2. (a') the same pair against the round
//!     trip of an echo server built like dlmd's event loop (`epoll_wait`,
//!     `recvmmsg`, `send`) with no lock manager in it
//!     (`pair_over_loop_echo`, `pair_over_loop_echo_one_cpu`): what dlmd's
//!     own work costs above its design's floor of 2;
//! (b) 4 client processes keeping 64 requests each in flight against the
//!     single synchronous client's pairs/s (`pipelined_over_sync`,
//!     `pipelined_over_sync_one_cpu`). The pipelining clients mark their
//!     requests synchronous, as the sync client does, so both sides send
//!     the same messages (a request and one reply carrying its result per
//!     operation) and the figure measures pipelining alone; each reads
//!     a message of replies at a time (dlmd sends the replies to
//!     pipelined requests together, PROTOCOL.md) and sends in batches
//!     (`sendmmsg`);
//! (c) dlmd's resident memory per lock at 1,000,000 held locks, callbacks
//!     drained (`bytes_per_lock`; goal: at most 400 bytes);
//! (d) the synchronous pair of (a) with [`IDLE`] other handles open on
//!     the lockspace, doing nothing, against the pair of (a)
//!     (`idle_handles_over_plain`: what idle handles cost the busy one);
//! (e) creating a lockspace and opening a handle on it with 10,000
//!     lockspaces present against 10 (`lockspaces_10k_over_10`; goal: at
//!     most 2);
//! (f) the synchronous pair with 5,000 other handles attached (10,000
//!     sockets in dlmd) against 10 (`handles_5k_over_10`; goal: at most
//!     1.2); this process raises its soft descriptor limit to the hard
//!     one, and skips the figure when that is too low;
//! (g) a probe client's VERSION round trip while another client reads a
//!     dump of the 1,000,000 locks of (c), against the probe's idle round
//!     trip (`dump_probe_over_idle`: the mean's ratio; the worst case is
//!     printed beside it): a dump is rendered a chunk at a time, so it
//!     should not stall others. `DLMD_BENCH_DUMP_ONLY=1` runs only (c)'s
//!     setup and (g).
//!
//! CPU placement uses the CPUs this process may run on
//! (`sched_getaffinity`): "split" puts the clients on the first of them
//! and the servers (dlmd, the echo server) on the second, "one CPU" puts
//! everything on the first. By default (a) and (b) run in both (split
//! needs two CPUs); `DLMD_BENCH_CPUS=same`, `split` or `free` (the
//! scheduler decides) runs one. `DLMD_BENCH_QUICK=1` runs smaller counts.
//! With `DLM_BENCH_JSON` set (`cargo xtask bench --json`) the figures also
//! go to stdout as machine lines (`dlm-engine/benches/report/mod.rs`).
//! The same executable is also the echo server and the pipelining client
//! processes (selected by `DLMD_BENCH_ROLE`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../src/recv.rs"]
mod recv;
#[path = "../../dlm-engine/benches/report/mod.rs"]
mod report;

use common::*;
use dlm_core::codec::Version;
use dlm_core::dlmd::proto::{self, Op};
use dlm_core::{LockFlags, LockParams, LsFlags, Mode, RemoveFlags, Request, Status};
use report::Report;
use rustix::net::{self, RecvFlags, SendFlags};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

const WORKERS: usize = 4;
const IN_FLIGHT: usize = 64;
/// Idle handles for (d): two sockets each, under the usual 1024-fd limit.
const IDLE: usize = 400;

fn main() {
    if let Ok(role) = std::env::var("DLMD_BENCH_ROLE") {
        let path = PathBuf::from(std::env::var_os("DLMD_BENCH_SOCKET").expect("socket"));
        match role.as_str() {
            "echo" => echo_server(&path),
            "loop-echo" => loop_echo_server(&path),
            "pipeline" => pipeline_worker(&path),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let placements: Vec<Placement> = match std::env::var("DLMD_BENCH_CPUS").as_deref() {
        Ok("same") => vec![Placement::Same],
        Ok("split") => vec![Placement::Split],
        Ok("free") => vec![Placement::Free],
        Ok("") | Err(_) if cpus().len() >= 2 => vec![Placement::Split, Placement::Same],
        Ok("") | Err(_) => {
            eprintln!("dlmd bench: one CPU allowed, so no split placement");
            vec![Placement::Same]
        }
        Ok(other) => panic!("DLMD_BENCH_CPUS is same, split or free, not {other:?}"),
    };
    if placements == [Placement::Split] && cpus().len() < 2 {
        panic!(
            "DLMD_BENCH_CPUS=split needs two CPUs; this process may use {:?}",
            cpus()
        );
    }
    let quick = std::env::var_os("DLMD_BENCH_QUICK").is_some();
    let scale = if quick { 10 } else { 1 };
    // The profiling runs below keep one placement: the one asked for, or
    // the scheduler's.
    let explicit = std::env::var("DLMD_BENCH_CPUS").is_ok_and(|v| !v.is_empty());
    place(
        if explicit {
            placements[0]
        } else {
            Placement::Free
        },
        None,
    );
    if let Ok(n) = std::env::var("DLMD_BENCH_SYNC_ONLY") {
        // For profiling: only the synchronous client, this many pairs.
        let d = start_dlmd();
        let mut ctl = Control::connect(&d.path);
        assert!(ctl.create("bench", LsFlags::empty(), 0o666) >= 0);
        let pair = sync_pairs(&d.path, n.parse().unwrap());
        println!("sync lock+unlock pair via dlmd: {:.2} us", pair * 1e6);
        return;
    }
    if std::env::var_os("DLMD_BENCH_DUMP_ONLY").is_some() {
        // Only (c) and (e): the memory and the probe during a dump.
        let n = 1_000_000 / scale;
        let (_, _, (idle, busy)) = memory(n);
        println!(
            "(g) probe round trip during a {n}-lock dump / idle = {:.2}x mean, {:.2}x worst",
            busy.mean / idle.mean,
            busy.worst / idle.worst
        );
        return;
    }
    if let Ok(secs) = std::env::var("DLMD_BENCH_PIPELINE_ONLY") {
        // For profiling: only the pipelined clients, for this long.
        let d = start_dlmd();
        let mut ctl = Control::connect(&d.path);
        assert!(ctl.create("bench", LsFlags::empty(), 0o666) >= 0);
        let (agg, _, _) = pipelined(&d.path, secs.parse().unwrap());
        println!("{WORKERS} clients x {IN_FLIGHT} in flight: {agg:.0} pairs/s");
        return;
    }

    let out = Report::from_env();
    let rounds = if quick { 3 } else { 5 };
    let d = start_dlmd();
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("bench", LsFlags::empty(), 0o666) >= 0);
    let version = version_round_trip(&d.path, 100_000 / scale);
    out.line(format!(
        "VERSION round trip via dlmd (request, one reply): {:.2} us",
        version * 1e6
    ));

    // (a) and (b): per round, in each placement: echo, sync pair, pipelined.
    let secs = if quick { 1.0 } else { 2.0 };
    let n = placements.len();
    let (mut rtt, mut pair, mut piped) = (vec![vec![]; n], vec![vec![]; n], vec![vec![]; n]);
    let (mut a, mut a2, mut b) = (vec![vec![]; n], vec![vec![]; n], vec![vec![]; n]);
    let (mut cpu, mut done) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..rounds {
        for (k, &p) in placements.iter().enumerate() {
            place(p, Some(d.child.id()));
            let r = echo_round_trip("echo", 100_000 / scale);
            let r2 = echo_round_trip("loop-echo", 100_000 / scale);
            let s = sync_pairs(&d.path, 50_000 / scale);
            let cpu0 = cpu_seconds(d.child.id());
            let (agg, total, _) = pipelined(&d.path, secs);
            cpu[k] += cpu_seconds(d.child.id()) - cpu0;
            done[k] += total;
            rtt[k].push(r);
            pair[k].push(s);
            piped[k].push(agg);
            a[k].push(s / r);
            a2[k].push(s / r2);
            b[k].push(agg * s);
        }
    }
    for (k, &p) in placements.iter().enumerate() {
        let (sa, sb) = (report::Stats::of(&a[k]), report::Stats::of(&b[k]));
        let pair_us = report::median(&pair[k]) * 1e6;
        out.line(format!(
            "[{}] echo round trip (2 processes, SOCK_SEQPACKET): {:.2} us; sync lock+unlock \
             pair via dlmd: {pair_us:.2} us",
            p.label(),
            report::median(&rtt[k]) * 1e6
        ));
        out.ratio(
            &format!("pair_over_echo{}", p.suffix()),
            sa,
            format!("[{}] (a) pair / echo round trip = {sa}", p.label()),
        );
        let sa2 = report::Stats::of(&a2[k]);
        out.ratio(
            &format!("pair_over_loop_echo{}", p.suffix()),
            sa2,
            format!(
                "[{}] (a') pair / event-loop echo round trip = {sa2} (floor of the design: 2)",
                p.label()
            ),
        );
        out.line(format!(
            "[{}] sync client: {:.0} pairs/s; {WORKERS} clients x {IN_FLIGHT} in flight: {:.0} pairs/s",
            p.label(),
            1e6 / pair_us,
            report::median(&piped[k])
        ));
        out.ratio(
            &format!("pipelined_over_sync{}", p.suffix()),
            sb,
            format!(
                "[{}] (b) pipelined aggregate / sync client = {sb}",
                p.label()
            ),
        );
        // What dlmd itself spends, independent of how many CPUs the
        // clients compete for: its CPU time per pipelined pair.
        let per_pair = cpu[k] / done[k];
        out.line(format!(
            "[{}]     dlmd CPU per pipelined pair: {:.2} us; on a core of its own dlmd would \
             serve {:.0} pairs/s = {:.1}x the sync client",
            p.label(),
            per_pair * 1e6,
            1.0 / per_pair,
            (1.0 / per_pair) / (1e6 / pair_us)
        ));
    }

    // (d): idle handles, in the first placement.
    place(placements[0], Some(d.child.id()));
    let mut busy = Vec::new();
    let sd = out.rounds(rounds, || {
        let plain = sync_pairs(&d.path, 50_000 / scale);
        let idle: Vec<Handle> = (0..IDLE).map(|_| Handle::open(&d.path, "bench")).collect();
        let with = sync_pairs(&d.path, 50_000 / scale);
        drop(idle);
        busy.push(with);
        with / plain
    });
    out.ratio(
        "idle_handles_over_plain",
        sd,
        format!(
            "(d) pair with {IDLE} idle handles open / pair = {sd} ({:.2} us)",
            report::median(&busy) * 1e6
        ),
    );
    drop(ctl);
    drop(d);

    // (e) and (f): two daemons side by side, one with few and one with
    // many lockspaces or handles, measured alternately.
    growth(&out, placements[0], rounds, scale);

    place(Placement::Free, None);
    let n = 1_000_000 / scale;
    let (base, rss, probe) = memory(n);
    out.line(format!(
        "dlmd RSS: {:.1} MiB idle, {:.1} MiB with {n} locks held",
        base as f64 / 1048576.0,
        rss as f64 / 1048576.0
    ));
    let per_lock = rss as f64 / f64::from(n);
    out.size(
        "bytes_per_lock",
        per_lock.round(),
        format!(
            "(c) {per_lock:.0} bytes per lock (RSS / locks; {:.0} counting only the growth) (goal <= 400)",
            (rss - base) as f64 / f64::from(n)
        ),
    );
    let (idle, busy) = probe;
    let mean = busy.mean / idle.mean;
    out.ratio(
        "dump_probe_over_idle",
        report::Stats {
            median: mean,
            min: mean,
            max: mean,
        },
        format!(
            "(g) probe round trip during a {n}-lock dump / idle = {mean:.2}x mean ({:.1} us / \
             {:.1} us), {:.2}x worst ({:.2} ms / {:.2} ms; {} round trips during the dump)",
            busy.mean * 1e6,
            idle.mean * 1e6,
            busy.worst / idle.worst,
            busy.worst * 1e3,
            idle.worst * 1e3,
            busy.count
        ),
    );
    out.finish();
}

/// (e) creating and opening a lockspace with 10,000 lockspaces present
/// against 10 (`lockspaces_10k_over_10`); (f) a synchronous pair with
/// 5,000 other handles attached against 10 (`handles_5k_over_10`).
fn growth(out: &Report, p: Placement, rounds: usize, scale: u32) {
    place(p, None);
    let few = start_dlmd();
    let many = start_dlmd();
    let mut ctl_few = Control::connect(&few.path);
    let mut ctl_many = Control::connect(&many.path);
    for (ctl, n) in [(&mut ctl_few, 10), (&mut ctl_many, 10_000 / scale)] {
        for i in 0..n {
            assert!(ctl.create(&format!("fill-{i}"), LsFlags::empty(), 0o666) >= 0);
        }
    }
    let k = 200 / scale.min(2) as usize;
    let (mut t_few, mut t_many) = (Vec::new(), Vec::new());
    let mut round = 0;
    let se = out.rounds(rounds, || {
        round += 1;
        let a = create_open(&few, &mut ctl_few, &format!("a{round}"), k);
        let b = create_open(&many, &mut ctl_many, &format!("b{round}"), k);
        t_few.push(a);
        t_many.push(b);
        b / a
    });
    out.ratio(
        "lockspaces_10k_over_10",
        se,
        format!(
            "(e) create + open a lockspace with {} others present / with 10 = {se} \
             ({:.1} us vs {:.1} us)",
            10_000 / scale,
            report::median(&t_many) * 1e6,
            report::median(&t_few) * 1e6
        ),
    );

    // Each handle is two sockets here and two in dlmd (which raises its
    // own limit to the hard one).
    let n = 5_000 / scale;
    if !raise_fd_limit(2 * n as u64 + 200) {
        out.line(format!(
            "(f) skipped: {} handles need {} descriptors in this process (hard limit too low)",
            n,
            2 * n + 200
        ));
        return;
    }
    for ctl in [&mut ctl_few, &mut ctl_many] {
        assert!(ctl.create("bench", LsFlags::empty(), 0o666) >= 0);
    }
    let _few_handles: Vec<Handle> = (0..10).map(|_| Handle::open(&few.path, "bench")).collect();
    let _many_handles: Vec<Handle> = (0..n).map(|_| Handle::open(&many.path, "bench")).collect();
    let (mut p_few, mut p_many) = (Vec::new(), Vec::new());
    let sf = out.rounds(rounds, || {
        let a = sync_pairs(&few.path, 20_000 / scale);
        let b = sync_pairs(&many.path, 20_000 / scale);
        p_few.push(a);
        p_many.push(b);
        b / a
    });
    out.ratio(
        "handles_5k_over_10",
        sf,
        format!(
            "(f) pair with {n} other handles attached / with 10 = {sf} ({:.2} us vs {:.2} us)",
            report::median(&p_many) * 1e6,
            report::median(&p_few) * 1e6
        ),
    );
}

/// Round-trip times of a probe client.
struct Trips {
    mean: f64,
    worst: f64,
    count: usize,
}

/// VERSION round trips on `probe` until `stop` says so (at least `min`).
fn trips(probe: &mut Control, min: usize, stop: &dyn Fn() -> bool) -> Trips {
    let (mut total, mut worst, mut count) = (0.0, 0.0f64, 0usize);
    while count < min || !stop() {
        let t = Instant::now();
        assert_eq!(probe.version().0, 0);
        let dt = t.elapsed().as_secs_f64();
        total += dt;
        worst = worst.max(dt);
        count += 1;
    }
    Trips {
        mean: total / count as f64,
        worst,
        count,
    }
}

/// The probe's round trips idle, then while another client reads the
/// whole dump of lockspace "mem".
fn probe_during_dump(path: &Path) -> (Trips, Trips) {
    let mut probe = Control::connect(path);
    let idle = trips(&mut probe, 2000, &|| true);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, done) = (path.to_owned(), done.clone());
        std::thread::spawn(move || {
            let text = Control::connect(&path).dump(Some("mem")).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            text.len()
        })
    };
    let busy = trips(&mut probe, 1, &|| {
        done.load(std::sync::atomic::Ordering::SeqCst)
    });
    assert!(reader.join().unwrap() > 0);
    (idle, busy)
}

/// Seconds per creation and opening (a handle, both sockets) of one of
/// `k` new lockspaces on `d`; afterwards (not timed) the handles close
/// and the lockspaces go again.
fn create_open(d: &Daemon, ctl: &mut Control, tag: &str, k: usize) -> f64 {
    let mut handles = Vec::with_capacity(k);
    let mut minors = Vec::with_capacity(k);
    let t = Instant::now();
    for i in 0..k {
        let name = format!("{tag}-{i}");
        let minor = ctl.create(&name, LsFlags::empty(), 0o666);
        assert!(minor >= 0, "create {name}: {minor}");
        minors.push(minor as u32);
        handles.push(Handle::open(&d.path, &name));
    }
    let secs = t.elapsed().as_secs_f64() / k as f64;
    drop(handles);
    for minor in minors {
        let mut tries = 0;
        loop {
            let rc = ctl.remove(minor, RemoveFlags::empty());
            if rc == 0 {
                break;
            }
            // The hang-ups of the handles may still be on their way.
            tries += 1;
            assert!(tries < 1000, "remove minor {minor}: {rc}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    secs
}

/// Raises this process's soft descriptor limit to the hard one; whether
/// it is then at least `need`.
fn raise_fd_limit(need: u64) -> bool {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile)
        .current
        .is_none_or(|cur| cur >= need)
}

/// Where the benchmark's processes run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    /// Wherever the scheduler puts them.
    Free,
    /// Everything on the first allowed CPU.
    Same,
    /// Clients on the first allowed CPU, servers on the second.
    Split,
}

impl Placement {
    fn label(self) -> &'static str {
        match self {
            Placement::Free => "scheduler",
            Placement::Same => "one CPU",
            Placement::Split => "split CPUs",
        }
    }

    /// The suffix of its figures' keys.
    fn suffix(self) -> &'static str {
        match self {
            Placement::Free => "_scheduler",
            Placement::Same => "_one_cpu",
            Placement::Split => "",
        }
    }
}

/// The placement servers started now get.
static PLACEMENT: AtomicU8 = AtomicU8::new(0);

/// The CPUs this process may run on, as found at the start.
fn allowed() -> &'static rustix::thread::CpuSet {
    static SET: OnceLock<rustix::thread::CpuSet> = OnceLock::new();
    SET.get_or_init(|| rustix::thread::sched_getaffinity(None).expect("sched_getaffinity"))
}

/// The numbers of the CPUs this process may run on.
fn cpus() -> Vec<usize> {
    let set = allowed();
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect()
}

/// Places this process (and so the clients it starts) and `server` as
/// `p` says, and makes `p` the placement of servers started later.
fn place(p: Placement, server: Option<u32>) {
    PLACEMENT.store(p as u8, Ordering::Relaxed);
    let cpus = cpus();
    let (client, srv) = match p {
        Placement::Free => (None, None),
        Placement::Same => (Some(cpus[0]), Some(cpus[0])),
        Placement::Split => (Some(cpus[0]), Some(cpus[1])),
    };
    pin(None, client);
    if let Some(pid) = server {
        pin(Some(pid), srv);
    }
}

/// Pins process `pid` (`None`: this one) to `cpu` (`None`: every CPU it
/// was allowed at the start).
fn pin(pid: Option<u32>, cpu: Option<usize>) {
    let set = match cpu {
        Some(c) => {
            let mut set = rustix::thread::CpuSet::new();
            set.set(c);
            set
        }
        None => *allowed(),
    };
    let pid = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32));
    rustix::thread::sched_setaffinity(pid, &set).expect("sched_setaffinity");
}

/// Places a server process started now as the current placement says.
fn place_server(pid: u32) {
    let cpus = cpus();
    let cpu = match PLACEMENT.load(Ordering::Relaxed) {
        x if x == Placement::Same as u8 => Some(cpus[0]),
        x if x == Placement::Split as u8 => Some(cpus[1]),
        _ => None,
    };
    pin(Some(pid), cpu);
}

/// Starts dlmd, placed as the current placement says.
fn start_dlmd() -> Daemon {
    let d = Daemon::start("dlmd");
    place_server(d.child.id());
    d
}
fn spawn_role(role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("DLMD_BENCH_ROLE", role)
        .env("DLMD_BENCH_SOCKET", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_line(child: &mut Child, want: &str) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "worker died");
        if line.trim() == want {
            return out;
        }
    }
}

/// An echo server's listening socket at `path`, once it has said "ready"
/// on stdout.
fn listen_ready(path: &Path) -> OwnedFd {
    let l = net::socket(net::AddressFamily::UNIX, net::SocketType::SEQPACKET, None).unwrap();
    net::bind(&l, &net::SocketAddrUnix::new(path).unwrap()).unwrap();
    net::listen(&l, 1).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    l
}

/// The echo server process: one connection, every message sent back.
fn echo_server(path: &Path) {
    let c = net::accept(listen_ready(path)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match net::recv(&c, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) | Err(_) => return,
            Ok((n, _)) => {
                net::send(&c, &buf[..n], SendFlags::NOSIGNAL).unwrap();
            }
        }
    }
}

/// The event-loop echo server process: one connection, served the way
/// dlmd serves its sockets (non-blocking, `epoll_wait`, then `recvmmsg`
/// for a batch, a `send` per message) but doing nothing with a message
/// except send it back: the floor of dlmd's design, with no lock manager
/// in it.
fn loop_echo_server(path: &Path) {
    use rustix::event::epoll;
    let c = net::accept_with(listen_ready(path), net::SocketFlags::NONBLOCK).unwrap();
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(&ep, &c, epoll::EventData::new_u64(1), epoll::EventFlags::IN).unwrap();
    let mut rx = recv::RecvBatch::new();
    let mut events: Vec<epoll::Event> = Vec::with_capacity(8);
    loop {
        events.clear();
        epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None).unwrap();
        loop {
            let n = match rx.recv(c.as_fd(), recv::BATCH) {
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => return,
            };
            for i in 0..n {
                let msg = rx.get(i).0;
                if msg.is_empty() {
                    return;
                }
                net::send(&c, msg, SendFlags::NOSIGNAL).unwrap();
            }
            if n < recv::BATCH {
                break;
            }
        }
    }
}

/// Seconds per echo round trip of a 24-byte message (a reply's size)
/// through the server of `role` ("echo" or "loop-echo"), after a warm-up.
fn echo_round_trip(role: &str, n: u32) -> f64 {
    let dir = temp_dir();
    let path = dir.join("echo.sock");
    let mut server = spawn_role(role, &path);
    place_server(server.id());
    let _out = wait_line(&mut server, "ready");
    let fd = connect(&path);
    let msg = [7u8; proto::REPLY_LEN];
    let mut buf = [0u8; 64];
    let mut run = |n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            net::send(&fd, &msg, SendFlags::NOSIGNAL).unwrap();
            let (got, _) = net::recv(&fd, &mut buf, RecvFlags::empty()).unwrap();
            assert_eq!(got, msg.len());
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    run(n / 10);
    let t = run(n);
    drop(fd);
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    t
}

/// Sends one WRITE of `req` with sequence number `seq`, from a stack
/// buffer (as the C library does: no allocation per request).
fn send_write(fd: &OwnedFd, seq: u32, tid: u32, req: &Request) {
    send_write_word(fd, seq, tid, req, 0);
}

/// [`send_write`] with the header's `reserved` word (a synchronous
/// request's [`proto::write_word`]).
fn send_write_word(fd: &OwnedFd, seq: u32, tid: u32, req: &Request, word: u32) {
    let mut m = [0u8; proto::MAX_REQUEST_MSG];
    let len = write_msg(&mut m, seq, tid, req, word);
    net::send(fd, &m[..len], SendFlags::NOSIGNAL).unwrap();
}

/// Builds one WRITE message in `m`; returns its length.
fn write_msg(
    m: &mut [u8; proto::MAX_REQUEST_MSG],
    seq: u32,
    tid: u32,
    req: &Request,
    word: u32,
) -> usize {
    let bytes = req.encode(Version::DEVICE);
    for (i, w) in [Op::Write as u32, seq, tid, word].iter().enumerate() {
        m[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    m[proto::HEADER_LEN..proto::HEADER_LEN + bytes.len()].copy_from_slice(&bytes);
    proto::HEADER_LEN + bytes.len()
}

/// Receives the reply to a synchronous `seq` into a stack buffer; returns
/// `ret` and the result riding in it, if any.
fn recv_ret_result(fd: &OwnedFd, seq: u32) -> (i64, Option<dlm_core::LockResult>) {
    let mut buf = [0u8; proto::REPLY_LEN + proto::RESULT_IN_REPLY_MAX];
    let (n, _) = net::recv(fd, &mut buf, RecvFlags::empty()).unwrap();
    let (ret, rest) = proto::parse_reply(&buf[..n], seq).unwrap();
    (
        ret,
        (!rest.is_empty()).then(|| dlm_core::LockResult::decode(rest).unwrap()),
    )
}

/// Receives one result into a stack buffer.
fn recv_result(fd: &OwnedFd) -> dlm_core::LockResult {
    let mut buf = [0u8; 128];
    let (n, _) = net::recv(fd, &mut buf, RecvFlags::empty()).unwrap();
    dlm_core::LockResult::decode(&buf[..n]).unwrap()
}

/// Seconds per VERSION request and reply on a control connection: dlmd's
/// own round trip, without the engine or a result message.
fn version_round_trip(path: &Path, n: u32) -> f64 {
    let fd = connect(path);
    let mut buf = [0u8; 64];
    let mut seq = 0u32;
    let mut run = |n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            seq += 1;
            let mut m = [0u8; proto::HEADER_LEN];
            m[..4].copy_from_slice(&(Op::Version as u32).to_ne_bytes());
            m[4..8].copy_from_slice(&seq.to_ne_bytes());
            m[12..16].copy_from_slice(&proto::PROTOCOL_VERSION.to_ne_bytes());
            net::send(&fd, &m, SendFlags::NOSIGNAL).unwrap();
            let (got, _) = net::recv(&fd, &mut buf, RecvFlags::empty()).unwrap();
            assert_eq!(proto::parse_reply(&buf[..got], seq).unwrap().0, 0);
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    run(n / 10);
    (0..3).map(|_| run(n)).fold(f64::MAX, f64::min)
}

/// Seconds per synchronous lock+unlock pair from one client (WRITE
/// marked synchronous, its reply with the completion riding in it;
/// twice), after a warm-up.
fn sync_pairs(path: &Path, n: u32) -> f64 {
    let h = Handle::open(path, "bench");
    let tid = std::process::id();
    let mut seq = 0u32;
    // Results read from the callback socket (none when every completion
    // rides in its reply).
    let mut taken = 0u32;
    let mut run = |n: u32| {
        let t = Instant::now();
        for i in 0..n {
            seq += 1;
            send_write_word(
                &h.req,
                seq,
                tid,
                &lock_req("sync", Mode::Ex, LockFlags::empty(), u64::from(i), 0),
                proto::write_word(true, taken),
            );
            let (lkid, rode) = recv_ret_result(&h.req, seq);
            assert!(lkid > 0);
            let granted = rode.unwrap_or_else(|| {
                taken += 1;
                recv_result(&h.cb)
            });
            assert_eq!(granted.status, Status::GRANTED);
            seq += 1;
            let unlock = Request::Unlock(LockParams {
                lkid: lkid as u32,
                lksb: lksb_of(0),
                ..LockParams::default()
            });
            send_write_word(&h.req, seq, tid, &unlock, proto::write_word(true, taken));
            let (ret, rode) = recv_ret_result(&h.req, seq);
            assert_eq!(ret, 0);
            let unlocked = rode.unwrap_or_else(|| {
                taken += 1;
                recv_result(&h.cb)
            });
            assert_eq!(unlocked.status, Status::UNLOCKED);
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    run(n / 10);
    run(n)
}

/// Aggregate pairs/s of [`WORKERS`] pipelining client processes, the
/// pairs done, and the longest worker's run time.
fn pipelined(path: &Path, secs: f64) -> (f64, f64, f64) {
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| spawn_role("pipeline", path)).collect();
    let mut outs: Vec<_> = workers.iter_mut().map(|w| wait_line(w, "ready")).collect();
    // Start together, stop together.
    let go = format!("{secs}\n");
    for w in &mut workers {
        w.stdin.as_mut().unwrap().write_all(go.as_bytes()).unwrap();
    }
    let (mut rate, mut pairs, mut longest) = (0.0, 0.0, 0.0f64);
    for (w, out) in workers.iter_mut().zip(&mut outs) {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let (p, elapsed) = line.trim().split_once(' ').expect("worker result");
        let (p, elapsed) = (p.parse::<f64>().unwrap(), elapsed.parse::<f64>().unwrap());
        rate += p / elapsed;
        pairs += p;
        longest = longest.max(elapsed);
        w.wait().unwrap();
    }
    (rate, pairs, longest)
}

/// A pipelining client: 64 lock/unlock pairs in flight on its own
/// resources, as an asynchronous client does it: it takes the replies
/// of one message (with the results riding in them), and sends the
/// follow-up requests together (`sendmmsg`). Prints "pairs seconds".
fn pipeline_worker(path: &Path) {
    let h = Handle::open(path, "bench");
    let me = std::process::id();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let secs: f64 = go.trim().parse().unwrap();

    let names: Vec<String> = (0..IN_FLIGHT).map(|i| format!("p{me}-{i}")).collect();
    let lock = |slot: usize| lock_req(&names[slot], Mode::Ex, LockFlags::empty(), slot as u64, 0);
    // In flight, in order: (slot, is_unlock).
    let mut fifo = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    let mut outgoing = Outgoing::new(me);
    for slot in 0..IN_FLIGHT {
        outgoing.push(&lock(slot));
        fifo.push_back((slot, false));
    }
    outgoing.send(&h.req);
    let mut pairs = 0u64;
    let mut expect = 0u32;
    let mut buf = [0u8; proto::REPLIES_MAX_MSG];
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(secs);
    let mut stopping = false;
    while !fifo.is_empty() {
        // The next message of replies (dlmd sends the replies to
        // pipelined requests together).
        let (n, _) = net::recv(&h.req, &mut buf, RecvFlags::empty()).unwrap();
        for reply in proto::split_replies(&buf[..n]) {
            let (slot, is_unlock) = fifo.pop_front().unwrap();
            expect = expect.wrapping_add(1);
            let (ret, rode) = proto::parse_reply(reply.unwrap(), expect).unwrap();
            assert!(ret >= 0, "ret {ret}");
            // Each worker's resources are its own, so every request
            // completes at once and its result rides in the reply.
            assert!(
                !rode.is_empty(),
                "a pipelined request did not complete at once"
            );
            if is_unlock {
                pairs += 1;
                if !stopping && pairs % 64 == 0 && Instant::now() >= stop {
                    stopping = true;
                }
                if !stopping {
                    outgoing.push(&lock(slot));
                    fifo.push_back((slot, false));
                }
            } else {
                outgoing.push(&Request::Unlock(LockParams {
                    lkid: ret as u32,
                    lksb: lksb_of(0),
                    ..LockParams::default()
                }));
                fifo.push_back((slot, true));
            }
        }
        outgoing.send(&h.req);
    }
    println!("{pairs} {}", start.elapsed().as_secs_f64());
}

/// Encoded WRITE messages waiting to be sent together.
struct Outgoing {
    tid: u32,
    seq: u32,
    msgs: Vec<([u8; proto::MAX_REQUEST_MSG], usize)>,
}

impl Outgoing {
    fn new(tid: u32) -> Outgoing {
        Outgoing {
            tid,
            seq: 0,
            msgs: Vec::with_capacity(IN_FLIGHT),
        }
    }

    fn push(&mut self, req: &Request) {
        self.seq = self.seq.wrapping_add(1);
        let mut m = [0u8; proto::MAX_REQUEST_MSG];
        // Synchronous: the result rides in the reply (see (b)).
        let len = write_msg(&mut m, self.seq, self.tid, req, proto::write_word(true, 0));
        self.msgs.push((m, len));
    }

    fn send(&mut self, fd: &OwnedFd) {
        let iovs: Vec<[std::io::IoSlice<'_>; 1]> = self
            .msgs
            .iter()
            .map(|(m, len)| [std::io::IoSlice::new(&m[..*len])])
            .collect();
        let mut ctrls: Vec<net::SendAncillaryBuffer<'_, '_, '_>> =
            iovs.iter().map(|_| Default::default()).collect();
        let mut hdrs: Vec<net::MMsgHdr<'_>> = iovs
            .iter()
            .zip(ctrls.iter_mut())
            .map(|(iov, c)| net::MMsgHdr::new(iov, c))
            .collect();
        let mut done = 0;
        while done < hdrs.len() {
            done += net::sendmmsg(fd, &mut hdrs[done..], SendFlags::NOSIGNAL).unwrap();
        }
        drop(hdrs);
        self.msgs.clear();
    }
}

/// Reads every result queued on a callback socket.
fn drain(cb: &OwnedFd) {
    let mut buf = [0u8; 128];
    while let Ok((n, _)) = net::recv(cb, &mut buf, RecvFlags::DONTWAIT) {
        if n == 0 {
            return;
        }
    }
}

/// User plus system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the parenthesised command name; utime and stime
    // are fields 14 and 15 of the whole line, in clock ticks (100 Hz).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// (idle RSS, RSS with `n` locks held, the probe figures of (e)) of a
/// fresh dlmd.
fn memory(n: u32) -> (u64, u64, (Trips, Trips)) {
    let d = start_dlmd();
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("mem", LsFlags::empty(), 0) >= 0);
    let h = Handle::open(&d.path, "mem");
    let base = d.rss();
    let window = 256u32;
    let mut buf = [0u8; proto::REPLIES_MAX_MSG];
    let mut sent = 0u32;
    let mut done = 0u32;
    while done < n {
        while sent < n && sent - done < window {
            let req = lock_req(&format!("m{sent:07}"), Mode::Ex, LockFlags::empty(), 0, 0);
            send_write(&h.req, sent, 1, &req);
            sent += 1;
        }
        // The replies to pipelined requests travel together.
        let (len, _) = net::recv(&h.req, &mut buf, RecvFlags::empty()).unwrap();
        for reply in proto::split_replies(&buf[..len]) {
            let (ret, _) = proto::parse_reply(reply.unwrap(), done).unwrap();
            assert!(ret > 0);
            done += 1;
        }
        drain(&h.cb);
    }
    drain(&h.cb);
    let rss = d.rss();
    // Every grant was read and every lock is held (checked after the
    // measurement: the dump itself takes memory).
    let head = ctl.dump(Some("mem")).unwrap();
    let first = head.lines().next().unwrap_or("").to_owned();
    assert!(first.contains(&format!(" nlocks {n} ")), "{first}");
    let probe = probe_during_dump(&d.path);
    drop(h);
    (base, rss, probe)
}
