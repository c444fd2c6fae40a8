//! Issuing node certificates from what the store knows about a node.

use conflux_shared::cert::sign_with;
use conflux_shared::id::NodeId;
use conflux_shared::proto::{NodeCertificate, SignedCertificate};
use conflux_shared::taint::TaintSet;
use prost::Message as _;

use super::keys::KeyRing;
use super::store::NodeRow;

/// Seconds a certificate's validity starts before its issue time, so a node whose clock is
/// slightly behind does not reject its fresh certificate.
const CLOCK_SKEW: u64 = 60;

/// What a certificate binds.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Node id.
    pub node_id: &'a NodeId,
    /// Realm.
    pub realm: &'a str,
    /// Owner.
    pub owner: &'a str,
    /// Region.
    pub region: &'a str,
    /// Taints.
    pub taints: &'a TaintSet,
    /// ML-DSA-65 public key.
    pub ml_dsa_public_key: &'a [u8],
    /// ML-KEM-768 public key.
    pub ml_kem_public_key: &'a [u8],
    /// Overlay address.
    pub overlay_address: &'a str,
    /// IPv6 overlay address beside an IPv4 one.
    pub overlay_address6: Option<&'a str>,
    /// Prefixes it may route.
    pub routed_prefixes: &'a [String],
    /// Portal flag.
    pub portal: bool,
}

impl NodeRow {
    /// The certificate subject of this node as stored.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            node_id: &self.node_id,
            realm: &self.realm,
            owner: &self.owner,
            region: &self.region,
            taints: &self.taints,
            ml_dsa_public_key: &self.ml_dsa_public_key,
            ml_kem_public_key: &self.ml_kem_public_key,
            overlay_address: &self.overlay_address,
            overlay_address6: self.overlay_address6.as_deref(),
            routed_prefixes: &self.routed_prefixes,
            portal: self.portal,
        }
    }
}

/// A signed certificate, encoded, with its expiry.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The encoded `SignedCertificate`.
    pub bytes: Vec<u8>,
    /// End of validity, unix seconds.
    pub not_after: u64,
}

/// Signs a certificate for `s`, valid from `now` for `lifetime` seconds, with Guardian's
/// current certificate key.
pub fn issue(keys: &KeyRing, s: &Subject<'_>, now: u64, lifetime: u64) -> Issued {
    let not_after = now + lifetime;
    let cert = NodeCertificate {
        node_id: s.node_id.0.to_vec(),
        realm: s.realm.to_owned(),
        owner: s.owner.to_owned(),
        region: s.region.to_owned(),
        taints: s.taints.iter().map(|t| t.as_str().to_owned()).collect(),
        ml_dsa_public_key: s.ml_dsa_public_key.to_vec(),
        ml_kem_public_key: s.ml_kem_public_key.to_vec(),
        overlay_address: s.overlay_address.to_owned(),
        routed_prefixes: s.routed_prefixes.to_vec(),
        portal: s.portal,
        gateway: !s.routed_prefixes.is_empty(),
        not_before: now.saturating_sub(CLOCK_SKEW),
        not_after,
        issuer_key_id: String::new(),
        overlay_address6: s.overlay_address6.unwrap_or_default().to_owned(),
    };
    let signed: SignedCertificate =
        keys.with_cert_key(|k| sign_with(cert, k.key_id(), |bytes| k.sign(bytes)));
    Issued {
        bytes: signed.encode_to_vec(),
        not_after,
    }
}
