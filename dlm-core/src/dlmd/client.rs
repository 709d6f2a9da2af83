//! The client side of the dlmd protocol: a control connection and the two
//! sockets of a lockspace handle (see `PROTOCOL.md`).

use super::proto::{self, ConnectError, Header, Op, SocketPath, Trust};
use super::status::DlmdStatus;
use crate::codec::{
    RESULT_LVB_LEN, ReadRaw, Request, ResultBuf, ResultSpace, Version, raw_result_in,
};
use crate::sync::lock;
use crate::{Errno, Name};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    self, AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Maps a socket error to what callers see: a vanished daemon is ENOTCONN.
fn conn_err(e: rustix::io::Errno) -> Errno {
    match e {
        rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET | rustix::io::Errno::NOTCONN => {
            Errno::ENOTCONN
        }
        e => e.into(),
    }
}

/// How long a client waits for dlmd to accept a connection (its listen
/// backlog full) and then for the connection's first reply, before it
/// gives up with EAGAIN: a dlmd that is overloaded, stopped (SIGSTOP) or
/// at its limits never makes a client hang.
pub const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects a SEQPACKET socket to dlmd at `sock`, checking a discovered
/// socket first ([`SocketPath::check_dir`] before connecting,
/// [`SocketPath::check_server`] on the server's `SO_PEERCRED` before
/// anything is sent). A full listen backlog is retried for up to
/// [`CONNECT_WAIT`]; the socket then waits at most that long for its
/// first reply, then fails with EAGAIN.
///
/// # Errors
/// EACCES for an untrusted socket, ENOENT when no socket file exists,
/// ECONNREFUSED when nothing listens on it, EAGAIN when dlmd did not
/// accept in time, or the errno of the failed call.
pub fn connect(sock: &SocketPath) -> Result<OwnedFd, Errno> {
    connect_checked(sock).map_err(|e| e.errno())
}

/// [`connect`], with the reason when the socket is not trusted.
///
/// # Errors
/// As [`connect`]; an untrusted socket is [`ConnectError::Untrusted`].
pub fn connect_checked(sock: &SocketPath) -> Result<OwnedFd, ConnectError> {
    let sys = |e: rustix::io::Errno| ConnectError::Sys(e.into());
    sock.check_dir()?;
    let addr = SocketAddrUnix::new(&sock.path).map_err(sys)?;
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(sys)?;
    let deadline = std::time::Instant::now() + CONNECT_WAIT;
    loop {
        match net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            // A Unix socket's backlog is full: dlmd is busy, or stopped.
            Err(rustix::io::Errno::AGAIN) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(sys(e)),
        }
    }
    if sock.trust != Trust::Explicit {
        let cred = net::sockopt::socket_peercred(&fd).map_err(sys)?;
        sock.check_server(cred.uid.as_raw())?;
    }
    rustix::io::ioctl_fionbio(&fd, false).map_err(sys)?;
    net::sockopt::set_socket_timeout(&fd, net::sockopt::Timeout::Recv, Some(CONNECT_WAIT))
        .map_err(sys)?;
    Ok(fd)
}

/// A refusal dlmd sent instead of a connection's first reply (a REPLY
/// with sequence number 0, PROTOCOL.md "Limits"): its errno. A refusal
/// for another protocol version (EPROTONOSUPPORT) is remembered for
/// [`version_mismatch`].
fn refusal(msg: &[u8]) -> Option<Errno> {
    let (h, payload) = Header::parse(msg).ok()?;
    let ret = proto::get_u64(payload, 0)? as i64;
    let e = (h.op == Op::Reply as u32 && h.seq == 0 && ret < 0)
        .then(|| Errno::from_raw((-ret) as i32))?;
    if e == Errno::EPROTONOSUPPORT {
        note_mismatch(h.reserved);
    }
    Some(e)
}

