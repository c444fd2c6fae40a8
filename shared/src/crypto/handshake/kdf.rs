//! Stream key derivation and the transcript hash.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::identity::SharedSecret;
use crate::crypto::key::{KEY_LEN, NONCE_LEN, StreamKey};
use crate::id::{NodeId, StreamId};
use crate::wire::handshake::{HANDSHAKE_NONCE_LEN, TRANSCRIPT_HASH_LEN};

/// First component of the HKDF info: names the protocol version and the key's purpose.
const STREAM_KEY_LABEL: &[u8] = b"conflux v1 stream key";

/// SHA-256 of a whole init message, which the accept and the key derivation bind to.
pub(super) fn transcript_hash(init: &[u8]) -> [u8; TRANSCRIPT_HASH_LEN] {
    Sha256::digest(init).into()
}

/// Everything the stream key depends on besides the shared secret.
pub(super) struct KeyContext<'a> {
    pub(super) initiator_nonce: &'a [u8; HANDSHAKE_NONCE_LEN],
    pub(super) responder_nonce: &'a [u8; HANDSHAKE_NONCE_LEN],
    pub(super) stream_id: StreamId,
    pub(super) initiator: NodeId,
    pub(super) responder: NodeId,
    pub(super) init_hash: &'a [u8; TRANSCRIPT_HASH_LEN],
}

/// HKDF-SHA256 from the shared secret to the stream's AES-256-GCM key and nonce base.
pub(super) fn derive_stream_key(shared: &SharedSecret, cx: &KeyContext<'_>) -> StreamKey {
    let mut salt = [0u8; 2 * HANDSHAKE_NONCE_LEN];
    salt[..HANDSHAKE_NONCE_LEN].copy_from_slice(cx.initiator_nonce);
    salt[HANDSHAKE_NONCE_LEN..].copy_from_slice(cx.responder_nonce);
    let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(&salt), shared.as_bytes());
    prk.as_mut_slice().zeroize();
    let mut okm = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN]);
    hkdf.expand_multi_info(
        &[
            STREAM_KEY_LABEL,
            &cx.stream_id.0,
            &cx.initiator.0,
            &cx.responder.0,
            cx.init_hash,
        ],
        &mut okm[..],
    )
    .expect("44 bytes is far below HKDF-SHA256's 8160-byte output limit");
    let mut key = StreamKey {
        key: [0; KEY_LEN],
        nonce_base: [0; NONCE_LEN],
    };
    key.key.copy_from_slice(&okm[..KEY_LEN]);
    key.nonce_base.copy_from_slice(&okm[KEY_LEN..]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::NodeIdentity;

    #[test]
    fn every_input_changes_the_key() {
        let node = NodeIdentity::generate();
        let (_, ss) = node.public().encapsulate();
        let (_, other_ss) = node.public().encapsulate();
        let (n1, n2, h) = ([1; 32], [2; 32], [3; 32]);
        let base = KeyContext {
            initiator_nonce: &n1,
            responder_nonce: &n2,
            stream_id: StreamId([4; 16]),
            initiator: NodeId([5; 16]),
            responder: NodeId([6; 16]),
            init_hash: &h,
        };
        let k = derive_stream_key(&ss, &base);
        assert_eq!(k, derive_stream_key(&ss, &base), "deterministic");
        assert_ne!(k.key, [0; KEY_LEN]);
        let x = [9; 32];
        let variants = [
            KeyContext {
                initiator_nonce: &x,
                ..base
            },
            KeyContext {
                responder_nonce: &x,
                ..base
            },
            // Swapped nonces: the salt is ordered, not a set.
            KeyContext {
                initiator_nonce: &n2,
                responder_nonce: &n1,
                ..base
            },
            KeyContext {
                stream_id: StreamId([9; 16]),
                ..base
            },
            KeyContext {
                initiator: NodeId([9; 16]),
                ..base
            },
            KeyContext {
                responder: NodeId([9; 16]),
                ..base
            },
            // Swapped roles: the reverse stream gets a different key.
            KeyContext {
                initiator: NodeId([6; 16]),
                responder: NodeId([5; 16]),
                ..base
            },
            KeyContext {
                init_hash: &x,
                ..base
            },
        ];
        for (i, cx) in variants.iter().enumerate() {
            let other = derive_stream_key(&ss, cx);
            assert_ne!(other.key, k.key, "variant {i}");
            assert_ne!(other.nonce_base, k.nonce_base, "variant {i}");
        }
        assert_ne!(derive_stream_key(&other_ss, &base).key, k.key);
    }

    #[test]
    fn transcript_hash_is_sha256() {
        assert_eq!(
            hex::encode(transcript_hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
