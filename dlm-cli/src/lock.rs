//! `dlm lock`: run a command while holding a lock, as `flock(1)` does
//! with a file.
//!
//! - While waiting, SIGTERM, SIGINT, SIGHUP and SIGQUIT cancel the request
//!   (nothing stays queued) and `dlm` exits with 128+signal.
//! - While the command runs, those signals are forwarded to the command's
//!   pid only, unless the kernel sent them (a terminal's SIGINT already
//!   reached the whole foreground group); `dlm` holds the lock until the
//!   command has exited.
//! - The command inherits the handle's fds (dlmd's sockets or the kernel
//!   device; `-o` opts out), so a `dlm` killed outright leaves the lock
//!   with the command until it exits, as flock's child keeps the file.
//! - When the command exits, `dlm` unlocks and closes its handle before it
//!   returns, and exits with the command's status.
//!
//! Signals are blocked from the start and read from signalfds, so none is
//! lost between the steps; the command gets the caller's signal mask back.

use crate::{Fail, describe, open_or_create};
use dlm_core::{Error, LockOptions, Mode, NAME_MAX};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The longest `-w`: one year.
pub const MAX_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// The signals that cancel a wait and are forwarded to the command.
const FORWARDED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// What `dlm lock` was asked to do.
pub struct Request {
    pub lockspace: String,
    pub name: String,
    pub mode: Mode,
    pub nonblock: bool,
    pub timeout: Option<Duration>,
    pub conflict_exit_code: u8,
    pub close: bool,
    /// The program and its arguments.
    pub argv: Vec<String>,
}

