//! `dlmd --dump`: asks a running dlmd for the lock dump through
//! dlm-core's client (the same code every other client uses) and hands
//! the text back to be printed (as text, or converted to JSON).

use dlm_core::Name;
use dlm_core::dlmd::client::Control;
use dlm_core::dlmd::proto::{ConnectError, SocketPath};

/// Fetches the dump of `lockspace` (or of every lockspace the caller may
/// open) from the dlmd listening on `path` (a discovered socket is
/// checked before anything is sent, see `dlm_core::dlmd::client`).
///
/// # Errors
/// A message for the user: no dlmd, an untrusted or refused connection,
/// an error reply (ENOENT: no such lockspace; EACCES) or a protocol
/// error.
pub fn fetch_dump(path: &SocketPath, lockspace: Option<&str>) -> Result<String, String> {
    let ctl = Control::connect_checked(path).map_err(|e| match e {
        ConnectError::Untrusted(u) => u.to_string(),
        ConnectError::Sys(e) => format!("cannot reach dlmd at {}: {e}", path.path.display()),
    })?;
    let name = lockspace
        .map(|ls| Name::lockspace(ls.as_bytes()).map_err(|_| format!("bad lockspace name {ls:?}")))
        .transpose()?;
    ctl.dump(name.as_ref()).map_err(|e| {
        if let Some(why) = dlm_core::dlmd::client::version_mismatch() {
            return why;
        }
        match lockspace {
            Some(ls) => format!("dump of lockspace {ls:?}: {e}"),
            None => format!("dump: {e}"),
        }
    })
}
