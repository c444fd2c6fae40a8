//! Fixed byte arrays both ways, and the rejections a hostile peer would probe.

use std::net::IpAddr;

use zerocopy::{FromBytes, IntoBytes};

use super::*;
use crate::crypto::key::StreamKey;
use crate::id::StreamId;
use crate::wire::data::KeyEpoch;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn record(bytes: &[u8]) -> RingRecord {
    let mut full = [0u8; RECORD_LEN];
    full[..bytes.len()].copy_from_slice(bytes);
    RingRecord::read_from_bytes(&full).unwrap()
}

/// Relay: label 0x01020304 in, tether 7, label 0x0a0b0c0d out.
#[rustfmt::skip]
static RELAY_BYTES: [u8; 20] = [
    0x01, 0x05, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, // version, kind, len 12, reserved
    0x04, 0x03, 0x02, 0x01,                         // in label
    0x07, 0x00, 0x00, 0x00,                         // tether
    0x0d, 0x0c, 0x0b, 0x0a,                         // out label
];

/// Route 10.64.0.0/10 over tether 3 (label 0x11, weight 2) and tether 4 (label 0x22,
/// weight 1).
#[rustfmt::skip]
static ROUTE_BYTES: [u8; 93] = [
    0x01, 0x03, 0x55, 0x00, 0x00, 0x00, 0x00, 0x00, // version, kind, len 85, reserved
    0x04, 0x0a,                                     // IPv4, /10
    0x0a, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 10.64.0.0
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x02,                                     // forward, 2 hops
    0x03, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // via: none (IPv4 0.0.0.0)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

fn route_body() -> InstallRouteBody {
    let prefix = IpPrefix::new(ip("10.64.0.0"), 10).unwrap();
    InstallRouteBody::forward(
        prefix,
        &[NextHop::new(3, 0x11, 2), NextHop::new(4, 0x22, 1)],
    )
    .unwrap()
}

fn stream_body() -> InstallStreamBody {
    let key = StreamKey {
        key: [0xe7; 32],
        nonce_base: [0xb4; 12],
    };
    InstallStreamBody::new(
        StreamId([9; 16]),
        Direction::Egress,
        2,
        KeyEpoch::Odd,
        0x77,
        5_000_000_000,
        ip("fd00::2"),
        &key,
    )
}

#[test]
fn relay_decodes_and_encodes() {
    let rec = record(&RELAY_BYTES);
    let want = InstallRelayBody::new(0x0102_0304, 7, 0x0a0b_0c0d);
    assert_eq!(rec.decode(), Ok(RecordRef::InstallRelay(&want)));
    assert_eq!(
        RingRecord::encode(&want).unwrap().as_bytes(),
        rec.as_bytes()
    );
}

#[test]
fn route_decodes_and_encodes() {
    let rec = record(&ROUTE_BYTES);
    let Ok(RecordRef::InstallRoute(r)) = rec.decode() else {
        panic!("not a route: {:?}", rec.decode());
    };
    assert_eq!(r.prefix.network(), ip("10.64.0.0"));
    assert_eq!(r.prefix.len, 10);
    let hops: Vec<_> = r
        .next_hops()
        .iter()
        .map(|h| (h.tether.get(), h.label.get(), h.weight.get()))
        .collect();
    assert_eq!(hops, [(3, 0x11, 2), (4, 0x22, 1)]);
    assert_eq!(
        RingRecord::encode(&route_body()).unwrap().as_bytes(),
        rec.as_bytes()
    );
}

#[test]
fn stream_key_comes_out_and_the_slot_wipes() {
    let mut slot = RingRecord::encode(&stream_body()).unwrap();
    let Ok(RecordRef::InstallStream(s)) = slot.decode() else {
        panic!("not a stream");
    };
    assert!(RecordRef::InstallStream(s).carries_secret());
    assert_eq!(s.key_epoch(), KeyEpoch::Odd);
    assert_eq!(s.peer.ip(), ip("fd00::2"));
    assert_eq!(s.stream_key().key, [0xe7; 32]);
    assert_eq!(s.stream_key().nonce_base, [0xb4; 12]);
    slot.wipe();
    assert!(slot.as_bytes().iter().all(|&b| b == 0));
    assert_eq!(slot.decode(), Err(WireError::Version(0)));
}

#[test]
fn debug_never_shows_the_key() {
    let body = stream_body();
    let rec = RingRecord::encode(&body).unwrap();
    for s in [
        format!("{body:?}"),
        format!("{rec:?}"),
        format!("{:?}", rec.decode()),
    ] {
        let shown = ["231", "e7", "E7", "180", "b4", "B4"];
        assert!(shown.iter().all(|k| !s.contains(k)), "{s}");
    }
}

#[test]
fn body_wipes_its_key() {
    let mut body = stream_body();
    zeroize::Zeroize::zeroize(&mut body);
    assert_eq!(body.key, [0; 32]);
    assert_eq!(body.nonce_base, [0; 12]);
    assert_eq!(body.label.get(), 0x77, "only the secret fields are wiped");
}

#[test]
fn header_rejections() {
    let ok = record(&RELAY_BYTES);
    assert!(ok.decode().is_ok());
    let with = |i: usize, v: u8| {
        let mut r = record(&RELAY_BYTES);
        r.as_mut_bytes()[i] = v;
        r.decode().map(|_| ())
    };
    assert_eq!(with(0, 2), Err(WireError::Version(2)));
    assert_eq!(with(1, 0), Err(WireError::UnknownType(0)));
    assert_eq!(with(1, 0x7f), Err(WireError::UnknownType(0x7f)));
    assert_eq!(with(2, 11), Err(WireError::Length(11)));
    assert_eq!(with(3, 1), Err(WireError::Length(256 + 12)));
    assert_eq!(with(4, 1), Err(WireError::Reserved));
    assert_eq!(with(20, 1), Err(WireError::Reserved), "byte past the body");
    assert_eq!(with(127, 1), Err(WireError::Reserved), "last byte");
    assert_eq!(
        with(1, 4),
        Err(WireError::Length(12)),
        "kind with another body size"
    );
}

#[test]
fn body_rejections() {
    let route = |i: usize, v: u8| {
        let mut r = record(&ROUTE_BYTES);
        r.as_mut_bytes()[i] = v;
        r.decode().map(|_| ())
    };
    let field = |r: Result<(), WireError>| matches!(r, Err(WireError::Field(_)));
    assert!(field(route(8, 5)), "unknown address family");
    assert_eq!(route(9, 33), Err(WireError::Length(33)));
    assert!(field(route(9, 9)), "host bits set past /9");
    assert_eq!(route(17, 1), Err(WireError::Reserved), "IPv4 tail");
    assert!(field(route(26, 2)), "unknown route target");
    assert_eq!(
        route(26, 0),
        Err(WireError::Length(2)),
        "local route with hops"
    );
    assert_eq!(route(27, 0), Err(WireError::Length(0)));
    assert_eq!(route(27, 5), Err(WireError::Length(5)));
    assert_eq!(route(27, 1), Err(WireError::Reserved), "hop past the count");
    assert_eq!(route(38, 1), Err(WireError::Reserved), "hop reserved bytes");
    let mut zero_weights = record(&ROUTE_BYTES);
    zero_weights.as_mut_bytes()[36] = 0;
    zero_weights.as_mut_bytes()[48] = 0;
    assert!(field(zero_weights.decode().map(|_| ())));
}

#[test]
fn constructors_refuse_what_decode_would() {
    let p = IpPrefix::new(ip("10.0.0.0"), 8).unwrap();
    assert_eq!(InstallRouteBody::forward(p, &[]), Err(WireError::Length(0)));
    let five = [NextHop::new(1, 1, 1); 5];
    assert_eq!(
        InstallRouteBody::forward(p, &five),
        Err(WireError::Length(5))
    );
    assert!(InstallRouteBody::forward(p, &[NextHop::new(1, 1, 0)]).is_err());
    assert!(InstallRouteBody::forward(p, &[NextHop::new(1, 1, 0), NextHop::new(2, 2, 1)]).is_ok());
    let policy = PolicyBody {
        flags: control::policy_flags::RELAY,
        reserved: [0; 3],
        max_key_lifetime_s: 0.into(),
        relay_rate_pps: 0.into(),
        idle_timeout_s: 0.into(),
    };
    assert!(matches!(
        RingRecord::encode(&policy),
        Err(WireError::Field(_))
    ));
    let remove = RemoveStreamBody::new(StreamId([1; 16]), Direction::Ingress, 0);
    assert!(matches!(
        RingRecord::encode(&remove),
        Err(WireError::Field(_))
    ));
    let remove = RemoveStreamBody::new(StreamId([1; 16]), Direction::Ingress, 4);
    assert_eq!(
        RingRecord::encode(&remove).map(|_| ()),
        Err(WireError::Reserved)
    );
}

#[test]
fn counters_batch() {
    let body = CountersBody::new(3, &[(CounterId::BadTag, 10), (CounterId::Replay, 2)]).unwrap();
    let rec = RingRecord::encode(&body).unwrap();
    let Ok(RecordRef::Counters(c)) = rec.decode() else {
        panic!("not counters");
    };
    let got: Vec<_> = c
        .entries()
        .iter()
        .map(|e| (e.counter().unwrap().name(), e.value.get()))
        .collect();
    assert_eq!(got, [("bad_tag", 10), ("replay", 2)]);
    let dup = CountersBody::new(3, &[(CounterId::BadTag, 1), (CounterId::BadTag, 2)]);
    assert!(matches!(dup, Err(WireError::Field(_))));
    let mut unknown = RingRecord::encode(&body).unwrap();
    unknown.body[4] = CounterId::ALL.len() as u8 + 1;
    assert!(matches!(unknown.decode(), Err(WireError::Field(_))));
    for (i, id) in CounterId::ALL.iter().enumerate() {
        assert_eq!(CounterId::from_u8(i as u8 + 1), Ok(*id));
    }
    assert!(CounterId::from_u8(0).is_err());
}

#[test]
fn telemetry_bounds() {
    let t = TelemetryBody::new(1, 0, 900, report::PPM, 3000, 2, 5);
    assert!(RingRecord::encode(&t).is_ok());
    let t = TelemetryBody::new(1, 0, 900, report::PPM + 1, 3000, 2, 5);
    assert!(matches!(RingRecord::encode(&t), Err(WireError::Field(_))));
}

#[test]
fn flows_are_enforced_per_ring_end() {
    let relay = record(&RELAY_BYTES);
    assert!(relay.decode_flow(RecordFlow::ToWorker).is_ok());
    assert_eq!(
        relay.decode_flow(RecordFlow::ToControl).map(|_| ()),
        Err(WireError::UnknownType(5))
    );
    let miss = RingRecord::encode(&MissBody::new(1, ip("10.9.8.7"))).unwrap();
    assert!(miss.decode_flow(RecordFlow::ToControl).is_ok());
    assert!(miss.decode_flow(RecordFlow::ToWorker).is_err());
}

#[test]
fn every_kind_round_trips_through_bytes() {
    let prefix = IpPrefix::new(ip("fd00:1::"), 32).unwrap();
    let bodies: Vec<RingRecord> = vec![
        RingRecord::encode(&stream_body()),
        RingRecord::encode(&RemoveStreamBody::new(
            StreamId([2; 16]),
            Direction::Egress,
            1,
        )),
        RingRecord::encode(&route_body()),
        RingRecord::encode(&RemoveRouteBody { prefix }),
        RingRecord::encode(&InstallRelayBody::new(1, 2, 3)),
        RingRecord::encode(&RemoveRelayBody { in_label: 1.into() }),
        RingRecord::encode(&InstallTetherBody::new(
            4,
            "[2001:db8::1]:443".parse().unwrap(),
        )),
        RingRecord::encode(&RemoveTetherBody { tether: 4.into() }),
        RingRecord::encode(&AllowedPrefixBody::new(
            StreamId([3; 16]),
            PrefixOp::Add,
            prefix,
        )),
        RingRecord::encode(&PolicyBody {
            flags: control::policy_flags::ALL,
            reserved: [0; 3],
            max_key_lifetime_s: 180.into(),
            relay_rate_pps: 0.into(),
            idle_timeout_s: 300.into(),
        }),
        RingRecord::encode(&TelemetryBody::new(1, 0, 900, 10, 3000, 2, 5)),
        RingRecord::encode(&MissBody::new(1, ip("10.9.8.7"))),
        RingRecord::encode(&CountersBody::new(1, &[(CounterId::NoRoute, 1)]).unwrap()),
        RingRecord::encode(&TetherStateBody::new(4, 1, TetherState::Up)),
        RingRecord::encode(&StreamActivityBody::new(
            StreamId([5; 16]),
            Direction::Ingress,
            1,
            3,
            4200,
        )),
    ]
    .into_iter()
    .collect::<Result<_, _>>()
    .unwrap();
    let kinds: Vec<RecordKind> = bodies.iter().map(|r| r.decode().unwrap().kind()).collect();
    assert_eq!(kinds, RecordKind::ALL);
    for rec in &bodies {
        let again = RingRecord::from_bytes(rec.as_bytes()).unwrap();
        let decoded = again.decode().unwrap();
        assert_eq!(decoded.to_record().unwrap().as_bytes(), rec.as_bytes());
        assert_eq!(usize::from(rec.header.len.get()), decoded.kind().body_len());
    }
}

#[test]
fn from_bytes_wants_one_whole_record() {
    assert_eq!(
        RingRecord::from_bytes(&[0; 127]).map(|_| ()),
        Err(WireError::Truncated {
            need: 128,
            have: 127
        })
    );
    assert_eq!(
        RingRecord::from_bytes(&[0; 129]).map(|_| ()),
        Err(WireError::Trailing)
    );
}

#[test]
fn stream_activity_needs_packets_and_zero_reserved() {
    let mut b = StreamActivityBody::new(StreamId([5; 16]), Direction::Egress, 0, 0, 0);
    let rec = RingRecord::encode(&b);
    assert!(rec.is_err(), "a report of no packets is refused");
    b.packets = 1.into();
    b.reserved2 = [1, 0, 0, 0];
    assert_eq!(RingRecord::encode(&b).map(|_| ()), Err(WireError::Reserved));
}

#[test]
fn a_route_names_the_stream_that_seals_it_and_a_local_route_cannot() {
    let p = IpPrefix::new(IpAddr::from([192, 168, 10, 0]), 24).unwrap();
    let via: IpAddr = "100.64.0.9".parse().unwrap();
    let b = InstallRouteBody::forward_via(p, &[NextHop::new(1, 2, 1)], via).unwrap();
    let rec = RingRecord::encode(&b).unwrap();
    match rec.decode().unwrap() {
        RecordRef::InstallRoute(r) => assert_eq!(r.via(), Some(via)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        InstallRouteBody::forward(p, &[NextHop::new(1, 2, 1)])
            .unwrap()
            .via(),
        None
    );
    let mut local = InstallRouteBody::local(p);
    local.via = IpAddrField::new(via);
    let mut bad = RingRecord::encode(&InstallRouteBody::local(p)).unwrap();
    bad.body[..size_of::<InstallRouteBody>()]
        .copy_from_slice(zerocopy::IntoBytes::as_bytes(&local));
    assert!(bad.decode().is_err());
}

#[test]
fn tether_state_carries_the_selected_peer_and_refuses_a_bad_one() {
    for peer in ["203.0.113.1:40000", "[2001:db8::5]:51820"] {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        let rec =
            RingRecord::encode(&TetherStateBody::new(4, 1, TetherState::Up).with_peer(Some(peer)))
                .unwrap();
        match RingRecord::from_bytes(rec.as_bytes())
            .unwrap()
            .decode()
            .unwrap()
        {
            RecordRef::TetherState(t) => assert_eq!(t.peer(), Some(peer)),
            other => panic!("{other:?}"),
        }
    }
    let none = TetherStateBody::new(4, 1, TetherState::Down).with_peer(None);
    assert_eq!(none.peer(), None);
    assert!(none.check().is_ok());
    let mut stray = none;
    stray.peer[5] = 1;
    assert_eq!(stray.check(), Err(WireError::Reserved));
    let mut flag = none;
    flag.has_peer = 2;
    assert!(flag.check().is_err());
    let mut family = none;
    family.has_peer = 1;
    assert!(family.check().is_err(), "family 0 is no socket address");
}
