//! Helpers shared by the cross-crate tests in `tests/tests/`: compiling
//! and running small C programs with the system's gcc.
//!
//! The tests compare what gcc computes from the kernel's own UAPI headers
//! (sizes, offsets, request and result bytes) with what the Rust crates
//! produce. gcc is part of the supported build environment; a missing gcc
//! fails these tests with a message saying what to install.

pub mod clib;
pub mod scenarios;

use std::path::PathBuf;
use std::process::Command;

/// A fresh scratch directory for one test of this process.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("dlm-tests-{}", std::process::id()))
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Compiles `source` with gcc (extra arguments after the source file) and
/// returns the path of the executable.
///
/// # Panics
/// If gcc is missing or the program does not compile; the message has
/// gcc's diagnostics.
pub fn compile_c(test: &str, source: &str, extra_args: &[&str]) -> PathBuf {
    let dir = scratch_dir(test);
    let src = dir.join(format!("{test}.c"));
    let exe = dir.join(test);
    std::fs::write(&src, source).expect("write C source");
    let out = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(extra_args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}): install it with `apt-get install gcc`"));
    assert!(
        out.status.success(),
        "gcc failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Compiles and runs a C program that takes no input, and returns its
/// standard output.
///
/// # Panics
/// If it does not compile or exits unsuccessfully.
pub fn run_c(test: &str, source: &str) -> String {
    let exe = compile_c(test, source, &[]);
    let out = Command::new(&exe).output().expect("run compiled C program");
    assert!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("C program output is UTF-8")
}

/// A dlmd process started by a test on its own socket in a private
/// directory, killed (and the directory removed) when dropped. This is the
/// one launcher of every test and benchmark that needs a dlmd (dlmd's own
/// tests use it too, as `common::Daemon`). Tests point clients at it with
/// [`Dlmd::env`] (it sets `DLMD_SOCKET` and `DLM_BACKEND=dlmd` for child
/// processes) or [`Dlmd::socket`].
pub struct Dlmd {
    /// The dlmd process.
    pub child: std::process::Child,
    /// Its directory (mode 0777, so that tests that switch uid reach the
    /// socket), removed on drop.
    pub dir: PathBuf,
    /// The socket it listens on.
    pub path: PathBuf,
}

/// dlmd arguments that lift its per-uid limits.
pub const NO_LIMITS: [&str; 6] = [
    "--max-lockspaces-per-uid",
    "unlimited",
    "--max-locks-per-uid",
    "unlimited",
    "--max-connections-per-uid",
    "unlimited",
];

/// A fresh directory of this process, mode 0777 (tests that switch uid
/// must reach sockets in it), never the same twice.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch_dir(&format!("{prefix}-{n}"));
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod scratch directory");
    dir
}

