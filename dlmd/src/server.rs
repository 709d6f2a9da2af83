//! The event loop: one thread, one epoll set, every socket non-blocking.
//! It owns the [`Engine`], the connections and their roles (control,
//! request socket, callback socket), the lockspace permissions, and the
//! flow control of PROTOCOL.md:
//!
//! - the messages of a connection are read in batches (up to [`BATCH`]
//!   per wakeup); their replies are queued and sent together
//!   (`sendmmsg`) at the end of the batch, in request order; when a client
//!   does not read them, its requests are not read until the socket
//!   drains, so at most one batch of replies waits in dlmd;
//! - results stay queued in the engine and are taken (`pop_callback`)
//!   only when the callback socket can take them, [`CHUNK`] at a time;
//!   those that did not fit wait in dlmd (`stash`, at most one chunk)
//!   until EPOLLOUT;
//! - an operation's results are written before its reply (a batch's
//!   results before the batch's replies);
//! - closing either socket of a handle closes the owner.
//!
//! Nothing a client sends is trusted: every length and field is checked,
//! errors become `-errno` replies, and no input panics.

use crate::dump;
use crate::log::{debug, warning};
use crate::perm::{LsMeta, Peer, Policy};
use crate::recv::{BATCH, RecvBatch};
use crate::signals;
use dlm_core::codec::{RESULT_LVB_LEN, ResultBuf};
use dlm_core::dlmd::proto::{self, DUMP_CHUNK, HEADER_LEN, Header, MAX_REQUEST_MSG, Op};
use dlm_core::{Errno, Name, Request, Version};
use dlm_engine::{Engine, OwnerId};
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno as SysErrno;
use rustix::net::{self, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketFlags};
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};

/// The epoll token of the listening socket.
const LISTENER: u64 = u64::MAX;
/// The epoll token of the signalfd.
const SIGNALS: u64 = u64::MAX - 1;
/// Connections accepted per wakeup.
const ACCEPT_BATCH: usize = 64;
/// Messages per `sendmmsg`.
const CHUNK: usize = 32;
/// Flags of every send: never block, never raise SIGPIPE.
const SEND: SendFlags = SendFlags::NOSIGNAL.union(SendFlags::DONTWAIT);
/// Room for the largest reply (OPEN: header, ret, owner id, token).
const SMALL: usize = proto::OPEN_REPLY_LEN;

/// Identifies a connection: its slot and the slot's generation, so that
/// a stale epoll event or reference never reaches a newer connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tok {
    slot: u32,
    generation: u32,
}

impl Tok {
    fn data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    fn from_data(d: u64) -> Tok {
        Tok {
            slot: d as u32,
            generation: (d >> 32) as u32,
        }
    }
}

/// A reply waiting for its socket to drain (replies are small: no
/// allocation per message).
#[derive(Clone, Copy)]
struct Small {
    buf: [u8; SMALL],
    len: u8,
}

