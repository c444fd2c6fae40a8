//! Guardian's HTTP API driven through its router (`oneshot`, no sockets, no NATS): the good
//! paths and every bad input the API must refuse with a 4xx, storing nothing and counting it.

mod guardian_common;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use conflux_shared::cert::{GuardianKey, decode_signed, verify};
use conflux_shared::proto::NodeCertificate;
use guardian_common::{TestGuardian, node_keys, register_body};

/// Guardian's published keys, as a node would fetch them.
async fn guardian_keys(t: &TestGuardian) -> Vec<GuardianKey> {
    let (s, v) = t.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!(s, StatusCode::OK);
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let pk = STANDARD
                .decode(k["ml_dsa_public_key"].as_str().unwrap())
                .unwrap();
            GuardianKey::from_bytes(&pk).unwrap()
        })
        .collect()
}

/// Verifies a base64 certificate as a peer would.
async fn check_cert(t: &TestGuardian, b64: &str) -> NodeCertificate {
    let signed = decode_signed(&STANDARD.decode(b64).unwrap()).unwrap();
    verify(&signed, &guardian_keys(t).await, t.now()).unwrap()
}

#[tokio::test]
async fn register_with_a_token_then_restart_with_the_conflux_token() {
    let t = TestGuardian::new().await;
    t.realm("lab", "10.40.0.0/16").await;
    let token = t
        .token(
            "lab",
            json!({"expires_in_secs": 600, "uses": 1, "taints": ["dev", "stage"], "owner": "ops", "region": "eu"}),
        )
        .await;
    let (node, body) = register_body(json!({"registration_token": token, "taints": ["dev"]}));
    let (s, r) = t.register(body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["realm"], "lab");
    assert_eq!(r["subnet"], "10.40.0.0/16");
    assert_eq!(r["nats"]["subject_prefix"], "conflux.lab");
    assert!(r["nats"]["user_seed"].as_str().unwrap().starts_with("SU"));

    let cert = check_cert(&t, r["certificate"].as_str().unwrap()).await;
    assert_eq!(
        cert.node_id().unwrap().to_hex(),
        r["node_id"].as_str().unwrap()
    );
    assert_eq!(cert.overlay_address, r["overlay_address"].as_str().unwrap());
    assert_eq!(cert.taints, ["dev"]);
    assert_eq!((cert.owner.as_str(), cert.region.as_str()), ("ops", "eu"));
    assert_eq!(cert.ml_dsa_public_key, node.public().dsa_bytes());
    assert_eq!(cert.not_after, r["certificate_not_after"].as_u64().unwrap());

    // A restart: fresh keys, the conflux token, no registration token.
    let conflux = r["conflux_token"].as_str().unwrap();
    let (node2, body2) = register_body(json!({"conflux_token": conflux}));
    let (s, r2) = t.register(body2).await;
    assert_eq!(s, StatusCode::OK, "{r2}");
    assert_eq!(r2["node_id"], r["node_id"]);
    assert_eq!(r2["overlay_address"], r["overlay_address"]);
    assert!(
        r2["conflux_token"].is_null(),
        "the conflux token is shown only once"
    );
    let cert2 = check_cert(&t, r2["certificate"].as_str().unwrap()).await;
    assert_eq!(cert2.ml_dsa_public_key, node2.public().dsa_bytes());
    assert_eq!(cert2.taints, ["dev"], "taints survive a restart");
    assert_eq!(t.nodes("lab").await.len(), 1);
    assert_eq!(t.g.metrics().rejections("token_used_up"), 0);
}

