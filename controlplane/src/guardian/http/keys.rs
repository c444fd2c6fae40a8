//! Guardian's public certificate keys, and their rotation.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Admin;
use crate::guardian::error::{AppError, Json};
use crate::guardian::keys::PublishedKey;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list))
        .route("/v1/admin/rotate-keys", post(rotate))
}

/// `GET /v1/keys` answer.
#[derive(Debug, Serialize)]
pub struct Keys {
    /// The current key first, then retired keys whose certificates may still be valid.
    pub keys: Vec<PublishedKey>,
}

/// `POST /v1/admin/rotate-keys` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Rotated {
    /// Id of the new certificate key.
    pub certificate_key_id: String,
    /// `kid` of the new JWT key.
    pub jwt_key_id: String,
}

async fn list(State(g): State<AppState>) -> Json<Keys> {
    Json(Keys {
        keys: g.keys.published(g.now()),
    })
}

async fn rotate(_: Admin, State(g): State<AppState>) -> Result<Json<Rotated>, AppError> {
    let (certificate_key_id, jwt_key_id) = g.keys.rotate(g.now()).map_err(AppError::internal)?;
    tracing::info!(%certificate_key_id, %jwt_key_id, "signing keys rotated");
    Ok(Json(Rotated {
        certificate_key_id,
        jwt_key_id,
    }))
}