/// The protocol version of the last dlmd found to speak another one.
static MISMATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn note_mismatch(daemon: u32) {
    MISMATCH.store(
        (1 << 32) | u64::from(daemon),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// If a connection of this process failed because dlmd speaks another
/// protocol version (EPROTONOSUPPORT), the one-line message naming both
/// versions.
pub fn version_mismatch() -> Option<String> {
    let m = MISMATCH.load(std::sync::atomic::Ordering::Relaxed);
    (m >> 32 != 0).then(|| proto::mismatch_message(proto::PROTOCOL_VERSION, m as u32))
}

thread_local! {
    /// The calling thread's id, once known (0 until then).
    static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The calling thread's id, which every request carries: dlmd records it
/// as the kernel records a writer's thread id (the owner pid of new locks,
/// PURGE's "caller"). Cached per thread, since `gettid` is a system call
/// and this is on every request's path; a child of `fork()` forgets the
/// parent's (a `pthread_atfork` handler), so it never sends a stale one.
fn thread_id() -> u32 {
    TID.with(|t| {
        if t.get() == 0 {
            static AT_FORK: std::sync::Once = std::sync::Once::new();
            AT_FORK.call_once(register_forget_tid);
            t.set(rustix::thread::gettid().as_raw_nonzero().get() as u32);
        }
        t.get()
    })
}

#[allow(unsafe_code)]
fn register_forget_tid() {
    extern "C" fn forget_tid() {
        let _ = TID.try_with(|t| t.set(0));
    }
    // SAFETY: registers a child handler that only clears a const-initialised
    // thread-local (no allocation, async-signal-safe in practice).
    unsafe { libc::pthread_atfork(None, None, Some(forget_tid)) };
}

/// Sends one message, the header and the payload pieces gathered by
/// `sendmsg` (at most three pieces): nothing is copied or allocated.
fn send(
    fd: BorrowedFd<'_>,
    header: &[u8; proto::HEADER_LEN],
    payload: &[&[u8]],
) -> Result<(), Errno> {
    use std::io::IoSlice;
    let mut iov = [
        IoSlice::new(header),
        IoSlice::new(&[]),
        IoSlice::new(&[]),
        IoSlice::new(&[]),
    ];
    assert!(payload.len() < iov.len(), "at most three payload pieces");
    for (slot, p) in iov[1..].iter_mut().zip(payload) {
        *slot = IoSlice::new(p);
    }
    let iov = &iov[..1 + payload.len()];
    loop {
        match net::sendmsg(
            fd,
            iov,
            &mut net::SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(conn_err(e)),
        }
    }
}

/// Receives one message; end of stream (dlmd gone) is ENOTCONN. With
/// `nonblocking`, an empty socket gives `Ok(None)`.
fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], nonblocking: bool) -> Result<Option<usize>, Errno> {
    let flags = if nonblocking {
        RecvFlags::DONTWAIT
    } else {
        RecvFlags::empty()
    };
    loop {
        match net::recv(fd, &mut *buf, flags) {
            Ok((0, _)) => return Err(Errno::ENOTCONN),
            Ok((n, _)) => return Ok(Some(n)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) if nonblocking => return Ok(None),
            // dlmd closed a connection it refused while our request was
            // unread; its refusal may still be queued behind the error.
            Err(rustix::io::Errno::CONNRESET) => {
                return match net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
                    Ok((n, _)) if n > 0 => Ok(Some(n)),
                    _ => Err(Errno::ENOTCONN),
                };
            }
            Err(e) => return Err(conn_err(e)),
        }
    }
}

/// Called after a thread stored replies that others wait for (see
/// [`Device::set_reply_hook`]).
pub type ReplyHook = Arc<dyn Fn() + Send + Sync>;

/// A request/reply connection, used under a lock. Requests may be
/// pipelined: [`Channel::send`] gives each its sequence number, replies
/// come in request order and are kept (by sequence number) until their
/// sender takes them with [`Channel::reply`]; [`Channel::call`] is send
/// and wait.
struct Channel {
    fd: Arc<OwnedFd>,
    seq: u32,
    /// Sent requests whose reply has not been received, in order.
    outstanding: std::collections::VecDeque<u32>,
    /// Received replies nobody has taken yet.
    replies: std::collections::HashMap<u32, i64>,
    /// Requests whose reply nobody will take.
    discard: std::collections::HashSet<u32>,
    /// The connection ended (or broke the protocol): every reply fails.
    dead: Option<Errno>,
    hook: Option<ReplyHook>,
    /// No reply has come yet: the socket's receive timeout
    /// ([`CONNECT_WAIT`]) is still set.
    first: bool,
    /// How many bytes followed `ret` in the last reply taken by its
    /// sender (a result riding in a synchronous WRITE's reply).
    extra_len: usize,
    /// Room for a message of several replies, made when first needed
    /// (only pipelined requests get their replies together).
    together: Option<Box<[u8]>>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("fd", &self.fd)
            .field("seq", &self.seq)
            .field("outstanding", &self.outstanding.len())
            .finish()
    }
}

