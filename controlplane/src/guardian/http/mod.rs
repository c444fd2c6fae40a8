//! Guardian's HTTP JSON API: one module per resource, each with its own `router()`.
//!
//! | method | path | who | module |
//! |---|---|---|---|
//! | POST, GET | `/v1/realms` | admin | [`realms`] |
//! | DELETE | `/v1/realms/{name}` | admin | [`realms`] |
//! | POST | `/v1/realms/{realm}/tokens` | admin | [`tokens`] |
//! | POST | `/v1/register` | token / conflux token / OAuth JWT | [`register`] |
//! | POST | `/v1/refresh` | refresh JWT | [`register`] |
//! | GET | `/v1/realms/{realm}/nodes` | admin | [`nodes`] |
//! | POST | `/v1/nodes/{node_id}/revoke` | admin | [`nodes`] |
//! | PUT | `/v1/nodes/self/taints` | access JWT | [`nodes`] |
//! | POST | `/v1/nodes/self/certificate` | access JWT | [`nodes`] |
//! | GET | `/v1/keys` | anyone | [`keys`] |
//! | POST | `/v1/admin/rotate-keys` | admin | [`keys`] |
//! | GET | `/healthz`, `/metrics` | anyone | [`ops`] |
//!
//! Every failure is an [`AppError`]; a middleware counts refused requests by error code.

pub mod auth;
pub mod keys;
pub mod nodes;
pub mod ops;
pub mod realms;
pub mod register;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use super::Guardian;
use super::error::{AppError, Rejected};

/// Shared state of every handler.
pub type AppState = Arc<Guardian>;

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(realms::router())
        .merge(tokens::router())
        .merge(register::router())
        .merge(nodes::router())
        .merge(keys::router())
        .merge(ops::router())
        .fallback(|| async { AppError::NoSuchEndpoint })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .with_state(state)
}

async fn count_rejections(State(g): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    match resp.extensions().get::<Rejected>() {
        Some(r) => g.metrics().rejected(r.0),
        // Refusals axum makes itself (an unsupported method, say).
        None if resp.status().is_client_error() => g.metrics().rejected("other"),
        None => {}
    }
    resp
}
