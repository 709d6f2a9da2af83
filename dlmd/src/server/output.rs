//! What dlmd sends: replies queued per batch and sent together (on a
//! request socket in one message, PROTOCOL.md "Replies travel
//! together"), results
//! taken from the engine as the callback socket can take them, and the
//! epoll interest that follows from what waits (flow control of
//! PROTOCOL.md).

use super::ops::fill_dump;
use super::*;

impl Server {
    /// Queues a reply; it goes out at the end of the batch.
    pub(super) fn reply(&mut self, tok: Tok, seq: u32, ret: i64, extra: &[u8]) {
        let msg = Small::reply(seq, ret, extra);
        if let Some(conn) = slot_conn(&mut self.slots, tok) {
            if !conn.gone {
                conn.out.push_back(msg);
            }
        }
    }

    /// The end of a batch of requests on `tok`: results first (the
    /// handle's own, then everybody's), then the replies.
    pub(super) fn end_batch(&mut self, tok: Tok) {
        let (own_cb, is_cb) = match self.conn(tok).map(|c| &c.role) {
            Some(Role::Request(r)) => (r.cb, false),
            Some(Role::Callback(_)) => (None, true),
            Some(_) => (None, false),
            None => return,
        };
        if let Some(cb) = own_cb {
            self.flush_cb(cb);
        }
        if self.dirty {
            self.dirty = false;
            self.flush_all();
        }
        self.drain_out(tok);
        if is_cb {
            self.flush_cb(tok);
        }
        self.update_interest(tok);
    }

