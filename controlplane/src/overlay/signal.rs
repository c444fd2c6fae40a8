//! Signals between control processes: how they are wrapped, signed and checked.
//!
//! A [`Signal`] names its sender and receiver and carries the sender's clock; it travels
//! inside a [`SignedSignal`] on the receiver's signal subject (NATS request/reply). The
//! receiver checks the signature with the sender's certified key (the node core does), the
//! addressee and the age, and ignores (and counts) anything else.

use conflux_shared::id::NodeId;
use conflux_shared::proto::{
    Signal, SignedSignal, TetherAnswer, TetherOffer, TetherTrickle, signal::Body,
};
use prost::Message;

/// Signals older or newer than this are ignored.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Largest signal accepted.
pub const MAX_SIGNAL_LEN: usize = 16 * 1024;

/// What a signal carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A tether offer.
    Offer(TetherOffer),
    /// The answer to an offer.
    Answer(TetherAnswer),
    /// A route message (set-up, ack, tear-down) in its wire form.
    Route(Vec<u8>),
    /// The router's estimates for a neighbour (no reply).
    Estimates(Vec<u8>),
    /// Candidates learned after the offer or answer (no reply).
    Trickle(TetherTrickle),
}

impl Payload {
    /// Sent without a reply subject: no answer is expected.
    pub fn is_notify(&self) -> bool {
        matches!(self, Self::Estimates(_) | Self::Trickle(_))
    }
}

/// Why a signal was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// It does not decode, or a field has the wrong shape.
    #[error("malformed signal")]
    Malformed,
    /// It is addressed to another node.
    #[error("signal for another node")]
    NotForUs,
    /// Its timestamp is too far from this node's clock.
    #[error("stale signal")]
    Stale,
}

/// A decoded signal whose signature is still to be checked.
#[derive(Debug)]
pub struct Received {
    /// The claimed sender.
    pub from: NodeId,
    /// The signed bytes.
    pub signal: Vec<u8>,
    /// The signature over them.
    pub signature: Vec<u8>,
    /// What it carries.
    pub payload: Payload,
}

fn node_id(b: &[u8]) -> Result<NodeId, SignalError> {
    <[u8; 16]>::try_from(b)
        .map(NodeId)
        .map_err(|_| SignalError::Malformed)
}

/// Builds the signed bytes of a signal (sign them with the node's key, then [`wrap`]).
pub fn encode(from: NodeId, to: NodeId, now_unix_ms: u64, payload: Payload) -> Vec<u8> {
    let body = match payload {
        Payload::Offer(o) => Body::TetherOffer(o),
        Payload::Answer(a) => Body::TetherAnswer(a),
        Payload::Route(r) => Body::Route(r),
        Payload::Estimates(e) => Body::Estimates(e),
        Payload::Trickle(t) => Body::TetherTrickle(t),
    };
    Signal {
        from: from.0.to_vec(),
        to: to.0.to_vec(),
        timestamp_ms: now_unix_ms,
        body: Some(body),
    }
    .encode_to_vec()
}

/// Wraps signed bytes and their signature for the wire.
pub fn wrap(signal: Vec<u8>, signature: Vec<u8>) -> Vec<u8> {
    SignedSignal { signal, signature }.encode_to_vec()
}

/// Decodes a signal from the wire and checks its addressee and age (not its signature).
pub fn decode(bytes: &[u8], me: NodeId, now_unix_ms: u64) -> Result<Received, SignalError> {
    if bytes.len() > MAX_SIGNAL_LEN {
        return Err(SignalError::Malformed);
    }
    let signed = SignedSignal::decode(bytes).map_err(|_| SignalError::Malformed)?;
    let s = Signal::decode(signed.signal.as_slice()).map_err(|_| SignalError::Malformed)?;
    let from = node_id(&s.from)?;
    if node_id(&s.to)? != me {
        return Err(SignalError::NotForUs);
    }
    if s.timestamp_ms.abs_diff(now_unix_ms) > MAX_SKEW_MS {
        return Err(SignalError::Stale);
    }
    let payload = match s.body.ok_or(SignalError::Malformed)? {
        Body::TetherOffer(o) => Payload::Offer(o),
        Body::TetherAnswer(a) => Payload::Answer(a),
        Body::Route(r) => Payload::Route(r),
        Body::Estimates(e) => Payload::Estimates(e),
        Body::TetherTrickle(t) => Payload::Trickle(t),
    };
    Ok(Received {
        from,
        signal: signed.signal,
        signature: signed.signature,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let (a, b) = (NodeId([1; 16]), NodeId([2; 16]));
        let s = encode(a, b, 1_000_000, Payload::Route(vec![1, 2, 3]));
        let w = wrap(s.clone(), vec![9; 4]);
        let r = decode(&w, b, 1_000_500).unwrap();
        assert_eq!(r.from, a);
        assert_eq!(r.signal, s);
        assert_eq!(r.payload, Payload::Route(vec![1, 2, 3]));
        assert_eq!(decode(&w, a, 1_000_000).unwrap_err(), SignalError::NotForUs);
        assert_eq!(decode(&w, b, 2_000_000).unwrap_err(), SignalError::Stale);
        assert_eq!(
            decode(&w[..w.len() - 3], b, 1_000_000).unwrap_err(),
            SignalError::Malformed
        );
        assert_eq!(
            decode(&[0xff; 40], b, 0).unwrap_err(),
            SignalError::Malformed
        );
    }
}