#[tokio::test]
async fn addresses_are_unique_and_requested_ones_are_honoured_or_refused() {
    let t = TestGuardian::new().await;
    t.realm("lab", "10.41.0.0/24").await;
    let token = t.simple_token("lab", 50).await;
    let (_, body) =
        register_body(json!({"registration_token": token, "requested_address": "10.41.0.77"}));
    let (s, r) = t.register(body).await;
    assert_eq!(
        (s, r["overlay_address"].as_str()),
        (StatusCode::OK, Some("10.41.0.77"))
    );

    let mut seen = std::collections::HashSet::from(["10.41.0.77".to_owned()]);
    for _ in 0..20 {
        let (_, body) = register_body(json!({"registration_token": token}));
        let (s, r) = t.register(body).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let a = r["overlay_address"].as_str().unwrap().to_owned();
        assert!(
            a.starts_with("10.41.0.") && a != "10.41.0.0" && a != "10.41.0.255",
            "{a}"
        );
        assert!(seen.insert(a), "address handed out twice");
    }

    let (_, taken) =
        register_body(json!({"registration_token": token, "requested_address": "10.41.0.77"}));
    t.expect_rejected(StatusCode::CONFLICT, "address_taken", t.register(taken))
        .await;
    for outside in ["10.42.0.5", "10.41.0.255", "10.41.0.0", "not-an-ip"] {
        let (_, b) =
            register_body(json!({"registration_token": token, "requested_address": outside}));
        t.expect_rejected(StatusCode::BAD_REQUEST, "invalid_argument", t.register(b))
            .await;
    }
    assert_eq!(
        t.nodes("lab").await.len(),
        21,
        "refused registrations stored nothing"
    );
}

#[tokio::test]
async fn a_full_subnet_is_refused() {
    let t = TestGuardian::new().await;
    t.realm("tiny", "10.9.9.0/30").await;
    let token = t.simple_token("tiny", 5).await;
    for _ in 0..2 {
        let (_, b) = register_body(json!({"registration_token": token}));
        assert_eq!(t.register(b).await.0, StatusCode::OK);
    }
    let (_, b) = register_body(json!({"registration_token": token}));
    t.expect_rejected(StatusCode::CONFLICT, "subnet_full", t.register(b))
        .await;
    // The failed attempt gave its token use back (5 - 2 spent).
    let tokens_left = {
        let id = token
            .trim_start_matches("cfxr_")
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        conflux_controlplane::guardian::store::TokenRow::uses_left(&t.g.store().read(), &id)
            .unwrap()
            .unwrap()
    };
    assert_eq!(tokens_left, 3);
}

