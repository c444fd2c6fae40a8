//! The stream source's side: write the init, check the accept, derive the key.

use std::fmt;

use super::kdf::{KeyContext, derive_stream_key, transcript_hash};
use super::{
    ACCEPT_CONTEXT, Established, HandshakeConfig, HandshakeError, INIT_CONTEXT, Local, Peer,
    check_policy, check_signer, random_nonce, sign_message,
};
use crate::crypto::identity::SharedSecret;
use crate::id::{NodeId, StreamId};
use crate::wire::handshake::{HANDSHAKE_NONCE_LEN, HandshakeAccept, InitRepr, TRANSCRIPT_HASH_LEN};

/// A handshake this node started and whose accept it awaits.
///
/// Checking an accept does not consume it, so a forged or stale accept does not cancel the
/// handshake; drop it once [`Initiator::handle_accept`] succeeds or [`Initiator::expires`]
/// passes. Its shared secret is wiped on drop.
pub struct Initiator {
    config: HandshakeConfig,
    stream_id: StreamId,
    local: NodeId,
    peer: NodeId,
    nonce: [u8; HANDSHAKE_NONCE_LEN],
    init_hash: [u8; TRANSCRIPT_HASH_LEN],
    expires: u64,
    shared: SharedSecret,
}

impl Initiator {
    /// Starts a handshake for `stream_id` to `peer`: writes the signed init into the start of
    /// `out` and returns the initiator with the init's length. Refuses a peer that realm and
    /// taints do not allow this node to talk to.
    ///
    /// `out` needs [`INIT_MAX_LEN`](crate::wire::handshake::INIT_MAX_LEN) bytes at most.
    pub fn start(
        config: &HandshakeConfig,
        local: &Local<'_>,
        peer: &Peer<'_>,
        stream_id: StreamId,
        now: u64,
        out: &mut [u8],
    ) -> Result<(Self, usize), HandshakeError> {
        check_policy(local.membership, peer.membership, peer.membership)?;
        let nonce = random_nonce();
        let expires = now.saturating_add(config.lifetime);
        let (ciphertext, shared) = peer.public.encapsulate();
        let repr = InitRepr {
            stream_id,
            initiator: local.id,
            responder: peer.id,
            nonce,
            expires,
            fingerprint: local.identity.fingerprint().0,
            ciphertext: ciphertext.as_array(),
            membership: local.membership,
        };
        let len = sign_message(local.identity, INIT_CONTEXT, repr.emit(out))?;
        let initiator = Self {
            config: *config,
            stream_id,
            local: local.id,
            peer: peer.id,
            nonce,
            init_hash: transcript_hash(&out[..len]),
            expires,
            shared,
        };
        Ok((initiator, len))
    }

    /// The stream this handshake sets up.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// The stream's destination.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// When the init expires (unix seconds); no accept is taken after it and the skew.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Checks the peer's accept and derives the stream key.
    ///
    /// `local` and `peer` are as for [`Initiator::start`], with the memberships current now.
    pub fn handle_accept(
        &self,
        local: &Local<'_>,
        peer: &Peer<'_>,
        accept: &[u8],
        now: u64,
    ) -> Result<Established, HandshakeError> {
        let accept = HandshakeAccept::parse(accept).map_err(HandshakeError::Malformed)?;
        if accept.initiator() != self.local {
            return Err(HandshakeError::NotForUs {
                want: self.local,
                got: accept.initiator(),
            });
        }
        if accept.responder() != self.peer || peer.id != self.peer {
            return Err(HandshakeError::WrongPeer {
                want: self.peer,
                got: accept.responder(),
            });
        }
        if accept.stream_id() != self.stream_id || accept.init_hash() != &self.init_hash {
            return Err(HandshakeError::NotOurInit);
        }
        self.config.check_expiry(accept.expires(), now)?;
        check_signer(
            peer,
            ACCEPT_CONTEXT,
            accept.fingerprint(),
            accept.signed_part(),
            accept.signature(),
        )?;
        check_policy(local.membership, peer.membership, accept.membership())?;
        let key = derive_stream_key(
            &self.shared,
            &KeyContext {
                initiator_nonce: &self.nonce,
                responder_nonce: accept.nonce(),
                stream_id: self.stream_id,
                initiator: self.local,
                responder: self.peer,
                init_hash: &self.init_hash,
            },
        );
        Ok(Established {
            stream_id: self.stream_id,
            initiator: self.local,
            responder: self.peer,
            key,
        })
    }
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("stream_id", &self.stream_id)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}
