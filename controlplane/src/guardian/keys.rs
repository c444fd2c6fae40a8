//! Guardian's signing keys: the ML-DSA-65 certificate key and the Ed25519 key of its own
//! JWTs, persisted in `<data dir>/keys/` (directory 0700, files 0600), one JSON file a key.
//!
//! Rotation makes a new key of each kind current and marks the old ones retired. A retired
//! certificate key stays published (`GET /v1/keys`) until every certificate it signed has
//! expired, and a retired JWT key keeps verifying until the longest-lived JWT it signed has
//! expired, so nodes never notice a rotation beyond picking up the new key.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

use conflux_shared::cert::{CERT_CONTEXT, GuardianKey, key_id};
use conflux_shared::crypto::identity::{Signature, SigningKey};

/// What kind of key a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    #[serde(rename = "ml-dsa-65")]
    Certificate,
    #[serde(rename = "ed25519")]
    Jwt,
}

/// A key file's contents.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    kind: Kind,
    key_id: String,
    public_key: String,
    secret_key: String,
    created_at: u64,
    retired_at: Option<u64>,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        self.secret_key.zeroize();
    }
}

/// Guardian's certificate signing key (current or retired).
pub struct CertKey {
    key_id: String,
    key: SigningKey,
    created_at: u64,
    retired_at: Option<u64>,
}

impl CertKey {
    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs encoded certificate bytes.
    pub fn sign(&self, certificate: &[u8]) -> Signature {
        self.key.sign(CERT_CONTEXT, certificate)
    }
}

/// A key of Guardian's own JWTs.
pub struct JwtKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    created_at: u64,
    retired_at: Option<u64>,
}

impl JwtKey {
    /// The `kid` header value.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs JWTs.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Verifies JWTs.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// One published certificate key, as `GET /v1/keys` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishedKey {
    /// Key id.
    pub key_id: String,
    /// Encoded ML-DSA-65 public key, base64.
    pub ml_dsa_public_key: String,
    /// Signs new certificates (only one key does).
    pub current: bool,
    /// When the key was created, unix seconds.
    pub created_at: u64,
}

/// How long retired keys stay trusted.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Longest certificate lifetime Guardian issues, seconds.
    pub cert_lifetime: u64,
    /// Longest JWT lifetime Guardian issues (the refresh JWT's), seconds.
    pub jwt_lifetime: u64,
}

struct Keys {
    /// Current first.
    cert: Vec<CertKey>,
    /// Current first.
    jwt: Vec<JwtKey>,
}

/// Guardian's keys, loaded from and saved to the key directory.
pub struct KeyRing {
    dir: PathBuf,
    retention: Retention,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn cert_file(key: &SigningKey, now: u64) -> KeyFile {
    KeyFile {
        kind: Kind::Certificate,
        key_id: key_id(key.verifying_key().as_bytes()),
        public_key: STANDARD.encode(key.verifying_key().as_bytes()),
        secret_key: STANDARD.encode(key.to_bytes().as_slice()),
        created_at: now,
        retired_at: None,
    }
}

fn new_cert_key(now: u64) -> (CertKey, KeyFile) {
    let key = SigningKey::generate();
    let file = cert_file(&key, now);
    let key = CertKey {
        key_id: file.key_id.clone(),
        key,
        created_at: now,
        retired_at: None,
    };
    (key, file)
}

fn new_jwt_key(now: u64) -> anyhow::Result<(JwtKey, KeyFile)> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
    let mut file = KeyFile {
        kind: Kind::Jwt,
        key_id: String::new(),
        public_key: String::new(),
        secret_key: STANDARD.encode(pkcs8.as_ref()),
        created_at: now,
        retired_at: None,
    };
    let key = jwt_key_from(&file)?;
    file.key_id.clone_from(&key.kid);
    file.public_key = STANDARD.encode(key.decoding.try_get_as_bytes()?);
    Ok((key, file))
}

