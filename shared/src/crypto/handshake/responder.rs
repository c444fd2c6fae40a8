//! The stream destination's side: check the init, derive the key, write the accept.

use super::kdf::{KeyContext, derive_stream_key, transcript_hash};
use super::nonce_cache::NonceCache;
use super::{
    ACCEPT_CONTEXT, Established, HandshakeConfig, HandshakeError, INIT_CONTEXT, Local, Peer,
    check_policy, check_signer, random_nonce, sign_message,
};
use crate::crypto::identity::KemCiphertext;
use crate::wire::WireError;
use crate::wire::handshake::{AcceptRepr, HandshakeInit};

/// Answers inits addressed to this node; one per node, it remembers init nonces.
#[derive(Debug)]
pub struct Responder {
    config: HandshakeConfig,
    seen: NonceCache,
}

impl Responder {
    /// A responder with the given limits.
    pub fn new(config: HandshakeConfig) -> Self {
        Self {
            config,
            seen: NonceCache::new(config.replay_capacity),
        }
    }

    /// Checks an init from `peer` (found by [`HandshakeInit::initiator`]), derives the stream
    /// key, and writes the signed accept into the start of `out`; returns the stream and the
    /// accept's length.
    ///
    /// `out` needs [`ACCEPT_MAX_LEN`](crate::wire::handshake::ACCEPT_MAX_LEN) bytes at most.
    pub fn handle_init(
        &mut self,
        local: &Local<'_>,
        peer: &Peer<'_>,
        init: &[u8],
        now: u64,
        out: &mut [u8],
    ) -> Result<(Established, usize), HandshakeError> {
        let bytes = init;
        let init = HandshakeInit::parse(bytes).map_err(HandshakeError::Malformed)?;
        if init.responder() != local.id {
            return Err(HandshakeError::NotForUs {
                want: local.id,
                got: init.responder(),
            });
        }
        if init.initiator() != peer.id {
            return Err(HandshakeError::WrongPeer {
                want: peer.id,
                got: init.initiator(),
            });
        }
        self.config.check_expiry(init.expires(), now)?;
        self.seen.prune(now);
        if self.seen.contains(init.nonce()) {
            return Err(HandshakeError::Replayed);
        }
        check_signer(
            peer,
            INIT_CONTEXT,
            init.fingerprint(),
            init.signed_part(),
            init.signature(),
        )?;
        check_policy(local.membership, peer.membership, init.membership())?;

        let init_hash = transcript_hash(bytes);
        let repr = AcceptRepr {
            stream_id: init.stream_id(),
            initiator: init.initiator(),
            responder: local.id,
            nonce: random_nonce(),
            init_hash,
            expires: now.saturating_add(self.config.lifetime),
            fingerprint: local.identity.fingerprint().0,
            membership: local.membership,
        };
        // Refuse a short buffer before the nonce is remembered, so the init can be retried.
        if out.len() < repr.buffer_len() {
            return Err(HandshakeError::Emit(WireError::Truncated {
                need: repr.buffer_len(),
                have: out.len(),
            }));
        }
        // Kept until the init would be refused as expired anyway.
        let deadline = init.expires().saturating_add(self.config.max_clock_skew);
        self.seen
            .insert(*init.nonce(), deadline)
            .map_err(|_| HandshakeError::ReplayCacheFull)?;

        let ciphertext = KemCiphertext::from_bytes(init.ciphertext())
            .map_err(|_| HandshakeError::Malformed(WireError::Field("KEM ciphertext")))?;
        let shared = local.identity.decapsulate(&ciphertext);
        let key = derive_stream_key(
            &shared,
            &KeyContext {
                initiator_nonce: init.nonce(),
                responder_nonce: &repr.nonce,
                stream_id: init.stream_id(),
                initiator: init.initiator(),
                responder: local.id,
                init_hash: &init_hash,
            },
        );

        let len = sign_message(local.identity, ACCEPT_CONTEXT, repr.emit(out))?;
        let established = Established {
            stream_id: init.stream_id(),
            initiator: init.initiator(),
            responder: local.id,
            key,
        };
        Ok((established, len))
    }

    /// Init nonces currently remembered against replay.
    pub fn replay_cache_len(&self) -> usize {
        self.seen.len()
    }
}
