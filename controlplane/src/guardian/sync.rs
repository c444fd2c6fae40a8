//! Keeping nats-server in step with the store.
//!
//! The store is the source of truth. Account JWTs, directory records and revocation
//! announcements derive from it; when nats-server cannot take one right away, the work is
//! queued here and retried by a background loop, and at start-up everything is pushed
//! again (a nats-server that lost its resolver or JetStream state heals from Guardian).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use conflux_shared::id::NodeId;

use super::natsauth::{LinkError, NatsLink};
use super::store::{NodeRow, RealmRow};
use super::{Guardian, directory};

/// How often queued work is retried.
const RETRY_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Account(String),
    Record(String, NodeId),
    Revocation(String, NodeId, u64),
}

/// Work that has not reached nats-server yet.
#[derive(Debug, Default)]
pub struct Pending(std::sync::Mutex<BTreeSet<Task>>);

impl Pending {
    fn add(&self, t: Task) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(t);
    }

    fn take(&self) -> BTreeSet<Task> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How many tasks are queued.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Guardian {
    /// The queue of work waiting for nats-server.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// Signs `realm`'s account JWT with every revocation the store holds and pushes it.
    pub async fn push_account(&self, nats: &NatsLink, realm: &RealmRow) -> Result<(), LinkError> {
        let now = self.now();
        let revocations: BTreeMap<String, u64> =
            RealmRow::revocations(&self.store.read(), &realm.name)
                .map_err(|e| LinkError::Other(e.into()))?
                .into_iter()
                .collect();
        let jwt = nats.keys().realm_account_jwt(
            &realm.account_public_key,
            &realm.name,
            revocations,
            now,
        )?;
        let r = nats.push_account(&jwt).await;
        self.metrics.nats_push(r.is_ok());
        r
    }

    /// Pushes `realm`'s account JWT, or queues it; `true` if it reached the server.
    pub async fn sync_account(&self, realm: &RealmRow) -> bool {
        let Some(nats) = &self.nats else { return true };
        match self.push_account(nats, realm).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(realm = %realm.name, error = %e, "account push failed; queued");
                self.pending.add(Task::Account(realm.name.clone()));
                false
            }
        }
    }

    /// Writes `node`'s directory record, or queues it; `true` if it was written.
    pub async fn sync_record(&self, realm: &RealmRow, node: &NodeRow) -> bool {
        let Some(nats) = &self.nats else { return true };
        let now = self.now();
        let r = match nats.realm(realm, now).await {
            Ok(conn) => {
                directory::put(
                    &conn,
                    &node.node_id,
                    &node.certificate,
                    node.revoked_at.is_some(),
                    now,
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        self.metrics.directory_write(r.is_ok());
        if let Err(e) = r {
            tracing::warn!(realm = %realm.name, node = %node.node_id, error = format!("{e:#}"), "directory write failed; queued");
            self.pending
                .add(Task::Record(realm.name.clone(), node.node_id));
            return false;
        }
        true
    }

    /// Announces `node`'s revocation on the realm's revocation subject, or queues it.
    pub async fn sync_revocation(&self, realm: &RealmRow, node: &NodeId, at: u64) -> bool {
        let Some(nats) = &self.nats else { return true };
        let r = match nats.realm(realm, self.now()).await {
            Ok(conn) => directory::announce_revocation(&conn, &realm.name, node, at).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = r {
            tracing::warn!(realm = %realm.name, node = %node, error = format!("{e:#}"), "revocation announcement failed; queued");
            self.pending
                .add(Task::Revocation(realm.name.clone(), *node, at));
            return false;
        }
        true
    }

    /// Retries every queued task once (failures are queued again).
    pub async fn flush_pending(&self) {
        for task in self.pending.take() {
            let realm_name = match &task {
                Task::Account(r) | Task::Record(r, _) | Task::Revocation(r, _, _) => r.clone(),
            };
            // The realm may have been deleted meanwhile: then the task has nothing to do.
            let Ok(Some(realm)) = RealmRow::get(&self.store.read(), &realm_name) else {
                continue;
            };
            match task {
                Task::Account(_) => {
                    self.sync_account(&realm).await;
                }
                Task::Record(_, id) => {
                    let node = NodeRow::get(&self.store.read(), &id);
                    if let Ok(Some(node)) = node {
                        self.sync_record(&realm, &node).await;
                    }
                }
                Task::Revocation(_, id, at) => {
                    self.sync_revocation(&realm, &id, at).await;
                }
            }
        }
    }

    /// Pushes every realm's account JWT and rewrites every directory record.
    pub async fn resync(&self) -> anyhow::Result<()> {
        if self.nats.is_none() {
            return Ok(());
        }
        let realms = RealmRow::list(&self.store.read())?;
        for realm in &realms {
            if !self.sync_account(realm).await {
                continue;
            }
            let nodes = NodeRow::list(&self.store.read(), &realm.name)?;
            for node in &nodes {
                self.sync_record(realm, node).await;
            }
        }
        Ok(())
    }

    /// Runs [`Self::resync`] once, then retries queued work every few seconds, for as long
    /// as the returned task lives.
    pub fn spawn_sync(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let g = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = g.resync().await {
                tracing::error!(error = format!("{e:#}"), "start-up resync failed");
            }
            let mut tick = tokio::time::interval(RETRY_EVERY);
            loop {
                tick.tick().await;
                if !g.pending.is_empty() {
                    g.flush_pending().await;
                }
            }
        })
    }
}
