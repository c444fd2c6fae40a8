//! Entry points shared by the fuzz targets and the corpus replay tests: one per parser of
//! untrusted bytes.
//!
//! Each entry runs its parser on arbitrary bytes and returns whether they were accepted.
//! On acceptance it emits the parsed value again and asserts that the same bytes come out
//! (and that they parse to the same value), so a panic here is always a finding: either a
//! parser panicked on input, or it accepted bytes that do not have exactly one encoding.
//!
//! The cargo-fuzz project in `shared/fuzz` has one target per entry of [`TARGETS`]; the
//! `fuzz_corpus` test replays its corpus through the same entries. [`seeds`] gives valid
//! inputs for each target, from which the checked-in corpus was started.

use zerocopy::IntoBytes;

use crate::crypto::identity::{FINGERPRINT_LEN, KEM_CIPHERTEXT_LEN, SIGNATURE_LEN};
use crate::id::{NodeId, StreamId};
use zerocopy::FromBytes;

use crate::ring::layout::{Expect, Header, Layout, MAX_RING_BYTES};
use crate::ring::message::{self, Frame};
use crate::taint::{Membership, Realm, TaintSet};
use crate::wire::data::{self, DataHeader, DataPacket, KeyEpoch, PacketType};
use crate::wire::handshake::{AcceptRepr, HandshakeAccept, HandshakeInit, InitRepr};
use crate::wire::record::{self, IpPrefix, RecordFlow, RingRecord};
use crate::wire::route::{self, RouteMessage};

/// One fuzz target: its name (also its corpus directory) and its entry.
pub type Target = (&'static str, fn(&[u8]) -> bool);

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    ("route_message", route_message),
    ("ring_record", ring_record),
    ("data_packet", data_packet),
    ("handshake_init", handshake_init),
    ("handshake_accept", handshake_accept),
    ("ring_frame", ring_frame),
    ("ring_header", ring_header),
];

/// The payload limit [`ring_frame`] parses with: a message ring's usual bound.
pub const FRAME_MAX_PAYLOAD: usize = 4096;

/// [`RouteMessage::parse`]; accepted messages must emit to the same bytes.
pub fn route_message(data: &[u8]) -> bool {
    let Ok(msg) = RouteMessage::parse(data) else {
        return false;
    };
    assert_eq!(
        msg.buffer_len(),
        data.len(),
        "route message length: {msg:?}"
    );
    let mut out = vec![0u8; msg.buffer_len()];
    assert_eq!(
        msg.emit(&mut out),
        Ok(data.len()),
        "route message re-emit: {msg:?}"
    );
    assert_eq!(
        out, data,
        "route message does not re-emit to its bytes: {msg:?}"
    );
    true
}

/// [`RingRecord::from_bytes`] then [`RingRecord::decode`]; accepted records must encode to
/// the same bytes, and exactly one ring direction accepts them.
pub fn ring_record(data: &[u8]) -> bool {
    let Ok(rec) = RingRecord::from_bytes(data) else {
        return false;
    };
    let decoded = rec.decode();
    assert_eq!(
        crate::ring::Record::validate(rec).is_ok(),
        decoded.is_ok(),
        "ring validation disagrees with decode"
    );
    let Ok(body) = decoded else {
        return false;
    };
    let flows = [RecordFlow::ToWorker, RecordFlow::ToControl];
    let accepting = flows
        .iter()
        .filter(|f| rec.decode_flow(**f).is_ok())
        .count();
    assert_eq!(accepting, 1, "a record must flow one way: {body:?}");
    let mut again = body.to_record().expect("a decoded body must encode");
    assert_eq!(
        again.as_bytes(),
        data,
        "record does not re-encode to its bytes"
    );
    again.wipe();
    true
}

/// [`DataPacket::new_checked`]; an accepted header must rebuild to the same bytes, and the
/// payload and tag must tile the rest of the packet.
pub fn data_packet(data: &[u8]) -> bool {
    let Ok(packet) = DataPacket::new_checked(data) else {
        return false;
    };
    let h = packet.header();
    let rebuilt = DataHeader::new(
        packet.packet_type(),
        packet.key_epoch(),
        packet.lane(),
        packet.counter(),
        packet.label(),
    );
    assert_eq!(&rebuilt, h, "data header does not rebuild from its fields");
    assert_eq!(&data[..data::AAD_LEN], packet.aad(), "associated data");
    assert_eq!(
        data::HEADER_LEN + packet.payload().len() + data::TAG_LEN,
        data.len(),
        "payload and tag do not tile the packet"
    );
    assert_eq!(
        packet.payload_range().start,
        data::HEADER_LEN,
        "payload start"
    );
    assert_eq!(
        &data[data.len() - data::TAG_LEN..],
        packet.tag(),
        "tag position"
    );
    true
}

