//! `cargo xtask man [--out DIR]`: the generated manual pages and shell
//! completions of `dlm` and `dlmd`.
//!
//! `dlm(1)` and one page per subcommand (`dlm-lock(1)`, ...) are rendered
//! by clap_mangen, and the bash, zsh and fish completions by
//! clap_complete, all from dlm-cli's clap definition
//! (`dlm_cli::command()`), so every option the tool parses appears in
//! them. Under DIR (default `target/man`):
//!
//! ```text
//! man1/dlm.1  man1/dlm-lock.1 ...
//! completions/dlm.bash  completions/_dlm  completions/dlm.fish
//! ```
//!
//! `dlmd(8)` and dlmd's completions come the same way from dlmd's clap
//! definition (`dlmd::command()`):
//!
//! ```text
//! man8/dlmd.8  completions/dlmd.bash  completions/_dlmd  completions/dlmd.fish
//! ```
//!
//! The other pages (`libdlm(3)` and the function pages) are written by
//! hand in `man/` at the top of the workspace.

use crate::release::io;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The hand-written pages in `man/`, with the names each page documents
/// besides its own (installed as links to it).
pub const PAGES: &[(&str, &[&str])] = &[
    ("libdlm.3", &["libdlm_lt.3"]),
    (
        "dlm_create_lockspace.3",
        &[
            "dlm_new_lockspace.3",
            "dlm_open_lockspace.3",
            "dlm_close_lockspace.3",
            "dlm_release_lockspace.3",
            "dlm_ls_get_fd.3",
            "dlm_get_fd.3",
            "dlm_ls_purge.3",
            "dlm_kernel_version.3",
            "dlm_library_version.3",
        ],
    ),
    (
        "dlm_lock.3",
        &[
            "dlm_ls_lock.3",
            "dlm_ls_lockx.3",
            "dlm_unlock.3",
            "dlm_ls_unlock.3",
            "dlm_ls_deadlock_cancel.3",
        ],
    ),
    (
        "dlm_lock_wait.3",
        &[
            "dlm_ls_lock_wait.3",
            "dlm_unlock_wait.3",
            "dlm_ls_unlock_wait.3",
            "lock_resource.3",
            "unlock_resource.3",
        ],
    ),
    (
        "dlm_dispatch.3",
        &[
            "dlm_pthread_init.3",
            "dlm_ls_pthread_init.3",
            "dlm_pthread_cleanup.3",
        ],
    ),
];

/// The generated files, relative to the output directory.
pub struct Generated {
    /// `man1/*.1`.
    pub man1: Vec<PathBuf>,
    /// `man8/dlmd.8`.
    pub man8: PathBuf,
    /// dlmd's bash, zsh and fish completions, in that order.
    pub dlmd_completions: [PathBuf; 3],
    /// The bash completion script.
    pub bash: PathBuf,
    /// The zsh completion function (`_dlm`).
    pub zsh: PathBuf,
    /// The fish completion script.
    pub fish: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut out = crate::workspace_root().join("target/man");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            other => return Err(format!("man: unknown argument {other:?}")),
        }
    }
    let generated = generate(&out)?;
    for page in &generated.man1 {
        println!("{}", page.display());
    }
    println!("{}", generated.man8.display());
    for file in [&generated.bash, &generated.zsh, &generated.fish]
        .into_iter()
        .chain(&generated.dlmd_completions)
    {
        println!("{}", file.display());
    }
    Ok(())
}

