//! The two AES-256-GCM implementations behind one in-place, detached-tag interface.
//!
//! Key hygiene: aws-lc-rs keeps the expanded key in an `EVP_AEAD_CTX` that AWS-LC allocates
//! and wipes (`OPENSSL_free` cleanses every allocation) when the key is dropped; `aes-gcm`
//! is built with its `zeroize` feature, which wipes the AES round keys and the GHASH key on
//! drop. Neither prints key material in `Debug`.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::crypto::key::{KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::wire::data::AAD_LEN;

/// Which AES-256-GCM implementation seals and opens packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// AWS-LC through `aws-lc-rs`: stitched AES-NI/VAES + CLMUL assembly, the hot-path choice.
    #[default]
    AwsLc,
    /// RustCrypto `aes-gcm`: portable Rust, the fallback where AWS-LC cannot be built.
    RustCrypto,
}

/// The backend could not set up a key (it failed to allocate its key schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AES-GCM backend could not set up the key")]
pub struct KeyError;

/// The backend refused an operation: a tag mismatch on open, a length limit on seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CipherError;

/// One packet, in place, tag detached; the batch loops are generic over this.
pub(super) trait PacketCipher {
    fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) -> Result<(), CipherError>;

    fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CipherError>;
}

impl PacketCipher for LessSafeKey {
    #[inline]
    fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) -> Result<(), CipherError> {
        let t = self
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                payload,
            )
            .map_err(|_| CipherError)?;
        tag.copy_from_slice(t.as_ref());
        Ok(())
    }

    #[inline]
    fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CipherError> {
        self.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            tag,
            payload,
        )
        .map(|_| ())
        .map_err(|_| CipherError)
    }
}

impl PacketCipher for Aes256Gcm {
    #[inline]
    fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
        tag: &mut [u8; TAG_LEN],
    ) -> Result<(), CipherError> {
        let t = self
            .encrypt_inout_detached(&nonce.into(), aad, payload.into())
            .map_err(|_| CipherError)?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    #[inline]
    fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CipherError> {
        self.decrypt_inout_detached(&nonce.into(), aad, payload.into(), &(*tag).into())
            .map_err(|_| CipherError)
    }
}

/// An expanded key of either backend.
pub(super) enum Cipher {
    AwsLc(LessSafeKey),
    RustCrypto(Box<Aes256Gcm>),
}

impl Cipher {
    /// Expands a key once; every packet of the key's life reuses this schedule.
    pub(super) fn new(backend: Backend, key: &[u8; KEY_LEN]) -> Result<Self, CipherError> {
        Ok(match backend {
            Backend::AwsLc => Self::AwsLc(LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key).map_err(|_| CipherError)?,
            )),
            Backend::RustCrypto => Self::RustCrypto(Box::new(
                Aes256Gcm::new_from_slice(key).map_err(|_| CipherError)?,
            )),
        })
    }

    pub(super) fn backend(&self) -> Backend {
        match self {
            Self::AwsLc(_) => Backend::AwsLc,
            Self::RustCrypto(_) => Backend::RustCrypto,
        }
    }
}

/// The packet nonce: the key's nonce base XOR (0, 0, 0, lane, counter as 8 big-endian bytes).
#[inline]
pub(super) fn packet_nonce(base: &[u8; NONCE_LEN], lane: u8, counter: u64) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    nonce[3] ^= lane;
    for (n, c) in nonce[4..].iter_mut().zip(counter.to_be_bytes()) {
        *n ^= c;
    }
    nonce
}