fn jwt_key_from(file: &KeyFile) -> anyhow::Result<JwtKey> {
    let pkcs8 = Zeroizing::new(STANDARD.decode(file.secret_key.as_bytes())?);
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|_| anyhow::anyhow!("key file holds no valid Ed25519 key"))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok(JwtKey {
        kid: key_id(&public),
        encoding: EncodingKey::from_ed_der(&pkcs8),
        decoding: DecodingKey::from_ed_der(&public),
        created_at: file.created_at,
        retired_at: file.retired_at,
    })
}

fn cert_key_from(file: &KeyFile) -> anyhow::Result<CertKey> {
    let bytes = Zeroizing::new(STANDARD.decode(file.secret_key.as_bytes())?);
    // from_bytes checks that the two halves belong together.
    let key = SigningKey::from_bytes(&bytes)?;
    Ok(CertKey {
        key_id: key_id(key.verifying_key().as_bytes()),
        key,
        created_at: file.created_at,
        retired_at: file.retired_at,
    })
}

impl KeyRing {
    /// Loads the keys in `dir`, creating the directory and a first key of each kind if
    /// needed. `now` is unix seconds.
    pub fn open(dir: &Path, retention: Retention, now: u64) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut keys = Keys {
            cert: Vec::new(),
            jwt: Vec::new(),
        };
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = Zeroizing::new(fs::read_to_string(&path)?);
            let file: KeyFile = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            match file.kind {
                Kind::Certificate => keys.cert.push(cert_key_from(&file)?),
                Kind::Jwt => keys.jwt.push(jwt_key_from(&file)?),
            }
        }
        let ring = Self {
            dir: dir.to_owned(),
            retention,
            keys: RwLock::new(keys),
        };
        {
            let mut k = ring.write();
            // Current (never retired) first, then the most recently retired.
            k.cert.sort_by_key(|c| {
                std::cmp::Reverse((c.retired_at.is_none(), c.retired_at, c.created_at))
            });
            k.jwt.sort_by_key(|c| {
                std::cmp::Reverse((c.retired_at.is_none(), c.retired_at, c.created_at))
            });
            if k.cert.first().is_none_or(|c| c.retired_at.is_some()) {
                let (key, file) = new_cert_key(now);
                ring.save(&file)?;
                k.cert.insert(0, key);
            }
            if k.jwt.first().is_none_or(|c| c.retired_at.is_some()) {
                let (key, file) = new_jwt_key(now)?;
                ring.save(&file)?;
                k.jwt.insert(0, key);
            }
        }
        Ok(ring)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn path_of(&self, kind: Kind, key_id: &str) -> PathBuf {
        let prefix = match kind {
            Kind::Certificate => "cert",
            Kind::Jwt => "jwt",
        };
        self.dir.join(format!("{prefix}-{key_id}.json"))
    }

    fn save(&self, file: &KeyFile) -> anyhow::Result<()> {
        let json = Zeroizing::new(serde_json::to_vec_pretty(file)?);
        write_private(&self.path_of(file.kind, &file.key_id), &json)?;
        Ok(())
    }

    fn mark_retired(&self, kind: Kind, key_id: &str, now: u64) -> anyhow::Result<()> {
        let path = self.path_of(kind, key_id);
        let text = Zeroizing::new(fs::read_to_string(&path)?);
        let mut file: KeyFile = serde_json::from_str(&text)?;
        file.retired_at = Some(now);
        self.save(&file)
    }

    /// Signs with the current certificate key: `f` gets the key.
    pub fn with_cert_key<T>(&self, f: impl FnOnce(&CertKey) -> T) -> T {
        f(&self.read().cert[0])
    }

    /// The current JWT key: `f` gets it.
    pub fn with_jwt_key<T>(&self, f: impl FnOnce(&JwtKey) -> T) -> T {
        f(&self.read().jwt[0])
    }

    /// The JWT key named `kid`, if it still verifies at `now`.
    pub fn with_jwt_verifier<T>(
        &self,
        kid: &str,
        now: u64,
        f: impl FnOnce(&JwtKey) -> T,
    ) -> Option<T> {
        let keys = self.read();
        keys.jwt
            .iter()
            .find(|k| k.kid == kid && self.trusted(k.retired_at, self.retention.jwt_lifetime, now))
            .map(f)
    }

    fn trusted(&self, retired_at: Option<u64>, lifetime: u64, now: u64) -> bool {
        retired_at.is_none_or(|r| now <= r.saturating_add(lifetime))
    }

    /// Certificate keys that verify certificates still valid at `now`, current first.
    pub fn published(&self, now: u64) -> Vec<PublishedKey> {
        self.read()
            .cert
            .iter()
            .filter(|k| self.trusted(k.retired_at, self.retention.cert_lifetime, now))
            .map(|k| PublishedKey {
                key_id: k.key_id.clone(),
                ml_dsa_public_key: STANDARD.encode(k.key.verifying_key().as_bytes()),
                current: k.retired_at.is_none(),
                created_at: k.created_at,
            })
            .collect()
    }

    /// The published keys in the form certificate verification takes.
    pub fn guardian_keys(&self, now: u64) -> Vec<GuardianKey> {
        self.read()
            .cert
            .iter()
            .filter(|k| self.trusted(k.retired_at, self.retention.cert_lifetime, now))
            .map(|k| GuardianKey::new(k.key.verifying_key().clone()))
            .collect()
    }

    /// Makes a new key of each kind current; the old ones are retired (still trusted for
    /// their retention) and keys past their retention are deleted. Returns the new
    /// certificate key id and JWT key id.
    pub fn rotate(&self, now: u64) -> anyhow::Result<(String, String)> {
        let (cert, cert_file) = new_cert_key(now);
        let (jwt, jwt_file) = new_jwt_key(now)?;
        self.save(&cert_file)?;
        self.save(&jwt_file)?;
        let mut keys = self.write();
        for old in keys.cert.iter_mut().filter(|k| k.retired_at.is_none()) {
            self.mark_retired(Kind::Certificate, &old.key_id, now)?;
            old.retired_at = Some(now);
        }
        for old in keys.jwt.iter_mut().filter(|k| k.retired_at.is_none()) {
            self.mark_retired(Kind::Jwt, &old.kid, now)?;
            old.retired_at = Some(now);
        }
        let ids = (cert.key_id.clone(), jwt.kid.clone());
        keys.cert.insert(0, cert);
        keys.jwt.insert(0, jwt);
        let Retention {
            cert_lifetime,
            jwt_lifetime,
        } = self.retention;
        let mut expired = Vec::new();
        keys.cert.retain(|k| {
            let keep = self.trusted(k.retired_at, cert_lifetime, now);
            if !keep {
                expired.push(self.path_of(Kind::Certificate, &k.key_id));
            }
            keep
        });
        keys.jwt.retain(|k| {
            let keep = self.trusted(k.retired_at, jwt_lifetime, now);
            if !keep {
                expired.push(self.path_of(Kind::Jwt, &k.kid));
            }
            keep
        });
        for path in expired {
            fs::remove_file(path)?;
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use conflux_shared::cert::{sign_with, verify};
    use conflux_shared::crypto::identity::{DSA_SECRET_KEY_LEN, NodeIdentity};
    use conflux_shared::proto::NodeCertificate;

    use super::*;

    const RETENTION: Retention = Retention {
        cert_lifetime: 100,
        jwt_lifetime: 1000,
    };

    fn cert(now: u64) -> NodeCertificate {
        let node = NodeIdentity::generate();
        NodeCertificate {
            node_id: vec![7; 16],
            realm: "lab".into(),
            ml_dsa_public_key: node.public().dsa_bytes().to_vec(),
            ml_kem_public_key: node.public().kem_bytes().to_vec(),
            overlay_address: "10.0.0.2".into(),
            not_before: now,
            not_after: now + RETENTION.cert_lifetime,
            ..Default::default()
        }
    }

    #[test]
    fn keys_persist_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let kdir = dir.path().join("keys");
        let first = KeyRing::open(&kdir, RETENTION, 10).unwrap();
        let id = first.with_cert_key(|k| k.key_id().to_owned());
        let kid = first.with_jwt_key(|k| k.kid().to_owned());
        drop(first);
        let again = KeyRing::open(&kdir, RETENTION, 20).unwrap();
        assert_eq!(again.with_cert_key(|k| k.key_id().to_owned()), id);
        assert_eq!(again.with_jwt_key(|k| k.kid().to_owned()), kid);
        assert_eq!(
            fs::metadata(&kdir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let files: Vec<_> = fs::read_dir(&kdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2);
        for f in files {
            assert_eq!(
                fs::metadata(&f).unwrap().permissions().mode() & 0o777,
                0o600,
                "{f:?}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_certificates_verifiable_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), RETENTION, 0).unwrap();
        let old = ring.with_cert_key(|k| sign_with(cert(0), k.key_id(), |b| k.sign(b)));
        let (new_id, _) = ring.rotate(50).unwrap();
        let new = ring.with_cert_key(|k| sign_with(cert(50), k.key_id(), |b| k.sign(b)));
        assert_eq!(new.key_id, new_id);
        assert_ne!(old.key_id, new.key_id);

        // Right after the rotation both keys are published and both certificates verify.
        let keys = ring.guardian_keys(60);
        assert_eq!(keys.len(), 2);
        assert!(verify(&old, &keys, 60).is_ok());
        assert!(verify(&new, &keys, 60).is_ok());
        let published = ring.published(60);
        assert!(published[0].current && !published[1].current);

        // Once every certificate of the old key has expired, it is no longer published.
        assert_eq!(
            ring.guardian_keys(50 + RETENTION.cert_lifetime + 1).len(),
            1
        );

        // The retirement survives a restart.
        let reopened = KeyRing::open(dir.path(), RETENTION, 60).unwrap();
        assert_eq!(reopened.with_cert_key(|k| k.key_id().to_owned()), new_id);
        assert_eq!(reopened.guardian_keys(60).len(), 2);
    }

    #[test]
    fn retired_jwt_key_verifies_for_its_retention_then_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), RETENTION, 0).unwrap();
        let old = ring.with_jwt_key(|k| k.kid().to_owned());
        ring.rotate(10).unwrap();
        assert!(
            ring.with_jwt_verifier(&old, 10 + RETENTION.jwt_lifetime, |_| ())
                .is_some()
        );
        assert!(
            ring.with_jwt_verifier(&old, 11 + RETENTION.jwt_lifetime, |_| ())
                .is_none()
        );
        // A later rotation past the retention deletes the old files.
        ring.rotate(2000).unwrap();
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 4, "current and just-retired key of each kind");
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), RETENTION, 0).unwrap();
        let id = ring.with_cert_key(|k| k.key_id().to_owned());
        drop(ring);
        let path = dir.path().join(format!("cert-{id}.json"));
        let mut file: KeyFile = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        // Keep this key's secret half but pair it with another key's public half.
        let mine = Zeroizing::new(STANDARD.decode(file.secret_key.as_bytes()).unwrap());
        let other = SigningKey::generate().to_bytes();
        let mut mixed = mine[..DSA_SECRET_KEY_LEN].to_vec();
        mixed.extend_from_slice(&other[DSA_SECRET_KEY_LEN..]);
        file.secret_key = STANDARD.encode(&mixed);
        fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        assert!(KeyRing::open(dir.path(), RETENTION, 0).is_err());
    }
}
