//! The operator's view against a real dlmd: `dlm locks --json` field by
//! field (`blocked_by`, `seconds`, `deadlocks`), `--stuck`, `dlm why`,
//! `dlm status`, `dlm stats --prometheus`, names through JSON.

mod common;

use common::{HANG, dlm, first_line, holder, stop};
use dlm_tests::Dlmd;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `dlm create LS`, which must succeed.
fn create(dlmd: &Dlmd, ls: &str) {
    let out = dlm(dlmd).args(["create", ls]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `dlm locks --json [LS]`, parsed.
fn dump(dlmd: &Dlmd, ls: &str) -> Value {
    let out = dlm(dlmd).args(["locks", "--json", ls]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The locks of resource `name` (UTF-8) in the first lockspace.
fn locks<'a>(d: &'a Value, name: &str) -> Vec<&'a Value> {
    d["lockspaces"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == name)
        .flat_map(|r| r["locks"].as_array().unwrap())
        .collect()
}

/// Polls the dump until `ok` holds for it.
fn wait_dump(dlmd: &Dlmd, ls: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let d = dump(dlmd, ls);
        if ok(&d) {
            return d;
        }
        assert!(start.elapsed() < HANG, "never reached: {d}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lkid of lock `l`.
fn lkid(l: &Value) -> u64 {
    l["lkid"].as_u64().unwrap()
}

fn blocked_by(l: &Value) -> Vec<u64> {
    l["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn waiters_list_their_blocker_and_age_and_stuck_exits_1() {
    let dlmd = Dlmd::start("op-basic");
    let a = holder(&dlmd, "op", "res");
    let b = dlm(&dlmd)
        .args(["lock", "-l", "op", "-s", "res", "--", "true"])
        .spawn()
        .unwrap();
    let d = wait_dump(&dlmd, "op", |d| locks(d, "res").len() == 2);
    let c = dlm(&dlmd)
        .args(["lock", "-l", "op", "-x", "res", "--", "true"])
        .spawn()
        .unwrap();
    drop(d);
    let d = wait_dump(&dlmd, "op", |d| locks(d, "res").len() == 3);
    assert_eq!(d["version"], 1);
    assert_eq!(d["backend"], "dlmd");
    let l = locks(&d, "res");
    let (la, lb, lc) = (l[0], l[1], l[2]);
    assert_eq!(la["state"], "granted");
    assert_eq!(la["grmode"], "EX");
    assert_eq!(la["rqmode"], Value::Null);
    assert_eq!(la["pid"], a.id());
    assert!(
        la["command"]
            .as_str()
            .unwrap()
            .ends_with("lock -l op res -- sh -c echo held; exec sleep 60"),
        "{la}"
    );
    assert!(blocked_by(la).is_empty());
    assert_eq!(lb["state"], "waiting");
    assert_eq!(lb["grmode"], Value::Null);
    assert_eq!(lb["rqmode"], "PR");
    assert_eq!(lb["pid"], b.id());
    assert_eq!(blocked_by(lb), [lkid(la)]);
    assert_eq!(lc["state"], "waiting");
    assert_eq!(lc["rqmode"], "EX");
    assert_eq!(lc["pid"], c.id());
    // EX waits for the holder, and for the PR request queued ahead.
    assert_eq!(blocked_by(lc), [lkid(la), lkid(lb)]);
    assert!(lb["flags"].is_array() && lb["seconds"].is_u64());
    assert_eq!(d["deadlocks"], Value::Array(vec![]));
    let s0 = lb["seconds"].as_u64().unwrap();

    std::thread::sleep(Duration::from_millis(2100));
    let d = dump(&dlmd, "op");
    let s1 = locks(&d, "res")[1]["seconds"].as_u64().unwrap();
    assert!(s1 >= s0 + 2, "seconds went from {s0} to {s1}");

    // --stuck: the two requests are older than a second.
    let out = dlm(&dlmd)
        .args(["locks", "op", "--stuck", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("rqmode PR") && text.contains("blocked_by"),
        "{text}"
    );

    // why: the chain down to the holder's process.
    let out = dlm(&dlmd)
        .args(["why", "res", "-l", "op"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let why = String::from_utf8_lossy(&out.stdout);
    assert!(
        why.contains(&format!("blocked by lkid {:#x}: pid {}", lkid(la), a.id())),
        "{why}"
    );

    // Prometheus: every line a comment or `name{labels} value`, and the
    // counts those of the dump.
    let (samples, _) = prometheus(&dlmd);
    let op = |name: &str| -> Vec<usize> {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && l.contains("lockspace=\"op\""))
            .map(|(_, _, v)| *v as usize)
            .collect()
    };
    let locks_total: usize = op("dlm_locks").iter().sum();
    let waiters = op("dlm_waiters");
    let d = dump(&dlmd, "op");
    let n: usize = d["lockspaces"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["locks"].as_array().unwrap().len())
        .sum();
    assert_eq!(locks_total, n, "{samples:?}");
    assert_eq!(waiters, [2], "{samples:?}");

    stop(a);
    for mut w in [b, c] {
        assert!(w.wait().unwrap().success());
    }
    let out = dlm(&dlmd)
        .args(["locks", "op", "--stuck", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn status_exits_3_without_a_lock_manager_and_0_with_one() {
    let dlmd = Dlmd::start("op-status");
    let out = dlm(&dlmd).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("backend dlmd\nsocket "), "{text}");
    let gone = dlm_tests::scratch_dir("op-status-none").join("no.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .arg("status")
        .env("DLMD_SOCKET", &gone)
        .env("DLM_BACKEND", "dlmd")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("no lock manager: "), "{text}");
    // --json: still exit 3, one JSON object with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(["status", "--json"])
        .env("DLMD_SOCKET", &gone)
        .env("DLM_BACKEND", "dlmd")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["backend"].is_null(), "{v}");
    let why = v["error"].as_str().unwrap();
    assert!(why.contains(gone.to_str().unwrap()), "{why}");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
}

/// `dlm status --json`, parsed (exit 0 checked).
fn status_json(dlmd: &Dlmd) -> Value {
    let out = dlm(dlmd).args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A Prometheus sample: name, labels (`{...}` without the `{`), value.
type Sample = (String, String, f64);

/// `dlm stats --prometheus`, each line checked (a comment, or
/// `name{labels} value`), as (name, labels, value); with the TYPE of
/// each name.
fn prometheus(dlmd: &Dlmd) -> (Vec<Sample>, HashMap<String, String>) {
    let out = dlm(dlmd).args(["stats", "--prometheus"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let prom = String::from_utf8(out.stdout).unwrap();
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in prom.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let (name, labels) = series.split_once('{').unwrap_or_else(|| panic!("{line}"));
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(types.contains_key(name), "TYPE before {line}");
        assert!(labels.ends_with('}'), "{line}");
        for pair in labels.trim_end_matches('}').split("\",") {
            let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            assert!(!v.is_empty(), "{line}");
        }
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    (samples, types)
}

fn sample(samples: &[Sample], name: &str) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "one {name}: {samples:?}");
    found[0]
}

#[test]
fn status_json_and_prometheus_counters_follow_a_known_sequence() {
    let dlmd = Dlmd::start("op-counters");
    let s0 = status_json(&dlmd);
    assert_eq!(s0["backend"], "dlmd", "{s0}");
    assert_eq!(s0["socket"], dlmd.socket().to_str().unwrap());
    assert_eq!(s0["interface"], "6.0.2");
    assert!(s0["dlmd_error"].is_null(), "{s0}");
    let d = &s0["dlmd"];
    // dlm and dlmd share the workspace's version.
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"), "{s0}");
    assert_eq!(d["protocol"], 1);
    assert_eq!(d["pid"], dlmd.pid());
    let up0 = d["uptime"].as_u64().unwrap();
    assert!(up0 < 30, "{s0}");
    let started = d["started"].as_u64().unwrap();
    assert_eq!(
        (d["grants"].as_u64(), d["blocking_callbacks"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s0["dump"]["locks"], 0);

    // A holds EX asking for blocking callbacks; `dlm lock -s` asks for
    // PR: A gets one blocking callback; when A lets go the reader is
    // granted, runs `true` and unlocks. Two grants, one callback.
    create(&dlmd, "op");
    let mut a = client(&dlmd, &["hold", "op", "res", "EX", "bast"]);
    let reader = dlm(&dlmd)
        .args(["lock", "-s", "-l", "op", "res", "true"])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let s = status_json(&dlmd);
        if s["dlmd"]["blocking_callbacks"] == 1 {
            assert_eq!(s["dlmd"]["grants"], 1, "{s}");
            assert_eq!(s["dump"]["waiting"], 1, "{s}");
            break;
        }
        assert!(t0.elapsed() < HANG, "no blocking callback: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(a.stdin.take());
    assert!(a.wait().unwrap().success());
    let mut reader = reader;
    assert!(reader.wait().unwrap().success());

    let s1 = status_json(&dlmd);
    let d1 = &s1["dlmd"];
    assert_eq!(d1["grants"], 2, "{s1}");
    assert_eq!(d1["blocking_callbacks"], 1, "{s1}");
    assert_eq!(d1["started"], started, "{s1}");
    assert_eq!(
        (d1["lockspaces"].as_u64(), d1["locks"].as_u64()),
        (Some(1), Some(0))
    );
    // Uptime grows (whole seconds).
    std::thread::sleep(Duration::from_millis(1100));
    let up1 = status_json(&dlmd)["dlmd"]["uptime"].as_u64().unwrap();
    assert!(up1 > up0, "{up0} -> {up1}");

    // Prometheus: the counters are STATUS's, typed as counters.
    let (samples, types) = prometheus(&dlmd);
    assert_eq!(types["dlm_grants_total"], "counter");
    assert_eq!(types["dlm_blocking_callbacks_total"], "counter");
    assert_eq!(types["dlm_dlmd_start_time_seconds"], "gauge");
    assert_eq!(sample(&samples, "dlm_grants_total"), 2.0);
    assert_eq!(sample(&samples, "dlm_blocking_callbacks_total"), 1.0);
    assert_eq!(
        sample(&samples, "dlm_dlmd_start_time_seconds"),
        started as f64
    );
    let info = samples
        .iter()
        .find(|(n, _, _)| n == "dlm_dlmd_info")
        .unwrap();
    assert!(
        info.1
            .contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{info:?}"
    );
    assert!(info.1.contains("protocol=\"1\""), "{info:?}");
    let s2 = status_json(&dlmd);
    assert_eq!(s2["dlmd"]["grants"], 2, "stats asks without locking: {s2}");

    // The text shows the same facts.
    let out = dlm(&dlmd).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("backend dlmd\nsocket "), "{text}");
    assert!(
        text.contains(&format!(
            "\ndlmd {} (pid {}, protocol 1)\nuptime ",
            env!("CARGO_PKG_VERSION"),
            dlmd.pid()
        )),
        "{text}"
    );
    assert!(
        text.contains("\nsince start: grants 2, blocking callbacks 1\n"),
        "{text}"
    );
}

#[test]
fn utf8_and_binary_names_round_trip_through_the_json() {
    let dlmd = Dlmd::start("op-names");
    let a = holder(&dlmd, "op", "r\u{e9}sum\u{e9} \"q\"");
    let d = dump(&dlmd, "op");
    let r = &d["lockspaces"][0]["resources"][0];
    assert_eq!(r["name"], "r\u{e9}sum\u{e9} \"q\"");
    assert_eq!(r["name_hex"], "72c3a973756dc3a9202271 22".replace(' ', ""));
    stop(a);
    // A name that is not UTF-8 (through the Rust API's typed dump
    // parser, as `dlm lock` takes only text arguments): hex only.
    let text = "lockspace \"op\" minor 1\n  resource \"\\xff\\x00a\" lvb none\n    granted lkid 0x00000001 grmode EX rqmode -- pid 1 owner 1 flags - seconds 0\n";
    let dump = dlm_core::dump::Dump::from_dlmd_text(text).unwrap();
    let json = dump.to_json();
    let v: Value = serde_json::from_str(&json).unwrap();
    let r = &v["lockspaces"][0]["resources"][0];
    assert!(r.get("name").is_none(), "{json}");
    assert_eq!(r["name_hex"], "ff0061");
    let back: dlm_core::dump::Dump = serde_json::from_str(&json).unwrap();
    assert_eq!(back, dump);
}

/// The `dlm-test-client` helper (built on demand: it belongs to the
/// dlm-tests package).
fn client_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_dlm")).with_file_name("dlm-test-client");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "dlm-tests", "--bin", "dlm-test-client"])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    bin
}

/// A `dlm-test-client ROLE ARGS…` that has printed "locked".
fn client(dlmd: &Dlmd, args: &[&str]) -> Child {
    let mut child = Command::new(client_bin())
        .args(args)
        .envs(dlmd.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    assert!(line.starts_with("locked"), "{line:?}");
    child
}

fn go(child: &mut Child) {
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
}

/// The deadlocks of a dump, as (sorted pids, sorted lkids).
fn deadlocks(d: &Value) -> Vec<(Vec<u64>, Vec<u64>)> {
    d["deadlocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = |k: &str| -> Vec<u64> {
                c[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            };
            (ids("pids"), ids("lkids"))
        })
        .collect()
}

#[test]
fn a_two_resource_cycle_between_two_processes_is_a_deadlock() {
    let dlmd = Dlmd::start("op-cycle");
    create(&dlmd, "op");
    let mut p = client(&dlmd, &["cycle", "op", "r1", "r2"]);
    let mut q = client(&dlmd, &["cycle", "op", "r2", "r1"]);
    go(&mut p);
    go(&mut q);
    let d = wait_dump(&dlmd, "op", |d| !deadlocks(d).is_empty());
    let mut pids = vec![u64::from(p.id()), u64::from(q.id())];
    pids.sort();
    let all: Vec<u64> = ["r1", "r2"]
        .iter()
        .flat_map(|r| locks(&d, r))
        .map(lkid)
        .collect();
    let mut all = all;
    all.sort();
    assert_eq!(deadlocks(&d), [(pids, all)], "{d}");
    let out = dlm(&dlmd).args(["why", "r1", "-l", "op"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DEADLOCK"),
        "{out:?}"
    );
    stop(p);
    stop(q);
}

#[test]
fn a_conversion_deadlock_is_shown() {
    let dlmd = Dlmd::start("op-convert");
    create(&dlmd, "op");
    let mut p = client(&dlmd, &["convert", "op", "r"]);
    let mut q = client(&dlmd, &["convert", "op", "r"]);
    go(&mut p);
    go(&mut q);
    let d = wait_dump(&dlmd, "op", |d| {
        locks(d, "r")
            .iter()
            .filter(|l| l["state"] == "converting")
            .count()
            == 2
    });
    let l = locks(&d, "r");
    for (me, other) in [(0, 1), (1, 0)] {
        assert_eq!(l[me]["grmode"], "PR");
        assert_eq!(l[me]["rqmode"], "EX");
        assert!(blocked_by(l[me]).contains(&lkid(l[other])), "{d}");
    }
    let mut pids = vec![u64::from(p.id()), u64::from(q.id())];
    pids.sort();
    let mut ids = vec![lkid(l[0]), lkid(l[1])];
    ids.sort();
    assert_eq!(deadlocks(&d), [(pids, ids)], "{d}");
    stop(p);
    stop(q);
}

#[test]
fn nested_dlm_lock_commands_that_deadlock_are_found() {
    let dlmd = Dlmd::start("op-nested");
    // Created first, so that the dump polled below never races the
    // `dlm lock` that would create it.
    create(&dlmd, "op");
    let dir = dlm_tests::scratch_dir("op-nested-files");
    let dlm_bin = env!("CARGO_BIN_EXE_dlm");
    // Each takes its first lock, waits until both have, then asks for
    // the other's from a nested `dlm lock`.
    let nested = |first: &str, second: &str| {
        let script = format!(
            "touch {d}/{first}; n=0; while [ ! -e {d}/a ] || [ ! -e {d}/b ]; do \
             sleep 0.02; n=$((n+1)); [ $n -gt 1500 ] && exit 9; done; \
             exec {dlm_bin} lock -l op {second} -- true",
            d = dir.display()
        );
        dlm(&dlmd)
            .args(["lock", "-l", "op", first, "--", "sh", "-c", &script])
            .spawn()
            .unwrap()
    };
    let p = nested("a", "b");
    let q = nested("b", "a");
    let d = wait_dump(&dlmd, "op", |d| !deadlocks(d).is_empty());
    let (pids, ids) = &deadlocks(&d)[0];
    // The outer dlm processes hold the locks; their children wait.
    assert!(pids.contains(&u64::from(p.id())), "{d}");
    assert!(pids.contains(&u64::from(q.id())), "{d}");
    assert_eq!(ids.len(), 4, "{d}");
    stop(p);
    stop(q);
}

#[test]
fn dlmd_warn_wait_logs_each_long_wait_once_with_its_blockers() {
    let dir = dlm_tests::scratch_dir("op-warn-wait");
    let log = dir.join("dlmd.log");
    let dlmd = Dlmd::start_with(
        "op-warn-wait",
        &["--warn-wait", "1", "--log-file", log.to_str().unwrap()],
    );
    let holder = holder(&dlmd, "op", "res");
    let waiter = dlm(&dlmd)
        .args(["lock", "-l", "op", "-s", "res", "--", "true"])
        .spawn()
        .unwrap();
    let want = format!(
        "pid {} (-- -> PR) has waited 1 s; blocked by lkid",
        waiter.id()
    );
    let holder_part = format!("pid {} EX", holder.id());
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains(&want) {
            assert!(text.contains(&holder_part), "{text}");
            break;
        }
        assert!(start.elapsed() < HANG, "no warning in {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still once, seconds later.
    std::thread::sleep(Duration::from_millis(2200));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches(&want).count(), 1, "{text}");
    stop(holder);
    stop(waiter);
}
