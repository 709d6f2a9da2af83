//! The table of a lockspace's requests (one slot per lock, addressed by
//! the token sent as its lksb) and the [`Deliver`] that fills it.

use super::*;

/// What a completion reported.
///
/// ```no_run
/// use dlm_core::{LockOptions, Lockspace, Mode, Status};
/// use std::sync::mpsc;
///
/// let ls = Lockspace::open("example")?;
/// let (tx, rx) = mpsc::channel();
/// let id = ls.lock_async(b"r", Mode::Ex, LockOptions::new(), move |c, _lvb| {
///     let _ = tx.send(c);
/// })?;
/// while rx.try_recv().map(|c| assert_eq!(c.status, Status::GRANTED)).is_err() {
///     ls.dispatch_timeout(std::time::Duration::from_secs(1))?;
/// }
/// ls.unlock_id(id)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Completion {
    /// The lock id.
    pub lkid: u32,
    /// The status.
    pub status: Status,
    /// The status-block flags (DEMOTED, VALNOTVALID, ALTMODE).
    pub flags: SbFlags,
}

/// The record behind one lock's tokens: what its results update.
pub(super) struct Slot {
    generation: u32,
    pub(super) status: Status,
    pub(super) lkid: u32,
    pub(super) flags: SbFlags,
    pub(super) lvb: Lvb,
    pub(super) on_blocking: Option<BastFn>,
    pub(super) on_complete: Option<CompleteFn>,
}

#[derive(Default)]
pub(super) struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    next_generation: u32,
}

impl Table {
    /// Allocates a slot; returns its token (generation and index, never 0).
    pub(super) fn alloc(&mut self, on_blocking: Option<BastFn>) -> u64 {
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let slot = Slot {
            generation: self.next_generation,
            status: Status::IN_PROGRESS,
            lkid: 0,
            flags: SbFlags::empty(),
            lvb: [0; 32],
            on_blocking,
            on_complete: None,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        (u64::from(self.next_generation) << 32) | u64::from(index)
    }

    pub(super) fn get(&mut self, token: u64) -> Option<&mut Slot> {
        let index = (token & 0xffff_ffff) as usize;
        let generation = (token >> 32) as u32;
        self.slots
            .get_mut(index)?
            .as_mut()
            .filter(|s| s.generation == generation)
    }

    pub(super) fn free(&mut self, token: u64) {
        if self.get(token).is_some() {
            let index = (token & 0xffff_ffff) as u32;
            self.slots[index as usize] = None;
            self.free.push(index);
        }
    }
}

/// The completion routine address sent with every request. The device
/// needs a non-zero value; our results are routed by the lksb token.
pub(super) const CAST_TOKEN: u64 = 1;
/// The blocking routine address, when the lock has a blocking callback.
pub(super) const BAST_TOKEN: u64 = 2;

/// Delivers results into a lockspace's [`Table`] (kept under its handle's
/// state lock) and runs the callbacks the table names.
pub(super) struct Shared<'a>(pub(super) &'a Handle<Table>);

/// The completion recorded in `token`'s slot, if any.
pub(super) fn completion_in(table: &mut Table, token: u64) -> Option<Completion> {
    let slot = table.get(token)?;
    (slot.status != Status::IN_PROGRESS).then_some(Completion {
        lkid: slot.lkid,
        status: slot.status,
        flags: slot.flags,
    })
}

impl Deliver<Table> for Shared<'_> {
    fn record(&self, res: RawResult<'_>, table: &mut Table) -> bool {
        if res.is_bast() {
            return true;
        }
        let Some(slot) = table.get(res.user_lksb()) else {
            return false;
        };
        slot.status = res.status();
        slot.lkid = res.lkid();
        slot.flags = res.flags();
        if let Some(lvb) = res.lvb() {
            slot.lvb = *lvb;
        }
        slot.on_complete.is_some()
    }

    fn call(&self, res: RawResult<'_>) {
        if let Some(mode) = res.bast_mode() {
            let f = self.0.with_state_lock(|table| {
                table
                    .get(res.user_lksb())
                    .and_then(|s| s.on_blocking.clone())
            });
            if let Some(f) = f {
                f(mode);
            }
            return;
        }
        let done = self.0.with_state_lock(|table| {
            table
                .get(res.user_lksb())
                .and_then(|s| s.on_complete.take())
        });
        if let Some(f) = done {
            let completion = Completion {
                lkid: res.lkid(),
                status: res.status(),
                flags: res.flags(),
            };
            f(completion, res.lvb().copied());
        }
    }
}
