//! Two nodes of a real cluster (corosync + dlm_controld, kernel DLM),
//! through our Rust API: NOQUEUE against a remote EX, a blocking request
//! granted by a remote unlock, an LVB written on one node and read on the
//! other, a SIGKILLed holder, and a PERSISTENT orphan purged from the
//! other node with PURGE(nodeid, 0); `dlm locks --json` shows the other
//! node's id while a request waits across nodes.
//!
//! Runs in a `cargo xtask vmtest --nodes 2` guest on both nodes at once
//! (the steps meet at `vmtest-barrier`s); anywhere else it skips (exit 77
//! in a guest, 0 with a message on the host). A plain `main`.

use dlm_core::transport::kernel;
use dlm_core::{Error, LockOptions, Lockspace, Mode};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

const LS: &str = "twonodes";

fn barrier(name: &str) {
    let ok = Command::new("vmtest-barrier")
        .args([name, "120"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "vmtest-barrier {name} failed");
    println!("-- barrier {name}");
}

/// A child of this program (node 1): opens the lockspace, takes `res` EX
/// (PERSISTENT with `keep`), says "locked", then sleeps until killed or,
/// with `keep`, exits leaving an orphan.
fn child(res: &str, keep: bool) -> ExitCode {
    let ls = Lockspace::open(LS).expect("open lockspace");
    let opts = if keep {
        LockOptions::new().persistent()
    } else {
        LockOptions::new()
    };
    let lock = ls.lock(res.as_bytes(), Mode::Ex, opts).expect("child lock");
    println!("locked");
    std::io::stdout().flush().ok();
    if keep {
        lock.keep();
        return ExitCode::SUCCESS;
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn spawn_child(res: &str, keep: bool) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().expect("exe"))
        .env("KTN_CHILD", res)
        .env("KTN_KEEP", if keep { "1" } else { "0" })
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("child output");
    assert_eq!(line.trim(), "locked", "child did not lock");
    c
}

/// Waits (dispatching) for an async completion; gives up after `limit`
/// (a hang guard, not a timing check).
fn wait_status(ls: &Lockspace, status: &AtomicI32, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let s = status.load(Ordering::SeqCst);
        if s != i32::MIN {
            return Some(s);
        }
        let _ = ls.dispatch_timeout(Duration::from_millis(200));
    }
    None
}

/// `dlm locks --json` while node 1 holds EX on `r` and node 2 waits for
/// it: on the resource's master the other node's lock is a copy with its
/// node id, elsewhere the local lock names the master's node: each node's
/// dump of `r` shows a lock with a non-zero `nodeid`.
fn remote_node_in_dump(me: &str) {
    let out = Command::new("dlm")
        .args(["locks", "--json", LS])
        .output()
        .expect("run dlm");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{me}: dlm locks --json: {out:?}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    println!("{me}: dlm locks --json: {text}");
    let r = v["lockspaces"][0]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "r"))
        .unwrap_or_else(|| panic!("{me}: no resource r: {text}"));
    let locks = r["locks"].as_array().expect("locks");
    assert!(
        locks
            .iter()
            .any(|l| l["nodeid"].as_u64().is_some_and(|n| n != 0)),
        "{me}: no remote node id: {text}"
    );
}

fn node1() {
    let ls = Lockspace::create(LS, 0o600).expect("create lockspace");
    barrier("created");
    // 1. NOQUEUE on node 2 against our EX; 2. node 2 waits, we unlock.
    let ex = ls.lock(b"r", Mode::Ex, LockOptions::new()).expect("EX");
    barrier("n1-holds-ex");
    barrier("n2-noqueue-done");
    barrier("n2-waiting");
    remote_node_in_dump("node1");
    barrier("n2-dumped");
    ex.unlock().expect("unlock");
    println!("node1: unlocked r");
    barrier("n2-granted");
    // 3. LVB: write under EX, keep NL so the value block lives on.
    let mut v = ls
        .lock(b"v", Mode::Ex, LockOptions::new().lvb())
        .expect("v EX");
    v.lvb_mut()[..10].copy_from_slice(b"from node1");
    v.convert(Mode::Nl).expect("v to NL");
    barrier("lvb-written");
    barrier("lvb-read");
    // 4. A holder killed with SIGKILL.
    let mut holder = spawn_child("k", false);
    barrier("k-held");
    barrier("k-probed");
    holder.kill().expect("SIGKILL the holder");
    holder.wait().expect("reap");
    println!("node1: holder of k killed");
    barrier("k-killed");
    barrier("k-granted");
    // 5. A PERSISTENT orphan, purged from node 2.
    let mut orphaner = spawn_child("p", true);
    assert!(orphaner.wait().expect("reap").success());
    println!("node1: orphan of p left by pid {}", orphaner.id());
    barrier("p-orphaned");
    barrier("p-done");
    drop(v);
    let _ = ls.release(false);
    barrier("released");
}

