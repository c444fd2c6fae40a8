//! Node rows: the node id bound to its conflux token, its overlay address, what its
//! certificate says, and the NATS user keys issued to it.

use rusqlite::{Connection, OptionalExtension, Row, params};

use conflux_shared::id::NodeId;
use conflux_shared::taint::TaintSet;

use super::realms::{taint_set_from_json, taints_from_column, taints_to_column};
use super::{from_json, to_json};
use crate::guardian::secret::PresentedToken;

/// A node to insert at its first registration.
#[derive(Debug, Clone)]
pub struct NewNode {
    /// The node's id.
    pub node_id: NodeId,
    /// Its realm.
    pub realm: String,
    /// Id of its conflux token.
    pub token_id: String,
    /// SHA-256 of its conflux token.
    pub token_hash: [u8; 32],
    /// Expiry of its conflux token, unix seconds.
    pub token_expires_at: u64,
    /// Its overlay address.
    pub overlay_address: String,
    /// Its IPv6 overlay address, when the realm has an IPv6 subnet.
    pub overlay_address6: Option<String>,
    /// Its owner.
    pub owner: String,
    /// Its region.
    pub region: String,
    /// Its taints.
    pub taints: TaintSet,
    /// The taints it may set on itself; `None`: any.
    pub allowed_taints: Option<TaintSet>,
    /// It is a portal.
    pub portal: bool,
    /// Prefixes it may route.
    pub routed_prefixes: Vec<String>,
    /// Its current ML-DSA-65 public key.
    pub ml_dsa_public_key: Vec<u8>,
    /// Its current ML-KEM-768 public key.
    pub ml_kem_public_key: Vec<u8>,
    /// Its current encoded `SignedCertificate`.
    pub certificate: Vec<u8>,
    /// Registration time, unix seconds.
    pub now: u64,
}

/// A stored node.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// The node's id.
    pub node_id: NodeId,
    /// Its realm.
    pub realm: String,
    /// Its overlay address.
    pub overlay_address: String,
    /// Its IPv6 overlay address, when the realm has an IPv6 subnet.
    pub overlay_address6: Option<String>,
    /// Its owner.
    pub owner: String,
    /// Its region.
    pub region: String,
    /// Its taints.
    pub taints: TaintSet,
    /// The taints it may set on itself; `None`: any.
    pub allowed_taints: Option<TaintSet>,
    /// It is a portal.
    pub portal: bool,
    /// Prefixes it may route.
    pub routed_prefixes: Vec<String>,
    /// Its current ML-DSA-65 public key.
    pub ml_dsa_public_key: Vec<u8>,
    /// Its current ML-KEM-768 public key.
    pub ml_kem_public_key: Vec<u8>,
    /// Its current encoded `SignedCertificate`.
    pub certificate: Vec<u8>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
    /// Expiry of its conflux token, unix seconds (each re-registration extends it).
    pub token_expires_at: u64,
    /// First registration, unix seconds.
    pub created_at: u64,
    /// Last change, unix seconds.
    pub updated_at: u64,
}

const COLUMNS: &str = "node_id, realm, overlay_address, owner, region, taints, allowed_taints,
    portal, routed_prefixes, ml_dsa_public_key, ml_kem_public_key, certificate, revoked_at,
    created_at, updated_at, token_expires_at, token_hash, overlay_address6";

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(NodeRow, Vec<u8>)> {
    let row = NodeRow {
        node_id: NodeId::from_hex(&r.get::<_, String>(0)?).map_err(conversion)?,
        realm: r.get(1)?,
        overlay_address: r.get(2)?,
        owner: r.get(3)?,
        region: r.get(4)?,
        taints: taint_set_from_json(&r.get::<_, String>(5)?)?,
        allowed_taints: taints_from_column(r.get(6)?)?,
        portal: r.get(7)?,
        routed_prefixes: from_json(&r.get::<_, String>(8)?)?,
        ml_dsa_public_key: r.get(9)?,
        ml_kem_public_key: r.get(10)?,
        certificate: r.get(11)?,
        revoked_at: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        token_expires_at: r.get(15)?,
        overlay_address6: r.get(17)?,
    };
    Ok((row, r.get(16)?))
}

fn taints_json(t: &TaintSet) -> String {
    to_json(&t.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>())
}

impl NewNode {
    /// Inserts the node; a uniqueness violation means its address was taken meanwhile.
    pub fn insert(&self, db: &Connection) -> rusqlite::Result<()> {
        db.execute(
            "INSERT INTO nodes (node_id, realm, token_id, token_hash, overlay_address, owner,
                 region, taints, allowed_taints, portal, routed_prefixes, ml_dsa_public_key,
                 ml_kem_public_key, certificate, created_at, updated_at, token_expires_at,
                 overlay_address6)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16,
                 ?17)",
            params![
                self.node_id.to_hex(),
                self.realm,
                self.token_id,
                self.token_hash.as_slice(),
                self.overlay_address,
                self.owner,
                self.region,
                taints_json(&self.taints),
                taints_to_column(self.allowed_taints.as_ref()),
                self.portal,
                to_json(&self.routed_prefixes),
                self.ml_dsa_public_key,
                self.ml_kem_public_key,
                self.certificate,
                self.now,
                self.token_expires_at,
                self.overlay_address6,
            ],
        )?;
        Ok(())
    }
}

