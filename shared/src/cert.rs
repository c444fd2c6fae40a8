//! Node certificates: Guardian's ML-DSA-65 signature over a [`NodeCertificate`].
//!
//! The signature covers the exact encoded certificate bytes carried in
//! [`SignedCertificate::certificate`] under [`CERT_CONTEXT`], so a signature made for a
//! handshake or a presence message never passes as a certificate signature, and a verifier
//! never depends on re-encoding. [`verify`] checks the issuer key, the signature, the
//! validity window and the shape of every field before handing the certificate out; after it
//! succeeds, the typed accessors on [`NodeCertificate`] cannot fail.

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::crypto::identity::{
    PublicIdentity, Signature, SigningContext, SigningKey, VerifyingKey,
};
use crate::id::NodeId;
use crate::proto::{NodeCertificate, SignedCertificate};
use crate::taint::{Realm, TaintSet};

/// Domain-separation label of certificate signatures.
pub const CERT_CONTEXT: SigningContext = SigningContext::new(b"conflux-v1 node certificate");

/// Length of a key id in bytes (it is written as twice as many hex digits).
pub const KEY_ID_LEN: usize = 8;

/// Longest encoded certificate accepted, in bytes (two public keys plus small fields).
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// Why a certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Signed by a key the verifier does not know (or no longer trusts).
    #[error("certificate signed by unknown key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify under the named key.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// `now` is past `not_after`.
    #[error("certificate expired at {not_after} (now {now})")]
    Expired {
        /// End of validity, unix seconds.
        not_after: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// `now` is before `not_before`.
    #[error("certificate not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity, unix seconds.
        not_before: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// Bytes that do not decode, or a field of the wrong shape.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
}

/// The id Guardian gives a certificate key: the first 8 bytes of SHA-256 of the encoded
/// public key, in hex.
pub fn key_id(ml_dsa_public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(ml_dsa_public_key)[..KEY_ID_LEN])
}

/// A Guardian public key a verifier trusts, named by its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardianKey {
    key_id: String,
    key: VerifyingKey,
}

impl GuardianKey {
    /// Wraps a verifying key, deriving its id.
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key_id: key_id(key.as_bytes()),
            key,
        }
    }

    /// Parses an encoded ML-DSA-65 public key; the id is derived, never taken from outside.
    pub fn from_bytes(ml_dsa_public_key: &[u8]) -> Result<Self, CertError> {
        VerifyingKey::from_bytes(ml_dsa_public_key)
            .map(Self::new)
            .map_err(|_| CertError::Malformed("Guardian public key"))
    }

    /// The key id (16 hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The verifying key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// Encodes `cert` and signs it with Guardian's key; `cert.issuer_key_id` is set to that
/// key's id.
pub fn sign(cert: NodeCertificate, key: &SigningKey) -> SignedCertificate {
    let id = key_id(key.verifying_key().as_bytes());
    sign_with(cert, &id, |bytes| key.sign(CERT_CONTEXT, bytes))
}

/// Like [`sign`], for a key held elsewhere: `sign` must produce an ML-DSA-65 signature over
/// its input with [`CERT_CONTEXT`] by the key named `key_id`.
pub fn sign_with(
    mut cert: NodeCertificate,
    key_id: &str,
    sign: impl FnOnce(&[u8]) -> Signature,
) -> SignedCertificate {
    key_id.clone_into(&mut cert.issuer_key_id);
    let certificate = cert.encode_to_vec();
    let signature = sign(&certificate).as_bytes().to_vec();
    SignedCertificate {
        certificate,
        signature,
        key_id: key_id.to_owned(),
    }
}

/// Decodes a [`SignedCertificate`] from untrusted bytes.
pub fn decode_signed(bytes: &[u8]) -> Result<SignedCertificate, CertError> {
    if bytes.len() > MAX_CERT_LEN + 4096 {
        return Err(CertError::Malformed("signed certificate too long"));
    }
    SignedCertificate::decode(bytes).map_err(|_| CertError::Malformed("signed certificate"))
}

