//! Node identity: an ML-DSA-65 signing key pair and an ML-KEM-768 key pair (DESIGN §4).
//!
//! A node generates its identity at each start and keeps it in memory only; Guardian certifies
//! the public half. The same signing API serves every use of ML-DSA in Conflux (handshakes,
//! certificates, tether fingerprints): detached signatures over arbitrary bytes, each use
//! bound to its own [`SigningContext`] so a signature made for one purpose never verifies for
//! another.
//!
//! Secret keys live in heap boxes that are wiped on drop, so moving an identity leaves no
//! copies behind; shared secrets are wiped on drop. No `Debug` output shows secret bytes.

use std::fmt;

use pqcrypto_mldsa::mldsa65;
use pqcrypto_mlkem::mlkem768;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SharedSecret as _};
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an ML-DSA-65 public key.
pub const DSA_PUBLIC_KEY_LEN: usize = mldsa65::public_key_bytes();
/// Length of an ML-DSA-65 signature.
pub const SIGNATURE_LEN: usize = mldsa65::signature_bytes();
/// Length of an ML-KEM-768 public (encapsulation) key.
pub const KEM_PUBLIC_KEY_LEN: usize = mlkem768::public_key_bytes();
/// Length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = mlkem768::ciphertext_bytes();
/// Length of an ML-KEM-768 shared secret.
pub const SHARED_SECRET_LEN: usize = mlkem768::shared_secret_bytes();
/// Length of a key fingerprint (SHA-256).
pub const FINGERPRINT_LEN: usize = 32;
/// Length of an ML-DSA-65 secret key.
pub const DSA_SECRET_KEY_LEN: usize = mldsa65::secret_key_bytes();
/// Length of [`SigningKey::to_bytes`]: the secret key, then the public key.
pub const SIGNING_KEY_LEN: usize = DSA_SECRET_KEY_LEN + DSA_PUBLIC_KEY_LEN;

/// Why key material or a signature from outside was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A public key, ciphertext or signature of the wrong length.
    #[error("{what} must be {want} bytes, got {got}")]
    Length {
        /// Which object was being parsed.
        what: &'static str,
        /// Bytes it must have.
        want: usize,
        /// Bytes that were given.
        got: usize,
    },
    /// The signature does not verify under this key and context.
    #[error("signature does not verify")]
    BadSignature,
    /// A stored signing key whose secret and public halves do not belong together.
    #[error("secret and public signing key do not match")]
    KeyMismatch,
}

fn check_len(what: &'static str, want: usize, got: usize) -> Result<(), IdentityError> {
    if got == want {
        Ok(())
    } else {
        Err(IdentityError::Length { what, want, got })
    }
}

/// Decodes exactly `want` bytes with `decode`; a wrong length, or bytes `decode` refuses,
/// is reported as a [`IdentityError::Length`] of `what`.
fn decode<T, E>(
    what: &'static str,
    want: usize,
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, IdentityError> {
    check_len(what, want, bytes.len())?;
    decode(bytes).map_err(|_| IdentityError::Length {
        what,
        want,
        got: bytes.len(),
    })
}

/// A domain-separation label for one use of signatures (FIPS 204 context string, ≤ 255 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigningContext(&'static [u8]);

impl SigningContext {
    /// Wraps a label; used in a `const`, a label longer than 255 bytes fails to compile.
    pub const fn new(label: &'static [u8]) -> Self {
        assert!(
            label.len() <= 255,
            "ML-DSA context strings hold at most 255 bytes"
        );
        Self(label)
    }

    /// The label's bytes.
    pub const fn as_bytes(&self) -> &'static [u8] {
        self.0
    }
}

impl fmt::Debug for SigningContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningContext({:?})", String::from_utf8_lossy(self.0))
    }
}

/// SHA-256 of an ML-DSA-65 public key: how certificates and handshakes name a signer.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

