//! dlmd benchmarks (a plain `harness = false` program; not a test): run
//! with `cargo bench -p dlmd`. Every figure is a ratio measured in the
//! same run, so the machine's speed cancels out:
//!
//! (a) a synchronous lock+unlock pair (WRITE, reply, cast; twice) against
//!     one bare `SOCK_SEQPACKET` echo round trip between two processes
//!     (goal: at most 2.5x);
//! (b) 4 client processes keeping 64 requests each in flight against the
//!     single synchronous client's pairs/s (goal: at least 5x);
//! (c) dlmd's resident memory per lock at 1,000,000 held locks, callbacks
//!     drained (goal: at most 400 bytes);
//! (d) the synchronous pair of (a) with [`IDLE`] other handles open on
//!     the lockspace, doing nothing, against the pair of (a) (reported:
//!     what idle handles cost the busy one);
//! (e) a probe client's VERSION round trip while another client reads a
//!     dump of the 1,000,000 locks of (c), against the probe's idle round
//!     trip (reported: mean and worst; a dump is rendered a chunk at a
//!     time, so it should not stall others).
//!
//! `DLMD_BENCH_QUICK=1` runs smaller counts; `DLMD_BENCH_DUMP_ONLY=1`
//! only (c)'s setup and (e). `DLMD_BENCH_CPUS=same` pins
//! every process to CPU 0 (wake-ups are cheap, system calls dominate);
//! `DLMD_BENCH_CPUS=split` pins the clients to CPU 0 and the servers
//! (dlmd, the echo server) to CPU 1 (every wake-up crosses CPUs); by
//! default the scheduler decides. The same executable is also
//! the echo server and the pipelining client processes (selected by
//! `DLMD_BENCH_ROLE`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use dlm_core::codec::Version;
use dlm_core::dlmd::proto::{self, Op};
use dlm_core::{LockFlags, LockParams, LsFlags, Mode, Request, Status};
use rustix::net::{self, RecvFlags, SendFlags};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
            "pipeline" => pipeline_worker(&path),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    match std::env::var("DLMD_BENCH_CPUS").as_deref() {
        Ok("same") | Ok("split") => pin(None, 0),
        Ok("") | Err(_) => {}
        Ok(other) => panic!("DLMD_BENCH_CPUS is same or split, not {other:?}"),
    }
    let quick = std::env::var_os("DLMD_BENCH_QUICK").is_some();
    let scale = if quick { 10 } else { 1 };
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
            "(e) probe round trip during a {n}-lock dump / idle = {:.2}x mean, {:.2}x worst",
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

    let rtt = echo_round_trip(200_000 / scale);
    println!(
        "echo round trip (2 processes, SOCK_SEQPACKET): {:.2} us",
        rtt * 1e6
    );

    let d = start_dlmd();
    let mut ctl = Control::connect(&d.path);
    assert!(ctl.create("bench", LsFlags::empty(), 0o666) >= 0);
    let version = version_round_trip(&d.path, 100_000 / scale);
    println!(
        "VERSION round trip via dlmd (request, one reply): {:.2} us = {:.2}x echo",
        version * 1e6,
        version / rtt
    );
    let pair = sync_pairs(&d.path, 100_000 / scale);
    println!("sync lock+unlock pair via dlmd: {:.2} us", pair * 1e6);
    println!(
        "(a) pair / echo round trip = {:.2}x (goal <= 2.50x)",
        pair / rtt
    );

    let idle: Vec<Handle> = (0..IDLE).map(|_| Handle::open(&d.path, "bench")).collect();
    let busy = sync_pairs(&d.path, 100_000 / scale);
    drop(idle);
    println!(
        "(d) pair with {IDLE} idle handles open / pair = {:.2}x ({:.2} us)",
        busy / pair,
        busy * 1e6
    );

    let secs = if quick { 1.0 } else { 3.0 };
    let cpu0 = cpu_seconds(d.child.id());
    let (agg, total_pairs, wall) = pipelined(&d.path, secs);
    let cpu = cpu_seconds(d.child.id()) - cpu0;
    let single = 1.0 / pair;
    println!(
        "sync client: {:.0} pairs/s; {WORKERS} clients x {IN_FLIGHT} in flight: {:.0} pairs/s",
        single, agg
    );
    println!(
        "(b) pipelined aggregate / sync client = {:.2}x (goal >= 5.00x)",
        agg / single
    );
    // What dlmd itself spends, independent of how many CPUs the clients
    // compete for: its CPU time per pipelined lock+unlock pair.
    let per_pair = cpu / total_pairs;
    println!(
        "    dlmd CPU per pipelined pair: {:.2} us ({:.0}% of a CPU); on a core of its own dlmd \
         would serve {:.0} pairs/s = {:.1}x the sync client",
        per_pair * 1e6,
        100.0 * cpu / wall,
        1.0 / per_pair,
        (1.0 / per_pair) / single
    );
    drop(ctl);
    drop(d);

    let n = 1_000_000 / scale;
    let (base, rss, probe) = memory(n);
    println!(
        "dlmd RSS: {:.1} MiB idle, {:.1} MiB with {n} locks held",
        base as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
    println!(
        "(c) {:.0} bytes per lock (RSS / locks; {:.0} counting only the growth) (goal <= 400)",
        rss as f64 / n as f64,
        (rss - base) as f64 / n as f64
    );
    let (idle, busy) = probe;
    println!(
        "(e) probe round trip during a {n}-lock dump / idle = {:.2}x mean ({:.1} us / {:.1} us), \
         {:.2}x worst ({:.2} ms / {:.2} ms; {} round trips during the dump)",
        busy.mean / idle.mean,
        busy.mean * 1e6,
        idle.mean * 1e6,
        busy.worst / idle.worst,
        busy.worst * 1e3,
        idle.worst * 1e3,
        busy.count
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

/// Pins process `pid` (`None`: this one) to `cpu`.
fn pin(pid: Option<u32>, cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let pid = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32));
    rustix::thread::sched_setaffinity(pid, &set).expect("sched_setaffinity");
}

