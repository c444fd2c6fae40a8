//! Guardian's own JWTs (EdDSA, `kid` in the header): a long-lived refresh JWT that a node
//! trades for short-lived access JWTs, and the access JWT that authorizes its calls.
//!
//! The two kinds differ by audience, so one is never accepted as the other. Expiry is
//! checked against Guardian's clock, not the library's.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use conflux_shared::id::NodeId;

use super::keys::KeyRing;

/// Issuer of every Guardian JWT.
pub const ISSUER: &str = "conflux-guardian";

/// Which JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Long-lived: only buys access JWTs.
    Refresh,
    /// Short-lived: authorizes a node's calls.
    Access,
}

impl Kind {
    fn audience(self) -> &'static str {
        match self {
            Self::Refresh => "conflux-refresh",
            Self::Access => "conflux-access",
        }
    }
}

/// Claims of a Guardian JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The node id (hex).
    pub sub: String,
    /// The node's realm.
    pub realm: String,
    /// [`ISSUER`].
    pub iss: String,
    /// The kind's audience.
    pub aud: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expiry, unix seconds.
    pub exp: u64,
}

/// Why a JWT was refused; callers answer every case with the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT of ours, or no `kid`, or an unknown or expired key.
    #[error("malformed or unknown-key token")]
    Malformed,
    /// Signature, issuer, audience or shape check failed.
    #[error("token does not verify")]
    Invalid,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// Issues a JWT of `kind` for `node`, valid for `lifetime` seconds from `now`.
pub fn issue(
    keys: &KeyRing,
    kind: Kind,
    node: &NodeId,
    realm: &str,
    now: u64,
    lifetime: u64,
) -> anyhow::Result<String> {
    let claims = Claims {
        sub: node.to_hex(),
        realm: realm.to_owned(),
        iss: ISSUER.to_owned(),
        aud: kind.audience().to_owned(),
        iat: now,
        exp: now + lifetime,
    };
    keys.with_jwt_key(|k| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(k.kid().to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, k.encoding())?)
    })
}

/// Verifies a JWT of `kind` at `now` and returns its claims and node id.
pub fn verify(
    keys: &KeyRing,
    kind: Kind,
    token: &str,
    now: u64,
) -> Result<(Claims, NodeId), JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(JwtError::Malformed);
    }
    let kid = header.kid.ok_or(JwtError::Malformed)?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[kind.audience()]);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    v.validate_exp = false;
    v.leeway = 0;
    let data = keys
        .with_jwt_verifier(&kid, now, |k| {
            jsonwebtoken::decode::<Claims>(token, k.decoding(), &v)
        })
        .ok_or(JwtError::Malformed)?
        .map_err(|_| JwtError::Invalid)?;
    if now >= data.claims.exp {
        return Err(JwtError::Expired);
    }
    let node = NodeId::from_hex(&data.claims.sub).map_err(|_| JwtError::Invalid)?;
    Ok((data.claims, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardian::keys::Retention;

    fn ring(dir: &std::path::Path) -> KeyRing {
        let r = Retention {
            cert_lifetime: 100,
            jwt_lifetime: 1000,
        };
        KeyRing::open(dir, r, 0).unwrap()
    }

    #[test]
    fn access_and_refresh_are_not_interchangeable() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path());
        let node = NodeId::random();
        let refresh = issue(&keys, Kind::Refresh, &node, "lab", 10, 500).unwrap();
        let access = issue(&keys, Kind::Access, &node, "lab", 10, 60).unwrap();
        let (claims, id) = verify(&keys, Kind::Refresh, &refresh, 20).unwrap();
        assert_eq!((id, claims.realm.as_str()), (node, "lab"));
        assert!(verify(&keys, Kind::Access, &access, 20).is_ok());
        assert_eq!(
            verify(&keys, Kind::Access, &refresh, 20).unwrap_err(),
            JwtError::Invalid
        );
        assert_eq!(
            verify(&keys, Kind::Refresh, &access, 20).unwrap_err(),
            JwtError::Invalid
        );
    }

    #[test]
    fn expiry_uses_the_given_clock() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path());
        let access = issue(&keys, Kind::Access, &NodeId::random(), "lab", 10, 60).unwrap();
        assert!(verify(&keys, Kind::Access, &access, 69).is_ok());
        assert_eq!(
            verify(&keys, Kind::Access, &access, 70).unwrap_err(),
            JwtError::Expired
        );
    }

    #[test]
    fn tokens_survive_a_key_rotation_and_forgeries_fail() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path());
        let node = NodeId::random();
        let before = issue(&keys, Kind::Refresh, &node, "lab", 0, 900).unwrap();
        keys.rotate(5).unwrap();
        assert!(verify(&keys, Kind::Refresh, &before, 6).is_ok());

        let other_dir = tempfile::tempdir().unwrap();
        let other = ring(other_dir.path());
        let forged = issue(&other, Kind::Refresh, &node, "lab", 0, 900).unwrap();
        assert_eq!(
            verify(&keys, Kind::Refresh, &forged, 6).unwrap_err(),
            JwtError::Malformed
        );

        let mut tampered = before.clone();
        tampered.insert(tampered.len() - 5, 'x');
        assert!(verify(&keys, Kind::Refresh, &tampered, 6).is_err());
        assert_eq!(
            verify(&keys, Kind::Refresh, "not.a.jwt", 6).unwrap_err(),
            JwtError::Malformed
        );
    }
}
