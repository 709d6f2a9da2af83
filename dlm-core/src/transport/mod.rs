//! How a lockspace reaches a lock manager: the kernel device or dlmd,
//! behind one set of calls.
//!
//! [`Control`] creates, removes and opens lockspaces; [`Device`] is one
//! opener (one lock owner): it writes v6 requests and reads results. The
//! backend is chosen as README's Backends says: `DLM_BACKEND=kernel|dlmd` forces
//! one; otherwise the kernel when `/proc/misc` lists `dlm-control`, else
//! dlmd. Nothing here starts a daemon: with no lock manager reachable the
//! calls fail with ENOENT or ECONNREFUSED.

pub mod kernel;

use crate::codec::{
    LockParams, LockResult, Lvb, ReadRaw, Request, RequestSpace, ResultSpace, Version, result_space,
};
use crate::dlmd::{client, proto};
use crate::{Errno, LsFlags, Name, RemoveFlags};
use rustix::fd::BorrowedFd;

/// The kind of lock manager a [`Control`] talks to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// The Linux kernel DLM, through its misc devices.
    Kernel,
    /// dlmd, through its Unix socket.
    Dlmd,
}

impl Backend {
    /// The backend to use: `DLM_BACKEND` if set, else the kernel if it has
    /// the DLM, else dlmd.
    ///
    /// # Errors
    /// EINVAL for a `DLM_BACKEND` other than `kernel` or `dlmd`.
    pub fn select() -> Result<Backend, Errno> {
        match std::env::var("DLM_BACKEND").ok().as_deref() {
            Some("kernel") => Ok(Backend::Kernel),
            Some("dlmd") => Ok(Backend::Dlmd),
            Some("") | None if kernel::is_present() => Ok(Backend::Kernel),
            Some("") | None => Ok(Backend::Dlmd),
            Some(_) => Err(Errno::EINVAL),
        }
    }
}

/// Why the dlmd socket this process would use is not trusted, if that is
/// why a call failed with EACCES (for tools that explain the failure);
/// `None` on the kernel backend or when the socket is trusted.
pub fn dlmd_refusal() -> Option<proto::Untrusted> {
    if Backend::select().ok()? != Backend::Dlmd {
        return None;
    }
    match client::connect_checked(&proto::client_socket_path()) {
        Err(proto::ConnectError::Untrusted(u)) => Some(u),
        _ => None,
    }
}

/// A connection to the lock manager's control interface.
#[derive(Debug)]
pub enum Control {
    /// The kernel's `dlm-control` device.
    Kernel(kernel::Control),
    /// A control connection to dlmd, and the socket it used.
    Dlmd(Box<client::Control>, Version, proto::SocketPath),
}

impl Control {
    /// Connects to the selected backend ([`Backend::select`]).
    ///
    /// # Errors
    /// ENOENT when no lock manager is there, ECONNREFUSED for a stale dlmd
    /// socket, EINVAL for a bad `DLM_BACKEND`, EBADE for an incompatible
    /// kernel.
    pub fn connect() -> Result<Control, Errno> {
        match Backend::select()? {
            Backend::Kernel => kernel::Control::open().map(Control::Kernel),
            Backend::Dlmd => Control::connect_dlmd(proto::client_socket_path()),
        }
    }

