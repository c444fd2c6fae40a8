//! The fuzz entry for the router's wire decoder, shared by the fuzz target and the corpus
//! replay test (`controlplane/tests/fuzz_corpus.rs`), so both run exactly the same checks.
//!
//! [`route_exchange`] decodes arbitrary bytes as a neighbour's estimates. Accepted messages
//! must hold every promise `decode` documents, and must survive `encode` then `decode`
//! unchanged (protobuf allows several encodings of one message, so the bytes themselves are
//! not compared). A panic here is always a finding.

use conflux_controlplane::route::exchange::{self, CONFIDENCE_SCALE, MAX_ENTRIES, MAX_PATH};
use conflux_shared::id::NodeId;
use conflux_shared::proto;
use prost::Message;

/// Decodes `data` as estimates from the node it claims to come from; returns whether they
/// were accepted.
pub fn route_exchange(data: &[u8]) -> bool {
    // Taking the claimed sender as the neighbour it arrived from lets the fuzzer past the
    // sender check; a different neighbour must then be refused.
    let claimed = proto::RouteEstimates::decode(data)
        .ok()
        .and_then(|m| <[u8; 16]>::try_from(m.node_id.as_slice()).ok())
        .map(NodeId);
    let from = claimed.unwrap_or(NodeId([0; 16]));
    let other = NodeId(from.0.map(|b| !b));
    assert!(
        exchange::decode(other, data).is_err(),
        "estimates accepted from a node they do not name"
    );
    let Ok(m) = exchange::decode(from, data) else {
        return false;
    };
    assert_eq!(Some(m.sender), claimed, "sender");
    assert!(m.entries.len() <= MAX_ENTRIES && m.wants.len() <= MAX_ENTRIES);
    let mut destinations = std::collections::BTreeSet::new();
    for e in &m.entries {
        assert!(destinations.insert(e.destination), "duplicate destination");
        assert!(
            e.confidence <= CONFIDENCE_SCALE,
            "confidence {}",
            e.confidence
        );
        match e.cost_us {
            None => assert!(e.path.is_empty(), "a withdrawal with a path: {e:?}"),
            Some(cost) => {
                assert_ne!(cost, exchange::WITHDRAWN, "withdrawn cost kept as a cost");
                assert!(
                    !e.path.is_empty() && e.path.len() <= MAX_PATH,
                    "path length"
                );
                assert_eq!(e.path.last(), Some(&e.destination), "path end");
                let mut seen = std::collections::BTreeSet::from([m.sender]);
                assert!(e.path.iter().all(|n| seen.insert(*n)), "path loop: {e:?}");
            }
        }
    }
    let again = exchange::encode(&m);
    assert_eq!(
        exchange::decode(m.sender, &again).as_ref(),
        Ok(&m),
        "estimates do not survive encode and decode"
    );
    true
}
