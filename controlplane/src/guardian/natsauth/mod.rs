//! NATS in operator/JWT mode: who signs what.
//!
//! - The **operator** key (made by `guardian nats-config`) signs account JWTs. nats-server
//!   trusts the operator JWT written into its config.
//! - The **system account** key signs Guardian's own system user, through which Guardian
//!   pushes account JWTs to the server's full resolver (`$SYS.REQ.CLAIMS.UPDATE`).
//! - Each **realm** is an account whose key Guardian makes when the realm is created. It
//!   signs one user JWT per node registration, limited to the realm's subjects and to
//!   reading the directory bucket, and one unrestricted user for Guardian itself.
//!
//! Revoking a node adds its user keys to the realm account's `revocations` and pushes the
//! account JWT again; nats-server then closes the node's connection and refuses its JWT.

pub mod claims;
mod config;
mod link;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use nkeys::KeyPair;
use zeroize::Zeroizing;

use conflux_shared::id::NodeId;

use claims::Permission;
pub use config::{ServerOptions, write_server_config};
pub use link::{LinkError, NatsLink, RealmConn, bounded};

/// The realm directory's JetStream KV bucket (one per realm account).
pub const DIRECTORY_BUCKET: &str = "conflux-directory";

/// File holding the operator seed in the NATS directory.
pub const OPERATOR_SEED_FILE: &str = "operator.nk";
/// File holding the system account seed in the NATS directory.
pub const SYSTEM_SEED_FILE: &str = "system_account.nk";

/// The prefix of every subject of `realm`.
pub fn subject_prefix(realm: &str) -> String {
    format!("conflux.{realm}")
}

/// The operator and system account keys.
pub struct OperatorKeys {
    operator: KeyPair,
    system: KeyPair,
}

impl std::fmt::Debug for OperatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKeys")
            .field("operator", &self.operator.public_key())
            .field("system", &self.system.public_key())
            .finish()
    }
}

