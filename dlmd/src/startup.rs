//! Getting the listening socket: the socket directory, the one-instance
//! lock, the stale-socket check, bind and listen; and removing the socket
//! again at shutdown (only if it is still ours).

use rustix::fs::{self, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How dlmd found its socket path, which decides how its directory is
/// prepared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PathKind {
    /// `--socket` or `$DLMD_SOCKET`: the directory must already exist.
    Explicit,
    /// `/run/dlmd/dlmd.sock`: the directory is created 0755 if missing
    /// (a fresh machine; systemd's `RuntimeDirectory=` may have made it).
    System,
    /// `$XDG_RUNTIME_DIR/dlmd.sock`: the directory must exist, be ours
    /// and 0700.
    Runtime,
    /// `/tmp/dlmd-$UID/dlmd.sock`: the directory is created 0700, and
    /// must be ours and 0700, so no other user can reach the socket.
    PerUserTmp,
}

/// A bound, listening socket and what is needed to clean it up.
pub struct Listening {
    /// The listening `SOCK_SEQPACKET` socket (non-blocking).
    pub listener: OwnedFd,
    /// Where it is bound.
    pub path: PathBuf,
    /// Device and inode of the socket file, to unlink only our own;
    /// `None` for a socket passed by socket activation, which belongs
    /// to the socket unit and stays.
    id: Option<(u64, u64)>,
    /// The lock file, held (flock) for the daemon's lifetime (not taken
    /// under socket activation: the service manager runs one instance).
    _lock: Option<OwnedFd>,
}

/// Prepares the directory of `path`, takes the instance lock, removes a
/// stale socket and binds and listens.
///
/// # Errors
/// A message for the user: another dlmd listens on the path, the path or
/// directory is unusable, or a system call failed.
pub fn listen(path: &Path, kind: PathKind) -> Result<Listening, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_dir(dir, kind)?;

    // One instance per socket path: an exclusive lock on a file beside
    // the socket closes the race between two daemons starting together.
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = fs::open(
        Path::new(&lock_path),
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        format!(
            "cannot open lock file {}: {e}",
            Path::new(&lock_path).display()
        )
    })?;
    match fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            return Err(format!(
                "another dlmd is already running on {}",
                path.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot lock {}: {e}",
                Path::new(&lock_path).display()
            ));
        }
    }

    let addr = SocketAddrUnix::new(path)
        .map_err(|e| format!("unusable socket path {}: {e}", path.display()))?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let probe = seqpacket().map_err(|e| format!("socket: {e}"))?;
        match net::connect(&probe, &addr) {
            Ok(()) => {
                return Err(format!(
                    "another dlmd is already listening on {}",
                    path.display()
                ));
            }
            Err(Errno::CONNREFUSED) if meta.file_type().is_socket() => {
                log::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
            }
            Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(format!(
                    "{} exists and is not a usable socket ({e}); not touching it",
                    path.display()
                ));
            }
        }
    }

    let listener = seqpacket().map_err(|e| format!("socket: {e}"))?;
    net::bind(&listener, &addr).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    // Anyone who can reach the directory may connect; lockspace modes and
    // the directory's own mode decide the rest.
    fs::chmod(path, Mode::from_raw_mode(0o666))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    net::listen(&listener, 1024).map_err(|e| format!("listen: {e}"))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Listening {
        listener,
        path: path.to_owned(),
        id: Some((meta.dev(), meta.ino())),
        _lock: Some(lock),
    })
}

impl Listening {
    /// The socket passed by socket activation: no lock file, no stale
    /// check, and it is not removed at exit.
    pub fn activated(listener: OwnedFd, path: PathBuf) -> Listening {
        Listening {
            listener,
            path,
            id: None,
            _lock: None,
        }
    }

    /// Whether the socket came from socket activation.
    pub fn is_activated(&self) -> bool {
        self._lock.is_none()
    }

    /// Unlinks the socket file if it is still the one this daemon bound.
    pub fn remove_socket(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if Some((meta.dev(), meta.ino())) == self.id {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// A new non-blocking, close-on-exec `SOCK_SEQPACKET` Unix socket.
pub fn seqpacket() -> rustix::io::Result<OwnedFd> {
    net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
}

fn prepare_dir(dir: &Path, kind: PathKind) -> Result<(), String> {
    let create_mode = match kind {
        PathKind::System => Some(0o755),
        PathKind::PerUserTmp => Some(0o700),
        PathKind::Explicit | PathKind::Runtime => None,
    };
    if let Some(mode) = create_mode {
        match std::fs::DirBuilder::new().mode(mode).create(dir) {
            // The umask may have taken bits away: a 0700 directory would
            // lock other users out of the system socket.
            Ok(()) => fs::chmod(dir, Mode::from_raw_mode(mode))
                .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("socket directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    // Clients trust a per-user directory only if it is ours and 0700
    // (dlm_core's `SocketPath::check_dir`): refuse what they would.
    if matches!(kind, PathKind::PerUserTmp | PathKind::Runtime) {
        let uid = rustix::process::geteuid().as_raw();
        if meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{} must be a 0700 directory owned by uid {uid}; refusing to use it",
                dir.display()
            ));
        }
    }
    Ok(())
}
