use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::*;
use crate::crypto::key::{KEY_LEN, NONCE_LEN, StreamKey};
use crate::wire::WireError;
use crate::wire::data::{DataPacket, HEADER_LEN, KeyEpoch, OVERHEAD, PacketType, TAG_LEN};

const BACKENDS: [Backend; 2] = [Backend::AwsLc, Backend::RustCrypto];

fn key(seed: u8) -> StreamKey {
    StreamKey {
        key: core::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8)),
        nonce_base: core::array::from_fn(|i| seed ^ (0xa0 + i as u8)),
    }
}

/// A batch of packets whose payload i is `len_i` bytes of a pattern derived from i.
fn batch(lens: &[usize]) -> Vec<Vec<u8>> {
    lens.iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut p = vec![0u8; len + OVERHEAD];
            for (j, b) in p[HEADER_LEN..HEADER_LEN + len].iter_mut().enumerate() {
                *b = (i * 7 + j) as u8;
            }
            p
        })
        .collect()
}

fn plaintext(packet: &[u8]) -> &[u8] {
    &packet[HEADER_LEN..packet.len() - TAG_LEN]
}

fn sealer(k: &StreamKey, lane: u8, epoch: KeyEpoch, backend: Backend, now: Instant) -> Sealer {
    Sealer::new(k, lane, epoch, backend, now).unwrap()
}

fn opener(k: &StreamKey, epoch: KeyEpoch, backend: Backend, now: Instant) -> Opener {
    let mut o = Opener::new(backend);
    o.install(epoch, k, now).unwrap();
    o
}

fn open_all(o: &mut Opener, now: Instant, packets: &mut [Vec<u8>]) -> Vec<Verdict> {
    let mut v = vec![Verdict::Pending; packets.len()];
    o.open_batch(now, packets, &mut v);
    v
}

#[test]
fn round_trip_each_backend() {
    let now = Instant::now();
    let k = key(1);
    for backend in BACKENDS {
        let lens = [0, 1, 15, 16, 17, 64, 1420, 9000];
        let original = batch(&lens);
        let mut packets = original.clone();
        let mut s = sealer(&k, 2, KeyEpoch::Even, backend, now);
        let sealed = s
            .seal_batch(now, PacketType::Data, 77, &mut packets)
            .unwrap();
        assert_eq!(sealed.packets, lens.len());
        assert_eq!(sealed.first_counter, 0);
        assert!(!sealed.rekey_due);
        assert_eq!(s.next_counter(), lens.len() as u64);
        for (i, (p, o)) in packets.iter().zip(&original).enumerate() {
            let view = DataPacket::new_checked(&p[..]).unwrap();
            assert_eq!(view.counter(), i as u64);
            assert_eq!(view.lane(), 2);
            assert_eq!(view.label(), 77);
            if lens[i] > 0 {
                assert_ne!(
                    plaintext(p),
                    plaintext(o),
                    "{backend:?}: payload {i} not encrypted"
                );
            }
        }

        let mut o = opener(&k, KeyEpoch::Even, backend, now);
        let verdicts = open_all(&mut o, now, &mut packets);
        for (i, v) in verdicts.iter().enumerate() {
            let Verdict::Open(opened) = v else {
                panic!("{backend:?}: packet {i}: {v:?}")
            };
            assert_eq!(opened.kind, PacketType::Data);
            assert_eq!(opened.counter, i as u64);
            assert_eq!(opened.len, lens[i]);
            assert_eq!(&packets[i][opened.payload_range()], plaintext(&original[i]));
        }
        assert_eq!(o.stats().opened, lens.len() as u64);
        assert_eq!(o.stats().opened_bytes, lens.iter().sum::<usize>() as u64);
        assert_eq!(o.stats().dropped(), 0);
    }
}

#[test]
fn backends_interoperate() {
    let now = Instant::now();
    let k = key(2);
    for (seal_with, open_with) in [
        (Backend::AwsLc, Backend::RustCrypto),
        (Backend::RustCrypto, Backend::AwsLc),
    ] {
        let original = batch(&[1420, 3, 500]);
        let mut packets = original.clone();
        sealer(&k, 0, KeyEpoch::Odd, seal_with, now)
            .seal_batch(now, PacketType::Data, 1, &mut packets)
            .unwrap();
        let mut o = opener(&k, KeyEpoch::Odd, open_with, now);
        assert_eq!(open_all(&mut o, now, &mut packets).len(), 3);
        assert_eq!(o.stats().opened, 3, "{seal_with:?} -> {open_with:?}");
        for (p, orig) in packets.iter().zip(&original) {
            assert_eq!(plaintext(p), plaintext(orig));
        }
    }
}