/// The sections dlm(1) has beyond what clap knows.
const DLM_EXTRA: &str = r#".SH "EXIT STATUS"
.B dlm lock
exits with the status of its command (128 plus the signal number when
the command was killed), or 1 when
.B \-n
finds the lock held or
.B \-w
runs out.
Every other subcommand exits 0 on success.
Any failure (no lock manager reachable, permission denied, an unknown
lockspace, a bad mode) prints one line to standard error and exits 2.
.SH ENVIRONMENT
.TP
.B DLM_BACKEND
.B kernel
or
.B dlmd
forces a backend; by default the kernel DLM is used when
.I /proc/misc
lists
.BR dlm\-control ,
else dlmd.
.TP
.B DLMD_SOCKET
the socket of dlmd; by default
.I /run/dlmd/dlmd.sock
if it exists, else
.IR $XDG_RUNTIME_DIR/dlmd.sock ,
else
.IR /tmp/dlmd\-UID/dlmd.sock .
.SH FILES
.TP
.I /run/dlmd/dlmd.sock
the socket of the system dlmd.
.TP
.I /var/log/dlmd.log
the log of a dlmd started by
.B dlm daemon
as root (other users: a file in the temporary directory).
.SH EXAMPLES
Run a job on one machine of a cluster at a time, waiting at most a
minute for the lock:
.PP
.RS
.EX
dlm lock \-w 60 nightly\-backup \-\- /usr/local/bin/backup
.EE
.RE
.PP
Show who holds what:
.PP
.RS
.EX
dlm locks default
.EE
.RE
.SH "SEE ALSO"
.BR flock (1),
.BR dlmd (8),
.BR libdlm (3)
"#;

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    io(path, std::fs::write(path, bytes))
}

/// Writes the pages and completions under `out`.
pub fn generate(out: &Path) -> Result<Generated, String> {
    let man1 = out.join("man1");
    let man8 = out.join("man8");
    let completions = out.join("completions");
    for dir in [&man1, &man8, &completions] {
        io(dir, std::fs::create_dir_all(dir))?;
    }
    let mut cmd = dlm_cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    // The top page, with the sections clap does not know about.
    let top = man1.join("dlm.1");
    let mut text = Vec::new();
    man(&cmd)
        .render(&mut text)
        .map_err(|e| format!("dlm.1: {e}"))?;
    text.extend_from_slice(DLM_EXTRA.as_bytes());
    write(&top, &text)?;
    pages.push(top);
    // One page per subcommand, as git has them: dlm-lock(1), ...
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = man(sub);
        let path = man1.join(page.get_filename());
        let mut text = Vec::new();
        page.render(&mut text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        text.extend_from_slice(b".SH \"SEE ALSO\"\n.BR dlm (1)\n");
        write(&path, &text)?;
        pages.push(path);
    }
    let mut script = |shell: Shell, name: &str| -> Result<PathBuf, String> {
        let path = completions.join(name);
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, "dlm", &mut text);
        write(&path, &text)?;
        Ok(path)
    };
    let (bash, zsh, fish) = (
        script(Shell::Bash, "dlm.bash")?,
        script(Shell::Zsh, "_dlm")?,
        script(Shell::Fish, "dlm.fish")?,
    );
    // dlmd(8), from dlmd's own clap definition.
    let mut dlmd = dlmd::command();
    dlmd.build();
    let dlmd_page = man8.join("dlmd.8");
    let mut text = Vec::new();
    man(&dlmd)
        .section("8")
        .render(&mut text)
        .map_err(|e| format!("dlmd.8: {e}"))?;
    text.extend_from_slice(DLMD_EXTRA.as_bytes());
    write(&dlmd_page, &text)?;
    let mut dlmd_script = |shell: Shell, name: &str| -> Result<PathBuf, String> {
        let path = completions.join(name);
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut dlmd, "dlmd", &mut text);
        write(&path, &text)?;
        Ok(path)
    };
    let dlmd_completions = [
        dlmd_script(Shell::Bash, "dlmd.bash")?,
        dlmd_script(Shell::Zsh, "_dlmd")?,
        dlmd_script(Shell::Fish, "dlmd.fish")?,
    ];
    Ok(Generated {
        man1: pages,
        man8: dlmd_page,
        dlmd_completions,
        bash,
        zsh,
        fish,
    })
}

