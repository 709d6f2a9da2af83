//! The operations a client asks for: WRITE (a v6 request), OPEN and
//! ATTACH (a lockspace handle's two sockets), CONTROL (create and remove
//! lockspaces), DUMP (rendered a chunk at a time from an engine cursor),
//! STATUS (dlmd's version, uptime, counts and counters).

use super::*;
use dlm_core::dlmd::status::DlmdStatus;

/// Whether `peer` may see a lockspace in a dump: as it may open it.
pub(super) fn may_dump(meta: Option<&LsMeta>, peer: &Peer) -> bool {
    meta.map_or(peer.is_root(), |m| m.may_open(peer))
}

/// Renders the next part of a dump into `d.text`, up to about one
/// [`DUMP_CHUNK`]: the engine's cursor moves on; nothing else is kept.
/// Lockspaces come in minor order, the resources of each in the engine's
/// order (PROTOCOL.md: a dump is not a snapshot).
pub(super) fn fill_dump(
    d: &mut DumpOut,
    engine: &Engine,
    lockspaces: &HashMap<u32, LsMeta>,
    owners: &IdMap<OwnerId, u64>,
    peer: &Peer,
) {
    let owner_id = |o: OwnerId| owners.get(&o).copied();
    let mut busy = 0;
    while d.text.len() < DUMP_CHUNK {
        let Some(minor) = d.minor else {
            return;
        };
        let Some(cursor) = d.cursor.as_mut() else {
            // The lockspace's first line (unless it went away, or the
            // peer may not see it in a dump of all).
            match engine.dump_summary(minor) {
                Some(s) if !d.all || may_dump(lockspaces.get(&minor), peer) => {
                    dump::header(&mut d.text, &s, lockspaces.get(&minor));
                    d.cursor = Some(DumpCursor::default());
                }
                _ => next_lockspace(d, engine),
            }
            continue;
        };
        match engine.dump_next(minor, cursor) {
            Some(DumpItem::Resource {
                name,
                lvb,
                lvb_invalid,
            }) => dump::resource(&mut d.text, &name, lvb.as_ref(), lvb_invalid),
            Some(DumpItem::Lock { queue, lock }) => {
                dump::lock_line(&mut d.text, queue, &lock, &owner_id);
            }
            Some(DumpItem::Busy) => {
                // A long orphan list: go on at the next wakeup.
                busy += 1;
                if busy == DUMP_BUSY_PER_WAKEUP {
                    return;
                }
            }
            None => next_lockspace(d, engine),
        }
    }
}

/// Moves a dump on to the next lockspace it lists, if any.
pub(super) fn next_lockspace(d: &mut DumpOut, engine: &Engine) {
    d.cursor = None;
    d.minor = match d.minor {
        Some(m) if d.all => m.checked_add(1).and_then(|n| engine.next_lockspace(n)),
        _ => None,
    };
}

impl Server {
    pub(super) fn write(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(Conn {
            role: Role::Request(req),
            ..
        }) = self.conn(tok)
        else {
            return;
        };
        let owner = req.owner;
        let cb_tok = req.cb;
        let Some(uid) = self.conn(tok).map(|c| c.peer.uid) else {
            return;
        };
        // A synchronous request may carry its completion in the reply
        // when nothing of this handle is unread: the client has taken
        // every result sent on the callback socket, none waits in dlmd's
        // stash or in the engine (PROTOCOL.md "One answer per
        // synchronous operation").
        let may_ride = hdr.reserved & proto::WRITE_SYNC != 0
            && self.engine.pending_callbacks(owner) == 0
            && cb_tok.is_some_and(|cb| match self.conn(cb) {
                Some(Conn {
                    role: Role::Callback(c),
                    gone: false,
                    ..
                }) => c.stash.is_empty() && (c.sent << 1) == (hdr.reserved & !proto::WRITE_SYNC),
                _ => false,
            });
        let ret = match Request::decode(payload) {
            Err(e) => neg(e),
            Ok((_, Request::CreateLockspace { .. } | Request::RemoveLockspace { .. })) => {
                neg(Errno::EINVAL)
            }
            Ok((_, Request::Lock(p)))
                if !p.flags.intersects(LockFlags::CONVERT | LockFlags::ORPHAN)
                    && self.limits.locks.is_some()
                    && !self
                        .limits
                        .allows(self.limits.locks, uid, self.engine.locks_of(uid)) =>
            {
                // A new lock past the uid's limit: what the kernel answers
                // when it cannot allocate one.
                neg(Errno::ENOMEM)
            }
            Ok((_, request)) => {
                self.dirty = true;
                match self.engine.write(owner, &request, hdr.tid) {
                    Ok(v) => i64::from(v),
                    Err(e) => neg(e),
                }
            }
        };
        if may_ride {
            // Encoding for a 104-byte read cannot fail.
            if let Some(b) = self
                .engine
                .pop_callback(owner)
                .and_then(|r| r.encode(RESULT_LVB_LEN).ok())
            {
                self.reply(tok, hdr.seq, ret, &b);
                return;
            }
        }
        // The results go out at the end of the batch, before the replies.
        self.reply(tok, hdr.seq, ret, &[]);
    }

