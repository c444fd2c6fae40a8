//! The estimates neighbours exchange (`RouteEstimates` in `shared/proto/conflux.proto`).
//!
//! A node publishes to each neighbour's inbox `conflux.<realm>.node.<id>.route`: every
//! [`super::RouterConfig::publish_interval`] the entries that changed, every
//! [`super::RouterConfig::full_every`]-th time all of them, and soon after a path is withdrawn.
//! Traffic grows with neighbours and destinations in use, not with the realm (DESIGN §13):
//! a node tracks only destinations that it or a neighbour wants, and a want travels at most
//! the path-length limit.
//!
//! [`decode`] checks untrusted bytes completely; a message it returns has 16-byte ids, no
//! duplicate destination, and paths that end at their destination, repeat no node and do not
//! contain the sender.

use std::collections::BTreeSet;

use conflux_shared::id::NodeId;
use conflux_shared::proto;
use prost::Message;

/// `cost_us` that withdraws a destination.
pub const WITHDRAWN: u32 = u32::MAX;
/// Most estimates or wants in one message.
pub const MAX_ENTRIES: usize = 16_384;
/// Longest path a message may carry, whatever the receiver's own limit.
pub const MAX_PATH: usize = 64;
/// Confidence is carried in per mille.
pub const CONFIDENCE_SCALE: u32 = 1000;

/// Why a received estimates message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExchangeError {
    /// Not a protobuf `RouteEstimates`.
    #[error("route estimates do not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A node id that is not 16 bytes.
    #[error("route estimates carry a {0}-byte node id (want 16)")]
    IdLength(usize),
    /// The message names another sender than the one it came from.
    #[error("route estimates claim to come from another node")]
    WrongSender,
    /// From a node that is not a neighbour.
    #[error("route estimates from a node that is not a neighbour")]
    NotNeighbour,
    /// Sequence not above the last one accepted from that neighbour.
    #[error("route estimates with stale sequence {got} (last {last})")]
    Stale {
        /// The message's sequence.
        got: u64,
        /// The last accepted.
        last: u64,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("route estimates carry {0} entries (most {MAX_ENTRIES})")]
    TooManyEntries(usize),
    /// A destination listed twice.
    #[error("route estimates list a destination twice")]
    DuplicateDestination,
    /// Confidence above [`CONFIDENCE_SCALE`].
    #[error("route estimate confidence {0} above {CONFIDENCE_SCALE}")]
    Confidence(u32),
    /// A path that is not a whole number of ids, is empty or too long, or a withdrawal with a
    /// path.
    #[error("route estimate path of {0} bytes is malformed")]
    PathLength(usize),
    /// A path that does not end at its destination.
    #[error("route estimate path does not end at its destination")]
    PathEnd,
    /// A path that repeats a node or passes through the sender.
    #[error("route estimate path repeats a node")]
    PathLoop,
}

/// One destination's estimate, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The destination.
    pub destination: NodeId,
    /// Cost from the sender, microseconds; `None` withdraws.
    pub cost_us: Option<u32>,
    /// Confidence, per mille.
    pub confidence: u32,
    /// Hops after the sender, ending at the destination; empty when withdrawn.
    pub path: Vec<NodeId>,
}

/// A destination wanted, and how much farther the want may travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// The destination.
    pub destination: NodeId,
    /// Hops the want may still be passed on.
    pub radius: u32,
}

/// A checked estimates message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimates {
    /// The sender.
    pub sender: NodeId,
    /// Strictly increasing per sender.
    pub sequence: u64,
    /// Lists every destination the sender reaches.
    pub full: bool,
    /// The estimates.
    pub entries: Vec<Entry>,
    /// The wants.
    pub wants: Vec<Want>,
}

/// Encodes a message for publication.
pub fn encode(m: &Estimates) -> Vec<u8> {
    let msg = proto::RouteEstimates {
        node_id: m.sender.0.to_vec(),
        sequence: m.sequence,
        full: m.full,
        estimates: m
            .entries
            .iter()
            .map(|e| proto::RouteEstimate {
                destination: e.destination.0.to_vec(),
                cost_us: e.cost_us.unwrap_or(WITHDRAWN),
                confidence: e.confidence,
                path: e.path.iter().flat_map(|n| n.0).collect(),
            })
            .collect(),
        wants: m
            .wants
            .iter()
            .map(|w| proto::RouteWant {
                destination: w.destination.0.to_vec(),
                radius: w.radius,
            })
            .collect(),
    };
    msg.encode_to_vec()
}

