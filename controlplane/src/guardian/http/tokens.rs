//! Registration tokens: an admin makes one for a realm; the plain token is shown once.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Admin;
use super::realms::parse_taints;
use crate::guardian::error::{AppError, Json};
use crate::guardian::secret::{TokenKind, issue};
use crate::guardian::store::{NewToken, RealmRow};

/// Longest a registration token may live, seconds.
pub const MAX_TOKEN_LIFETIME: u64 = 365 * 24 * 3600;
/// Most registrations one token may allow.
pub const MAX_TOKEN_USES: u32 = 100_000;
/// Longest region or owner string.
pub const MAX_LABEL_LEN: usize = 128;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/realms/{realm}/tokens", post(create))
}

/// `POST /v1/realms/{realm}/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Seconds until the token expires.
    pub expires_in_secs: u64,
    /// Registrations it allows.
    pub uses: u32,
    /// Taints its nodes may carry (and get by default); absent: any.
    #[serde(default)]
    pub taints: Option<Vec<String>>,
    /// Default region of its nodes.
    #[serde(default)]
    pub region: Option<String>,
    /// Owner of its nodes; default `admin`.
    #[serde(default)]
    pub owner: Option<String>,
    /// Its nodes may be portals.
    #[serde(default)]
    pub portal: bool,
    /// Prefixes its nodes may route (CIDR), making them gateways.
    #[serde(default)]
    pub routed_prefixes: Vec<String>,
}

/// `POST /v1/realms/{realm}/tokens` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Public id of the token.
    pub id: String,
    /// The token: shown this once, stored only hashed.
    pub token: String,
    /// Realm it registers into.
    pub realm: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// Registrations it allows.
    pub uses: u32,
}

/// Checks a free-text label (region, owner): printable, bounded.
pub(super) fn check_label(field: &str, s: &str) -> Result<(), AppError> {
    if s.len() > MAX_LABEL_LEN || s.chars().any(char::is_control) {
        return Err(AppError::Invalid(format!(
            "{field}: at most {MAX_LABEL_LEN} bytes of printable text"
        )));
    }
    Ok(())
}

async fn create(
    _: Admin,
    State(g): State<AppState>,
    Path(realm): Path<String>,
    Json(req): Json<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    if !(1..=MAX_TOKEN_LIFETIME).contains(&req.expires_in_secs) {
        return Err(AppError::Invalid(format!(
            "expires_in_secs: between 1 and {MAX_TOKEN_LIFETIME}"
        )));
    }
    if !(1..=MAX_TOKEN_USES).contains(&req.uses) {
        return Err(AppError::Invalid(format!(
            "uses: between 1 and {MAX_TOKEN_USES}"
        )));
    }
    let taints = req
        .taints
        .as_deref()
        .map(|t| parse_taints("taints", t))
        .transpose()?;
    if let Some(r) = &req.region {
        check_label("region", r)?;
    }
    let owner = req.owner.unwrap_or_else(|| "admin".to_owned());
    check_label("owner", &owner)?;
    for p in &req.routed_prefixes {
        let net: ipnet::IpNet = p
            .parse()
            .map_err(|_| AppError::Invalid(format!("routed_prefixes: {p:?} is not CIDR")))?;
        if net.trunc() != net {
            return Err(AppError::Invalid(format!(
                "routed_prefixes: {p} has host bits set"
            )));
        }
    }
    let now = g.now();
    let issued = issue(TokenKind::Registration);
    let new = NewToken {
        id: issued.id.clone(),
        hash: issued.hash,
        realm: realm.clone(),
        expires_at: now + req.expires_in_secs,
        uses: req.uses,
        taints,
        region: req.region,
        owner,
        portal: req.portal,
        routed_prefixes: req.routed_prefixes,
        created_at: now,
    };
    g.store.write(|db| {
        if RealmRow::get(db, &realm)?.is_none() {
            return Err(AppError::UnknownRealm(realm.clone()));
        }
        new.insert(db).map_err(AppError::from)
    })?;
    tracing::info!(realm = %realm, token = %new.id, uses = new.uses, "registration token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: new.id,
            token: issued.plain.to_string(),
            realm,
            expires_at: new.expires_at,
            uses: new.uses,
        }),
    ))
}
