//! Guardian's HTTP API from the node's side: registration, token refresh, taint changes,
//! certificate renewal and Guardian's keys.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use conflux_shared::cert::{self, GuardianKey};
use conflux_shared::crypto::identity::PublicIdentity;
use conflux_shared::id::NodeId;
use conflux_shared::proto::SignedCertificate;
use conflux_shared::taint::TaintSet;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::nats::NatsCredentials;

/// How long one call to Guardian may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to Guardian failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    /// Guardian could not be reached or the connection broke.
    #[error("cannot reach Guardian at {url}: {source}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// Guardian answered with an error.
    #[error("Guardian refused {what} ({status}): {code}: {message}")]
    Refused {
        /// What was asked.
        what: &'static str,
        /// HTTP status.
        status: StatusCode,
        /// Guardian's stable error code.
        code: String,
        /// Guardian's explanation.
        message: String,
    },
    /// Guardian's answer is not what its API promises.
    #[error("Guardian's answer to {what} is invalid: {detail}")]
    BadAnswer {
        /// What was asked.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl GuardianError {
    /// Whether Guardian rejected the credential itself (as opposed to being unreachable).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, GuardianError::Refused { status, .. }
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    }
}

/// The credential a registration presents (exactly one).
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// A one-time registration token.
    RegistrationToken(&'a str),
    /// The node's conflux token from an earlier registration.
    ConfluxToken(&'a str),
    /// An identity provider's JWT, for the named realm.
    OAuth {
        /// The JWT.
        jwt: &'a str,
        /// The realm to join.
        realm: &'a str,
    },
}

/// What a node asks for besides its credential.
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    /// Realm to check against (token registrations) or join (OAuth).
    pub realm: Option<String>,
    /// Overlay address asked for.
    pub requested_address: Option<IpAddr>,
    /// Region to declare.
    pub region: Option<String>,
    /// Taints asked for.
    pub taints: Option<TaintSet>,
    /// Ask to be a portal.
    pub portal: Option<bool>,
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    registration_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conflux_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth_jwt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realm: Option<&'a str>,
    ml_dsa_public_key: String,
    ml_kem_public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    taints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    portal: Option<bool>,
}

#[derive(Deserialize)]
struct KeyJson {
    key_id: String,
    ml_dsa_public_key: String,
}

#[derive(Deserialize)]
struct NatsJson {
    user_jwt: String,
    user_seed: String,
    #[serde(default)]
    subject_prefix: String,
}

#[derive(Deserialize)]
struct RegisterResponse {
    node_id: String,
    realm: String,
    overlay_address: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    subnet6: Option<String>,
    #[serde(default)]
    conflux_token: Option<String>,
    refresh_jwt: String,
    access_jwt: String,
    certificate: String,
    guardian_keys: Vec<KeyJson>,
    nats: NatsJson,
}

#[derive(Deserialize)]
struct CertificateResponse {
    certificate: String,
}

