//! Registration and JWT refresh.
//!
//! `POST /v1/register` takes exactly one credential:
//! - `registration_token`: a new node in the token's realm (one use spent);
//! - `oauth_jwt` + `realm`: a new node owned by the identity provider's subject;
//! - `conflux_token`: a restart of a known node: same id and address, fresh keys.
//!
//! Every check runs before anything is written, and the writes (token use, address, node,
//! NATS user) share one transaction: a refused registration stores nothing.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use conflux_shared::crypto::identity::PublicIdentity;
use conflux_shared::id::NodeId;
use conflux_shared::taint::TaintSet;

use super::AppState;
use super::realms::parse_taints;
use super::tokens::check_label;
use crate::guardian::addr::Subnet;
use crate::guardian::error::{AppError, Json, TokenProblem};
use crate::guardian::keys::PublishedKey;
use crate::guardian::natsauth::{UserCredentials, node_user, subject_prefix};
use crate::guardian::secret::{IssuedToken, PresentedToken, TokenKind, issue};
use crate::guardian::store::{NewNode, NodeRow, RealmRow, TokenRow, TokenUse, is_unique_violation};
use crate::guardian::{Guardian, cert, jwt};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/register", post(register))
        .route("/v1/refresh", post(refresh))
}

/// `POST /v1/register` body.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// A registration token (new node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_token: Option<String>,
    /// The node's conflux token (known node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflux_token: Option<String>,
    /// An identity provider's JWT (new node; needs `realm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_jwt: Option<String>,
    /// Realm; required with `oauth_jwt`, checked against the credential otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// The node's ML-DSA-65 public key, base64.
    pub ml_dsa_public_key: String,
    /// The node's ML-KEM-768 public key, base64.
    pub ml_kem_public_key: String,
    /// An overlay address the node asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_address: Option<String>,
    /// The node's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The node's taints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<String>>,
    /// The node wants to be a portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<bool>,
}

/// A node's NATS credentials.
#[derive(Debug, Serialize, Deserialize)]
pub struct NatsCredentials {
    /// User JWT, signed by the realm's account.
    pub user_jwt: String,
    /// User nkey seed.
    pub user_seed: String,
    /// Prefix of the realm's subjects (`conflux.<realm>`).
    pub subject_prefix: String,
}

/// `POST /v1/register` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// Node id (hex).
    pub node_id: String,
    /// Realm.
    pub realm: String,
    /// Overlay address.
    pub overlay_address: String,
    /// The realm's overlay subnet.
    pub subnet: String,
    /// IPv6 overlay address, when the realm has an IPv6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_address6: Option<String>,
    /// The realm's IPv6 overlay subnet, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// The node's conflux token, on first registration only.
    pub conflux_token: Option<String>,
    /// When the conflux token expires unless the node registers again, unix seconds.
    pub conflux_token_expires_at: u64,
    /// Long-lived JWT that buys access JWTs.
    pub refresh_jwt: String,
    /// Short-lived JWT for node calls.
    pub access_jwt: String,
    /// Expiry of the access JWT, unix seconds.
    pub access_expires_at: u64,
    /// Encoded `SignedCertificate`, base64.
    pub certificate: String,
    /// Expiry of the certificate, unix seconds.
    pub certificate_not_after: u64,
    /// Guardian's certificate keys that verify certificates still valid.
    pub guardian_keys: Vec<PublishedKey>,
    /// NATS credentials.
    pub nats: NatsCredentials,
}

/// What a credential lets a new node be.
struct Grant {
    realm: RealmRow,
    owner: String,
    allowed_taints: Option<TaintSet>,
    default_region: Option<String>,
    portal_allowed: bool,
    routed_prefixes: Vec<String>,
}

/// A registration request, validated.
struct Checked {
    dsa: Vec<u8>,
    kem: Vec<u8>,
    taints: Option<TaintSet>,
    region: Option<String>,
    requested_address: Option<String>,
    realm: Option<String>,
    portal: Option<bool>,
}

/// What the transaction produced.
struct Registered {
    node: NodeRow,
    subnet: String,
    subnet6: Option<String>,
    conflux_token: Option<IssuedToken>,
    nats: UserCredentials,
    not_after: u64,
}

fn decode_key(field: &str, b64: &str) -> Result<Vec<u8>, AppError> {
    STANDARD
        .decode(b64.trim())
        .map_err(|_| AppError::Invalid(format!("{field}: not base64")))
}

