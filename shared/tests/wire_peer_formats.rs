//! Property tests for the formats peers exchange over the network besides route messages:
//! the data header and the handshake messages round-trip from arbitrary values.

use conflux_shared::crypto::identity::{FINGERPRINT_LEN, KEM_CIPHERTEXT_LEN, SIGNATURE_LEN};
use conflux_shared::id::{NodeId, StreamId};
use conflux_shared::taint::{Membership, Realm, TaintSet};
use conflux_shared::wire::data::{self, DataHeader, DataPacket, KeyEpoch, PacketType};
use conflux_shared::wire::handshake::{AcceptRepr, HandshakeAccept, HandshakeInit, InitRepr};
use proptest::prelude::*;
use zerocopy::IntoBytes;

fn membership() -> impl Strategy<Value = Membership> {
    let name = "[a-z0-9][a-z0-9_-]{0,62}";
    (name, prop::collection::btree_set(name, 0..=32)).prop_map(|(realm, taints)| Membership {
        realm: Realm::new(&realm).unwrap(),
        taints: TaintSet::parse(taints.iter().map(String::as_str)).unwrap(),
    })
}

fn two_nodes() -> impl Strategy<Value = (NodeId, NodeId)> {
    (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_filter("distinct nodes", |(a, b)| a != b)
        .prop_map(|(a, b)| (NodeId(a), NodeId(b)))
}

fn bytes<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap())
}

proptest! {
    #[test]
    fn data_header_round_trips(
        probe in any::<bool>(),
        odd in any::<bool>(),
        lane in any::<u8>(),
        counter in any::<u64>(),
        label in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..1500),
        tag in any::<[u8; 16]>(),
    ) {
        let kind = if probe { PacketType::Probe } else { PacketType::Data };
        let epoch = if odd { KeyEpoch::Odd } else { KeyEpoch::Even };
        let header = DataHeader::new(kind, epoch, lane, counter, label);
        let mut packet = header.as_bytes().to_vec();
        packet.extend_from_slice(&payload);
        packet.extend_from_slice(&tag);
        let p = DataPacket::new_checked(&packet[..]).unwrap();
        prop_assert_eq!(p.header(), &header);
        prop_assert_eq!(p.packet_type(), kind);
        prop_assert_eq!(p.key_epoch(), epoch);
        prop_assert_eq!((p.lane(), p.counter(), p.label()), (lane, counter, label));
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert_eq!(p.tag(), &tag);
        prop_assert_eq!(packet.len(), payload.len() + data::OVERHEAD);
    }

    #[test]
    fn handshake_init_round_trips(
        m in membership(),
        (initiator, responder) in two_nodes(),
        stream in any::<[u8; 16]>(),
        nonce in any::<[u8; 32]>(),
        expires in any::<u64>(),
        fingerprint in bytes::<FINGERPRINT_LEN>(),
        ciphertext in bytes::<KEM_CIPHERTEXT_LEN>(),
        signature in prop::collection::vec(any::<u8>(), SIGNATURE_LEN),
    ) {
        let repr = InitRepr {
            stream_id: StreamId(stream),
            initiator,
            responder,
            nonce,
            expires,
            fingerprint,
            ciphertext: &ciphertext,
            membership: &m,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let len = repr.emit(&mut buf).unwrap().finish(&signature).unwrap();
        prop_assert_eq!(len, buf.len());
        let parsed = HandshakeInit::parse(&buf).unwrap();
        prop_assert_eq!(parsed.repr(), repr);
        prop_assert_eq!(&parsed.signature()[..], &signature[..]);
        prop_assert_eq!(parsed.signed_part(), &buf[..len - SIGNATURE_LEN]);
    }

    #[test]
    fn handshake_accept_round_trips(
        m in membership(),
        (initiator, responder) in two_nodes(),
        stream in any::<[u8; 16]>(),
        nonce in any::<[u8; 32]>(),
        init_hash in any::<[u8; 32]>(),
        expires in any::<u64>(),
        fingerprint in bytes::<FINGERPRINT_LEN>(),
        signature in prop::collection::vec(any::<u8>(), SIGNATURE_LEN),
    ) {
        let repr = AcceptRepr {
            stream_id: StreamId(stream),
            initiator,
            responder,
            nonce,
            init_hash,
            expires,
            fingerprint,
            membership: &m,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let len = repr.emit(&mut buf).unwrap().finish(&signature).unwrap();
        prop_assert_eq!(len, buf.len());
        let parsed = HandshakeAccept::parse(&buf).unwrap();
        prop_assert_eq!(parsed.repr(), repr);
        prop_assert_eq!(&parsed.signature()[..], &signature[..]);
    }
}