    /// Connects to the dlmd listening on `path` (a `PathBuf` is the
    /// caller's choice and is not checked; a discovered
    /// [`proto::SocketPath`] is, see [`client::connect`]).
    ///
    /// # Errors
    /// ENOENT, ECONNREFUSED, ENOTCONN; EACCES for an untrusted socket.
    pub fn connect_dlmd(path: impl Into<proto::SocketPath>) -> Result<Control, Errno> {
        let path = path.into();
        let ctl = client::Control::connect(&path)?;
        let version = ctl.version()?;
        Ok(Control::Dlmd(Box::new(ctl), version, path))
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Control::Kernel(_) => Backend::Kernel,
            Control::Dlmd(..) => Backend::Dlmd,
        }
    }

    /// The device interface version the lock manager reported.
    pub fn version(&self) -> Version {
        match self {
            Control::Kernel(k) => k.version(),
            Control::Dlmd(_, v, _) => *v,
        }
    }

    /// Creates lockspace `name` (or raises its creation count) and opens
    /// it. `mode` is the permission of a new lockspace (0: 0600 on dlmd,
    /// left as the kernel made it on the kernel backend).
    ///
    /// # Errors
    /// EEXIST (NEWEXCL), EINVAL, EPERM/EACCES, ENOENT, ENOTCONN...
    pub fn create_lockspace(
        &self,
        name: &Name,
        mode: u32,
        flags: LsFlags,
    ) -> Result<Device, Errno> {
        let req = Request::CreateLockspace { flags, name: *name };
        match self {
            Control::Kernel(k) => {
                // Two processes creating the same new lockspace at once hang
                // kernel 6.1 (a race in its device registration): serialise
                // creations on this node.
                let _serial = kernel::CreationLock::acquire();
                let minor = k.write(&req)?;
                let opened = kernel::Device::open(name, k.version(), Some(minor)).and_then(|dev| {
                    if mode != 0 {
                        dev.chmod(mode)?;
                    }
                    Ok(dev)
                });
                match opened {
                    Ok(dev) => Ok(Device::Kernel(dev)),
                    Err(e) => {
                        // Unlike the C library, do not leak the lockspace the
                        // kernel made (this drops only our creation count).
                        let _ = self.remove_lockspace(minor, false);
                        Err(e)
                    }
                }
            }
            Control::Dlmd(ctl, version, path) => {
                ctl.write(&req, mode, *version)?;
                client::Device::open(path, name).map(|d| Device::Dlmd(d, *version))
            }
        }
    }

    /// Opens an existing lockspace: a new opener, a new lock owner.
    ///
    /// # Errors
    /// ENOENT when it does not exist; EACCES; ENOTCONN.
    pub fn open_lockspace(&self, name: &Name) -> Result<Device, Errno> {
        match self {
            Control::Kernel(k) => kernel::Device::open(name, k.version(), None).map(Device::Kernel),
            Control::Dlmd(_, version, path) => {
                client::Device::open(path, name).map(|d| Device::Dlmd(d, *version))
            }
        }
    }

    /// Drops one creation count of the lockspace with this minor, removing
    /// it when it was the last. `force` releases it even if locks remain.
    ///
    /// # Errors
    /// EBUSY when locks (or, on dlmd, other openers) remain; ENOENT;
    /// EPERM/EACCES.
    pub fn remove_lockspace(&self, minor: u32, force: bool) -> Result<(), Errno> {
        let flags = if force {
            RemoveFlags::FORCEFREE
        } else {
            RemoveFlags::empty()
        };
        let req = Request::RemoveLockspace { flags, minor };
        match self {
            Control::Kernel(k) => k.write(&req).map(drop),
            Control::Dlmd(ctl, version, _) => ctl.write(&req, 0, *version).map(drop),
        }
    }

    /// The lock dump text (dlmd only; the kernel's is in debugfs).
    ///
    /// # Errors
    /// ENOSYS on the kernel backend; ENOENT for an unknown lockspace.
    pub fn dump(&self, lockspace: Option<&Name>) -> Result<String, Errno> {
        match self {
            Control::Kernel(_) => Err(Errno::ENOSYS),
            Control::Dlmd(ctl, ..) => ctl.dump(lockspace),
        }
    }
}

/// What [`Device::send`] did with a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sent {
    /// The answer is known (the kernel's synchronous `write()`).
    Answered(u32),
    /// Sent to dlmd; the reply will come with this sequence number.
    Pending(u32),
}

/// One opener of a lockspace: a lock owner.
// One per handle, made once: boxing the dlmd variant would cost an
// indirection on every request instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Device {
    /// A kernel lockspace device fd.
    Kernel(kernel::Device),
    /// A dlmd handle, and the version to stamp its requests with.
    Dlmd(client::Device, Version),
}

impl Device {
    /// The lockspace's minor number.
    pub fn minor(&self) -> u32 {
        match self {
            Device::Kernel(d) => d.minor(),
            Device::Dlmd(d, _) => d.minor(),
        }
    }

    /// The version to stamp requests with (what the lock manager
    /// reported).
    #[inline(always)]
    pub fn version(&self) -> Version {
        match self {
            Device::Kernel(d) => d.version(),
            Device::Dlmd(_, v) => *v,
        }
    }

    /// Sends a LOCK or UNLOCK request (`cmd`, a `DLM_USER_*` number) with
    /// `params`, the resource name `name` (at most 64 bytes) and the LVB
    /// `lvb` (zeros for `None`; `params.lvb` is not read), encoded
    /// in place ([`LockParams::encode_in`]): the hot path of every lock
    /// operation. Returns what the kernel's `write()` returns.
    ///
    /// With `sync`, for a caller that waits for the completion (the
    /// `_wait` forms, the blocking Rust calls): on dlmd the request is
    /// marked synchronous, so that an immediate completion may ride in
    /// the reply ([`client::Device::write_sync`]); the next
    /// [`Device::read`] hands it out.
    ///
    /// # Errors
    /// The lock manager's errno; ENOTCONN when dlmd went away.
    #[inline(always)]
    pub fn write_params(
        &self,
        params: &LockParams,
        cmd: u32,
        name: &[u8],
        lvb: Option<&Lvb>,
        sync: bool,
    ) -> Result<u32, Errno> {
        // One match, the version read where each variant keeps it (a
        // `self.version()` first was a second match, computed); a space
        // in each arm, so its zeros, all overwritten, are not stored.
        match self {
            Device::Kernel(d) => {
                let mut space = RequestSpace::new();
                d.write_encoded(params.encode_in(cmd as u8, name, lvb, d.version(), &mut space))
            }
            Device::Dlmd(d, v) => {
                let mut space = RequestSpace::new();
                let bytes = params.encode_in(cmd as u8, name, lvb, *v, &mut space);
                if sync {
                    d.write_sync(bytes)
                } else {
                    d.write_encoded(bytes)
                }
            }
        }
    }