/// [`HandshakeInit::parse`]; an accepted init must emit to the same bytes.
pub fn handshake_init(data: &[u8]) -> bool {
    let Ok(init) = HandshakeInit::parse(data) else {
        return false;
    };
    let repr = init.repr();
    let mut out = vec![0u8; repr.buffer_len()];
    let unsigned = repr.emit(&mut out).expect("a parsed init must emit");
    assert_eq!(
        unsigned.signed_part(),
        init.signed_part(),
        "init signed part"
    );
    let len = unsigned.finish(init.signature()).expect("signature length");
    assert_eq!(&out[..len], data, "init does not re-emit to its bytes");
    true
}

/// [`HandshakeAccept::parse`]; an accepted accept must emit to the same bytes.
pub fn handshake_accept(data: &[u8]) -> bool {
    let Ok(accept) = HandshakeAccept::parse(data) else {
        return false;
    };
    let repr = accept.repr();
    let mut out = vec![0u8; repr.buffer_len()];
    let unsigned = repr.emit(&mut out).expect("a parsed accept must emit");
    assert_eq!(
        unsigned.signed_part(),
        accept.signed_part(),
        "accept signed part"
    );
    let len = unsigned
        .finish(accept.signature())
        .expect("signature length");
    assert_eq!(&out[..len], data, "accept does not re-emit to its bytes");
    true
}

/// [`message::parse_frame`] with [`FRAME_MAX_PAYLOAD`]; an accepted message frame must emit
/// to the same header and payload, and every frame must stay inside the input.
pub fn ring_frame(data: &[u8]) -> bool {
    let Ok((frame, used)) = message::parse_frame(data, FRAME_MAX_PAYLOAD) else {
        return false;
    };
    assert!(used <= data.len(), "frame of {used} bytes past the input");
    assert_eq!(used % 8, 0, "frame length {used} is not aligned");
    if let Frame::Message { kind, payload } = frame {
        let mut out = vec![0xffu8; used];
        let n = message::emit_frame(&mut out, kind, payload).expect("a parsed frame must emit");
        assert_eq!(n, used, "frame length");
        let head = message::FRAME_HEADER_LEN + payload.len();
        assert_eq!(
            out[..head],
            data[..head],
            "frame does not re-emit to its bytes"
        );
    }
    true
}

/// The ring header check an attaching process runs on a peer's memfd: the first 128 bytes
/// are the header, the next 8 (native order, when present) the size `fstat` reported,
/// and the first byte after that picks the expected layout. An accepted header must
/// describe a ring whose slots fit exactly in the mapped size.
pub fn ring_header(data: &[u8]) -> bool {
    let Ok((header, rest)) = Header::read_from_prefix(data) else {
        return false;
    };
    let mapped = rest.get(..8).map_or(header.total_len, |b| {
        u64::from_ne_bytes(b.try_into().expect("8 bytes"))
    });
    let (layout, record_size) = match rest.get(8) {
        Some(b) if b & 1 == 1 => (Layout::Messages, 1),
        _ => (Layout::Records, 128),
    };
    let expect = Expect {
        layout,
        kind: header.kind,
        record_size,
        schema: header.schema,
    };
    if header.validate(expect, mapped).is_err() {
        return false;
    }
    let slots = header
        .capacity
        .checked_mul(u64::from(record_size))
        .expect("validated capacity");
    assert!(
        header.capacity.is_power_of_two(),
        "capacity {} accepted",
        header.capacity
    );
    assert_eq!(
        slots + header.data_offset as u64,
        mapped,
        "accepted header does not describe the mapped size"
    );
    assert!(mapped <= MAX_RING_BYTES, "ring of {mapped} bytes accepted");
    true
}

