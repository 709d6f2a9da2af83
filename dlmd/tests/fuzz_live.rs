//! A structure-aware random input generator against a live dlmd: it
//! builds protocol messages from valid ones (every operation, v6
//! requests with random fields, ATTACHes with real and forged tokens),
//! mutates them (truncation, extension, byte flips, random header fields
//! and roles), closes and reopens connections at random, and sometimes
//! stops reading its replies and results. It runs for `DLMD_FUZZ_SECS`
//! seconds (default 10) from seed `DLMD_FUZZ_SEED` (default: the clock,
//! printed), then checks that dlmd is alive and serves a fresh client
//! correctly.

mod common;

use common::*;
use dlm_core::codec::Version;
use dlm_core::dlmd::proto::{self, Header, Op};
use dlm_core::{LockFlags, LockParams, LsFlags, Mode, Name, RemoveFlags, Request, Status};
use rustix::net::{self, RecvFlags, SendFlags};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: small, seedable, good enough to pick inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const LOCKSPACES: [&str; 4] = ["fz0", "fz1", "fz2", "fz3"];
const RESOURCES: [&[u8]; 6] = [
    b"a",
    b"b",
    b"res",
    b"",
    b"a\0",
    b"\xff\x00long-name-64-bytes-long-name-64-bytes-long-name-64-bytes-long-na",
];

/// One connection of the fuzzer.
struct FuzzConn {
    fd: OwnedFd,
    /// For a request socket: its callback socket.
    cb: Option<OwnedFd>,
    /// Owner id and token from OPEN, for forged and real ATTACHes.
    ids: Option<(u64, u64)>,
}

struct Fuzzer<'p> {
    rng: Rng,
    path: &'p Path,
    conns: Vec<FuzzConn>,
    /// Lock ids seen in replies, to aim requests at real locks.
    lkids: Vec<u32>,
    /// Owner ids and tokens seen in OPEN replies.
    tokens: Vec<(u64, u64)>,
    inputs: u64,
    /// Replies and results read back.
    replies: u64,
    results: u64,
}