impl Fingerprint {
    /// The fingerprint of an encoded ML-DSA-65 public key.
    pub fn of(dsa_public_key: &[u8]) -> Self {
        Self(Sha256::digest(dsa_public_key).into())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(self.0))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A detached ML-DSA-65 signature.
#[derive(Clone, Copy)]
pub struct Signature(mldsa65::DetachedSignature);

impl Signature {
    /// Parses an encoded signature; it must be exactly [`SIGNATURE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        decode("ML-DSA-65 signature", SIGNATURE_LEN, bytes, |b| {
            mldsa65::DetachedSignature::from_bytes(b)
        })
        .map(Self)
    }

    /// The encoded signature.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({} bytes)", self.as_bytes().len())
    }
}

/// An ML-DSA-65 public key with its fingerprint.
#[derive(Clone)]
pub struct VerifyingKey {
    key: mldsa65::PublicKey,
    fingerprint: Fingerprint,
}

impl VerifyingKey {
    fn new(key: mldsa65::PublicKey) -> Self {
        let fingerprint = Fingerprint::of(key.as_bytes());
        Self { key, fingerprint }
    }

    /// Parses an encoded public key; it must be exactly [`DSA_PUBLIC_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        decode("ML-DSA-65 public key", DSA_PUBLIC_KEY_LEN, bytes, |b| {
            mldsa65::PublicKey::from_bytes(b)
        })
        .map(Self::new)
    }

    /// The encoded public key.
    pub fn as_bytes(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// SHA-256 of the encoded key.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Checks a detached signature over `msg` made for `ctx`.
    pub fn verify(
        &self,
        ctx: SigningContext,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), IdentityError> {
        mldsa65::verify_detached_signature_ctx(&sig.0, msg, ctx.as_bytes(), &self.key)
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.fingerprint)
    }
}

/// Overwrites every byte of a pqcrypto secret value, which has no `Drop` of its own.
///
/// The `const` assertions prove each type is exactly its byte array (no padding, no other
/// field), which is what makes the byte view sound.
macro_rules! wipe_fn {
    ($name:ident, $t:ty, $len:expr) => {
        fn $name(v: &mut $t) {
            const _: () = assert!(size_of::<$t>() == $len);
            // SAFETY: `$t` is pqcrypto's newtype over `[u8; $len]` and the assertion above shows
            // its storage is exactly those `$len` initialized bytes, so viewing it as a byte
            // slice is valid, and any bytes written (zeros) leave a valid value. The borrow of
            // `v` is exclusive for the slice's lifetime.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(std::ptr::from_mut(v).cast::<u8>(), $len) };
            bytes.zeroize();
        }
    };
}

wipe_fn!(
    wipe_dsa_secret,
    mldsa65::SecretKey,
    mldsa65::secret_key_bytes()
);
wipe_fn!(
    wipe_kem_secret,
    mlkem768::SecretKey,
    mlkem768::secret_key_bytes()
);
wipe_fn!(wipe_kem_shared, mlkem768::SharedSecret, SHARED_SECRET_LEN);

/// Moves a secret value to the heap and wipes the stack copy it came from.
fn box_secret<T: Copy>(mut v: T, wipe: fn(&mut T)) -> Box<T> {
    let boxed = Box::new(v);
    wipe(&mut v);
    boxed
}

/// An ML-DSA-65 key pair: signs on behalf of a node (or of Guardian).
pub struct SigningKey {
    secret: Box<mldsa65::SecretKey>,
    public: VerifyingKey,
}

impl SigningKey {
    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let (pk, sk) = mldsa65::keypair();
        Self {
            secret: box_secret(sk, wipe_dsa_secret),
            public: VerifyingKey::new(pk),
        }
    }

    /// A detached signature over `msg` for the use named by `ctx`.
    pub fn sign(&self, ctx: SigningContext, msg: &[u8]) -> Signature {
        Signature(mldsa65::detached_sign_ctx(
            msg,
            ctx.as_bytes(),
            &self.secret,
        ))
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key pair as bytes (secret key, then public key), for a service that keeps its
    /// signing key across restarts; the buffer is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SIGNING_KEY_LEN));
        out.extend_from_slice(self.secret.as_bytes());
        out.extend_from_slice(self.public.as_bytes());
        out
    }

    /// Restores a key pair written by [`SigningKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        const WHAT: &str = "ML-DSA-65 signing key";
        check_len(WHAT, SIGNING_KEY_LEN, bytes.len())?;
        let (secret, public) = bytes.split_at(DSA_SECRET_KEY_LEN);
        let public = VerifyingKey::from_bytes(public)?;
        let secret = mldsa65::SecretKey::from_bytes(secret).map_err(|_| IdentityError::Length {
            what: WHAT,
            want: SIGNING_KEY_LEN,
            got: bytes.len(),
        })?;
        let key = Self {
            secret: box_secret(secret, wipe_dsa_secret),
            public,
        };
        // Halves that do not belong together would sign what no one can verify: probe once.
        const PROBE: SigningContext = SigningContext::new(b"conflux v1 key pair check");
        let sig = key.sign(PROBE, &[]);
        key.public
            .verify(PROBE, &[], &sig)
            .map_err(|_| IdentityError::KeyMismatch)?;
        Ok(key)
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        wipe_dsa_secret(&mut self.secret);
    }
}

