//! dlmd: the userspace DLM daemon. It serves `dlm-engine` (the kernel
//! DLM's semantics on one node) to every process of the machine over a
//! `SOCK_SEQPACKET` Unix socket, speaking the protocol of `PROTOCOL.md`.
//!
//! ```text
//! dlmd [--foreground | --daemon] [--socket PATH] [--log-level LEVEL]
//!      [--admin-group GROUP] [--max-lockspaces-per-uid N]
//!      [--max-locks-per-uid N] [--max-connections-per-uid N]
//! dlmd --dump [LOCKSPACE] [--json] [--socket PATH]
//! ```
//!
//! dlmd runs in the foreground by default (systemd's `Type=simple`, or a
//! shell's `&`); `--daemon` starts a detached copy (its own process
//! group, stdin and stdout closed, stderr kept), prints its pid and
//! returns once it listens. One dlmd per socket path: an exclusive
//! `flock` on `PATH.lock` (left in place on exit, which keeps that check
//! race-free) and a connect test refuse a second one; a socket file
//! nobody listens on (ECONNREFUSED) is removed, anything else at the path
//! is left alone. dlmd stops cleanly on SIGTERM, SIGINT or SIGHUP,
//! removing its socket (only if it is still the one it bound). Modules: [`server`] (the event loop), [`startup`] (the
//! socket), [`perm`] (permissions), [`dump`] (the lock dump), [`client`]
//! (`--dump`), [`signals`], [`log`].

#![deny(unsafe_code)]

mod client;
mod dump;
mod limits;
mod log;
mod perm;
mod recv;
mod server;
mod signals;
mod startup;

use log::{error, info};
use startup::PathKind;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: dlmd [--foreground | --daemon] [--socket PATH] [--log-level LEVEL]
            [--admin-group GROUP] [--max-lockspaces-per-uid N]
            [--max-locks-per-uid N] [--max-connections-per-uid N]
       dlmd --dump [LOCKSPACE] [--json] [--socket PATH]

  --foreground        run in the foreground (the default; for systemd)
  --daemon            start a detached dlmd and return once it listens
  --socket PATH       the socket to listen on (default: $DLMD_SOCKET, else
                      /run/dlmd/dlmd.sock as root, else
                      $XDG_RUNTIME_DIR/dlmd.sock, else /tmp/dlmd-$UID/dlmd.sock)
  --log-level LEVEL   error, warn, info (default) or debug; logs go to stderr
  --admin-group GROUP as root: members of GROUP (a name or a gid) may create
                      and remove lockspaces, as root may (others: EPERM)
  --max-lockspaces-per-uid N   lockspaces one uid may create (default 100)
  --max-locks-per-uid N        locks one uid may hold, orphans included
                               (default 100000; past it a LOCK gets ENOMEM)
  --max-connections-per-uid N  connections one uid may keep open, two per
                               lockspace handle (default 1024)
                      N: a number or \"unlimited\"; root and dlmd's own
                      uid are never limited
  --warn-wait SECONDS log each lock request once it has waited SECONDS,
                      naming the waiter and its blockers (pids, modes)
  --dump [LOCKSPACE]  print the lock dump of a running dlmd and exit
  --json              with --dump: print JSON instead of text
";

