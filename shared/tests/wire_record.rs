//! Property tests: every ring record kind round-trips through its bytes, and decoding never
//! panics on arbitrary slots.

use std::net::IpAddr;

use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;
use conflux_shared::wire::data::KeyEpoch;
use conflux_shared::wire::record::control::{epochs, policy_flags};
use conflux_shared::wire::record::*;
use proptest::prelude::*;
use zerocopy::{FromBytes, IntoBytes};

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn prefix() -> impl Strategy<Value = IpPrefix> {
    (ip(), any::<u8>()).prop_map(|(ip, len)| {
        let masked = |bits: u32, value: u128, width: u32| {
            if bits == 0 {
                0
            } else {
                value & (u128::MAX << (width - bits))
            }
        };
        match ip {
            IpAddr::V4(v4) => {
                let len = len % 33;
                let net = masked(u32::from(len), u128::from(u32::from(v4)) << 96, 128) >> 96;
                IpPrefix::new(IpAddr::from((net as u32).to_be_bytes()), len).unwrap()
            }
            IpAddr::V6(v6) => {
                let len = len % 129;
                let net = masked(u32::from(len), u128::from(v6), 128);
                IpPrefix::new(IpAddr::from(net.to_be_bytes()), len).unwrap()
            }
        }
    })
}

fn direction() -> impl Strategy<Value = Direction> {
    prop::sample::select(vec![Direction::Egress, Direction::Ingress])
}

/// The parameters of an install-stream body (which is not `Clone`: it holds a key).
#[derive(Debug, Clone)]
struct StreamSpec {
    stream: [u8; 16],
    direction: Direction,
    lane: u8,
    odd: bool,
    label: u32,
    expires: u64,
    peer: IpAddr,
    key: [u8; 32],
    nonce: [u8; 12],
}

impl StreamSpec {
    fn body(&self) -> InstallStreamBody {
        let key = StreamKey {
            key: self.key,
            nonce_base: self.nonce,
        };
        let epoch = if self.odd {
            KeyEpoch::Odd
        } else {
            KeyEpoch::Even
        };
        let lane = if self.direction == Direction::Ingress {
            0
        } else {
            self.lane
        };
        InstallStreamBody::new(
            StreamId(self.stream),
            self.direction,
            lane,
            epoch,
            self.label,
            self.expires,
            self.peer,
            &key,
        )
    }
}

/// Any valid body, as a value the test can keep and compare.
#[derive(Debug, Clone)]
enum Spec {
    Stream(StreamSpec),
    RemoveStream(RemoveStreamBody),
    Route(InstallRouteBody),
    RemoveRoute(RemoveRouteBody),
    Relay(InstallRelayBody),
    RemoveRelay(RemoveRelayBody),
    Tether(InstallTetherBody),
    RemoveTether(RemoveTetherBody),
    Allowed(AllowedPrefixBody),
    Policy(PolicyBody),
    Telemetry(TelemetryBody),
    Miss(MissBody),
    Counters(CountersBody),
    TetherState(TetherStateBody),
}

fn stream_spec() -> impl Strategy<Value = StreamSpec> {
    (
        any::<[u8; 16]>(),
        direction(),
        any::<u8>(),
        any::<bool>(),
        any::<u32>(),
        any::<u64>(),
        ip(),
        any::<[u8; 32]>(),
        any::<[u8; 12]>(),
    )
        .prop_map(
            |(stream, direction, lane, odd, label, expires, peer, key, nonce)| StreamSpec {
                stream,
                direction,
                lane,
                odd,
                label,
                expires,
                peer,
                key,
                nonce,
            },
        )
}

fn route() -> impl Strategy<Value = InstallRouteBody> {
    let hop =
        (any::<u32>(), any::<u32>(), any::<u16>()).prop_map(|(t, l, w)| NextHop::new(t, l, w));
    prop_oneof![
        prefix().prop_map(InstallRouteBody::local),
        (
            prefix(),
            prop::collection::vec(hop, 1..=MAX_NEXT_HOPS),
            1..=u16::MAX
        )
            .prop_map(|(p, mut hops, w)| {
                // Weights may not all be zero.
                hops[0].weight = w.into();
                InstallRouteBody::forward(p, &hops).unwrap()
            }),
    ]
}

