//! Presence: a node's signed announcement on `conflux.<realm>.presence`.
//!
//! A presence carries the node's id, its current Guardian certificate and a timestamp, and
//! is signed with the node's ML-DSA-65 key under [`PRESENCE_CONTEXT`]. A receiver believes
//! it only after the certificate verifies (Guardian key, validity, realm), names the same
//! node, and the signature verifies under the certified key.

use std::sync::Arc;

use conflux_shared::crypto::identity::{NodeIdentity, Signature, SigningContext};
use conflux_shared::id::NodeId;
use conflux_shared::proto::{Presence, SignedCertificate, SignedPresence};
use prost::Message;

use super::counters::Ignored;
use super::trust::{Trust, TrustedCert};

/// Domain-separation label of presence signatures.
pub const PRESENCE_CONTEXT: SigningContext = SigningContext::new(b"conflux-v1 presence");

/// Largest presence accepted, in bytes (a certificate and two signatures fit well inside).
pub const MAX_PRESENCE_LEN: usize = 24 * 1024;

/// How far a presence's timestamp may be from the receiver's clock, in milliseconds.
pub const FRESHNESS_MS: u64 = 30_000;

/// Builds and signs a presence of a node that does not relay.
pub fn sign(
    identity: &NodeIdentity,
    node_id: NodeId,
    certificate: &SignedCertificate,
    timestamp_ms: u64,
) -> SignedPresence {
    sign_with(
        identity,
        node_id,
        certificate,
        timestamp_ms,
        false,
        &[],
        &[],
    )
}

/// Builds and signs this node's presence, saying whether it relays, which LAN prefixes
/// it makes reachable and where it answers STUN.
pub fn sign_with(
    identity: &NodeIdentity,
    node_id: NodeId,
    certificate: &SignedCertificate,
    timestamp_ms: u64,
    relay: bool,
    routes: &[String],
    stun: &[String],
) -> SignedPresence {
    let presence = Presence {
        node_id: node_id.0.to_vec(),
        certificate: Some(certificate.clone()),
        timestamp_ms,
        relay,
        routes: routes.to_vec(),
        stun: stun.to_vec(),
    }
    .encode_to_vec();
    let signature = identity
        .sign(PRESENCE_CONTEXT, &presence)
        .as_bytes()
        .to_vec();
    SignedPresence {
        presence,
        signature,
    }
}

/// A presence whose certificate and signature verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The announcing node's certificate.
    pub cert: Arc<TrustedCert>,
    /// The announcement's timestamp, unix milliseconds.
    pub timestamp_ms: u64,
}

/// Decodes untrusted bytes into a signed presence.
pub fn decode(bytes: &[u8]) -> Result<SignedPresence, Ignored> {
    if bytes.len() > MAX_PRESENCE_LEN {
        return Err(Ignored::Malformed);
    }
    SignedPresence::decode(bytes).map_err(|_| Ignored::Malformed)
}

/// The node id a presence claims, before anything is verified (for rate limiting).
pub fn claimed_node(signed: &SignedPresence) -> Result<(NodeId, Presence), Ignored> {
    let p = Presence::decode(signed.presence.as_slice()).map_err(|_| Ignored::Malformed)?;
    let id = <[u8; 16]>::try_from(p.node_id.as_slice()).map_err(|_| Ignored::Malformed)?;
    Ok((NodeId(id), p))
}

/// Verifies a decoded presence at `now_ms` (unix milliseconds). Freshness against earlier
/// presences of the same node is the caller's check.
pub fn verify(
    signed: &SignedPresence,
    presence: &Presence,
    claimed: NodeId,
    trust: &mut Trust,
    now_ms: u64,
) -> Result<Verified, Ignored> {
    if presence.timestamp_ms.abs_diff(now_ms) > FRESHNESS_MS {
        return Err(Ignored::Stale);
    }
    let certificate = presence.certificate.as_ref().ok_or(Ignored::Malformed)?;
    let cert = trust.verify(certificate, now_ms / 1000)?;
    if cert.node_id != claimed {
        return Err(Ignored::BadCertificate);
    }
    let sig = Signature::from_bytes(&signed.signature).map_err(|_| Ignored::BadSignature)?;
    cert.identity
        .verify(PRESENCE_CONTEXT, &signed.presence, &sig)
        .map_err(|_| Ignored::BadSignature)?;
    Ok(Verified {
        cert,
        timestamp_ms: presence.timestamp_ms,
    })
}
