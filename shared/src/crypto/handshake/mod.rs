//! The stream handshake, sans-io: one init from the stream's source, one accept back.
//!
//! The initiator encapsulates a fresh secret to the responder's ML-KEM-768 key and signs the
//! init with ML-DSA-65; the responder checks it against the initiator's certificate, answers
//! with a signed accept bound to the init by its hash, and both sides derive the same
//! [`StreamKey`] for the uni-directional stream initiator → responder (DESIGN §4):
//!
//! ```text
//! key ‖ nonce base = HKDF-SHA256(
//!     salt = initiator nonce ‖ responder nonce,
//!     ikm  = ML-KEM-768 shared secret,
//!     info = "conflux v1 stream key" ‖ stream id ‖ initiator id ‖ responder id ‖ SHA-256(init))
//! ```
//!
//! Nothing here does I/O or reads the clock: the caller passes `now` in unix seconds, hands the
//! written messages to the control channel, and looks up the peer's certificate (its
//! [`PublicIdentity`] and [`Membership`]) before calling in; [`HandshakeInit::parse`] tells it
//! who claims to have sent an init.
//!
//! Each side checks, cheapest first: the message parses; it names this node and the expected
//! peer; it has not expired (within [`HandshakeConfig::max_clock_skew`]); (responder) its
//! nonce was not seen before; the signer fingerprint is the peer's; the signature verifies;
//! realm and taints allow the two nodes to talk. A retry is a fresh init: the responder
//! rejects an init it has already answered.
//!
//! [`HandshakeInit::parse`]: crate::wire::handshake::HandshakeInit::parse

mod initiator;
mod kdf;
mod nonce_cache;
mod responder;
#[cfg(test)]
mod tests;

use std::fmt;

pub use initiator::Initiator;
pub use responder::Responder;

use crate::crypto::identity::{
    Fingerprint, NodeIdentity, PublicIdentity, Signature, SigningContext,
};
use crate::crypto::key::StreamKey;
use crate::id::{NodeId, StreamId};
use crate::taint::{Membership, Realm, TaintSet};
use crate::wire::WireError;
use crate::wire::handshake::Unsigned;

/// Signing context of init messages.
pub const INIT_CONTEXT: SigningContext = SigningContext::new(b"conflux v1 handshake init");
/// Signing context of accept messages.
pub const ACCEPT_CONTEXT: SigningContext = SigningContext::new(b"conflux v1 handshake accept");

/// Timing and capacity limits of handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Seconds a message stays valid after it is written.
    pub lifetime: u64,
    /// Seconds two nodes' clocks may disagree by.
    pub max_clock_skew: u64,
    /// Most init nonces the responder remembers at once; more unexpired inits are refused.
    pub replay_capacity: usize,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            lifetime: 30,
            max_clock_skew: 10,
            replay_capacity: 16_384,
        }
    }
}

impl HandshakeConfig {
    /// Rejects a message whose expiry has passed, or lies further ahead than any honest
    /// sender would put it (which also bounds how long the replay cache holds its nonce).
    fn check_expiry(&self, expires: u64, now: u64) -> Result<(), HandshakeError> {
        if now > expires.saturating_add(self.max_clock_skew) {
            return Err(HandshakeError::Expired { expires, now });
        }
        let latest = now
            .saturating_add(self.lifetime)
            .saturating_add(self.max_clock_skew);
        if expires > latest {
            return Err(HandshakeError::ExpiryTooFar { expires, now });
        }
        Ok(())
    }
}

/// This node, as a handshake sees it.
#[derive(Debug, Clone, Copy)]
pub struct Local<'a> {
    /// This node's id.
    pub id: NodeId,
    /// This node's key pairs.
    pub identity: &'a NodeIdentity,
    /// This node's current realm and taints.
    pub membership: &'a Membership,
}

/// The other node, as its certificate describes it.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The peer's id.
    pub id: NodeId,
    /// The peer's certified public keys.
    pub public: &'a PublicIdentity,
    /// The peer's realm and taints as this node last learned them.
    pub membership: &'a Membership,
}

/// A finished handshake: the stream and its key.
#[derive(Debug)]
pub struct Established {
    /// The stream set up.
    pub stream_id: StreamId,
    /// The stream's source.
    pub initiator: NodeId,
    /// The stream's destination.
    pub responder: NodeId,
    /// Key and nonce base of the stream (initiator seals, responder opens).
    pub key: StreamKey,
}

