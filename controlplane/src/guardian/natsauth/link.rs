//! Guardian's connections to nats-server: one as the system account's user (to push
//! account JWTs), and one per realm account in use (to write the directory and publish
//! revocations). async-nats reconnects each by itself after a server restart.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

use super::{DIRECTORY_BUCKET, OperatorKeys, connect_options, guardian_user};
use crate::guardian::store::RealmRow;

/// Subject on which the full resolver accepts account JWT updates.
const CLAIMS_UPDATE: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// How long one request to nats-server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one exchange with nats-server, giving up after five seconds: while the
/// server is away, async-nats buffers and waits for the reconnection, and Guardian must not
/// hold a request (or its retry loop) that long.
pub async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LinkError::Unreachable(format!("{what}: {e}"))),
        Err(_) => Err(LinkError::Unreachable(format!("{what}: no answer in time"))),
    }
}

/// A failure talking to nats-server.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The server could not be reached or did not answer in time.
    #[error("nats-server unreachable: {0}")]
    Unreachable(String),
    /// The server answered with a refusal.
    #[error("nats-server refused: {0}")]
    Refused(String),
    /// Building credentials failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One realm account connection and its directory bucket.
#[derive(Clone, Debug)]
pub struct RealmConn {
    /// The connection (Guardian's user in the realm account).
    pub client: async_nats::Client,
    /// The realm's directory bucket.
    pub directory: kv::Store,
}

/// Guardian's link to nats-server.
pub struct NatsLink {
    url: String,
    keys: OperatorKeys,
    system: async_nats::Client,
    realms: tokio::sync::Mutex<HashMap<String, RealmConn>>,
}

impl std::fmt::Debug for NatsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLink")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn options(
    creds: &super::UserCredentials,
    name: &str,
) -> anyhow::Result<async_nats::ConnectOptions> {
    Ok(connect_options(creds)?
        .name(name)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connection_timeout(REQUEST_TIMEOUT))
}

#[derive(serde::Deserialize)]
struct ClaimsReply {
    data: Option<ClaimsData>,
    error: Option<ClaimsError>,
}

#[derive(serde::Deserialize)]
struct ClaimsData {
    code: Option<u16>,
    message: Option<String>,
}

#[derive(serde::Deserialize)]
struct ClaimsError {
    description: Option<String>,
}

impl NatsLink {
    /// Connects to `url` as the system account's user. If the server is down the
    /// connection keeps retrying in the background and calls fail at once until it is up.
    pub async fn connect(url: &str, keys: OperatorKeys, now: u64) -> anyhow::Result<Self> {
        let creds = keys.system_user(now)?;
        let system = options(&creds, "guardian-system")?
            .retry_on_initial_connect()
            .connect(url)
            .await?;
        // Give a server that is up the time to accept us, so the first requests after
        // start-up do not find Guardian still connecting; a server that is down does not
        // hold start-up longer than this.
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        while system.connection_state() != async_nats::connection::State::Connected
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            url: url.to_owned(),
            keys,
            system,
            realms: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Whether Guardian's system connection is up. While it is down, work is refused or
    /// queued at once instead of waiting for timeouts.
    pub fn connected(&self) -> bool {
        self.system.connection_state() == async_nats::connection::State::Connected
    }

    /// The operator keys.
    pub fn keys(&self) -> &OperatorKeys {
        &self.keys
    }

    /// Pushes an account JWT to the server's resolver.
    pub async fn push_account(&self, jwt: &str) -> Result<(), LinkError> {
        if !self.connected() {
            return Err(LinkError::Unreachable("not connected".into()));
        }
        let reply = bounded(
            "account update",
            self.system.request(CLAIMS_UPDATE, jwt.to_owned().into()),
        )
        .await?;
        let parsed: ClaimsReply = serde_json::from_slice(&reply.payload)
            .map_err(|e| LinkError::Refused(format!("unreadable reply: {e}")))?;
        if let Some(err) = parsed.error {
            return Err(LinkError::Refused(err.description.unwrap_or_default()));
        }
        match parsed.data {
            Some(ClaimsData {
                code: Some(200) | None,
                ..
            }) => Ok(()),
            Some(d) => Err(LinkError::Refused(d.message.unwrap_or_default())),
            None => Err(LinkError::Refused("empty reply".into())),
        }
    }

    /// The connection to `realm`'s account, connecting (and creating the directory bucket)
    /// on first use.
    pub async fn realm(&self, realm: &RealmRow, now: u64) -> Result<RealmConn, LinkError> {
        if !self.connected() {
            return Err(LinkError::Unreachable("not connected".into()));
        }
        let mut realms = self.realms.lock().await;
        if let Some(c) = realms.get(&realm.name) {
            return Ok(c.clone());
        }
        let creds = guardian_user(&realm.account_seed, now)?;
        let client = bounded(
            "realm connection",
            options(&creds, &format!("guardian-{}", realm.name))?.connect(&self.url),
        )
        .await?;
        let js = jetstream::new(client.clone());
        let directory = bounded(
            "directory bucket",
            js.create_or_update_key_value(kv::Config {
                bucket: DIRECTORY_BUCKET.to_owned(),
                description: format!("Conflux directory of realm {}", realm.name),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            }),
        )
        .await?;
        let conn = RealmConn { client, directory };
        realms.insert(realm.name.clone(), conn.clone());
        Ok(conn)
    }

    /// Closes and forgets the connection to a deleted realm's account.
    pub async fn forget_realm(&self, name: &str) {
        if let Some(conn) = self.realms.lock().await.remove(name) {
            // The account is being revoked anyway; a failed drain changes nothing.
            let _ = bounded("drain", conn.client.drain()).await;
        }
    }
}
