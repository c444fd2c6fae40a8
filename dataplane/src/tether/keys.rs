//! Record keys of a finished DTLS handshake, taken from the library's public state export.
//!
//! `rtc_dtls::state::State::marshal_binary` serializes, with rkyv, the master secret, both
//! randoms, the cipher suite, the epochs and the next local sequence number (it exists so a
//! connection can be resumed elsewhere). `ExportedState` mirrors that layout field for
//! field; rkyv validates the bytes against it before anything is read, so a change of layout
//! in a later release fails loudly here (and in the byte-compatibility tests) rather than
//! yielding wrong keys. The key block is then expanded as RFC 5246 §6.3 says:
//! `PRF(master_secret, "key expansion", server_random ‖ client_random)` cut into
//! client key, server key, client IV, server IV (AEAD suites have no MAC keys).

use aws_lc_rs::hmac;
use rtc_dtls::state::State;
use zeroize::{Zeroize, Zeroizing};

use super::record::{DirectionKey, KEY_LEN, SALT_LEN};

/// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, the only suite the tether offers.
pub const SUITE_ECDHE_ECDSA_AES_128_GCM_SHA256: u16 = 0xc02b;

/// Why keys could not be taken from a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyExportError {
    /// The library refused to export its state (handshake not finished).
    #[error("DTLS state export failed: {0}")]
    Export(String),
    /// The exported bytes do not have the expected layout.
    #[error("DTLS state export has an unexpected layout: {0}")]
    Layout(String),
    /// The negotiated suite is not AES-128-GCM-SHA256.
    #[error("negotiated cipher suite {0:#06x} is not supported by the record path")]
    Suite(u16),
    /// The master secret is not 48 bytes.
    #[error("master secret has {0} bytes, expected 48")]
    MasterSecret(usize),
}

/// Field-for-field mirror of the state rtc-dtls 0.21.1 serializes in `marshal_binary`.
#[derive(rkyv::Archive, rkyv::Serialize)]
#[allow(
    dead_code,
    reason = "only the archived form is read; tests build the native one"
)]
pub(crate) struct ExportedState {
    pub(crate) local_epoch: u16,
    pub(crate) remote_epoch: u16,
    pub(crate) local_random: [u8; 32],
    pub(crate) remote_random: [u8; 32],
    pub(crate) cipher_suite_id: u16,
    pub(crate) master_secret: Vec<u8>,
    pub(crate) sequence_number: u64,
    pub(crate) srtp_protection_profile: u16,
    pub(crate) peer_certificates: Vec<Vec<u8>>,
    pub(crate) identity_hint: Vec<u8>,
    pub(crate) is_client: bool,
}

/// Both directions' record keys and where the local sequence numbers stand.
#[derive(Debug)]
pub struct SessionKeys {
    /// Key for records this end sends.
    pub local: DirectionKey,
    /// Key for records the peer sends.
    pub remote: DirectionKey,
    /// Epoch of this end's records.
    pub local_epoch: u16,
    /// Epoch of the peer's records.
    pub remote_epoch: u16,
    /// The next sequence number the library would have used in `local_epoch`.
    pub next_local_sequence: u64,
    /// Whether this end was the DTLS client.
    pub is_client: bool,
}

/// Takes the record keys out of a completed handshake's state.
pub fn export_session_keys(state: &State) -> Result<SessionKeys, KeyExportError> {
    let mut raw = state
        .marshal_binary()
        .map_err(|e| KeyExportError::Export(e.to_string()))?;
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(raw.len());
    aligned.extend_from_slice(&raw);
    raw.zeroize();
    let keys = keys_from_export(&aligned);
    aligned.as_mut_slice().zeroize();
    keys
}

