//! `dlm`: the DLM from the shell.
//!
//! `dlm lock` is a cluster-wide `flock(1)`: it runs a command while holding
//! a lock. The other subcommands manage lockspaces and show the lock dump.
//! Every failure prints one readable line and exits non-zero.

mod dump;
mod lock;

use clap::{Parser, Subcommand};
use dlm_core::transport::{Backend, Control};
use dlm_core::{Errno, Error, Lockspace, Mode, Name};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

/// The DLM from the shell: locks, lockspaces and the lock dump.
#[derive(Parser)]
#[command(name = "dlm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command while holding a lock (a cluster-wide flock)
    ///
    /// `dlm lock [OPTIONS] NAME [--] COMMAND [ARGS...]`, or `-c STRING`
    /// for `sh -c STRING`. The lock is held until the command exits, then
    /// released before `dlm` returns; the exit status is the command's
    /// (128+N if signal N killed it). With -n or -w, a lock held elsewhere
    /// gives the conflict exit code (-E, default 1).
    ///
    /// Signals: SIGTERM, SIGINT, SIGHUP or SIGQUIT while waiting cancel
    /// the request (exit 128+N); while the command runs they are passed
    /// on to the command's pid only (not again if the terminal already
    /// sent them to it), and the lock stays held until it exits. The
    /// command inherits the lock's file descriptors, so it keeps the lock
    /// even if `dlm` is killed (-o: it does not). It finds DLM_LOCKSPACE,
    /// DLM_RESOURCE and DLM_MODE in its environment.
    #[command(verbatim_doc_comment)]
    Lock {
        /// Lockspace (created, mode 0600, if it does not exist).
        #[arg(short, long, default_value = "default")]
        lockspace: String,
        /// Shared lock (mode PR).
        #[arg(short, long, conflicts_with_all = ["exclusive", "mode"])]
        shared: bool,
        /// Exclusive lock (mode EX, the default).
        #[arg(short = 'x', long, conflicts_with = "mode")]
        exclusive: bool,
        /// Any DLM lock mode: NL, CR, CW, PR, PW or EX.
        #[arg(short, long, value_parser = parse_mode)]
        mode: Option<Mode>,
        /// Fail with the conflict exit code instead of waiting if the
        /// lock is held.
        #[arg(short = 'n', long, conflicts_with = "timeout")]
        nonblock: bool,
        /// Wait at most SECONDS (fractions allowed, at most one year),
        /// then fail with the conflict exit code.
        #[arg(short = 'w', long, value_name = "SECONDS", allow_hyphen_values = true)]
        timeout: Option<String>,
        /// The exit status when -n finds the lock held or -w times out.
        #[arg(short = 'E', long, value_name = "N", default_value_t = 1)]
        conflict_exit_code: u8,
        /// Do not pass the lock's file descriptors to the command (it
        /// then loses the lock if `dlm` is killed).
        #[arg(short = 'o', long)]
        close: bool,
        /// Run STRING with `sh -c` instead of a COMMAND.
        #[arg(short = 'c', long = "command", value_name = "STRING")]
        shell_command: Option<String>,
        /// The resource name (at most 64 bytes).
        name: String,
        /// The command to run and its arguments.
        #[arg(
            trailing_var_arg = true,
            value_name = "COMMAND",
            required_unless_present = "shell_command",
            conflicts_with = "shell_command"
        )]
        command: Vec<String>,
    },
    /// Show the lock dump: resources, queues, modes, owners (with their
    /// command lines where visible), LVBs.
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
            e => format!("cannot reach the lock manager: {e}"),
        })
    })
}

fn run() -> Result<ExitCode, Fail> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Lock {
            lockspace,
            shared,
            exclusive: _,
            mode,
            nonblock,
            timeout,
            conflict_exit_code,
            close,
            shell_command,
            name,
            command,
        } => {
            let timeout = timeout.as_deref().map(lock::parse_timeout).transpose()?;
            let argv = match shell_command {
                Some(s) => vec!["sh".into(), "-c".into(), s],
                None => command,
            };
            let mode = match (shared, mode) {
                (true, _) => Mode::Pr,
                (false, Some(m)) => m,
                (false, None) => Mode::Ex,
            };
            lock::run(lock::Request {
                lockspace,
                name,
                mode,
                nonblock,
                timeout,
                conflict_exit_code,
                close,
                argv,
            })
        }
        Cmd::Locks { lockspace, json } => {
            if let Some(name) = &lockspace {
                lock::check_name_len("lockspace", name)?;
            }
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
            lock::check_name_len("lockspace", &lockspace)?;
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
            lock::check_name_len("lockspace", &lockspace)?;
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
            lock::check_name_len("lockspace", &lockspace)?;
            let ls = Lockspace::open(&lockspace)
                .map_err(|e| describe(e, &format!("lockspace {lockspace}")))?;
            ls.purge(nodeid, pid).map_err(|e| describe(e, "purge"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Daemon => daemon(),
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