    /// Sends queued replies, then the dump in progress.
    pub(super) fn drain_out(&mut self, tok: Tok) {
        let Some(conn) = slot_conn(&mut self.slots, tok) else {
            return;
        };
        if conn.gone {
            conn.out.clear();
            conn.dump = None;
            return;
        }
        // On a request socket the replies to pipelined requests travel
        // together (PROTOCOL.md): one message of as many as fit.
        let together = matches!(conn.role, Role::Request(_));
        while !conn.out.is_empty() {
            let (n, sent) = send_replies(&conn.fd, &conn.out, together);
            match sent {
                Ok(k) => {
                    conn.out.drain(..k.min(n));
                    if k < n {
                        conn.stalled = true;
                        return;
                    }
                }
                Err(SysErrno::AGAIN) => {
                    conn.stalled = true;
                    return;
                }
                Err(SysErrno::INTR) => {}
                Err(_) => {
                    conn.gone = true;
                    conn.out.clear();
                    conn.dump = None;
                    self.dead.push(tok);
                    return;
                }
            }
        }
        conn.stalled = false;
        let mut sent = 0;
        while let Some(d) = conn.dump.as_mut() {
            if sent == DUMP_CHUNKS_PER_WAKEUP {
                // More next round (the socket is still writable, so the
                // level-triggered EPOLLOUT comes back), after the others.
                return;
            }
            fill_dump(d, &self.engine, &self.lockspaces, &self.owners, &conn.peer);
            if d.text.is_empty() && d.minor.is_some() {
                // Nothing rendered this time (long scans): more next
                // round, as EPOLLOUT stays level-triggered.
                return;
            }
            let mut n = d.text.len().min(DUMP_CHUNK);
            while !d.text.is_char_boundary(n) {
                n -= 1;
            }
            let mut head = [0u8; HEADER_LEN];
            for (i, w) in [Op::DumpChunk as u32, d.seq, 0, proto::PROTOCOL_VERSION]
                .iter()
                .enumerate()
            {
                head[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let iov = [IoSlice::new(&head), IoSlice::new(&d.text.as_bytes()[..n])];
            match net::sendmsg(&conn.fd, &iov, &mut SendAncillaryBuffer::default(), SEND) {
                Ok(_) if n == 0 => conn.dump = None,
                Ok(_) => {
                    d.text.drain(..n);
                    if d.text.capacity() > 4 * DUMP_CHUNK {
                        d.text.shrink_to(2 * DUMP_CHUNK);
                    }
                    sent += 1;
                }
                Err(SysErrno::AGAIN) => return,
                Err(SysErrno::INTR) => {}
                Err(_) => {
                    conn.gone = true;
                    conn.dump = None;
                    self.dead.push(tok);
                    return;
                }
            }
        }
    }

    /// Registers the epoll interest the connection's state calls for.
    pub(super) fn update_interest(&mut self, tok: Tok) {
        let Some(conn) = slot_conn(&mut self.slots, tok) else {
            return;
        };
        let want = match &conn.role {
            Role::Callback(cb) if !cb.stash.is_empty() || !conn.out.is_empty() => {
                EventFlags::IN | EventFlags::RDHUP | EventFlags::OUT
            }
            Role::Callback(_) => EventFlags::IN | EventFlags::RDHUP,
            _ if conn.blocked() => EventFlags::OUT | EventFlags::RDHUP,
            // Held back: its requests wait until the callback socket
            // drains (flush_cb restores the interest).
            Role::Request(r) if held_back(&self.engine, r.owner) => EventFlags::RDHUP,
            _ => EventFlags::IN | EventFlags::RDHUP,
        };
        if want != conn.interest {
            match epoll::modify(&self.epoll, &conn.fd, EventData::new_u64(tok.data()), want) {
                Ok(()) => conn.interest = want,
                Err(e) => {
                    warn!("epoll modify: {e}; closing connection {}", tok.slot);
                    self.dead.push(tok);
                }
            }
        }
    }

    /// Sends the results queued for one callback socket until it is full,
    /// [`CHUNK`] per system call.
    pub(super) fn flush_cb(&mut self, tok: Tok) {
        let Some(conn) = slot_conn(&mut self.slots, tok) else {
            return;
        };
        if conn.gone || !conn.out.is_empty() {
            // The ATTACH reply goes first.
            return;
        }
        let Role::Callback(cb) = &mut conn.role else {
            return;
        };
        let was_stashed = !cb.stash.is_empty();
        loop {
            // Nothing to send (the usual case after a synchronous
            // request whose completion rode in its reply): no batch.
            if cb.stash.is_empty() && self.engine.pending_callbacks(cb.owner) == 0 {
                break;
            }
            let mut batch: [Option<ResultBuf>; CHUNK] = [None; CHUNK];
            let mut n = 0;
            while n < CHUNK {
                let next = match cb.stash.pop_front() {
                    Some(b) => Some(b),
                    // Encoding for a 104-byte read cannot fail.
                    None => match self.engine.pop_callback(cb.owner) {
                        Some(r) => r.encode(RESULT_LVB_LEN).ok(),
                        None => break,
                    },
                };
                if let Some(b) = next {
                    batch[n] = Some(b);
                    n += 1;
                }
            }
            if n == 0 {
                break;
            }
            let mut refs: [&[u8]; CHUNK] = [&[]; CHUNK];
            for (r, b) in refs.iter_mut().zip(batch.iter().flatten()) {
                *r = b;
            }
            let sent = match send_many(&conn.fd, &refs[..n]) {
                Ok(k) => k.min(n),
                Err(SysErrno::AGAIN | SysErrno::INTR) => 0,
                Err(_) => {
                    conn.gone = true;
                    self.dead.push(tok);
                    break;
                }
            };
            cb.sent = cb.sent.wrapping_add(sent as u32);
            if sent < n {
                for b in batch[sent..n].iter().rev().flatten() {
                    cb.stash.push_front(*b);
                }
                break;
            }
            if n < CHUNK {
                break;
            }
        }
        let req = cb.req;
        if was_stashed == cb.stash.is_empty() {
            self.update_interest(tok);
        }
        // A request socket held back may be read again.
        if self
            .conn(req)
            .is_some_and(|c| c.interest == EventFlags::RDHUP)
        {
            self.update_interest(req);
        }
    }

    /// Delivers queued results to the callback sockets of the owners that
    /// got new ones (after any operation that may queue results for
    /// others): the engine lists them, so a round costs nothing per idle
    /// handle. A socket with a stash waits for its writable event.
    pub(super) fn flush_all(&mut self) {
        let mut owners = std::mem::take(&mut self.notified);
        self.engine.take_notified(&mut owners);
        for owner in owners.drain(..) {
            let Some(&tok) = self.callbacks.get(&owner) else {
                // Not attached yet: the ATTACH reply's batch flushes it.
                continue;
            };
            let ready = match self.conn(tok) {
                Some(Conn {
                    role: Role::Callback(cb),
                    gone: false,
                    ..
                }) => cb.stash.is_empty() && self.engine.pending_callbacks(cb.owner) > 0,
                _ => false,
            };
            if ready {
                self.flush_cb(tok);
            }
        }
        self.notified = owners;
    }
}

/// Sends the first replies of `out` that one system call takes: on a
/// request socket (`together`) as one message of as many as fit in
/// [`proto::REPLIES_MAX_MSG`], elsewhere one message each. Returns how
/// many it tried and what the call gave (how many went).
fn send_replies(
    fd: &OwnedFd,
    out: &VecDeque<Small>,
    together: bool,
) -> (usize, rustix::io::Result<usize>) {
    if let (&[one], &[]) = out.as_slices() {
        // A synchronous client's one reply: no tables to build.
        return (1, send_many(fd, &[one.bytes()]));
    }
    let mut refs: [&[u8]; CHUNK] = [&[]; CHUNK];
    let (mut n, mut bytes) = (0, 0);
    for (r, m) in refs.iter_mut().zip(out.iter()) {
        bytes += m.bytes().len();
        if together && n > 0 && bytes > proto::REPLIES_MAX_MSG {
            break;
        }
        *r = m.bytes();
        n += 1;
    }
    if !together || n == 1 {
        return (n, send_many(fd, &refs[..n]));
    }
    let iov: [IoSlice<'_>; CHUNK] = std::array::from_fn(|i| IoSlice::new(refs[i]));
    let sent = net::sendmsg(fd, &iov[..n], &mut SendAncillaryBuffer::default(), SEND);
    (n, sent.map(|_| n))
}