impl ZeroizeOnDrop for SigningKey {}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({}, <secret redacted>)",
            self.public.fingerprint
        )
    }
}

/// An ML-KEM-768 ciphertext: what an encapsulation sends to the key's owner.
#[derive(Clone, Copy)]
pub struct KemCiphertext(mlkem768::Ciphertext);

impl KemCiphertext {
    /// Parses an encoded ciphertext; it must be exactly [`KEM_CIPHERTEXT_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        decode("ML-KEM-768 ciphertext", KEM_CIPHERTEXT_LEN, bytes, |b| {
            mlkem768::Ciphertext::from_bytes(b)
        })
        .map(Self)
    }

    /// The encoded ciphertext.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The encoded ciphertext as a fixed-size array.
    pub fn as_array(&self) -> &[u8; KEM_CIPHERTEXT_LEN] {
        self.0
            .as_bytes()
            .try_into()
            .expect("pqcrypto's ML-KEM-768 ciphertext is a KEM_CIPHERTEXT_LEN-byte array")
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemCiphertext({} bytes)", self.as_bytes().len())
    }
}

/// An ML-KEM-768 shared secret; wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret([u8; SHARED_SECRET_LEN]);

impl SharedSecret {
    fn take(mut ss: mlkem768::SharedSecret) -> Self {
        let mut out = Self([0; SHARED_SECRET_LEN]);
        out.0.copy_from_slice(ss.as_bytes());
        wipe_kem_shared(&mut ss);
        out
    }

    /// The secret's bytes, for key derivation.
    pub fn as_bytes(&self) -> &[u8; SHARED_SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// An ML-KEM-768 public key: anyone may encapsulate a secret to its owner.
#[derive(Clone)]
pub struct KemPublicKey(mlkem768::PublicKey);

impl KemPublicKey {
    /// Parses an encoded key; it must be exactly [`KEM_PUBLIC_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        decode("ML-KEM-768 public key", KEM_PUBLIC_KEY_LEN, bytes, |b| {
            mlkem768::PublicKey::from_bytes(b)
        })
        .map(Self)
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// A fresh shared secret and the ciphertext that lets the key's owner recover it.
    pub fn encapsulate(&self) -> (KemCiphertext, SharedSecret) {
        let (ss, ct) = mlkem768::encapsulate(&self.0);
        (KemCiphertext(ct), SharedSecret::take(ss))
    }
}

impl PartialEq for KemPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KemPublicKey {}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemPublicKey({})", Fingerprint::of(self.as_bytes()))
    }
}

/// What a node's certificate publishes: its ML-DSA-65 and ML-KEM-768 public keys.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicIdentity {
    dsa: VerifyingKey,
    kem: KemPublicKey,
}

impl PublicIdentity {
    /// Parses both encoded public keys.
    pub fn from_bytes(dsa_public_key: &[u8], kem_public_key: &[u8]) -> Result<Self, IdentityError> {
        Ok(Self {
            dsa: VerifyingKey::from_bytes(dsa_public_key)?,
            kem: KemPublicKey::from_bytes(kem_public_key)?,
        })
    }

