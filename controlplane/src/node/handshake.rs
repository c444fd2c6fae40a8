//! The stream handshake carried over NATS request/reply.
//!
//! The request (`HandshakeRequest`) holds the initiator's latest signed presence and the
//! shared crate's init; the reply is the accept as it is. The key fingerprint lets an
//! operator compare both ends of a stream without ever seeing the key.

use conflux_shared::crypto::handshake::HandshakeError;
use conflux_shared::crypto::identity::SIGNATURE_LEN;
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::wire::handshake::{ACCEPT_MAX_LEN, INIT_MAX_LEN};
use sha2::{Digest, Sha256};

use super::counters::Ignored;
use super::presence::MAX_PRESENCE_LEN;

/// Largest handshake request accepted, in bytes.
pub const MAX_REQUEST_LEN: usize = MAX_PRESENCE_LEN + INIT_MAX_LEN + 64;

/// Scratch space that fits any init or accept.
pub const SCRATCH_LEN: usize = if INIT_MAX_LEN > ACCEPT_MAX_LEN {
    INIT_MAX_LEN
} else {
    ACCEPT_MAX_LEN
};

const _: () = assert!(SCRATCH_LEN > SIGNATURE_LEN);

/// Hex digits in a key fingerprint.
pub const KEY_FINGERPRINT_HEX: usize = 16;

/// A short, one-way fingerprint of a stream key: equal on both ends of a stream, useless for
/// recovering the key.
pub fn key_fingerprint(key: &StreamKey) -> String {
    let mut h = Sha256::new();
    h.update(b"conflux-v1 stream key fingerprint");
    h.update(key.key);
    h.update(key.nonce_base);
    let d = h.finalize();
    hex::encode(&d[..KEY_FINGERPRINT_HEX / 2])
}

/// The counter a refused handshake message goes to.
pub fn ignored(e: &HandshakeError) -> Ignored {
    match e {
        HandshakeError::Malformed(_) | HandshakeError::Emit(_) => Ignored::Malformed,
        HandshakeError::NotForUs { .. }
        | HandshakeError::WrongPeer { .. }
        | HandshakeError::NotOurInit
        | HandshakeError::WrongSigner { .. } => Ignored::BadHandshake,
        HandshakeError::BadSignature => Ignored::BadSignature,
        HandshakeError::Expired { .. } | HandshakeError::ExpiryTooFar { .. } => Ignored::Stale,
        HandshakeError::Replayed => Ignored::Replayed,
        HandshakeError::ReplayCacheFull => Ignored::RateLimited,
        HandshakeError::WrongRealm { .. } => Ignored::WrongRealm,
        HandshakeError::IncompatibleTaints { .. } => Ignored::Policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_shared::crypto::key::{KEY_LEN, NONCE_LEN};

    #[test]
    fn fingerprint_names_the_key_without_showing_it() {
        let k = StreamKey {
            key: [0x11; KEY_LEN],
            nonce_base: [0x22; NONCE_LEN],
        };
        let mut other = k.clone();
        other.key[0] ^= 1;
        let f = key_fingerprint(&k);
        assert_eq!(f.len(), KEY_FINGERPRINT_HEX);
        assert_eq!(f, key_fingerprint(&k.clone()));
        assert_ne!(f, key_fingerprint(&other));
        assert!(!f.contains("1111") && !f.contains("2222"));
    }
}
