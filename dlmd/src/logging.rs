//! dlmd's logger behind the `log` facade: one line per record, to
//! standard error or to `--log-file`.
//!
//! - Under systemd (`$JOURNAL_STREAM` names the device and inode of our
//!   standard error), each line starts with the journal's priority
//!   prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), so
//!   `journalctl -p` filters by level; the journal adds time and name.
//! - Otherwise the line is `dlmd: LEVEL: message`, and in a log file it
//!   starts with the UTC time.
//!
//! The log file is opened for appending (created 0600, never through a
//! symbolic link) and opened again by [`reopen`] on SIGHUP, so log
//! rotation (rename, then SIGHUP) never stops dlmd.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

enum Sink {
    Stderr { journal: bool },
    File { path: PathBuf, file: File },
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger at `level`, writing to `log_file` if given.
///
/// # Errors
/// A one-line message when the log file cannot be opened.
pub fn init(level: LevelFilter, log_file: Option<&Path>) -> Result<(), String> {
    let sink = match log_file {
        Some(path) => Sink::File {
            path: path.to_owned(),
            file: open(path)?,
        },
        None => Sink::Stderr {
            journal: stderr_is_journal(),
        },
    };
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(sink),
    });
    // Only main calls init, once; a second call keeps the first logger.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    Ok(())
}

/// Opens the log file again (SIGHUP); without `--log-file`, nothing to do.
/// When the new file cannot be opened, logging goes on to the old one,
/// with a warning there.
pub fn reopen() {
    let Some(logger) = LOGGER.get() else { return };
    let mut sink = logger.sink.lock().unwrap_or_else(|e| e.into_inner());
    let Sink::File { path, file } = &mut *sink else {
        drop(sink);
        log::debug!("SIGHUP: no log file to reopen");
        return;
    };
    let result = open(path).map(|new| *file = new);
    let path = path.display().to_string();
    drop(sink);
    match result {
        Ok(()) => log::info!("SIGHUP: log file {path} reopened"),
        Err(e) => log::warn!("SIGHUP: {e}; logging on to the old file"),
    }
}

fn open(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

/// Whether standard error is the journal stream systemd set up: the
/// `DEV:INODE` of `$JOURNAL_STREAM` is that of fd 2 (a child whose
/// stderr was redirected inherits the variable but not the stream).
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = var.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    rustix::fs::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

fn tag(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug | Level::Trace => "debug",
    }
}

/// The journal's syslog priority of `level`.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line, so lines of two writers never interleave.
        let _ = match &mut *sink {
            Sink::Stderr { journal: true } => {
                let line = format!("<{}>{}\n", priority(level), record.args());
                std::io::stderr().write_all(line.as_bytes())
            }
            Sink::Stderr { journal: false } => {
                let line = format!("dlmd: {}: {}\n", tag(level), record.args());
                std::io::stderr().write_all(line.as_bytes())
            }
            Sink::File { file, .. } => {
                let line = format!("{} dlmd: {}: {}\n", now(), tag(level), record.args());
                file.write_all(line.as_bytes())
            }
        };
    }

    fn flush(&self) {}
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        dlmd::civil_date(days),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
