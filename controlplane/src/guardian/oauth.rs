//! OAuth registration: verifying an identity provider's JWT against its JWKS.
//!
//! The JWKS is fetched over HTTP(S) and cached for a TTL. A token naming a `kid` the cache
//! does not hold triggers one refetch (at most one per `refetch_interval`, so a flood of
//! made-up key ids cannot hammer the provider): that is how a provider's key rotation is
//! picked up without waiting for the TTL. Only asymmetric algorithms are accepted, and the
//! algorithm must agree with the key.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::error::OAuthProblem;

/// Where and what to accept.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// URL of the provider's JWKS document.
    pub jwks_url: String,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    /// How long a fetched JWKS is used before it is fetched again, seconds.
    pub cache_ttl: u64,
    /// Least time between two fetches caused by unknown key ids, seconds.
    pub refetch_interval: u64,
}

/// Who the token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthIdentity {
    /// The `sub` claim.
    pub subject: String,
}

#[derive(Default)]
struct Cache {
    set: Option<JwkSet>,
    fetched_at: u64,
    last_attempt: Option<u64>,
}

/// Verifies identity-provider JWTs; holds the JWKS cache.
pub struct OAuthVerifier {
    cfg: OAuthConfig,
    http: reqwest::Client,
    // An async mutex also makes concurrent misses wait for one fetch instead of each
    // fetching.
    cache: tokio::sync::Mutex<Cache>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for OAuthVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthVerifier")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Deserialize)]
struct Times {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
}

impl OAuthVerifier {
    /// A verifier for `cfg`.
    pub fn new(cfg: OAuthConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            cfg,
            http,
            cache: tokio::sync::Mutex::new(Cache::default()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many times the JWKS has been fetched (successfully or not).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .http
            .get(&self.cfg.jwks_url)
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.json::<JwkSet>().await?)
    }

    /// The JWK for `kid`, from the cache or a fetch.
    async fn key(&self, kid: &str, now: u64) -> Result<Jwk, OAuthProblem> {
        let mut cache = self.cache.lock().await;
        let fresh =
            cache.set.is_some() && now < cache.fetched_at.saturating_add(self.cfg.cache_ttl);
        let cached = cache.set.as_ref().and_then(|s| s.find(kid)).cloned();
        if let (true, Some(k)) = (fresh, &cached) {
            return Ok(k.clone());
        }
        let may_fetch = !fresh
            || cache
                .last_attempt
                .is_none_or(|t| now >= t.saturating_add(self.cfg.refetch_interval));
        if may_fetch {
            cache.last_attempt = Some(now);
            match self.fetch().await {
                Ok(set) => {
                    cache.set = Some(set);
                    cache.fetched_at = now;
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), url = %self.cfg.jwks_url, "JWKS fetch failed");
                    // A stale copy that knows the key is better than refusing everyone.
                    return cached.ok_or(OAuthProblem::JwksUnavailable);
                }
            }
        }
        cache
            .set
            .as_ref()
            .and_then(|s| s.find(kid))
            .cloned()
            .ok_or(OAuthProblem::UnknownKey)
    }

    /// Verifies `token` at `now` (unix seconds).
    pub async fn verify(&self, token: &str, now: u64) -> Result<OAuthIdentity, OAuthProblem> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| OAuthProblem::Malformed)?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(OAuthProblem::Algorithm);
        }
        let kid = header.kid.ok_or(OAuthProblem::Malformed)?;
        let jwk = self.key(&kid, now).await?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string().parse::<Algorithm>().ok() != Some(header.alg)
        {
            return Err(OAuthProblem::Algorithm);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| OAuthProblem::UnknownKey)?;
        if key.family() != header.alg.family() {
            return Err(OAuthProblem::Algorithm);
        }
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&self.cfg.audience]);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v.validate_exp = false;
        v.validate_nbf = false;
        let data = jsonwebtoken::decode::<Times>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => OAuthProblem::Signature,
            ErrorKind::InvalidAudience => OAuthProblem::Audience,
            ErrorKind::InvalidIssuer => OAuthProblem::Issuer,
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => OAuthProblem::Expired,
            ErrorKind::InvalidAlgorithm => OAuthProblem::Algorithm,
            _ => OAuthProblem::Malformed,
        })?;
        let Times { sub, exp, nbf } = data.claims;
        if exp.is_none_or(|exp| now >= exp) || nbf.is_some_and(|nbf| now < nbf) {
            return Err(OAuthProblem::Expired);
        }
        match sub {
            Some(subject) if !subject.is_empty() => Ok(OAuthIdentity { subject }),
            _ => Err(OAuthProblem::Malformed),
        }
    }
}
