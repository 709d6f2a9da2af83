//! The command line of `dlmd`, the userspace DLM daemon.
//!
//! The clap definition lives in this library so that the manual page
//! (`dlmd(8)`) and the shell completions are generated from the same
//! definition the binary parses with (`cargo xtask man`), as for `dlm`.

#![deny(unsafe_code)]

use clap::{CommandFactory, Parser, ValueEnum};
use std::path::PathBuf;

/// Userspace Distributed Lock Manager for one machine.
///
/// dlmd serves the lock manager of the Linux DLM (lockspaces, six lock
/// modes, conversions, lock value blocks, blocking callbacks, persistent
/// locks and orphans) to the processes of this machine over a Unix
/// socket. libdlm, libdlm_lt, the Rust API of dlm-rs and dlm(1) use it
/// when the kernel has no DLM configured.
// An option given twice takes its last value (args_override_self), as
// with the hand-written parser before: scripts and tests add to a base
// command line.
#[derive(Parser, Debug)]
#[command(name = "dlmd", version, about, long_about, args_override_self = true)]
pub struct Args {
    /// Run in the foreground (the default; for systemd and shells)
    #[arg(short = 'f', long, overrides_with = "daemon")]
    pub foreground: bool,

    /// Start a detached dlmd and return once it accepts connections
    #[arg(short = 'd', long, overrides_with = "foreground")]
    pub daemon: bool,

    /// The socket to listen on (with --dump: to ask)
    ///
    /// Default: $DLMD_SOCKET, else /run/dlmd/dlmd.sock as root, else
    /// $XDG_RUNTIME_DIR/dlmd.sock, else /tmp/dlmd-UID/dlmd.sock. Under
    /// socket activation (LISTEN_FDS) the socket passed in is used.
    #[arg(short = 's', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// How much to log: error, warn, info or debug
    ///
    /// error: only failures that stop dlmd or lose a client; warn: also
    /// suspicious client behaviour and recoverable trouble; info: also
    /// start, stop and lockspace lifecycle; debug: also every connection
    /// and handle.
    #[arg(
        short = 'l',
        long,
        value_name = "LEVEL",
        default_value = "info",
        hide_possible_values = true
    )]
    pub log_level: Level,

    /// Write the log to PATH instead of standard error
    ///
    /// The file is opened for appending (created 0600, never through a
    /// symbolic link) and opened again on SIGHUP, for log rotation.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// As root: members of GROUP (a name or a gid) may create and remove
    /// lockspaces, as root may (others: EPERM)
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub admin_group: Option<String>,

    /// Lockspaces one uid may create (default 100; N or "unlimited")
    ///
    /// Root and dlmd's own uid are never limited.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub max_lockspaces_per_uid: Option<Limit>,

    /// Locks one uid may hold, orphans included (default 100000; N or
    /// "unlimited"; past it a LOCK gets ENOMEM)
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub max_locks_per_uid: Option<Limit>,

    /// Connections one uid may keep open, two per lockspace handle
    /// (default 1024; N or "unlimited")
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub max_connections_per_uid: Option<Limit>,

    /// Log each lock request once it has waited SECONDS, naming the
    /// waiter and its blockers (pids, modes)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub warn_wait: Option<u32>,

    /// Print the lock dump of a running dlmd (of LOCKSPACE, or of all) and
    /// exit
    #[arg(long, value_name = "LOCKSPACE", num_args = 0..=1)]
    pub dump: Option<Option<String>>,

    /// With --dump: print JSON instead of text
    #[arg(long, requires = "dump")]
    pub json: bool,
}

/// A `--max-…-per-uid` value: a number, or `unlimited` (`None`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limit(pub Option<usize>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    match s {
        "unlimited" => Ok(Limit(None)),
        v => v
            .parse()
            .map(|n| Limit(Some(n)))
            .map_err(|_| format!("{v:?} is not a number or \"unlimited\"")),
    }
}

/// How much dlmd says (the variants carry no doc comments: clap would
/// turn them into a list that clap_mangen renders with roff warnings).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, ValueEnum)]
#[allow(missing_docs)]
pub enum Level {
    Error,
    #[value(alias = "warning")]
    Warn,
    Info,
    Debug,
}

impl Level {
    /// The `log` crate's filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
        }
    }
}

/// The `dlmd` command as clap describes it: for the manual page and shell
/// completions.
pub fn command() -> clap::Command {
    Args::command()
}

/// YYYY-MM-DD of a day number since 1970-01-01 (Howard Hinnant's
/// civil-from-days): the date of dlmd's log lines and of the manual
/// pages xtask renders.
pub fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_date_of_known_days() {
        for (days, date) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (11016, "2000-02-29"),
            (20793, "2026-12-06"),
        ] {
            assert_eq!(super::civil_date(days), date);
        }
    }
}
