//! What this node believes about certificates: Guardian's keys and a cache of certificates
//! whose signature has already been checked.
//!
//! ML-DSA verification is the expensive step of every presence and handshake, so each
//! distinct signed certificate is verified once; its validity window is still checked at
//! every use.

use std::collections::HashMap;
use std::sync::Arc;

use conflux_shared::cert::{self, CertError, GuardianKey};
use conflux_shared::crypto::identity::PublicIdentity;
use conflux_shared::id::NodeId;
use conflux_shared::proto::SignedCertificate;
use conflux_shared::taint::{Membership, Realm};
use sha2::{Digest, Sha256};

use super::counters::Ignored;

/// Most verified certificates kept at once.
const CACHE_CAP: usize = 4096;

/// A certificate whose Guardian signature verified, with its fields parsed.
#[derive(Debug, Clone)]
pub struct TrustedCert {
    /// SHA-256 over the signed certificate (key id, signature and bytes).
    pub digest: [u8; 32],
    /// The node it certifies.
    pub node_id: NodeId,
    /// Realm and taints: what the talk policy looks at.
    pub membership: Membership,
    /// The node's public keys.
    pub identity: PublicIdentity,
    /// Overlay address (text as certified).
    pub overlay_address: String,
    /// IPv6 overlay address beside an IPv4 one, when the realm has an IPv6 subnet.
    pub overlay_address6: Option<std::net::Ipv6Addr>,
    /// Declared region.
    pub region: String,
    /// Owner (OAuth subject or token maker).
    pub owner: String,
    /// LAN prefixes Guardian authorized the node to route (CIDR).
    pub routed_prefixes: Vec<String>,
    /// Guardian lets the node be an internet exit for its owner's nodes.
    pub portal: bool,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
    /// The signed certificate as received, to pass on unchanged.
    pub signed: SignedCertificate,
}

/// The digest that names a signed certificate in the cache.
pub fn digest(signed: &SignedCertificate) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        signed.key_id.as_bytes(),
        &signed.signature,
        &signed.certificate,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Guardian's keys and the verified-certificate cache.
#[derive(Debug)]
pub struct Trust {
    realm: Realm,
    keys: Vec<GuardianKey>,
    cache: HashMap<[u8; 32], Arc<TrustedCert>>,
}

impl Trust {
    /// Trust in `keys` for certificates of `realm`.
    pub fn new(realm: Realm, keys: Vec<GuardianKey>) -> Self {
        Self {
            realm,
            keys,
            cache: HashMap::new(),
        }
    }

    /// The realm this node is in.
    pub fn realm(&self) -> &Realm {
        &self.realm
    }

    /// Replaces Guardian's keys (after a rotation); cached certificates stay trusted only if
    /// their signer is still among the keys.
    pub fn set_keys(&mut self, keys: Vec<GuardianKey>) {
        self.keys = keys;
        let keys = &self.keys;
        self.cache
            .retain(|_, c| keys.iter().any(|k| k.key_id() == c.signed.key_id));
    }

    /// Checks a signed certificate at `now_s` (unix seconds), from the cache when possible.
    pub fn verify(
        &mut self,
        signed: &SignedCertificate,
        now_s: u64,
    ) -> Result<Arc<TrustedCert>, Ignored> {
        let d = digest(signed);
        if let Some(c) = self.cache.get(&d) {
            return check_window(c, now_s).map(|()| c.clone());
        }
        let c = cert::verify(signed, &self.keys, now_s).map_err(|e| match e {
            CertError::UnknownKey(_) => Ignored::UnknownKey,
            CertError::BadSignature => Ignored::BadCertificate,
            CertError::Expired { .. } | CertError::NotYetValid { .. } => Ignored::Expired,
            CertError::Malformed(_) => Ignored::Malformed,
        })?;
        // `verify` has checked every field's shape, so these conversions cannot fail; a
        // failure would still only drop the message.
        let parsed = (|| {
            Ok::<_, CertError>(TrustedCert {
                digest: d,
                node_id: c.node_id()?,
                membership: Membership {
                    realm: c.realm_name()?,
                    taints: c.taint_set()?,
                },
                identity: c.public_identity()?,
                overlay_address: c.overlay_address.clone(),
                overlay_address6: c.overlay_ip6()?,
                region: c.region.clone(),
                owner: c.owner.clone(),
                routed_prefixes: c.routed_prefixes.clone(),
                portal: c.portal,
                not_before: c.not_before,
                not_after: c.not_after,
                signed: signed.clone(),
            })
        })()
        .map_err(|_| Ignored::Malformed)?;
        if parsed.membership.realm != self.realm {
            return Err(Ignored::WrongRealm);
        }
        if self.cache.len() >= CACHE_CAP {
            self.cache.retain(|_, c| c.not_after >= now_s);
            if self.cache.len() >= CACHE_CAP {
                self.cache.clear();
            }
        }
        let c = Arc::new(parsed);
        self.cache.insert(d, c.clone());
        Ok(c)
    }
}

fn check_window(c: &TrustedCert, now_s: u64) -> Result<(), Ignored> {
    if now_s < c.not_before || now_s > c.not_after {
        Err(Ignored::Expired)
    } else {
        Ok(())
    }
}