impl From<NewNode> for NodeRow {
    fn from(n: NewNode) -> Self {
        Self {
            node_id: n.node_id,
            realm: n.realm,
            overlay_address: n.overlay_address,
            overlay_address6: n.overlay_address6,
            owner: n.owner,
            region: n.region,
            taints: n.taints,
            allowed_taints: n.allowed_taints,
            portal: n.portal,
            routed_prefixes: n.routed_prefixes,
            ml_dsa_public_key: n.ml_dsa_public_key,
            ml_kem_public_key: n.ml_kem_public_key,
            certificate: n.certificate,
            revoked_at: None,
            token_expires_at: n.token_expires_at,
            created_at: n.now,
            updated_at: n.now,
        }
    }
}

impl NodeRow {
    /// The node `id`.
    pub fn get(db: &Connection, id: &NodeId) -> rusqlite::Result<Option<Self>> {
        db.query_row(
            &format!("SELECT {COLUMNS} FROM nodes WHERE node_id = ?1"),
            [id.to_hex()],
            from_row,
        )
        .optional()
        .map(|o| o.map(|(row, _)| row))
    }

    /// The node whose conflux token is `token`, if the token matches.
    pub fn by_token(db: &Connection, token: &PresentedToken<'_>) -> rusqlite::Result<Option<Self>> {
        let found = db
            .query_row(
                &format!("SELECT {COLUMNS} FROM nodes WHERE token_id = ?1"),
                [token.id()],
                from_row,
            )
            .optional()?;
        Ok(found.and_then(|(row, hash)| token.matches(&hash).then_some(row)))
    }

    /// The nodes of `realm`, by address.
    pub fn list(db: &Connection, realm: &str) -> rusqlite::Result<Vec<Self>> {
        db.prepare(&format!(
            "SELECT {COLUMNS} FROM nodes WHERE realm = ?1 ORDER BY overlay_address"
        ))?
        .query_map([realm], from_row)?
        .map(|r| r.map(|(row, _)| row))
        .collect()
    }

    /// Whether a node of `realm` holds `address` (as its address or its IPv6 address).
    pub fn address_taken(db: &Connection, realm: &str, address: &str) -> rusqlite::Result<bool> {
        db.query_row(
            "SELECT EXISTS (SELECT 1 FROM nodes WHERE realm = ?1
                 AND (overlay_address = ?2 OR overlay_address6 = ?2))",
            [realm, address],
            |r| r.get(0),
        )
    }

    /// Records a re-registration: fresh keys, possibly new taints and region, the
    /// certificate that binds them, and the conflux token's extended expiry.
    pub fn reregister(db: &Connection, node: &NodeRow, now: u64) -> rusqlite::Result<()> {
        db.execute(
            "UPDATE nodes SET ml_dsa_public_key = ?2, ml_kem_public_key = ?3, taints = ?4,
                 region = ?5, certificate = ?6, updated_at = ?7, token_expires_at = ?8
             WHERE node_id = ?1",
            params![
                node.node_id.to_hex(),
                node.ml_dsa_public_key,
                node.ml_kem_public_key,
                taints_json(&node.taints),
                node.region,
                node.certificate,
                now,
                node.token_expires_at
            ],
        )?;
        Ok(())
    }

    /// Records new taints and the certificate that carries them.
    pub fn set_taints(
        db: &Connection,
        id: &NodeId,
        taints: &TaintSet,
        certificate: &[u8],
        now: u64,
    ) -> rusqlite::Result<()> {
        db.execute(
            "UPDATE nodes SET taints = ?2, certificate = ?3, updated_at = ?4 WHERE node_id = ?1",
            params![id.to_hex(), taints_json(taints), certificate, now],
        )?;
        Ok(())
    }

    /// Records a renewed certificate.
    pub fn set_certificate(
        db: &Connection,
        id: &NodeId,
        certificate: &[u8],
        now: u64,
    ) -> rusqlite::Result<()> {
        db.execute(
            "UPDATE nodes SET certificate = ?2, updated_at = ?3 WHERE node_id = ?1",
            params![id.to_hex(), certificate, now],
        )?;
        Ok(())
    }

    /// Records a NATS user key issued to the node.
    pub fn add_nats_user(
        db: &Connection,
        id: &NodeId,
        public_key: &str,
        now: u64,
    ) -> rusqlite::Result<()> {
        db.execute(
            "INSERT INTO nats_users (public_key, node_id, issued_at) VALUES (?1, ?2, ?3)",
            params![public_key, id.to_hex(), now],
        )?;
        Ok(())
    }

    /// Marks the node revoked and every NATS user key it was given as revoked in its realm.
    /// Returns those keys.
    pub fn revoke(db: &Connection, node: &NodeRow, now: u64) -> rusqlite::Result<Vec<String>> {
        db.execute(
            "UPDATE nodes SET revoked_at = ?2, updated_at = ?2 WHERE node_id = ?1",
            params![node.node_id.to_hex(), now],
        )?;
        let keys: Vec<String> = db
            .prepare("SELECT public_key FROM nats_users WHERE node_id = ?1")?
            .query_map([node.node_id.to_hex()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for k in &keys {
            db.execute(
                "INSERT OR REPLACE INTO nats_revocations (realm, public_key, revoked_at)
                 VALUES (?1, ?2, ?3)",
                params![node.realm, k, now],
            )?;
        }
        Ok(keys)
    }
}
