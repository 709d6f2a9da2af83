//! The kernel transport: the misc devices of the Linux DLM
//! (`dlm-control` and one `dlm_<name>` per lockspace).
//!
//! Device nodes are looked up under `/dev/misc/` (where the udev rule puts
//! them) and then `/dev/` (devtmpfs without the rule). A new lockspace's
//! node is awaited with short, bounded retries, not one-second sleeps.

use crate::codec::{Filled, ReadRaw, Request, ResultSpace, VERSION_LEN, Version};
use crate::{Errno, Name};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The directories searched for DLM device nodes, in order.
const DEV_DIRS: [&str; 2] = ["/dev/misc", "/dev"];
/// How long a new lockspace's device node is awaited.
const NODE_WAIT: Duration = Duration::from_secs(10);

/// The minor number of the misc device `name`, from `/proc/misc`.
fn misc_minor(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/misc").ok()?;
    text.lines().find_map(|line| {
        let (minor, n) = line.trim().split_once(' ')?;
        (n.trim() == name).then(|| minor.parse().ok()).flatten()
    })
}

/// Whether this kernel has the DLM (`/proc/misc` lists `dlm-control`).
pub fn is_present() -> bool {
    misc_minor("dlm-control").is_some()
}

/// Finds the node of misc device `name` with minor `minor`, retrying with
/// growing short sleeps up to `wait` for udev or devtmpfs to create it.
fn find_node(name: &str, minor: u32, wait: Duration) -> Result<PathBuf, Errno> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        for dir in DEV_DIRS {
            let path = PathBuf::from(dir).join(name);
            if let Ok(st) = rustix::fs::stat(&path) {
                if rustix::fs::minor(st.st_rdev) == minor {
                    return Ok(path);
                }
            }
        }
        if start.elapsed() >= wait {
            return Err(Errno::ENOENT);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn open_rw(path: &PathBuf) -> Result<OwnedFd, Errno> {
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(Errno::from)
}

fn write_request(fd: BorrowedFd<'_>, req: &Request, version: Version) -> Result<u32, Errno> {
    let mut buf = [0; crate::codec::REQUEST_MAX];
    let len = req.encode_into(version, &mut buf);
    write_bytes(fd, &buf[..len])
}

#[inline(always)]
fn write_bytes(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<u32, Errno> {
    loop {
        match sys::write(fd, bytes) {
            Ok(n) => return Ok(n as u32),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `read(2)` and `write(2)` of the hot path, with one sign test of the
/// kernel's answer: rustix's wrappers test it twice (and the read's
/// count was bounds-checked again). The write's `Result` flag is still
/// tested again where its paths meet (docs/kernel-results.md, "Under
/// 500").
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[allow(unsafe_code)]
mod sys {
    use crate::Errno;
    use core::mem::MaybeUninit;
    use rustix::fd::{AsRawFd, BorrowedFd};

    /// One system call with three arguments: what the kernel returns, a
    /// count or `-errno`.
    ///
    /// # Safety
    /// `nr` is `read` or `write` and `buf` is `len` bytes that the call
    /// may write (`read`) or read (`write`).
    #[inline(always)]
    unsafe fn syscall3(nr: usize, fd: BorrowedFd<'_>, buf: usize, len: usize) -> isize {
        let ret: isize;
        // SAFETY: the x86-64 Linux system call ABI (number in rax,
        // arguments in rdi, rsi, rdx; rcx and r11 clobbered, no stack
        // use); `fd` is open (borrowed), `buf` and `len` as this
        // function's contract says.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") fd.as_raw_fd(),
                in("rsi") buf,
                in("rdx") len,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// The kernel's answer as a count, or its errno: a count never has
    /// the sign bit, an error is -4095..-1.
    #[inline(always)]
    fn answer(ret: isize) -> Result<usize, Errno> {
        if ret >= 0 {
            Ok(ret as usize)
        } else {
            Err(Errno::from_raw(-ret as i32))
        }
    }

    /// `write(fd, bytes)`.
    #[inline(always)]
    pub fn write(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
        // SAFETY: `bytes` is `bytes.len()` readable bytes.
        answer(unsafe { syscall3(1, fd, bytes.as_ptr() as usize, bytes.len()) })
    }

    /// `read(fd, into)`: how many bytes it filled.
    #[inline(always)]
    pub fn read(fd: BorrowedFd<'_>, into: &mut [MaybeUninit<u8>]) -> Result<usize, Errno> {
        // SAFETY: `into` is `into.len()` writable bytes (borrowed
        // mutably; uninitialised bytes may be written).
        answer(unsafe { syscall3(0, fd, into.as_mut_ptr() as usize, into.len()) })
    }
}

/// rustix's wrappers elsewhere.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod sys {
    use crate::Errno;
    use core::mem::MaybeUninit;
    use rustix::fd::BorrowedFd;

    /// `write(fd, bytes)`.
    #[inline(always)]
    pub fn write(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
        rustix::io::write(fd, bytes).map_err(Errno::from)
    }

    /// `read(fd, into)`: how many bytes it filled.
    #[inline(always)]
    pub fn read(fd: BorrowedFd<'_>, into: &mut [MaybeUninit<u8>]) -> Result<usize, Errno> {
        rustix::io::read(fd, into)
            .map(|(bytes, _)| bytes.len())
            .map_err(Errno::from)
    }
}

/// A node-wide lock held while a lockspace is created: two processes
/// creating the same new lockspace at the same moment hang Linux 6.1.
/// Best effort: if no lock file can be opened, creation goes ahead
/// unserialised.
#[derive(Debug)]
pub struct CreationLock {
    /// The locked file; closing it releases the lock.
    _file: Option<OwnedFd>,
}

impl CreationLock {
    const PATHS: [&'static str; 2] = ["/run/dlm-rs-create.lock", "/tmp/.dlm-rs-create.lock"];

    /// Takes the lock, waiting for another creator to finish.
    pub fn acquire() -> CreationLock {
        for path in CreationLock::PATHS {
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC;
            if let Ok(fd) = rustix::fs::open(path, flags, Mode::from_raw_mode(0o666)) {
                loop {
                    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive) {
                        Err(rustix::io::Errno::INTR) => continue,
                        Ok(()) => return CreationLock { _file: Some(fd) },
                        Err(_) => break,
                    }
                }
            }
        }
        CreationLock { _file: None }
    }
}

/// The control device, `dlm-control`.
#[derive(Debug)]
pub struct Control {
    fd: OwnedFd,
    version: Version,
}

impl Control {
    /// Opens the control device and reads its interface version.
    ///
    /// # Errors
    /// ENOENT when the kernel has no DLM or the node is missing; EBADE
    /// when the kernel speaks another major version; open() errors.
    pub fn open() -> Result<Control, Errno> {
        let minor = misc_minor("dlm-control").ok_or(Errno::ENOENT)?;
        let fd = open_rw(&find_node("dlm-control", minor, NODE_WAIT)?)?;
        let mut buf = [0u8; VERSION_LEN];
        let n = rustix::io::read(&fd, &mut buf).map_err(Errno::from)?;
        let version = Version::decode(&buf[..n])?;
        if version.major != Version::DEVICE.major {
            return Err(Errno::EBADE);
        }
        Ok(Control { fd, version })
    }

    /// The interface version the kernel reported.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The control device fd (for raw protocol tests).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Writes a CREATE_LOCKSPACE or REMOVE_LOCKSPACE request.
    ///
    /// # Errors
    /// The kernel's errno.
    pub fn write(&self, req: &Request) -> Result<u32, Errno> {
        write_request(self.fd.as_fd(), req, self.version)
    }
}

/// One opener of a lockspace device, `dlm_<name>`.
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    minor: u32,
    version: Version,
}

impl Device {
    /// Opens lockspace `name`'s device; with `wait_minor`, first waits
    /// (briefly) for the node of that minor to appear (a new lockspace).
    ///
    /// # Errors
    /// ENOENT when the lockspace does not exist; open() errors.
    pub fn open(name: &Name, version: Version, wait_minor: Option<u32>) -> Result<Device, Errno> {
        let node = format!("dlm_{}", String::from_utf8_lossy(name.as_bytes()));
        let path = match wait_minor {
            Some(minor) => find_node(&node, minor, NODE_WAIT)?,
            None => DEV_DIRS
                .iter()
                .map(|d| PathBuf::from(d).join(&node))
                .find(|p| p.exists())
                .ok_or(Errno::ENOENT)?,
        };
        let fd = open_rw(&path)?;
        let st = rustix::fs::fstat(&fd).map_err(Errno::from)?;
        Ok(Device {
            fd,
            minor: rustix::fs::minor(st.st_rdev),
            version,
        })
    }

    /// Sets the permission bits of the device node (what the C library's
    /// `fchmod` after creation does).
    ///
    /// # Errors
    /// fchmod()'s errno.
    pub fn chmod(&self, mode: u32) -> Result<(), Errno> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode)).map_err(Errno::from)
    }

    /// The lockspace's minor number.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// Writes one request; returns the `write()` result.
    ///
    /// # Errors
    /// The kernel's errno.
    pub fn write(&self, req: &Request) -> Result<u32, Errno> {
        write_request(self.fd.as_fd(), req, self.version)
    }

    /// Writes one encoded request (stamped with [`Device::version`]).
    ///
    /// # Errors
    /// The kernel's errno.
    #[inline(always)]
    pub fn write_encoded(&self, bytes: &[u8]) -> Result<u32, Errno> {
        write_bytes(self.fd.as_fd(), bytes)
    }

    /// The device interface version the kernel reported.
    #[inline(always)]
    pub fn version(&self) -> Version {
        self.version
    }

    /// Reads one result into `space`, unchecked
    /// ([`crate::codec::Filled::decode`] checks it). With `nonblocking`,
    /// `Ok(None)` when none is queued (checked with poll, so the fd's
    /// flags are left alone; the caller holds the handle's dispatch lock,
    /// so nobody else reads).
    ///
    /// # Errors
    /// read()'s errno.
    #[inline(always)]
    pub fn read_raw<'s>(&self, nonblocking: bool, space: &'s mut ResultSpace) -> ReadRaw<'s> {
        use rustix::event::{PollFd, PollFlags, poll};
        if nonblocking {
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            let zero = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match poll(&mut fds, Some(&zero)) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let n = loop {
            match sys::read(self.fd.as_fd(), &mut *space) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) if nonblocking => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        // SAFETY: the read initialised the first `n` bytes of `space`
        // (`read(2)` returns the count it filled, at most the space's
        // length; `Filled::decode` refuses a longer one anyway).
        #[allow(unsafe_code)]
        Ok(Some(unsafe { Filled::new(space, n) }))
    }

    /// The pollable device fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
