//! An independent NATS client holding a node's credentials, as an attacker inside one realm
//! (or a curious tool) would use them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerError};

use crate::cluster::RegisteredNats;

/// A connected client and the errors nats-server sent it.
pub struct Independent {
    /// The client.
    pub client: Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Independent {
    /// Connects to `url` with the user JWT and seed Guardian issued.
    pub async fn connect(url: &str, creds: &RegisteredNats) -> Self {
        let key = Arc::new(nkeys::KeyPair::from_seed(&creds.user_seed).expect("a user seed"));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = ConnectOptions::with_jwt(creds.user_jwt.clone(), move |nonce| {
            let key = key.clone();
            async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
        })
        .event_callback(move |ev| {
            let sink = sink.clone();
            async move {
                let text = match ev {
                    Event::ServerError(ServerError::Other(e)) => e,
                    Event::ServerError(ServerError::AuthorizationViolation) => {
                        "authorization violation".into()
                    }
                    _ => return,
                };
                sink.lock().unwrap().push(text.to_lowercase());
            }
        })
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("an independent client connects with a node's credentials");
        Self { client, errors }
    }

    /// Errors nats-server reported so far (lowercase).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Waits until nats-server reported a permissions violation naming `subject`.
    pub async fn denied(&self, subject: &str, limit: Duration) -> bool {
        let want = subject.to_lowercase();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self
                .errors()
                .iter()
                .any(|e| e.contains("permissions violation") && e.contains(&want))
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
