//! Unit tests of the tables and the three packet paths with in-memory packets.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use conflux_shared::crypto::aead::Verdict;
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;
use conflux_shared::wire::data::{HEADER_LEN, KeyEpoch, OVERHEAD, TAG_LEN};
use conflux_shared::wire::record::{
    AllowedPrefixBody, CounterId, Direction, InstallRelayBody, InstallRouteBody, InstallStreamBody,
    InstallTetherBody, IpPrefix, NextHop, PrefixOp, RecordRef, RemoveStreamBody, RingRecord,
};

use super::*;
use crate::counters::{Counters, monotonic_ns};
use crate::egress::{EgressVerdict, egress};
use crate::ingress::{IngressVerdict, ingress};
use crate::packet::tests::udp4;
use crate::relay::RelayLimiter;

pub(crate) const A: [u8; 4] = [100, 64, 0, 1];
pub(crate) const B: [u8; 4] = [100, 64, 0, 2];

pub(crate) fn key(seed: u8) -> StreamKey {
    StreamKey {
        key: [seed; 32],
        nonce_base: [seed ^ 0x5a; 12],
    }
}

pub(crate) fn apply(t: &mut Tables, body: RingRecord) -> Result<(), ApplyError> {
    let now = Instant::now();
    t.apply(&body.decode().unwrap(), now, monotonic_ns())
}

fn rec<Bd: conflux_shared::wire::record::RecordBody>(b: &Bd) -> RingRecord {
    RingRecord::encode(b).unwrap()
}

pub(crate) fn stream_record(
    id: StreamId,
    dir: Direction,
    epoch: KeyEpoch,
    label: u32,
    peer: [u8; 4],
    k: &StreamKey,
    life: Duration,
) -> RingRecord {
    rec(&InstallStreamBody::new(
        id,
        dir,
        0,
        epoch,
        label,
        monotonic_ns() + life.as_nanos() as u64,
        IpAddr::from(peer),
        k,
    ))
}

/// A: egress stream to B over tether 1 with B's label 7. B: ingress stream label 7.
pub(crate) fn pair(id: StreamId) -> (Tables, Tables) {
    let mut a = Tables::default();
    let k = key(1);
    apply(
        &mut a,
        rec(&InstallTetherBody::new(
            1,
            "192.0.2.2:51820".parse().unwrap(),
        )),
    )
    .unwrap();
    apply(
        &mut a,
        stream_record(
            id,
            Direction::Egress,
            KeyEpoch::Even,
            7,
            B,
            &k,
            Duration::from_secs(60),
        ),
    )
    .unwrap();
    let route =
        InstallRouteBody::forward(IpPrefix::host(IpAddr::from(B)), &[NextHop::new(1, 7, 1)])
            .unwrap();
    apply(&mut a, rec(&route)).unwrap();
    let mut b = Tables::default();
    apply(
        &mut b,
        stream_record(
            id,
            Direction::Ingress,
            KeyEpoch::Even,
            7,
            A,
            &k,
            Duration::from_secs(60),
        ),
    )
    .unwrap();
    (a, b)
}