/// Checks `signed` against the trusted `keys` at time `now` (unix seconds) and returns the
/// certificate it carries.
///
/// Order: size and key lookup (cheap) before the signature, the signature before anything
/// inside the certificate is believed.
pub fn verify(
    signed: &SignedCertificate,
    keys: &[GuardianKey],
    now: u64,
) -> Result<NodeCertificate, CertError> {
    if signed.certificate.len() > MAX_CERT_LEN {
        return Err(CertError::Malformed("certificate too long"));
    }
    let key = keys
        .iter()
        .find(|k| k.key_id == signed.key_id)
        .ok_or_else(|| CertError::UnknownKey(signed.key_id.clone()))?;
    let signature =
        Signature::from_bytes(&signed.signature).map_err(|_| CertError::BadSignature)?;
    key.key
        .verify(CERT_CONTEXT, &signed.certificate, &signature)
        .map_err(|_| CertError::BadSignature)?;
    let cert = NodeCertificate::decode(signed.certificate.as_slice())
        .map_err(|_| CertError::Malformed("certificate"))?;
    if cert.issuer_key_id != signed.key_id {
        return Err(CertError::Malformed(
            "issuer key id differs from signing key id",
        ));
    }
    check_fields(&cert)?;
    if now < cert.not_before {
        return Err(CertError::NotYetValid {
            not_before: cert.not_before,
            now,
        });
    }
    if now > cert.not_after {
        return Err(CertError::Expired {
            not_after: cert.not_after,
            now,
        });
    }
    Ok(cert)
}

fn check_fields(cert: &NodeCertificate) -> Result<(), CertError> {
    cert.node_id()?;
    cert.realm_name()?;
    cert.taint_set()?;
    cert.public_identity()?;
    cert.overlay_ip()?;
    cert.overlay_ip6()?;
    if cert.not_after < cert.not_before {
        return Err(CertError::Malformed("validity ends before it starts"));
    }
    Ok(())
}

impl NodeCertificate {
    /// The node id.
    pub fn node_id(&self) -> Result<NodeId, CertError> {
        <[u8; 16]>::try_from(self.node_id.as_slice())
            .map(NodeId)
            .map_err(|_| CertError::Malformed("node id must be 16 bytes"))
    }

    /// The realm.
    pub fn realm_name(&self) -> Result<Realm, CertError> {
        Realm::new(&self.realm).map_err(|_| CertError::Malformed("realm name"))
    }

    /// The taints as a validated set.
    pub fn taint_set(&self) -> Result<TaintSet, CertError> {
        TaintSet::parse(self.taints.iter().map(String::as_str))
            .map_err(|_| CertError::Malformed("taints"))
    }

    /// The node's public keys (ML-DSA-65 and ML-KEM-768).
    pub fn public_identity(&self) -> Result<PublicIdentity, CertError> {
        PublicIdentity::from_bytes(&self.ml_dsa_public_key, &self.ml_kem_public_key)
            .map_err(|_| CertError::Malformed("node public keys"))
    }

    /// The overlay address.
    pub fn overlay_ip(&self) -> Result<std::net::IpAddr, CertError> {
        self.overlay_address
            .parse()
            .map_err(|_| CertError::Malformed("overlay address"))
    }

    /// The IPv6 overlay address beside an IPv4 `overlay_address`; `None` when the realm has
    /// no IPv6 subnet (certificates issued before the field existed decode with it empty).
    pub fn overlay_ip6(&self) -> Result<Option<std::net::Ipv6Addr>, CertError> {
        if self.overlay_address6.is_empty() {
            return Ok(None);
        }
        let ip: std::net::Ipv6Addr = self
            .overlay_address6
            .parse()
            .map_err(|_| CertError::Malformed("IPv6 overlay address is not an IPv6 address"))?;
        if !self.overlay_ip()?.is_ipv4() {
            return Err(CertError::Malformed(
                "an IPv6 overlay address needs an IPv4 overlay_address beside it",
            ));
        }
        Ok(Some(ip))
    }

