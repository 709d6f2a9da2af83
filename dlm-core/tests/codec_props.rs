//! Property tests of the v6 codec: random bytes never make a decoder
//! panic, and every well-formed value survives an encode/decode round
//! trip.

use dlm_core::codec::{LockResult, REQUEST_LEN, REQUEST_MAX, RESULT_LEN, Request, Version};
use dlm_core::{LockFlags, LockParams, LsFlags, Mode, Name, RemoveFlags, SbFlags, Status};
use proptest::prelude::*;

fn name(max: usize) -> impl Strategy<Value = Name> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(|b| Name::new(&b).unwrap())
}

fn ls_name() -> impl Strategy<Value = Name> {
    prop::collection::vec(1u8..=255, 1..=64).prop_map(|b| Name::lockspace(&b).unwrap())
}

fn lock_params(with_name: bool) -> impl Strategy<Value = LockParams> {
    (
        (
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        any::<[u8; 32]>(),
        name(if with_name { 64 } else { 0 }),
    )
        .prop_map(
            |(
                (mode, flags, lkid, parent, xid, timeout),
                (castparam, castaddr, bastparam, bastaddr, lksb),
                lvb,
                name,
            )| LockParams {
                mode,
                flags: LockFlags::from_bits_retain(flags),
                lkid,
                parent,
                xid,
                timeout,
                castparam,
                castaddr,
                bastparam,
                bastaddr,
                lksb,
                lvb,
                name,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        lock_params(true).prop_map(Request::Lock),
        lock_params(false).prop_map(Request::Unlock),
        (any::<u32>(), any::<u32>()).prop_map(|(lkid, f)| Request::Deadlock {
            lkid,
            flags: LockFlags::from_bits_retain(f)
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(nodeid, pid)| Request::Purge { nodeid, pid }),
        (any::<u32>(), ls_name()).prop_map(|(f, name)| Request::CreateLockspace {
            flags: LsFlags::from_bits_retain(f),
            name
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(f, minor)| Request::RemoveLockspace {
            flags: RemoveFlags::from_bits_retain(f),
            minor
        }),
    ]
}

fn result() -> impl Strategy<Value = LockResult> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<i32>(),
            any::<u32>(),
            any::<u8>(),
        ),
        prop_oneof![Just(None), (1i64..=5).prop_map(|m| Mode::from_raw(m).ok())],
        any::<Option<[u8; 32]>>(),
    )
        .prop_map(
            |((astaddr, astparam, user_lksb, status, lkid, flags), bast_mode, lvb)| {
                LockResult {
                    astaddr,
                    astparam,
                    user_lksb,
                    status: Status::from_raw(status),
                    lkid,
                    flags: SbFlags::from_bits_retain(flags),
                    bast_mode,
                    // A blocking callback never carries an LVB.
                    lvb: lvb.filter(|_| bast_mode.is_none()),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::decode(&bytes);
    }

    #[test]
    fn request_decoder_survives_mutations(
        req in request(),
        cut in 0usize..=REQUEST_MAX + 16,
        flips in prop::collection::vec((0usize..REQUEST_MAX, any::<u8>()), 0..8),
    ) {
        let mut bytes = req.encode(Version::DEVICE).to_vec();
        for (at, v) in flips {
            if let Some(b) = bytes.get_mut(at) { *b ^= v; }
        }
        bytes.resize(cut, 0xa5);
        if let Ok((_, decoded)) = Request::decode(&bytes) {
            // Whatever decodes must itself encode within the device's limits.
            let again = decoded.encode(Version::DEVICE);
            prop_assert!(again.len() >= REQUEST_LEN && again.len() <= REQUEST_MAX);
        }
    }

    #[test]
    fn requests_round_trip(req in request()) {
        let bytes = req.encode(Version::DEVICE);
        prop_assert_eq!(Request::decode(&bytes), Ok((Version::DEVICE, req)));
    }

    #[test]
    fn result_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = LockResult::decode(&bytes);
    }

    #[test]
    fn results_round_trip(res in result(), room in RESULT_LEN..200usize) {
        let bytes = res.encode(room).unwrap();
        let expect = LockResult { lvb: res.lvb.filter(|_| room >= 104), ..res };
        prop_assert_eq!(LockResult::decode(&bytes), Ok(expect));
    }
}

#[test]
fn decoder_rejects_what_the_device_rejects() {
    use dlm_core::Errno;
    let lock = Request::Lock(LockParams {
        name: Name::new(b"r").unwrap(),
        ..Default::default()
    });
    let good = lock.encode(Version::DEVICE).to_vec();
    // P2: too short, too long.
    assert_eq!(Request::decode(&good[..50]), Err(Errno::EINVAL));
    assert_eq!(
        Request::decode(&[good.clone(), vec![0; 64]].concat()),
        Err(Errno::EINVAL)
    );
    // P3: versions 5.0.0 and 6.1.0 are refused, 6.0.0 and 6.0.7 accepted.
    for (v, ok) in [
        ([5, 0, 0], false),
        ([6, 1, 0], false),
        ([6, 0, 0], true),
        ([6, 0, 7], true),
    ] {
        let version = Version {
            major: v[0],
            minor: v[1],
            patch: v[2],
        };
        let res = Request::decode(&lock.encode(version));
        assert_eq!(res.is_ok(), ok, "{v:?}");
        if !ok {
            assert_eq!(res, Err(Errno::EBADE));
        }
    }
    // P5: QUERY and unknown commands.
    for cmd in [0u8, 3, 8, 255] {
        let mut b = good.clone();
        b[12] = cmd;
        assert_eq!(Request::decode(&b), Err(Errno::EINVAL), "cmd {cmd}");
    }
    // 32-bit requests are not supported.
    let mut b = good.clone();
    b[13] = 0;
    assert_eq!(Request::decode(&b), Err(Errno::EINVAL));
    // A name longer than the bytes written.
    let mut b = good.clone();
    b[17] = 2;
    assert_eq!(Request::decode(&b), Err(Errno::EINVAL));
    // P4: empty and 65-byte lockspace names.
    let mut create = Request::CreateLockspace {
        flags: LsFlags::empty(),
        name: Name::lockspace(b"t").unwrap(),
    }
    .encode(Version::DEVICE)
    .to_vec();
    create[24] = 0;
    assert_eq!(Request::decode(&create), Err(Errno::EINVAL));
    let mut long = create[..24].to_vec();
    long.extend_from_slice(&[b'x'; 65]);
    long.resize(REQUEST_LEN, 0); // 120 bytes: the size limit is not what fails
    assert_eq!(Request::decode(&long), Err(Errno::EINVAL));
}