    /// The ML-DSA-65 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.dsa
    }

    /// The ML-KEM-768 public key.
    pub fn kem_key(&self) -> &KemPublicKey {
        &self.kem
    }

    /// The encoded ML-DSA-65 public key.
    pub fn dsa_bytes(&self) -> &[u8] {
        self.dsa.as_bytes()
    }

    /// The encoded ML-KEM-768 public key.
    pub fn kem_bytes(&self) -> &[u8] {
        self.kem.as_bytes()
    }

    /// SHA-256 of the ML-DSA-65 public key.
    pub fn fingerprint(&self) -> &Fingerprint {
        self.dsa.fingerprint()
    }

    /// Checks a detached signature by this node over `msg` made for `ctx`.
    pub fn verify(
        &self,
        ctx: SigningContext,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), IdentityError> {
        self.dsa.verify(ctx, msg, sig)
    }

    /// A fresh shared secret for this node and the ciphertext to send it.
    pub fn encapsulate(&self) -> (KemCiphertext, SharedSecret) {
        self.kem.encapsulate()
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", self.dsa.fingerprint)
    }
}

/// A node's key pairs, generated at start and held in memory only.
pub struct NodeIdentity {
    signing: SigningKey,
    kem_secret: Box<mlkem768::SecretKey>,
    public: PublicIdentity,
}

impl NodeIdentity {
    /// Fresh ML-DSA-65 and ML-KEM-768 key pairs from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let signing = SigningKey::generate();
        let (kem_pk, kem_sk) = mlkem768::keypair();
        let public = PublicIdentity {
            dsa: signing.verifying_key().clone(),
            kem: KemPublicKey(kem_pk),
        };
        Self {
            signing,
            kem_secret: box_secret(kem_sk, wipe_kem_secret),
            public,
        }
    }

    /// A detached signature over `msg` for the use named by `ctx`.
    pub fn sign(&self, ctx: SigningContext, msg: &[u8]) -> Signature {
        self.signing.sign(ctx, msg)
    }

    /// The public half, as a certificate carries it.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// SHA-256 of this node's ML-DSA-65 public key.
    pub fn fingerprint(&self) -> &Fingerprint {
        self.public.fingerprint()
    }

    /// Recovers the shared secret from a ciphertext made for this node's ML-KEM key.
    ///
    /// ML-KEM rejects implicitly: a ciphertext not made for this key yields an unrelated
    /// secret, never an error, so the handshake signature is what authenticates it.
    pub fn decapsulate(&self, ct: &KemCiphertext) -> SharedSecret {
        SharedSecret::take(mlkem768::decapsulate(&ct.0, &self.kem_secret))
    }
}

impl Drop for NodeIdentity {
    fn drop(&mut self) {
        wipe_kem_secret(&mut self.kem_secret);
    }
}

