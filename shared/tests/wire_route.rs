//! Property tests: every route message round-trips, and the packet views never panic.

use conflux_shared::id::{NodeId, StreamId};
use conflux_shared::wire::WireError;
use conflux_shared::wire::route::*;
use proptest::prelude::*;

fn setup() -> impl Strategy<Value = RouteSetup> {
    // Distinct nodes: the source, then the path (its last node is the destination).
    (
        prop::collection::hash_set(any::<[u8; 16]>(), 2..=MAX_HOPS + 1),
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(nodes, route_id, stream, expiry, index)| {
            let nodes: Vec<NodeId> = nodes.into_iter().map(NodeId).collect();
            let path = RoutePath::new(&nodes[1..]).unwrap();
            RouteSetup {
                route_id,
                stream_id: StreamId(stream),
                source: nodes[0],
                destination: path.last(),
                path,
                hop_index: index.index(path.len()) as u8,
                expiry_unix_s: expiry,
            }
        })
}

fn ack() -> impl Strategy<Value = RouteAck> {
    let status = prop::sample::select(vec![
        AckStatus::Accepted,
        AckStatus::Refused,
        AckStatus::NoTether,
        AckStatus::Expired,
        AckStatus::Overloaded,
    ]);
    (any::<u64>(), any::<u8>(), status, any::<u32>()).prop_map(
        |(route_id, hop_index, status, label)| RouteAck {
            route_id,
            hop_index,
            status,
            label: if status == AckStatus::Accepted {
                label
            } else {
                0
            },
        },
    )
}

fn teardown() -> impl Strategy<Value = RouteTeardown> {
    let reason = prop::sample::select(vec![
        TeardownReason::Closed,
        TeardownReason::Idle,
        TeardownReason::HopFailed,
        TeardownReason::Expired,
        TeardownReason::PolicyChanged,
        TeardownReason::Revoked,
    ]);
    (any::<u64>(), reason).prop_map(|(route_id, reason)| RouteTeardown { route_id, reason })
}

fn message() -> impl Strategy<Value = RouteMessage> {
    prop_oneof![
        setup().prop_map(RouteMessage::Setup),
        ack().prop_map(RouteMessage::Ack),
        teardown().prop_map(RouteMessage::Teardown),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let mut buf = vec![0u8; msg.buffer_len()];
        prop_assert_eq!(msg.emit(&mut buf), Ok(buf.len()));
        prop_assert_eq!(buf[0], VERSION);
        prop_assert_eq!(buf[1], msg.msg_type() as u8);
        prop_assert_eq!(RouteMessage::parse(&buf), Ok(msg));
    }

    #[test]
    fn setup_view_reads_what_was_emitted(s in setup()) {
        let mut buf = vec![0u8; s.buffer_len()];
        s.emit(&mut RouteSetupPacket::new_unchecked(&mut buf[..]));
        let p = RouteSetupPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.route_id(), s.route_id);
        prop_assert_eq!(p.stream_id(), s.stream_id);
        prop_assert_eq!(p.source(), s.source);
        prop_assert_eq!(p.destination(), s.destination);
        prop_assert_eq!(p.path(), s.path.as_slice());
        prop_assert_eq!(p.hop_index(), s.hop_index);
        prop_assert_eq!(p.expiry(), s.expiry_unix_s);
    }

    #[test]
    fn walking_a_setup_reaches_the_destination(s in setup()) {
        let mut hop = RouteSetup { hop_index: 0, ..s };
        let mut seen = vec![hop.previous_hop()];
        loop {
            seen.push(hop.this_hop());
            match hop.for_next_hop() {
                Some(next) => hop = next,
                None => break,
            }
        }
        prop_assert_eq!(seen[0], s.source);
        prop_assert_eq!(&seen[1..], s.path.as_slice());
        prop_assert_eq!(hop.this_hop(), s.destination);
    }

    #[test]
    fn a_short_buffer_is_refused_not_overrun(msg in message(), cut in any::<prop::sample::Index>()) {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf).unwrap();
        let short = cut.index(buf.len());
        let refused = matches!(
            RouteMessage::parse(&buf[..short]),
            Err(WireError::Truncated { .. } | WireError::Length(_))
        );
        prop_assert!(refused, "a {}-byte prefix was not refused as short", short);
        let mut small = vec![0u8; short];
        prop_assert_eq!(
            msg.emit(&mut small),
            Err(WireError::Truncated { need: buf.len(), have: short })
        );
    }

    #[test]
    fn views_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(p) = RouteSetupPacket::new_checked(&bytes[..]) {
            let _ = (p.version(), p.msg_type(), p.hop_count(), p.hop_index(), p.reserved());
            let _ = (p.route_id(), p.stream_id(), p.source(), p.destination(), p.expiry());
            prop_assert_eq!(p.path().len(), usize::from(p.hop_count()));
            let _ = RouteSetup::parse(&p);
        }
        if let Ok(p) = RouteAckPacket::new_checked(&bytes[..]) {
            let _ = (p.version(), p.msg_type(), p.hop_index(), p.status(), p.label(), p.route_id());
            let _ = RouteAck::parse(&p);
        }
        if let Ok(p) = RouteTeardownPacket::new_checked(&bytes[..]) {
            let _ = (p.version(), p.msg_type(), p.reason(), p.reserved_is_zero(), p.route_id());
            let _ = RouteTeardown::parse(&p);
        }
        let _ = RouteMessage::parse(&bytes);
    }
}