struct Args {
    daemon: bool,
    socket: Option<PathBuf>,
    level: log::Level,
    dump: Option<Option<String>>,
    json: bool,
    admin_group: Option<String>,
    limits: limits::Limits,
    warn_wait: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        daemon: false,
        socket: None,
        level: log::Level::Info,
        dump: None,
        json: false,
        admin_group: None,
        limits: limits::Limits::default(),
        warn_wait: None,
    };
    let mut it = std::env::args_os().skip(1).peekable();
    while let Some(arg) = it.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("unexpected argument {a:?}"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<std::ffi::OsString, String> {
            match &inline {
                Some(v) => Ok(v.into()),
                None => it.next().ok_or(format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "--foreground" | "-f" => args.daemon = false,
            "--daemon" | "-d" => args.daemon = true,
            "--socket" | "-s" => args.socket = Some(value("--socket")?.into()),
            "--log-level" | "-l" => {
                let v = value("--log-level")?;
                let v = v.to_string_lossy();
                args.level = log::Level::parse(&v).ok_or(format!("unknown log level {v:?}"))?;
            }
            "--dump" => {
                let ls = match inline {
                    Some(v) => Some(v),
                    None => match it.peek().and_then(|a| a.to_str()) {
                        Some(a) if !a.starts_with('-') => {
                            it.next().and_then(|a| a.into_string().ok())
                        }
                        _ => None,
                    },
                };
                args.dump = Some(ls);
            }
            "--json" => args.json = true,
            "--warn-wait" => {
                let v = value("--warn-wait")?;
                let v = v.to_string_lossy();
                args.warn_wait = Some(v.parse::<u32>().ok().filter(|&n| n > 0).ok_or(format!(
                    "--warn-wait needs a number of seconds (1 or more), not {v:?}"
                ))?);
            }
            "--admin-group" | "-g" => {
                let v = value("--admin-group")?;
                args.admin_group = Some(v.to_string_lossy().into_owned());
            }
            f if f.starts_with("--max-") => {
                let v = value(f)?;
                if !args.limits.parse_flag(f, &v.to_string_lossy())? {
                    return Err(format!("unexpected argument {arg:?}"));
                }
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("dlmd {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if args.json && args.dump.is_none() {
        return Err("--json goes with --dump".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dlmd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    log::set_level(args.level);
    if let Some(lockspace) = &args.dump {
        let path = args.socket.clone().map_or_else(
            dlm_core::dlmd::proto::client_socket_path,
            dlm_core::dlmd::proto::SocketPath::explicit,
        );
        return match client::fetch_dump(&path, lockspace.as_deref()) {
            Ok(text) if args.json => match dlm_core::dump::Dump::from_dlmd_text(&text) {
                Ok(dump) => {
                    println!("{}", dump.to_json());
                    ExitCode::SUCCESS
                }
                Err(line) => {
                    eprintln!("dlmd: cannot parse line {line} of the dump");
                    ExitCode::FAILURE
                }
            },
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dlmd: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let is_root = rustix::process::geteuid().is_root();
    let env_socket = std::env::var_os("DLMD_SOCKET").filter(|p| !p.is_empty());
    let (path, kind) = match (&args.socket, env_socket) {
        (Some(p), _) => (p.clone(), PathKind::Explicit),
        (None, Some(p)) => (p.into(), PathKind::Explicit),
        (None, None) => {
            let p = dlm_core::dlmd::proto::daemon_socket_path(is_root);
            let kind = if p.as_os_str() == dlm_core::dlmd::proto::SYSTEM_SOCKET {
                PathKind::System
            } else if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| !d.is_empty()) {
                PathKind::Runtime
            } else {
                PathKind::PerUserTmp
            };
            (p, kind)
        }
    };
    let admin_gid = match args.admin_group.as_deref().map(perm::group_id) {
        None => None,
        Some(Ok(gid)) => Some(gid),
        Some(Err(e)) => {
            error!("--admin-group: {e}");
            return ExitCode::FAILURE;
        }
    };
    if admin_gid.is_some() && !is_root {
        log::warning!(
            "--admin-group has no effect: a dlmd not run by root serves only its own user and root"
        );
    }
    if args.daemon {
        return daemonize(&path);
    }
    raise_fd_limit();
    let listening = match startup::listen(&path, kind) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match listening.listener.try_clone() {
        Ok(fd) => fd,
        Err(e) => {
            error!("dup: {e}");
            listening.remove_socket();
            return ExitCode::FAILURE;
        }
    };
    let mut server = match server::Server::new(listener) {
        Ok(mut s) => {
            s.set_limits(args.limits);
            s.set_warn_wait(args.warn_wait);
            s
        }
        Err(e) => {
            error!("{e}");
            listening.remove_socket();
            return ExitCode::FAILURE;
        }
    };
    if let Some(gid) = admin_gid {
        server.set_admin_group(gid);
    }
    info!(
        "listening on {} (pid {})",
        path.display(),
        std::process::id()
    );
    let code = match server.run() {
        Ok(sig) => {
            info!("signal {sig}: shutting down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("event loop: {e}");
            ExitCode::FAILURE
        }
    };
    listening.remove_socket();
    code
}

/// Lets dlmd hold as many connections as the hard limit allows.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// `--daemon`: starts `dlmd --foreground` detached (own process group,
/// no stdin/stdout) and returns once its socket accepts connections, or
/// fails with its exit status.
///
/// The child gets this process's own arguments with `--daemon` replaced
/// by `--foreground`, in the same environment: a default socket path is
/// found again by the child, so it keeps its kind and its directory is
/// prepared as documented (created on first run), and every other option
/// reaches it unchanged.
fn daemonize(path: &std::path::Path) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            error!("cannot find my executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon" && a != "-d");
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--foreground").args(args);
    let mut child = match cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            error!("cannot start dlmd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match rustix::net::SocketAddrUnix::new(path) {
        Ok(a) => a,
        Err(e) => {
            error!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    for _ in 0..1000 {
        if let Ok(Some(status)) = child.try_wait() {
            error!("dlmd exited: {status}");
            return ExitCode::FAILURE;
        }
        if let Ok(fd) = startup::seqpacket() {
            if rustix::net::connect(&fd, &addr).is_ok() {
                println!("{}", child.id());
                return ExitCode::SUCCESS;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    error!("dlmd (pid {}) did not start listening in 10 s", child.id());
    ExitCode::FAILURE
}