#[test]
fn matches_plain_aes_gcm_with_documented_nonce() {
    // The nonce, AAD and tag placement as the module documents them, checked against a
    // direct aws-lc-rs call with no Conflux code in between.
    let now = Instant::now();
    let k = key(3);
    for backend in BACKENDS {
        let mut s = sealer(&k, 5, KeyEpoch::Even, backend, now);
        let mut skip = batch(&[0; 41]);
        s.seal_batch(now, PacketType::Data, 9, &mut skip).unwrap();
        let mut packets = batch(&[100]);
        s.seal_batch(now, PacketType::Data, 9, &mut packets)
            .unwrap();
        let p = &packets[0];

        let mut nonce = k.nonce_base;
        nonce[3] ^= 5;
        for (n, c) in nonce[4..].iter_mut().zip(41u64.to_be_bytes()) {
            *n ^= c;
        }
        let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k.key).unwrap());
        let mut expect = batch(&[100]).remove(0)[HEADER_LEN..HEADER_LEN + 100].to_vec();
        let tag = raw
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&p[..12]),
                &mut expect,
            )
            .unwrap();
        assert_eq!(plaintext(p), &expect[..], "{backend:?}");
        assert_eq!(&p[p.len() - TAG_LEN..], tag.as_ref(), "{backend:?}");
    }
}

#[test]
fn tampering_is_rejected() {
    let now = Instant::now();
    let k = key(4);
    for backend in BACKENDS {
        let mut s = sealer(&k, 1, KeyEpoch::Even, backend, now);
        let mut good = batch(&[64]);
        s.seal_batch(now, PacketType::Data, 3, &mut good).unwrap();
        let len = good[0].len();
        let cases = [
            (0, 0x01, DropReason::Malformed(WireError::Version(0))),
            (1, 0x03, DropReason::BadTag),      // data -> probe
            (2, 0x01, DropReason::BadTag),      // epoch bit: the other slot holds a key too
            (3, 0x01, DropReason::BadTag),      // lane 1 -> 0
            (4, 0x80, DropReason::BeyondLimit), // counter pushed past the limit
            (10, 0x01, DropReason::BadTag),
            (11, 0x01, DropReason::BadTag),
            (HEADER_LEN + 10, 0x01, DropReason::BadTag),
            (len - TAG_LEN - 1, 0x01, DropReason::BadTag),
            (len - TAG_LEN, 0x01, DropReason::BadTag),
            (len - 1, 0x80, DropReason::BadTag),
        ];
        for (pos, flip, reason) in cases {
            let mut o = opener(&k, KeyEpoch::Even, backend, now);
            o.install(KeyEpoch::Odd, &k, now).unwrap();
            let mut bad = good.clone();
            bad[0][pos] ^= flip;
            let v = open_all(&mut o, now, &mut bad);
            assert_eq!(v[0], Verdict::Drop(reason), "{backend:?} byte {pos}");
            assert_eq!(o.stats().dropped(), 1);
            assert_eq!(o.stats().opened, 0);
            // A forgery must not burn the counter: the genuine packet still opens.
            let mut genuine = good.clone();
            assert!(matches!(
                open_all(&mut o, now, &mut genuine)[0],
                Verdict::Open(_)
            ));
        }
    }
}