impl Channel {
    fn new(fd: OwnedFd) -> Channel {
        Channel {
            fd: Arc::new(fd),
            seq: 0,
            outstanding: Default::default(),
            replies: Default::default(),
            discard: Default::default(),
            dead: None,
            hook: None,
            first: true,
            extra_len: 0,
            together: None,
        }
    }

    /// Sends one request without waiting for its reply; returns its
    /// sequence number.
    fn send(&mut self, op: Op, payload: &[&[u8]]) -> Result<u32, Errno> {
        self.send_word(op, payload, None)
    }

    /// [`Channel::send`], with the header's `reserved` word set to `word`
    /// (a WRITE's [`proto::write_word`]).
    fn send_word(&mut self, op: Op, payload: &[&[u8]], word: Option<u32>) -> Result<u32, Errno> {
        if let Some(e) = self.dead {
            return Err(e);
        }
        // Sequence number 0 is dlmd's (refusals, unparsable messages).
        self.seq = self.seq.wrapping_add(1).max(1);
        let tid = thread_id();
        let mut header = Header::new(op, self.seq, tid);
        if let Some(w) = word {
            header.reserved = w;
        }
        let sent = send(self.fd.as_fd(), &header.bytes(), payload);
        if let Err(e) = sent {
            // Refused at once (dlmd closed after saying why)?
            let mut buf = [0u8; proto::REPLY_LEN];
            let e = match net::recv(self.fd.as_fd(), &mut buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => refusal(&buf[..n]).unwrap_or(e),
                Err(_) => e,
            };
            self.dead = Some(e);
            return Err(e);
        }
        self.outstanding.push_back(self.seq);
        Ok(self.seq)
    }

    /// Receives one message of replies (`Empty` when `nonblocking` and
    /// none is queued): the reply to `want` is returned with its extra
    /// bytes (copied into `extra`); every other is stored for its sender.
    fn recv_one(&mut self, want: u32, nonblocking: bool, extra: &mut [u8]) -> Result<Recv, Errno> {
        // One request outstanding means one reply per message: a small
        // buffer on the stack. Replies to pipelined requests may come
        // together (proto::REPLIES_MAX_MSG).
        let mut small = [0u8; proto::REPLY_LEN + proto::RESULT_IN_REPLY_MAX];
        let mut room = (self.outstanding.len() > 1).then(|| {
            self.together
                .take()
                .unwrap_or_else(|| vec![0u8; proto::REPLIES_MAX_MSG].into_boxed_slice())
        });
        let buf: &mut [u8] = match room.as_mut() {
            Some(b) => b,
            None => &mut small,
        };
        let got = recv(self.fd.as_fd(), buf, nonblocking).and_then(|n| {
            n.map(|n| self.take_replies(&buf[..n], want, extra))
                .transpose()
        });
        if room.is_some() {
            self.together = room;
        }
        match got {
            Ok(None) => Ok(Recv::Empty),
            Ok(Some(r)) => Ok(r),
            Err(e) => {
                // Replies can no longer be matched: the connection is done.
                self.dead = Some(e);
                if let Some(hook) = &self.hook {
                    hook();
                }
                Err(e)
            }
        }
    }

    /// Takes the replies of one message, in request order: `want`'s (with
    /// its extra bytes) is returned, the others are stored.
    fn take_replies(&mut self, msg: &[u8], want: u32, extra: &mut [u8]) -> Result<Recv, Errno> {
        if let Some(e) = refusal(msg) {
            return Err(e);
        }
        if self.first {
            let (h, _) = Header::parse(msg).map_err(|_| Errno::EPROTO)?;
            if h.reserved != proto::PROTOCOL_VERSION {
                // A dlmd of another release (one from before versioning
                // says 0).
                note_mismatch(h.reserved);
                return Err(Errno::EPROTONOSUPPORT);
            }
            self.first = false;
            net::sockopt::set_socket_timeout(self.fd.as_fd(), net::sockopt::Timeout::Recv, None)
                .map_err(Errno::from)?;
        }
        let mut got = Recv::Other;
        let mut stored = false;
        for one in proto::split_replies(msg) {
            let expected = self.outstanding.front().copied().ok_or(Errno::EPROTO)?;
            let (_, ret, rest) = proto::parse_reply_header(one?, expected)?;
            self.outstanding.pop_front();
            if expected == want {
                let m = rest.len().min(extra.len());
                extra[..m].copy_from_slice(&rest[..m]);
                self.extra_len = m;
                got = Recv::Mine(ret);
            } else if !self.discard.remove(&expected) {
                self.replies.insert(expected, ret);
                stored = true;
            }
        }
        if stored {
            if let Some(hook) = &self.hook {
                hook();
            }
        }
        Ok(got)
    }