fn socket() -> impl Strategy<Value = std::net::SocketAddr> {
    (ip(), 1..=u16::MAX, any::<u32>()).prop_map(|(ip, port, scope)| match ip {
        IpAddr::V4(v4) => std::net::SocketAddr::from((v4, port)),
        IpAddr::V6(v6) => std::net::SocketAddrV6::new(v6, port, 0, scope).into(),
    })
}

fn counters() -> impl Strategy<Value = CountersBody> {
    (
        any::<u16>(),
        prop::sample::subsequence(CounterId::ALL.to_vec(), 1..=MAX_COUNTERS),
        prop::collection::vec(any::<u64>(), MAX_COUNTERS),
    )
        .prop_map(|(worker, ids, values)| {
            let pairs: Vec<_> = ids.into_iter().zip(values).collect();
            CountersBody::new(worker, &pairs).unwrap()
        })
}

fn spec() -> impl Strategy<Value = Spec> {
    let tether_state = prop::sample::select(vec![
        TetherState::Connecting,
        TetherState::Up,
        TetherState::Down,
        TetherState::Closed,
    ]);
    prop_oneof![
        stream_spec().prop_map(Spec::Stream),
        (any::<[u8; 16]>(), direction(), 1..=epochs::BOTH)
            .prop_map(|(s, d, e)| Spec::RemoveStream(RemoveStreamBody::new(StreamId(s), d, e))),
        route().prop_map(Spec::Route),
        prefix().prop_map(|prefix| Spec::RemoveRoute(RemoveRouteBody { prefix })),
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(a, b, c)| Spec::Relay(InstallRelayBody::new(a, b, c))),
        any::<u32>().prop_map(|l| Spec::RemoveRelay(RemoveRelayBody { in_label: l.into() })),
        (any::<u32>(), socket()).prop_map(|(t, s)| Spec::Tether(InstallTetherBody::new(t, s))),
        any::<u32>().prop_map(|t| Spec::RemoveTether(RemoveTetherBody { tether: t.into() })),
        (any::<[u8; 16]>(), any::<bool>(), prefix()).prop_map(|(s, add, p)| {
            let op = if add { PrefixOp::Add } else { PrefixOp::Remove };
            Spec::Allowed(AllowedPrefixBody::new(StreamId(s), op, p))
        }),
        (
            0..=policy_flags::ALL,
            1..=u32::MAX,
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(flags, life, rate, idle)| Spec::Policy(PolicyBody {
                flags,
                reserved: [0; 3],
                max_key_lifetime_s: life.into(),
                relay_rate_pps: rate.into(),
                idle_timeout_s: idle.into(),
            })),
        (
            any::<(u32, u16, u32)>(),
            0..=report::PPM,
            any::<u64>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|((t, w, rtt), loss, a, b, q)| {
                Spec::Telemetry(TelemetryBody::new(t, w, rtt, loss, a.max(b), a.min(b), q))
            }),
        (any::<u16>(), ip()).prop_map(|(w, ip)| Spec::Miss(MissBody::new(w, ip))),
        counters().prop_map(Spec::Counters),
        (any::<u32>(), any::<u16>(), tether_state)
            .prop_map(|(t, w, s)| Spec::TetherState(TetherStateBody::new(t, w, s))),
    ]
}

fn encode(spec: &Spec) -> Result<RingRecord, conflux_shared::wire::WireError> {
    match spec {
        Spec::Stream(s) => RingRecord::encode(&s.body()),
        Spec::RemoveStream(b) => RingRecord::encode(b),
        Spec::Route(b) => RingRecord::encode(b),
        Spec::RemoveRoute(b) => RingRecord::encode(b),
        Spec::Relay(b) => RingRecord::encode(b),
        Spec::RemoveRelay(b) => RingRecord::encode(b),
        Spec::Tether(b) => RingRecord::encode(b),
        Spec::RemoveTether(b) => RingRecord::encode(b),
        Spec::Allowed(b) => RingRecord::encode(b),
        Spec::Policy(b) => RingRecord::encode(b),
        Spec::Telemetry(b) => RingRecord::encode(b),
        Spec::Miss(b) => RingRecord::encode(b),
        Spec::Counters(b) => RingRecord::encode(b),
        Spec::TetherState(b) => RingRecord::encode(b),
    }
}