/// Whole data-packet buffers (headroom, inner packet, tailroom) for these inner packets.
pub(crate) fn buffers(inner: &[Vec<u8>]) -> Vec<Vec<u8>> {
    inner
        .iter()
        .map(|p| {
            let mut b = vec![0u8; p.len() + OVERHEAD];
            b[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(p);
            b
        })
        .collect()
}

fn run_egress(t: &mut Tables, c: &mut Counters, bufs: &mut [Vec<u8>]) -> Vec<EgressVerdict> {
    let mut v = vec![EgressVerdict::Pending; bufs.len()];
    egress(t, c, Instant::now(), bufs, &mut v);
    v
}

fn run_ingress(t: &mut Tables, c: &mut Counters, bufs: &mut [Vec<u8>]) -> Vec<IngressVerdict> {
    let mut v = vec![IngressVerdict::Pending; bufs.len()];
    let mut s = vec![Verdict::Pending; bufs.len()];
    ingress(
        t,
        c,
        &mut RelayLimiter::new(),
        Instant::now(),
        bufs,
        &mut v,
        &mut s,
    );
    v
}

#[test]
fn a_to_b_delivers_what_was_sent() {
    let (mut a, mut b) = pair(StreamId::random());
    let inner: Vec<Vec<u8>> = (0..5)
        .map(|i| udp4(A, B, 1000 + i, 53, 100 * usize::from(i) + 1))
        .collect();
    let mut bufs = buffers(&inner);
    let mut ca = Counters::default();
    let v = run_egress(&mut a, &mut ca, &mut bufs);
    assert!(
        v.iter().all(|v| matches!(
            v,
            EgressVerdict::Send {
                tether: 1,
                label: 7,
                ..
            }
        )),
        "{v:?}"
    );
    assert_ne!(
        &bufs[0][HEADER_LEN..HEADER_LEN + 20],
        &inner[0][..20],
        "sealed in place"
    );

    let mut cb = Counters::default();
    let v = run_ingress(&mut b, &mut cb, &mut bufs);
    for (i, (v, buf)) in v.iter().zip(&bufs).enumerate() {
        let IngressVerdict::Deliver { offset, len } = *v else {
            panic!("packet {i}: {v:?}")
        };
        assert_eq!(&buf[offset..offset + len], &inner[i][..]);
    }
    assert_eq!(cb.ingress_packets, 5);
}

#[test]
fn replay_and_tamper_are_dropped_and_counted() {
    let (mut a, mut b) = pair(StreamId::random());
    let mut bufs = buffers(&[udp4(A, B, 1, 2, 40), udp4(A, B, 1, 2, 40)]);
    run_egress(&mut a, &mut Counters::default(), &mut bufs);
    let copy = bufs[0].clone();
    let n = bufs[1].len();
    bufs[1][n - TAG_LEN - 1] ^= 1;
    let mut c = Counters::default();
    let v = run_ingress(&mut b, &mut c, &mut bufs);
    assert!(matches!(v[0], IngressVerdict::Deliver { .. }));
    assert_eq!(v[1], IngressVerdict::Drop(CounterId::BadTag));
    let v = run_ingress(&mut b, &mut c, &mut [copy]);
    assert_eq!(v[0], IngressVerdict::Drop(CounterId::Replay));
    assert_eq!((c.get(CounterId::BadTag), c.get(CounterId::Replay)), (1, 1));
}

#[test]
fn spoofed_inner_source_is_dropped_unless_allowed() {
    let id = StreamId::random();
    let (mut a, mut b) = pair(id);
    let lan = [192, 168, 7, 9];
    let mut bufs = buffers(&[udp4(lan, B, 1, 2, 10)]);
    run_egress(&mut a, &mut Counters::default(), &mut bufs);
    let mut c = Counters::default();
    let v = run_ingress(&mut b, &mut c, &mut bufs.clone());
    assert_eq!(v[0], IngressVerdict::Drop(CounterId::InnerSource));
    assert_eq!(c.get(CounterId::InnerSource), 1);

    let prefix = IpPrefix::new(IpAddr::from([192, 168, 7, 0]), 24).unwrap();
    apply(
        &mut b,
        rec(&AllowedPrefixBody::new(id, PrefixOp::Add, prefix)),
    )
    .unwrap();
    let mut bufs = buffers(&[udp4(lan, B, 1, 2, 10)]);
    run_egress(&mut a, &mut Counters::default(), &mut bufs);
    let v = run_ingress(&mut b, &mut c, &mut bufs);
    assert!(matches!(v[0], IngressVerdict::Deliver { .. }), "{v:?}");
}

#[test]
fn relay_swaps_the_label_without_a_key() {
    let id = StreamId::random();
    let (mut a, mut b) = pair(id);
    // R relays its label 7 to tether 2 with B's label 9; B's stream now has label 9.
    let mut r = Tables::default();
    apply(
        &mut r,
        rec(&InstallTetherBody::new(
            2,
            "192.0.2.3:51820".parse::<SocketAddr>().unwrap(),
        )),
    )
    .unwrap();
    apply(&mut r, rec(&InstallRelayBody::new(7, 2, 9))).unwrap();
    apply(
        &mut b,
        stream_record(
            id,
            Direction::Ingress,
            KeyEpoch::Even,
            9,
            A,
            &key(1),
            Duration::from_secs(60),
        ),
    )
    .unwrap();

    let inner = udp4(A, B, 5, 6, 300);
    let mut bufs = buffers(std::slice::from_ref(&inner));
    run_egress(&mut a, &mut Counters::default(), &mut bufs);
    let sealed = bufs[0].clone();
    let mut cr = Counters::default();
    let v = run_ingress(&mut r, &mut cr, &mut bufs);
    assert_eq!(v[0], IngressVerdict::Relay(2));
    assert_eq!(&bufs[0][12..16], &9u32.to_be_bytes());
    assert_eq!(&bufs[0][16..], &sealed[16..], "payload and tag untouched");
    assert_eq!(cr.relayed_packets, 1);
    assert!(
        r.ingress.is_empty() && r.egress.is_empty(),
        "the relay holds no stream"
    );

    let v = run_ingress(&mut b, &mut Counters::default(), &mut bufs);
    let IngressVerdict::Deliver { offset, len } = v[0] else {
        panic!("{v:?}")
    };
    assert_eq!(&bufs[0][offset..offset + len], &inner[..]);
}

#[test]
fn unknown_destination_and_label_are_misses_and_drops() {
    let (mut a, mut b) = pair(StreamId::random());
    let mut c = Counters::default();
    let mut bufs = buffers(&[udp4(A, [10, 1, 1, 1], 1, 2, 10)]);
    let v = run_egress(&mut a, &mut c, &mut bufs);
    assert_eq!(v[0], EgressVerdict::Miss(IpAddr::from([10, 1, 1, 1])));
    assert_eq!(c.get(CounterId::NoRoute), 1);

    let mut bufs = buffers(&[udp4(A, B, 1, 2, 10)]);
    run_egress(&mut a, &mut Counters::default(), &mut bufs);
    bufs[0][12..16].copy_from_slice(&1234u32.to_be_bytes());
    let v = run_ingress(&mut b, &mut c, &mut bufs);
    assert_eq!(v[0], IngressVerdict::Drop(CounterId::UnknownLabel));
}

#[test]
fn expired_keys_stop_traffic_without_a_control_process() {
    let id = StreamId::random();
    let (mut a, mut b) = pair(id);
    let later = Instant::now() + Duration::from_secs(61);
    let mut bufs = buffers(&[udp4(A, B, 1, 2, 10)]);
    let mut v = vec![EgressVerdict::Pending; 1];
    let mut c = Counters::default();
    egress(&mut a, &mut c, later, &mut bufs, &mut v);
    assert_eq!(v[0], EgressVerdict::Drop(CounterId::KeyExpired));
    assert_eq!(a.expire(later), 1);
    assert_eq!(b.expire(later), 1);
    assert!(a.egress.is_empty() && b.ingress.is_empty());
}

#[test]
fn reinstalling_the_same_key_keeps_counters_and_windows() {
    let id = StreamId::random();
    let (mut a, mut b) = pair(id);
    let mut bufs = buffers(&[udp4(A, B, 1, 2, 10)]);
    run_egress(&mut a, &mut Counters::default(), &mut bufs);
    let first = bufs[0].clone();
    assert!(matches!(
        run_ingress(&mut b, &mut Counters::default(), &mut bufs)[0],
        IngressVerdict::Deliver { .. }
    ));
    let life = Duration::from_secs(60);
    apply(
        &mut a,
        stream_record(id, Direction::Egress, KeyEpoch::Even, 7, B, &key(1), life),
    )
    .unwrap();
    apply(
        &mut b,
        stream_record(id, Direction::Ingress, KeyEpoch::Even, 7, A, &key(1), life),
    )
    .unwrap();
    assert_eq!(
        a.egress[0].sealer.next_counter(),
        1,
        "no counter restart under one key"
    );
    let v = run_ingress(&mut b, &mut Counters::default(), &mut [first]);
    assert_eq!(v[0], IngressVerdict::Drop(CounterId::Replay), "window kept");
}

#[test]
fn rekey_overlap_accepts_both_epochs() {
    let id = StreamId::random();
    let (mut a, mut b) = pair(id);
    let mut old = buffers(&[udp4(A, B, 1, 2, 10)]);
    run_egress(&mut a, &mut Counters::default(), &mut old);
    let life = Duration::from_secs(60);
    apply(
        &mut b,
        stream_record(id, Direction::Ingress, KeyEpoch::Odd, 7, A, &key(2), life),
    )
    .unwrap();
    apply(
        &mut a,
        stream_record(id, Direction::Egress, KeyEpoch::Odd, 7, B, &key(2), life),
    )
    .unwrap();
    let mut new = buffers(&[udp4(A, B, 1, 2, 10)]);
    run_egress(&mut a, &mut Counters::default(), &mut new);
    let v = run_ingress(
        &mut b,
        &mut Counters::default(),
        &mut [new.remove(0), old.remove(0)],
    );
    assert!(
        v.iter()
            .all(|v| matches!(v, IngressVerdict::Deliver { .. })),
        "{v:?}"
    );
    apply(
        &mut b,
        rec(&RemoveStreamBody::new(
            id,
            Direction::Ingress,
            conflux_shared::wire::record::control::epochs::EVEN,
        )),
    )
    .unwrap();
    assert!(!b.ingress[0].opener.has_key(KeyEpoch::Even));
}

#[test]
fn records_for_the_control_process_are_refused() {
    let mut t = Tables::default();
    let miss = RingRecord::encode(&conflux_shared::wire::record::MissBody::new(
        0,
        IpAddr::from(B),
    ))
    .unwrap();
    let r: RecordRef<'_> = miss.decode().unwrap();
    assert_eq!(
        t.apply(&r, Instant::now(), monotonic_ns()),
        Err(ApplyError::WrongFlow)
    );
}

#[test]
fn a_prefix_route_via_a_node_is_sealed_by_that_nodes_stream() {
    let (mut a, _) = pair(StreamId::random());
    let lan = IpAddr::from([192, 168, 10, 0]);
    // Without `via`, no stream's destination lies in the LAN prefix: a miss.
    let plain =
        InstallRouteBody::forward(IpPrefix::new(lan, 24).unwrap(), &[NextHop::new(1, 9, 1)])
            .unwrap();
    apply(&mut a, rec(&plain)).unwrap();
    let mut c = Counters::default();
    let mut bufs = buffers(&[udp4(A, [192, 168, 10, 5], 1000, 53, 40)]);
    assert!(matches!(
        run_egress(&mut a, &mut c, &mut bufs)[0],
        EgressVerdict::Miss(_)
    ));
    let via = InstallRouteBody::forward_via(
        IpPrefix::new(lan, 24).unwrap(),
        &[NextHop::new(1, 9, 1)],
        IpAddr::from(B),
    )
    .unwrap();
    apply(&mut a, rec(&via)).unwrap();
    let mut bufs = buffers(&[udp4(A, [192, 168, 10, 5], 1000, 53, 40)]);
    assert!(matches!(
        run_egress(&mut a, &mut c, &mut bufs)[0],
        EgressVerdict::Send {
            tether: 1,
            label: 9,
            ..
        }
    ));
}

#[test]
fn internet_bound_packets_need_a_portal_and_a_stream_allowed_to_exit() {
    use conflux_shared::wire::record::PolicyBody;
    use conflux_shared::wire::record::control::{policy_flags, stream_flags};
    let policy = |flags: u8| PolicyBody {
        flags,
        reserved: [0; 3],
        max_key_lifetime_s: 600.into(),
        relay_rate_pps: 0.into(),
        idle_timeout_s: 0.into(),
    };
    let send = |b: &mut Tables, a: &mut Tables, dst: [u8; 4]| {
        let mut bufs = buffers(&[udp4(A, dst, 1000, 80, 60)]);
        let mut c = Counters::default();
        run_egress(a, &mut c, &mut bufs);
        let mut cb = Counters::default();
        let v = run_ingress(b, &mut cb, &mut bufs)[0];
        (v, cb.get(CounterId::ExitDenied))
    };
    let (mut a, mut b) = pair(StreamId::random());
    // A default route on A sends internet-bound packets to B's stream.
    let default = InstallRouteBody::forward_via(
        IpPrefix::new(IpAddr::from([0, 0, 0, 0]), 0).unwrap(),
        &[NextHop::new(1, 7, 1)],
        IpAddr::from(B),
    )
    .unwrap();
    apply(&mut a, rec(&default)).unwrap();
    apply(
        &mut b,
        rec(&InstallRouteBody::local(IpPrefix::host(IpAddr::from(B)))),
    )
    .unwrap();
    assert_eq!(
        b.local_hosts,
        vec![IpAddr::from(B)],
        "own address on the fast path"
    );
    let outside = [198, 18, 0, 9];
    // No guard: everything opened is delivered (the static driver's default).
    assert!(matches!(
        send(&mut b, &mut a, outside).0,
        IngressVerdict::Deliver { .. }
    ));
    // Guarded, not a portal: only B's own address.
    apply(&mut b, rec(&policy(policy_flags::GUARD_EXIT))).unwrap();
    assert!(matches!(
        send(&mut b, &mut a, B).0,
        IngressVerdict::Deliver { .. }
    ));
    assert_eq!(
        send(&mut b, &mut a, outside),
        (IngressVerdict::Drop(CounterId::ExitDenied), 1)
    );
    // A portal, but the stream may not exit (another owner's node): still dropped.
    apply(
        &mut b,
        rec(&policy(policy_flags::GUARD_EXIT | policy_flags::PORTAL)),
    )
    .unwrap();
    assert_eq!(
        send(&mut b, &mut a, outside).0,
        IngressVerdict::Drop(CounterId::ExitDenied)
    );
    // The same owner's stream on a portal exits.
    let id = b.ingress[0].id;
    let mut body = InstallStreamBody::new(
        id,
        Direction::Ingress,
        0,
        KeyEpoch::Even,
        7,
        monotonic_ns() + 60_000_000_000,
        IpAddr::from(A),
        &key(1),
    );
    body.flags = stream_flags::EXIT;
    apply(&mut b, rec(&body)).unwrap();
    assert!(matches!(
        send(&mut b, &mut a, outside).0,
        IngressVerdict::Deliver { .. }
    ));
}