/// Valid inputs for each target, named `valid-*`, that its entry accepts.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, format!("valid-{name}"), bytes));
    };
    for (name, msg) in route_seeds() {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf).expect("seed route message is valid");
        add("route_message", name, buf);
    }
    for (name, rec) in record_seeds() {
        add("ring_record", name, rec.as_bytes().to_vec());
    }
    for (name, epoch, payload_len) in [
        ("even-1400", KeyEpoch::Even, 1400),
        ("odd-empty", KeyEpoch::Odd, 0),
    ] {
        let h = DataHeader::new(PacketType::Data, epoch, 3, 0x0102_0304_0506, 0xabcd);
        let mut buf = h.as_bytes().to_vec();
        buf.resize(data::HEADER_LEN + payload_len + data::TAG_LEN, 0x5c);
        add("data_packet", name, buf);
    }
    for (name, bytes) in handshake_seeds() {
        add(
            if name.starts_with("init") {
                "handshake_init"
            } else {
                "handshake_accept"
            },
            name,
            bytes,
        );
    }
    for (name, kind, payload) in [
        ("fingerprint", 3u16, &[0x42u8; 32][..]),
        (
            "candidate",
            1,
            b"candidate:1 1 udp 2122260223 192.0.2.1 4500 typ host".as_slice(),
        ),
        ("empty", 7, &[][..]),
    ] {
        let mut buf = vec![0u8; message::frame_len(payload.len())];
        message::emit_frame(&mut buf, kind, payload).expect("seed frame fits");
        add("ring_frame", name, buf);
    }
    for (name, layout, capacity, max_message, record_size) in [
        ("records-1024", Layout::Records, 1024u64, 0u32, 128u32),
        ("messages-64k", Layout::Messages, 65536, 4096, 1),
    ] {
        let expect = Expect {
            layout,
            kind: 7,
            record_size,
            schema: 0,
        };
        let header = Header::new(expect, capacity, max_message);
        let mut buf = header.as_bytes().to_vec();
        buf.extend_from_slice(&header.total_len.to_ne_bytes());
        buf.push(u8::from(layout == Layout::Messages));
        add("ring_header", name, buf);
    }
    out
}

fn node(b: u8) -> NodeId {
    NodeId([b; 16])
}

fn route_seeds() -> Vec<(&'static str, RouteMessage)> {
    let path = |hops: &[u8]| {
        let ids: Vec<NodeId> = hops.iter().map(|&b| node(b)).collect();
        route::RoutePath::new(&ids).expect("seed path is valid")
    };
    let setup = route::RouteSetup {
        route_id: 0x1122_3344_5566_7788,
        stream_id: StreamId([0x33; 16]),
        source: node(1),
        destination: node(4),
        path: path(&[2, 3, 4]),
        hop_index: 1,
        expiry_unix_s: 1_800_000_000,
    };
    let direct = route::RouteSetup {
        path: path(&[4]),
        hop_index: 0,
        ..setup
    };
    let longest = route::RouteSetup {
        destination: node(18),
        path: path(&[11, 12, 13, 14, 15, 16, 17, 18]),
        hop_index: 7,
        ..setup
    };
    vec![
        ("setup-3-hops", setup.into()),
        ("setup-direct", direct.into()),
        ("setup-8-hops", longest.into()),
        (
            "ack-accepted",
            route::RouteAck {
                route_id: 7,
                hop_index: 2,
                status: route::AckStatus::Accepted,
                label: 0x0001_0002,
            }
            .into(),
        ),
        (
            "ack-refused",
            route::RouteAck {
                route_id: 7,
                hop_index: 0,
                status: route::AckStatus::NoTether,
                label: 0,
            }
            .into(),
        ),
        (
            "teardown",
            route::RouteTeardown {
                route_id: 7,
                reason: route::TeardownReason::PolicyChanged,
            }
            .into(),
        ),
    ]
}