impl ZeroizeOnDrop for NodeIdentity {}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeIdentity({}, <secrets redacted>)",
            self.public.dsa.fingerprint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqcrypto_traits::kem::SecretKey as _;

    const CTX: SigningContext = SigningContext::new(b"conflux test v1");
    const OTHER_CTX: SigningContext = SigningContext::new(b"conflux other v1");

    #[test]
    fn signature_verifies_only_for_its_key_message_and_context() {
        let a = NodeIdentity::generate();
        let b = NodeIdentity::generate();
        let sig = a.sign(CTX, b"hello");
        assert_eq!(sig.as_bytes().len(), SIGNATURE_LEN);
        assert_eq!(a.public().verify(CTX, b"hello", &sig), Ok(()));
        assert_eq!(
            a.public().verify(CTX, b"hellO", &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            a.public().verify(OTHER_CTX, b"hello", &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            b.public().verify(CTX, b"hello", &sig),
            Err(IdentityError::BadSignature)
        );
        let mut bytes = sig.as_bytes().to_vec();
        bytes[100] ^= 1;
        let flipped = Signature::from_bytes(&bytes).unwrap();
        assert_eq!(
            a.public().verify(CTX, b"hello", &flipped),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn encapsulation_agrees_with_decapsulation() {
        let a = NodeIdentity::generate();
        let (ct, ss) = a.public().encapsulate();
        assert_eq!(ct.as_bytes().len(), KEM_CIPHERTEXT_LEN);
        assert_eq!(a.decapsulate(&ct), ss);
        // Implicit rejection: another node's key yields a different secret, not an error.
        let b = NodeIdentity::generate();
        assert_ne!(b.decapsulate(&ct), ss);
    }

    #[test]
    fn public_identity_round_trips_through_bytes() {
        let a = NodeIdentity::generate();
        let p = PublicIdentity::from_bytes(a.public().dsa_bytes(), a.public().kem_bytes()).unwrap();
        assert_eq!(&p, a.public());
        assert_eq!(p.fingerprint(), a.fingerprint());
        assert_eq!(
            p.fingerprint().0,
            <[u8; 32]>::from(Sha256::digest(a.public().dsa_bytes()))
        );
        let sig = a.sign(CTX, b"x");
        assert_eq!(p.verify(CTX, b"x", &sig), Ok(()));
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        let a = NodeIdentity::generate();
        let dsa = a.public().dsa_bytes();
        let kem = a.public().kem_bytes();
        assert_eq!(
            PublicIdentity::from_bytes(&dsa[1..], kem),
            Err(IdentityError::Length {
                what: "ML-DSA-65 public key",
                want: DSA_PUBLIC_KEY_LEN,
                got: DSA_PUBLIC_KEY_LEN - 1
            })
        );
        assert!(matches!(
            PublicIdentity::from_bytes(dsa, &[kem, &[0]].concat()),
            Err(IdentityError::Length {
                what: "ML-KEM-768 public key",
                ..
            })
        ));
        assert!(matches!(
            Signature::from_bytes(&[0; SIGNATURE_LEN - 1]),
            Err(IdentityError::Length {
                what: "ML-DSA-65 signature",
                ..
            })
        ));
        assert!(matches!(
            KemCiphertext::from_bytes(&[]),
            Err(IdentityError::Length {
                what: "ML-KEM-768 ciphertext",
                ..
            })
        ));
        assert!(KemCiphertext::from_bytes(&[0; KEM_CIPHERTEXT_LEN]).is_ok());
    }

    #[test]
    fn signing_key_survives_a_round_trip_through_bytes() {
        let key = SigningKey::generate();
        let bytes = key.to_bytes();
        assert_eq!(bytes.len(), SIGNING_KEY_LEN);
        let restored = SigningKey::from_bytes(&bytes).unwrap();
        assert_eq!(restored.verifying_key(), key.verifying_key());
        let sig = restored.sign(CTX, b"cert");
        assert_eq!(key.verifying_key().verify(CTX, b"cert", &sig), Ok(()));

        let other = SigningKey::generate();
        let mut mixed = bytes.to_vec();
        mixed[DSA_SECRET_KEY_LEN..].copy_from_slice(other.verifying_key().as_bytes());
        assert_eq!(
            SigningKey::from_bytes(&mixed).err(),
            Some(IdentityError::KeyMismatch)
        );
        assert!(matches!(
            SigningKey::from_bytes(&bytes[1..]),
            Err(IdentityError::Length {
                what: "ML-DSA-65 signing key",
                ..
            })
        ));
    }

    #[test]
    fn wipes_clear_every_secret_byte() {
        let mut sk = mldsa65::SecretKey::from_bytes(&[0xa5; mldsa65::secret_key_bytes()]).unwrap();
        wipe_dsa_secret(&mut sk);
        assert!(sk.as_bytes().iter().all(|&b| b == 0));
        let mut sk =
            mlkem768::SecretKey::from_bytes(&[0xa5; mlkem768::secret_key_bytes()]).unwrap();
        wipe_kem_secret(&mut sk);
        assert!(sk.as_bytes().iter().all(|&b| b == 0));
        let mut ss = mlkem768::SharedSecret::from_bytes(&[0xa5; SHARED_SECRET_LEN]).unwrap();
        wipe_kem_shared(&mut ss);
        assert!(ss.as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn debug_shows_no_secret() {
        let a = NodeIdentity::generate();
        let secret_prefix = hex::encode(&a.signing.secret.as_bytes()[..8]);
        let kem_prefix = hex::encode(&a.kem_secret.as_bytes()[..8]);
        let shown = format!("{a:?} {:?}", a.signing);
        assert!(shown.contains(&a.fingerprint().to_string()), "{shown}");
        assert!(
            !shown.contains(&secret_prefix) && !shown.contains(&kem_prefix),
            "{shown}"
        );
        let (_, ss) = a.public().encapsulate();
        assert_eq!(format!("{ss:?}"), "SharedSecret(<redacted>)");
    }
}
