//! `credentials.json` in the data dir: all a node keeps between runs (0600).
//!
//! It holds the node id, the conflux token and the refresh JWT, so a restart re-registers
//! without the one-time registration token. Key pairs are never stored.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use conflux_shared::id::NodeId;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The file's name inside the data dir.
pub const FILE_NAME: &str = "credentials.json";

/// Why the credentials file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading, writing or creating the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Other users could read the file.
    #[error("{path} has mode {mode:o}: it holds secrets; make it 0600 (chmod 600)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a credentials file.
    #[error("{path} is not a valid credentials file: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
}

/// What a node keeps between runs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Credentials {
    /// The node's stable id (hex).
    #[zeroize(skip)]
    #[serde(with = "node_id_hex")]
    pub node_id: NodeId,
    /// The realm the node is registered in.
    pub realm: String,
    /// The long-lived node credential Guardian issued at the first registration.
    pub conflux_token: String,
    /// The long-lived JWT that obtains short-lived access JWTs.
    pub refresh_jwt: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("node_id", &self.node_id)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

mod node_id_hex {
    use conflux_shared::id::NodeId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = String::deserialize(d)?;
        NodeId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl Credentials {
    /// The file's path in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Loads the credentials, or `None` if the node has never registered.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, CredentialsError> {
        let path = Self::path(data_dir);
        let io = |source| CredentialsError::Io {
            path: path.clone(),
            source,
        };
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialsError::Permissions { path, mode });
        }
        let mut text = fs::read_to_string(&path).map_err(io)?;
        let parsed = serde_json::from_str(&text);
        text.zeroize();
        parsed
            .map(Some)
            .map_err(|source| CredentialsError::Malformed { path, source })
    }

    /// Writes the credentials atomically with mode 0600, creating `data_dir` (0700).
    pub fn save(&self, data_dir: &Path) -> Result<(), CredentialsError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CredentialsError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io(data_dir))?;
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!(".{FILE_NAME}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut json = serde_json::to_vec_pretty(self).expect("credentials always serialize");
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        json.zeroize();
        written.map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            node_id: NodeId::random(),
            realm: "lab".into(),
            conflux_token: "ct-secret".into(),
            refresh_jwt: "a.b.c".into(),
        }
    }

    #[test]
    fn round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(Credentials::load(&data).unwrap(), None);
        let c = sample();
        c.save(&data).unwrap();
        let mode = fs::metadata(Credentials::path(&data))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(Credentials::load(&data).unwrap(), Some(c.clone()));
        let mut again = c.clone();
        again.refresh_jwt = "d.e.f".into();
        again.save(&data).unwrap();
        assert_eq!(Credentials::load(&data).unwrap(), Some(again));
    }

    #[test]
    fn refuses_readable_or_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        sample().save(dir.path()).unwrap();
        let path = Credentials::path(dir.path());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Credentials::load(dir.path()),
            Err(CredentialsError::Permissions { mode: 0o644, .. })
        ));
        fs::write(&path, b"{\"node_id\":\"zz\"}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Credentials::load(dir.path()),
            Err(CredentialsError::Malformed { .. })
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("ct-secret") && !s.contains("a.b.c"), "{s}");
    }
}
