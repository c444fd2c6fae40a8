//! IPv6 overlay subnets through Guardian's API (`oneshot`, no sockets): a realm with an IPv6
//! subnet beside its IPv4 one gives every node an address in each, certified; realms
//! without one keep working; bad subnets are refused with a clear message.

mod guardian_common;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use conflux_shared::cert::decode_signed;
use conflux_shared::proto::NodeCertificate;
use guardian_common::{TestGuardian, register_body};
use prost::Message as _;

/// The certificate in a registration answer (its signature is checked in guardian_api).
fn cert_of(r: &Value) -> NodeCertificate {
    let signed =
        decode_signed(&STANDARD.decode(r["certificate"].as_str().unwrap()).unwrap()).unwrap();
    NodeCertificate::decode(signed.certificate.as_slice()).unwrap()
}

#[tokio::test]
async fn a_realm_with_an_ipv6_subnet_gives_each_node_a_certified_ipv6_address() {
    let t = TestGuardian::new().await;
    let (s, v) = t
        .admin(
            Method::POST,
            "/v1/realms",
            Some(json!({"name": "dual", "subnet": "10.50.0.0/24", "subnet6": "fd7a:cf::/64"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["subnet6"], "fd7a:cf::/64");
    let token = t.simple_token("dual", 10).await;

    let mut seen = std::collections::HashSet::new();
    let mut first = None;
    for _ in 0..5 {
        let (_, body) = register_body(json!({"registration_token": token}));
        let (s, r) = t.register(body).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["subnet6"], "fd7a:cf::/64");
        let a6 = r["overlay_address6"].as_str().unwrap().to_owned();
        let ip: std::net::Ipv6Addr = a6.parse().unwrap();
        assert_eq!(ip.segments()[..4], [0xfd7a, 0xcf, 0, 0], "{a6}");
        assert_ne!(ip, "fd7a:cf::".parse::<std::net::Ipv6Addr>().unwrap());
        let cert = cert_of(&r);
        assert_eq!(cert.overlay_ip6().unwrap(), Some(ip));
        assert_eq!(cert.overlay_address, r["overlay_address"].as_str().unwrap());
        assert!(cert.overlay_ip().unwrap().is_ipv4());
        assert!(seen.insert(a6), "IPv6 address handed out twice");
        first.get_or_insert(r);
    }

    // A restart keeps both addresses.
    let r = first.unwrap();
    let (_, body) = register_body(json!({"conflux_token": r["conflux_token"]}));
    let (s, r2) = t.register(body).await;
    assert_eq!(s, StatusCode::OK, "{r2}");
    assert_eq!(r2["overlay_address"], r["overlay_address"]);
    assert_eq!(r2["overlay_address6"], r["overlay_address6"]);
    assert_eq!(
        cert_of(&r2).overlay_address6,
        r["overlay_address6"].as_str().unwrap()
    );

    // The IPv6 address is allocated, never requested: asking for one says so.
    let (_, body) =
        register_body(json!({"registration_token": token, "requested_address": "fd7a:cf::99"}));
    let v = t
        .expect_rejected(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            t.register(body),
        )
        .await;
    assert!(v["message"].as_str().unwrap().contains("subnet6"), "{v}");

    // The admin's node list shows it.
    let nodes = t.nodes("dual").await;
    assert!(
        nodes
            .iter()
            .any(|n| n["overlay_address6"] == r["overlay_address6"]),
        "{nodes:?}"
    );
}

#[tokio::test]
async fn realms_without_an_ipv6_subnet_keep_working() {
    let t = TestGuardian::new().await;
    let v = t.realm("v4", "10.51.0.0/24").await;
    assert!(v.get("subnet6").is_none(), "{v}");
    let token = t.simple_token("v4", 1).await;
    let (_, body) = register_body(json!({"registration_token": token}));
    let (s, r) = t.register(body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r.get("overlay_address6").is_none(), "{r}");
    let cert = cert_of(&r);
    assert!(cert.overlay_address6.is_empty());
    assert_eq!(cert.overlay_ip6().unwrap(), None);
}

#[tokio::test]
async fn bad_ipv6_subnets_are_refused_with_a_reason() {
    let t = TestGuardian::new().await;
    let cases = [
        (
            json!({"subnet": "10.52.0.0/24", "subnet6": "10.53.0.0/24"}),
            "not an IPv6 subnet",
        ),
        (
            json!({"subnet": "10.52.0.0/24", "subnet6": "fd7a:cf::1/64"}),
            "host bits",
        ),
        (
            json!({"subnet": "10.52.0.0/24", "subnet6": "fd7a:cf::"}),
            "CIDR",
        ),
        (
            json!({"subnet": "10.52.0.0/24", "subnet6": "fd7a:cf::/127"}),
            "too small",
        ),
        (
            json!({"subnet": "fd00:1::/64", "subnet6": "fd7a:cf::/64"}),
            "already IPv6",
        ),
    ];
    for (i, (mut body, why)) in cases.into_iter().enumerate() {
        body["name"] = json!(format!("bad{i}"));
        let v = t
            .expect_rejected(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                t.admin(Method::POST, "/v1/realms", Some(body.clone())),
            )
            .await;
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(why), "{body}: {msg}");
    }
    let (s, v) = t.admin(Method::GET, "/v1/realms", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().map(Vec::len), Some(0), "nothing stored: {v}");
}
