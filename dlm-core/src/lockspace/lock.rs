//! [`Lock`], a granted lock, and [`LvbMut`].

use super::*;

/// A granted lock. Dropping it unlocks it; [`Lock::unlock`] returns the
/// status; [`Lock::keep`] leaves it held (a persistent lock then becomes
/// an orphan when the lockspace closes).
///
/// ```no_run
/// use dlm_core::{Error, LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// let mut lock = ls.lock(b"r", Mode::Pr, LockOptions::new())?;
/// match lock.try_convert(Mode::Ex) {
///     Ok(()) => assert_eq!(lock.mode(), Mode::Ex),
///     Err(Error::WouldBlock) => assert_eq!(lock.mode(), Mode::Pr),
///     Err(e) => return Err(e),
/// }
/// lock.unlock()?;
/// # Ok::<(), Error>(())
/// ```
pub struct Lock<'ls> {
    pub(super) ls: &'ls Lockspace,
    pub(super) token: u64,
    pub(super) lkid: u32,
    pub(super) mode: Mode,
    pub(super) flags: LockFlags,
}

impl fmt::Debug for Lock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("lkid", &self.lkid)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<'ls> Lock<'ls> {
    /// The lock id.
    pub fn id(&self) -> u32 {
        self.lkid
    }

    /// The granted mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The status-block flags of the latest completion.
    pub fn sb_flags(&self) -> SbFlags {
        self.ls
            .table()
            .get(self.token)
            .map_or(SbFlags::empty(), |s| s.flags)
    }

    /// Whether the lock value block is valid (the latest completion did
    /// not report VALNOTVALID).
    pub fn lvb_valid(&self) -> bool {
        !self.sb_flags().contains(SbFlags::VALNOTVALID)
    }

    /// The lock value block as of the latest grant (or as set by
    /// [`Lock::lvb_mut`]). Requires [`LockOptions::lvb`] to be meaningful.
    pub fn lvb(&self) -> Lvb {
        self.ls.table().get(self.token).map_or([0; 32], |s| s.lvb)
    }

    /// Changes the lock value block; it is written to the resource when the
    /// lock next leaves PW or EX (down-conversion or unlock).
    pub fn lvb_mut(&mut self) -> LvbMut<'_, 'ls> {
        LvbMut {
            lvb: self.lvb(),
            lock: self,
        }
    }

    /// Converts to `mode`, waiting for it.
    ///
    /// # Errors
    /// [`Error::Deadlock`] on a conversion deadlock (the lock keeps its
    /// mode); [`Error::Busy`] if a conversion is already pending.
    pub fn convert(&mut self, mode: Mode) -> Result<(), Error> {
        self.convert_flags(mode, LockFlags::empty())
    }

    /// Converts to `mode` only if that can be granted at once.
    ///
    /// # Errors
    /// [`Error::WouldBlock`]: the lock keeps its mode.
    pub fn try_convert(&mut self, mode: Mode) -> Result<(), Error> {
        self.convert_flags(mode, LockFlags::NOQUEUE)
    }

    /// Converts with extra flags (for example CONVDEADLK or QUECVT).
    ///
    /// # Errors
    /// As [`Lock::convert`].
    pub fn convert_flags(&mut self, mode: Mode, extra: LockFlags) -> Result<(), Error> {
        let flags = self.start_convert(mode, extra)?;
        let completion = self.ls.wait_token(self.token, None, self.lkid)?;
        self.end_convert(mode, flags, completion)
    }

    /// Sends a conversion; returns the flags it carried.
    pub(crate) fn start_convert(
        &mut self,
        mode: Mode,
        extra: LockFlags,
    ) -> Result<LockFlags, Error> {
        let (flags, req) = self.convert_request(mode, extra)?;
        if let Err(e) = self.ls.handle.write(&req) {
            self.convert_not_sent();
            return Err(e.into());
        }
        Ok(flags)
    }

