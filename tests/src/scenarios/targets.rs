//! The [`Target`] implementations: the engine and the reference model in
//! this process, and the kernel DLM or dlmd through `dlm_core::transport`.

use super::{Opener, Target};
use dlm_core::codec::{LockParams, LockResult, VERSION_LEN, Version};
use dlm_core::transport::{Control, Device, kernel};
use dlm_core::{Errno, LockFlags, LsFlags, Mode, Name, RemoveFlags, Request};
use dlm_engine::Engine;
use dlm_model::Model;
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::BorrowedFd;
use std::collections::HashMap;
use std::time::Duration;

/// A lock manager that runs in this process: the engine's API, which the
/// reference model copies.
pub trait InProcess {
    /// An opener.
    type Owner: Copy;
    /// A short label for reports.
    const LABEL: &'static str;
    /// A fresh lock manager.
    fn fresh() -> Self;
    /// CREATE_LOCKSPACE.
    ///
    /// # Errors
    /// The errno a device write would give.
    fn create_lockspace(&mut self, name: Name, flags: LsFlags) -> Result<u32, Errno>;
    /// REMOVE_LOCKSPACE.
    ///
    /// # Errors
    /// The errno a device write would give.
    fn remove_lockspace(&mut self, minor: u32, flags: RemoveFlags) -> Result<(), Errno>;
    /// The minor of lockspace `name`.
    fn find_lockspace(&self, name: &Name) -> Option<u32>;
    /// Opens lockspace `minor`.
    ///
    /// # Errors
    /// ENOENT when it does not exist.
    fn open(&mut self, minor: u32) -> Result<Self::Owner, Errno>;
    /// Closes an opener.
    fn close(&mut self, owner: Self::Owner);
    /// One device write of `owner` made by thread `tid`.
    ///
    /// # Errors
    /// What the device's `write()` fails with.
    fn write(&mut self, owner: Self::Owner, req: &Request, tid: u32) -> Result<u32, Errno>;
    /// The next callback of `owner`.
    fn pop_callback(&mut self, owner: Self::Owner) -> Option<LockResult>;
    /// How many callbacks `owner` has queued.
    fn pending_callbacks(&self, owner: Self::Owner) -> usize;
}

macro_rules! in_process {
    ($t:ty, $o:ty, $label:literal) => {
        impl InProcess for $t {
            type Owner = $o;
            const LABEL: &'static str = $label;
            fn fresh() -> $t {
                <$t>::new()
            }
            fn create_lockspace(&mut self, name: Name, flags: LsFlags) -> Result<u32, Errno> {
                <$t>::create_lockspace(self, name, flags)
            }
            fn remove_lockspace(&mut self, minor: u32, flags: RemoveFlags) -> Result<(), Errno> {
                <$t>::remove_lockspace(self, minor, flags)
            }
            fn find_lockspace(&self, name: &Name) -> Option<u32> {
                <$t>::find_lockspace(self, name)
            }
            fn open(&mut self, minor: u32) -> Result<$o, Errno> {
                <$t>::open(self, minor)
            }
            fn close(&mut self, owner: $o) {
                <$t>::close(self, owner)
            }
            fn write(&mut self, owner: $o, req: &Request, tid: u32) -> Result<u32, Errno> {
                <$t>::write(self, owner, req, tid)
            }
            fn pop_callback(&mut self, owner: $o) -> Option<LockResult> {
                <$t>::pop_callback(self, owner)
            }
            fn pending_callbacks(&self, owner: $o) -> usize {
                <$t>::pending_callbacks(self, owner)
            }
        }
    };
}

in_process!(Engine, dlm_engine::OwnerId, "engine");
in_process!(Model, dlm_model::OwnerId, "model");

/// A lock manager in this process as a [`Target`]: device writes go to
/// its API directly, reads pop its callback queues.
pub struct InProcessTarget<D: InProcess> {
    engine: D,
    openers: Vec<Option<D::Owner>>,
}

/// The engine, in this process: what dlmd runs, without the socket.
pub type EngineTarget = InProcessTarget<Engine>;

/// The reference model (the `dlm-model` crate), in this process.
pub type ModelTarget = InProcessTarget<Model>;

/// The thread id the in-process targets' writes claim.
const ENGINE_TID: u32 = 1000;
/// The thread id of the in-process targets' other thread.
const ENGINE_OTHER_TID: u32 = 2000;

impl<D: InProcess> Default for InProcessTarget<D> {
    fn default() -> InProcessTarget<D> {
        InProcessTarget::new()
    }
}

impl<D: InProcess> InProcessTarget<D> {
    /// A fresh lock manager.
    pub fn new() -> InProcessTarget<D> {
        InProcessTarget {
            engine: D::fresh(),
            openers: Vec::new(),
        }
    }

    fn owner(&self, o: Opener) -> D::Owner {
        self.openers[o].expect("open opener")
    }