impl Small {
    fn reply(seq: u32, ret: i64, extra: &[u8]) -> Small {
        let mut s = Small {
            buf: [0; SMALL],
            len: 0,
        };
        let words = [Op::Reply as u32, seq, 0, 0];
        for (i, w) in words.iter().enumerate() {
            s.buf[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        s.buf[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&ret.to_ne_bytes());
        let extra = &extra[..extra.len().min(SMALL - proto::REPLY_LEN)];
        s.buf[proto::REPLY_LEN..proto::REPLY_LEN + extra.len()].copy_from_slice(extra);
        s.len = (proto::REPLY_LEN + extra.len()) as u8;
        s
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// A dump being sent as DUMP_CHUNK messages.
struct DumpOut {
    seq: u32,
    text: Vec<u8>,
    pos: usize,
}

/// The request socket of a handle.
struct ReqState {
    owner: OwnerId,
    /// The owner id sent to the client.
    id: u64,
    /// The one-time ATTACH token, until used.
    token: Option<u64>,
    /// The attached callback socket.
    cb: Option<Tok>,
    /// The lockspace's minor.
    minor: u32,
}

/// The callback socket of a handle.
struct CbState {
    req: Tok,
    owner: OwnerId,
    /// Results taken from the engine that the socket did not accept yet
    /// (at most [`CHUNK`]), in order.
    stash: VecDeque<ResultBuf>,
}

enum Role {
    Undecided,
    Control,
    Request(ReqState),
    Callback(CbState),
}

struct Conn {
    fd: OwnedFd,
    peer: Peer,
    role: Role,
    /// Replies not sent yet, in order: those of the batch being served,
    /// or those the socket did not accept.
    out: VecDeque<Small>,
    /// A send found the socket full: wait for EPOLLOUT, read nothing.
    stalled: bool,
    dump: Option<DumpOut>,
    /// The epoll interest currently registered.
    interest: EventFlags,
    /// A send failed for good: the peer is gone; close after this event.
    gone: bool,
    /// Closed after this event (a bad first message): read nothing more.
    closing: bool,
}

impl Conn {
    /// Whether output is backed up, so that requests must not be read.
    fn blocked(&self) -> bool {
        self.stalled || self.dump.is_some()
    }
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The daemon's state and event loop.
pub struct Server {
    epoll: OwnedFd,
    listener: OwnedFd,
    listener_paused: bool,
    signals: OwnedFd,
    engine: Engine,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Engine owner → its attached callback socket, to deliver results to.
    callbacks: HashMap<OwnerId, Tok>,
    /// Owners with new results (`Engine::take_notified`), reused.
    notified: Vec<OwnerId>,
    /// Owner id → request socket, until ATTACH.
    pending_attach: HashMap<u64, Tok>,
    /// Engine owner → (owner id, pid), for the dump.
    owners: HashMap<OwnerId, u64>,
    /// What dlmd knows about each lockspace (by minor).
    lockspaces: HashMap<u32, LsMeta>,
    /// Who may connect, create and remove.
    policy: Policy,
    next_id: u64,
    /// Connections to close once the current event is handled.
    dead: Vec<Tok>,
    /// The engine changed since results were last delivered to everyone.
    dirty: bool,
    /// The receive buffers, lent to [`Server::read`].
    rx: Option<Box<RecvBatch>>,
    /// Connections whose batch ended in this epoll round: their results
    /// and replies are sent once every ready connection has been read, so
    /// that dlmd wakes its clients once per round, not once per message.
    ended: Vec<Tok>,
}

/// The live connection `tok` names, borrowing only the slots (so that
/// other fields of the server stay usable).
fn slot_conn(slots: &mut [Slot], tok: Tok) -> Option<&mut Conn> {
    slots
        .get_mut(tok.slot as usize)
        .filter(|s| s.generation == tok.generation)
        .and_then(|s| s.conn.as_mut())
}

/// Sends `msgs` (at most [`CHUNK`]) in order, in one system call;
/// returns how many the socket took.
fn send_many(fd: &OwnedFd, msgs: &[&[u8]]) -> rustix::io::Result<usize> {
    if msgs.len() <= 1 {
        return match msgs.first() {
            Some(m) => net::send(fd, m, SEND).map(|_| 1),
            None => Ok(0),
        };
    }
    let n = msgs.len().min(CHUNK);
    let iovs: [[IoSlice<'_>; 1]; CHUNK] =
        std::array::from_fn(|i| [IoSlice::new(msgs.get(i).copied().unwrap_or(&[]))]);
    let mut ctrls: [SendAncillaryBuffer<'_, '_, '_>; CHUNK] =
        std::array::from_fn(|_| SendAncillaryBuffer::default());
    // Both arrays have CHUNK elements, so the zip yields CHUNK pairs.
    let mut parts = iovs.iter().zip(ctrls.iter_mut());
    let mut list: [MMsgHdr<'_>; CHUNK] = std::array::from_fn(|_| {
        let (iov, c) = parts.next().expect("CHUNK iovs and CHUNK control buffers");
        MMsgHdr::new(iov, c)
    });
    net::sendmmsg(fd, &mut list[..n], SEND)
}

fn neg(e: Errno) -> i64 {
    -i64::from(e.raw())
}

/// A lockspace name from an OPEN or DUMP payload: trailing NULs (a
/// zero-padded name) are ignored.
fn ls_name(payload: &[u8]) -> Result<Name, Errno> {
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    Name::lockspace(&payload[..end])
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_ne_bytes(b),
        // getrandom does not fail for 8 bytes once the pool is ready;
        // fall back to the clock rather than to a constant.
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

impl Server {
    /// A server for a bound, listening socket.
    ///
    /// # Errors
    /// The errno of creating the epoll set or the signalfd.
    pub fn new(listener: OwnedFd) -> std::io::Result<Server> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let signals = signals::stop_signal_fd()?;
        epoll::add(
            &epoll,
            &listener,
            EventData::new_u64(LISTENER),
            EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            &signals,
            EventData::new_u64(SIGNALS),
            EventFlags::IN,
        )?;
        Ok(Server {
            epoll,
            listener,
            listener_paused: false,
            signals,
            engine: Engine::new(),
            slots: Vec::new(),
            free: Vec::new(),
            callbacks: HashMap::new(),
            notified: Vec::new(),
            pending_attach: HashMap::new(),
            owners: HashMap::new(),
            lockspaces: HashMap::new(),
            policy: Policy::new(rustix::process::geteuid().as_raw(), None),
            next_id: 1,
            dead: Vec::new(),
            dirty: false,
            rx: Some(RecvBatch::new()),
            ended: Vec::new(),
        })
    }

    /// Lets the members of group `gid` create and remove lockspaces
    /// (`--admin-group`; it matters only when dlmd runs as root).
    pub fn set_admin_group(&mut self, gid: u32) {
        self.policy.admin_gid = Some(gid);
    }

    /// Serves until a stop signal arrives; returns its number.
    ///
    /// # Errors
    /// The errno of `epoll_wait` (other than EINTR).
    pub fn run(&mut self) -> std::io::Result<u32> {
        let mut events: Vec<Event> = Vec::with_capacity(256);
        loop {
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            ) {
                Ok(_) => {}
                Err(SysErrno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Hang-ups first: a client that closed a handle and then sent
            // a request elsewhere must find the handle closed, as a
            // kernel device's close() completes before the next write().
            let hangup = EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR;
            for ev in &events {
                let flags = ev.flags;
                match ev.data.u64() {
                    d @ 0..SIGNALS if flags.intersects(hangup) => {
                        self.conn_event(Tok::from_data(d), flags);
                    }
                    _ => {}
                }
            }
            self.reap();
            for ev in &events {
                let flags = ev.flags;
                match ev.data.u64() {
                    LISTENER => self.accept(),
                    SIGNALS => {
                        if let Some(sig) = signals::read_signal(&self.signals) {
                            return Ok(sig);
                        }
                    }
                    _ if flags.intersects(hangup) => {}
                    d => self.conn_event(Tok::from_data(d), flags),
                }
            }
            // The replies of this round, after all its reading.
            let mut ended = std::mem::take(&mut self.ended);
            for &tok in &ended {
                self.end_batch(tok);
            }
            ended.clear();
            self.ended = ended;
            self.reap();
        }
    }

    fn conn(&self, tok: Tok) -> Option<&Conn> {
        self.slots
            .get(tok.slot as usize)
            .filter(|s| s.generation == tok.generation)
            .and_then(|s| s.conn.as_ref())
    }

    fn conn_mut(&mut self, tok: Tok) -> Option<&mut Conn> {
        self.slots
            .get_mut(tok.slot as usize)
            .filter(|s| s.generation == tok.generation)
            .and_then(|s| s.conn.as_mut())
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let fd = match net::accept_with(
                &self.listener,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            ) {
                Ok(fd) => fd,
                Err(SysErrno::AGAIN) => return,
                Err(SysErrno::INTR | SysErrno::CONNABORTED) => continue,
                Err(
                    e @ (SysErrno::MFILE | SysErrno::NFILE | SysErrno::NOBUFS | SysErrno::NOMEM),
                ) => {
                    // Stop accepting until a connection closes, rather
                    // than spinning on a readable listener.
                    warning!("accept: {e}; not accepting until a connection closes");
                    if epoll::delete(&self.epoll, &self.listener).is_ok() {
                        self.listener_paused = true;
                    }
                    return;
                }
                Err(e) => {
                    warning!("accept: {e}");
                    return;
                }
            };
            let peer = match Peer::of(&fd) {
                Ok(p) => p,
                Err(e) => {
                    warning!("peer credentials: {e}; dropping the connection");
                    continue;
                }
            };
            if !self.policy.may_connect(&peer) {
                // A per-user dlmd serves its own user and root only.
                debug!(
                    "refusing pid {} uid {}: this dlmd serves uid {} and root",
                    peer.pid, peer.uid, self.policy.daemon_uid
                );
                continue;
            }
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Slot {
                        generation: 0,
                        conn: None,
                    });
                    (self.slots.len() - 1) as u32
                }
            };
            let tok = Tok {
                slot,
                generation: self.slots[slot as usize].generation,
            };
            let interest = EventFlags::IN | EventFlags::RDHUP;
            if let Err(e) = epoll::add(&self.epoll, &fd, EventData::new_u64(tok.data()), interest) {
                warning!("epoll add: {e}; dropping the connection");
                self.free.push(slot);
                continue;
            }
            debug!("connection {slot} from pid {} uid {}", peer.pid, peer.uid);
            self.slots[slot as usize].conn = Some(Conn {
                fd,
                peer,
                role: Role::Undecided,
                out: VecDeque::new(),
                stalled: false,
                dump: None,
                interest,
                gone: false,
                closing: false,
            });
        }
    }

    fn conn_event(&mut self, tok: Tok, flags: EventFlags) {
        let Some(conn) = self.conn(tok) else {
            return;
        };
        let is_cb = matches!(conn.role, Role::Callback(_));
        if flags.contains(EventFlags::OUT) {
            self.drain_out(tok);
            if is_cb {
                self.flush_cb(tok);
            }
        }
        if flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR)
        {
            self.read(tok, flags);
        }
        self.ended.push(tok);
    }

    /// Whether the peer has closed (for a zero-length read, which is also
    /// what an empty message looks like).
    fn peer_closed(&self, tok: Tok) -> bool {
        let Some(conn) = self.conn(tok) else {
            return true;
        };
        let mut fds = [PollFd::new(&conn.fd, PollFlags::RDHUP)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(_) => fds[0]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
            Err(_) => true,
        }
    }

    /// Reads and serves the messages of one connection, up to [`BATCH`]
    /// (all of them when the peer has hung up: everything it sent before
    /// closing is still served, as the kernel completes a `write()` before
    /// a `close()`; then the connection is closed).
    fn read(&mut self, tok: Tok, flags: EventFlags) {
        let hup = flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR);
        // The buffers are lent out while a request is served; a read
        // nested in serving (REMOVE settling hang-ups) gets its own.
        let mut rx = self.rx.take().unwrap_or_else(RecvBatch::new);
        let mut total = 0;
        'batch: while let Some(conn) = self.conn(tok) {
            if conn.closing || (!hup && (total >= BATCH || conn.blocked())) {
                break;
            }
            let want = if hup { BATCH } else { BATCH - total };
            let n = match rx.recv(conn.fd.as_fd(), want) {
                Ok(n) => n,
                Err(SysErrno::AGAIN) => {
                    if hup {
                        self.dead.push(tok);
                    }
                    break;
                }
                Err(SysErrno::INTR) => continue,
                Err(_) => {
                    self.dead.push(tok);
                    break;
                }
            };
            total += n;
            for i in 0..n {
                let (msg, truncated) = rx.get(i);
                if msg.is_empty() && !truncated && (hup || self.peer_closed(tok)) {
                    // End of stream (an empty message looks the same).
                    self.dead.push(tok);
                    break 'batch;
                }
                self.message(tok, msg, truncated);
                if self.conn(tok).is_none_or(|c| c.closing) {
                    break 'batch;
                }
            }
            if n < want {
                // The socket is empty now.
                if hup {
                    self.dead.push(tok);
                }
                break;
            }
        }
        if self.rx.is_none() {
            self.rx = Some(rx);
        }
    }

    /// Serves one message; `truncated` when it was longer than any valid
    /// message (`msg` then holds its start).
    fn message(&mut self, tok: Tok, msg: &[u8], truncated: bool) {
        let Some(conn) = self.conn_mut(tok) else {
            return;
        };
        if let Role::Callback(_) = conn.role {
            // A callback socket carries only results from dlmd; a reply
            // here would be mistaken for one, so the message is dropped.
            debug!("dropping a message on callback socket {}", tok.slot);
            return;
        }
        let undecided = matches!(conn.role, Role::Undecided);
        let is_request = matches!(conn.role, Role::Request(_));
        let (hdr, payload) = match Header::parse(msg) {
            Ok(x) => x,
            Err(e) => {
                self.reply(tok, 0, neg(e), &[]);
                if undecided {
                    self.close_after(tok);
                }
                return;
            }
        };
        let op = Op::from_raw(hdr.op);
        if truncated || msg.len() > MAX_REQUEST_MSG {
            self.reply(tok, hdr.seq, neg(Errno::EINVAL), &[]);
            if undecided && !matches!(op, Some(Op::Version | Op::Control | Op::Dump)) {
                self.close_after(tok);
            } else if undecided {
                self.set_role(tok, Role::Control);
            }
            return;
        }
        match op {
            Some(Op::Version | Op::Control | Op::Dump) if !is_request => {
                if undecided {
                    self.set_role(tok, Role::Control);
                }
                match op {
                    Some(Op::Version) => {
                        let ret = if payload.is_empty() {
                            0
                        } else {
                            neg(Errno::EINVAL)
                        };
                        self.reply(tok, hdr.seq, ret, &Version::DEVICE.encode());
                    }
                    Some(Op::Control) => self.control(tok, hdr, payload),
                    _ => self.dump(tok, hdr, payload),
                }
            }
            Some(Op::Open) if undecided => self.open(tok, hdr, payload),
            Some(Op::Attach) if undecided => self.attach(tok, hdr, payload),
            Some(Op::Write) if is_request => self.write(tok, hdr, payload),
            _ => {
                self.reply(tok, hdr.seq, neg(Errno::EINVAL), &[]);
                if undecided {
                    self.close_after(tok);
                }
            }
        }
    }

    /// Closes the connection once its queued replies are sent (at the end
    /// of this event), reading nothing more from it.
    fn close_after(&mut self, tok: Tok) {
        if let Some(conn) = slot_conn(&mut self.slots, tok) {
            conn.closing = true;
            self.dead.push(tok);
        }
    }

    fn set_role(&mut self, tok: Tok, role: Role) {
        if let Some(conn) = self.conn_mut(tok) {
            conn.role = role;
        }
    }

    /// Queues a reply; it goes out at the end of the batch.
    fn reply(&mut self, tok: Tok, seq: u32, ret: i64, extra: &[u8]) {
        let msg = Small::reply(seq, ret, extra);
        if let Some(conn) = slot_conn(&mut self.slots, tok) {
            if !conn.gone {
                conn.out.push_back(msg);
            }
        }
    }

    /// The end of a batch of requests on `tok`: results first (the
    /// handle's own, then everybody's), then the replies.
    fn end_batch(&mut self, tok: Tok) {
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
    fn drain_out(&mut self, tok: Tok) {
        let Some(conn) = slot_conn(&mut self.slots, tok) else {
            return;
        };
        if conn.gone {
            conn.out.clear();
            conn.dump = None;
            return;
        }
        while !conn.out.is_empty() {
            let mut refs: [&[u8]; CHUNK] = [&[]; CHUNK];
            let mut n = 0;
            for (r, m) in refs.iter_mut().zip(conn.out.iter()) {
                *r = m.bytes();
                n += 1;
            }
            match send_many(&conn.fd, &refs[..n]) {
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
        let mut chunk = Vec::new();
        while let Some(d) = conn.dump.as_mut() {
            let end = (d.pos + DUMP_CHUNK).min(d.text.len());
            chunk.clear();
            Header::new(Op::DumpChunk, d.seq, 0).put(&mut chunk);
            chunk.extend_from_slice(&d.text[d.pos..end]);
            match net::send(&conn.fd, &chunk, SEND) {
                Ok(_) if chunk.len() == HEADER_LEN => conn.dump = None,
                Ok(_) => d.pos = end,
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
    fn update_interest(&mut self, tok: Tok) {
        let Some(conn) = slot_conn(&mut self.slots, tok) else {
            return;
        };
        let want = match &conn.role {
            Role::Callback(cb) if !cb.stash.is_empty() || !conn.out.is_empty() => {
                EventFlags::IN | EventFlags::RDHUP | EventFlags::OUT
            }
            Role::Callback(_) => EventFlags::IN | EventFlags::RDHUP,
            _ if conn.blocked() => EventFlags::OUT | EventFlags::RDHUP,
            _ => EventFlags::IN | EventFlags::RDHUP,
        };
        if want != conn.interest {
            match epoll::modify(&self.epoll, &conn.fd, EventData::new_u64(tok.data()), want) {
                Ok(()) => conn.interest = want,
                Err(e) => {
                    warning!("epoll modify: {e}; closing connection {}", tok.slot);
                    self.dead.push(tok);
                }
            }
        }
    }

    /// Sends the results queued for one callback socket until it is full,
    /// [`CHUNK`] per system call.
    fn flush_cb(&mut self, tok: Tok) {
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
        if was_stashed == cb.stash.is_empty() {
            self.update_interest(tok);
        }
    }

    /// Delivers queued results to the callback sockets of the owners that
    /// got new ones (after any operation that may queue results for
    /// others): the engine lists them, so a round costs nothing per idle
    /// handle. A socket with a stash waits for its writable event.
    fn flush_all(&mut self) {
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

    fn write(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(Conn {
            role: Role::Request(req),
            ..
        }) = self.conn(tok)
        else {
            return;
        };
        let owner = req.owner;
        let ret = match Request::decode(payload) {
            Err(e) => neg(e),
            Ok((_, Request::CreateLockspace { .. } | Request::RemoveLockspace { .. })) => {
                neg(Errno::EINVAL)
            }
            Ok((_, request)) => {
                self.dirty = true;
                match self.engine.write(owner, &request, hdr.tid) {
                    Ok(v) => i64::from(v),
                    Err(e) => neg(e),
                }
            }
        };
        // The results go out at the end of the batch, before the replies.
        self.reply(tok, hdr.seq, ret, &[]);
    }

    fn open(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
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
            Ok((minor, self.engine.open(minor)?))
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

    fn attach(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
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
            }),
        );
        self.callbacks.insert(owner, tok);
        debug!("handle {id}: callback socket attached");
        // The results queued so far follow this reply (end of batch).
        self.reply(tok, hdr.seq, 0, &[]);
    }

    fn control(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
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
                    let minor = self.engine.create_lockspace(name, flags)?;
                    if existing.is_none() {
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

    fn dump(&mut self, tok: Tok, hdr: Header, payload: &[u8]) {
        let Some(peer) = self.conn(tok).map(|c| c.peer.clone()) else {
            return;
        };
        let may = |meta: Option<&LsMeta>| meta.map_or(peer.is_root(), |m| m.may_open(&peer));
        let minors = if payload.iter().all(|&b| b == 0) {
            // Every lockspace the peer could open, by name.
            let mut all: Vec<(Name, u32)> = self
                .lockspaces
                .iter()
                .filter(|(_, m)| may(Some(m)))
                .map(|(&minor, m)| (m.name, minor))
                .collect();
            all.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Ok(all.into_iter().map(|(_, m)| m).collect::<Vec<u32>>())
        } else {
            ls_name(payload).and_then(|name| {
                let minor = self.engine.find_lockspace(&name).ok_or(Errno::ENOENT)?;
                if may(self.lockspaces.get(&minor)) {
                    Ok(vec![minor])
                } else {
                    Err(Errno::EACCES)
                }
            })
        };
        let minors = match minors {
            Ok(m) => m,
            Err(e) => {
                self.reply(tok, hdr.seq, neg(e), &[]);
                return;
            }
        };
        let mut text = String::new();
        let owners = &self.owners;
        let owner_id = |o: OwnerId| owners.get(&o).copied();
        for minor in minors {
            if let Some(ls) = self.engine.dump(minor) {
                dump::render(&mut text, &ls, self.lockspaces.get(&minor), &owner_id);
            }
        }
        self.reply(tok, hdr.seq, 0, &[]);
        if let Some(conn) = self.conn_mut(tok) {
            if !conn.gone {
                // Sent after the reply, at the end of the batch; no
                // request is read until it is all out.
                conn.dump = Some(DumpOut {
                    seq: hdr.seq,
                    text: text.into_bytes(),
                    pos: 0,
                });
            }
        }
    }

    /// Closes the handles of lockspace `minor` whose client has already
    /// closed a socket but whose hang-up dlmd has not seen yet (a client
    /// that closes its last handle and then removes the lockspace must
    /// not get EBUSY).
    fn settle_hangups(&mut self, minor: u32) {
        let mut closed = Vec::new();
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(Conn {
                role: Role::Request(r),
                ..
            }) = &s.conn
            else {
                continue;
            };
            if r.minor != minor {
                continue;
            }
            let tok = Tok {
                slot: slot as u32,
                generation: s.generation,
            };
            for t in std::iter::once(tok).chain(r.cb) {
                if self.peer_closed(t) {
                    closed.push(t);
                }
            }
        }
        for tok in closed {
            // Serve what it sent before closing, then close it.
            self.read(tok, EventFlags::HUP);
            self.dead.push(tok);
        }
        self.reap();
    }

    /// Closes the connections that died during the last event.
    fn reap(&mut self) {
        while let Some(tok) = self.dead.pop() {
            self.close(tok);
        }
    }

    /// Closes a connection; for a handle's socket, closes the owner and
    /// the handle's other socket too.
    fn close(&mut self, tok: Tok) {
        let Some(slot) = self.slots.get_mut(tok.slot as usize) else {
            return;
        };
        if slot.generation != tok.generation {
            return;
        }
        let Some(conn) = slot.conn.take() else {
            return;
        };
        slot.generation = (slot.generation + 1) & 0x7fff_ffff;
        self.free.push(tok.slot);
        let _ = epoll::delete(&self.epoll, &conn.fd);
        drop(conn.fd);
        match conn.role {
            Role::Request(r) => {
                if r.token.is_some() {
                    self.pending_attach.remove(&r.id);
                }
                self.owners.remove(&r.owner);
                debug!("handle {}: closed", r.id);
                self.engine.close(r.owner);
                if let Some(cb) = r.cb {
                    self.close(cb);
                }
                // Closing may have granted others' waiting requests.
                self.dirty = false;
                self.flush_all();
            }
            Role::Callback(c) => {
                if self.callbacks.get(&c.owner) == Some(&tok) {
                    self.callbacks.remove(&c.owner);
                }
                self.close(c.req);
            }
            Role::Undecided | Role::Control => {}
        }
        if self.listener_paused
            && epoll::add(
                &self.epoll,
                &self.listener,
                EventData::new_u64(LISTENER),
                EventFlags::IN,
            )
            .is_ok()
        {
            self.listener_paused = false;
        }
    }
}
