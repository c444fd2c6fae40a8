//! Nodes: a node changes its taints and renews its certificate (access JWT); an admin lists
//! a realm's nodes and revokes one.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use conflux_shared::id::NodeId;

use super::AppState;
use super::auth::{Admin, AuthNode};
use super::realms::parse_taints;
use crate::guardian::cert;
use crate::guardian::error::{AppError, Json};
use crate::guardian::keys::PublishedKey;
use crate::guardian::store::{NodeRow, RealmRow};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/nodes/self/taints", put(set_taints))
        .route("/v1/nodes/self/certificate", post(renew_certificate))
        .route("/v1/realms/{realm}/nodes", get(list))
        .route("/v1/nodes/{node_id}/revoke", post(revoke))
}

/// `PUT /v1/nodes/self/taints` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTaints {
    /// The node's new taint set (replaces the old one).
    pub taints: Vec<String>,
}

/// A freshly issued certificate.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// Encoded `SignedCertificate`, base64.
    pub certificate: String,
    /// Its expiry, unix seconds.
    pub not_after: u64,
    /// The taints it carries.
    pub taints: Vec<String>,
    /// Guardian's published certificate keys.
    pub guardian_keys: Vec<PublishedKey>,
}

/// A node as an admin sees it.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id (hex).
    pub node_id: String,
    /// Realm.
    pub realm: String,
    /// Overlay address.
    pub overlay_address: String,
    /// IPv6 overlay address, when the realm has an IPv6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_address6: Option<String>,
    /// Owner.
    pub owner: String,
    /// Region.
    pub region: String,
    /// Taints.
    pub taints: Vec<String>,
    /// Portal flag.
    pub portal: bool,
    /// Routed prefixes.
    pub routed_prefixes: Vec<String>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<u64>,
    /// First registration, unix seconds.
    pub created_at: u64,
    /// Last change, unix seconds.
    pub updated_at: u64,
}

fn taint_names(n: &NodeRow) -> Vec<String> {
    n.taints.iter().map(|t| t.as_str().to_owned()).collect()
}

impl From<&NodeRow> for NodeView {
    fn from(n: &NodeRow) -> Self {
        Self {
            node_id: n.node_id.to_hex(),
            realm: n.realm.clone(),
            overlay_address: n.overlay_address.clone(),
            overlay_address6: n.overlay_address6.clone(),
            owner: n.owner.clone(),
            region: n.region.clone(),
            taints: taint_names(n),
            portal: n.portal,
            routed_prefixes: n.routed_prefixes.clone(),
            revoked_at: n.revoked_at,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

/// Re-signs `node`'s certificate, stores it with `store` and writes the directory record.
async fn recertify(
    g: &AppState,
    mut node: NodeRow,
    store: impl FnOnce(&rusqlite::Connection, &NodeRow, u64) -> rusqlite::Result<()>,
) -> Result<CertificateResponse, AppError> {
    let now = g.now();
    let issued = cert::issue(&g.keys, &node.subject(), now, g.lifetimes.certificate);
    node.certificate = issued.bytes;
    g.store.write(|db| store(db, &node, now))?;
    g.metrics.certificate_issued();
    let realm = RealmRow::get(&g.store.read(), &node.realm)?;
    if let Some(realm) = realm {
        g.sync_record(&realm, &node).await;
    }
    Ok(CertificateResponse {
        certificate: STANDARD.encode(&node.certificate),
        not_after: issued.not_after,
        taints: taint_names(&node),
        guardian_keys: g.keys.published(now),
    })
}

async fn set_taints(
    State(g): State<AppState>,
    AuthNode(mut node): AuthNode,
    Json(req): Json<SetTaints>,
) -> Result<Json<CertificateResponse>, AppError> {
    let taints = parse_taints("taints", &req.taints)?;
    if let Some(allowed) = &node.allowed_taints
        && !taints.iter().all(|t| allowed.contains(t))
    {
        return Err(AppError::Forbidden(format!(
            "taints {taints} are not all within the allowed {allowed}"
        )));
    }
    node.taints = taints;
    let resp = recertify(&g, node, |db, n, now| {
        NodeRow::set_taints(db, &n.node_id, &n.taints, &n.certificate, now)
    })
    .await?;
    Ok(Json(resp))
}

async fn renew_certificate(
    State(g): State<AppState>,
    AuthNode(node): AuthNode,
) -> Result<Json<CertificateResponse>, AppError> {
    let resp = recertify(&g, node, |db, n, now| {
        NodeRow::set_certificate(db, &n.node_id, &n.certificate, now)
    })
    .await?;
    Ok(Json(resp))
}

async fn list(
    _: Admin,
    State(g): State<AppState>,
    Path(realm): Path<String>,
) -> Result<Json<Vec<NodeView>>, AppError> {
    let db = g.store.read();
    if RealmRow::get(&db, &realm)?.is_none() {
        return Err(AppError::UnknownRealm(realm));
    }
    Ok(Json(
        NodeRow::list(&db, &realm)?
            .iter()
            .map(NodeView::from)
            .collect(),
    ))
}

/// `POST /v1/nodes/{node_id}/revoke` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Revoked {
    /// The node id.
    pub node_id: String,
    /// When it was revoked, unix seconds.
    pub revoked_at: u64,
    /// nats-server has the updated account JWT (otherwise it is queued and retried).
    pub nats_enforced: bool,
    /// The directory record is marked revoked and the revocation was announced (otherwise
    /// queued and retried).
    pub announced: bool,
}

async fn revoke(
    _: Admin,
    State(g): State<AppState>,
    Path(node_id): Path<String>,
) -> Result<Json<Revoked>, AppError> {
    let id = NodeId::from_hex(&node_id)
        .map_err(|_| AppError::Invalid("node_id: 32 hex digits".into()))?;
    let now = g.now();
    let (node, realm) = g.store.write(|db| {
        let mut node =
            NodeRow::get(db, &id)?.ok_or_else(|| AppError::UnknownNode(node_id.clone()))?;
        let realm = RealmRow::get(db, &node.realm)?
            .ok_or_else(|| AppError::UnknownRealm(node.realm.clone()))?;
        if node.revoked_at.is_none() {
            NodeRow::revoke(db, &node, now)?;
            node.revoked_at = Some(now);
        }
        Ok::<_, AppError>((node, realm))
    })?;
    let at = node.revoked_at.unwrap_or(now);
    g.metrics.revoked();
    let nats_enforced = g.sync_account(&realm).await;
    let recorded = g.sync_record(&realm, &node).await;
    let announced = g.sync_revocation(&realm, &node.node_id, at).await;
    tracing::info!(node = %node.node_id, realm = %realm.name, "node revoked");
    Ok(Json(Revoked {
        node_id: node.node_id.to_hex(),
        revoked_at: at,
        nats_enforced,
        announced: recorded && announced,
    }))
}
