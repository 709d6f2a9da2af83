//! Logging to stderr with a global level: `error`, `warn`, `info` or
//! `debug`. dlmd runs in the foreground under systemd or a shell, so
//! stderr is the journal; no logging framework is needed.

use std::sync::atomic::{AtomicU8, Ordering};

/// How much dlmd says.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    /// Only failures that stop dlmd or lose a client.
    Error = 0,
    /// Also suspicious client behaviour and recoverable trouble.
    Warn = 1,
    /// Also start, stop and lockspace lifecycle.
    Info = 2,
    /// Also every connection and handle.
    Debug = 3,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    fn tag(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level that is printed.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Prints one message (use the `error!`…`debug!` macros).
pub fn emit(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        eprintln!("dlmd: {}: {}", level.tag(), args);
    }
}

/// Logs at error level.
macro_rules! error {
    ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($t)*)) };
}
/// Logs at warning level.
macro_rules! warning {
    ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($t)*)) };
}
/// Logs at info level.
macro_rules! info {
    ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($t)*)) };
}
/// Logs at debug level; the arguments are not evaluated otherwise.
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            $crate::log::emit($crate::log::Level::Debug, format_args!($($t)*))
        }
    };
}
pub(crate) use {debug, error, info, warning};
