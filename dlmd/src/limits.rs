//! Per-uid limits (README "Limits", PROTOCOL.md "Limits"): how many
//! lockspaces, locks and connections one uid may hold in dlmd, so that
//! one user cannot exhaust the daemon's memory or file descriptors for
//! everyone. Root (uid 0) and the uid dlmd runs as (a per-user dlmd's own
//! user) are never limited.

/// Lockspaces a uid other than root may have created and not removed.
pub const DEFAULT_LOCKSPACES: usize = 100;
/// Lock objects (orphans included) a uid other than root may own.
pub const DEFAULT_LOCKS: usize = 100_000;
/// Connections a uid other than root may have open (a lockspace handle
/// takes two).
pub const DEFAULT_CONNECTIONS: usize = 1024;

/// The limits of one dlmd; `None` is unlimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// `--max-lockspaces-per-uid`.
    pub lockspaces: Option<usize>,
    /// `--max-locks-per-uid`.
    pub locks: Option<usize>,
    /// `--max-connections-per-uid`.
    pub connections: Option<usize>,
    /// The uid dlmd runs as, never limited (as root is not).
    pub own_uid: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            lockspaces: Some(DEFAULT_LOCKSPACES),
            locks: Some(DEFAULT_LOCKS),
            connections: Some(DEFAULT_CONNECTIONS),
            own_uid: rustix::process::geteuid().as_raw(),
        }
    }
}

impl Limits {
    /// Whether a uid holding `held` may take one more, under `limit`.
    pub fn allows(&self, limit: Option<usize>, uid: u32, held: usize) -> bool {
        uid == 0 || uid == self.own_uid || limit.is_none_or(|max| held < max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_root() {
        let mut l = Limits {
            locks: Some(1000),
            lockspaces: None,
            ..Limits::default()
        };
        l.own_uid = 500;
        assert!(l.allows(l.locks, 1000, 999));
        assert!(!l.allows(l.locks, 1000, 1000));
        assert!(l.allows(l.locks, 0, 5000), "root is never limited");
        assert!(l.allows(l.locks, 500, 5000), "nor dlmd's own uid");
        assert!(l.allows(l.lockspaces, 1000, usize::MAX - 1));
    }
}
