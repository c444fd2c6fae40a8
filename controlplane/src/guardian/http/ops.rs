//! Liveness and metrics.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use crate::guardian::error::Json;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}

/// `GET /healthz` answer.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Always `ok` when Guardian answers.
    pub status: &'static str,
    /// Whether NATS is configured.
    pub nats: bool,
    /// Changes waiting to reach nats-server.
    pub nats_pending: usize,
}

async fn health(State(g): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        nats: g.nats().is_some(),
        nats_pending: g.pending().len(),
    })
}

async fn metrics(State(g): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        g.metrics().render(),
    )
}
