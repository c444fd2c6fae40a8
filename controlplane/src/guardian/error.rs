//! The one error type of Guardian's HTTP API.
//!
//! Every rejection becomes a 4xx response with a JSON body `{"error": code, "message": text}`
//! where `code` is stable (clients match on it) and `text` is for people. Internal failures
//! become a bare 500: the cause is logged here and never shown to the client. Each response
//! carries its code as a [`Rejected`] extension so the metrics layer can count rejections by
//! reason without the handlers doing it.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The body is not the JSON the endpoint expects.
    #[error("malformed request body: {0}")]
    BadJson(String),
    /// The body is not declared as JSON.
    #[error("expected a JSON body (content-type: application/json)")]
    NotJson,
    /// A field has a value the endpoint does not accept.
    #[error("{0}")]
    Invalid(String),
    /// Missing or wrong credentials (admin token, access or refresh JWT, conflux token).
    #[error("not authorized")]
    Unauthorized,
    /// A conflux token past its expiry: the node must be enrolled again.
    #[error("conflux token expired; enroll the node again with a registration token")]
    ConfluxTokenExpired,
    /// A registration token that is unknown, expired or used up.
    #[error("registration token {0}")]
    RegistrationToken(TokenProblem),
    /// An OAuth JWT that did not pass verification.
    #[error("OAuth token rejected: {0}")]
    OAuth(OAuthProblem),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No realm of that name.
    #[error("unknown realm {0:?}")]
    UnknownRealm(String),
    /// No node of that id.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// No endpoint at this path.
    #[error("no such endpoint")]
    NoSuchEndpoint,
    /// The realm already exists.
    #[error("realm {0:?} already exists")]
    RealmExists(String),
    /// Another node holds the requested overlay address.
    #[error("overlay address {0} is taken")]
    AddressTaken(String),
    /// Every address of the realm's subnet is taken.
    #[error("realm subnet {0} is full")]
    SubnetFull(String),
    /// NATS is configured but could not be reached; nothing was changed.
    #[error("the control channel (NATS) is unavailable; try again")]
    NatsUnavailable,
    /// A failure that is not the client's fault; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// What was wrong with a registration token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// Unknown id, wrong secret or wrong format (not told apart, to give a guesser nothing).
    #[error("is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("has expired")]
    Expired,
    /// Every use has been spent.
    #[error("has been used up")]
    UsedUp,
}

/// What was wrong with an OAuth JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OAuthProblem {
    /// OAuth is not configured on this Guardian, or not allowed in the realm.
    #[error("OAuth registration is not enabled here")]
    Disabled,
    /// Not a JWT, or a header or claim of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// The signing key id is not in the identity provider's JWKS.
    #[error("unknown signing key")]
    UnknownKey,
    /// The algorithm is not accepted or does not match the key.
    #[error("algorithm not accepted")]
    Algorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `aud` does not name this Guardian.
    #[error("wrong audience")]
    Audience,
    /// `iss` is not the configured identity provider.
    #[error("wrong issuer")]
    Issuer,
    /// Past `exp`, or before `nbf`.
    #[error("expired or not yet valid")]
    Expired,
    /// The identity provider's JWKS could not be fetched.
    #[error("identity provider unreachable")]
    JwksUnavailable,
}

impl AppError {
    /// Wraps any failure that is not the client's fault.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized | Self::RegistrationToken(_) | Self::ConfluxTokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Self::OAuth(OAuthProblem::Disabled) | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::OAuth(OAuthProblem::JwksUnavailable) | Self::NatsUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::OAuth(_) => StatusCode::UNAUTHORIZED,
            Self::UnknownRealm(_) | Self::UnknownNode(_) | Self::NoSuchEndpoint => {
                StatusCode::NOT_FOUND
            }
            Self::RealmExists(_) | Self::AddressTaken(_) | Self::SubnetFull(_) => {
                StatusCode::CONFLICT
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code, also the metrics label of the rejection.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::NotJson => "not_json",
            Self::Invalid(_) => "invalid_argument",
            Self::Unauthorized => "unauthorized",
            Self::ConfluxTokenExpired => "conflux_token_expired",
            Self::RegistrationToken(TokenProblem::Invalid) => "token_invalid",
            Self::RegistrationToken(TokenProblem::Expired) => "token_expired",
            Self::RegistrationToken(TokenProblem::UsedUp) => "token_used_up",
            Self::OAuth(p) => match p {
                OAuthProblem::Disabled => "oauth_disabled",
                OAuthProblem::Malformed => "oauth_malformed",
                OAuthProblem::UnknownKey => "oauth_unknown_key",
                OAuthProblem::Algorithm => "oauth_algorithm",
                OAuthProblem::Signature => "oauth_bad_signature",
                OAuthProblem::Audience => "oauth_wrong_audience",
                OAuthProblem::Issuer => "oauth_wrong_issuer",
                OAuthProblem::Expired => "oauth_expired",
                OAuthProblem::JwksUnavailable => "oauth_jwks_unavailable",
            },
            Self::Forbidden(_) => "forbidden",
            Self::UnknownRealm(_) => "unknown_realm",
            Self::UnknownNode(_) => "unknown_node",
            Self::NoSuchEndpoint => "no_such_endpoint",
            Self::RealmExists(_) => "realm_exists",
            Self::AddressTaken(_) => "address_taken",
            Self::SubnetFull(_) => "subnet_full",
            Self::NatsUnavailable => "nats_unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

/// The error code of a rejected request, attached to its response for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct Rejected(pub &'static str);

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let code = self.code();
        let body = Body {
            error: code,
            message: self.to_string(),
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        resp.extensions_mut().insert(Rejected(code));
        resp
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(e)
    }
}

/// A JSON body extractor whose rejections are [`AppError`]s, so a malformed body gets the
/// same error shape as every other failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::NotJson),
            Err(rej) => Err(AppError::BadJson(rej.body_text())),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
