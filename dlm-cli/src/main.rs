//! `dlm`: the DLM from the shell.
//!
//! `dlm lock` is a cluster-wide `flock(1)`: it runs a command while holding
//! a lock. The other subcommands manage lockspaces and show the lock dump.
//! Every failure prints one readable line and exits non-zero.

mod dump;

use clap::{Parser, Subcommand};
use dlm_core::transport::{Backend, Control};
use dlm_core::{Errno, Error, LockOptions, Lockspace, Mode, Name};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// The DLM from the shell: locks, lockspaces and the lock dump.
#[derive(Parser)]
#[command(name = "dlm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command while holding a lock (a cluster-wide flock).
    ///
    /// Exit status: the command's own, or 1 when -n finds the lock held
    /// or -w times out (as flock(1)). The lock is released when the
    /// command ends or when `dlm` is killed.
    Lock {
        /// Lockspace (created, mode 0600, if it does not exist).
        #[arg(short, long, default_value = "default")]
        lockspace: String,
        /// Lock mode: NL, CR, CW, PR, PW or EX.
        #[arg(short, long, default_value = "EX", value_parser = parse_mode)]
        mode: Mode,
        /// Fail (exit 1) instead of waiting if the lock is held.
        #[arg(short = 'n', long, conflicts_with = "wait")]
        nonblock: bool,
        /// Wait at most SECONDS for the lock, then fail (exit 1).
        #[arg(short, long, value_name = "SECONDS")]
        wait: Option<f64>,
        /// The resource name.
        name: String,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Show the lock dump: resources, queues, modes, owners, LVBs.
    Locks {
        /// Only this lockspace.
        lockspace: Option<String>,
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List lockspaces.
    Lockspaces,
    /// Create a lockspace (it stays until released).
    Create {
        /// The lockspace name.
        lockspace: String,
        /// Permission bits for other users (octal).
        #[arg(long, default_value = "600", value_parser = parse_octal)]
        mode: u32,
        /// Fail if it already exists.
        #[arg(long)]
        exclusive: bool,
    },
    /// Release a lockspace created by `dlm create`.
    Release {
        /// The lockspace name.
        lockspace: String,
        /// Release it even if it still has locks.
        #[arg(long)]
        force: bool,
    },
    /// Force-unlock orphaned persistent locks.
    Purge {
        /// The lockspace name.
        lockspace: String,
        /// Only orphans of this process id (default: all orphans).
        #[arg(long, default_value_t = 0)]
        pid: u32,
        /// The cluster node (0: this one).
        #[arg(long, default_value_t = 0)]
        nodeid: u32,
    },
    /// Start dlmd unless a lock manager is already reachable.
    Daemon,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
        .map_err(|_| format!("bad mode {s:?}: use NL, CR, CW, PR, PW or EX"))
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| format!("bad octal mode {s:?}"))
}

/// A failure, already phrased for the user.
struct Fail(String);

fn describe(e: Error, what: &str) -> Fail {
    let why = match e {
        Error::Sys(Errno::ENOENT) | Error::Sys(Errno::ECONNREFUSED) if what.is_empty() => {
            no_dlm(e.errno())
        }
        Error::Sys(Errno::ENOENT) => {
            format!("{what}: no such lockspace or lock manager ({})", hint())
        }
        Error::Sys(Errno::ECONNREFUSED) => format!("{what}: {}", no_dlm(Errno::ECONNREFUSED)),
        Error::Sys(Errno::EACCES) | Error::Sys(Errno::EPERM) => {
            format!("{what}: permission denied")
        }
        Error::Sys(Errno::ENOTCONN) => format!("{what}: the lock manager went away"),
        e => format!("{what}: {e}"),
    };
    Fail(why)
}

fn hint() -> String {
    "is dlmd running? start it with `dlm daemon`".into()
}

fn no_dlm(e: Errno) -> String {
    let socket = dlm_core::dlmd::proto::client_socket_path();
    match e {
        Errno::ECONNREFUSED => {
            format!(
                "no dlmd answers on {} (stale socket); start it with `dlm daemon`",
                socket.display()
            )
        }
        _ => format!(
            "no DLM reachable: no kernel DLM and no dlmd socket at {}; start it with `dlm daemon`",
            socket.display()
        ),
    }
}

fn open_or_create(name: &str) -> Result<Lockspace, Fail> {
    match Lockspace::open(name) {
        Ok(ls) => Ok(ls),
        Err(Error::Sys(Errno::ENOENT)) => match Lockspace::create(name, 0o600) {
            Ok(ls) => Ok(ls),
            Err(e @ Error::Sys(Errno::ENOENT | Errno::ECONNREFUSED)) => {
                Err(Fail(no_dlm(e.errno())))
            }
            Err(e) => Err(describe(e, &format!("lockspace {name}"))),
        },
        Err(e @ Error::Sys(Errno::ECONNREFUSED)) => Err(Fail(no_dlm(e.errno()))),
        Err(e) => Err(describe(e, &format!("lockspace {name}"))),
    }
}

