//! OAuth registration against an identity provider's JWKS served over real HTTP by the
//! test itself (an axum server on 127.0.0.1:0): verification, every rejection, the cache,
//! and key rotation (a new `kid` makes Guardian fetch the JWKS again).

mod guardian_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use axum::http::{Method, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use conflux_controlplane::guardian::oauth::OAuthConfig;
use conflux_shared::cert::decode_signed;
use conflux_shared::proto::NodeCertificate;
use guardian_common::{Options, TestGuardian, register_body};

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "conflux-guardian";
const TTL: u64 = 300;

/// A signing key of the test identity provider.
struct IdpKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl IdpKey {
    fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        }
    }

    fn p256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x),
                        "y": URL_SAFE_NO_PAD.encode(y), "kid": kid, "alg": "ES256"}),
        }
    }

    /// A token with standard claims, overridden by `extra`.
    fn token(&self, now: u64, extra: Value) -> String {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice@example.test",
                                "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// The identity provider: a JWKS document served over HTTP, replaceable at runtime.
struct Idp {
    url: String,
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicU64>,
    _server: tokio::task::JoinHandle<()>,
}

impl Idp {
    async fn start(keys: &[&IdpKey]) -> Self {
        let jwks = Arc::new(Mutex::new(Value::Null));
        let hits = Arc::new(AtomicU64::new(0));
        let (j, h) = (Arc::clone(&jwks), Arc::clone(&hits));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let (j, h) = (Arc::clone(&j), Arc::clone(&h));
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    axum::Json(j.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let idp = Self {
            url: format!("http://{addr}/.well-known/jwks.json"),
            jwks,
            hits,
            _server: server,
        };
        idp.publish(keys);
        idp
    }

    fn publish(&self, keys: &[&IdpKey]) {
        let list: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        *self.jwks.lock().unwrap() = json!({ "keys": list });
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    fn config(&self) -> OAuthConfig {
        OAuthConfig {
            jwks_url: self.url.clone(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            cache_ttl: TTL,
            refetch_interval: 0,
        }
    }
}

async fn guardian(idp: &Idp) -> TestGuardian {
    let t = TestGuardian::with(Options {
        oauth: Some(idp.config()),
        ..Default::default()
    })
    .await;
    let (s, v) = t
        .admin(
            Method::POST,
            "/v1/realms",
            Some(json!({"name": "corp", "subnet": "10.60.0.0/16", "oauth_taints": ["dev", "ops"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    t.realm("closed", "10.61.0.0/16").await;
    t
}

fn oauth_body(jwt: &str, realm: &str) -> Value {
    register_body(json!({"oauth_jwt": jwt, "realm": realm})).1
}

fn cert_of(r: &Value) -> NodeCertificate {
    let signed =
        decode_signed(&STANDARD.decode(r["certificate"].as_str().unwrap()).unwrap()).unwrap();
    prost::Message::decode(signed.certificate.as_slice()).unwrap()
}

#[tokio::test]
async fn a_valid_oauth_token_registers_a_node_owned_by_its_subject() {
    let ed = IdpKey::ed25519("ed-1");
    let ec = IdpKey::p256("ec-1");
    let idp = Idp::start(&[&ed, &ec]).await;
    let t = guardian(&idp).await;

    let (s, r) = t
        .register(oauth_body(&ed.token(t.now(), json!({})), "corp"))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let cert = cert_of(&r);
    assert_eq!(cert.owner, "alice@example.test");
    assert_eq!(
        cert.taints,
        ["dev", "ops"],
        "OAuth nodes get the realm's OAuth taints"
    );
    assert!(r["conflux_token"].as_str().unwrap().starts_with("cfxn_"));

    let mut body = oauth_body(&ec.token(t.now(), json!({"sub": "bob"})), "corp");
    body["taints"] = json!(["dev"]);
    let (s, r) = t.register(body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (cert_of(&r).owner.as_str(), cert_of(&r).taints.clone()),
        ("bob", vec!["dev".to_owned()])
    );
    assert_eq!(idp.hits(), 1, "both keys came from one fetch of the JWKS");
    assert_eq!(t.g.metrics().rejections("oauth_unknown_key"), 0);
}

#[tokio::test]
async fn bad_oauth_tokens_are_refused_and_nothing_is_stored() {
    let good = IdpKey::ed25519("k1");
    let idp = Idp::start(&[&good]).await;
    let t = guardian(&idp).await;
    let now = t.now();

    let cases: Vec<(String, StatusCode, &'static str)> = vec![
        (
            good.token(now, json!({"aud": "someone-else"})),
            StatusCode::UNAUTHORIZED,
            "oauth_wrong_audience",
        ),
        (
            good.token(now, json!({"iss": "https://evil.test"})),
            StatusCode::UNAUTHORIZED,
            "oauth_wrong_issuer",
        ),
        (
            good.token(now, json!({"exp": now - 1})),
            StatusCode::UNAUTHORIZED,
            "oauth_expired",
        ),
        (
            good.token(now, json!({"nbf": now + 300})),
            StatusCode::UNAUTHORIZED,
            "oauth_expired",
        ),
        // Signed by a key the provider never published, under the published kid.
        (
            IdpKey::ed25519("k1").token(now, json!({})),
            StatusCode::UNAUTHORIZED,
            "oauth_bad_signature",
        ),
        (
            IdpKey::ed25519("k9").token(now, json!({})),
            StatusCode::UNAUTHORIZED,
            "oauth_unknown_key",
        ),
        (
            "not-a-jwt".into(),
            StatusCode::UNAUTHORIZED,
            "oauth_malformed",
        ),
        (
            good.token(now, json!({"sub": ""})),
            StatusCode::UNAUTHORIZED,
            "oauth_malformed",
        ),
    ];
    for (jwt, status, code) in cases {
        t.expect_rejected(status, code, t.register(oauth_body(&jwt, "corp")))
            .await;
    }

    // A symmetric algorithm is never accepted, whatever the key id.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &h,
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "oauth_algorithm",
        t.register(oauth_body(&hs, "corp")),
    )
    .await;

    // The realm side: OAuth not enabled there, no such realm, no realm given, a taint outside
    // the realm's OAuth taints.
    let ok = good.token(now, json!({}));
    t.expect_rejected(
        StatusCode::FORBIDDEN,
        "oauth_disabled",
        t.register(oauth_body(&ok, "closed")),
    )
    .await;
    t.expect_rejected(
        StatusCode::NOT_FOUND,
        "unknown_realm",
        t.register(oauth_body(&ok, "nowhere")),
    )
    .await;
    let no_realm = register_body(json!({"oauth_jwt": ok})).1;
    t.expect_rejected(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        t.register(no_realm),
    )
    .await;
    let mut prod = oauth_body(&ok, "corp");
    prod["taints"] = json!(["prod"]);
    t.expect_rejected(StatusCode::FORBIDDEN, "forbidden", t.register(prod))
        .await;

    assert!(
        t.nodes("corp").await.is_empty(),
        "no refused token stored a node"
    );
    assert!(t.nodes("closed").await.is_empty());
}

#[tokio::test]
async fn the_jwks_is_cached_and_refetched_when_the_provider_rotates_its_key() {
    let k1 = IdpKey::ed25519("2026-01");
    let idp = Idp::start(&[&k1]).await;
    let t = guardian(&idp).await;

    for _ in 0..3 {
        let (s, r) = t
            .register(oauth_body(&k1.token(t.now(), json!({})), "corp"))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    assert_eq!(idp.hits(), 1, "known key within the TTL: no refetch");

    // The provider rotates: k2 replaces k1. A token with the new kid triggers one refetch.
    let k2 = IdpKey::ed25519("2026-02");
    idp.publish(&[&k2]);
    let (s, r) = t
        .register(oauth_body(&k2.token(t.now(), json!({})), "corp"))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(idp.hits(), 2);

    // k1 is gone from the provider, so its tokens are refused now.
    let old = k1.token(t.now(), json!({}));
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "oauth_unknown_key",
        t.register(oauth_body(&old, "corp")),
    )
    .await;

    // Past the TTL even a known key makes Guardian fetch again.
    let before = idp.hits();
    t.advance(TTL + 1);
    let (s, _) = t
        .register(oauth_body(&k2.token(t.now(), json!({})), "corp"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(idp.hits(), before + 1);
    assert_eq!(t.nodes("corp").await.len(), 5);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_503_not_a_401() {
    let k = IdpKey::ed25519("k");
    let idp = Idp::start(&[&k]).await;
    let mut cfg = idp.config();
    // A port nothing listens on: bind one, note it, close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.jwks_url = format!("http://{dead}/jwks.json");
    let t = TestGuardian::with(Options {
        oauth: Some(cfg),
        ..Default::default()
    })
    .await;
    let (s, v) = t
        .admin(
            Method::POST,
            "/v1/realms",
            Some(json!({"name": "corp", "subnet": "10.60.0.0/16", "oauth_taints": ["dev"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = t
        .register(oauth_body(&k.token(t.now(), json!({})), "corp"))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("oauth_jwks_unavailable")
        )
    );
    assert!(t.nodes("corp").await.is_empty());
}