fn same(spec: &Spec, decoded: RecordRef<'_>) -> bool {
    match (spec, decoded) {
        (Spec::Stream(s), RecordRef::InstallStream(d)) => s.body() == *d,
        (Spec::RemoveStream(b), RecordRef::RemoveStream(d)) => b == d,
        (Spec::Route(b), RecordRef::InstallRoute(d)) => b == d,
        (Spec::RemoveRoute(b), RecordRef::RemoveRoute(d)) => b == d,
        (Spec::Relay(b), RecordRef::InstallRelay(d)) => b == d,
        (Spec::RemoveRelay(b), RecordRef::RemoveRelay(d)) => b == d,
        (Spec::Tether(b), RecordRef::InstallTether(d)) => b == d,
        (Spec::RemoveTether(b), RecordRef::RemoveTether(d)) => b == d,
        (Spec::Allowed(b), RecordRef::AllowedPrefix(d)) => b == d,
        (Spec::Policy(b), RecordRef::Policy(d)) => b == d,
        (Spec::Telemetry(b), RecordRef::Telemetry(d)) => b == d,
        (Spec::Miss(b), RecordRef::Miss(d)) => b == d,
        (Spec::Counters(b), RecordRef::Counters(d)) => b == d,
        (Spec::TetherState(b), RecordRef::TetherState(d)) => b == d,
        _ => false,
    }
}

proptest! {
    #[test]
    fn every_kind_round_trips(spec in spec()) {
        let rec = encode(&spec).unwrap();
        let bytes = rec.as_bytes().to_vec();
        let slot = RingRecord::from_bytes(&bytes).unwrap();
        let decoded = slot.decode().unwrap();
        prop_assert!(same(&spec, decoded), "{:?} decoded as {:?}", spec, decoded);
        let again = decoded.to_record().unwrap();
        prop_assert_eq!(again.as_bytes(), &bytes[..]);
        prop_assert!(slot.decode_flow(decoded.flow()).is_ok());
    }

    #[test]
    fn addresses_survive_the_trip(peer in socket(), dst in ip()) {
        let rec = RingRecord::encode(&InstallTetherBody::new(9, peer)).unwrap();
        let Ok(RecordRef::InstallTether(t)) = rec.decode() else { panic!("not a tether") };
        prop_assert_eq!(t.peer.socket_addr(), peer);
        let rec = RingRecord::encode(&MissBody::new(1, dst)).unwrap();
        let Ok(RecordRef::Miss(m)) = rec.decode() else { panic!("not a miss") };
        prop_assert_eq!(m.destination.ip(), dst);
    }

    #[test]
    fn a_prefix_contains_its_network_and_only_matching_addresses(p in prefix(), other in ip()) {
        prop_assert!(p.contains(p.network()));
        let q = IpPrefix::new(p.network(), p.len).unwrap();
        prop_assert_eq!(q, p);
        if p.contains(other) {
            prop_assert_eq!(other.is_ipv4(), p.network().is_ipv4());
        }
    }

    #[test]
    fn any_slot_decodes_or_is_refused_without_panic(bytes in prop::array::uniform32(any::<u8>()), tail in prop::collection::vec(any::<u8>(), 96)) {
        let mut raw = bytes.to_vec();
        raw.extend_from_slice(&tail);
        let slot = RingRecord::read_from_bytes(&raw).unwrap();
        if let Ok(r) = slot.decode() {
            let again = r.to_record().unwrap();
            prop_assert_eq!(again.as_bytes(), &raw[..]);
        }
    }

    #[test]
    fn a_valid_header_with_random_body_never_panics(spec in spec(), noise in prop::collection::vec(any::<u8>(), BODY_LEN)) {
        // Keep the header, scramble the body: exercises every body's checks.
        let mut rec = encode(&spec).unwrap();
        rec.body.copy_from_slice(&noise);
        let len = usize::from(rec.header.len.get());
        rec.body[len..].fill(0);
        if let Ok(r) = rec.decode() {
            let again = r.to_record().unwrap();
            prop_assert_eq!(again.as_bytes(), rec.as_bytes());
        }
        rec.wipe();
    }
}