fn check(req: &RegisterRequest) -> Result<Checked, AppError> {
    let dsa = decode_key("ml_dsa_public_key", &req.ml_dsa_public_key)?;
    let kem = decode_key("ml_kem_public_key", &req.ml_kem_public_key)?;
    PublicIdentity::from_bytes(&dsa, &kem).map_err(|e| AppError::Invalid(e.to_string()))?;
    let taints = req
        .taints
        .as_deref()
        .map(|t| parse_taints("taints", t))
        .transpose()?;
    if let Some(r) = &req.region {
        check_label("region", r)?;
    }
    Ok(Checked {
        dsa,
        kem,
        taints,
        region: req.region.clone(),
        requested_address: req.requested_address.clone(),
        realm: req.realm.clone(),
        portal: req.portal,
    })
}

fn check_allowed(taints: &TaintSet, allowed: Option<&TaintSet>) -> Result<(), AppError> {
    match allowed {
        Some(a) if !taints.iter().all(|t| a.contains(t)) => Err(AppError::Forbidden(format!(
            "taints {taints} are not all within the allowed {a}"
        ))),
        _ => Ok(()),
    }
}

fn realm_matches(asked: Option<&String>, actual: &str) -> Result<(), AppError> {
    match asked {
        Some(r) if r != actual => Err(AppError::Invalid(format!(
            "the credential is for realm {actual:?}, not {r:?}"
        ))),
        _ => Ok(()),
    }
}

/// Picks the node's address: the requested one if it is free, else an allocated one.
fn pick_address(
    db: &Connection,
    realm: &RealmRow,
    node: &NodeId,
    requested: Option<&str>,
) -> Result<(Subnet, String), AppError> {
    let subnet = Subnet::parse(&realm.subnet).map_err(AppError::internal)?;
    let ip = match requested {
        Some(a) => {
            let ip = subnet
                .check_host(a)
                .map_err(|e| AppError::Invalid(e.to_string()))?;
            if NodeRow::address_taken(db, &realm.name, &ip.to_string())? {
                return Err(AppError::AddressTaken(ip.to_string()));
            }
            ip
        }
        None => subnet
            .allocate(node, |ip| {
                NodeRow::address_taken(db, &realm.name, &ip.to_string())
            })?
            .ok_or_else(|| AppError::SubnetFull(realm.subnet.clone()))?,
    };
    Ok((subnet, ip.to_string()))
}

/// Allocates the node's IPv6 address when its realm has an IPv6 subnet.
fn pick_address6(
    db: &Connection,
    realm: &RealmRow,
    node: &NodeId,
) -> Result<Option<String>, AppError> {
    let Some(s) = realm.subnet6.as_deref() else {
        return Ok(None);
    };
    let subnet = Subnet::parse(s).map_err(AppError::internal)?;
    let ip = subnet
        .allocate(node, |ip| {
            NodeRow::address_taken(db, &realm.name, &ip.to_string())
        })?
        .ok_or_else(|| AppError::SubnetFull(s.to_owned()))?;
    Ok(Some(ip.to_string()))
}

/// Stores a new node under `grant`.
fn insert_new(
    g: &Guardian,
    db: &Connection,
    grant: Grant,
    c: Checked,
    now: u64,
) -> Result<Registered, AppError> {
    realm_matches(c.realm.as_ref(), &grant.realm.name)?;
    let taints = match (c.taints, &grant.allowed_taints) {
        (Some(t), _) => t,
        (None, Some(a)) => a.clone(),
        (None, None) => TaintSet::new(),
    };
    check_allowed(&taints, grant.allowed_taints.as_ref())?;
    let portal = c.portal.unwrap_or(false);
    if portal && !grant.portal_allowed {
        return Err(AppError::Forbidden(
            "this credential does not allow a portal".into(),
        ));
    }
    let node_id = NodeId::random();
    let (subnet, address) =
        pick_address(db, &grant.realm, &node_id, c.requested_address.as_deref())?;
    let address6 = pick_address6(db, &grant.realm, &node_id)?;
    let token = issue(TokenKind::Conflux);
    let nats = node_user(&grant.realm.account_seed, &grant.realm.name, &node_id, now)
        .map_err(AppError::internal)?;
    let mut new = NewNode {
        node_id,
        realm: grant.realm.name.clone(),
        token_id: token.id.clone(),
        token_hash: token.hash,
        token_expires_at: now + g.lifetimes.conflux_token,
        overlay_address: address,
        overlay_address6: address6,
        owner: grant.owner,
        region: c.region.or(grant.default_region).unwrap_or_default(),
        taints,
        allowed_taints: grant.allowed_taints,
        portal,
        routed_prefixes: grant.routed_prefixes,
        ml_dsa_public_key: c.dsa,
        ml_kem_public_key: c.kem,
        certificate: Vec::new(),
        now,
    };
    let issued = cert::issue(
        &g.keys,
        &NodeRow::from(new.clone()).subject(),
        now,
        g.lifetimes.certificate,
    );
    new.certificate = issued.bytes;
    match new.insert(db) {
        Err(e) if is_unique_violation(&e) => {
            return Err(AppError::AddressTaken(new.overlay_address));
        }
        r => r?,
    }
    NodeRow::add_nats_user(db, &node_id, &nats.public_key, now)?;
    Ok(Registered {
        node: NodeRow::from(new),
        subnet: subnet.to_string(),
        subnet6: grant.realm.subnet6,
        conflux_token: Some(token),
        nats,
        not_after: issued.not_after,
    })
}