/// Decodes and checks a message received from `from`.
pub fn decode(from: NodeId, bytes: &[u8]) -> Result<Estimates, ExchangeError> {
    let msg = proto::RouteEstimates::decode(bytes)?;
    let sender = node_id(&msg.node_id)?;
    if sender != from {
        return Err(ExchangeError::WrongSender);
    }
    let n = msg.estimates.len().max(msg.wants.len());
    if n > MAX_ENTRIES {
        return Err(ExchangeError::TooManyEntries(n));
    }
    let mut seen = BTreeSet::new();
    let mut entries = Vec::with_capacity(msg.estimates.len());
    for e in &msg.estimates {
        let destination = node_id(&e.destination)?;
        if !seen.insert(destination) {
            return Err(ExchangeError::DuplicateDestination);
        }
        if e.confidence > CONFIDENCE_SCALE {
            return Err(ExchangeError::Confidence(e.confidence));
        }
        let withdrawn = e.cost_us == WITHDRAWN;
        let path = path(&e.path, withdrawn)?;
        if !withdrawn {
            check_path(sender, destination, &path)?;
        }
        entries.push(Entry {
            destination,
            cost_us: (!withdrawn).then_some(e.cost_us),
            confidence: e.confidence,
            path,
        });
    }
    let wants = msg
        .wants
        .iter()
        .map(|w| {
            Ok(Want {
                destination: node_id(&w.destination)?,
                radius: w.radius,
            })
        })
        .collect::<Result<_, ExchangeError>>()?;
    Ok(Estimates {
        sender,
        sequence: msg.sequence,
        full: msg.full,
        entries,
        wants,
    })
}

fn node_id(b: &[u8]) -> Result<NodeId, ExchangeError> {
    <[u8; 16]>::try_from(b)
        .map(NodeId)
        .map_err(|_| ExchangeError::IdLength(b.len()))
}

fn path(b: &[u8], withdrawn: bool) -> Result<Vec<NodeId>, ExchangeError> {
    let bad = if withdrawn {
        !b.is_empty()
    } else {
        b.is_empty() || !b.len().is_multiple_of(16) || b.len() / 16 > MAX_PATH
    };
    if bad {
        return Err(ExchangeError::PathLength(b.len()));
    }
    Ok(b.chunks_exact(16)
        .map(|c| NodeId(c.try_into().unwrap_or([0; 16])))
        .collect())
}

fn check_path(sender: NodeId, destination: NodeId, path: &[NodeId]) -> Result<(), ExchangeError> {
    if path.last() != Some(&destination) {
        return Err(ExchangeError::PathEnd);
    }
    let mut seen = BTreeSet::from([sender]);
    if path.iter().all(|n| seen.insert(*n)) {
        Ok(())
    } else {
        Err(ExchangeError::PathLoop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn sample() -> Estimates {
        Estimates {
            sender: id(1),
            sequence: 7,
            full: true,
            entries: vec![
                Entry {
                    destination: id(3),
                    cost_us: Some(12_000),
                    confidence: 900,
                    path: vec![id(2), id(3)],
                },
                Entry {
                    destination: id(4),
                    cost_us: None,
                    confidence: 0,
                    path: vec![],
                },
            ],
            wants: vec![Want {
                destination: id(5),
                radius: 3,
            }],
        }
    }

    fn reencode(f: impl FnOnce(&mut proto::RouteEstimates)) -> Vec<u8> {
        let mut m = proto::RouteEstimates::decode(&encode(&sample())[..]).unwrap();
        f(&mut m);
        m.encode_to_vec()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        assert_eq!(decode(id(1), &encode(&sample())), Ok(sample()));
    }

    #[test]
    fn each_malformed_message_is_refused_with_its_reason() {
        use ExchangeError as E;
        assert_eq!(decode(id(9), &encode(&sample())), Err(E::WrongSender));
        let cases: Vec<(Vec<u8>, ExchangeError)> = vec![
            (
                reencode(|m| m.node_id.pop().map(drop).unwrap_or(())),
                E::IdLength(15),
            ),
            (
                reencode(|m| m.estimates[0].destination = vec![3; 17]),
                E::IdLength(17),
            ),
            (
                reencode(|m| m.estimates[1].destination = vec![3; 16]),
                E::DuplicateDestination,
            ),
            (
                reencode(|m| m.estimates[0].confidence = 1001),
                E::Confidence(1001),
            ),
            (
                reencode(|m| m.estimates[0].path.pop().map(drop).unwrap_or(())),
                E::PathLength(31),
            ),
            (reencode(|m| m.estimates[0].path.clear()), E::PathLength(0)),
            (
                reencode(|m| m.estimates[1].path = vec![4; 16]),
                E::PathLength(16),
            ),
            (
                reencode(|m| m.estimates[0].path = [[3; 16], [2; 16]].concat()),
                E::PathEnd,
            ),
            (
                reencode(|m| m.estimates[0].path = [[3; 16], [3; 16]].concat()),
                E::PathLoop,
            ),
            (
                reencode(|m| m.estimates[0].path = [[1; 16], [3; 16]].concat()),
                E::PathLoop,
            ),
            (
                reencode(|m| m.estimates[0].path = vec![7; 16 * 65]),
                E::PathLength(1040),
            ),
            (reencode(|m| m.wants[0].destination.clear()), E::IdLength(0)),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            assert_eq!(decode(id(1), &bytes), Err(want), "case {i}");
        }
        assert!(matches!(decode(id(1), &[0xff; 9]), Err(E::Decode(_))));
    }

    #[test]
    fn random_and_truncated_bytes_never_panic() {
        let good = encode(&sample());
        for cut in 0..good.len() {
            let _ = decode(id(1), &good[..cut]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(id(1), &bytes);
        }
    }
}