    fn control(&mut self, req: Request) -> Result<u32, Errno> {
        match req {
            Request::CreateLockspace { flags, name } => self.engine.create_lockspace(name, flags),
            Request::RemoveLockspace { flags, minor } => {
                self.engine.remove_lockspace(minor, flags).map(|()| 0)
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

impl<D: InProcess> Target for InProcessTarget<D> {
    fn label(&self) -> String {
        D::LABEL.into()
    }

    fn create(&mut self, name: &Name, flags: LsFlags) -> Result<u32, Errno> {
        self.engine.create_lockspace(*name, flags)
    }

    fn remove(&mut self, minor: u32, force: bool) -> Result<(), Errno> {
        let flags = if force {
            RemoveFlags::FORCEFREE
        } else {
            RemoveFlags::empty()
        };
        self.engine.remove_lockspace(minor, flags)
    }

    fn open(&mut self, name: &Name) -> Result<Opener, Errno> {
        let minor = self.engine.find_lockspace(name).ok_or(Errno::ENOENT)?;
        let id = self.engine.open(minor)?;
        self.openers.push(Some(id));
        Ok(self.openers.len() - 1)
    }

    fn write(&mut self, o: Opener, req: &Request) -> Result<u32, Errno> {
        let owner = self.owner(o);
        self.engine.write(owner, req, ENGINE_TID)
    }

    fn read(&mut self, o: Opener) -> Result<Option<LockResult>, Errno> {
        Ok(self.engine.pop_callback(self.owner(o)))
    }

    fn poll(&mut self, o: Opener) -> bool {
        self.engine.pending_callbacks(self.owner(o)) > 0
    }

    fn close(&mut self, o: Opener) {
        if let Some(id) = self.openers[o].take() {
            self.engine.close(id);
        }
    }

    fn tid(&self) -> u32 {
        ENGINE_TID
    }

    fn orphan_from_other_thread(&mut self, ls: &Name, name: &[u8], mode: Mode) -> u32 {
        let minor = self.engine.find_lockspace(ls).expect("lockspace");
        let owner = self.engine.open(minor).expect("open");
        let p = persistent_lock(name, mode);
        self.engine
            .write(owner, &Request::Lock(p), ENGINE_OTHER_TID)
            .expect("persistent lock");
        let _ = self.engine.pop_callback(owner);
        self.engine.close(owner);
        ENGINE_OTHER_TID
    }

    fn raw_write(&mut self, o: Option<Opener>, bytes: &[u8]) -> Option<Result<u32, Errno>> {
        let req = match Request::decode(bytes) {
            Ok((_, req)) => req,
            Err(e) => return Some(Err(e)),
        };
        Some(match o {
            None => self.control(req),
            Some(o) => self.write(o, &req),
        })
    }

    fn raw_read(&mut self, o: Option<Opener>, count: usize) -> Option<Result<Vec<u8>, Errno>> {
        if count == VERSION_LEN {
            return Some(Ok(Version::DEVICE.encode().to_vec()));
        }
        let Some(o) = o else {
            return Some(Err(Errno::EINVAL));
        };
        let owner = self.owner(o);
        if count < dlm_core::codec::RESULT_LEN {
            return Some(Err(Errno::EINVAL));
        }
        Some(match self.engine.pop_callback(owner) {
            None => Err(Errno::EAGAIN),
            Some(r) => r.encode(count).map(|b| b.to_vec()),
        })
    }

    fn remove_while_open(
        &mut self,
        minor: u32,
        force: bool,
        o: Opener,
        _settle: Duration,
    ) -> (Result<(), Errno>, bool) {
        let r = self.remove(minor, force);
        self.close(o);
        (r, true)
    }
}

fn persistent_lock(name: &[u8], mode: Mode) -> LockParams {
    LockParams {
        mode: mode.raw(),
        flags: LockFlags::PERSISTENT,
        castaddr: 0xca99,
        castparam: 0xc099,
        bastaddr: 0xba99,
        bastparam: 0xb099,
        lksb: 0x5b99,
        name: Name::new(name).expect("name"),
        ..LockParams::default()
    }
}

/// The kernel DLM or dlmd, through `dlm_core::transport`.
pub struct TransportTarget {
    control: Control,
    label: String,
    openers: Vec<Option<(Device, Name)>>,
    /// Minors of lockspaces this target created (a new kernel lockspace's
    /// device node is awaited by minor).
    minors: HashMap<Name, u32>,
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

impl TransportTarget {
    /// A target over `control`; `label` names it in reports.
    pub fn new(control: Control, label: impl Into<String>) -> TransportTarget {
        TransportTarget {
            control,
            label: label.into(),
            openers: Vec::new(),
            minors: HashMap::new(),
        }
    }

    /// Whether this is the kernel backend.
    pub fn is_kernel(&self) -> bool {
        matches!(self.control, Control::Kernel(_))
    }

    fn device(&self, o: Opener) -> &Device {
        &self.openers[o].as_ref().expect("open opener").0
    }

    /// dlmd learns of a close asynchronously (the socket's hang-up): wait
    /// until its dump shows no more openers of `ls` than this target
    /// holds, so the next step sees the close done, as on the kernel.
    fn settle_close(&self, ls: &Name) {
        if !matches!(self.control, Control::Dlmd(..)) {
            return;
        }
        let mine = self
            .openers
            .iter()
            .flatten()
            .filter(|(_, n)| n == ls)
            .count();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let Ok(text) = self.control.dump(Some(ls)) else {
                return;
            };
            let openers = text
                .split_whitespace()
                .skip_while(|w| *w != "openers")
                .nth(1)
                .and_then(|n| n.parse::<usize>().ok());
            if openers.is_none_or(|n| n <= mine) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn open_device(control: &Control, name: &Name, minor: Option<u32>) -> Result<Device, Errno> {
        match control {
            Control::Kernel(k) => {
                kernel::Device::open(name, k.version(), minor).map(Device::Kernel)
            }
            Control::Dlmd(..) => control.open_lockspace(name),
        }
    }
}

impl Target for TransportTarget {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn create(&mut self, name: &Name, flags: LsFlags) -> Result<u32, Errno> {
        let req = Request::CreateLockspace { flags, name: *name };
        let minor = match &self.control {
            Control::Kernel(k) => {
                let _serial = kernel::CreationLock::acquire();
                k.write(&req)?
            }
            Control::Dlmd(ctl, version, _) => ctl.write(&req, 0, *version)?,
        };
        self.minors.insert(*name, minor);
        Ok(minor)
    }

    fn remove(&mut self, minor: u32, force: bool) -> Result<(), Errno> {
        self.control.remove_lockspace(minor, force)
    }

    fn open(&mut self, name: &Name) -> Result<Opener, Errno> {
        let dev =
            TransportTarget::open_device(&self.control, name, self.minors.get(name).copied())?;
        self.openers.push(Some((dev, *name)));
        Ok(self.openers.len() - 1)
    }

    fn write(&mut self, o: Opener, req: &Request) -> Result<u32, Errno> {
        self.device(o).write(req)
    }

    fn read(&mut self, o: Opener) -> Result<Option<LockResult>, Errno> {
        self.device(o).read(true)
    }

    fn poll(&mut self, o: Opener) -> bool {
        readable(self.device(o).fd())
    }

    fn close(&mut self, o: Opener) {
        if let Some((dev, ls)) = self.openers[o].take() {
            drop(dev);
            self.settle_close(&ls);
        }
    }

    fn tid(&self) -> u32 {
        rustix::thread::gettid().as_raw_nonzero().get() as u32
    }

    fn orphan_from_other_thread(&mut self, ls: &Name, name: &[u8], mode: Mode) -> u32 {
        let control = &self.control;
        let minor = self.minors.get(ls).copied();
        let tid = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let dev = TransportTarget::open_device(control, ls, minor).expect("open");
                    dev.write(&Request::Lock(persistent_lock(name, mode)))
                        .expect("persistent lock");
                    let _ = dev.read(false);
                    drop(dev);
                    rustix::thread::gettid().as_raw_nonzero().get() as u32
                })
                .join()
                .expect("orphan thread")
        });
        self.settle_close(ls);
        tid
    }

    fn raw_write(&mut self, o: Option<Opener>, bytes: &[u8]) -> Option<Result<u32, Errno>> {
        let fd = match (o, &self.control) {
            (Some(o), _) => match self.device(o) {
                Device::Kernel(d) => d.fd(),
                Device::Dlmd(..) => return None,
            },
            (None, Control::Kernel(k)) => k.fd(),
            (None, Control::Dlmd(..)) => return None,
        };
        Some(
            rustix::io::write(fd, bytes)
                .map(|n| n as u32)
                .map_err(errno),
        )
    }

    fn raw_read(&mut self, o: Option<Opener>, count: usize) -> Option<Result<Vec<u8>, Errno>> {
        let fd = match (o, &self.control) {
            (Some(o), _) => match self.device(o) {
                Device::Kernel(d) => d.fd(),
                Device::Dlmd(..) => return None,
            },
            (None, Control::Kernel(k)) => k.fd(),
            (None, Control::Dlmd(..)) => return None,
        };
        if o.is_some() && count != VERSION_LEN && !readable(fd) {
            return Some(Err(Errno::EAGAIN));
        }
        let mut buf = vec![0u8; count];
        Some(
            rustix::io::read(fd, &mut buf)
                .map(|n| {
                    buf.truncate(n);
                    buf
                })
                .map_err(errno),
        )
    }

    fn remove_while_open(
        &mut self,
        minor: u32,
        force: bool,
        o: Opener,
        settle: Duration,
    ) -> (Result<(), Errno>, bool) {
        let control = &self.control;
        let dev = self.openers[o].take().map(|(d, _)| d);
        std::thread::scope(|scope| {
            let remover = scope.spawn(|| control.remove_lockspace(minor, force));
            std::thread::sleep(settle);
            let returned = remover.is_finished();
            drop(dev);
            (remover.join().expect("remover"), returned)
        })
    }
}