fn record_seeds() -> Vec<(&'static str, RingRecord)> {
    use record::*;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("seed address");
    let key = crate::crypto::key::StreamKey {
        key: [0x11; 32],
        nonce_base: [0x22; 12],
    };
    let v4 = IpPrefix::new(ip("10.20.0.0"), 16).expect("seed prefix");
    let v6 = IpPrefix::new(ip("fd00:aa::"), 48).expect("seed prefix");
    let enc = |r: Result<RingRecord, crate::wire::WireError>| r.expect("seed record is valid");
    vec![
        (
            "install-stream",
            enc(RingRecord::encode(&InstallStreamBody::new(
                StreamId([5; 16]),
                Direction::Egress,
                1,
                KeyEpoch::Even,
                44,
                9_000_000_000,
                ip("fd00::5"),
                &key,
            ))),
        ),
        (
            "remove-stream",
            enc(RingRecord::encode(&RemoveStreamBody::new(
                StreamId([5; 16]),
                Direction::Ingress,
                control::epochs::BOTH,
            ))),
        ),
        (
            "install-route",
            enc(RingRecord::encode(&enc_route(
                v4,
                &[NextHop::new(1, 10, 3), NextHop::new(2, 20, 1)],
            ))),
        ),
        (
            "install-route-local",
            enc(RingRecord::encode(&InstallRouteBody::local(v6))),
        ),
        (
            "remove-route",
            enc(RingRecord::encode(&RemoveRouteBody { prefix: v6 })),
        ),
        (
            "install-relay",
            enc(RingRecord::encode(&InstallRelayBody::new(100, 2, 200))),
        ),
        (
            "remove-relay",
            enc(RingRecord::encode(&RemoveRelayBody {
                in_label: 100.into(),
            })),
        ),
        (
            "install-tether",
            enc(RingRecord::encode(&InstallTetherBody::new(
                2,
                "198.51.100.7:3478".parse().expect("seed"),
            ))),
        ),
        (
            "remove-tether",
            enc(RingRecord::encode(&RemoveTetherBody { tether: 2.into() })),
        ),
        (
            "allowed-prefix",
            enc(RingRecord::encode(&AllowedPrefixBody::new(
                StreamId([6; 16]),
                PrefixOp::Add,
                v4,
            ))),
        ),
        (
            "policy",
            enc(RingRecord::encode(&PolicyBody {
                flags: control::policy_flags::RELAY,
                reserved: [0; 3],
                max_key_lifetime_s: 180.into(),
                relay_rate_pps: 100_000.into(),
                idle_timeout_s: 120.into(),
            })),
        ),
        (
            "telemetry",
            enc(RingRecord::encode(&TelemetryBody::new(
                2, 1, 1500, 2500, 1_000_000, 900, 12,
            ))),
        ),
        (
            "miss",
            enc(RingRecord::encode(&MissBody::new(0, ip("10.20.30.40")))),
        ),
        (
            "counters",
            enc(RingRecord::encode(
                &CountersBody::new(1, &[(CounterId::BadTag, 3), (CounterId::UnknownLabel, 9)])
                    .expect("seed"),
            )),
        ),
        (
            "tether-state",
            enc(RingRecord::encode(&TetherStateBody::new(
                2,
                1,
                TetherState::Down,
            ))),
        ),
    ]
}

fn enc_route(prefix: IpPrefix, hops: &[record::NextHop]) -> record::InstallRouteBody {
    record::InstallRouteBody::forward(prefix, hops).expect("seed route is valid")
}

fn handshake_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let membership = Membership {
        realm: Realm::new("acme").expect("seed realm"),
        taints: TaintSet::parse(["dev", "stage"]).expect("seed taints"),
    };
    let ciphertext = [0x77u8; KEM_CIPHERTEXT_LEN];
    let init = InitRepr {
        stream_id: StreamId([0x10; 16]),
        initiator: node(1),
        responder: node(2),
        nonce: [0x31; 32],
        expires: 1_800_000_000,
        fingerprint: [0x41; FINGERPRINT_LEN],
        ciphertext: &ciphertext,
        membership: &membership,
    };
    let accept = AcceptRepr {
        stream_id: StreamId([0x10; 16]),
        initiator: node(1),
        responder: node(2),
        nonce: [0x32; 32],
        init_hash: [0x51; 32],
        expires: 1_800_000_000,
        fingerprint: [0x42; FINGERPRINT_LEN],
        membership: &membership,
    };
    let signature = [0x99u8; SIGNATURE_LEN];
    let mut init_buf = vec![0u8; init.buffer_len()];
    let n = init
        .emit(&mut init_buf)
        .and_then(|u| u.finish(&signature))
        .expect("seed init fits");
    init_buf.truncate(n);
    let mut accept_buf = vec![0u8; accept.buffer_len()];
    let n = accept
        .emit(&mut accept_buf)
        .and_then(|u| u.finish(&signature))
        .expect("seed accept fits");
    accept_buf.truncate(n);
    vec![("init", init_buf), ("accept", accept_buf)]
}
