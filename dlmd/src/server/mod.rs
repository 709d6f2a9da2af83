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
//! - while a handle has [`MAX_UNSENT_RESULTS`] or more results queued
//!   that its client has not read, its request socket is not read
//!   (backpressure: nothing is dropped or merged);
//! - a dump is rendered a chunk at a time from an engine cursor as the
//!   client reads it, so it holds about one chunk of text in dlmd and
//!   each wakeup renders at most [`DUMP_CHUNKS_PER_WAKEUP`] chunks;
//! - closing either socket of a handle closes the owner;
//! - per-uid limits ([`Limits`]) on lockspaces, locks and connections; at
//!   its file-descriptor limit dlmd accepts with a reserve descriptor and
//!   refuses at once (a seq-0 reply with -EAGAIN).
//!
//! Nothing a client sends is trusted: every length and field is checked,
//! errors become `-errno` replies, and no input panics.

mod ops;
mod output;

use crate::dump;
use crate::limits::Limits;
use crate::perm::{LsMeta, Peer, Policy};
use crate::recv::{BATCH, RecvBatch};
use crate::signals;
use dlm_core::codec::{RESULT_LVB_LEN, ResultBuf};
use dlm_core::dlmd::proto::{self, DUMP_CHUNK, HEADER_LEN, Header, MAX_REQUEST_MSG, Op};
use dlm_core::{Errno, LockFlags, Name, Request, Version};
use dlm_engine::{DumpCursor, DumpItem, Engine, IdMap, OwnerId};
use log::{debug, warn};
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
/// The largest reply: a plain reply with a result (and its LVB) riding
/// in it (larger than an OPEN reply).
const SMALL: usize = proto::REPLY_LEN + proto::RESULT_IN_REPLY_MAX;
/// A handle whose client has left this many results unread is not read
/// from until it reads some (about 100 bytes each in the engine).
pub const MAX_UNSENT_RESULTS: usize = 4096;
/// DUMP_CHUNK messages rendered and sent per wakeup of one connection, so
/// that a dump never holds the event loop for long.
pub const DUMP_CHUNKS_PER_WAKEUP: usize = 2;
/// Engine dump steps that produced nothing yet ([`DumpItem::Busy`], each
/// a bounded walk of an orphan list) per fill of a dump chunk.
const DUMP_BUSY_PER_WAKEUP: usize = 32;

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
        let extra = &extra[..extra.len().min(SMALL - proto::REPLY_LEN)];
        let len = proto::REPLY_LEN + extra.len();
        // A reply says its length (replies may travel together).
        let words = [Op::Reply as u32, seq, len as u32, proto::PROTOCOL_VERSION];
        for (i, w) in words.iter().enumerate() {
            s.buf[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        s.buf[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&ret.to_ne_bytes());
        s.buf[proto::REPLY_LEN..len].copy_from_slice(extra);
        s.len = len as u8;
        s
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// A dump being rendered and sent as DUMP_CHUNK messages.
struct DumpOut {
    seq: u32,
    /// Every lockspace the peer may open (else only `minor`).
    all: bool,
    /// The lockspace being dumped; `None` when the dump is complete.
    minor: Option<u32>,
    /// Where in it; `None` before its first line.
    cursor: Option<DumpCursor>,
    /// Rendered text not sent yet (about one chunk at most).
    text: String,
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
    /// Results sent on this socket (modulo 2^31): when a synchronous
    /// WRITE says its client has taken as many, nothing of this handle
    /// is unread and its completion may ride in the reply.
    sent: u32,
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
    callbacks: IdMap<OwnerId, Tok>,
    /// Owners with new results (`Engine::take_notified`), reused.
    notified: Vec<OwnerId>,
    /// Owner id → request socket, until ATTACH.
    pending_attach: HashMap<u64, Tok>,
    /// Engine owner → (owner id, pid), for the dump.
    owners: IdMap<OwnerId, u64>,
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
    limits: Limits,
    /// `--warn-wait`: log each request that waits this many seconds.
    warn_wait: Option<u32>,
    /// Open connections per uid.
    conns_of: HashMap<u32, usize>,
    /// Lockspaces per creator uid.
    spaces_of: HashMap<u32, usize>,
    /// A spare descriptor, closed to accept (and refuse) a connection
    /// when dlmd is at its file-descriptor limit.
    reserve: Option<OwnedFd>,
    /// When the server was made: STATUS's `started` and `uptime`, and
    /// the origin of the engine's clock.
    started: (std::time::Instant, std::time::SystemTime),
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

/// Whether `owner`'s request socket is held back: its client has left
/// [`MAX_UNSENT_RESULTS`] results unread.
fn held_back(engine: &Engine, owner: OwnerId) -> bool {
    engine.pending_callbacks(owner) >= MAX_UNSENT_RESULTS
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

/// A spare descriptor for [`Server::refuse_at_limit`].
fn reserve_fd() -> Option<OwnedFd> {
    rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
}

/// Refuses a fresh connection: a reply with sequence number 0 and
/// `-errno` (what a client reads instead of its first reply), then the
/// connection is closed.
fn refuse(fd: OwnedFd, e: Errno) {
    let _ = net::send(&fd, Small::reply(0, neg(e), &[]).bytes(), SEND);
    // What the client already sent is read first: closing a Unix socket
    // with unread data makes the peer's next read fail with ECONNRESET
    // before it gets to the refusal.
    let mut buf = [0u8; 64];
    for _ in 0..BATCH {
        if net::recv(&fd, &mut buf, net::RecvFlags::DONTWAIT).is_err() {
            break;
        }
    }
    drop(fd);
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
        let mut engine = Engine::new();
        // No lock outlives its owner (docs/kernel-differences.md).
        engine.set_release_forceunlock(true);
        Ok(Server {
            epoll,
            listener,
            listener_paused: false,
            signals,
            engine,
            slots: Vec::new(),
            free: Vec::new(),
            callbacks: IdMap::default(),
            notified: Vec::new(),
            pending_attach: HashMap::new(),
            owners: IdMap::default(),
            lockspaces: HashMap::new(),
            policy: Policy::new(rustix::process::geteuid().as_raw(), None),
            next_id: 1,
            dead: Vec::new(),
            dirty: false,
            rx: Some(RecvBatch::new()),
            ended: Vec::new(),
            limits: Limits::default(),
            warn_wait: None,
            conns_of: HashMap::new(),
            spaces_of: HashMap::new(),
            reserve: reserve_fd(),
            started: (std::time::Instant::now(), std::time::SystemTime::now()),
        })
    }

    /// Lets the members of group `gid` create and remove lockspaces
    /// (`--admin-group`; it matters only when dlmd runs as root).
    pub fn set_admin_group(&mut self, gid: u32) {
        self.policy.admin_gid = Some(gid);
    }

    /// Sets the per-uid limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Logs (at warning level) each request once it has waited `secs`
    /// seconds, with its blockers; dlmd then wakes at least once a second.
    pub fn set_warn_wait(&mut self, secs: Option<u32>) {
        self.warn_wait = secs;
    }

    /// Serves until a stop signal (SIGTERM, SIGINT) arrives; returns its
    /// number. SIGHUP reopens the log file.
    ///
    /// # Errors
    /// The errno of `epoll_wait` (other than EINTR).
    pub fn run(&mut self) -> std::io::Result<u32> {
        let mut events: Vec<Event> = Vec::with_capacity(256);
        let start = self.started.0;
        let second = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        let mut warned_to = 0;
        loop {
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                self.warn_wait.map(|_| &second),
            ) {
                Ok(_) => {}
                Err(SysErrno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // The locks' ages (dump `seconds`): one coarse clock per round.
            let secs = u32::try_from(start.elapsed().as_secs()).unwrap_or(u32::MAX);
            self.engine.set_clock(secs);
            if let Some(t) = self.warn_wait.filter(|_| secs > warned_to) {
                self.engine
                    .long_waits(warned_to, secs, t, &mut |ls, res, l, blockers| {
                        let mode = |m: Option<dlm_core::Mode>| m.map_or("--", dlm_core::Mode::name);
                        let mut by = String::new();
                        for b in blockers {
                            by.push_str(&format!(
                                " lkid {:#x} pid {} {}{}",
                                b.id,
                                b.pid,
                                mode(b.granted),
                                b.requested
                                    .map_or(String::new(), |m| format!("->{}", m.name()))
                            ));
                        }
                        warn!(
                            "lockspace {ls} resource {res}: lkid {:#x} pid {} ({} -> {}) has waited {t} s; blocked by{}",
                            l.id,
                            l.pid,
                            mode(l.granted),
                            mode(l.requested),
                            if by.is_empty() { " nothing (granted at the next unlock, cancel or conversion on the resource)".to_string() } else { by }
                        );
                    });
                warned_to = secs;
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
                        while let Some(sig) = signals::read_signal(&self.signals) {
                            if sig == signals::SIGHUP {
                                crate::logging::reopen();
                            } else {
                                return Ok(sig);
                            }
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
                Err(SysErrno::MFILE | SysErrno::NFILE) if self.reserve.is_some() => {
                    if self.refuse_at_limit() {
                        continue;
                    }
                    return;
                }
                Err(
                    e @ (SysErrno::MFILE | SysErrno::NFILE | SysErrno::NOBUFS | SysErrno::NOMEM),
                ) => {
                    // Stop accepting until a connection closes, rather
                    // than spinning on a readable listener.
                    warn!("accept: {e}; not accepting until a connection closes");
                    if epoll::delete(&self.epoll, &self.listener).is_ok() {
                        self.listener_paused = true;
                    }
                    return;
                }
                Err(e) => {
                    warn!("accept: {e}");
                    return;
                }
            };
            let peer = match Peer::of(&fd) {
                Ok(p) => p,
                Err(e) => {
                    warn!("peer credentials: {e}; dropping the connection");
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
            let held = self.conns_of.get(&peer.uid).copied().unwrap_or(0);
            if !self.limits.allows(self.limits.connections, peer.uid, held) {
                debug!(
                    "uid {} has {held} connections: refusing pid {}",
                    peer.uid, peer.pid
                );
                refuse(fd, Errno::EMFILE);
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
                warn!("epoll add: {e}; dropping the connection");
                self.free.push(slot);
                continue;
            }
            debug!("connection {slot} from pid {} uid {}", peer.pid, peer.uid);
            *self.conns_of.entry(peer.uid).or_insert(0) += 1;
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

    /// At the file-descriptor limit: frees the reserve descriptor,
    /// accepts one connection, refuses it with EAGAIN and takes the
    /// reserve back. False when there was nothing to accept.
    fn refuse_at_limit(&mut self) -> bool {
        if self.reserve.take().is_none() {
            return false;
        }
        let accepted =
            net::accept_with(&self.listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC);
        let ok = match accepted {
            Ok(fd) => {
                debug!("at the file-descriptor limit: refusing a connection");
                refuse(fd, Errno::EAGAIN);
                true
            }
            Err(_) => false,
        };
        self.reserve = reserve_fd();
        ok
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
            if conn.closing || (!hup && (total >= BATCH || conn.blocked() || self.held(conn))) {
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

    /// Whether a request socket is held back because its client has left
    /// too many results unread.
    fn held(&self, conn: &Conn) -> bool {
        match &conn.role {
            Role::Request(r) => held_back(&self.engine, r.owner),
            _ => false,
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
        let opens = matches!(
            op,
            Some(Op::Version | Op::Control | Op::Dump | Op::Status | Op::Open | Op::Attach)
        );
        if undecided && opens && hdr.reserved != proto::PROTOCOL_VERSION {
            // A client of another release: refuse it, naming both
            // versions (the client reads ours from the reply's header).
            // Logged as a warning at most once a minute (any local user
            // can send such messages), at debug level otherwise.
            static LAST_WARNING: std::sync::atomic::AtomicU64 =
                std::sync::atomic::AtomicU64::new(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let last = LAST_WARNING.load(std::sync::atomic::Ordering::Relaxed);
            let level = if last == 0 || now >= last + 60 {
                LAST_WARNING.store(now.max(1), std::sync::atomic::Ordering::Relaxed);
                log::Level::Warn
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "refusing a client (pid {}): it speaks protocol version {}, this dlmd {}; \
                 clients and dlmd must come from the same release",
                conn.peer.pid,
                hdr.reserved,
                proto::PROTOCOL_VERSION
            );
            self.reply(tok, 0, neg(Errno::EPROTONOSUPPORT), &[]);
            self.close_after(tok);
            return;
        }
        if truncated || msg.len() > MAX_REQUEST_MSG {
            self.reply(tok, hdr.seq, neg(Errno::EINVAL), &[]);
            if undecided && !matches!(op, Some(Op::Version | Op::Control | Op::Dump | Op::Status)) {
                self.close_after(tok);
            } else if undecided {
                self.set_role(tok, Role::Control);
            }
            return;
        }
        match op {
            Some(Op::Version | Op::Control | Op::Dump | Op::Status) if !is_request => {
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
                    Some(Op::Status) => self.status(tok, hdr, payload),
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
        if let Some(n) = self.conns_of.get_mut(&conn.peer.uid) {
            *n -= 1;
            if *n == 0 {
                self.conns_of.remove(&conn.peer.uid);
            }
        }
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
