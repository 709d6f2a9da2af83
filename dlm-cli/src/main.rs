//! `dlm`: the DLM from the shell.
//!
//! `dlm lock` is a cluster-wide `flock(1)`: it runs a command while holding
//! a lock. The other subcommands manage lockspaces and show the lock dump.
//! Every failure prints one readable line and exits non-zero.

mod dump;
mod lock;
mod report;
mod status;

use clap::Parser;
use dlm_cli::{Cli, Cmd};
use dlm_core::transport::{Backend, Control};
use dlm_core::{Errno, Error, Lockspace, Mode, Name};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

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
            match dlm_core::transport::dlmd_refusal() {
                Some(why) => why.to_string(),
                None if e.errno() == Errno::EPERM => format!(
                    "{what}: not permitted: creating and removing lockspaces needs root (or dlmd's --admin-group)"
                ),
                None => format!("{what}: permission denied"),
            }
        }
        Error::Sys(Errno::ENOTCONN) => format!("{what}: the lock manager went away"),
        Error::Sys(Errno::EPROTONOSUPPORT) => match dlm_core::dlmd::client::version_mismatch() {
            Some(why) => why,
            None => format!("{what}: {e}"),
        },
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
                socket.path.display()
            )
        }
        _ => format!(
            "no DLM reachable: no kernel DLM and no dlmd socket at {}; start it with `dlm daemon`",
            socket.path.display()
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
            Err(Error::Sys(Errno::EPERM | Errno::EACCES))
                if dlm_core::transport::dlmd_refusal().is_none() =>
            {
                Err(Fail(format!(
                    "lockspace {name} does not exist, and only root (or dlmd's --admin-group) may create it: \
                     ask root to run `dlm create {name} --mode 0666` (anyone may lock in it) \
                     or `sg GROUP -c 'dlm create {name} --mode 0660'` (the members of GROUP may)"
                )))
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
            Errno::EPROTONOSUPPORT if dlm_core::dlmd::client::version_mismatch().is_some() => {
                dlm_core::dlmd::client::version_mismatch().unwrap_or_default()
            }
            e => match dlm_core::transport::dlmd_refusal() {
                Some(why) if e == Errno::EACCES => why.to_string(),
                _ => format!("cannot reach the lock manager: {e}"),
            },
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
        Cmd::Locks {
            lockspace,
            json,
            stuck,
        } => {
            let name = lockspace_name(lockspace.as_deref())?;
            let ctl = control()?;
            if !json && stuck.is_none() {
                print!("{}", dump::locks_text(&ctl, name.as_ref()).map_err(Fail)?);
                return Ok(ExitCode::SUCCESS);
            }
            let full = dump::load(&ctl, name.as_ref()).map_err(Fail)?;
            let (shown, any) = match stuck {
                Some(secs) => report::stuck(&full, secs),
                None => (full, false),
            };
            if json {
                println!("{}", to_json(&shown)?);
            } else if let Some(secs) = stuck {
                print!("{}", report::stuck_text(&shown, secs));
            }
            Ok(if any {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Why { name, lockspace } => {
            lock::check_name_len("resource", &name)?;
            let ls = lockspace_name(Some(&lockspace))?;
            let ctl = control()?;
            let d = dump::load(&ctl, ls.as_ref()).map_err(Fail)?;
            match report::why(&d, name.as_bytes()) {
                Some(text) => print!("{text}"),
                None => println!("resource {name:?} has no locks in lockspace {lockspace:?}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => status::run(json),
        Cmd::Stats { prometheus: _ } => {
            let ctl = control()?;
            let d = dump::load(&ctl, None).map_err(Fail)?;
            // dlmd's counters; none from a dlmd without STATUS.
            let status = match &ctl {
                Control::Dlmd(c, ..) => c.status().ok().flatten(),
                Control::Kernel(_) => None,
            };
            print!("{}", report::prometheus(&d, status.as_ref()));
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
    match Control::connect() {
        Ok(ctl) => {
            match ctl.backend() {
                Backend::Kernel => println!("the kernel DLM is in use; no dlmd needed"),
                Backend::Dlmd => println!("dlmd is already running"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(Errno::EACCES) => {
            if let Some(why) = dlm_core::transport::dlmd_refusal() {
                return Err(Fail(why.to_string()));
            }
        }
        Err(_) => {}
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
    // The daemon must not hold our caller's terminal or pipes: it logs to
    // a file (`--log-file`, reopened on SIGHUP), for an ordinary user
    // beside the socket, inside the private directory (never a
    // predictable name in /tmp). dlmd opens it (0600, never through a
    // symbolic link) and detaches its child from our stderr; an error
    // before that (the file cannot be opened) still reaches our stderr.
    let log = if is_root {
        PathBuf::from("/var/log/dlmd.log")
    } else {
        user_log_dir(&socket)?.join("dlmd.log")
    };
    cmd.arg("--log-file").arg(&log);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let status = cmd
        .status()
        .map_err(|e| Fail(format!("cannot start {}: {e}", program.display())))?;
    let sock = dlm_core::dlmd::proto::SocketPath::explicit(&socket);
    if !status.success() || dlm_core::dlmd::client::connect(&sock).is_err() {
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

/// The directory of an ordinary user's dlmd socket, where `dlm daemon`
/// puts the log. The per-user default (`$XDG_RUNTIME_DIR`, else
/// `/tmp/dlmd-$UID`) is created 0700 if missing and must be a real
/// directory of ours that nobody else can enter; a `$DLMD_SOCKET`
/// directory is the user's choice.
fn user_log_dir(socket: &std::path::Path) -> Result<PathBuf, Fail> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    if std::env::var_os("DLMD_SOCKET").is_some_and(|p| !p.is_empty()) {
        return Ok(dir);
    }
    let uid = rustix::process::getuid().as_raw();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Fail(format!("{}: {e}", dir.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Fail(format!("cannot create {}: {e}", dir.display()))),
    }
    let meta =
        std::fs::symlink_metadata(&dir).map_err(|e| Fail(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(Fail(format!(
            "{} must be a 0700 directory owned by uid {uid} (it is owned by uid {}); refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    Ok(dir)
}

/// A lockspace name argument, checked.
fn lockspace_name(name: Option<&str>) -> Result<Option<Name>, Fail> {
    let Some(name) = name else {
        return Ok(None);
    };
    lock::check_name_len("lockspace", name)?;
    Name::lockspace(name.as_bytes())
        .map(Some)
        .map_err(|_| Fail("bad lockspace name".into()))
}

fn to_json(d: &dlm_core::dump::Dump) -> Result<String, Fail> {
    serde_json::to_string(d).map_err(|e| Fail(format!("json: {e}")))
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