    /// The reply to `seq`: waits for it, or with `nonblocking` reads what
    /// is queued and gives `Ok(None)` if it has not come yet.
    fn reply(
        &mut self,
        seq: u32,
        nonblocking: bool,
        extra: &mut [u8],
    ) -> Result<Option<i64>, Errno> {
        loop {
            // Stored replies exist only when threads pipeline: skip the
            // hash on the synchronous path.
            if !self.replies.is_empty() {
                if let Some(ret) = self.replies.remove(&seq) {
                    return Ok(Some(ret));
                }
            }
            if let Some(e) = self.dead {
                return Err(e);
            }
            if self.outstanding.front() != Some(&seq) && !self.outstanding.contains(&seq) {
                return Err(Errno::EINVAL);
            }
            match self.recv_one(seq, nonblocking, extra)? {
                Recv::Mine(ret) => return Ok(Some(ret)),
                Recv::Other => {}
                Recv::Empty => return Ok(None),
            }
        }
    }

    /// Drops the reply to `seq` when it comes (or now, if it came).
    fn forget(&mut self, seq: u32) {
        if self.replies.remove(&seq).is_none() && self.outstanding.contains(&seq) {
            self.discard.insert(seq);
        }
    }

    /// Sends one request and waits for its reply; returns `ret` and the
    /// bytes after it (copied into `extra`, which must be large enough).
    fn call(&mut self, op: Op, payload: &[&[u8]], extra: &mut [u8]) -> Result<i64, Errno> {
        self.call_word(op, payload, extra, None)
    }

    /// [`Channel::call`] with the header's `reserved` word set to `word`.
    fn call_word(
        &mut self,
        op: Op,
        payload: &[&[u8]],
        extra: &mut [u8],
        word: Option<u32>,
    ) -> Result<i64, Errno> {
        self.extra_len = 0;
        let seq = self.send_word(op, payload, word)?;
        Ok(self
            .reply(seq, false, extra)?
            .expect("a blocking reply wait returns a reply"))
    }
}

/// What [`Channel::recv_one`] received.
enum Recv {
    /// The reply waited for: its `ret`.
    Mine(i64),
    /// Another request's reply (stored or discarded).
    Other,
    /// Nothing queued (non-blocking).
    Empty,
}

fn ret_u32(ret: i64) -> Result<u32, Errno> {
    Errno::from_ret(ret)
}

/// A control connection to dlmd: version, lockspace creation and removal,
/// lock dumps, dlmd's status.
#[derive(Debug)]
pub struct Control {
    chan: Mutex<Channel>,
}

impl Control {
    /// Connects to dlmd at `path`.
    ///
    /// # Errors
    /// As [`connect`].
    pub fn connect(path: &SocketPath) -> Result<Control, Errno> {
        Control::connect_checked(path).map_err(|e| e.errno())
    }

    /// [`Control::connect`], with the reason when the socket is not
    /// trusted.
    ///
    /// # Errors
    /// As [`connect_checked`].
    pub fn connect_checked(path: &SocketPath) -> Result<Control, ConnectError> {
        Ok(Control {
            chan: Mutex::new(Channel::new(connect_checked(path)?)),
        })
    }

    fn call(&self, op: Op, payload: &[&[u8]], extra: &mut [u8]) -> Result<i64, Errno> {
        lock(&self.chan).call(op, payload, extra)
    }

    /// The device interface version dlmd speaks.
    ///
    /// # Errors
    /// ENOTCONN if dlmd went away; EPROTO on a malformed answer.
    pub fn version(&self) -> Result<Version, Errno> {
        let mut v = [0u8; crate::codec::VERSION_LEN];
        ret_u32(self.call(Op::Version, &[], &mut v)?)?;
        Version::decode(&v)
    }