/// Parses `-w SECONDS`: a finite number from 0 to one year, fractions
/// allowed.
pub fn parse_timeout(s: &str) -> Result<Duration, Fail> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| Fail(format!("timeout {s:?}: not a number of seconds")))?;
    if !(0.0..=MAX_TIMEOUT_SECS).contains(&secs) {
        return Err(Fail(format!(
            "timeout {s:?}: give 0 to {MAX_TIMEOUT_SECS} seconds (one year)"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Refuses a name longer than the DLM allows, with its length.
pub fn check_name_len(what: &str, name: &str) -> Result<(), Fail> {
    if name.len() > NAME_MAX {
        return Err(Fail(format!(
            "{what} name is {} bytes; at most {NAME_MAX}",
            name.len()
        )));
    }
    if name.is_empty() && what == "lockspace" {
        return Err(Fail("lockspace name is empty".into()));
    }
    Ok(())
}

/// A set of signals, blocked for this process while it lives and read
/// from a signalfd.
struct Signals {
    fd: OwnedFd,
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initializes the set it is given; sigaddset
    // only adds valid signal numbers (constants) to that initialized set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &sig in signals {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

impl Signals {
    /// Opens a signalfd for `signals` (already blocked by the caller).
    fn open(signals: &[libc::c_int]) -> Result<Signals, Fail> {
        let set = sigset(signals);
        // SAFETY: `set` is an initialized sigset; -1 asks for a new fd,
        // which we own from here on.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(Fail(format!(
                "signalfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: signalfd returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Signals { fd })
    }

    /// The next queued signal: its number and `si_code`.
    fn next(&self) -> Option<(libc::c_int, i32)> {
        // SAFETY: signalfd_siginfo is plain data, valid when zeroed.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`, which has them.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        (n == size as isize).then_some((info.ssi_signo as libc::c_int, info.ssi_code))
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether `sig`'s disposition is "ignore" (inherited from the caller).
fn ignored(sig: libc::c_int) -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only reads the current one into `old`,
    // which sigaction fills when it returns 0.
    let ok = unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) } == 0;
    // SAFETY: filled by the successful call above.
    ok && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Blocks `signals` for this process; returns the mask before.
fn block(signals: &[libc::c_int]) -> libc::sigset_t {
    let set = sigset(signals);
    let mut old = sigset(&[]);
    // SAFETY: both sets are initialized; dlm has no other threads that
    // would need another mask.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) };
    old
}

/// Runs `dlm lock`; returns the exit code.
pub fn run(req: Request) -> Result<ExitCode, Fail> {
    check_name_len("lockspace", &req.lockspace)?;
    check_name_len("resource", &req.name)?;
    // Block the signals first: from here on they queue on the signalfds.
    // A signal ignored when dlm started stays ignored, as a shell keeps it
    // (a background job's SIGINT and SIGQUIT): it neither cancels the
    // wait nor is passed on, and the command inherits the disposition.
    let handled: Vec<libc::c_int> = FORWARDED.into_iter().filter(|&s| !ignored(s)).collect();
    let mut blocked = handled.clone();
    blocked.push(libc::SIGCHLD);
    let old_mask = block(&blocked);
    let stop = Signals::open(&handled)?;
    let child_exit = Signals::open(&[libc::SIGCHLD])?;

    let ls = open_or_create(&req.lockspace)?;
    let what = format!("lock {}", req.name);
    let opts = LockOptions::new();
    let name = req.name.as_bytes();
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let lock = match if req.nonblock {
        ls.try_lock(name, req.mode, opts)
    } else {
        ls.lock_until(name, req.mode, opts, deadline, stop.as_fd())
    } {
        Ok(lock) => lock,
        Err(Error::WouldBlock | Error::TimedOut) => {
            return Ok(ExitCode::from(req.conflict_exit_code));
        }
        Err(Error::Interrupted) => {
            let sig = stop.next().map_or(libc::SIGTERM, |(sig, _)| sig);
            return Ok(ExitCode::from(128 + sig as u8));
        }
        Err(e) => return Err(describe(e, &what)),
    };
    // A signal that came while the lock was granted ends it here, before
    // the command starts.
    if let Some((sig, _)) = stop.next() {
        unlock(lock, &what);
        return Ok(ExitCode::from(128 + sig as u8));
    }

    let inherit: Vec<RawFd> = if req.close {
        Vec::new()
    } else {
        ls.owner_fds().iter().map(|fd| fd.as_raw_fd()).collect()
    };
    let mut cmd = Command::new(&req.argv[0]);
    cmd.args(&req.argv[1..])
        .env("DLM_LOCKSPACE", &req.lockspace)
        .env("DLM_RESOURCE", &req.name)
        .env("DLM_MODE", req.mode.name());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (fcntl, sigprocmask) on data prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::sigprocmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            unlock(lock, &what);
            // As flock: 127 for a command not found, 126 otherwise.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let why = match e.raw_os_error() {
                Some(raw) => dlm_core::Errno::from_raw(raw).to_string(),
                None => e.to_string(),
            };
            eprintln!("dlm: {}: {why}", req.argv[0]);
            return Ok(ExitCode::from(code));
        }
    };
    let pid = child.id() as libc::pid_t;
    let status = loop {
        // A reaped child's pid could be reused: signals go to it only
        // while it is unreaped.
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                // Cannot happen for our own child; hold the lock until it
                // ends anyway.
                eprintln!("dlm: waiting for {}: {e}", req.argv[0]);
                break child.wait().map_err(|e| Fail(format!("wait: {e}")))?;
            }
        }
        wait_readable(&[stop.as_fd(), child_exit.as_fd()]);
        while let Some((sig, code)) = stop.next() {
            // si_code > 0 (SI_KERNEL): the kernel sent it, as a terminal
            // does to its whole foreground group, the command included.
            // SI_USER, SI_QUEUE, SI_TKILL (<= 0): a process sent it to us.
            if code <= 0 {
                // SAFETY: kill(2) on our unreaped child's pid.
                unsafe { libc::kill(pid, sig) };
            }
        }
        while child_exit.next().is_some() {}
    };
    unlock(lock, &what);
    drop(ls);
    Ok(exit_code(status))
}

/// Unlocks explicitly (the command's inherited fds, or its children's,
/// would otherwise keep the lock) and says so if that failed.
fn unlock(lock: dlm_core::Lock<'_>, what: &str) {
    if let Err(e) = lock.unlock() {
        eprintln!("dlm: unlock: {}", describe(e, what).0);
    }
}

/// Waits until one of `fds` is readable.
fn wait_readable(fds: &[BorrowedFd<'_>]) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let _ = poll(&mut polled, None);
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128 + sig as u8),
        _ => ExitCode::FAILURE,
    }
}