#[tokio::test]
async fn bad_registration_tokens_are_refused_and_nothing_is_stored() {
    let t = TestGuardian::new().await;
    t.realm("lab", "10.40.0.0/16").await;

    // Used up: one use, two registrations.
    let once = t.simple_token("lab", 1).await;
    let (_, b) = register_body(json!({"registration_token": once}));
    assert_eq!(t.register(b).await.0, StatusCode::OK);
    let (_, b) = register_body(json!({"registration_token": once}));
    t.expect_rejected(StatusCode::UNAUTHORIZED, "token_used_up", t.register(b))
        .await;

    // Expired.
    let short = t
        .token("lab", json!({"expires_in_secs": 60, "uses": 5}))
        .await;
    t.advance(61);
    let (_, b) = register_body(json!({"registration_token": short}));
    t.expect_rejected(StatusCode::UNAUTHORIZED, "token_expired", t.register(b))
        .await;

    // Wrong secret for a real id, a made-up token, and a conflux token in its place.
    let good = t.simple_token("lab", 5).await;
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [forged.as_str(), "cfxr_0011223344556677.nope", "hello"] {
        let (_, b) = register_body(json!({"registration_token": bad}));
        t.expect_rejected(StatusCode::UNAUTHORIZED, "token_invalid", t.register(b))
            .await;
    }
    assert_eq!(
        t.nodes("lab").await.len(),
        1,
        "only the first registration is stored"
    );
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let t = TestGuardian::new().await;
    t.realm("lab", "10.40.0.0/16").await;
    let token = t.simple_token("lab", 5).await;
    let json_ct = Some("application/json");

    for body in ["{not json", "[]", r#"{"registration_token": 5}"#, ""] {
        t.expect_rejected(
            StatusCode::BAD_REQUEST,
            "bad_json",
            t.post_raw("/v1/register", json_ct, body),
        )
        .await;
    }
    let (_, mut unknown_field) = register_body(json!({"registration_token": token}));
    unknown_field["colour"] = json!("blue");
    t.expect_rejected(
        StatusCode::BAD_REQUEST,
        "bad_json",
        t.register(unknown_field),
    )
    .await;
    t.expect_rejected(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not_json",
        t.post_raw("/v1/register", None, r#"{"a":1}"#),
    )
    .await;

    // Keys that are not base64, or of the wrong length.
    let (_, dsa, kem) = node_keys();
    for (d, k) in [
        ("!!!", kem.as_str()),
        (dsa.as_str(), "AAAA"),
        (kem.as_str(), dsa.as_str()),
    ] {
        let body =
            json!({"registration_token": token, "ml_dsa_public_key": d, "ml_kem_public_key": k});
        t.expect_rejected(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            t.register(body),
        )
        .await;
    }

    // No credential, or two.
    let (_, none) = register_body(json!({}));
    t.expect_rejected(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        t.register(none),
    )
    .await;
    let (_, two) = register_body(json!({"registration_token": token, "conflux_token": "cfxn_x.y"}));
    t.expect_rejected(StatusCode::BAD_REQUEST, "invalid_argument", t.register(two))
        .await;

    // Bad taints and a realm that contradicts the token.
    let (_, b) = register_body(json!({"registration_token": token, "taints": ["Not Valid"]}));
    t.expect_rejected(StatusCode::BAD_REQUEST, "invalid_argument", t.register(b))
        .await;
    let (_, b) = register_body(json!({"registration_token": token, "realm": "other"}));
    t.expect_rejected(StatusCode::BAD_REQUEST, "invalid_argument", t.register(b))
        .await;

    t.expect_rejected(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        t.call(Method::GET, "/v2/nothing", None, None),
    )
    .await;
    assert!(t.nodes("lab").await.is_empty());
    let id = token
        .trim_start_matches("cfxr_")
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let left = conflux_controlplane::guardian::store::TokenRow::uses_left(&t.g.store().read(), &id);
    assert_eq!(left.unwrap(), Some(5), "no refused request spent a use");
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let t = TestGuardian::new().await;
    let body = json!({"name": "lab", "subnet": "10.40.0.0/16"});
    for bearer in [None, Some("wrong-token-wrong-token"), Some("")] {
        t.expect_rejected(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            t.call(Method::POST, "/v1/realms", bearer, Some(body.clone())),
        )
        .await;
    }
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(Method::GET, "/v1/realms", None, None),
    )
    .await;
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(
            Method::POST,
            "/v1/admin/rotate-keys",
            Some("nope-nope-nope-nope"),
            None,
        ),
    )
    .await;
    let (s, v) = t.admin(Method::GET, "/v1/realms", None).await;
    assert_eq!((s, v), (StatusCode::OK, json!([])), "nothing was created");
}

