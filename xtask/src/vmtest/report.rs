//! Results: the guest/host protocol on the serial console (`@@VMTEST
//! READY`, `SETUP_FAILED`, `BEGIN <test> uptime=<s>`, `END <test> rc=<n>`,
//! `DMESG`, `DONE`; every other line is test output or kernel messages),
//! each job's report (PASS/FAIL/SKIP per test over all nodes, and for a
//! failure its output with the kernel and daemon logs from after its
//! start) and the totals of a run.

use super::qemu::{Guest, Line};
use super::runner::{JobSpec, RunCtx};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

pub(super) struct TestReport {
    pub(super) name: String,
    pub(super) status: Status,
}

pub(super) struct JobReport {
    pub(super) title: String,
    pub(super) tests: Vec<TestReport>,
    pub(super) setup_error: Option<String>,
}

/// What a whole run counted.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) pass: usize,
    pub(super) fail: usize,
    pub(super) skip: usize,
    /// Jobs whose guests did not come up, or that could not start.
    pub(super) broken: usize,
}

/// Counts the tests of every job; prints a line for each failed one.
pub(super) fn totals<E>(reports: &[Result<JobReport, E>]) -> Totals {
    let mut n = Totals::default();
    for r in reports {
        match r {
            Ok(r) => {
                for t in &r.tests {
                    match t.status {
                        Status::Pass => n.pass += 1,
                        Status::Skip => n.skip += 1,
                        Status::Fail => {
                            n.fail += 1;
                            println!("vmtest: FAIL {} on {}", t.name, r.title);
                        }
                    }
                }
                if r.setup_error.is_some() {
                    n.broken += 1;
                }
            }
            Err(_) => n.broken += 1,
        }
    }
    n
}

/// The report of a job whose guests have all stopped: appended to `out`
/// (a header, one line per node, one per test, details of failures).
pub(super) fn job_report(
    ctx: &RunCtx,
    job: &JobSpec,
    guests: &[Guest],
    t0: Instant,
    out: &mut String,
) -> JobReport {
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
    let tests = ctx
        .payload
        .tests
        .iter()
        .map(|(name, _)| test_report(name, &parsed, job.nodes, ctx.test_timeout, out))
        .collect();
    JobReport {
        title: job.title(),
        tests,
        setup_error,
    }
}