    /// Waits until a result can be read or `wake` is readable; returns
    /// (result ready, woken). On dlmd a waiting thread counts as a reader
    /// of the callback socket (no completion rides in a reply meanwhile).
    ///
    /// # Errors
    /// The poll's errno (EINTR included).
    pub fn wait_readable(&self, wake: BorrowedFd<'_>) -> Result<(bool, bool), Errno> {
        use rustix::event::{PollFd, PollFlags, poll};
        match self {
            Device::Kernel(d) => {
                let dev = d.fd();
                let mut fds = [
                    PollFd::new(&dev, PollFlags::IN),
                    PollFd::new(&wake, PollFlags::IN),
                ];
                poll(&mut fds, None).map_err(Errno::from)?;
                Ok((!fds[0].revents().is_empty(), !fds[1].revents().is_empty()))
            }
            Device::Dlmd(d, _) => d.wait_readable(wake),
        }
    }

    /// Sends one request; returns what the kernel's `write()` returns (a
    /// lock id, or 0).
    ///
    /// # Errors
    /// The lock manager's errno; ENOTCONN when dlmd went away.
    pub fn write(&self, req: &Request) -> Result<u32, Errno> {
        match self {
            Device::Kernel(d) => d.write(req),
            Device::Dlmd(d, v) => d.write(req, *v),
        }
    }

    /// Sends one request without waiting for dlmd's reply (pipelining);
    /// on the kernel backend the `write()` is synchronous and its answer
    /// is returned at once.
    ///
    /// # Errors
    /// The kernel's errno; ENOTCONN when dlmd went away.
    pub fn send(&self, req: &Request) -> Result<Sent, Errno> {
        match self {
            Device::Kernel(d) => d.write(req).map(Sent::Answered),
            Device::Dlmd(d, v) => d.send(req, *v).map(Sent::Pending),
        }
    }

    /// The reply to a pipelined request ([`Sent::Pending`]) if it came;
    /// reads what is queued without blocking.
    pub fn try_reply(&self, seq: u32) -> Option<Result<u32, Errno>> {
        match self {
            Device::Kernel(_) => Some(Err(Errno::EINVAL)),
            Device::Dlmd(d, _) => d.try_reply(seq),
        }
    }

    /// Waits for the reply to a pipelined request.
    ///
    /// # Errors
    /// The lock manager's errno for the request; ENOTCONN.
    pub fn wait_reply(&self, seq: u32) -> Result<u32, Errno> {
        match self {
            Device::Kernel(_) => Err(Errno::EINVAL),
            Device::Dlmd(d, _) => d.wait_reply(seq),
        }
    }

    /// Drops the reply to a pipelined request (now or when it comes).
    pub fn forget_reply(&self, seq: u32) {
        if let Device::Dlmd(d, _) = self {
            d.forget_reply(seq);
        }
    }

    /// The socket replies to pipelined requests arrive on (dlmd only).
    pub fn request_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Device::Kernel(_) => None,
            Device::Dlmd(d, _) => Some(d.request_fd()),
        }
    }

    /// See [`client::Device::set_reply_hook`] (dlmd only).
    pub fn set_reply_hook(&self, hook: client::ReplyHook) {
        if let Device::Dlmd(d, _) = self {
            d.set_reply_hook(hook);
        }
    }

    /// Reads one result (blocking, or `Ok(None)` when `nonblocking` and
    /// nothing is queued). Call only under the handle's dispatch lock.
    ///
    /// # Errors
    /// ENOTCONN when dlmd went away; EPROTO for a malformed result.
    pub fn read(&self, nonblocking: bool) -> Result<Option<LockResult>, Errno> {
        let mut space = result_space();
        match self.read_raw(nonblocking, &mut space)? {
            Some(filled) => filled.decode().map(|r| Some(LockResult::from(r))),
            None => Ok(None),
        }
    }

    /// [`Device::read`] into `space`, the result left there unchecked
    /// ([`crate::codec::Filled::decode`] checks it; the dispatcher's
    /// read: it delivers from the bytes read).
    ///
    /// # Errors
    /// As [`Device::read`].
    #[inline(always)]
    pub fn read_raw<'s>(&self, nonblocking: bool, space: &'s mut ResultSpace) -> ReadRaw<'s> {
        match self {
            Device::Kernel(d) => d.read_raw(nonblocking, space),
            Device::Dlmd(d, _) => d.read_raw(nonblocking, space),
        }
    }

    /// The pollable fd: readable when a result is queued.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Device::Kernel(d) => d.fd(),
            Device::Dlmd(d, _) => d.fd(),
        }
    }

    /// Every fd whose open file keeps this opener's locks: the kernel
    /// lockspace device, or dlmd's request and callback sockets. The lock
    /// manager ends the opener (and its locks) at their last close.
    pub fn owner_fds(&self) -> Vec<BorrowedFd<'_>> {
        match self {
            Device::Kernel(d) => vec![d.fd()],
            Device::Dlmd(d, _) => vec![d.request_fd(), d.fd()],
        }
    }
}
