//! Waiting for the lockspace fd with `poll(2)`.

use super::*;

/// Waits until `fd` or `wake` is readable or the timeout passes; returns
/// whether `wake` is readable.
pub(super) fn wait_readable_or(
    fd: BorrowedFd<'_>,
    wake: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> Result<bool, Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let Some(wake) = wake else {
        wait_readable(fd, timeout)?;
        return Ok(false);
    };
    let mut fds = [
        PollFd::new(&fd, PollFlags::IN),
        PollFd::new(&wake, PollFlags::IN),
    ];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) => Ok(!fds[1].revents().is_empty()),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits until `fd` is readable or the timeout passes.
pub(super) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<(), Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
