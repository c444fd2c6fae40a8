//! Random and mutated bytes fed to every parser of untrusted bytes: none may panic, and
//! whatever is accepted must have exactly one encoding (the fuzz entries assert it).

use conflux_shared::fuzz::{TARGETS, seeds};
use conflux_shared::ring::message::{Frame, parse_frame};
use conflux_shared::wire::data::DataPacket;
use conflux_shared::wire::handshake::{HandshakeAccept, HandshakeInit, MessageKind};
use conflux_shared::wire::record::{RECORD_LEN, RecordFlow, RingRecord};
use conflux_shared::wire::route::RouteMessage;
use proptest::prelude::*;
use zerocopy::FromBytes;

/// Calls every parser directly, and every accessor of what they accept.
fn feed_every_parser(bytes: &[u8]) {
    let _ = RouteMessage::parse(bytes);

    let mut slot = [0u8; RECORD_LEN];
    let n = bytes.len().min(RECORD_LEN);
    slot[..n].copy_from_slice(&bytes[..n]);
    let rec = RingRecord::read_from_bytes(&slot).expect("128 bytes are a record");
    let _ = rec.decode();
    let _ = rec.decode_flow(RecordFlow::ToWorker);
    let _ = rec.decode_flow(RecordFlow::ToControl);
    let _ = RingRecord::from_bytes(bytes).map(|r| r.decode().map(|d| d.to_record()));

    if let Ok(p) = DataPacket::new_checked(bytes) {
        let _ = (
            p.version(),
            p.packet_type(),
            p.flags(),
            p.key_epoch(),
            p.lane(),
        );
        let _ = (
            p.counter(),
            p.label(),
            p.aad(),
            p.payload_range(),
            p.payload(),
            p.tag(),
        );
    }

    let _ = MessageKind::peek(bytes);
    if let Ok(m) = HandshakeInit::parse(bytes) {
        let _ = (
            m.stream_id(),
            m.initiator(),
            m.responder(),
            m.nonce(),
            m.expires(),
        );
        let _ = (
            m.fingerprint(),
            m.ciphertext(),
            m.membership(),
            m.signed_part(),
            m.signature(),
        );
    }
    if let Ok(m) = HandshakeAccept::parse(bytes) {
        let _ = (
            m.stream_id(),
            m.initiator(),
            m.responder(),
            m.nonce(),
            m.init_hash(),
        );
        let _ = (
            m.expires(),
            m.fingerprint(),
            m.membership(),
            m.signed_part(),
            m.signature(),
        );
    }

    for max in [0, 64, 4096, usize::MAX] {
        if let Ok((frame, used)) = parse_frame(bytes, max) {
            assert!(used <= bytes.len());
            if let Frame::Message { payload, .. } = frame {
                assert!(payload.len() <= max && payload.len() < used);
            }
        }
    }

    for &(_, entry) in TARGETS {
        entry(bytes);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_any_parser(bytes in prop::collection::vec(any::<u8>(), 0..6000)) {
        feed_every_parser(&bytes);
    }

    #[test]
    fn random_short_inputs_never_panic_any_parser(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        feed_every_parser(&bytes);
    }

    #[test]
    fn mutated_valid_messages_are_refused_or_canonical(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let all = seeds();
        let (target, _, mut bytes) = all[which.index(all.len())].clone();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(bytes.len().saturating_sub(8)));
        bytes.extend_from_slice(&extra);
        let entry = TARGETS.iter().find(|t| t.0 == target).unwrap().1;
        // The entry asserts that an accepted input re-emits to exactly its bytes.
        entry(&bytes);
        feed_every_parser(&bytes);
    }
}

#[test]
fn every_seed_survives_every_parser_and_is_accepted_by_its_own() {
    for (target, name, bytes) in seeds() {
        feed_every_parser(&bytes);
        let entry = TARGETS.iter().find(|t| t.0 == target).unwrap().1;
        assert!(entry(&bytes), "{target}: {name} rejected");
    }
}