/// Re-registers a known node: same id and address, fresh keys.
fn renew(
    g: &Guardian,
    db: &Connection,
    token: &PresentedToken<'_>,
    c: Checked,
    now: u64,
) -> Result<Registered, AppError> {
    let mut node = NodeRow::by_token(db, token)?.ok_or(AppError::Unauthorized)?;
    if node.revoked_at.is_some() {
        return Err(AppError::Forbidden("this node has been revoked".into()));
    }
    if now >= node.token_expires_at {
        return Err(AppError::ConfluxTokenExpired);
    }
    node.token_expires_at = now + g.lifetimes.conflux_token;
    realm_matches(c.realm.as_ref(), &node.realm)?;
    let realm = RealmRow::get(db, &node.realm)?
        .ok_or_else(|| AppError::UnknownRealm(node.realm.clone()))?;
    if let Some(a) = c.requested_address.as_deref()
        && a.parse::<std::net::IpAddr>().ok() != node.overlay_address.parse().ok()
    {
        return Err(AppError::Invalid(format!(
            "this node's overlay address is {}; it cannot change",
            node.overlay_address
        )));
    }
    if c.portal == Some(true) && !node.portal {
        return Err(AppError::Forbidden(
            "this node is not allowed to be a portal".into(),
        ));
    }
    if let Some(t) = c.taints {
        check_allowed(&t, node.allowed_taints.as_ref())?;
        node.taints = t;
    }
    if let Some(r) = c.region {
        node.region = r;
    }
    node.ml_dsa_public_key = c.dsa;
    node.ml_kem_public_key = c.kem;
    let issued = cert::issue(&g.keys, &node.subject(), now, g.lifetimes.certificate);
    node.certificate = issued.bytes;
    NodeRow::reregister(db, &node, now)?;
    let nats = node_user(&realm.account_seed, &realm.name, &node.node_id, now)
        .map_err(AppError::internal)?;
    NodeRow::add_nats_user(db, &node.node_id, &nats.public_key, now)?;
    Ok(Registered {
        node,
        subnet: realm.subnet,
        subnet6: realm.subnet6,
        conflux_token: None,
        nats,
        not_after: issued.not_after,
    })
}

fn token_grant(db: &Connection, token: &PresentedToken<'_>, now: u64) -> Result<Grant, AppError> {
    let row = match TokenRow::spend(db, token, now)? {
        TokenUse::Spent(row) => row,
        TokenUse::Invalid => return Err(AppError::RegistrationToken(TokenProblem::Invalid)),
        TokenUse::Expired => return Err(AppError::RegistrationToken(TokenProblem::Expired)),
        TokenUse::UsedUp => return Err(AppError::RegistrationToken(TokenProblem::UsedUp)),
    };
    let realm =
        RealmRow::get(db, &row.realm)?.ok_or_else(|| AppError::UnknownRealm(row.realm.clone()))?;
    Ok(Grant {
        realm,
        owner: row.owner,
        allowed_taints: row.taints,
        default_region: row.region,
        portal_allowed: row.portal,
        routed_prefixes: row.routed_prefixes,
    })
}