/// How tests run dlmd: this build's binary in the foreground on `socket`,
/// logging warnings and errors to the inherited stderr, without per-uid
/// limits (tests may run as an ordinary user and make many locks; later
/// flags win, so a test adds its own), stdin closed, and `$DLMD_SOCKET`
/// removed so that only `--socket` counts.
pub fn dlmd_command(socket: &std::path::Path) -> Command {
    let mut cmd = Command::new(dlmd_binary());
    cmd.arg("--foreground")
        .arg("--socket")
        .arg(socket)
        .arg("--log-level")
        .arg("warn")
        .args(NO_LIMITS)
        .env_remove("DLMD_SOCKET")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Waits until something accepts connections on `socket` (a readiness
/// wait, not a timing assertion: it gives up after a minute).
///
/// # Panics
/// If nothing listens within a minute.
pub fn wait_listening(socket: &std::path::Path) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(socket).expect("socket path");
    for _ in 0..6000 {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .expect("socket");
        if rustix::net::connect(&fd, &addr).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("dlmd did not start listening on {}", socket.display());
}

impl Dlmd {
    /// Starts the `dlmd` binary of this build ([`dlmd_command`]) on a
    /// socket in a fresh directory, and waits until it answers.
    ///
    /// # Panics
    /// If the binary is missing or does not come up.
    pub fn start(test: &str) -> Dlmd {
        Dlmd::start_with(test, &[])
    }

    /// [`Dlmd::start`] with more dlmd arguments (after [`NO_LIMITS`], so
    /// limits given here count).
    ///
    /// # Panics
    /// As [`Dlmd::start`].
    pub fn start_with(test: &str, args: &[&str]) -> Dlmd {
        let dir = fresh_dir(&format!("dlmd-{test}"));
        let path = dir.join("dlmd.sock");
        let child = dlmd_command(&path)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start dlmd");
        let dlmd = Dlmd { child, dir, path };
        wait_listening(&dlmd.path);
        dlmd
    }

    /// Sends SIGTERM and waits for dlmd to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
        self.child.wait().expect("wait")
    }

    /// Whether dlmd is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// dlmd's resident set size in bytes.
    pub fn rss(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.child.id())).expect("statm");
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &std::path::Path {
        &self.path
    }

    /// The pid of the dlmd process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Environment for a client of this dlmd (`DLMD_SOCKET`,
    /// `DLM_BACKEND=dlmd`).
    pub fn env(&self) -> [(&'static str, std::ffi::OsString); 2] {
        [
            ("DLMD_SOCKET", self.path.clone().into_os_string()),
            ("DLM_BACKEND", "dlmd".into()),
        ]
    }

    /// Starts a dlmd as [`Dlmd::start`] does and points this process's
    /// clients at it (the variables of [`Dlmd::env`]). The environment is
    /// process-wide, so the returned [`InProcess`] also holds a
    /// process-wide lock: tests of one binary that use it run one at a
    /// time, each against its own dlmd. Tests that only start child
    /// processes pass [`Dlmd::env`] to them instead.
    pub fn start_in_this_process(test: &str) -> InProcess {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dlmd = Dlmd::start(test);
        for (k, v) in dlmd.env() {
            set_env(k, &v);
        }
        InProcess {
            dlmd,
            _serial: serial,
        }
    }

    /// Kills dlmd with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_env(key: &str, value: &std::ffi::OsStr) {
    // SAFETY: test processes set these variables before their clients
    // start threads that read the environment, one test at a time
    // (Dlmd::start_in_this_process holds a lock for that).
    unsafe { std::env::set_var(key, value) }
}

/// A dlmd that this process's clients use, and the lock that keeps other
/// tests of the process from pointing them elsewhere meanwhile. Dropping
/// it kills dlmd, then releases the lock.
pub struct InProcess {
    dlmd: Dlmd,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for InProcess {
    type Target = Dlmd;
    fn deref(&self) -> &Dlmd {
        &self.dlmd
    }
}

impl std::ops::DerefMut for InProcess {
    fn deref_mut(&mut self) -> &mut Dlmd {
        &mut self.dlmd
    }
}

impl Drop for Dlmd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `dlmd` binary of this build: next to the test executable's
/// `deps/` directory.
pub fn dlmd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("dlmd");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p dlmd` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// Where [`dlmd_binary`] looks for dlmd, without checking that it is
/// there (a test that can run without dlmd asks `.exists()`).
pub fn dlmd_binary_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .join("dlmd")
}

/// The gate of a single-node kernel test (a `harness = false` test that
/// `cargo xtask vmtest` runs in a guest): `Some(exit code)` when it must
/// not run here — 77 ("skip") in a guest, success on the host — because
/// the kernel DLM or what `ready` stands for is missing, or because the
/// guest is one of two nodes.
pub fn single_node_kernel_skip(
    test: &str,
    ready: bool,
    why: &str,
) -> Option<std::process::ExitCode> {
    let in_guest = std::env::var_os("DLM_VMTEST_NODE").is_some();
    let skip = if in_guest {
        std::process::ExitCode::from(77)
    } else {
        std::process::ExitCode::SUCCESS
    };
    if !dlm_core::transport::kernel::is_present() || !ready {
        println!("{test}: needs {why}; skipped");
        return Some(skip);
    }
    (std::env::var("DLM_VMTEST_NODES").as_deref() == Ok("2")).then_some(skip)
}

/// A boxed future of a test's own, for driving several by hand.
pub type BoxFut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

/// Polls every future once, in order (an async lock request is sent on
/// its future's first poll, so this sends them in that order).
pub async fn poll_each_once(futs: &mut [BoxFut<'_>]) {
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            let _ = f.as_mut().poll(cx);
        }
        std::task::Poll::Ready(())
    })
    .await
}

/// Runs the futures to completion.
pub async fn join_all(mut futs: Vec<BoxFut<'_>>) {
    std::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
