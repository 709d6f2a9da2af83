//! dlm-core's v6 codec against gcc: every kind of request and result is
//! built once by a C program from the kernel's UAPI headers (the way
//! libdlm fills them: zero the struct, set the fields, write
//! `sizeof(struct dlm_write_request) + namelen` bytes) and once by
//! dlm-core, and the bytes must be identical in both directions: Rust
//! encodes the C bytes, and decodes the C bytes back into the same value.

use dlm_core::codec::{LockResult, Request, Version};
use dlm_core::{LockFlags as F, LockParams, LsFlags, Mode, Name, RemoveFlags, SbFlags, Status};
use std::collections::HashMap;
use std::sync::OnceLock;

const C_SOURCE: &str = r#"
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <linux/dlm_device.h>

static void hex(const char *what, const void *p, size_t n)
{
	const unsigned char *b = p;
	printf("%s ", what);
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

static unsigned char buf[sizeof(struct dlm_write_request) + 64];
static struct dlm_write_request *req = (struct dlm_write_request *)buf;

static void start(int cmd)
{
	memset(buf, 0, sizeof(buf));
	req->version[0] = 6; req->version[1] = 0; req->version[2] = 2;
	req->cmd = cmd;
	req->is64bit = sizeof(long) == sizeof(long long);
}

static void lvb_pattern(char *lvb, int seed)
{
	for (int i = 0; i < DLM_USER_LVB_LEN; i++)
		lvb[i] = (char)(seed + 7 * i);
}

static void lock(const char *what, int cmd, int mode, uint32_t flags, uint32_t lkid,
		 int seed, const char *name, size_t namelen)
{
	struct dlm_lock_params *p = &req->i.lock;
	start(cmd);
	p->mode = mode;
	p->flags = flags;
	p->lkid = lkid;
	p->parent = seed ? 0x99 : 0;
	p->xid = seed ? 0x1122334455667788ULL : 0;
	p->timeout = seed ? 0x3000 : 0;
	p->castparam = (void *)(uintptr_t)(seed ? 0x2222 + seed : 0);
	p->castaddr = (void *)(uintptr_t)(seed ? 0x7fff00001111ULL : 0);
	p->bastparam = (void *)(uintptr_t)(seed ? 0x4444 : 0);
	p->bastaddr = (void *)(uintptr_t)(seed ? 0x7fff00003333ULL : 0);
	p->lksb = (struct dlm_lksb *)(uintptr_t)(seed ? 0x7ffe00005555ULL : 0);
	if (seed)
		lvb_pattern(p->lvb, seed);
	p->namelen = namelen;
	memcpy(p->name, name, namelen);
	hex(what, buf, sizeof(struct dlm_write_request) + namelen);
}

static void lspace(const char *what, int cmd, uint32_t flags, uint32_t minor, const char *name)
{
	start(cmd);
	req->i.lspace.flags = flags;
	req->i.lspace.minor = minor;
	strcpy(req->i.lspace.name, name);
	hex(what, buf, sizeof(struct dlm_write_request) + strlen(name));
}

static void result(const char *what, int status, int flags, int bast_mode, int with_lvb)
{
	unsigned char out[sizeof(struct dlm_lock_result) + DLM_USER_LVB_LEN];
	struct dlm_lock_result *r = (struct dlm_lock_result *)out;
	size_t len = sizeof(*r);
	memset(out, 0, sizeof(out));
	r->version[0] = 6; r->version[1] = 0; r->version[2] = 2;
	r->user_astaddr = (void *)(uintptr_t)0x7fff00001111ULL;
	r->user_astparam = (void *)(uintptr_t)0x2223;
	r->user_lksb = (struct dlm_lksb *)(uintptr_t)0x7ffe00005555ULL;
	r->lksb.sb_status = status;
	r->lksb.sb_lkid = 42;
	r->lksb.sb_flags = flags;
	r->bast_mode = bast_mode;
	if (with_lvb) {
		r->lvb_offset = sizeof(*r);
		lvb_pattern((char *)out + sizeof(*r), 5);
		len += DLM_USER_LVB_LEN;
	}
	r->length = len;
	hex(what, out, len);
}

int main(void)
{
	char name64[64];
	memset(name64, 'n', sizeof(name64));
	lock("lock_new", DLM_USER_LOCK, DLM_LOCK_PR, DLM_LKF_VALBLK | DLM_LKF_PERSISTENT, 0, 1,
	     "resource-1", 10);
	lock("lock_name64", DLM_USER_LOCK, DLM_LOCK_NL, DLM_LKF_EXPEDITE, 0, 2, name64, 64);
	lock("lock_binary_name", DLM_USER_LOCK, DLM_LOCK_CW, 0, 0, 3, "a\0b\xff", 4);
	lock("lock_empty_name", DLM_USER_LOCK, DLM_LOCK_EX, DLM_LKF_NOQUEUE, 0, 4, "", 0);
	lock("convert", DLM_USER_LOCK, DLM_LOCK_EX,
	     DLM_LKF_CONVERT | DLM_LKF_NOQUEUE | DLM_LKF_VALBLK | DLM_LKF_PERSISTENT, 7, 5, "", 0);
	lock("adopt", DLM_USER_LOCK, DLM_LOCK_EX, DLM_LKF_PERSISTENT | DLM_LKF_ORPHAN, 0, 6,
	     "0123456789abcdef0123456789abcdef012345", 38);
	lock("unknown_flag_bits", DLM_USER_LOCK, DLM_LOCK_PR, 0x01000000 | DLM_LKF_TIMEOUT, 0, 7,
	     "r", 1);
	lock("unlock", DLM_USER_UNLOCK, 0, 0, 9, 8, "", 0);
	lock("cancel", DLM_USER_UNLOCK, 0, DLM_LKF_CANCEL, 10, 9, "", 0);
	lock("forceunlock", DLM_USER_UNLOCK, 0, DLM_LKF_FORCEUNLOCK | DLM_LKF_VALBLK, 11, 10, "", 0);
	lock("deadlock", DLM_USER_DEADLOCK, 0, 0, 12, 0, "", 0);
	start(DLM_USER_PURGE);
	req->i.purge.nodeid = 3;
	req->i.purge.pid = 4321;
	hex("purge", buf, sizeof(struct dlm_write_request));
	lspace("create", DLM_USER_CREATE_LOCKSPACE, DLM_LSFL_NEWEXCL, 0, "lvm_global");
	lspace("remove", DLM_USER_REMOVE_LOCKSPACE, DLM_USER_LSFLG_FORCEFREE, 57, "");
	result("result_unlock", -DLM_EUNLOCK, 0, 0, 0);
	result("result_granted_lvb", 0, DLM_SBF_VALNOTVALID | DLM_SBF_ALTMODE, 0, 1);
	result("result_again", -11, 0, 0, 0);
	result("result_bast", 0, 0, DLM_LOCK_EX, 0);
	return 0;
}
"#;

fn lvb_pattern(seed: u8) -> [u8; 32] {
    core::array::from_fn(|i| seed.wrapping_add(7 * i as u8))
}

/// The Rust twin of the C program's `lock()`.
fn params(mode: Mode, flags: F, lkid: u32, seed: u8, name: &[u8]) -> LockParams {
    let on = |v: u64| if seed != 0 { v } else { 0 };
    LockParams {
        mode: mode.raw(),
        flags,
        lkid,
        parent: on(0x99) as u32,
        xid: on(0x1122_3344_5566_7788),
        timeout: on(0x3000),
        castparam: on(0x2222 + u64::from(seed)),
        castaddr: on(0x7fff_0000_1111),
        bastparam: on(0x4444),
        bastaddr: on(0x7fff_0000_3333),
        lksb: on(0x7ffe_0000_5555),
        lvb: if seed != 0 {
            lvb_pattern(seed)
        } else {
            [0; 32]
        },
        name: Name::new(name).unwrap(),
    }
}

fn result(status: i32, flags: SbFlags, bast_mode: Option<Mode>, lvb: bool) -> LockResult {
    LockResult {
        astaddr: 0x7fff_0000_1111,
        astparam: 0x2223,
        user_lksb: 0x7ffe_0000_5555,
        status: Status::from_kernel(status),
        lkid: 42,
        flags,
        bast_mode,
        lvb: lvb.then(|| lvb_pattern(5)),
    }
}

/// The C program's output, built and run once for all tests of this file.
fn c_bytes() -> &'static HashMap<String, Vec<u8>> {
    static BYTES: OnceLock<HashMap<String, Vec<u8>>> = OnceLock::new();
    BYTES.get_or_init(|| {
        dlm_tests::run_c("codec_vs_c", C_SOURCE)
            .lines()
            .map(|line| {
                let (name, hex) = line.split_once(' ').expect("name and hex");
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (name.to_owned(), bytes)
            })
            .collect()
    })
}

