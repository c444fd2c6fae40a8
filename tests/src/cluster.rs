//! A realm on loopback: nats-server in operator mode, Guardian, and `conflux` nodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use conflux_shared::crypto::identity::NodeIdentity;
use serde::Deserialize;
use serde_json::json;
use tempfile::TempDir;

use crate::bins;
use crate::ctl::{Ctl, Status};
use crate::proc::{Proc, free_port};
use crate::wait;

/// How long processes get to come up on a loaded two-core machine.
pub const STARTUP: Duration = Duration::from_secs(30);

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// Presence every second, peers forgotten after 4 s without one.
/// Control plane only: these tests look at streams, not packets.
const NODE_TIMING: &str = "presence_interval_ms = 1000\npeer_timeout_ms = 4000\n\
                           handshake_timeout_ms = 2000\ndataplane = \"none\"\n";

/// nats-server and Guardian, ready to take realms and nodes.
pub struct Cluster {
    // Fields drop in order: the processes go before the directory holding their logs.
    guardian: Proc,
    nats: Proc,
    nats_dir: PathBuf,
    nats_port: u16,
    guardian_port: u16,
    ip: String,
    http: reqwest::blocking::Client,
    /// Holds every file of the run; removed at the end.
    pub dir: TempDir,
}

/// What Guardian answers to a registration, as far as the tests need it.
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    /// Node id (hex).
    pub node_id: String,
    /// Encoded `SignedCertificate`, base64.
    pub certificate: String,
    /// NATS credentials.
    pub nats: RegisteredNats,
}

/// NATS user credentials from a registration.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisteredNats {
    /// User JWT.
    pub user_jwt: String,
    /// User nkey seed.
    pub user_seed: String,
}

impl Cluster {
    /// Starts nats-server (configured by `guardian nats-config`) and Guardian on loopback.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// Starts nats-server and Guardian listening on `ip` (an address of this namespace,
    /// IPv4 or IPv6, e.g. a test bridge that nodes in other namespaces reach).
    pub fn start_on(ip: &str) -> Self {
        let nats_bin = bins::nats_server();
        let guardian_bin = bins::workspace_bin("guardian");
        let dir = tempfile::Builder::new()
            .prefix("conflux-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let nats_dir = dir.path().join("nats");
        let nats_port = free_port();
        let out = Command::new(&guardian_bin)
            .args(["nats-config", "--dir"])
            .arg(&nats_dir)
            .args(["--listen", &host_port(ip, nats_port)])
            .output()
            .expect("running guardian nats-config");
        assert!(
            out.status.success(),
            "guardian nats-config failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nats = spawn_nats(&nats_bin, &nats_dir, &logs, ip, nats_port);

        let guardian_port = free_port();
        let mut cmd = Command::new(&guardian_bin);
        cmd.arg("serve")
            .args(["--listen", &host_port(ip, guardian_port)])
            .arg("--data-dir")
            .arg(dir.path().join("guardian"))
            .args([
                "--nats-url",
                &format!("nats://{}", host_port(ip, nats_port)),
            ])
            .arg("--nats-dir")
            .arg(&nats_dir)
            .env("GUARDIAN_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info");
        let guardian = Proc::spawn("guardian", cmd, &logs);
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let c = Self {
            ip: ip.to_owned(),
            dir,
            nats_dir,
            nats_port,
            nats,
            guardian_port,
            guardian,
            http,
        };
        wait::until_true("guardian /healthz", STARTUP, || {
            c.http
                .get(format!("{}/healthz", c.guardian_url()))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        c
    }

    /// `nats://<ip>:<port>` (`[ip]` for IPv6).
    pub fn nats_url(&self) -> String {
        format!("nats://{}", host_port(&self.ip, self.nats_port))
    }

    /// `http://<ip>:<port>` (`[ip]` for IPv6).
    pub fn guardian_url(&self) -> String {
        format!("http://{}", host_port(&self.ip, self.guardian_port))
    }

    /// The directory of the processes' logs.
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.guardian_url()))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("Guardian {path}: {e}"));
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        assert!(status.is_success(), "Guardian {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Creates a realm with an overlay subnet.
    pub fn create_realm(&self, name: &str, subnet: &str) {
        self.admin(
            reqwest::Method::POST,
            "/v1/realms",
            Some(json!({ "name": name, "subnet": subnet })),
        );
    }

    /// Creates a realm with an IPv4 overlay subnet and an IPv6 one beside it.
    pub fn create_realm6(&self, name: &str, subnet: &str, subnet6: &str) {
        self.admin(
            reqwest::Method::POST,
            "/v1/realms",
            Some(json!({ "name": name, "subnet": subnet, "subnet6": subnet6 })),
        );
    }

    /// A single-use registration token for `realm`.
    pub fn token(&self, realm: &str) -> String {
        self.token_with(realm, json!({}))
    }

    /// A one-use registration token with extra grants (`routed_prefixes`, `portal`, `owner`).
    pub fn token_with(&self, realm: &str, grants: serde_json::Value) -> String {
        let mut body = json!({ "expires_in_secs": 3600, "uses": 1 });
        if let (Some(b), Some(g)) = (body.as_object_mut(), grants.as_object()) {
            b.extend(g.clone());
        }
        let v = self.admin(
            reqwest::Method::POST,
            &format!("/v1/realms/{realm}/tokens"),
            Some(body),
        );
        v["token"]
            .as_str()
            .expect("a token in Guardian's answer")
            .to_owned()
    }

    /// Revokes a node.
    pub fn revoke(&self, node_id: &str) {
        self.admin(
            reqwest::Method::POST,
            &format!("/v1/nodes/{node_id}/revoke"),
            None,
        );
    }

    /// Registers a node by hand (as an independent client would), with `identity`'s keys.
    pub fn register(&self, realm: &str, identity: &NodeIdentity, taints: &[&str]) -> Registered {
        let body = json!({
            "registration_token": self.token(realm),
            "ml_dsa_public_key": B64.encode(identity.public().dsa_bytes()),
            "ml_kem_public_key": B64.encode(identity.public().kem_bytes()),
            "taints": taints,
        });
        let resp = self
            .http
            .post(format!("{}/v1/register", self.guardian_url()))
            .json(&body)
            .send()
            .expect("registering by hand");
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        assert!(status.is_success(), "registration: {status}: {text}");
        serde_json::from_str(&text).expect("a registration answer")
    }

    /// Whether Guardian is still running.
    pub fn guardian_running(&mut self) -> bool {
        self.guardian.running()
    }

    /// Kills nats-server at once (SIGKILL).
    pub fn kill_nats(&mut self) {
        self.nats.kill();
        wait::until_true("nats-server to stop listening", STARTUP, || {
            std::net::TcpStream::connect((self.ip.as_str(), self.nats_port)).is_err()
        });
    }

    /// Starts nats-server again with the same config and state.
    pub fn restart_nats(&mut self) {
        self.nats = spawn_nats(
            &bins::nats_server(),
            &self.nats_dir,
            &self.logs(),
            &self.ip,
            self.nats_port,
        );
    }

    /// Starts a node in `realm` with `taints` (a fresh registration token).
    pub fn node(&self, name: &str, realm: &str, taints: &[&str]) -> Node {
        let home = self.dir.path().join("nodes").join(name);
        std::fs::create_dir_all(&home).unwrap();
        let socket = home.join("conflux.sock");
        let taints = taints
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "guardian_url = {:?}\nregistration_token = {:?}\nnats_urls = [{:?}]\n\
             data_dir = {:?}\napi_socket = {:?}\ntaints = [{taints}]\n{NODE_TIMING}",
            self.guardian_url(),
            self.token(realm),
            self.nats_url(),
            home.join("data"),
            socket,
        );
        let config_path = home.join("conflux.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut node = Node {
            name: name.to_owned(),
            config: config_path,
            logs: self.logs(),
            ctl: Ctl::new(socket),
            home,
            proc: None,
        };
        node.start();
        node
    }
}

/// `ip:port`, with the brackets an IPv6 literal needs.
pub fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn spawn_nats(bin: &Path, dir: &Path, logs: &Path, ip: &str, port: u16) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(dir.join("nats-server.conf"));
    let p = Proc::spawn("nats-server", cmd, logs);
    wait::until_true("nats-server to listen", STARTUP, || {
        std::net::TcpStream::connect((ip, port)).is_ok()
    });
    p
}

