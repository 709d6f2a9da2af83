//! The command line of `dlm`, the DLM from the shell.
//!
//! The clap definition lives in this library so that the manual page
//! (`dlm(1)`) and the shell completions are generated from the same
//! definition the binary parses with (`cargo xtask man`).

use clap::{CommandFactory, Parser, Subcommand};
use dlm_core::Mode;

/// The DLM from the shell: locks, lockspaces and the lock dump.
#[derive(Parser)]
#[command(name = "dlm", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands of `dlm`.
#[derive(Subcommand)]
pub enum Cmd {
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
    /// command lines where visible), LVBs, how long each lock has been in
    /// its state, what blocks each waiting request, and deadlocks.
    Locks {
        /// Only this lockspace.
        lockspace: Option<String>,
        /// Machine-readable JSON instead of text (schema: docs/lock-dump.md).
        #[arg(long)]
        json: bool,
        /// Only requests (waiting or converting) at least SECONDS old;
        /// exit 1 when there is any, 0 when none.
        #[arg(long, value_name = "SECONDS")]
        stuck: Option<u64>,
    },
    /// Explain one resource: its holders, its queue, and for each waiting
    /// request the chain of blockers down to the process at its root, and
    /// any deadlock it is part of.
    Why {
        /// The resource name.
        name: String,
        /// The lockspace.
        #[arg(short, long, default_value = "default")]
        lockspace: String,
    },
    /// Which lock manager is in use and where, and for dlmd its version,
    /// protocol, pid, uptime, counts and counters; exit 0 when one
    /// answers, 3 when none is reachable (with a one-line reason).
    Status {
        /// One JSON object with the same facts (with no lock manager:
        /// `{"backend":null,"error":REASON}`).
        #[arg(long)]
        json: bool,
    },
    /// Lock statistics.
    Stats {
        /// Prometheus text format (for node_exporter's textfile collector).
        #[arg(long)]
        prometheus: bool,
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

/// The `dlm` command as clap describes it: for manual pages and shell
/// completions.
pub fn command() -> clap::Command {
    Cli::command()
}