impl Fuzzer<'_> {
    fn name(&mut self) -> Name {
        let r = *self.rng.pick(&RESOURCES);
        Name::new(&r[..r.len().min(64)]).unwrap()
    }

    fn lkid(&mut self) -> u32 {
        if !self.lkids.is_empty() && self.rng.chance(80) {
            *self.rng.pick(&self.lkids)
        } else {
            self.rng.next() as u32 & 0x0003_ffff
        }
    }

    fn flags(&mut self) -> LockFlags {
        let common = [
            LockFlags::empty(),
            LockFlags::NOQUEUE,
            LockFlags::CONVERT,
            LockFlags::CONVERT | LockFlags::QUECVT,
            LockFlags::VALBLK,
            LockFlags::PERSISTENT,
            LockFlags::ORPHAN | LockFlags::PERSISTENT,
            LockFlags::CANCEL,
            LockFlags::FORCEUNLOCK,
            LockFlags::IVVALBLK,
            LockFlags::EXPEDITE,
            LockFlags::NOQUEUEBAST | LockFlags::NOQUEUE,
            LockFlags::ALTPR | LockFlags::CONVERT,
            LockFlags::HEADQUE,
        ];
        if self.rng.chance(15) {
            LockFlags::from_bits_retain(self.rng.next() as u32)
        } else {
            *self.rng.pick(&common)
        }
    }

    fn params(&mut self) -> LockParams {
        let mut lvb = [0u8; dlm_core::LVB_LEN];
        lvb[0] = self.rng.next() as u8;
        LockParams {
            mode: if self.rng.chance(90) {
                self.rng.below(6) as u8
            } else {
                self.rng.next() as u8
            },
            flags: self.flags(),
            lkid: if self.rng.chance(50) { 0 } else { self.lkid() },
            parent: if self.rng.chance(5) {
                self.rng.next() as u32
            } else {
                0
            },
            xid: self.rng.next(),
            timeout: self.rng.below(3),
            castparam: self.rng.next(),
            castaddr: if self.rng.chance(95) { CASTADDR } else { 0 },
            bastparam: self.rng.next(),
            bastaddr: if self.rng.chance(50) { BASTADDR } else { 0 },
            lksb: if self.rng.chance(97) {
                lksb_of(self.rng.below(100))
            } else {
                0
            },
            lvb,
            name: self.name(),
        }
    }

    fn request(&mut self) -> Vec<u8> {
        let req = match self.rng.below(10) {
            0..=3 => Request::Lock(self.params()),
            4..=6 => Request::Unlock(self.params()),
            7 => Request::Deadlock {
                lkid: self.lkid(),
                flags: self.flags(),
            },
            8 => Request::Purge {
                nodeid: self.rng.below(3) as u32,
                pid: if self.rng.chance(50) {
                    0
                } else {
                    std::process::id()
                },
            },
            _ => {
                if self.rng.chance(50) {
                    Request::CreateLockspace {
                        flags: if self.rng.chance(50) {
                            LsFlags::NEWEXCL
                        } else {
                            LsFlags::empty()
                        },
                        name: Name::lockspace(self.rng.pick(&LOCKSPACES).as_bytes()).unwrap(),
                    }
                } else {
                    Request::RemoveLockspace {
                        flags: if self.rng.chance(50) {
                            RemoveFlags::FORCEFREE
                        } else {
                            RemoveFlags::empty()
                        },
                        minor: self.rng.below(8) as u32,
                    }
                }
            }
        };
        let mut v = Version::DEVICE;
        if self.rng.chance(3) {
            v.major = self.rng.below(8) as u32;
            v.minor = self.rng.below(2) as u32;
        }
        req.encode(v).to_vec()
    }

    /// A message for `op`, built from valid pieces.
    fn payload(&mut self, op: u32) -> Vec<u8> {
        match Op::from_raw(op) {
            Some(Op::Version) | Some(Op::Reply) | Some(Op::DumpChunk) | Some(Op::Status) | None => {
                Vec::new()
            }
            Some(Op::Control) => {
                let mode = *self
                    .rng
                    .pick(&[0u32, 0o600, 0o666, 0o777, 0o1777, u32::MAX]);
                let mut p = mode.to_ne_bytes().to_vec();
                p.extend_from_slice(&[0; 4]);
                p.extend_from_slice(&self.request());
                p
            }
            Some(Op::Dump) => {
                if self.rng.chance(30) {
                    Vec::new()
                } else {
                    self.rng.pick(&LOCKSPACES).as_bytes().to_vec()
                }
            }
            Some(Op::Open) => self.rng.pick(&LOCKSPACES).as_bytes().to_vec(),
            Some(Op::Attach) => {
                let (id, token) = if !self.tokens.is_empty() && self.rng.chance(60) {
                    *self.rng.pick(&self.tokens)
                } else {
                    (self.rng.below(50), self.rng.next())
                };
                let token = if self.rng.chance(30) {
                    token ^ 1
                } else {
                    token
                };
                let mut p = id.to_ne_bytes().to_vec();
                p.extend_from_slice(&token.to_ne_bytes());
                p
            }
            Some(Op::Write) => self.request(),
        }
    }

    fn message(&mut self, for_request_socket: bool) -> Vec<u8> {
        let op = if self.rng.chance(5) {
            self.rng.next() as u32 % 12
        } else if for_request_socket && self.rng.chance(85) {
            Op::Write as u32
        } else {
            1 + self.rng.below(9) as u32
        };
        let payload = self.payload(op);
        let header = Header {
            op,
            seq: self.rng.next() as u32,
            tid: if self.rng.chance(90) {
                std::process::id()
            } else {
                self.rng.next() as u32
            },
            reserved: if self.rng.chance(95) {
                0
            } else {
                self.rng.next() as u32
            },
        };
        let mut m = proto::message(header, &[&payload]);
        // Mutations.
        match self.rng.below(10) {
            0 => m.truncate(self.rng.below(m.len() as u64 + 1) as usize),
            1 => {
                let extra = self.rng.below(600) as usize;
                m.extend((0..extra).map(|_| self.rng.next() as u8));
            }
            2 => {
                for _ in 0..=self.rng.below(4) {
                    if !m.is_empty() {
                        let i = self.rng.below(m.len() as u64) as usize;
                        m[i] = self.rng.next() as u8;
                    }
                }
            }
            _ => {}
        }
        m
    }

    fn new_conn(&mut self) {
        let Ok(fd) = try_connect(self.path) else {
            return;
        };
        let mut conn = FuzzConn {
            fd,
            cb: None,
            ids: None,
        };
        if self.rng.chance(60) {
            // A proper handle: OPEN, then ATTACH.
            let ls = *self.rng.pick(&LOCKSPACES);
            let open = msg(Op::Open, 1, &[ls.as_bytes()]);
            if net::send(&conn.fd, &open, SendFlags::NOSIGNAL).is_ok() {
                if let Some(reply) = recv_opt(&conn.fd) {
                    if let Ok((ret, rest)) = proto::parse_reply(&reply, 1) {
                        if ret >= 0 && rest.len() == 16 {
                            let id = u64::from_ne_bytes(rest[..8].try_into().unwrap());
                            let token = u64::from_ne_bytes(rest[8..].try_into().unwrap());
                            conn.ids = Some((id, token));
                            self.tokens.push((id, token));
                            if self.rng.chance(90) {
                                if let Ok(cb) = try_connect(self.path) {
                                    let a = msg(
                                        Op::Attach,
                                        2,
                                        &[&id.to_ne_bytes(), &token.to_ne_bytes()],
                                    );
                                    if net::send(&cb, &a, SendFlags::NOSIGNAL).is_ok() {
                                        let _ = recv_opt(&cb);
                                    }
                                    conn.cb = Some(cb);
                                }
                            }
                        }
                    }
                }
            }
        }
        self.inputs += 1;
        if self.conns.len() >= 24 {
            let i = self.rng.below(self.conns.len() as u64) as usize;
            self.conns.swap_remove(i);
        }
        self.conns.push(conn);
    }

    /// Reads what is queued on a connection, learning lock ids.
    fn drain(&mut self, i: usize) {
        let mut buf = [0u8; 40_000];
        for _ in 0..256 {
            match net::recv(&self.conns[i].fd, &mut buf, RecvFlags::DONTWAIT) {
                Ok((0, _)) | Err(_) => break,
                Ok((n, _)) => {
                    self.replies += 1;
                    if let Some(ret) = proto::get_u64(&buf[..n], 16) {
                        let ret = ret as i64;
                        if ret > 0 && ret < 0x1_0000_0000 && self.lkids.len() < 4096 {
                            self.lkids.push(ret as u32);
                        }
                    }
                }
            }
        }
        if let Some(cb) = &self.conns[i].cb {
            for _ in 0..256 {
                match net::recv(cb, &mut buf, RecvFlags::DONTWAIT) {
                    Ok((0, _)) | Err(_) => break,
                    Ok((n, _)) => {
                        // Every result dlmd sends decodes.
                        dlm_core::LockResult::decode(&buf[..n]).expect("a valid result");
                        self.results += 1;
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        if self.conns.is_empty() || self.rng.chance(3) {
            self.new_conn();
            return;
        }
        let i = self.rng.below(self.conns.len() as u64) as usize;
        match self.rng.below(100) {
            0..=1 => {
                // Close the request socket, the callback socket or both.
                let c = self.conns.swap_remove(i);
                if self.rng.chance(50) {
                    if let Some(cb) = c.cb {
                        drop(c.fd);
                        std::thread::yield_now();
                        drop(cb);
                    }
                }
                self.inputs += 1;
            }
            2..=3 => {
                // Junk on a callback socket.
                if let Some(cb) = &self.conns[i].cb {
                    let len = self.rng.below(200) as usize;
                    let junk: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                    let _ = net::send(cb, &junk, SendFlags::NOSIGNAL | SendFlags::DONTWAIT);
                    self.inputs += 1;
                }
            }
            4..=30 => self.drain(i),
            _ => {
                let for_req = self.conns[i].ids.is_some();
                let m = self.message(for_req);
                match net::send(
                    &self.conns[i].fd,
                    &m,
                    SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                ) {
                    Ok(_) => self.inputs += 1,
                    Err(rustix::io::Errno::AGAIN) => self.drain(i),
                    Err(_) => {
                        // Closed by dlmd (a bad first message) or full.
                        self.conns.swap_remove(i);
                    }
                }
            }
        }
    }
}

fn recv_opt(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match net::recv(fd, &mut buf[..], RecvFlags::empty()) {
        Ok((0, _)) | Err(_) => None,
        Ok((n, _)) => {
            buf.truncate(n);
            Some(buf)
        }
    }
}

#[test]
fn fuzz_live_dlmd() {
    let secs: f64 = std::env::var("DLMD_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let seed = std::env::var("DLMD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    println!("dlmd fuzz: seed {seed} (DLMD_FUZZ_SEED to repeat)");
    let mut d = Daemon::start("dlmd");
    let mut ctl = Control::connect(&d.path);
    for ls in LOCKSPACES {
        assert!(ctl.create(ls, LsFlags::empty(), 0) >= 0);
    }
    let path = d.path.clone();
    let mut f = Fuzzer {
        rng: Rng(seed),
        path: &path,
        conns: Vec::new(),
        lkids: Vec::new(),
        tokens: Vec::new(),
        inputs: 0,
        replies: 0,
        results: 0,
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut steps = 0u64;
    while Instant::now() < end {
        f.step();
        steps += 1;
        if steps % 2000 == 0 {
            assert!(d.alive(), "dlmd died (seed {seed})");
            // Keep the lockspaces there for the fuzzer to aim at.
            for ls in LOCKSPACES {
                ctl.create(ls, LsFlags::empty(), 0);
            }
        }
    }
    let inputs = f.inputs;
    let (replies, results, lkids) = (f.replies, f.results, f.lkids.len());
    drop(f);
    let elapsed = start.elapsed().as_secs_f64();
    println!("dlmd fuzz: {inputs} inputs in {elapsed:.1} s");
    println!("dlmd fuzz: read {replies} replies and {results} results; {lkids} lock ids seen");
    assert!(d.alive(), "dlmd died (seed {seed})");

    // A fresh client is served correctly.
    let mut ctl = Control::connect(&d.path);
    let (ret, v) = ctl.version();
    assert_eq!((ret, v), (0, Version::DEVICE.encode().to_vec()));
    let minor = ctl.create("after", LsFlags::NEWEXCL, 0);
    assert!(minor >= 0, "create after fuzzing: {minor}");
    let mut h = Handle::open(&d.path, "after");
    let lkid = h.lock("res", Mode::Ex, LockFlags::empty(), 42);
    assert!(lkid > 0);
    let r = h.try_result().expect("completion before the reply");
    assert_eq!(
        (r.status, i64::from(r.lkid), r.astparam),
        (Status::GRANTED, lkid, 42)
    );
    assert_eq!(h.unlock(lkid as u32, LockFlags::empty(), 43), 0);
    assert_eq!(h.result().status, Status::UNLOCKED);
    drop(h);
    assert_eq!(ctl.remove(minor as u32, RemoveFlags::empty()), 0);
    assert!(ctl.dump(None).is_ok());
    assert!(d.alive());
}