#[test]
fn requests_match_c_byte_for_byte() {
    let c = c_bytes();
    let name64 = [b'n'; 64];
    let cases = [
        (
            "lock_new",
            Request::Lock(params(
                Mode::Pr,
                F::VALBLK | F::PERSISTENT,
                0,
                1,
                b"resource-1",
            )),
        ),
        (
            "lock_name64",
            Request::Lock(params(Mode::Nl, F::EXPEDITE, 0, 2, &name64)),
        ),
        (
            "lock_binary_name",
            Request::Lock(params(Mode::Cw, F::empty(), 0, 3, b"a\0b\xff")),
        ),
        (
            "lock_empty_name",
            Request::Lock(params(Mode::Ex, F::NOQUEUE, 0, 4, b"")),
        ),
        (
            "convert",
            Request::Lock(params(
                Mode::Ex,
                F::CONVERT | F::NOQUEUE | F::VALBLK | F::PERSISTENT,
                7,
                5,
                b"",
            )),
        ),
        (
            "adopt",
            Request::Lock(params(
                Mode::Ex,
                F::PERSISTENT | F::ORPHAN,
                0,
                6,
                b"0123456789abcdef0123456789abcdef012345",
            )),
        ),
        (
            "unknown_flag_bits",
            Request::Lock(params(
                Mode::Pr,
                F::from_bits_retain(0x0100_0000) | F::TIMEOUT,
                0,
                7,
                b"r",
            )),
        ),
        (
            "unlock",
            Request::Unlock(params(Mode::Nl, F::empty(), 9, 8, b"")),
        ),
        (
            "cancel",
            Request::Unlock(params(Mode::Nl, F::CANCEL, 10, 9, b"")),
        ),
        (
            "forceunlock",
            Request::Unlock(params(Mode::Nl, F::FORCEUNLOCK | F::VALBLK, 11, 10, b"")),
        ),
        (
            "deadlock",
            Request::Deadlock {
                lkid: 12,
                flags: F::empty(),
            },
        ),
        (
            "purge",
            Request::Purge {
                nodeid: 3,
                pid: 4321,
            },
        ),
        (
            "create",
            Request::CreateLockspace {
                flags: LsFlags::NEWEXCL,
                name: Name::lockspace(b"lvm_global").unwrap(),
            },
        ),
        (
            "remove",
            Request::RemoveLockspace {
                flags: RemoveFlags::FORCEFREE,
                minor: 57,
            },
        ),
    ];
    for (what, request) in cases {
        let expected = &c[what];
        assert_eq!(
            &*request.encode(Version::DEVICE),
            &expected[..],
            "encoding {what}"
        );
        assert_eq!(
            Request::decode(expected),
            Ok((Version::DEVICE, request)),
            "decoding {what}"
        );
    }
    assert_eq!(c["lock_new"].len(), 130);
    assert_eq!(c["convert"].len(), 120);
    assert_eq!(c["create"].len(), 130);
}

#[test]
fn results_match_c_byte_for_byte() {
    let c = c_bytes();
    let cases = [
        (
            "result_unlock",
            result(-0x10002, SbFlags::empty(), None, false),
        ),
        (
            "result_granted_lvb",
            result(0, SbFlags::VALNOTVALID | SbFlags::ALTMODE, None, true),
        ),
        ("result_again", result(-11, SbFlags::empty(), None, false)),
        (
            "result_bast",
            result(0, SbFlags::empty(), Some(Mode::Ex), false),
        ),
    ];
    for (what, res) in cases {
        let expected = &c[what];
        assert_eq!(&*res.encode(104).unwrap(), &expected[..], "encoding {what}");
        assert_eq!(LockResult::decode(expected), Ok(res), "decoding {what}");
    }
    let unlocked = LockResult::decode(&c["result_unlock"]).unwrap();
    assert_eq!(unlocked.status, Status::UNLOCKED);
    assert!(!unlocked.is_bast());
    assert_eq!(
        LockResult::decode(&c["result_bast"]).unwrap().bast_mode,
        Some(Mode::Ex)
    );
}