    pub(super) fn open(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(peer) = self.conn(tok).map(|c| c.peer.clone()) else {
            return;
        };
        let opened = (|| {
            let name = ls_name(payload)?;
            let minor = self.engine.find_lockspace(&name).ok_or(Errno::ENOENT)?;
            let allowed = match self.lockspaces.get(&minor) {
                Some(meta) => meta.may_open(&peer),
                None => peer.is_root(),
            };
            if !allowed {
                return Err(Errno::EACCES);
            }
            Ok((minor, self.engine.open_as(minor, peer.uid)?))
        })();
        match opened {
            Err(e) => self.reply(tok, hdr.seq, neg(e), &[]),
            Ok((minor, owner)) => {
                let id = self.next_id;
                self.next_id += 1;
                let token = random_u64();
                self.set_role(
                    tok,
                    Role::Request(ReqState {
                        owner,
                        id,
                        token: Some(token),
                        cb: None,
                        minor,
                    }),
                );
                self.pending_attach.insert(id, tok);
                self.owners.insert(owner, id);
                debug!("handle {id}: pid {} opened minor {minor}", peer.pid);
                let mut extra = [0u8; 16];
                extra[..8].copy_from_slice(&id.to_ne_bytes());
                extra[8..].copy_from_slice(&token.to_ne_bytes());
                self.reply(tok, hdr.seq, i64::from(minor), &extra);
            }
        }
    }

    pub(super) fn attach(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(peer) = self.conn(tok).map(|c| c.peer.clone()) else {
            return;
        };
        let target = (|| {
            if payload.len() != 16 {
                return None;
            }
            let id = proto::get_u64(payload, 0)?;
            let token = proto::get_u64(payload, 8)?;
            let req_tok = *self.pending_attach.get(&id)?;
            match self.conn(req_tok) {
                Some(Conn {
                    role: Role::Request(r),
                    peer: req_peer,
                    ..
                }) if r.token == Some(token) && r.cb.is_none() && req_peer.uid == peer.uid => {
                    Some((id, req_tok, r.owner))
                }
                _ => None,
            }
        })();
        let Some((id, req_tok, owner)) = target else {
            self.reply(tok, hdr.seq, neg(Errno::EINVAL), &[]);
            return;
        };
        self.pending_attach.remove(&id);
        if let Some(Conn {
            role: Role::Request(r),
            ..
        }) = self.conn_mut(req_tok)
        {
            r.token = None;
            r.cb = Some(tok);
        }
        self.set_role(
            tok,
            Role::Callback(CbState {
                req: req_tok,
                owner,
                stash: VecDeque::new(),
                sent: 0,
            }),
        );
        self.callbacks.insert(owner, tok);
        debug!("handle {id}: callback socket attached");
        // The results queued so far follow this reply (end of batch).
        self.reply(tok, hdr.seq, 0, &[]);
    }

