//! dlmd: the userspace DLM daemon. It serves `dlm-engine` (the kernel
//! DLM's semantics on one node) to every process of the machine over a
//! `SOCK_SEQPACKET` Unix socket, speaking the protocol of `PROTOCOL.md`.
//!
//! ```text
//! dlmd [--foreground | --daemon] [--socket PATH] [--log-level LEVEL]
//!      [--log-file PATH] [--admin-group GROUP] [--max-lockspaces-per-uid N]
//!      [--max-locks-per-uid N] [--max-connections-per-uid N]
//! dlmd --dump [LOCKSPACE] [--json] [--socket PATH]
//! ```
//!
//! The arguments are parsed by clap from the definition in the `dlmd`
//! library (`dlmd::Args`), which also gives dlmd(8) and the shell
//! completions (`cargo xtask man`).
//!
//! dlmd runs in the foreground by default (systemd's `Type=notify`: it
//! sends `READY=1` to `$NOTIFY_SOCKET` once its socket accepts, see
//! [`systemd`]; or a shell's `&`); `--daemon` starts a detached copy (its
//! own process group, stdin and stdout closed, stderr kept unless
//! `--log-file` is given), prints its pid and returns once it listens.
//! One dlmd per socket path: an exclusive `flock` on `PATH.lock` (left in
//! place on exit, which keeps that check race-free) and a connect test
//! refuse a second one; a socket file nobody listens on (ECONNREFUSED) is
//! removed, anything else at the path is left alone. Under socket
//! activation (`$LISTEN_FDS`, `dlmd.socket`) the passed socket is used
//! as it is: no lock file, and it is not removed at exit. dlmd stops
//! cleanly on SIGTERM or SIGINT, removing its socket (only if it is
//! still the one it bound); SIGHUP reopens `--log-file`. Modules:
//! [`server`] (the event loop), [`startup`] (the socket), [`perm`]
//! (permissions), [`dump`] (the lock dump), [`client`] (`--dump`),
//! [`signals`], [`logging`], [`systemd`].

#![deny(unsafe_code)]

mod client;
mod dump;
mod limits;
mod logging;
mod perm;
mod recv;
mod server;
mod signals;
mod startup;
mod systemd;

use clap::Parser;
use log::{error, info};
use startup::PathKind;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = dlmd::Args::parse();
    if let Err(e) = logging::init(args.log_level.filter(), args.log_file.as_deref()) {
        eprintln!("dlmd: {e}");
        return ExitCode::FAILURE;
    }
    let mut limits = limits::Limits::default();
    for (value, slot) in [
        (args.max_lockspaces_per_uid, &mut limits.lockspaces),
        (args.max_locks_per_uid, &mut limits.locks),
        (args.max_connections_per_uid, &mut limits.connections),
    ] {
        if let Some(dlmd::Limit(n)) = value {
            *slot = n;
        }
    }
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
        log::warn!(
            "--admin-group has no effect: a dlmd not run by root serves only its own user and root"
        );
    }
    if args.daemon {
        return daemonize(&path, args.log_file.is_some());
    }
    raise_fd_limit();
    let activated = match systemd::listen_fd() {
        Ok(fd) => fd,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listening = match activated {
        Some(fd) => startup::Listening::activated(fd, path.clone()),
        None => match startup::listen(&path, kind) {
            Ok(l) => l,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        },
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
            s.set_limits(limits);
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
    if listening.is_activated() {
        info!(
            "serving the socket passed by the service manager (pid {})",
            std::process::id()
        );
    } else {
        info!(
            "listening on {} (pid {})",
            path.display(),
            std::process::id()
        );
    }
    // The socket accepts connections from here on (listen() is done).
    systemd::notify("READY=1");
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
    systemd::notify("STOPPING=1");
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
/// no stdin/stdout; no stderr either with `--log-file`) and returns once its socket accepts connections, or
/// fails with its exit status.
///
/// The child gets this process's own arguments with `--daemon` replaced
/// by `--foreground`, in the same environment: a default socket path is
/// found again by the child, so it keeps its kind and its directory is
/// prepared as documented (created on first run), and every other option
/// reaches it unchanged.
fn daemonize(path: &std::path::Path, log_file: bool) -> ExitCode {
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
    if log_file {
        // The child logs to the file: it must not keep our caller's
        // terminal or pipe open.
        cmd.stderr(std::process::Stdio::null());
    }
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