/// Why a handshake message was refused. Callers drop the message and count the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The bytes are not a well-formed message of the expected kind.
    #[error("malformed handshake message: {0}")]
    Malformed(WireError),
    /// The output buffer cannot hold the message to send.
    #[error("cannot write the handshake message: {0}")]
    Emit(WireError),
    /// The message is addressed to another node.
    #[error("message is for node {got}, not this node {want}")]
    NotForUs {
        /// This node.
        want: NodeId,
        /// The node the message names.
        got: NodeId,
    },
    /// The message claims to come from another node than the expected peer.
    #[error("message claims to come from node {got}, expected {want}")]
    WrongPeer {
        /// The expected peer.
        want: NodeId,
        /// The node the message names.
        got: NodeId,
    },
    /// The accept answers another init than the one this initiator sent.
    #[error("accept does not answer this init (stream id or init hash differs)")]
    NotOurInit,
    /// The signer's key is not the one in the peer's certificate.
    #[error("signer {got} is not the expected peer key {want}")]
    WrongSigner {
        /// Fingerprint of the peer's certified key.
        want: Fingerprint,
        /// Fingerprint the message names.
        got: Fingerprint,
    },
    /// The signature does not verify under the peer's key.
    #[error("handshake signature does not verify")]
    BadSignature,
    /// The message's expiry has passed, beyond the clock-skew allowance.
    #[error("message expired at {expires} (now {now})")]
    Expired {
        /// The message's expiry, unix seconds.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// The message's expiry lies further ahead than its lifetime and the skew allow.
    #[error("message expiry {expires} is too far ahead of now ({now})")]
    ExpiryTooFar {
        /// The message's expiry, unix seconds.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// An init whose nonce was already accepted: a replay.
    #[error("replayed handshake init")]
    Replayed,
    /// The replay cache holds its maximum of unexpired nonces.
    #[error("replay cache full: too many handshakes in flight")]
    ReplayCacheFull,
    /// The two nodes are in different realms.
    #[error("peer is in realm {peer}, this node in {local}")]
    WrongRealm {
        /// This node's realm.
        local: Realm,
        /// The peer's realm.
        peer: Realm,
    },
    /// The two nodes' taint sets do not allow them to talk.
    #[error("peer taints {peer} are not compatible with this node's {local}")]
    IncompatibleTaints {
        /// This node's taints.
        local: TaintSet,
        /// The peer's taints.
        peer: TaintSet,
    },
}

/// Checks the talk rule against both what the peer's message claims and what its certificate
/// (or the last taint update) says; either may be the fresher, so both must allow it.
fn check_policy(
    local: &Membership,
    certified: &Membership,
    claimed: &Membership,
) -> Result<(), HandshakeError> {
    for peer in [claimed, certified] {
        if local.realm != peer.realm {
            return Err(HandshakeError::WrongRealm {
                local: local.realm.clone(),
                peer: peer.realm.clone(),
            });
        }
        if !local.may_talk(peer) {
            return Err(HandshakeError::IncompatibleTaints {
                local: local.taints.clone(),
                peer: peer.taints.clone(),
            });
        }
    }
    Ok(())
}

/// Checks that `fingerprint` names the peer's certified key and the signature verifies.
fn check_signer(
    peer: &Peer<'_>,
    ctx: SigningContext,
    fingerprint: &[u8; 32],
    signed: &[u8],
    signature: &[u8],
) -> Result<(), HandshakeError> {
    let want = *peer.public.fingerprint();
    if want.0 != *fingerprint {
        return Err(HandshakeError::WrongSigner {
            want,
            got: Fingerprint(*fingerprint),
        });
    }
    let sig = Signature::from_bytes(signature).map_err(|_| HandshakeError::BadSignature)?;
    peer.public
        .verify(ctx, signed, &sig)
        .map_err(|_| HandshakeError::BadSignature)
}

/// Signs a message written up to its signature for the use `ctx` and appends the
/// signature; returns the whole message's length.
fn sign_message(
    identity: &NodeIdentity,
    ctx: SigningContext,
    unsigned: Result<Unsigned<'_>, WireError>,
) -> Result<usize, HandshakeError> {
    let unsigned = unsigned.map_err(HandshakeError::Emit)?;
    let signature = identity.sign(ctx, unsigned.signed_part());
    unsigned
        .finish(signature.as_bytes())
        .map_err(HandshakeError::Emit)
}

/// A fresh random handshake nonce.
fn random_nonce() -> [u8; crate::wire::handshake::HANDSHAKE_NONCE_LEN] {
    let mut n = [0; crate::wire::handshake::HANDSHAKE_NONCE_LEN];
    getrandom::fill(&mut n).expect("the OS random source is unavailable");
    n
}

impl fmt::Display for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {} from {} to {}",
            self.stream_id, self.initiator, self.responder
        )
    }
}