#[derive(Deserialize)]
struct RefreshResponse {
    access_jwt: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeysResponse {
    Wrapped { keys: Vec<KeyJson> },
    Bare(Vec<KeyJson>),
}

#[derive(Deserialize)]
struct ErrorJson {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

/// What Guardian hands a node at registration.
pub struct Registration {
    /// The node's stable id.
    pub node_id: NodeId,
    /// Its realm.
    pub realm: String,
    /// Its overlay address.
    pub overlay_address: String,
    /// The realm's overlay subnet.
    pub subnet: String,
    /// The realm's IPv6 overlay subnet, when it has one (the certificate carries the
    /// node's address in it).
    pub subnet6: Option<String>,
    /// The conflux token (first registration only).
    pub conflux_token: Option<Zeroizing<String>>,
    /// The long-lived refresh JWT.
    pub refresh_jwt: Zeroizing<String>,
    /// The certificate for this run's keys.
    pub certificate: SignedCertificate,
    /// Guardian's keys that certificates may be signed with.
    pub guardian_keys: Vec<GuardianKey>,
    /// NATS user credentials.
    pub nats: NatsCredentials,
    /// Subject prefix Guardian's permissions allow (`conflux.<realm>`).
    pub subject_prefix: String,
}

/// A client of one Guardian.
pub struct GuardianClient {
    http: reqwest::Client,
    base: String,
    refresh_jwt: Mutex<Zeroizing<String>>,
    access_jwt: Mutex<Zeroizing<String>>,
}

impl std::fmt::Debug for GuardianClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardianClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn decode_keys(what: &'static str, keys: Vec<KeyJson>) -> Result<Vec<GuardianKey>, GuardianError> {
    let bad = |detail: String| GuardianError::BadAnswer { what, detail };
    keys.into_iter()
        .map(|k| {
            let bytes = B64
                .decode(&k.ml_dsa_public_key)
                .map_err(|e| bad(format!("key {}: {e}", k.key_id)))?;
            let key = GuardianKey::from_bytes(&bytes)
                .map_err(|e| bad(format!("key {}: {e}", k.key_id)))?;
            // The id is derived from the key, never believed from the answer.
            if key.key_id() != k.key_id {
                return Err(bad(format!("key id {} does not match its key", k.key_id)));
            }
            Ok(key)
        })
        .collect()
}

fn decode_cert(what: &'static str, b64: &str) -> Result<SignedCertificate, GuardianError> {
    let bytes = B64.decode(b64).map_err(|e| GuardianError::BadAnswer {
        what,
        detail: format!("certificate: {e}"),
    })?;
    cert::decode_signed(&bytes).map_err(|e| GuardianError::BadAnswer {
        what,
        detail: e.to_string(),
    })
}

impl GuardianClient {
    /// A client of the Guardian at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self, GuardianError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|source| GuardianError::Unreachable {
                url: base.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            refresh_jwt: Mutex::new(Zeroizing::new(String::new())),
            access_jwt: Mutex::new(Zeroizing::new(String::new())),
        })
    }

    /// Registers this run's keys and returns what Guardian issued.
    pub async fn register(
        &self,
        credential: Credential<'_>,
        public: &PublicIdentity,
        opts: &RegisterOptions,
    ) -> Result<Registration, GuardianError> {
        const WHAT: &str = "registration";
        let (registration_token, conflux_token, oauth_jwt, realm) = match credential {
            Credential::RegistrationToken(t) => (Some(t), None, None, opts.realm.as_deref()),
            Credential::ConfluxToken(t) => (None, Some(t), None, None),
            Credential::OAuth { jwt, realm } => (None, None, Some(jwt), Some(realm)),
        };
        let body = RegisterRequest {
            registration_token,
            conflux_token,
            oauth_jwt,
            realm,
            ml_dsa_public_key: B64.encode(public.dsa_bytes()),
            ml_kem_public_key: B64.encode(public.kem_bytes()),
            requested_address: opts.requested_address.map(|a| a.to_string()),
            region: opts.region.as_deref(),
            taints: opts
                .taints
                .as_ref()
                .map(|t| t.iter().map(|t| t.to_string()).collect()),
            portal: opts.portal,
        };
        let r: RegisterResponse = self
            .call(WHAT, self.http.post(self.url("/v1/register")).json(&body))
            .await?;
        let bad = |detail: String| GuardianError::BadAnswer { what: WHAT, detail };
        let node_id = NodeId::from_hex(&r.node_id).map_err(|e| bad(format!("node_id: {e}")))?;
        let reg = Registration {
            node_id,
            realm: r.realm,
            overlay_address: r.overlay_address,
            subnet: r.subnet,
            subnet6: r.subnet6,
            conflux_token: r.conflux_token.map(Zeroizing::new),
            refresh_jwt: Zeroizing::new(r.refresh_jwt),
            certificate: decode_cert(WHAT, &r.certificate)?,
            guardian_keys: decode_keys(WHAT, r.guardian_keys)?,
            nats: NatsCredentials {
                user_jwt: r.nats.user_jwt,
                user_seed: Zeroizing::new(r.nats.user_seed),
            },
            subject_prefix: r.nats.subject_prefix,
        };
        *self.refresh_jwt.lock().await = reg.refresh_jwt.clone();
        *self.access_jwt.lock().await = Zeroizing::new(r.access_jwt);
        Ok(reg)
    }

    /// Asks Guardian to certify this node with `taints`; returns the new certificate.
    pub async fn set_taints(&self, taints: &TaintSet) -> Result<SignedCertificate, GuardianError> {
        const WHAT: &str = "taint change";
        let body = serde_json::json!({
            "taints": taints.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        });
        let r: CertificateResponse = self
            .authed(
                WHAT,
                |c, url| c.put(url).json(&body),
                "/v1/nodes/self/taints",
            )
            .await?;
        decode_cert(WHAT, &r.certificate)
    }

    /// Asks Guardian for a renewed certificate.
    pub async fn renew_certificate(&self) -> Result<SignedCertificate, GuardianError> {
        const WHAT: &str = "certificate renewal";
        let r: CertificateResponse = self
            .authed(WHAT, |c, url| c.post(url), "/v1/nodes/self/certificate")
            .await?;
        decode_cert(WHAT, &r.certificate)
    }

    /// Guardian's current and still-valid certificate keys.
    pub async fn keys(&self) -> Result<Vec<GuardianKey>, GuardianError> {
        const WHAT: &str = "key list";
        let r: KeysResponse = self.call(WHAT, self.http.get(self.url("/v1/keys"))).await?;
        let keys = match r {
            KeysResponse::Wrapped { keys } | KeysResponse::Bare(keys) => keys,
        };
        decode_keys(WHAT, keys)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn refresh(&self) -> Result<(), GuardianError> {
        const WHAT: &str = "token refresh";
        let refresh = self.refresh_jwt.lock().await.clone();
        let body = serde_json::json!({ "refresh_jwt": refresh.as_str() });
        let r: RefreshResponse = self
            .call(WHAT, self.http.post(self.url("/v1/refresh")).json(&body))
            .await?;
        *self.access_jwt.lock().await = Zeroizing::new(r.access_jwt);
        Ok(())
    }

    /// Calls with the access JWT; on 401 refreshes it once and tries again.
    async fn authed<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        build: impl Fn(&reqwest::Client, String) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, GuardianError> {
        for first in [true, false] {
            let token = self.access_jwt.lock().await.clone();
            let req = build(&self.http, self.url(path)).bearer_auth(token.as_str());
            match self.call(what, req).await {
                Err(e) if first && e.is_unauthorized() => self.refresh().await?,
                other => return other,
            }
        }
        unreachable!("the second attempt always returns")
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, GuardianError> {
        let unreachable = |source: reqwest::Error| GuardianError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let e: ErrorJson = serde_json::from_slice(&bytes).unwrap_or(ErrorJson {
                error: "unknown".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            return Err(GuardianError::Refused {
                what,
                status,
                code: e.error,
                message: e.message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| GuardianError::BadAnswer {
            what,
            detail: e.to_string(),
        })
    }
}
