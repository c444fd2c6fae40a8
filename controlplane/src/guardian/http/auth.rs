//! Who is calling: the admin (admin token) or a node (access JWT), both as
//! `Authorization: Bearer …`. Every failure is the same bare 401, so a caller learns nothing
//! about why.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use crate::guardian::error::AppError;
use crate::guardian::jwt;
use crate::guardian::store::NodeRow;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller holds the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, g: &AppState) -> Result<Self, AppError> {
        match bearer(parts) {
            Some(t) if g.admin.check(t) => Ok(Self),
            _ => Err(AppError::Unauthorized),
        }
    }
}

/// The caller is a registered, unrevoked node with a valid access JWT.
#[derive(Debug, Clone)]
pub struct AuthNode(pub NodeRow);

impl FromRequestParts<AppState> for AuthNode {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, g: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or(AppError::Unauthorized)?;
        let (claims, id) = jwt::verify(&g.keys, jwt::Kind::Access, token, g.now())
            .map_err(|_| AppError::Unauthorized)?;
        let node = NodeRow::get(&g.store.read(), &id)?.ok_or(AppError::Unauthorized)?;
        if node.revoked_at.is_some() || node.realm != claims.realm {
            return Err(AppError::Unauthorized);
        }
        Ok(Self(node))
    }
}