    /// Sends a CREATE_LOCKSPACE or REMOVE_LOCKSPACE request; `mode` is the
    /// permission of a new lockspace. Returns what the kernel's `write()`
    /// would.
    ///
    /// # Errors
    /// The daemon's answer (EEXIST, EINVAL, EBUSY, EACCES, ENOENT...).
    pub fn write(&self, req: &Request, mode: u32, version: Version) -> Result<u32, Errno> {
        let bytes = req.encode(version);
        let mut prefix = [0u8; 8];
        prefix[..4].copy_from_slice(&mode.to_ne_bytes());
        ret_u32(self.call(Op::Control, &[&prefix, &bytes], &mut [])?)
    }

    /// The lock dump text of one lockspace, or of all.
    ///
    /// # Errors
    /// ENOENT for an unknown lockspace; ENOTCONN if dlmd went away.
    pub fn dump(&self, lockspace: Option<&Name>) -> Result<String, Errno> {
        let name = lockspace.map_or(&[][..], Name::as_bytes);
        self.text(Op::Dump, &[name])
    }

    /// dlmd's own status (STATUS): its version, uptime, counts and
    /// counters. `Ok(None)` from a dlmd that does not know STATUS (it
    /// answers EINVAL).
    ///
    /// # Errors
    /// ENOTCONN if dlmd went away; EPROTO on a malformed answer.
    pub fn status(&self) -> Result<Option<DlmdStatus>, Errno> {
        match self.text(Op::Status, &[]) {
            Ok(text) => Ok(Some(DlmdStatus::parse(&text))),
            Err(Errno::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `op` and reads its answer: a reply, then DUMP_CHUNK
    /// messages of text, the last one empty.
    fn text(&self, op: Op, payload: &[&[u8]]) -> Result<String, Errno> {
        let mut chan = lock(&self.chan);
        ret_u32(chan.call(op, payload, &mut [])?)?;
        let mut text = Vec::new();
        let mut buf = vec![0u8; proto::HEADER_LEN + proto::DUMP_CHUNK];
        loop {
            let n = recv(chan.fd.as_fd(), &mut buf, false)?.unwrap_or(0);
            let (h, chunk) = Header::parse(&buf[..n]).map_err(|_| Errno::EPROTO)?;
            if h.op != Op::DumpChunk as u32 {
                return Err(Errno::EPROTO);
            }
            if chunk.is_empty() {
                return String::from_utf8(text).map_err(|_| Errno::EPROTO);
            }
            text.extend_from_slice(chunk);
        }
    }
}

/// One opened lockspace handle on dlmd: its request socket and its
/// callback socket.
#[derive(Debug)]
pub struct Device {
    req: Mutex<Channel>,
    req_fd: Arc<OwnedFd>,
    callbacks: Arc<OwnedFd>,
    minor: u32,
    /// Where results stand between the callback socket and replies (see
    /// [`Device::write_sync`]). Locked after `req`, never before.
    results: Mutex<ResultOrder>,
}

/// The order of a handle's results when a synchronous request's
/// completion may ride in its reply (PROTOCOL.md "One answer per
/// synchronous operation").
#[derive(Debug, Default)]
struct ResultOrder {
    /// Results taken from the callback socket (modulo 2^31), sent in a
    /// synchronous WRITE: dlmd lets the completion ride in the reply
    /// only when it has sent no more than this.
    taken: u32,
    /// A synchronous WRITE is waiting for its reply: a reader must not
    /// read the callback socket until its result is placed.
    in_flight: bool,
    /// A thread is reading (or polling) the callback socket: a
    /// synchronous WRITE then asks for its completion there, so that
    /// the reader, blocked there, gets it.
    readers: u32,
    /// Results to hand out before reading the socket: a completion that
    /// rode in a reply, then any result read after it.
    queued: std::collections::VecDeque<ResultBuf>,
}

impl Device {
    /// Opens lockspace `name` on the dlmd at `path` (OPEN, then ATTACH).
    ///
    /// # Errors
    /// ENOENT (no such lockspace, or no dlmd), EACCES, ECONNREFUSED,
    /// ENOTCONN; EAGAIN when dlmd did not answer within [`CONNECT_WAIT`]
    /// or refused the connection at its file-descriptor limit; EMFILE when
    /// the caller's uid has too many connections (PROTOCOL.md "Limits").
    pub fn open(path: &SocketPath, name: &Name) -> Result<Device, Errno> {
        let mut req = Channel::new(connect(path)?);
        let mut ids = [0u8; 16];
        let minor = ret_u32(req.call(Op::Open, &[name.as_bytes()], &mut ids)?)?;
        let mut cb = Channel::new(connect(path)?);
        ret_u32(cb.call(Op::Attach, &[&ids], &mut [])?)?;
        Ok(Device {
            req_fd: req.fd.clone(),
            req: Mutex::new(req),
            callbacks: cb.fd,
            minor,
            results: Mutex::new(ResultOrder {
                queued: std::collections::VecDeque::with_capacity(4),
                ..ResultOrder::default()
            }),
        })
    }

    /// The lockspace's minor number.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// Sends one v6 request; returns what the kernel's `write()` would.
    ///
    /// # Errors
    /// The lock manager's errno, or ENOTCONN if dlmd went away.
    pub fn write(&self, req: &Request, version: Version) -> Result<u32, Errno> {
        self.write_encoded(&req.encode(version))
    }

    /// Sends one encoded v6 request; returns what the kernel's `write()`
    /// would.
    ///
    /// # Errors
    /// The lock manager's errno, or ENOTCONN if dlmd went away.
    pub fn write_encoded(&self, bytes: &[u8]) -> Result<u32, Errno> {
        ret_u32(self.chan().call(Op::Write, &[bytes], &mut [])?)
    }

    /// Sends one encoded v6 request whose caller waits for its
    /// completion: marked synchronous, so that dlmd may send the
    /// completion in the reply when nothing of this handle is unread; it
    /// is then handed out by the next [`Device::read_raw`], before anything
    /// read from the callback socket later. When another thread is
    /// reading the callback socket, the request is sent as
    /// [`Device::write_encoded`] sends it (the completion comes there).
    ///
    /// # Errors
    /// As [`Device::write_encoded`].
    pub fn write_sync(&self, bytes: &[u8]) -> Result<u32, Errno> {
        let mut chan = self.chan();
        let word = {
            let mut order = lock(&self.results);
            if order.readers > 0 {
                None
            } else {
                order.in_flight = true;
                Some(proto::write_word(true, order.taken))
            }
        };
        if word.is_none() {
            return ret_u32(chan.call(Op::Write, &[bytes], &mut [])?);
        }
        let mut extra = [0u8; proto::RESULT_IN_REPLY_MAX];
        let got = chan.call_word(Op::Write, &[bytes], &mut extra, word);
        let rode = match got {
            // Checked when delivered, as a result read from the socket.
            Ok(_) if chan.extra_len > 0 => Some(ResultBuf::copy_of(&extra[..chan.extra_len])),
            _ => None,
        };
        let mut order = lock(&self.results);
        order.in_flight = false;
        match rode {
            Some(Ok(r)) => order.queued.push_back(r),
            Some(Err(e)) => {
                chan.dead = Some(Errno::EPROTO);
                return Err(e);
            }
            None => {}
        }
        drop(order);
        drop(chan);
        ret_u32(got?)
    }

    /// Waits until no synchronous WRITE is in flight (its reply may
    /// carry a result that comes before anything on the socket), then
    /// takes the first queued result, or registers as a reader of the
    /// callback socket (`readers`).
    fn begin_read(&self) -> Option<ResultBuf> {
        let mut order = lock(&self.results);
        loop {
            if let Some(r) = order.queued.pop_front() {
                return Some(r);
            }
            if !order.in_flight {
                order.readers += 1;
                return None;
            }
            drop(order);
            // The synchronous writer holds the request channel until it
            // has placed its result.
            drop(self.chan());
            order = lock(&self.results);
        }
    }

    /// Waits until the callback socket is readable or `wake` is; true
    /// when a result is there to read (queued or on the socket). For a
    /// dispatch thread's poll: it counts as a reader, so no completion
    /// rides in a reply while it waits on the socket.
    ///
    /// # Errors
    /// The poll's errno (EINTR included).
    pub fn wait_readable(&self, wake: BorrowedFd<'_>) -> Result<(bool, bool), Errno> {
        use rustix::event::{PollFd, PollFlags, poll};
        {
            let mut order = lock(&self.results);
            loop {
                if !order.queued.is_empty() {
                    return Ok((true, false));
                }
                if !order.in_flight {
                    order.readers += 1;
                    break;
                }
                drop(order);
                drop(self.chan());
                order = lock(&self.results);
            }
        }
        let cb = self.callbacks.as_fd();
        let mut fds = [
            PollFd::new(&cb, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        let polled = poll(&mut fds, None);
        lock(&self.results).readers -= 1;
        polled.map_err(Errno::from)?;
        Ok((!fds[0].revents().is_empty(), !fds[1].revents().is_empty()))
    }

    fn chan(&self) -> std::sync::MutexGuard<'_, Channel> {
        lock(&self.req)
    }

    /// Sends one v6 request without waiting for its reply (pipelining:
    /// many may be in flight); returns its sequence number, for
    /// [`Device::try_reply`], [`Device::wait_reply`] or
    /// [`Device::forget_reply`].
    ///
    /// # Errors
    /// ENOTCONN if dlmd went away.
    pub fn send(&self, req: &Request, version: Version) -> Result<u32, Errno> {
        let bytes = req.encode(version);
        self.chan().send(Op::Write, &[&bytes])
    }

    /// The reply to request `seq` if it has come (reading what is queued
    /// on the request socket, without blocking): what the kernel's
    /// `write()` would return.
    ///
    /// # Errors
    /// The lock manager's errno for the request; ENOTCONN if dlmd went
    /// away; EINVAL for a `seq` not outstanding.
    pub fn try_reply(&self, seq: u32) -> Option<Result<u32, Errno>> {
        match self.chan().reply(seq, true, &mut []) {
            Ok(None) => None,
            Ok(Some(ret)) => Some(ret_u32(ret)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Waits for the reply to request `seq`.
    ///
    /// # Errors
    /// As [`Device::try_reply`].
    pub fn wait_reply(&self, seq: u32) -> Result<u32, Errno> {
        ret_u32(self.chan().reply(seq, false, &mut [])?.unwrap_or(0))
    }

    /// Drops the reply to request `seq` (now, or when it comes).
    pub fn forget_reply(&self, seq: u32) {
        self.chan().forget(seq);
    }

    /// Sets a function called whenever a thread receives replies that
    /// another waits for (a blocking call reading past pipelined
    /// requests' replies), so that waiters polling the request socket
    /// look again.
    pub fn set_reply_hook(&self, hook: ReplyHook) {
        self.chan().hook = Some(hook);
    }

    /// The request socket: readable when a reply is queued.
    pub fn request_fd(&self) -> BorrowedFd<'_> {
        self.req_fd.as_fd()
    }

    /// Reads one result from the callback socket into `space`, unchecked
    /// ([`crate::codec::Filled::decode`] checks it). With `nonblocking`,
    /// `Ok(None)` when none is queued.
    ///
    /// # Errors
    /// ENOTCONN if dlmd went away; EPROTO for a result over 104 bytes.
    pub fn read_raw<'s>(&self, nonblocking: bool, space: &'s mut ResultSpace) -> ReadRaw<'s> {
        if let Some(r) = self.begin_read() {
            return raw_result_in(space, &r).map(Some);
        }
        let mut buf = [0u8; RESULT_LVB_LEN];
        let got = recv(self.callbacks.as_fd(), &mut buf, nonblocking);
        let mut order = lock(&self.results);
        order.readers -= 1;
        match got? {
            None => Ok(None),
            Some(n) => {
                order.taken = order.taken.wrapping_add(1);
                raw_result_in(space, &buf[..n]).map(Some)
            }
        }
    }

    /// The pollable callback socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.callbacks.as_fd()
    }
}

/// How long a closing handle waits for dlmd to confirm the owner close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Device {
    /// Closes the handle synchronously, as `close()` of a kernel device
    /// is: the request socket is shut down for writing and dlmd's end of
    /// it is awaited (bounded), so when this returns dlmd has released or
    /// orphaned the owner's locks and another process sees them gone.
    fn drop(&mut self) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let req = self.req.get_mut().unwrap_or_else(|e| e.into_inner());
        let fd = &*req.fd;
        if net::shutdown(fd, net::Shutdown::Write).is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        let mut buf = [0u8; proto::REPLY_LEN];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let timeout = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
            match net::recv(fd, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) | Err(_) => return,
                // A stray reply (none is expected): keep waiting for the end.
                Ok(_) => {}
            }
        }
    }
}