/// A running `conflux` control process.
pub struct Node {
    /// Its name in the test.
    pub name: String,
    config: PathBuf,
    logs: PathBuf,
    home: PathBuf,
    /// `conflux-ctl` bound to its socket.
    pub ctl: Ctl,
    proc: Option<Proc>,
}

impl Node {
    /// Starts the process and waits until its local API answers.
    pub fn start(&mut self) {
        let mut cmd = Command::new(bins::workspace_bin("conflux"));
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info");
        self.proc = Some(Proc::spawn(
            &format!("conflux-{}", self.name),
            cmd,
            &self.logs,
        ));
        let ctl = self.ctl.clone();
        wait::until_true(
            &format!("node {} to answer conflux-ctl", self.name),
            STARTUP,
            || ctl.status().is_some(),
        );
    }

    /// Stops the process (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Its data directory (holds `credentials.json`).
    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Its status (panics if it does not answer).
    pub fn status(&self) -> Status {
        self.ctl
            .status()
            .unwrap_or_else(|| panic!("node {} does not answer", self.name))
    }

    /// Its node id.
    pub fn id(&self) -> String {
        self.status().node_id
    }

    /// Whether this node holds both streams with `peer` (by id).
    pub fn has_pair(&self, peer: &str) -> bool {
        let s = self.ctl.streams();
        ["out", "in"]
            .iter()
            .all(|d| s.iter().any(|x| x.peer_id == peer && x.direction == *d))
    }

    /// Whether this node holds no stream with `peer`.
    pub fn has_no_stream(&self, peer: &str) -> bool {
        self.ctl.streams().iter().all(|x| x.peer_id != peer)
    }
}

/// Whether `a` and `b` hold both streams each, with keys matching end to end.
pub fn paired(a: &Node, b: &Node) -> bool {
    let (ida, idb) = (a.id(), b.id());
    let (sa, sb) = (a.ctl.streams(), b.ctl.streams());
    let fp = |s: &[crate::ctl::Stream], peer: &str, dir: &str| {
        s.iter()
            .find(|x| x.peer_id == peer && x.direction == dir)
            .map(|x| (x.stream_id.clone(), x.key_fingerprint.clone()))
    };
    let ab = (fp(&sa, &idb, "out"), fp(&sb, &ida, "in"));
    let ba = (fp(&sb, &ida, "out"), fp(&sa, &idb, "in"));
    matches!(ab, (Some(x), Some(y)) if x == y) && matches!(ba, (Some(x), Some(y)) if x == y)
}

/// Whether neither node holds a stream with the other.
pub fn apart(a: &Node, b: &Node) -> bool {
    a.has_no_stream(&b.id()) && b.has_no_stream(&a.id())
}
