//! The first run on a fresh machine: `dlm daemon`, then `dlm lock`, with
//! no socket directory yet. Each case runs in a private mount and pid
//! namespace (`unshare`) with an empty tmpfs on `/run` (mode 0755, as a
//! fresh boot has it) and others on `/tmp` and `/var/log`, so nothing of the host's
//! lock managers is seen and the namespace's dlmd dies with it. The
//! binaries (`dlm`, and `dlmd` beside it, built beforehand) are copied
//! into the fresh `/tmp` first.
//!
//! Root only (namespaces, mounts, a second uid); otherwise each test
//! prints why it skipped.

use std::process::Command;

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (mount namespaces, tmpfs mounts, setpriv)".into());
    }
    for prog in ["unshare", "setpriv"] {
        if !Command::new(prog)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(format!("needs {prog} (util-linux)"));
        }
    }
    None
}

/// Runs `script` (sh) in a fresh mount and pid namespace where `/run` and
/// `/tmp` are empty tmpfs mounts and `$BIN` holds `dlm` and `dlmd`;
/// returns its output, asserting success.
fn in_fresh_namespace(script: &str) -> String {
    let dlm = env!("CARGO_BIN_EXE_dlm");
    let dlmd = dlm_tests::dlmd_binary_path();
    assert!(
        dlmd.exists(),
        "{} is missing: build it with `cargo build -p dlmd` (cargo xtask test does)",
        dlmd.display()
    );
    let setup = format!(
        "set -e
         mount -t tmpfs -o mode=0755 tmpfs /run
         mount -t tmpfs -o mode=1777 tmpfs /tmp
         mount -t tmpfs -o mode=0755 tmpfs /var/log
         BIN=/tmp/bin
         mkdir -m 0755 $BIN
         cp '{dlm}' '{dlmd}' $BIN/
         unset DLMD_SOCKET XDG_RUNTIME_DIR
         export DLM_BACKEND=dlmd
         {script}",
        dlmd = dlmd.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork"])
        .args(["sh", "-c", &setup])
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}:\n{text}", out.status);
    text
}

#[test]
fn root_first_run_creates_run_dlmd_0755() {
    if let Some(why) = skip_reason() {
        println!("root_first_run_creates_run_dlmd_0755: skipped: {why}");
        return;
    }
    // A restrictive umask must not make the shared directory private.
    let out = in_fresh_namespace(
        "umask 077
         test ! -e /run/dlmd
         $BIN/dlm daemon
         echo \"dir $(stat -c '%a %u %F' /run/dlmd)\"
         $BIN/dlm lock x -- echo locked
         $BIN/dlm lock -n x -- echo again",
    );
    assert!(out.contains("dlmd started on /run/dlmd/dlmd.sock"), "{out}");
    assert!(out.contains("dir 755 0 directory\n"), "{out}");
    assert!(out.contains("locked\n") && out.contains("again\n"), "{out}");
}

#[test]
fn user_first_run_creates_tmp_dlmd_uid_0700_with_the_log_inside() {
    if let Some(why) = skip_reason() {
        println!("user_first_run_creates_tmp_dlmd_uid_0700_with_the_log_inside: skipped: {why}");
        return;
    }
    let out = in_fresh_namespace(
        "as_user() { setpriv --reuid 65534 --regid 65534 --clear-groups \"$@\"; }
         test ! -e /tmp/dlmd-65534
         as_user $BIN/dlm daemon
         echo \"dir $(stat -c '%a %u %F' /tmp/dlmd-65534)\"
         echo \"log $(stat -c '%a %u %F' /tmp/dlmd-65534/dlmd.log)\"
         test ! -e /tmp/dlmd-65534.log && echo 'no log in /tmp'
         as_user $BIN/dlm lock x -- echo locked",
    );
    assert!(
        out.contains("dlmd started on /tmp/dlmd-65534/dlmd.sock (log /tmp/dlmd-65534/dlmd.log)"),
        "{out}"
    );
    assert!(out.contains("dir 700 65534 directory\n"), "{out}");
    assert!(out.contains("log 600 65534 regular"), "{out}");
    assert!(out.contains("no log in /tmp\n"), "{out}");
    assert!(out.contains("locked\n"), "{out}");
}

/// `dlmd --daemon` run directly (systemd-less setups, the README's
/// manual start) prepares the default directory as `dlm daemon` does.
#[test]
fn dlmd_daemon_on_the_default_path_creates_its_directory() {
    if let Some(why) = skip_reason() {
        println!("dlmd_daemon_on_the_default_path_creates_its_directory: skipped: {why}");
        return;
    }
    let out = in_fresh_namespace(
        "$BIN/dlmd --daemon > /dev/null
         echo \"root $(stat -c '%a %u' /run/dlmd)\"
         setpriv --reuid 65534 --regid 65534 --clear-groups $BIN/dlmd --daemon > /dev/null
         echo \"user $(stat -c '%a %u' /tmp/dlmd-65534)\"
         test -S /tmp/dlmd-65534/dlmd.sock && test -S /run/dlmd/dlmd.sock && echo sockets",
    );
    assert!(out.contains("root 755 0\n"), "{out}");
    assert!(out.contains("user 700 65534\n"), "{out}");
    assert!(out.contains("sockets\n"), "{out}");
}
