//! The command line of `cargo xtask vmtest`: the usage text, the options
//! (`Opts`) and their defaults, and the two small vocabularies the rest of
//! the harness speaks (`Kernel`, `Cm`).

use super::Result;
use super::apt::Suites;
use std::path::PathBuf;

pub(super) const USAGE: &str = "\
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kernel {
    /// Debian 12's own kernel (bookworm, bookworm-updates, bookworm-security).
    V61,
    /// Debian's 6.12 kernel from bookworm-backports.
    V612,
}

impl Kernel {
    pub(super) fn label(self) -> &'static str {
        match self {
            Kernel::V61 => "6.1",
            Kernel::V612 => "6.12",
        }
    }
    pub(super) fn suites(self) -> Suites {
        match self {
            Kernel::V61 => Suites::Bookworm,
            Kernel::V612 => Suites::Backports,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Cm {
    None,
    Corosync,
}

impl Cm {
    pub(super) fn name(self) -> &'static str {
        match self {
            Cm::None => "none",
            Cm::Corosync => "corosync",
        }
    }
}

pub(super) struct Opts {
    pub(super) kernels: Vec<Kernel>,
    pub(super) nodes: Vec<u32>,
    pub(super) cm_single: Cm,
    pub(super) binaries: Vec<PathBuf>,
    pub(super) bin_args: Vec<String>,
    pub(super) cargo_test: Vec<String>,
    pub(super) scripts: Vec<PathBuf>,
    pub(super) files: Vec<(PathBuf, Option<String>)>,
    pub(super) env: Vec<(String, String)>,
    pub(super) smoke: bool,
    pub(super) dev_misc: bool,
    pub(super) test_timeout: u64,
    pub(super) mem: Option<u32>,
    pub(super) jobs: usize,
    pub(super) refresh: bool,
    pub(super) verbose: bool,
}

pub(super) fn parse_args(args: &[String]) -> Result<Opts> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Opts> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_tests_means_the_smoke_test_on_both_kernels_and_node_counts() {
        let o = parse(&[]).unwrap();
        assert!(o.smoke);
        assert_eq!(o.kernels, [Kernel::V61, Kernel::V612]);
        assert_eq!(o.nodes, [1, 2]);
        assert_eq!(o.cm_single, Cm::None);
        assert!(o.dev_misc);
    }

    #[test]
    fn given_tests_run_on_one_node_and_kernels_are_deduplicated() {
        let o = parse(&[
            "--kernel",
            "6.12,6.12",
            "--kernel",
            "all",
            "--cargo-test",
            "-p dlm-tests --test kernel_scenarios",
            "--file",
            "target/release/dlmd:/vmtest/dlmd",
            "--file",
            "target/release/dlm",
            "--env",
            "A_B=c d",
            "--",
            "--odd-name",
        ])
        .unwrap();
        assert!(!o.smoke);
        assert_eq!(o.kernels, [Kernel::V612, Kernel::V61]);
        assert_eq!(o.nodes, [1]);
        assert_eq!(
            o.cargo_test,
            ["-p", "dlm-tests", "--test", "kernel_scenarios"]
        );
        assert_eq!(
            o.files,
            [
                (
                    PathBuf::from("target/release/dlmd"),
                    Some("/vmtest/dlmd".to_string())
                ),
                (PathBuf::from("target/release/dlm"), None),
            ]
        );
        assert_eq!(o.env, [("A_B".to_string(), "c d".to_string())]);
        assert_eq!(o.binaries, [PathBuf::from("--odd-name")]);
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for (args, want) in [
            (&["--kernel", "5.10"][..], "unknown kernel"),
            (&["--nodes", "3"], "--nodes \"3\": 1, 2 or all"),
            (&["--cm", "pacemaker"], "none or corosync"),
            (&["--file", "a:relative"], "GUEST must be absolute"),
            (&["--env", "1X=y"], "expected NAME=VALUE"),
            (&["--test-timeout", "soon"], "takes seconds"),
            (
                &["--no-dev-misc", "--nodes", "2", "t"],
                "--no-dev-misc needs",
            ),
            (
                &["--no-dev-misc", "--cm", "corosync", "t"],
                "--no-dev-misc needs",
            ),
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(e.starts_with("vmtest: "), "{e}");
            assert!(e.contains(want), "{args:?}: {e}");
        }
        let e = parse(&["--kernel"]).err().unwrap();
        assert!(
            e.starts_with("vmtest: --kernel needs a value\n\nusage:"),
            "{e}"
        );
    }
}