/// One test over all nodes of a job: its status (SKIP when every node
/// skipped, PASS when every node passed or skipped), appended to `out` as
/// one line, with the failure details below it.
fn test_report(
    name: &str,
    parsed: &[Parsed],
    nodes: u32,
    test_timeout: u64,
    out: &mut String,
) -> TestReport {
    let per_node: Vec<Option<&TestRun>> = parsed.iter().map(|p| p.tests.get(name)).collect();
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
    let rc_text = if nodes == 1 {
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
    let word = status.word();
    *out += &format!("  {word}  {name:<40} {secs:6.1} s  {rc_text}\n");
    if status == Status::Fail {
        failure_details(&per_node, parsed, test_timeout, out);
    }
    TestReport {
        name: name.to_string(),
        status,
    }
}

/// For each node where a test failed: its output, and the kernel and
/// daemon log lines from after it began.
fn failure_details(
    per_node: &[Option<&TestRun>],
    parsed: &[Parsed],
    test_timeout: u64,
    out: &mut String,
) {
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
                Some(rc) if hit_timeout(t, test_timeout) => {
                    format!("exit status {rc}: TIMEOUT after {test_timeout} s")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A console as `xtask/vm/init` prints it, with (host time, line).
    fn console(text: &str) -> Vec<Line> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i as f64, l.to_string()))
            .collect()
    }

    const NODE: &str = "\
SeaBIOS noise@@VMTEST BOOT node=1 kernel=6.12 uptime=0.50
@@VMTEST READY uptime=1.00
@@VMTEST BEGIN ok uptime=2.00
running 1 test
@@VMTEST END ok rc=0 start=2.00 end=3.00
@@VMTEST BEGIN skipped uptime=3.00
@@VMTEST END skipped rc=77 start=3.00 end=3.10
@@VMTEST BEGIN bad uptime=10.00
assertion failed
@@VMTEST END bad rc=101 start=10.00 end=11.00
@@VMTEST DMESG
[    5.000000] dlm: boot noise
[   10.500000] dlm: during the test
dlm_controld: a daemon line
@@VMTEST DONE uptime=12.00";

    #[test]
    fn console_protocol() {
        let p = parse_console(&console(NODE));
        assert_eq!(p.ready, Some(1.0));
        assert!(p.done);
        assert_eq!(p.setup_failed, None);
        assert_eq!(p.tests["ok"].rc, Some(0));
        assert_eq!(p.tests["ok"].output, ["running 1 test"]);
        assert_eq!(p.tests["skipped"].rc, Some(77));
        assert_eq!(p.tests["bad"].uptime, Some(10.0));
        assert_eq!(p.tests["bad"].output, ["assertion failed"]);
        assert_eq!(p.dmesg.len(), 3);
        let failed = parse_console(&console(
            "@@VMTEST SETUP_FAILED no /dev/misc/dlm-control uptime=3.0",
        ));
        assert_eq!(
            failed.setup_failed.as_deref(),
            Some("no /dev/misc/dlm-control uptime=3.0")
        );
        assert_eq!(failed.ready, None);
    }

    #[test]
    fn one_line_per_test_and_details_of_failures() {
        let parsed = [parse_console(&console(NODE))];
        let mut out = String::new();
        let ok = test_report("ok", &parsed, 1, 300, &mut out);
        let skipped = test_report("skipped", &parsed, 1, 300, &mut out);
        assert_eq!((ok.status, skipped.status), (Status::Pass, Status::Skip));
        assert_eq!(
            out,
            format!(
                "  PASS  {:<40}    2.0 s  rc=0\n  SKIP  {:<40}    1.0 s  rc=77\n",
                "ok", "skipped"
            )
        );
        let mut out = String::new();
        let bad = test_report("bad", &parsed, 1, 300, &mut out);
        assert_eq!(bad.status, Status::Fail);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                &*format!("  FAIL  {:<40}    2.0 s  rc=101", "bad"),
                "    --- node 1 output (exit status 101):",
                "    | assertion failed",
                "    --- dmesg and daemon logs:",
                "    | [   10.500000] dlm: during the test",
                "    | dlm_controld: a daemon line",
            ]
        );
    }

    #[test]
    fn two_nodes_and_a_test_that_never_ended() {
        let second = "@@VMTEST READY uptime=1.0\n@@VMTEST BEGIN ok uptime=2.0\nhung";
        let parsed = [
            parse_console(&console(NODE)),
            parse_console(&console(second)),
        ];
        let mut out = String::new();
        let r = test_report("ok", &parsed, 2, 300, &mut out);
        assert_eq!(r.status, Status::Fail);
        assert!(
            out.starts_with(&format!(
                "  FAIL  {:<40}    2.0 s  n1:rc=0 n2:unfinished\n",
                "ok"
            )),
            "{out}"
        );
        assert!(out.contains(
            "    --- node 2 output (did not finish; console up to the end of the guest):\n    | hung\n"
        ));
    }

    #[test]
    fn timeouts_and_kernel_timestamps() {
        let t = TestRun {
            begin: 10.0,
            end: Some(309.7),
            rc: Some(143),
            ..Default::default()
        };
        assert!(hit_timeout(&t, 300));
        assert!(!hit_timeout(&TestRun { rc: Some(1), ..t }, 300));
        assert_eq!(kernel_time("[   12.345678] dlm: joined"), Some(12.345678));
        assert_eq!(kernel_time("dlm_controld: no time"), None);
    }
}
