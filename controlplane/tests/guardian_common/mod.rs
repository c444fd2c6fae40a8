//! Shared set-up of the Guardian tests: a Guardian on a movable clock, driven through its
//! router with `oneshot` (no sockets), and helpers to make nodes' keys.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use conflux_controlplane::guardian::oauth::OAuthConfig;
use conflux_controlplane::guardian::{Config, Guardian, Lifetimes, NatsConfig, http};
use conflux_shared::crypto::identity::NodeIdentity;

/// The admin token every test Guardian accepts.
pub const ADMIN: &str = "admin-token-for-tests-0123456789";

/// Start time of the test clock (unix seconds).
pub const T0: u64 = 1_800_000_000;

/// A Guardian under test.
pub struct TestGuardian {
    pub g: Arc<Guardian>,
    pub app: Router,
    pub clock: Arc<AtomicU64>,
    pub dir: tempfile::TempDir,
}

/// What a test Guardian is built with.
#[derive(Default)]
pub struct Options {
    pub oauth: Option<OAuthConfig>,
    pub nats: Option<NatsConfig>,
    pub lifetimes: Option<Lifetimes>,
    /// Keep the store in a file in this directory (otherwise in memory).
    pub data_dir: Option<std::path::PathBuf>,
    /// Start the clock here instead of [`T0`] (tests with real servers use the real time).
    pub start: Option<u64>,
}

impl TestGuardian {
    pub async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(o: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicU64::new(o.start.unwrap_or(T0)));
        let c = Arc::clone(&clock);
        let cfg = Config {
            data_dir: o.data_dir.clone().unwrap_or_else(|| dir.path().to_owned()),
            db: None,
            in_memory: o.data_dir.is_none(),
            admin_token: ADMIN.into(),
            oauth: o.oauth,
            nats: o.nats,
            lifetimes: o.lifetimes.unwrap_or_default(),
        };
        let g = Guardian::open(cfg, Arc::new(move || c.load(Ordering::SeqCst)))
            .await
            .unwrap();
        let app = http::router(Arc::clone(&g));
        Self { g, app, clock, dir }
    }

    /// Moves the clock forward.
    pub fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, body)
    }

    /// A JSON call with an optional bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = bearer {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    /// Raw bytes as a JSON body.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(Method::POST).uri(path);
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        self.send(b.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN), body).await
    }

    /// Creates a realm; panics unless it was created.
    pub async fn realm(&self, name: &str, subnet: &str) -> Value {
        let (s, v) = self
            .admin(
                Method::POST,
                "/v1/realms",
                Some(json!({"name": name, "subnet": subnet})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Creates a registration token; returns its plain text.
    pub async fn token(&self, realm: &str, body: Value) -> String {
        let (s, v) = self
            .admin(
                Method::POST,
                &format!("/v1/realms/{realm}/tokens"),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// A token with an hour of life and `uses` uses.
    pub async fn simple_token(&self, realm: &str, uses: u32) -> String {
        self.token(realm, json!({"expires_in_secs": 3600, "uses": uses}))
            .await
    }

    pub async fn register(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/v1/register", None, Some(body))
            .await
    }

    /// Nodes of `realm` as the admin sees them.
    pub async fn nodes(&self, realm: &str) -> Vec<Value> {
        let (s, v) = self
            .admin(Method::GET, &format!("/v1/realms/{realm}/nodes"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v.as_array().unwrap().clone()
    }

    pub fn rejections(&self, code: &'static str) -> u64 {
        self.g.metrics().rejections(code)
    }

    /// Asserts a call was refused with `status` and `code`, and that the rejection counter
    /// for `code` went up by exactly one.
    pub async fn expect_rejected(
        &self,
        status: StatusCode,
        code: &'static str,
        call: impl std::future::Future<Output = (StatusCode, Value)>,
    ) -> Value {
        let before = self.rejections(code);
        let (s, v) = call.await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert_eq!(self.rejections(code), before + 1, "counter for {code}");
        v
    }
}

/// A node's fresh identity and the base64 of its public keys.
pub fn node_keys() -> (NodeIdentity, String, String) {
    let id = NodeIdentity::generate();
    let dsa = STANDARD.encode(id.public().dsa_bytes());
    let kem = STANDARD.encode(id.public().kem_bytes());
    (id, dsa, kem)
}

/// A registration body with `cred` (a JSON object holding the credential) and fresh keys.
pub fn register_body(cred: Value) -> (NodeIdentity, Value) {
    let (id, dsa, kem) = node_keys();
    let mut body = json!({"ml_dsa_public_key": dsa, "ml_kem_public_key": kem});
    for (k, v) in cred.as_object().unwrap() {
        body[k] = v.clone();
    }
    (id, body)
}
