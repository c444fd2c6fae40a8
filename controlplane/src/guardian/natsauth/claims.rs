//! NATS JWTs (operator, account, user), built by hand: a JSON header and claims, signed
//! with Ed25519 by the issuer's nkey (`alg: ed25519-nkey`), as nats-server expects in
//! operator mode.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde::Serialize;

/// The fixed JWT header of every NATS JWT.
const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Claims shared by every NATS JWT; `nats` holds the kind-specific part.
#[derive(Debug, Serialize)]
struct Claims<'a, T: Serialize> {
    jti: String,
    iat: u64,
    iss: String,
    name: &'a str,
    sub: &'a str,
    nats: T,
}

/// Signs `nats` claims about `subject` (a public nkey) as `issuer`.
fn sign<T: Serialize>(
    issuer: &KeyPair,
    subject: &str,
    name: &str,
    now: u64,
    nats: T,
) -> anyhow::Result<String> {
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let claims = Claims {
        jti: hex::encode(jti),
        iat: now,
        iss: issuer.public_key(),
        name,
        sub: subject,
        nats,
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
    );
    let sig = issuer
        .sign(signing_input.as_bytes())
        .map_err(|e| anyhow::anyhow!("nkey signing failed: {e}"))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[derive(Debug, Serialize)]
struct OperatorNats<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
    system_account: &'a str,
}

/// The operator's self-signed JWT naming the system account.
pub fn operator(operator: &KeyPair, system_account: &str, now: u64) -> anyhow::Result<String> {
    let nats = OperatorNats {
        kind: "operator",
        version: 2,
        system_account,
    };
    sign(operator, &operator.public_key(), "conflux", now, nats)
}

/// Account limits; -1 is unlimited, and non-zero storage limits enable JetStream.
#[derive(Debug, Serialize)]
struct Limits {
    subs: i64,
    data: i64,
    payload: i64,
    imports: i64,
    exports: i64,
    wildcards: bool,
    conn: i64,
    leaf: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_storage: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_storage: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streams: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<i64>,
}

impl Limits {
    fn unlimited(jetstream: bool) -> Self {
        let js = jetstream.then_some(-1);
        Self {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: js,
            disk_storage: js,
            streams: js,
            consumer: js,
        }
    }
}

#[derive(Debug, Serialize)]
struct AccountNats {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
    limits: Limits,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    revocations: BTreeMap<String, u64>,
}

/// An account JWT signed by the operator. `jetstream` enables JetStream without limits;
/// `revocations` maps user public keys (or `*` for all) to a time: user JWTs issued at or
/// before it are refused, and connected users holding them are cut off.
pub fn account(
    operator: &KeyPair,
    account: &str,
    name: &str,
    jetstream: bool,
    revocations: BTreeMap<String, u64>,
    now: u64,
) -> anyhow::Result<String> {
    let nats = AccountNats {
        kind: "account",
        version: 2,
        limits: Limits::unlimited(jetstream),
        revocations,
    };
    sign(operator, account, name, now, nats)
}

/// Subjects a user may or may not publish or subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permission {
    /// Allowed subjects (wildcards allowed); empty means all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Denied subjects, taking precedence over `allow`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

#[derive(Debug, Serialize)]
struct UserNats<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
    #[serde(rename = "pub")]
    publish: &'a Permission,
    #[serde(rename = "sub")]
    subscribe: &'a Permission,
    subs: i64,
    data: i64,
    payload: i64,
}

/// A user JWT signed by its account's key.
pub fn user(
    account: &KeyPair,
    user: &str,
    name: &str,
    publish: &Permission,
    subscribe: &Permission,
    now: u64,
) -> anyhow::Result<String> {
    let nats = UserNats {
        kind: "user",
        version: 2,
        publish,
        subscribe,
        subs: -1,
        data: -1,
        payload: -1,
    };
    sign(account, user, name, now, nats)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn decode(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let c = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        (h, c, sig, format!("{}.{}", parts[0], parts[1]))
    }

    #[test]
    fn account_jwt_is_signed_by_the_operator_and_carries_revocations() {
        let op = KeyPair::new_operator();
        let acct = KeyPair::new_account();
        let mut rev = BTreeMap::new();
        rev.insert("UABC".to_owned(), 99);
        let jwt = account(&op, &acct.public_key(), "lab", true, rev, 100).unwrap();
        let (h, c, sig, input) = decode(&jwt);
        assert_eq!(h["alg"], "ed25519-nkey");
        assert_eq!(c["iss"], op.public_key());
        assert_eq!(c["sub"], acct.public_key());
        assert_eq!(c["nats"]["type"], "account");
        assert_eq!(c["nats"]["limits"]["disk_storage"], -1);
        assert_eq!(c["nats"]["revocations"]["UABC"], 99);
        op.verify(input.as_bytes(), &sig).unwrap();
        assert!(acct.verify(input.as_bytes(), &sig).is_err());
    }

    #[test]
    fn user_jwt_carries_its_permissions() {
        let acct = KeyPair::new_account();
        let u = KeyPair::new_user();
        let publish = Permission {
            allow: vec!["conflux.lab.>".into()],
            deny: vec!["conflux.lab.revoked".into()],
        };
        let subscribe = Permission {
            allow: vec!["conflux.lab.>".into(), "_INBOX.>".into()],
            deny: vec![],
        };
        let jwt = user(&acct, &u.public_key(), "n1", &publish, &subscribe, 5).unwrap();
        let (_, c, sig, input) = decode(&jwt);
        assert_eq!(c["iss"], acct.public_key());
        assert_eq!(c["nats"]["pub"]["deny"][0], "conflux.lab.revoked");
        assert_eq!(c["nats"]["sub"]["allow"][1], "_INBOX.>");
        assert!(c["nats"]["sub"].get("deny").is_none());
        acct.verify(input.as_bytes(), &sig).unwrap();
    }
}