fn keys_from_export(bytes: &[u8]) -> Result<SessionKeys, KeyExportError> {
    let s = rkyv::access::<ArchivedExportedState, rkyv::rancor::Error>(bytes)
        .map_err(|e| KeyExportError::Layout(e.to_string()))?;
    let suite = s.cipher_suite_id.to_native();
    if suite != SUITE_ECDHE_ECDSA_AES_128_GCM_SHA256 {
        return Err(KeyExportError::Suite(suite));
    }
    let master = s.master_secret.as_slice();
    if master.len() != 48 {
        return Err(KeyExportError::MasterSecret(master.len()));
    }
    let is_client = s.is_client;
    let (client_random, server_random) = if is_client {
        (&s.local_random, &s.remote_random)
    } else {
        (&s.remote_random, &s.local_random)
    };
    let mut seed = [0u8; 13 + 64];
    seed[..13].copy_from_slice(b"key expansion");
    seed[13..45].copy_from_slice(server_random);
    seed[45..].copy_from_slice(client_random);
    let mut block = Zeroizing::new([0u8; 2 * KEY_LEN + 2 * SALT_LEN]);
    prf_sha256(master, &seed, &mut block[..]);
    let take = |off: usize, salt_off: usize| {
        let mut k = DirectionKey {
            key: [0; KEY_LEN],
            salt: [0; SALT_LEN],
        };
        k.key.copy_from_slice(&block[off..off + KEY_LEN]);
        k.salt
            .copy_from_slice(&block[salt_off..salt_off + SALT_LEN]);
        k
    };
    let client = take(0, 2 * KEY_LEN);
    let server = take(KEY_LEN, 2 * KEY_LEN + SALT_LEN);
    let (local, remote) = if is_client {
        (client, server)
    } else {
        (server, client)
    };
    Ok(SessionKeys {
        local,
        remote,
        local_epoch: s.local_epoch.to_native(),
        remote_epoch: s.remote_epoch.to_native(),
        next_local_sequence: s.sequence_number.to_native(),
        is_client,
    })
}

/// TLS 1.2 PRF with HMAC-SHA256 (RFC 5246 §5): `P_SHA256(secret, label ‖ seed)`.
pub(crate) fn prf_sha256(secret: &[u8], label_seed: &[u8], out: &mut [u8]) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    // A(1) = HMAC(secret, seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = Zeroizing::new(hmac::sign(&key, label_seed).as_ref().to_vec());
    for chunk in out.chunks_mut(32) {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&a);
        ctx.update(label_seed);
        let block = ctx.sign();
        chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        let next = hmac::sign(&key, &a);
        a.copy_from_slice(next.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_matches_the_published_tls12_sha256_vector() {
        // The widely used TLS 1.2 PRF-SHA256 test vector (first 32 of its 100 bytes).
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let mut ls = b"test label".to_vec();
        ls.extend_from_slice(&hex("a0ba9f936cda311827a6f796ffd5198c"));
        let mut out = [0u8; 100];
        prf_sha256(&secret, &ls, &mut out);
        assert_eq!(
            out[..32],
            hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")[..]
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn export_of_garbage_is_a_layout_error() {
        let mut bytes = rkyv::util::AlignedVec::<16>::new();
        bytes.extend_from_slice(&[0xffu8; 64]);
        assert!(matches!(
            keys_from_export(&bytes),
            Err(KeyExportError::Layout(_))
        ));
    }

    #[test]
    fn mirrored_export_yields_the_rfc_key_block_split() {
        let st = ExportedState {
            local_epoch: 1,
            remote_epoch: 1,
            local_random: [1; 32],
            remote_random: [2; 32],
            cipher_suite_id: SUITE_ECDHE_ECDSA_AES_128_GCM_SHA256,
            master_secret: vec![3; 48],
            sequence_number: 7,
            srtp_protection_profile: 0,
            peer_certificates: vec![vec![4; 10]],
            identity_hint: vec![],
            is_client: true,
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&st).unwrap();
        let k = keys_from_export(&bytes).unwrap();
        let mut seed = b"key expansion".to_vec();
        seed.extend_from_slice(&[2; 32]);
        seed.extend_from_slice(&[1; 32]);
        let mut block = [0u8; 40];
        prf_sha256(&[3; 48], &seed, &mut block);
        assert_eq!(k.local.key[..], block[..16]);
        assert_eq!(k.remote.key[..], block[16..32]);
        assert_eq!(k.local.salt[..], block[32..36]);
        assert_eq!(k.remote.salt[..], block[36..40]);
        assert_eq!((k.next_local_sequence, k.is_client), (7, true));
    }
}