fn control() -> Result<Control, Fail> {
    Control::connect().map_err(|e| {
        Fail(match e {
            Errno::ENOENT | Errno::ECONNREFUSED => no_dlm(e),
            Errno::EAGAIN => "the lock manager did not answer in time (busy, stopped, or at its \
                              connection limits); try again"
                .to_owned(),
            e => format!("cannot reach the lock manager: {e}"),
        })
    })
}

fn run() -> Result<ExitCode, Fail> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Lock {
            lockspace,
            mode,
            nonblock,
            wait,
            name,
            command,
        } => {
            let ls = open_or_create(&lockspace)?;
            let opts = LockOptions::new();
            let what = format!("lock {name}");
            let lock = if nonblock {
                ls.try_lock(name.as_bytes(), mode, opts)
            } else if let Some(secs) = wait {
                ls.lock_timeout(
                    name.as_bytes(),
                    mode,
                    opts,
                    Duration::from_secs_f64(secs.max(0.0)),
                )
            } else {
                ls.lock(name.as_bytes(), mode, opts)
            };
            let lock = match lock {
                Ok(lock) => lock,
                Err(Error::WouldBlock | Error::TimedOut) => return Ok(ExitCode::from(1)),
                Err(e) => return Err(describe(e, &what)),
            };
            let status = Command::new(&command[0])
                .args(&command[1..])
                .status()
                .map_err(|e| Fail(format!("{}: {e}", command[0])))?;
            drop(lock);
            Ok(exit_code(status))
        }
        Cmd::Locks { lockspace, json } => {
            let ctl = control()?;
            let name = lockspace
                .as_deref()
                .map(|n| Name::lockspace(n.as_bytes()))
                .transpose();
            let name = name.map_err(|_| Fail("bad lockspace name".into()))?;
            let text = dump::locks(&ctl, name.as_ref(), json).map_err(Fail)?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lockspaces => {
            let ctl = control()?;
            for name in dump::lockspaces(&ctl).map_err(Fail)? {
                println!("{name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Create {
            lockspace,
            mode,
            exclusive,
        } => {
            let made = if exclusive {
                Lockspace::new_exclusive(&lockspace, mode)
            } else {
                Lockspace::create(&lockspace, mode)
            };
            match made {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(Error::Sys(Errno::EEXIST)) => {
                    Err(Fail(format!("lockspace {lockspace} already exists")))
                }
                Err(e @ Error::Sys(Errno::ENOENT | Errno::ECONNREFUSED)) => {
                    Err(Fail(no_dlm(e.errno())))
                }
                Err(e) => Err(describe(e, &format!("lockspace {lockspace}"))),
            }
        }
        Cmd::Release { lockspace, force } => {
            let ls = Lockspace::open(&lockspace)
                .map_err(|e| describe(e, &format!("lockspace {lockspace}")))?;
            match ls.release(force) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(Error::Busy) => Err(Fail(format!(
                    "lockspace {lockspace} is busy: it still has locks or other users (--force releases it with locks)"
                ))),
                Err(e) => Err(describe(e, &format!("lockspace {lockspace}"))),
            }
        }
        Cmd::Purge {
            lockspace,
            pid,
            nodeid,
        } => {
            let ls = Lockspace::open(&lockspace)
                .map_err(|e| describe(e, &format!("lockspace {lockspace}")))?;
            ls.purge(nodeid, pid).map_err(|e| describe(e, "purge"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Daemon => daemon(),
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128 + sig as u8),
        _ => ExitCode::FAILURE,
    }
}

/// Starts dlmd in the background unless a lock manager answers already.
fn daemon() -> Result<ExitCode, Fail> {
    if let Ok(ctl) = Control::connect() {
        match ctl.backend() {
            Backend::Kernel => println!("the kernel DLM is in use; no dlmd needed"),
            Backend::Dlmd => println!("dlmd is already running"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_ref()
        .and_then(|e| e.parent())
        .map(|d| d.join("dlmd"))
        .filter(|p| p.exists());
    let program = beside.unwrap_or_else(|| "dlmd".into());
    let is_root = rustix::process::getuid().is_root();
    let socket = dlm_core::dlmd::proto::daemon_socket_path(is_root);
    // dlmd finds the same path itself (and creates /run/dlmd as root);
    // `--daemon` returns once the detached daemon listens.
    let mut cmd = Command::new(&program);
    cmd.arg("--daemon");
    // The daemon must not hold our caller's terminal or pipes: its log
    // goes to a file.
    let log = if is_root {
        PathBuf::from("/var/log/dlmd.log")
    } else {
        std::env::temp_dir().join(format!("dlmd-{}.log", rustix::process::getuid().as_raw()))
    };
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| Fail(format!("{}: {e}", log.display())))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    let status = cmd
        .status()
        .map_err(|e| Fail(format!("cannot start {}: {e}", program.display())))?;
    if !status.success() || dlm_core::dlmd::client::connect(&socket).is_err() {
        return Err(Fail(format!(
            "dlmd did not come up on {} ({status}); see {}",
            socket.display(),
            log.display()
        )));
    }
    println!(
        "dlmd started on {} (log {})",
        socket.display(),
        log.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(Fail(msg)) => {
            eprintln!("dlm: {msg}");
            ExitCode::from(2)
        }
    }
}