/// In `split` mode, moves a server process to CPU 1.
fn place_server(pid: u32) {
    if std::env::var("DLMD_BENCH_CPUS").as_deref() == Ok("split") {
        pin(Some(pid), 1);
    }
}

/// Starts dlmd, placed as `DLMD_BENCH_CPUS` says.
fn start_dlmd() -> Daemon {
    let d = Daemon::start();
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

/// The echo server process: one connection, every message sent back.
fn echo_server(path: &Path) {
    let l = net::socket(net::AddressFamily::UNIX, net::SocketType::SEQPACKET, None).unwrap();
    net::bind(&l, &net::SocketAddrUnix::new(path).unwrap()).unwrap();
    net::listen(&l, 1).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let c = net::accept(&l).unwrap();
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

/// Seconds per echo round trip of a 24-byte message (a reply's size).
fn echo_round_trip(n: u32) -> f64 {
    let dir = temp_dir();
    let path = dir.join("echo.sock");
    let mut server = spawn_role("echo", &path);
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
    let best = (0..3).map(|_| run(n)).fold(f64::MAX, f64::min);
    drop(fd);
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    best
}

/// Sends one WRITE of `req` with sequence number `seq`, from a stack
/// buffer (as the C library does: no allocation per request).
fn send_write(fd: &OwnedFd, seq: u32, tid: u32, req: &Request) {
    let bytes = req.encode(Version::DEVICE);
    let mut m = [0u8; proto::MAX_REQUEST_MSG];
    for (i, w) in [Op::Write as u32, seq, tid, 0].iter().enumerate() {
        m[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    m[proto::HEADER_LEN..proto::HEADER_LEN + bytes.len()].copy_from_slice(&bytes);
    net::send(
        fd,
        &m[..proto::HEADER_LEN + bytes.len()],
        SendFlags::NOSIGNAL,
    )
    .unwrap();
}

/// Receives the reply to `seq` into a stack buffer; returns `ret`.
fn recv_ret(fd: &OwnedFd, seq: u32) -> i64 {
    let mut buf = [0u8; 64];
    let (n, _) = net::recv(fd, &mut buf, RecvFlags::empty()).unwrap();
    proto::parse_reply(&buf[..n], seq).unwrap().0
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
            net::send(&fd, &m, SendFlags::NOSIGNAL).unwrap();
            let (got, _) = net::recv(&fd, &mut buf, RecvFlags::empty()).unwrap();
            assert_eq!(proto::parse_reply(&buf[..got], seq).unwrap().0, 0);
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    run(n / 10);
    (0..3).map(|_| run(n)).fold(f64::MAX, f64::min)
}

/// Seconds per synchronous lock+unlock pair from one client: WRITE,
/// reply, result; twice.
fn sync_pairs(path: &Path, n: u32) -> f64 {
    let h = Handle::open(path, "bench");
    let tid = std::process::id();
    let mut seq = 0u32;
    let mut run = |n: u32| {
        let t = Instant::now();
        for i in 0..n {
            seq += 1;
            send_write(
                &h.req,
                seq,
                tid,
                &lock_req("sync", Mode::Ex, LockFlags::empty(), u64::from(i), 0),
            );
            let lkid = recv_ret(&h.req, seq);
            assert!(lkid > 0);
            assert_eq!(recv_result(&h.cb).status, Status::GRANTED);
            seq += 1;
            let unlock = Request::Unlock(LockParams {
                lkid: lkid as u32,
                lksb: lksb_of(0),
                ..LockParams::default()
            });
            send_write(&h.req, seq, tid, &unlock);
            assert_eq!(recv_ret(&h.req, seq), 0);
            assert_eq!(recv_result(&h.cb).status, Status::UNLOCKED);
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    run(n / 10);
    (0..3).map(|_| run(n)).fold(f64::MAX, f64::min)
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
/// resources, as an asynchronous client does it: it takes every reply
/// that has arrived, reads the results, and sends the follow-up requests
/// together (`sendmmsg`). Prints "pairs seconds".
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
    let mut buf = [0u8; 128];
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(secs);
    let mut stopping = false;
    while !fifo.is_empty() {
        // Every reply that is there (the first one waited for).
        let mut flags = RecvFlags::empty();
        while let Some(&(slot, is_unlock)) = fifo.front() {
            let n = match net::recv(&h.req, &mut buf, flags) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("recv: {e}"),
            };
            flags = RecvFlags::DONTWAIT;
            fifo.pop_front();
            expect = expect.wrapping_add(1);
            let (ret, _) = proto::parse_reply(&buf[..n], expect).unwrap();
            assert!(ret >= 0, "ret {ret}");
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
        drain(&h.cb);
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
        let bytes = req.encode(Version::DEVICE);
        let mut m = [0u8; proto::MAX_REQUEST_MSG];
        for (i, w) in [Op::Write as u32, self.seq, self.tid, 0].iter().enumerate() {
            m[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        m[proto::HEADER_LEN..proto::HEADER_LEN + bytes.len()].copy_from_slice(&bytes);
        self.msgs.push((m, proto::HEADER_LEN + bytes.len()));
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
    let mut buf = [0u8; 128];
    let mut sent = 0u32;
    let mut done = 0u32;
    while done < n {
        while sent < n && sent - done < window {
            let req = lock_req(&format!("m{sent:07}"), Mode::Ex, LockFlags::empty(), 0, 0);
            send_write(&h.req, sent, 1, &req);
            sent += 1;
        }
        let (len, _) = net::recv(&h.req, &mut buf, RecvFlags::empty()).unwrap();
        let (ret, _) = proto::parse_reply(&buf[..len], done).unwrap();
        assert!(ret > 0);
        done += 1;
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