    pub(super) fn control(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(peer) = self.conn(tok).map(|c| c.peer.clone()) else {
            return;
        };
        let ret = (|| -> Result<i64, Errno> {
            let mode = proto::get_u32(payload, 0).ok_or(Errno::EINVAL)?;
            let bytes = payload.get(8..).ok_or(Errno::EINVAL)?;
            match Request::decode(bytes)?.1 {
                Request::CreateLockspace { flags, name } => {
                    let existing = self.engine.find_lockspace(&name);
                    let meta = existing.and_then(|minor| self.lockspaces.get(&minor));
                    self.policy.check_create(&peer, meta)?;
                    if existing.is_some() && meta.is_none() && !peer.is_root() {
                        // Unknown permissions: root only.
                        return Err(Errno::EACCES);
                    }
                    let held = self.spaces_of.get(&peer.uid).copied().unwrap_or(0);
                    if existing.is_none()
                        && !self.limits.allows(self.limits.lockspaces, peer.uid, held)
                    {
                        return Err(Errno::ENOMEM);
                    }
                    let minor = self.engine.create_lockspace(name, flags)?;
                    if existing.is_none() {
                        *self.spaces_of.entry(peer.uid).or_insert(0) += 1;
                        let meta = LsMeta::new(name, &peer, mode);
                        debug!(
                            "lockspace {:?} created (minor {minor}, uid {}, mode {:04o})",
                            String::from_utf8_lossy(name.as_bytes()),
                            meta.uid,
                            meta.mode
                        );
                        self.lockspaces.insert(minor, meta);
                    }
                    Ok(i64::from(minor))
                }
                Request::RemoveLockspace { flags, minor } => {
                    let meta = self.lockspaces.get(&minor).copied();
                    self.policy.check_remove(&peer, meta.as_ref())?;
                    self.settle_hangups(minor);
                    self.engine.remove_lockspace(minor, flags)?;
                    if let Some(meta) = meta {
                        if self.engine.find_lockspace(&meta.name) != Some(minor) {
                            debug!(
                                "lockspace {:?} removed",
                                String::from_utf8_lossy(meta.name.as_bytes())
                            );
                            self.lockspaces.remove(&minor);
                            if let Some(n) = self.spaces_of.get_mut(&meta.uid) {
                                *n -= 1;
                                if *n == 0 {
                                    self.spaces_of.remove(&meta.uid);
                                }
                            }
                        }
                    }
                    Ok(0)
                }
                _ => Err(Errno::EINVAL),
            }
        })();
        let ret = ret.unwrap_or_else(neg);
        self.reply(tok, hdr.seq, ret, &[]);
    }

    pub(super) fn dump(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(peer) = self.conn(tok).map(|c| c.peer.clone()) else {
            return;
        };
        let start = if payload.iter().all(|&b| b == 0) {
            // Every lockspace the peer could open, by minor.
            Ok((true, 0))
        } else {
            ls_name(payload).and_then(|name| {
                let minor = self.engine.find_lockspace(&name).ok_or(Errno::ENOENT)?;
                if may_dump(self.lockspaces.get(&minor), &peer) {
                    Ok((false, minor))
                } else {
                    Err(Errno::EACCES)
                }
            })
        };
        let (all, minor) = match start {
            Ok(x) => x,
            Err(e) => {
                self.reply(tok, hdr.seq, neg(e), &[]);
                return;
            }
        };
        self.reply(tok, hdr.seq, 0, &[]);
        if let Some(conn) = self.conn_mut(tok) {
            if !conn.gone {
                // Rendered and sent after the reply, a chunk at a time as
                // the client reads; no request is read until it is all out.
                conn.dump = Some(DumpOut {
                    seq: hdr.seq,
                    all,
                    minor: Some(minor),
                    cursor: None,
                    text: String::new(),
                });
            }
        }
    }

    /// STATUS: dlmd's version, uptime, counts and counters as `key value`
    /// lines, sent as a dump is (a reply, then DUMP_CHUNK messages). Any
    /// connected peer may ask: it shows counts, no names. O(1): the
    /// counts are the engine's running totals and the server's maps.
    pub(super) fn status(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        if !payload.is_empty() {
            self.reply(tok, hdr.seq, neg(Errno::EINVAL), &[]);
            return;
        }
        let e = self.engine.stats();
        let n = |v: usize| Some(v as u64);
        let text = DlmdStatus {
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            protocol: Some(proto::PROTOCOL_VERSION),
            pid: Some(std::process::id()),
            started: self
                .started
                .1
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            uptime: Some(self.started.0.elapsed().as_secs()),
            lockspaces: n(e.lockspaces),
            resources: n(e.resources),
            locks: n(e.locks),
            connections: n(self.slots.len() - self.free.len()),
            handles: n(self.owners.len()),
            grants: Some(e.grants),
            blocking_callbacks: Some(e.blocking_callbacks),
        }
        .to_text();
        self.reply(tok, hdr.seq, 0, &[]);
        if let Some(conn) = self.conn_mut(tok) {
            if !conn.gone {
                // Sent after the reply by the dump's machinery: one chunk
                // of text (no lockspace to walk), then the empty one.
                conn.dump = Some(DumpOut {
                    seq: hdr.seq,
                    all: false,
                    minor: None,
                    cursor: None,
                    text,
                });
            }
        }
    }
}