async fn register(
    State(g): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<Json<RegisterResponse>, AppError> {
    let checked = check(&req)?;
    let now = g.now();
    let (kind, done) = match (&req.registration_token, &req.conflux_token, &req.oauth_jwt) {
        (Some(t), None, None) => {
            let token = PresentedToken::parse(TokenKind::Registration, t)
                .ok_or(AppError::RegistrationToken(TokenProblem::Invalid))?;
            let done = g.store.write(|db| {
                let grant = token_grant(db, &token, now)?;
                insert_new(&g, db, grant, checked, now)
            })?;
            ("registration_token", done)
        }
        (None, Some(t), None) => {
            let token =
                PresentedToken::parse(TokenKind::Conflux, t).ok_or(AppError::Unauthorized)?;
            (
                "conflux_token",
                g.store.write(|db| renew(&g, db, &token, checked, now))?,
            )
        }
        (None, None, Some(jwt)) => {
            let realm_name = req
                .realm
                .clone()
                .ok_or_else(|| AppError::Invalid("realm is required with oauth_jwt".into()))?;
            let verifier = g.oauth.as_ref().ok_or(AppError::OAuth(
                crate::guardian::error::OAuthProblem::Disabled,
            ))?;
            let who = verifier.verify(jwt, now).await.map_err(AppError::OAuth)?;
            let done = g.store.write(|db| {
                let realm = RealmRow::get(db, &realm_name)?
                    .ok_or_else(|| AppError::UnknownRealm(realm_name.clone()))?;
                let Some(allowed) = realm.oauth_taints.clone() else {
                    return Err(AppError::OAuth(
                        crate::guardian::error::OAuthProblem::Disabled,
                    ));
                };
                let grant = Grant {
                    realm,
                    owner: who.subject.clone(),
                    allowed_taints: Some(allowed),
                    default_region: None,
                    // A portal serves only its owner's nodes, so an OAuth user may run one.
                    portal_allowed: true,
                    routed_prefixes: Vec::new(),
                };
                insert_new(&g, db, grant, checked, now)
            })?;
            ("oauth", done)
        }
        _ => {
            return Err(AppError::Invalid(
                "give exactly one of registration_token, conflux_token, oauth_jwt".into(),
            ));
        }
    };
    g.metrics.registered(kind);
    g.metrics.certificate_issued();
    let realm = RealmRow::get(&g.store.read(), &done.node.realm)?
        .ok_or_else(|| AppError::UnknownRealm(done.node.realm.clone()))?;
    g.sync_record(&realm, &done.node).await;
    let node = &done.node;
    let lt = g.lifetimes;
    let refresh_jwt = jwt::issue(
        &g.keys,
        jwt::Kind::Refresh,
        &node.node_id,
        &node.realm,
        now,
        lt.refresh,
    )
    .map_err(AppError::internal)?;
    let access_jwt = jwt::issue(
        &g.keys,
        jwt::Kind::Access,
        &node.node_id,
        &node.realm,
        now,
        lt.access,
    )
    .map_err(AppError::internal)?;
    tracing::info!(node = %node.node_id, realm = %node.realm, address = %node.overlay_address, credential = kind, "node registered");
    Ok(Json(RegisterResponse {
        node_id: node.node_id.to_hex(),
        realm: node.realm.clone(),
        overlay_address: node.overlay_address.clone(),
        subnet: done.subnet,
        overlay_address6: node.overlay_address6.clone(),
        subnet6: done.subnet6,
        conflux_token: done.conflux_token.map(|t| t.plain.to_string()),
        conflux_token_expires_at: node.token_expires_at,
        refresh_jwt,
        access_jwt,
        access_expires_at: now + lt.access,
        certificate: STANDARD.encode(&node.certificate),
        certificate_not_after: done.not_after,
        guardian_keys: g.keys.published(now),
        nats: NatsCredentials {
            user_jwt: done.nats.jwt,
            user_seed: done.nats.seed.to_string(),
            subject_prefix: subject_prefix(&node.realm),
        },
    }))
}

/// `POST /v1/refresh` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The node's refresh JWT.
    pub refresh_jwt: String,
}

/// `POST /v1/refresh` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshResponse {
    /// A new access JWT.
    pub access_jwt: String,
    /// Its expiry, unix seconds.
    pub expires_at: u64,
}

async fn refresh(
    State(g): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<RefreshResponse>, AppError> {
    let now = g.now();
    let (claims, id) = jwt::verify(&g.keys, jwt::Kind::Refresh, &req.refresh_jwt, now)
        .map_err(|_| AppError::Unauthorized)?;
    let node = NodeRow::get(&g.store.read(), &id)?.ok_or(AppError::Unauthorized)?;
    if node.revoked_at.is_some() || node.realm != claims.realm {
        return Err(AppError::Unauthorized);
    }
    let access = g.lifetimes.access;
    let access_jwt = jwt::issue(&g.keys, jwt::Kind::Access, &id, &node.realm, now, access)
        .map_err(AppError::internal)?;
    Ok(Json(RefreshResponse {
        access_jwt,
        expires_at: now + access,
    }))
}
