//! The NATS control channel: subjects (DESIGN §13) and the connection.
//!
//! The connection authenticates with the user JWT Guardian signed for this node and the
//! user nkey seed, and reconnects by itself with a short, capped delay so that a restarted
//! nats-server is rejoined within a second or two.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// The realm-scoped subjects a node uses.
pub mod subjects {
    use conflux_shared::id::NodeId;
    use conflux_shared::taint::Realm;

    /// Periodic, rate-limited announcements of every node of the realm.
    pub fn presence(realm: &Realm) -> String {
        format!("conflux.{realm}.presence")
    }

    /// A node's signal inbox: tether set-up and route messages (request/reply).
    pub fn signal(realm: &Realm, node: NodeId) -> String {
        format!("conflux.{realm}.node.{node}.signal")
    }

    /// A node's handshake inbox (request/reply).
    pub fn handshake(realm: &Realm, node: NodeId) -> String {
        format!("conflux.{realm}.node.{node}.hs")
    }

    /// Guardian's revocation notices.
    pub fn revoked(realm: &Realm) -> String {
        format!("conflux.{realm}.revoked")
    }
}

/// Name of the realm directory's JetStream key-value bucket.
pub const DIRECTORY_BUCKET: &str = "conflux-directory";

/// Longest wait between reconnection attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What the connection reports to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// Connected (first time or again).
    Connected,
    /// The connection was lost; the client is reconnecting.
    Disconnected,
    /// nats-server refused the credentials (for instance after a revocation).
    AuthorizationViolation,
    /// Any other error nats-server reported (permissions violations among them).
    ServerError(String),
}

/// The user credentials Guardian issued.
#[derive(Clone)]
pub struct NatsCredentials {
    /// The user JWT (signed by the realm's account key).
    pub user_jwt: String,
    /// The user nkey seed; wiped on drop.
    pub user_seed: Zeroizing<String>,
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsCredentials(<redacted>)")
    }
}

/// Why the connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The seed is not a user nkey seed.
    #[error("NATS user seed from Guardian is invalid: {0}")]
    Seed(String),
    /// Connecting failed.
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        /// The servers tried.
        urls: String,
        /// What went wrong.
        source: async_nats::ConnectError,
    },
}

/// Connects to `urls` with `creds`; connection events go to `events`. The client keeps
/// trying if the servers are not up yet, and reconnects forever.
pub async fn connect(
    urls: &[String],
    creds: &NatsCredentials,
    name: &str,
    events: mpsc::UnboundedSender<ConnEvent>,
) -> Result<Client, NatsError> {
    let key =
        nkeys::KeyPair::from_seed(&creds.user_seed).map_err(|e| NatsError::Seed(e.to_string()))?;
    let key = Arc::new(key);
    let opts = ConnectOptions::with_jwt(creds.user_jwt.clone(), move |nonce| {
        let key = key.clone();
        async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
    })
    .name(name)
    .no_echo()
    .retry_on_initial_connect()
    .max_reconnects(None)
    .connection_timeout(Duration::from_secs(2))
    .ping_interval(Duration::from_secs(5))
    .reconnect_delay_callback(|attempts| {
        let ms = 50u64.saturating_mul(1 << attempts.min(5));
        Duration::from_millis(ms).min(MAX_RECONNECT_DELAY)
    })
    .event_callback(move |ev| {
        let events = events.clone();
        async move {
            let e = match ev {
                Event::Connected => ConnEvent::Connected,
                Event::Disconnected => ConnEvent::Disconnected,
                Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
                    ConnEvent::AuthorizationViolation
                }
                // A reconnection refused for its credentials comes back as a client error.
                Event::ClientError(async_nats::ClientError::Other(e))
                    if e.contains("authorization violation") =>
                {
                    ConnEvent::AuthorizationViolation
                }
                Event::ServerError(e) => ConnEvent::ServerError(e.to_string()),
                _ => return,
            };
            let _ = events.send(e);
        }
    });
    let urls_joined = urls.join(",");
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| NatsError::Connect {
            urls: urls_joined.clone(),
            source: async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ),
        })?;
    opts.connect(addrs)
        .await
        .map_err(|source| NatsError::Connect {
            urls: urls_joined,
            source,
        })
}
