//! Realms: create (with its NATS account and directory bucket), list, delete.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};

use conflux_shared::taint::{Realm, TaintSet};

use super::AppState;
use super::auth::Admin;
use crate::guardian::addr::Subnet;
use crate::guardian::error::{AppError, Json};
use crate::guardian::natsauth::{DIRECTORY_BUCKET, bounded, new_account};
use crate::guardian::store::{RealmRow, is_unique_violation};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/realms", post(create).get(list))
        .route("/v1/realms/{name}", delete(remove))
}

/// `POST /v1/realms` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRealm {
    /// Realm name (`[a-z0-9_-]`, at most 63 bytes).
    pub name: String,
    /// Overlay subnet, CIDR.
    pub subnet: String,
    /// IPv6 overlay subnet beside an IPv4 `subnet`, CIDR; every node gets an address in it.
    #[serde(default)]
    pub subnet6: Option<String>,
    /// Allow OAuth registration, with these taints allowed (and given by default).
    #[serde(default)]
    pub oauth_taints: Option<Vec<String>>,
}

/// A realm as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RealmView {
    /// Name.
    pub name: String,
    /// Overlay subnet.
    pub subnet: String,
    /// IPv6 overlay subnet, when the realm has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// Public key of the realm's NATS account.
    pub nats_account: String,
    /// Taints OAuth nodes may carry; absent when OAuth registration is off.
    pub oauth_taints: Option<Vec<String>>,
    /// Creation time, unix seconds.
    pub created_at: u64,
}

impl From<&RealmRow> for RealmView {
    fn from(r: &RealmRow) -> Self {
        Self {
            name: r.name.clone(),
            subnet: r.subnet.clone(),
            subnet6: r.subnet6.clone(),
            nats_account: r.account_public_key.clone(),
            oauth_taints: r
                .oauth_taints
                .as_ref()
                .map(|t| t.iter().map(|t| t.as_str().to_owned()).collect()),
            created_at: r.created_at,
        }
    }
}

/// Parses a list of taint names from a request.
pub(super) fn parse_taints(field: &str, names: &[String]) -> Result<TaintSet, AppError> {
    TaintSet::parse(names.iter().map(String::as_str))
        .map_err(|e| AppError::Invalid(format!("{field}: {e}")))
}

async fn create(
    _: Admin,
    State(g): State<AppState>,
    Json(req): Json<CreateRealm>,
) -> Result<(StatusCode, Json<RealmView>), AppError> {
    let name = Realm::new(&req.name).map_err(|e| AppError::Invalid(format!("name: {e}")))?;
    let subnet = Subnet::parse(&req.subnet).map_err(|e| AppError::Invalid(e.to_string()))?;
    let subnet6 = req
        .subnet6
        .as_deref()
        .map(|s| Subnet::parse6(s, &subnet).map_err(|e| AppError::Invalid(e.to_string())))
        .transpose()?;
    let oauth_taints = req
        .oauth_taints
        .as_deref()
        .map(|t| parse_taints("oauth_taints", t))
        .transpose()?;
    if RealmRow::get(&g.store.read(), name.as_str())?.is_some() {
        return Err(AppError::RealmExists(req.name));
    }
    let (account_public_key, account_seed) = new_account().map_err(AppError::internal)?;
    let row = RealmRow {
        name: name.as_str().to_owned(),
        subnet: subnet.to_string(),
        subnet6: subnet6.map(|s| s.to_string()),
        account_public_key,
        account_seed,
        oauth_taints,
        created_at: g.now(),
    };
    // The account must exist on nats-server before any node gets credentials for it, so a
    // realm that cannot be set up there is not stored at all.
    if let Some(nats) = g.nats() {
        let pushed = g.push_account(nats, &row).await;
        let ready = match pushed {
            Ok(()) => nats.realm(&row, g.now()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = ready {
            tracing::warn!(realm = %row.name, error = %e, "realm set-up on nats-server failed");
            return Err(AppError::NatsUnavailable);
        }
    }
    g.store.write(|db| match row.insert(db) {
        Err(e) if is_unique_violation(&e) => Err(AppError::RealmExists(row.name.clone())),
        r => r.map_err(AppError::from),
    })?;
    tracing::info!(realm = %row.name, subnet = %row.subnet, subnet6 = ?row.subnet6, "realm created");
    Ok((StatusCode::CREATED, Json(RealmView::from(&row))))
}

async fn list(_: Admin, State(g): State<AppState>) -> Result<Json<Vec<RealmView>>, AppError> {
    let realms = RealmRow::list(&g.store.read())?;
    Ok(Json(realms.iter().map(RealmView::from).collect()))
}

async fn remove(
    _: Admin,
    State(g): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    let row = RealmRow::get(&g.store.read(), &name)?.ok_or(AppError::UnknownRealm(name))?;
    if let Some(nats) = g.nats() {
        // Revoking every user of the account cuts all the realm's nodes (and Guardian's own
        // connection) off; the account key is never used again.
        if let Ok(conn) = nats.realm(&row, g.now()).await {
            let js = async_nats::jetstream::new(conn.client.clone());
            let deleted = bounded("bucket deletion", js.delete_key_value(DIRECTORY_BUCKET));
            if let Err(e) = deleted.await {
                tracing::warn!(realm = %row.name, error = %e, "directory bucket not deleted");
            }
        }
        nats.forget_realm(&row.name).await;
        let revoke_all = BTreeMap::from([("*".to_owned(), g.now())]);
        let jwt = nats
            .keys()
            .realm_account_jwt(&row.account_public_key, &row.name, revoke_all, g.now())
            .map_err(AppError::internal)?;
        let pushed = nats.push_account(&jwt).await;
        g.metrics().nats_push(pushed.is_ok());
        if let Err(e) = pushed {
            tracing::warn!(realm = %row.name, error = %e, "realm deletion not pushed");
            return Err(AppError::NatsUnavailable);
        }
    }
    g.store.write(|db| RealmRow::delete(db, &row.name))?;
    tracing::info!(realm = %row.name, "realm deleted");
    Ok(StatusCode::NO_CONTENT)
}
