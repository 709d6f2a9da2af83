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

/// The `dlm` command as clap describes it: for manual pages and shell
/// completions.
pub fn command() -> clap::Command {
    Cli::command()
}