/// The sections dlmd(8) has beyond what clap knows.
const DLMD_EXTRA: &str = r#".SH "HOW IT RUNS"
Every connection is checked with the peer credentials the kernel gives:
a lockspace records its creator's user and group and the mode given at
creation (0 means 0600); opening it needs read and write permission by
those bits (root always may), releasing it needs the creator or root.
When a client closes its handle or dies, its locks are released
(persistent ones become orphans), as when a process closes the kernel's
lockspace device.
.PP
Run as root,
.B dlmd
listens on
.IR /run/dlmd/dlmd.sock ,
shared by all users.
Run as another user, it listens on a socket of that user only, in a
directory of mode 0700.
Only one
.B dlmd
runs per socket: a second one refuses to start; a socket file nobody
listens on is removed.
.SH SYSTEMD
.B dlmd.service
is
.BR Type=notify :
.B dlmd
sends
.B READY=1
to
.B $NOTIFY_SOCKET
once its socket accepts connections, and
.B STOPPING=1
when it stops.
With
.B dlmd.socket
enabled, systemd listens on
.I /run/dlmd/dlmd.sock
and starts
.B dlmd
on the first connection, passing the socket
.RB ( $LISTEN_FDS ,
.BR $LISTEN_PID );
.B dlmd
then takes no lock file and leaves the socket file in place when it
stops.
Under systemd (\fB$JOURNAL_STREAM\fP) each log line carries its journal
priority, so
.B journalctl \-u dlmd \-p warning
shows warnings and errors only.
.SH SIGNALS
.TP
.BR SIGTERM ", " SIGINT
Stop cleanly: the socket is removed (unless it came from socket
activation) and every client's calls fail with
.BR ENOTCONN .
Every lock is lost.
.TP
.B SIGHUP
Open the
.B \-\-log\-file
again (after log rotation has renamed it); dlmd keeps running.
.SH "EXIT STATUS"
0 after a clean stop; 1 when it cannot start (for example, another
.B dlmd
serves the socket); 2 for bad arguments.
.SH ENVIRONMENT
.TP
.B DLMD_SOCKET
The socket path, when
.B \-\-socket
is not given.
.TP
.B XDG_RUNTIME_DIR
Where a user's
.B dlmd
puts its socket.
.TP
.BR NOTIFY_SOCKET ", " LISTEN_FDS ", " LISTEN_PID ", " JOURNAL_STREAM
Set by systemd; see
.BR SYSTEMD .
.SH FILES
.TP
.I /run/dlmd/dlmd.sock
the socket of the system
.BR dlmd .
.TP
.I /run/dlmd/dlmd.sock.lock
the lock that keeps a second
.B dlmd
away; it stays in place.
.TP
.I /usr/lib/systemd/system/dlmd.service
the systemd unit.
.TP
.I /usr/lib/systemd/system/dlmd.socket
the socket unit, for socket activation.
.SH NOTES
The packages do not start
.B dlmd
when it is installed, and never restart it on upgrade, since a restart
drops every lock.
Start it with
.B systemctl enable \-\-now dlmd
(or
.B dlm daemon
without systemd) and restart it with
.B systemctl restart dlmd
when no locks matter.
.B systemctl kill \-s HUP dlmd
reopens the log file.
.SH "SEE ALSO"
.BR dlm (1),
.BR libdlm (3),
.BR systemctl (1),
.BR sd_notify (3)
"#;

/// A page of section 1 in the dlm-rs manual, dated by the last commit.
fn man(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone())
        .date(date())
        .source(format!("dlm-rs {}", env!("CARGO_PKG_VERSION")))
        .manual("dlm-rs")
}

/// The date of the last commit (YYYY-MM-DD), or of the crate's manifest
/// outside a git checkout.
fn date() -> String {
    let git = std::process::Command::new("git")
        .current_dir(crate::workspace_root())
        .args(["log", "-1", "--format=%cs"])
        .output();
    match git {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
        _ => {
            let manifest = crate::workspace_root().join("Cargo.toml");
            let modified = std::fs::metadata(manifest).and_then(|m| m.modified());
            let days = modified
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() / 86_400);
            dlmd::civil_date(days)
        }
    }
}