#[tokio::test]
async fn realms_are_validated_listed_and_deleted() {
    let t = TestGuardian::new().await;
    for (name, subnet) in [
        ("Bad Name", "10.0.0.0/16"),
        ("ok", "10.0.0.1/16"),
        ("ok", "10.0.0.0/31"),
        ("ok", "nope"),
    ] {
        t.expect_rejected(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            t.admin(
                Method::POST,
                "/v1/realms",
                Some(json!({"name": name, "subnet": subnet})),
            ),
        )
        .await;
    }
    let v = t.realm("lab", "fd00:cf::/64").await;
    assert!(v["nats_account"].as_str().unwrap().starts_with('A'));
    t.expect_rejected(
        StatusCode::CONFLICT,
        "realm_exists",
        t.admin(
            Method::POST,
            "/v1/realms",
            Some(json!({"name": "lab", "subnet": "10.1.0.0/16"})),
        ),
    )
    .await;
    t.expect_rejected(
        StatusCode::NOT_FOUND,
        "unknown_realm",
        t.admin(
            Method::POST,
            "/v1/realms/nope/tokens",
            Some(json!({"expires_in_secs": 60, "uses": 1})),
        ),
    )
    .await;
    t.expect_rejected(
        StatusCode::NOT_FOUND,
        "unknown_realm",
        t.admin(Method::GET, "/v1/realms/nope/nodes", None),
    )
    .await;
    for bad in [
        json!({"expires_in_secs": 0, "uses": 1}),
        json!({"expires_in_secs": 60, "uses": 0}),
        json!({"expires_in_secs": 60, "uses": 1, "routed_prefixes": ["10.0.0.1/8"]}),
    ] {
        t.expect_rejected(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            t.admin(Method::POST, "/v1/realms/lab/tokens", Some(bad)),
        )
        .await;
    }

    let token = t.simple_token("lab", 1).await;
    let (_, b) = register_body(json!({"registration_token": token}));
    let (s, r) = t.register(b).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(
        r["overlay_address"]
            .as_str()
            .unwrap()
            .starts_with("fd00:cf::")
    );

    let (s, list) = t.admin(Method::GET, "/v1/realms", None).await;
    assert_eq!((s, list[0]["name"].as_str()), (StatusCode::OK, Some("lab")));
    let (s, _) = t.admin(Method::DELETE, "/v1/realms/lab", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    t.expect_rejected(
        StatusCode::NOT_FOUND,
        "unknown_realm",
        t.admin(Method::DELETE, "/v1/realms/lab", None),
    )
    .await;
    // The realm's nodes went with it: their conflux token no longer works.
    let (_, b) = register_body(json!({"conflux_token": r["conflux_token"]}));
    t.expect_rejected(StatusCode::UNAUTHORIZED, "unauthorized", t.register(b))
        .await;
}

/// Registers one node in a fresh realm "lab"; returns the registration answer.
async fn one_node(t: &TestGuardian, token_body: Value, reg: Value) -> Value {
    t.realm("lab", "10.40.0.0/16").await;
    let token = t.token("lab", token_body).await;
    let mut cred = reg;
    cred["registration_token"] = json!(token);
    let (_, b) = register_body(cred);
    let (s, r) = t.register(b).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}

#[tokio::test]
async fn a_node_changes_its_taints_renews_and_refreshes() {
    let t = TestGuardian::new().await;
    let r = one_node(
        &t,
        json!({"expires_in_secs": 60, "uses": 1, "taints": ["a", "b", "c"]}),
        json!({"taints": ["a"]}),
    )
    .await;
    let access = r["access_jwt"].as_str().unwrap();

    let (s, v) = t
        .call(
            Method::PUT,
            "/v1/nodes/self/taints",
            Some(access),
            Some(json!({"taints": ["a", "b"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["taints"], json!(["a", "b"]));
    assert_eq!(
        check_cert(&t, v["certificate"].as_str().unwrap())
            .await
            .taints,
        ["a", "b"]
    );
    assert_eq!(t.nodes("lab").await[0]["taints"], json!(["a", "b"]));

    // Outside the token's allowed set: refused, nothing changes.
    t.expect_rejected(
        StatusCode::FORBIDDEN,
        "forbidden",
        t.call(
            Method::PUT,
            "/v1/nodes/self/taints",
            Some(access),
            Some(json!({"taints": ["a", "z"]})),
        ),
    )
    .await;
    assert_eq!(t.nodes("lab").await[0]["taints"], json!(["a", "b"]));

    t.advance(100);
    let (s, v) = t
        .call(
            Method::POST,
            "/v1/nodes/self/certificate",
            Some(access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let renewed = check_cert(&t, v["certificate"].as_str().unwrap()).await;
    assert_eq!(renewed.not_after, t.now() + t.g.lifetimes().certificate);

    // The access JWT expires; the refresh JWT buys a new one.
    t.advance(t.g.lifetimes().access);
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(
            Method::POST,
            "/v1/nodes/self/certificate",
            Some(access),
            None,
        ),
    )
    .await;
    let (s, v) = t
        .call(
            Method::POST,
            "/v1/refresh",
            None,
            Some(json!({"refresh_jwt": r["refresh_jwt"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let fresh = v["access_jwt"].as_str().unwrap();
    assert_eq!(
        t.call(
            Method::POST,
            "/v1/nodes/self/certificate",
            Some(fresh),
            None
        )
        .await
        .0,
        StatusCode::OK
    );

    // An access JWT is not a refresh JWT, and a tampered JWT fails.
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(
            Method::POST,
            "/v1/refresh",
            None,
            Some(json!({"refresh_jwt": fresh})),
        ),
    )
    .await;
    let mut tampered = fresh.to_owned();
    tampered.replace_range(tampered.len() - 3.., "AAA");
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(
            Method::POST,
            "/v1/nodes/self/certificate",
            Some(&tampered),
            None,
        ),
    )
    .await;
}

#[tokio::test]
async fn portal_and_gateway_flags_follow_the_token() {
    let t = TestGuardian::new().await;
    t.realm("lab", "10.40.0.0/16").await;
    let plain = t.simple_token("lab", 2).await;
    let (_, b) = register_body(json!({"registration_token": plain, "portal": true}));
    t.expect_rejected(StatusCode::FORBIDDEN, "forbidden", t.register(b))
        .await;

    let gw = t.token("lab", json!({"expires_in_secs": 60, "uses": 1, "portal": true, "routed_prefixes": ["192.168.7.0/24"]})).await;
    let (_, b) = register_body(json!({"registration_token": gw, "portal": true}));
    let (s, r) = t.register(b).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let cert = check_cert(&t, r["certificate"].as_str().unwrap()).await;
    assert!(cert.portal && cert.gateway);
    assert_eq!(cert.routed_prefixes, ["192.168.7.0/24"]);
}

#[tokio::test]
async fn key_rotation_does_not_break_registered_nodes() {
    let t = TestGuardian::new().await;
    let r = one_node(&t, json!({"expires_in_secs": 60, "uses": 2}), json!({})).await;
    let old_key = decode_signed(&STANDARD.decode(r["certificate"].as_str().unwrap()).unwrap())
        .unwrap()
        .key_id;

    let (s, v) = t.admin(Method::POST, "/v1/admin/rotate-keys", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_key = v["certificate_key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);

    // The old certificate still verifies against the published keys, and the old JWTs work.
    check_cert(&t, r["certificate"].as_str().unwrap()).await;
    let access = r["access_jwt"].as_str().unwrap();
    let (s, v) = t
        .call(
            Method::POST,
            "/v1/nodes/self/certificate",
            Some(access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let renewed =
        decode_signed(&STANDARD.decode(v["certificate"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(
        renewed.key_id, new_key,
        "new certificates come from the new key"
    );
    assert_eq!(v["guardian_keys"][0]["key_id"], new_key);
    assert_eq!(v["guardian_keys"][0]["current"], true);

    // Once every certificate of the old key has expired, it is no longer published.
    t.advance(t.g.lifetimes().certificate + 1);
    let (_, keys) = t.call(Method::GET, "/v1/keys", None, None).await;
    let ids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [new_key.as_str()]);
}

#[tokio::test]
async fn a_revoked_node_loses_every_credential() {
    let t = TestGuardian::new().await;
    let r = one_node(&t, json!({"expires_in_secs": 60, "uses": 1}), json!({})).await;
    let id = r["node_id"].as_str().unwrap();

    t.expect_rejected(
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        t.admin(Method::POST, "/v1/nodes/xyz/revoke", None),
    )
    .await;
    let unknown = conflux_shared::id::NodeId::random().to_hex();
    t.expect_rejected(
        StatusCode::NOT_FOUND,
        "unknown_node",
        t.admin(Method::POST, &format!("/v1/nodes/{unknown}/revoke"), None),
    )
    .await;
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(Method::POST, &format!("/v1/nodes/{id}/revoke"), None, None),
    )
    .await;

    let (s, v) = t
        .admin(Method::POST, &format!("/v1/nodes/{id}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revoked_at"].as_u64(), Some(t.now()));
    assert_eq!(
        t.nodes("lab").await[0]["revoked_at"].as_u64(),
        Some(t.now())
    );

    let access = r["access_jwt"].as_str().unwrap();
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(
            Method::POST,
            "/v1/nodes/self/certificate",
            Some(access),
            None,
        ),
    )
    .await;
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        t.call(
            Method::POST,
            "/v1/refresh",
            None,
            Some(json!({"refresh_jwt": r["refresh_jwt"]})),
        ),
    )
    .await;
    let (_, b) = register_body(json!({"conflux_token": r["conflux_token"]}));
    t.expect_rejected(StatusCode::FORBIDDEN, "forbidden", t.register(b))
        .await;
    // Revoking twice is harmless and keeps the first time.
    t.advance(5);
    let (s, v2) = t
        .admin(Method::POST, &format!("/v1/nodes/{id}/revoke"), None)
        .await;
    assert_eq!((s, &v2["revoked_at"]), (StatusCode::OK, &v["revoked_at"]));
}

#[tokio::test]
async fn state_and_keys_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let opts = || guardian_common::Options {
        data_dir: Some(data.path().to_owned()),
        ..Default::default()
    };
    let first = TestGuardian::with(opts()).await;
    let r = one_node(&first, json!({"expires_in_secs": 60, "uses": 1}), json!({})).await;
    drop(first);

    let second = TestGuardian::with(opts()).await;
    // The certificate from before the restart verifies with the keys after it.
    check_cert(&second, r["certificate"].as_str().unwrap()).await;
    let (_, b) = register_body(json!({"conflux_token": r["conflux_token"]}));
    let (s, r2) = second.register(b).await;
    assert_eq!((s, &r2["node_id"]), (StatusCode::OK, &r["node_id"]));
    let db = data.path().join("guardian.db");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(db).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let t = TestGuardian::new().await;
    t.realm("lab", "10.40.0.0/16").await;
    let token = t.simple_token("lab", 1).await;
    let (_, b) = register_body(json!({"registration_token": token}));
    assert_eq!(t.register(b).await.0, StatusCode::OK);
    let (_, b) = register_body(json!({"registration_token": token}));
    assert_eq!(t.register(b).await.0, StatusCode::UNAUTHORIZED);

    let (s, v) = t.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (s, &v["status"], &v["nats"]),
        (StatusCode::OK, &json!("ok"), &json!(false))
    );
    let (s, text) = t.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains(r#"guardian_registrations_total{credential="registration_token"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"guardian_rejections_total{reason="token_used_up"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("guardian_certificates_issued_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_conflux_token_expires_unless_the_node_comes_back() {
    let t = TestGuardian::new().await;
    let r = one_node(&t, json!({"expires_in_secs": 60, "uses": 1}), json!({})).await;
    let life = t.g.lifetimes().conflux_token;
    assert_eq!(r["conflux_token_expires_at"].as_u64(), Some(t.now() + life));

    // Coming back before expiry extends it.
    t.advance(life - 1);
    let (_, b) = register_body(json!({"conflux_token": r["conflux_token"]}));
    let (s, r2) = t.register(b).await;
    assert_eq!(s, StatusCode::OK, "{r2}");
    assert_eq!(
        r2["conflux_token_expires_at"].as_u64(),
        Some(t.now() + life)
    );

    // Staying away past it ends the token.
    t.advance(life);
    let (_, b) = register_body(json!({"conflux_token": r["conflux_token"]}));
    t.expect_rejected(
        StatusCode::UNAUTHORIZED,
        "conflux_token_expired",
        t.register(b),
    )
    .await;
}