fn read_seed(path: &Path) -> anyhow::Result<KeyPair> {
    let seed = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("{}: {e} (run `guardian nats-config` first)", path.display())
    })?);
    KeyPair::from_seed(seed.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl OperatorKeys {
    /// Loads the seeds `guardian nats-config` wrote into `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let operator = read_seed(&dir.join(OPERATOR_SEED_FILE))?;
        let system = read_seed(&dir.join(SYSTEM_SEED_FILE))?;
        anyhow::ensure!(
            operator.key_pair_type() == nkeys::KeyPairType::Operator
                && system.key_pair_type() == nkeys::KeyPairType::Account,
            "{}: seeds of the wrong kind",
            dir.display()
        );
        Ok(Self { operator, system })
    }

    /// Loads the seeds in `dir`, or makes and saves new ones (0600) if there are none.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        if dir.join(OPERATOR_SEED_FILE).exists() {
            return Self::load(dir);
        }
        let keys = Self {
            operator: KeyPair::new_operator(),
            system: KeyPair::new_account(),
        };
        for (file, kp) in [
            (OPERATOR_SEED_FILE, &keys.operator),
            (SYSTEM_SEED_FILE, &keys.system),
        ] {
            let path = dir.join(file);
            let seed = Zeroizing::new(kp.seed().map_err(|e| anyhow::anyhow!("{e}"))?);
            std::fs::write(&path, format!("{}\n", seed.as_str()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(keys)
    }

    /// The operator's public key.
    pub fn operator_public(&self) -> String {
        self.operator.public_key()
    }

    /// The system account's public key.
    pub fn system_public(&self) -> String {
        self.system.public_key()
    }

    /// The operator JWT.
    pub fn operator_jwt(&self, now: u64) -> anyhow::Result<String> {
        claims::operator(&self.operator, &self.system.public_key(), now)
    }

    /// The system account's JWT (no JetStream).
    pub fn system_account_jwt(&self, now: u64) -> anyhow::Result<String> {
        claims::account(
            &self.operator,
            &self.system.public_key(),
            "SYS",
            false,
            BTreeMap::new(),
            now,
        )
    }

    /// A realm account's JWT with JetStream enabled and the given user revocations.
    pub fn realm_account_jwt(
        &self,
        account_public_key: &str,
        realm: &str,
        revocations: BTreeMap<String, u64>,
        now: u64,
    ) -> anyhow::Result<String> {
        claims::account(
            &self.operator,
            account_public_key,
            realm,
            true,
            revocations,
            now,
        )
    }

    /// Credentials of an unrestricted user of the system account, for Guardian.
    fn system_user(&self, now: u64) -> anyhow::Result<UserCredentials> {
        unrestricted_user(&self.system, "guardian", now)
    }
}

/// A NATS user's JWT and seed: what a client needs to connect.
pub struct UserCredentials {
    /// The user JWT.
    pub jwt: String,
    /// The user's nkey seed (signs the server's connect nonce).
    pub seed: Zeroizing<String>,
    /// The user's public key (what revocation names).
    pub public_key: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

fn new_user() -> anyhow::Result<(KeyPair, Zeroizing<String>)> {
    let kp = KeyPair::new_user();
    let seed = Zeroizing::new(kp.seed().map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok((kp, seed))
}

fn unrestricted_user(account: &KeyPair, name: &str, now: u64) -> anyhow::Result<UserCredentials> {
    let (kp, seed) = new_user()?;
    let all = Permission::default();
    let jwt = claims::user(account, &kp.public_key(), name, &all, &all, now)?;
    Ok(UserCredentials {
        jwt,
        seed,
        public_key: kp.public_key(),
    })
}

/// A fresh realm account key: (public key, seed).
pub fn new_account() -> anyhow::Result<(String, Zeroizing<String>)> {
    let kp = KeyPair::new_account();
    let seed = Zeroizing::new(kp.seed().map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok((kp.public_key(), seed))
}

fn account_key(seed: &str) -> anyhow::Result<KeyPair> {
    KeyPair::from_seed(seed).map_err(|e| anyhow::anyhow!("realm account seed: {e}"))
}

/// What a node of `realm` may publish and subscribe to: the realm's subjects (but not the
/// revocation subject, which only Guardian publishes), reply inboxes, and the JetStream
/// API calls that read the directory bucket.
pub fn node_permissions(realm: &str) -> (Permission, Permission) {
    let prefix = subject_prefix(realm);
    let stream = format!("KV_{DIRECTORY_BUCKET}");
    let publish = Permission {
        allow: vec![
            format!("{prefix}.>"),
            "_INBOX.>".to_owned(),
            "$JS.API.INFO".to_owned(),
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
        ],
        deny: vec![format!("{prefix}.revoked")],
    };
    let subscribe = Permission {
        allow: vec![format!("{prefix}.>"), "_INBOX.>".to_owned()],
        deny: Vec::new(),
    };
    (publish, subscribe)
}

/// Credentials for one registration of `node` in `realm`, signed by the realm's account.
pub fn node_user(
    account_seed: &str,
    realm: &str,
    node: &NodeId,
    now: u64,
) -> anyhow::Result<UserCredentials> {
    let account = account_key(account_seed)?;
    let (kp, seed) = new_user()?;
    let (publish, subscribe) = node_permissions(realm);
    let jwt = claims::user(
        &account,
        &kp.public_key(),
        &node.to_hex(),
        &publish,
        &subscribe,
        now,
    )?;
    Ok(UserCredentials {
        jwt,
        seed,
        public_key: kp.public_key(),
    })
}

/// Credentials of Guardian's own unrestricted user in a realm account (it writes the
/// directory and publishes revocations).
pub fn guardian_user(account_seed: &str, now: u64) -> anyhow::Result<UserCredentials> {
    unrestricted_user(&account_key(account_seed)?, "guardian", now)
}

/// Connection options that authenticate with `creds`.
pub fn connect_options(creds: &UserCredentials) -> anyhow::Result<async_nats::ConnectOptions> {
    let kp = std::sync::Arc::new(
        KeyPair::from_seed(&creds.seed).map_err(|e| anyhow::anyhow!("user seed: {e}"))?,
    );
    Ok(async_nats::ConnectOptions::with_jwt(
        creds.jwt.clone(),
        move |nonce| {
            let kp = kp.clone();
            async move { kp.sign(&nonce).map_err(async_nats::AuthError::new) }
        },
    ))
}