fn node2() {
    let ls = Lockspace::create(LS, 0o600).expect("create lockspace");
    barrier("created");
    barrier("n1-holds-ex");
    // 1. NOQUEUE against node 1's EX.
    let r = ls.try_lock(b"r", Mode::Ex, LockOptions::new());
    println!("node2: NOQUEUE EX on r -> {:?}", r.as_ref().map(|_| ()));
    assert_eq!(r.err(), Some(Error::WouldBlock));
    barrier("n2-noqueue-done");
    // 2. A blocking request, granted when node 1 unlocks.
    let status = Arc::new(AtomicI32::new(i32::MIN));
    let s2 = status.clone();
    let id = ls
        .lock_async(b"r", Mode::Ex, LockOptions::new(), move |c, _| {
            s2.store(c.status.raw(), Ordering::SeqCst)
        })
        .expect("queue EX");
    let _ = ls.dispatch_timeout(Duration::from_millis(500));
    assert_eq!(
        status.load(Ordering::SeqCst),
        i32::MIN,
        "granted while node 1 holds EX"
    );
    barrier("n2-waiting");
    remote_node_in_dump("node2");
    barrier("n2-dumped");
    let got = wait_status(&ls, &status, Duration::from_secs(60));
    println!("node2: blocking EX on r completed with {got:?}");
    assert_eq!(got, Some(0));
    ls.unlock_id(id).expect("unlock r");
    barrier("n2-granted");
    // 3. The LVB node 1 wrote.
    barrier("lvb-written");
    let v = ls
        .lock(b"v", Mode::Pr, LockOptions::new().lvb())
        .expect("v PR");
    println!(
        "node2: LVB of v = {:?}",
        String::from_utf8_lossy(&v.lvb()[..10])
    );
    assert_eq!(&v.lvb()[..10], b"from node1");
    assert!(v.lvb_valid());
    drop(v);
    barrier("lvb-read");
    // 4. The SIGKILLed holder.
    barrier("k-held");
    let r = ls.try_lock(b"k", Mode::Ex, LockOptions::new());
    assert_eq!(r.err(), Some(Error::WouldBlock), "k is held on node 1");
    barrier("k-probed");
    barrier("k-killed");
    let k = ls.lock_timeout(b"k", Mode::Ex, LockOptions::new(), Duration::from_secs(60));
    println!(
        "node2: EX on k after the kill -> {:?}",
        k.as_ref().map(|_| ())
    );
    assert!(k.is_ok());
    drop(k);
    barrier("k-granted");
    // 5. The orphan on node 1, purged from here with PURGE(1, 0).
    barrier("p-orphaned");
    let r = ls.try_lock(b"p", Mode::Ex, LockOptions::new());
    assert_eq!(r.err(), Some(Error::WouldBlock), "the orphan holds p");
    let purge = ls.purge(1, 0);
    println!("node2: PURGE(nodeid 1, pid 0) -> {purge:?}");
    assert_eq!(purge, Ok(()));
    let at_once = ls.try_lock(b"p", Mode::Ex, LockOptions::new()).map(drop);
    println!("node2: NOQUEUE EX on p right after the purge -> {at_once:?}");
    let later = ls.lock_timeout(b"p", Mode::Ex, LockOptions::new(), Duration::from_secs(60));
    println!(
        "node2: blocking EX on p after the purge -> {:?}",
        later.as_ref().map(|_| ())
    );
    assert!(later.is_ok(), "the remote purge did not free the orphan");
    drop(later);
    barrier("p-done");
    let _ = ls.release(false);
    barrier("released");
}

fn main() -> ExitCode {
    if let Ok(res) = std::env::var("KTN_CHILD") {
        return child(&res, std::env::var("KTN_KEEP").as_deref() == Ok("1"));
    }
    let in_guest = std::env::var_os("DLM_VMTEST_NODE").is_some();
    let two = std::env::var("DLM_VMTEST_NODES").as_deref() == Ok("2");
    if !in_guest || !kernel::is_present() {
        println!("kernel_two_nodes: needs two vmtest guests; skipped");
        return ExitCode::SUCCESS;
    }
    if !two {
        return ExitCode::from(77);
    }
    match std::env::var("DLM_VMTEST_NODE").as_deref() {
        Ok("1") => node1(),
        _ => node2(),
    }
    println!("kernel_two_nodes: ok");
    ExitCode::SUCCESS
}