    /// Marks the lock's slot as waiting and builds a conversion request;
    /// returns it with the flags it carries.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn convert_request(
        &mut self,
        mode: Mode,
        extra: LockFlags,
    ) -> Result<(LockFlags, Request), Error> {
        let flags = (self.flags - LockFlags::NOQUEUE) | extra | LockFlags::CONVERT;
        let bastaddr = {
            let mut table = self.ls.table();
            let slot = table.get(self.token).ok_or(Error::Sys(Errno::ENOENT))?;
            slot.status = Status::IN_PROGRESS;
            if slot.on_blocking.is_some() {
                BAST_TOKEN
            } else {
                0
            }
        };
        let req = Request::Lock(LockParams {
            mode: mode.raw(),
            flags,
            lkid: self.lkid,
            castaddr: CAST_TOKEN,
            castparam: self.token,
            bastaddr,
            bastparam: self.token,
            lksb: self.token,
            lvb: self.lvb(),
            ..LockParams::default()
        });
        Ok((flags, req))
    }

    /// A conversion built by [`Lock::convert_request`] was refused:
    /// nothing was queued, so the last status is put back.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn convert_not_sent(&self) {
        if let Some(slot) = self.ls.table().get(self.token) {
            slot.status = Status::GRANTED;
        }
    }

    /// The token the lock's results are routed by.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// The lockspace the lock belongs to.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn lockspace(&self) -> &'ls Lockspace {
        self.ls
    }

    /// Forgets the lock without unlocking it or freeing its slot; returns
    /// its token (the caller unlocks and frees it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_token(self) -> u64 {
        let this = std::mem::ManuallyDrop::new(self);
        this.token
    }

    /// Applies a conversion's completion.
    pub(crate) fn end_convert(
        &mut self,
        mode: Mode,
        flags: LockFlags,
        c: Completion,
    ) -> Result<(), Error> {
        if c.status.is_granted() {
            self.mode = granted_mode(mode, flags, c.flags);
            Ok(())
        } else {
            Err(Error::from_status(c.status))
        }
    }

    /// Unlocks, writing the LVB when the lock holds PW or EX and uses it.
    ///
    /// # Errors
    /// [`Error::Sys`] when the unlock is refused or the lock manager went
    /// away.
    pub fn unlock(self) -> Result<Status, Error> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unlock()
    }

    fn do_unlock(&self) -> Result<Status, Error> {
        let res = self
            .start_unlock(true)
            .and_then(|_| self.ls.wait_token(self.token, None, self.lkid));
        self.ls.table().free(self.token);
        res.map(|c| c.status)
    }

    /// Sends the unlock (with the LVB when the lock uses it); `sync`
    /// when the caller waits for it with `wait_token` (the completion may
    /// then ride in dlmd's reply).
    pub(crate) fn start_unlock(&self, sync: bool) -> Result<(), Error> {
        let dev = self.ls.handle.device();
        let params = self.unlock_params();
        dev.write_params(&params, DLM_USER_UNLOCK, &[], Some(&params.lvb), sync)
            .map(drop)
            .map_err(Error::from)
    }

    /// Marks the lock's slot as waiting and builds its unlock request
    /// (with the LVB when the lock uses it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn unlock_request(&self) -> Request {
        Request::Unlock(self.unlock_params())
    }

    /// [`Lock::unlock_request`]'s parameters.
    fn unlock_params(&self) -> LockParams {
        let flags = self.flags & LockFlags::VALBLK;
        let lvb = match self.ls.table().get(self.token) {
            Some(slot) => {
                slot.status = Status::IN_PROGRESS;
                slot.lvb
            }
            None => [0; 32],
        };
        LockParams {
            lkid: self.lkid,
            flags,
            lksb: self.token,
            castparam: self.token,
            lvb,
            ..LockParams::default()
        }
    }

    /// Leaves the lock held and forgets it; returns its id. A persistent
    /// lock becomes an orphan when the lockspace handle closes; any other
    /// lock is released then.
    pub fn keep(self) -> u32 {
        let this = std::mem::ManuallyDrop::new(self);
        this.lkid
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let _ = self.do_unlock();
    }
}

/// Mutable access to a lock's LVB; the change is stored when dropped.
///
/// ```no_run
/// use dlm_core::{LockOptions, Lockspace, Mode};
///
/// let ls = Lockspace::open("example")?;
/// let mut lock = ls.lock(b"r", Mode::Ex, LockOptions::new().lvb())?;
/// lock.lvb_mut()[0] = 7;
/// assert_eq!(lock.lvb()[0], 7);
/// lock.convert(Mode::Nl)?; // leaving EX writes it to the resource
/// # Ok::<(), dlm_core::Error>(())
/// ```
pub struct LvbMut<'a, 'ls> {
    lvb: Lvb,
    lock: &'a mut Lock<'ls>,
}

impl std::ops::Deref for LvbMut<'_, '_> {
    type Target = Lvb;
    fn deref(&self) -> &Lvb {
        &self.lvb
    }
}

impl std::ops::DerefMut for LvbMut<'_, '_> {
    fn deref_mut(&mut self) -> &mut Lvb {
        &mut self.lvb
    }
}

impl Drop for LvbMut<'_, '_> {
    fn drop(&mut self) {
        if let Some(slot) = self.lock.ls.table().get(self.lock.token) {
            slot.lvb = self.lvb;
        }
    }
}

/// The mode a lock holds after a grant: the alternate mode when the
/// completion says ALTMODE.
pub(super) fn granted_mode(requested: Mode, flags: LockFlags, sb: SbFlags) -> Mode {
    if !sb.contains(SbFlags::ALTMODE) {
        requested
    } else if flags.contains(LockFlags::ALTPR) {
        Mode::Pr
    } else {
        Mode::Cw
    }
}