    /// Every overlay address of the node: the IPv4 (or only) one, then the IPv6 one.
    pub fn overlay_ips(&self) -> Vec<std::net::IpAddr> {
        let mut out: Vec<std::net::IpAddr> = self.overlay_ip().ok().into_iter().collect();
        if let Ok(Some(v6)) = self.overlay_ip6() {
            out.push(v6.into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::NodeIdentity;

    fn cert_for(node: &NodeIdentity) -> NodeCertificate {
        NodeCertificate {
            node_id: NodeId::random().0.to_vec(),
            realm: "lab".into(),
            owner: "alice".into(),
            region: "eu-west".into(),
            taints: vec!["dev".into(), "stage".into()],
            ml_dsa_public_key: node.public().dsa_bytes().to_vec(),
            ml_kem_public_key: node.public().kem_bytes().to_vec(),
            overlay_address: "10.7.0.9".into(),
            routed_prefixes: vec![],
            portal: false,
            gateway: false,
            not_before: 1_000,
            not_after: 2_000,
            issuer_key_id: String::new(),
            overlay_address6: String::new(),
        }
    }

    #[test]
    fn signed_certificate_verifies_and_round_trips() {
        let guardian = SigningKey::generate();
        let node = NodeIdentity::generate();
        let cert = cert_for(&node);
        let signed = sign(cert.clone(), &guardian);
        let decoded = decode_signed(&signed.encode_to_vec()).unwrap();
        let keys = [GuardianKey::new(guardian.verifying_key().clone())];
        let got = verify(&decoded, &keys, 1_500).unwrap();
        assert_eq!(got.issuer_key_id, keys[0].key_id());
        assert_eq!(got.node_id, cert.node_id);
        assert_eq!(
            got.taint_set().unwrap(),
            TaintSet::parse(["stage", "dev"]).unwrap()
        );
        assert_eq!(
            got.public_identity().unwrap().dsa_bytes(),
            node.public().dsa_bytes()
        );
        assert_eq!(got.overlay_ip().unwrap().to_string(), "10.7.0.9");
    }

    #[test]
    fn ipv6_overlay_address_round_trips_and_old_certificates_decode() {
        let guardian = SigningKey::generate();
        let keys = [GuardianKey::new(guardian.verifying_key().clone())];
        let node = NodeIdentity::generate();
        let mut cert = cert_for(&node);
        cert.overlay_address6 = "fd7a:cf::1:9".into();
        let signed = sign(cert, &guardian);
        let got = verify(
            &decode_signed(&signed.encode_to_vec()).unwrap(),
            &keys,
            1_500,
        )
        .unwrap();
        assert_eq!(
            got.overlay_ip6().unwrap(),
            Some("fd7a:cf::1:9".parse().unwrap())
        );
        assert_eq!(
            got.overlay_ips(),
            vec![
                "10.7.0.9".parse::<std::net::IpAddr>().unwrap(),
                "fd7a:cf::1:9".parse().unwrap()
            ]
        );

        // A node built before field 15 existed reads the new certificate, skipping it.
        let seen_by_old = OldCertificate::decode(signed.certificate.as_slice()).unwrap();
        assert_eq!(seen_by_old.overlay_address, "10.7.0.9");

        // A certificate an older Guardian encoded (no field 15) verifies, without IPv6.
        let c = cert_for(&node);
        let old = OldCertificate {
            node_id: c.node_id,
            realm: c.realm,
            owner: c.owner,
            region: c.region,
            taints: c.taints,
            ml_dsa_public_key: c.ml_dsa_public_key,
            ml_kem_public_key: c.ml_kem_public_key,
            overlay_address: c.overlay_address,
            routed_prefixes: c.routed_prefixes,
            portal: c.portal,
            gateway: c.gateway,
            not_before: c.not_before,
            not_after: c.not_after,
            issuer_key_id: keys[0].key_id().to_owned(),
        };
        let bytes = old.encode_to_vec();
        let signed_old = SignedCertificate {
            signature: guardian.sign(CERT_CONTEXT, &bytes).as_bytes().to_vec(),
            certificate: bytes,
            key_id: keys[0].key_id().to_owned(),
        };
        let got = verify(&signed_old, &keys, 1_500).unwrap();
        assert_eq!(got.overlay_ip6().unwrap(), None);
        assert_eq!(got.overlay_ips(), vec![got.overlay_ip().unwrap()]);
    }

    /// `NodeCertificate` as it was before the IPv6 overlay address (fields 1 to 14).
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldCertificate {
        #[prost(bytes = "vec", tag = "1")]
        node_id: Vec<u8>,
        #[prost(string, tag = "2")]
        realm: String,
        #[prost(string, tag = "3")]
        owner: String,
        #[prost(string, tag = "4")]
        region: String,
        #[prost(string, repeated, tag = "5")]
        taints: Vec<String>,
        #[prost(bytes = "vec", tag = "6")]
        ml_dsa_public_key: Vec<u8>,
        #[prost(bytes = "vec", tag = "7")]
        ml_kem_public_key: Vec<u8>,
        #[prost(string, tag = "8")]
        overlay_address: String,
        #[prost(string, repeated, tag = "9")]
        routed_prefixes: Vec<String>,
        #[prost(bool, tag = "10")]
        portal: bool,
        #[prost(bool, tag = "11")]
        gateway: bool,
        #[prost(uint64, tag = "12")]
        not_before: u64,
        #[prost(uint64, tag = "13")]
        not_after: u64,
        #[prost(string, tag = "14")]
        issuer_key_id: String,
    }

    #[test]
    fn validity_window_is_enforced() {
        let guardian = SigningKey::generate();
        let signed = sign(cert_for(&NodeIdentity::generate()), &guardian);
        let keys = [GuardianKey::new(guardian.verifying_key().clone())];
        assert_eq!(
            verify(&signed, &keys, 999),
            Err(CertError::NotYetValid {
                not_before: 1_000,
                now: 999
            })
        );
        assert!(verify(&signed, &keys, 1_000).is_ok());
        assert!(verify(&signed, &keys, 2_000).is_ok());
        assert_eq!(
            verify(&signed, &keys, 2_001),
            Err(CertError::Expired {
                not_after: 2_000,
                now: 2_001
            })
        );
    }

    #[test]
    fn unknown_key_and_rotation() {
        let old = SigningKey::generate();
        let new = SigningKey::generate();
        let node = NodeIdentity::generate();
        let by_old = sign(cert_for(&node), &old);
        let by_new = sign(cert_for(&node), &new);
        let old_key = GuardianKey::new(old.verifying_key().clone());
        let new_key = GuardianKey::new(new.verifying_key().clone());
        // After a rotation the verifier trusts both keys: old certificates stay valid.
        let both = [new_key.clone(), old_key.clone()];
        assert!(verify(&by_old, &both, 1_500).is_ok());
        assert!(verify(&by_new, &both, 1_500).is_ok());
        // Once the old key is dropped, its certificates are refused by key id.
        assert_eq!(
            verify(&by_old, &[new_key], 1_500),
            Err(CertError::UnknownKey(old_key.key_id().to_owned()))
        );
    }

    #[test]
    fn tampering_is_detected() {
        let guardian = SigningKey::generate();
        let keys = [GuardianKey::new(guardian.verifying_key().clone())];
        let signed = sign(cert_for(&NodeIdentity::generate()), &guardian);

        let mut flipped = signed.clone();
        let last = flipped.certificate.len() - 1;
        flipped.certificate[last] ^= 1;
        assert_eq!(verify(&flipped, &keys, 1_500), Err(CertError::BadSignature));

        let mut short_sig = signed.clone();
        short_sig.signature.truncate(10);
        assert_eq!(
            verify(&short_sig, &keys, 1_500),
            Err(CertError::BadSignature)
        );

        // A signature made with the same key for another purpose does not pass.
        let other = SigningContext::new(b"conflux-v1 presence");
        let mut wrong_ctx = signed.clone();
        wrong_ctx.signature = guardian
            .sign(other, &signed.certificate)
            .as_bytes()
            .to_vec();
        assert_eq!(
            verify(&wrong_ctx, &keys, 1_500),
            Err(CertError::BadSignature)
        );

        // A forger with its own key cannot borrow Guardian's key id.
        let forger = SigningKey::generate();
        let mut forged = sign(cert_for(&NodeIdentity::generate()), &forger);
        forged.key_id = keys[0].key_id().to_owned();
        assert_eq!(verify(&forged, &keys, 1_500), Err(CertError::BadSignature));
    }

    #[test]
    fn malformed_fields_are_rejected_after_the_signature() {
        let guardian = SigningKey::generate();
        let keys = [GuardianKey::new(guardian.verifying_key().clone())];
        let node = NodeIdentity::generate();
        type Mutation = fn(&mut NodeCertificate);
        let cases: [(&str, Mutation); 8] = [
            ("node id", |c| c.node_id.truncate(3)),
            ("realm", |c| c.realm = "Bad Realm".into()),
            ("taints", |c| c.taints = vec!["UPPER".into()]),
            ("keys", |c| c.ml_kem_public_key.clear()),
            ("address", |c| c.overlay_address = "10.0.0.300".into()),
            ("IPv4 in the IPv6 field", |c| {
                c.overlay_address6 = "10.7.0.10".into()
            }),
            ("bad IPv6", |c| c.overlay_address6 = "fd7a:cf::zz".into()),
            ("two IPv6 addresses", |c| {
                c.overlay_address = "fd00::9".into();
                c.overlay_address6 = "fd7a:cf::9".into();
            }),
        ];
        for (what, mutate) in cases {
            let mut cert = cert_for(&node);
            mutate(&mut cert);
            let signed = sign(cert, &guardian);
            assert!(
                matches!(verify(&signed, &keys, 1_500), Err(CertError::Malformed(_))),
                "{what}"
            );
        }
        assert!(matches!(
            decode_signed(&[0xff; 8]),
            Err(CertError::Malformed(_))
        ));
        assert!(matches!(
            decode_signed(&vec![0u8; MAX_CERT_LEN * 2]),
            Err(CertError::Malformed(_))
        ));
    }
}
