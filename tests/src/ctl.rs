//! `conflux-ctl --json` as the tests read it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::bins;

/// `conflux-ctl status --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Node id (hex).
    pub node_id: String,
    /// Realm.
    pub realm: String,
    /// Overlay address.
    pub overlay_address: String,
    /// Taints.
    pub taints: Vec<String>,
    /// Fingerprint of this run's ML-DSA key.
    pub identity_fingerprint: String,
    /// "connected", "pending", "disconnected" or "refused".
    pub nats_state: String,
    /// Reconnections so far.
    pub nats_reconnects: u64,
    /// Peers known.
    pub peers: u32,
    /// Streams up.
    pub streams: u32,
    /// Registration time at start, ms.
    pub registration_ms: u64,
    /// Drop counters.
    pub ignored: BTreeMap<String, u64>,
    /// "relay", "gateway", "portal".
    pub roles: Vec<String>,
    /// LAN prefixes this node advertises.
    pub advertised_routes: Vec<String>,
    /// LAN prefixes accepted from gateways ("prefix via node").
    pub accepted_routes: Vec<String>,
    /// Advertised prefixes of peers Guardian did not authorize.
    pub routes_refused: u64,
    /// A rift's portal.
    pub exit_portal: String,
    /// Internet-bound packets refused here.
    pub exit_denied: u64,
}

impl Status {
    /// A drop counter (0 when absent).
    pub fn ignored(&self, why: &str) -> u64 {
        self.ignored.get(why).copied().unwrap_or(0)
    }
}

/// One row of `conflux-ctl peers --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Peer {
    /// Node id (hex).
    pub node_id: String,
    /// Taints.
    pub taints: Vec<String>,
    /// Policy verdict.
    pub compatible: bool,
    /// "connected", "handshaking" or "incompatible".
    pub state: String,
    /// Last presence, unix ms.
    pub last_seen_unix_ms: u64,
    /// Fingerprint of the peer's certified ML-DSA key.
    pub identity_fingerprint: String,
}

#[derive(Deserialize)]
struct Peers {
    #[serde(default)]
    peers: Vec<Peer>,
}

/// One row of `conflux-ctl streams --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Stream {
    /// Stream id (hex).
    pub stream_id: String,
    /// The other end.
    pub peer_id: String,
    /// "out" or "in".
    pub direction: String,
    /// Key fingerprint.
    pub key_fingerprint: String,
    /// Handshake request to reply, µs (outbound only).
    pub handshake_us: u64,
}

#[derive(Deserialize)]
struct Streams {
    #[serde(default)]
    streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct Taints {
    #[serde(default)]
    taints: Vec<String>,
}

/// One route in `conflux-ctl routes --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Route {
    /// Destination node id.
    pub destination: String,
    /// Its overlay address.
    pub address: String,
    /// Relay node id, empty when direct.
    pub via: String,
    /// "up", "waiting", "setting-up" or "failed".
    pub state: String,
    /// First hop label.
    pub label: u32,
    /// Every leg: "direct" or "via <relay>…", its state and share of flows.
    pub paths: Vec<String>,
}

/// One tether in `conflux-ctl tethers --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tether {
    /// Next hop node id.
    pub peer: String,
    /// State.
    pub state: String,
    /// Routes and relay entries using it.
    pub users: u32,
    /// WebRTC associations (one per worker of the end with more).
    pub associations: u32,
    /// Path MTU last reported (UDP payload bytes; 0: none yet).
    pub plpmtu: u32,
    /// Where each association sends.
    pub remotes: Vec<String>,
}

/// One data plane worker's packets in `conflux-ctl routes|tethers --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkerTraffic {
    /// Worker index.
    pub worker: u32,
    /// Packets sealed and sent.
    pub egress_packets: u64,
    /// Packets received and opened.
    pub ingress_packets: u64,
    /// Packets relayed.
    pub relayed_packets: u64,
}

/// `conflux-ctl routes|tethers --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Overlay {
    /// Whether a data plane is attached.
    pub dataplane: bool,
    /// Routes.
    pub routes: Vec<Route>,
    /// Tethers.
    pub tethers: Vec<Tether>,
    /// Relay entries for others.
    pub relays: u32,
    /// Overlay counters.
    pub counters: BTreeMap<String, u64>,
    /// Data plane counters (sum over workers).
    pub dataplane_counters: BTreeMap<String, u64>,
    /// Per worker packet counts.
    pub workers: Vec<WorkerTraffic>,
    /// Host candidates.
    pub host_candidates: Vec<String>,
    /// Server-reflexive candidates, "<worker> ip:port".
    pub reflexive_candidates: Vec<String>,
    /// NAT behaviour as STUN answers tell.
    pub nat: String,
    /// STUN servers asked.
    pub stun_servers: Vec<String>,
}

impl Overlay {
    /// An overlay counter (0 when absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// `conflux-ctl` bound to one node's socket.
#[derive(Debug, Clone)]
pub struct Ctl {
    bin: PathBuf,
    socket: PathBuf,
}

impl Ctl {
    /// A client of the node listening on `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            bin: bins::workspace_bin("conflux-ctl"),
            socket,
        }
    }

    /// Runs `conflux-ctl --json <args>`; `Err` holds its stderr.
    pub fn run<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T, String> {
        let out = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .map_err(|e| format!("running conflux-ctl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("conflux-ctl output: {e}"))
    }

    /// Runs `conflux-ctl <args>` and returns its table output.
    pub fn table(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| format!("running conflux-ctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `status`, or `None` while the node does not answer.
    pub fn status(&self) -> Option<Status> {
        self.run(&["status"]).ok()
    }

    /// `peers` (empty while the node does not answer).
    pub fn peers(&self) -> Vec<Peer> {
        self.run::<Peers>(&["peers"])
            .map(|p| p.peers)
            .unwrap_or_default()
    }

    /// `streams` (empty while the node does not answer).
    pub fn streams(&self) -> Vec<Stream> {
        self.run::<Streams>(&["streams"])
            .map(|s| s.streams)
            .unwrap_or_default()
    }

    /// `routes` (routes, tethers and counters), or `None` while the node does not answer.
    pub fn overlay(&self) -> Option<Overlay> {
        self.run(&["routes"]).ok()
    }

    /// `taint add|rm|ls [taint]`: the resulting set.
    pub fn taint(&self, op: &str, taint: Option<&str>) -> Result<Vec<String>, String> {
        let mut args = vec!["taint", op];
        args.extend(taint);
        self.run::<Taints>(&args).map(|t| t.taints)
    }
}