#[test]
fn relabelling_keeps_the_tag_valid() {
    let now = Instant::now();
    let k = key(5);
    for backend in BACKENDS {
        let mut packets = batch(&[200, 200]);
        sealer(&k, 0, KeyEpoch::Even, backend, now)
            .seal_batch(now, PacketType::Data, 0x1111, &mut packets)
            .unwrap();
        DataPacket::new_unchecked(&mut packets[1][..]).set_label(0x2222);
        let mut o = opener(&k, KeyEpoch::Even, backend, now);
        let v = open_all(&mut o, now, &mut packets);
        let labels: Vec<_> = v
            .iter()
            .map(|v| match v {
                Verdict::Open(o) => o.label,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(labels, [0x1111, 0x2222]);
    }
}

#[test]
fn epochs_select_keys() {
    let now = Instant::now();
    let (old, new) = (key(6), key(7));
    let mut o = Opener::new(Backend::AwsLc);
    o.install(KeyEpoch::Even, &old, now).unwrap();

    let mut under_new = batch(&[10]);
    sealer(&new, 0, KeyEpoch::Odd, Backend::AwsLc, now)
        .seal_batch(now, PacketType::Data, 0, &mut under_new)
        .unwrap();
    assert_eq!(
        open_all(&mut o, now, &mut under_new.clone())[0],
        Verdict::Drop(DropReason::NoKey)
    );

    // During the overlap both epochs open.
    o.install(KeyEpoch::Odd, &new, now).unwrap();
    let mut old_sealer = sealer(&old, 0, KeyEpoch::Even, Backend::AwsLc, now);
    let mut under_old = batch(&[10]);
    old_sealer
        .seal_batch(now, PacketType::Data, 0, &mut under_old)
        .unwrap();
    let mut both = vec![under_old[0].clone(), under_new[0].clone()];
    let v = open_all(&mut o, now, &mut both);
    assert!(v.iter().all(|v| matches!(v, Verdict::Open(_))), "{v:?}");

    // A packet claiming the wrong epoch (with a counter fresh there) meets the wrong key.
    let mut lying = batch(&[10]);
    old_sealer
        .seal_batch(now, PacketType::Data, 0, &mut lying)
        .unwrap();
    lying[0][2] ^= 1;
    assert_eq!(
        open_all(&mut o, now, &mut lying)[0],
        Verdict::Drop(DropReason::BadTag)
    );

    o.retire(KeyEpoch::Even);
    assert!(!o.has_key(KeyEpoch::Even));
    let mut late = under_old.clone();
    assert_eq!(
        open_all(&mut o, now, &mut late)[0],
        Verdict::Drop(DropReason::NoKey)
    );
}

#[test]
fn lanes_never_reuse_a_nonce() {
    let now = Instant::now();
    let k = key(8);
    let mut seen = HashSet::new();
    for lane in 0..MAX_LANES as u8 {
        let mut s = sealer(&k, lane, KeyEpoch::Even, Backend::AwsLc, now);
        for _ in 0..4 {
            let mut packets = batch(&[0; 16]);
            s.seal_batch(now, PacketType::Data, 0, &mut packets)
                .unwrap();
            for p in &packets {
                let view = DataPacket::new_checked(&p[..]).unwrap();
                let nonce = backend::packet_nonce(&k.nonce_base, view.lane(), view.counter());
                assert!(seen.insert(nonce), "lane {lane} reused a nonce");
            }
        }
    }
    assert_eq!(seen.len(), MAX_LANES * 64);

    // Same counter, two lanes: both open on one receiver (distinct replay windows).
    let mut a = batch(&[5]);
    let mut b = batch(&[5]);
    sealer(&k, 0, KeyEpoch::Even, Backend::AwsLc, now)
        .seal_batch(now, PacketType::Data, 0, &mut a)
        .unwrap();
    sealer(&k, 1, KeyEpoch::Even, Backend::AwsLc, now)
        .seal_batch(now, PacketType::Data, 0, &mut b)
        .unwrap();
    let mut o = opener(&k, KeyEpoch::Even, Backend::AwsLc, now);
    let mut both = vec![a.remove(0), b.remove(0)];
    let v = open_all(&mut o, now, &mut both);
    assert!(v.iter().all(|v| matches!(v, Verdict::Open(_))), "{v:?}");
}

#[test]
fn mixed_batch_gives_per_packet_verdicts() {
    let now = Instant::now();
    let k = key(9);
    for backend in BACKENDS {
        let mut s = sealer(&k, 0, KeyEpoch::Even, backend, now);
        let mut sealed = batch(&[100; 6]);
        s.seal_batch(now, PacketType::Data, 0, &mut sealed).unwrap();
        let mut probe = batch(&[0]);
        s.seal_batch(now, PacketType::Probe, 0, &mut probe).unwrap();

        let mut bad_tag = sealed[1].clone();
        *bad_tag.last_mut().unwrap() ^= 1;
        let mut bad_version = sealed[2].clone();
        bad_version[0] = 9;
        let mut bad_lane = sealed[3].clone();
        bad_lane[3] = MAX_LANES as u8;
        let mut packets = vec![
            sealed[0].clone(),
            bad_tag,
            sealed[0].clone(), // duplicate of the first, same batch
            vec![1, 2, 3],     // truncated
            bad_version,
            bad_lane,
            sealed[4].clone(),
            probe[0].clone(),
            sealed[5].clone(),
            sealed[1].clone(), // the genuine packet whose forgery failed above
        ];
        let mut o = opener(&k, KeyEpoch::Even, backend, now);
        let mut verdicts = [Verdict::Pending; 12];
        let opened = o.open_batch(now, &mut packets, &mut verdicts);
        let summary: Vec<Result<(PacketType, u64), DropReason>> = verdicts[..packets.len()]
            .iter()
            .map(|v| match *v {
                Verdict::Open(o) => Ok((o.kind, o.counter)),
                Verdict::Drop(r) => Err(r),
                Verdict::Pending => panic!("unprocessed"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                Ok((PacketType::Data, 0)),
                Err(DropReason::BadTag),
                Err(DropReason::Duplicate),
                Err(DropReason::Malformed(WireError::Truncated {
                    need: 32,
                    have: 3
                })),
                Err(DropReason::Malformed(WireError::Version(9))),
                Err(DropReason::Lane),
                Ok((PacketType::Data, 4)),
                Ok((PacketType::Probe, 6)),
                Ok((PacketType::Data, 5)),
                Ok((PacketType::Data, 1)),
            ],
            "{backend:?}"
        );
        assert_eq!(opened, 5);
        assert_eq!(
            verdicts[10],
            Verdict::Pending,
            "slots past the batch untouched"
        );
        let st = o.stats();
        assert_eq!(
            (
                st.opened,
                st.bad_tag,
                st.duplicate,
                st.malformed,
                st.bad_lane
            ),
            (5, 1, 1, 2, 1)
        );
        assert_eq!(st.dropped(), 5);
    }
}

#[test]
fn stale_and_replayed_batches_are_dropped() {
    let now = Instant::now();
    let k = key(10);
    let mut s = sealer(&k, 0, KeyEpoch::Even, Backend::AwsLc, now);
    let mut first = batch(&[8]);
    s.seal_batch(now, PacketType::Data, 0, &mut first).unwrap();
    let mut many = batch(&[8; 64]);
    let mut o = opener(&k, KeyEpoch::Even, Backend::AwsLc, now);
    for _ in 0..(crate::crypto::replay::WINDOW / 64 + 1) {
        s.seal_batch(now, PacketType::Data, 0, &mut many).unwrap();
        let mut copy = many.clone();
        assert_eq!(
            o.open_batch(now, &mut copy, &mut [Verdict::Pending; 64]),
            64
        );
    }
    assert_eq!(
        open_all(&mut o, now, &mut first)[0],
        Verdict::Drop(DropReason::TooOld)
    );
    let mut again = many.clone();
    assert_eq!(
        o.open_batch(now, &mut again, &mut [Verdict::Pending; 64]),
        0
    );
    assert_eq!(o.stats().duplicate, 64);
}

#[test]
fn counters_exhausted_is_an_error() {
    let now = Instant::now();
    let k = key(11);
    let mut s = sealer(&k, 0, KeyEpoch::Even, Backend::AwsLc, now);
    s.next_counter_for_tests(REJECT_AFTER_MESSAGES - 3);
    assert!(s.rekey_due(now));
    let mut four = batch(&[1; 4]);
    let before = four.clone();
    assert_eq!(
        s.seal_batch(now, PacketType::Data, 0, &mut four),
        Err(SealError::CountersExhausted)
    );
    assert_eq!(four, before, "a refused batch is left untouched");
    let mut three = batch(&[1; 3]);
    let sealed = s.seal_batch(now, PacketType::Data, 0, &mut three).unwrap();
    assert_eq!(sealed.first_counter, REJECT_AFTER_MESSAGES - 3);
    assert!(sealed.rekey_due);
    assert_eq!(
        s.seal_batch(now, PacketType::Data, 0, &mut batch(&[1])),
        Err(SealError::CountersExhausted)
    );
    // An empty batch costs no counter and still succeeds.
    assert!(
        s.seal_batch(now, PacketType::Data, 0, &mut batch(&[]))
            .is_ok()
    );

    // The receiver refuses a counter at the limit even with a valid-looking header.
    let mut o = opener(&k, KeyEpoch::Even, Backend::AwsLc, now);
    let mut past = three[2..].to_vec();
    DataPacket::new_unchecked(&mut past[0][..]).set_counter(REJECT_AFTER_MESSAGES);
    assert_eq!(
        open_all(&mut o, now, &mut past)[0],
        Verdict::Drop(DropReason::BeyondLimit)
    );
    assert_eq!(o.open_batch(now, &mut three, &mut [Verdict::Pending; 3]), 3);
}

#[test]
fn rekey_after_messages_is_signalled() {
    let now = Instant::now();
    let mut s = sealer(&key(12), 0, KeyEpoch::Even, Backend::AwsLc, now);
    s.next_counter_for_tests(REKEY_AFTER_MESSAGES - 2);
    let mut two = batch(&[1; 2]);
    assert!(
        s.seal_batch(now, PacketType::Data, 0, &mut two)
            .unwrap()
            .rekey_due
    );
    let mut fresh = sealer(&key(12), 0, KeyEpoch::Even, Backend::AwsLc, now);
    let mut one = batch(&[1]);
    assert!(
        !fresh
            .seal_batch(now, PacketType::Data, 0, &mut one)
            .unwrap()
            .rekey_due
    );
}

#[test]
fn key_lifetime_is_enforced_with_the_given_clock() {
    let t0 = Instant::now();
    let k = key(13);
    let mut s = sealer(&k, 0, KeyEpoch::Even, Backend::AwsLc, t0);
    let mut o = opener(&k, KeyEpoch::Even, Backend::AwsLc, t0);

    let at_rekey = t0 + REKEY_AFTER_TIME;
    assert!(!s.rekey_due(at_rekey - Duration::from_millis(1)));
    let mut p = batch(&[10]);
    assert!(
        s.seal_batch(at_rekey, PacketType::Data, 0, &mut p)
            .unwrap()
            .rekey_due
    );

    let dead = t0 + REJECT_AFTER_TIME;
    assert!(!o.is_expired(dead - Duration::from_millis(1)));
    assert!(o.is_expired(dead));
    assert!(s.is_expired(dead));
    assert_eq!(
        s.seal_batch(dead, PacketType::Data, 0, &mut batch(&[10])),
        Err(SealError::KeyExpired)
    );
    assert_eq!(
        open_all(&mut o, dead, &mut p.clone())[0],
        Verdict::Drop(DropReason::KeyExpired)
    );
    assert_eq!(o.stats().key_expired, 1);
    assert!(matches!(
        open_all(&mut o, dead - Duration::from_millis(1), &mut p)[0],
        Verdict::Open(_)
    ));
}

#[test]
fn refuses_bad_arguments() {
    let now = Instant::now();
    let k = key(14);
    assert_eq!(
        Sealer::new(&k, MAX_LANES as u8, KeyEpoch::Even, Backend::AwsLc, now).map(|_| ()),
        Err(SealError::Lane(MAX_LANES as u8))
    );
    let mut s = sealer(&k, 0, KeyEpoch::Even, Backend::RustCrypto, now);
    let mut packets = vec![vec![0u8; OVERHEAD], vec![0u8; OVERHEAD - 1]];
    assert_eq!(
        s.seal_batch(now, PacketType::Data, 0, &mut packets),
        Err(SealError::BufferTooShort {
            index: 1,
            len: OVERHEAD - 1
        })
    );
    assert_eq!(packets[0], vec![0u8; OVERHEAD], "nothing written");
    assert_eq!(s.next_counter(), 0, "no counter spent");
    assert_eq!(
        s.seal_batch(now, PacketType::Unknown(7), 0, &mut batch(&[1])),
        Err(SealError::UnknownType)
    );
}

#[test]
fn debug_shows_no_key_material() {
    let now = Instant::now();
    let k = StreamKey {
        key: [0x5a; KEY_LEN],
        nonce_base: [0xc3; NONCE_LEN],
    };
    for backend in BACKENDS {
        let s = format!("{:?}", sealer(&k, 0, KeyEpoch::Even, backend, now));
        let o = format!("{:?}", opener(&k, KeyEpoch::Even, backend, now));
        for text in [s, o] {
            let lower = text.to_lowercase();
            assert!(
                !lower.contains("5a")
                    && !lower.contains("90")
                    && !lower.contains("c3")
                    && !lower.contains("195"),
                "{text}"
            );
        }
    }
}
