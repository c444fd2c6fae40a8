//! What a control process that attaches learns of the data plane's current state: every
//! worker's tables (without key material) and counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::counters::Counters;
use crate::table::{Tables, TetherKind};

/// One stream as a worker holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Stream id, hex.
    pub id: String,
    /// The other end's overlay address.
    pub peer: String,
    /// The stream's label (egress: first hop's; ingress: this node's).
    pub label: u32,
    /// Egress: the lane this worker seals in.
    pub lane: Option<u8>,
    /// Egress: the next counter; ingress: packets opened.
    pub packets: u64,
    /// Ingress: the allowed source prefixes beyond the peer address.
    pub allowed: Vec<String>,
    /// Ingress: packets dropped for their inner source.
    pub spoofed: u64,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// `address/len`.
    pub prefix: String,
    /// `local` or `forward`.
    pub target: String,
    /// Next hops as `(tether, label, weight)`.
    pub hops: Vec<(u32, u32, u16)>,
    /// Whether an egress stream seals it.
    pub has_stream: bool,
}

/// One tether.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TetherInfo {
    /// Tether id.
    pub id: u32,
    /// Peer UDP address.
    pub peer: String,
    /// `plain` or `webrtc`.
    #[serde(default)]
    pub kind: String,
    /// `connecting`, `up`, `down` or `closed`.
    #[serde(default)]
    pub state: String,
    /// Datagrams sent.
    pub tx_packets: u64,
    /// Datagrams received.
    pub rx_packets: u64,
}

/// One worker's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// Worker index.
    pub worker: u16,
    /// The address its UDP socket is bound to.
    #[serde(default)]
    pub listen: String,
    /// Streams sealed here.
    pub egress: Vec<StreamInfo>,
    /// Streams opened here.
    pub ingress: Vec<StreamInfo>,
    /// Routes.
    pub routes: Vec<RouteInfo>,
    /// Relay entries as `(in_label, tether, out_label)`.
    pub relays: Vec<(u32, u32, u32)>,
    /// Tethers.
    pub tethers: Vec<TetherInfo>,
    /// Named drop counters.
    pub counters: BTreeMap<String, u64>,
    /// Traffic totals.
    pub traffic: BTreeMap<String, u64>,
}

impl WorkerSnapshot {
    /// Describes `tables` and `counters` of worker `worker`.
    pub fn of(worker: u16, tables: &Tables, counters: &Counters) -> Self {
        let egress = tables
            .egress
            .iter()
            .map(|s| StreamInfo {
                id: s.id.to_hex(),
                peer: s.peer.to_string(),
                label: s.label,
                lane: Some(s.lane),
                packets: s.packets,
                allowed: Vec::new(),
                spoofed: 0,
            })
            .collect();
        let ingress = tables
            .ingress
            .iter()
            .map(|s| StreamInfo {
                id: s.id.to_hex(),
                peer: s.peer.to_string(),
                label: s.label,
                lane: None,
                packets: s.opener.stats().opened,
                allowed: s.allowed.iter().map(|p| p.to_string()).collect(),
                spoofed: s.spoofed,
            })
            .collect();
        let routes = tables
            .routes
            .iter()
            .map(|(p, r)| RouteInfo {
                prefix: p.to_string(),
                target: format!("{:?}", r.target).to_lowercase(),
                hops: r
                    .hops()
                    .iter()
                    .map(|h| (h.tether, h.label, h.weight))
                    .collect(),
                has_stream: r.stream.is_some(),
            })
            .collect();
        let mut relays: Vec<_> = tables
            .relays
            .iter()
            .map(|(l, e)| (*l, e.tether, e.out_label))
            .collect();
        relays.sort_unstable();
        let mut tethers: Vec<_> = tables
            .tethers
            .iter()
            .map(|(id, t)| TetherInfo {
                id: *id,
                peer: t.peer.to_string(),
                kind: match t.kind {
                    TetherKind::Plain => "plain",
                    TetherKind::WebRtc => "webrtc",
                }
                .to_string(),
                state: format!("{:?}", t.state).to_lowercase(),
                tx_packets: t.tx_packets,
                rx_packets: t.rx_packets,
            })
            .collect();
        tethers.sort_unstable_by_key(|t| t.id);
        let counters_map = counters
            .named()
            .map(|(id, v)| (id.name().to_string(), v))
            .collect();
        let traffic = [
            ("egress_packets", counters.egress_packets),
            ("egress_bytes", counters.egress_bytes),
            ("ingress_packets", counters.ingress_packets),
            ("ingress_bytes", counters.ingress_bytes),
            ("relayed_packets", counters.relayed_packets),
            ("udp_tx", counters.udp_tx),
            ("udp_rx", counters.udp_rx),
            ("tun_reads", counters.tun_reads),
            ("tun_writes", counters.tun_writes),
            ("misses_reported", counters.misses_reported),
            ("keys_installed", counters.keys_installed),
            ("records_applied", counters.records_applied),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            worker,
            listen: String::new(),
            egress,
            ingress,
            routes,
            relays,
            tethers,
            counters: counters_map,
            traffic,
        }
    }
}

/// Every worker's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The certificate fingerprint the data plane's WebRTC tethers present,
    /// `"sha-256 AA:BB:…"` (empty if it has none).
    #[serde(default)]
    pub dtls_fingerprint: String,
    /// One entry per worker, in worker order.
    pub workers: Vec<WorkerSnapshot>,
}

impl Snapshot {
    /// Sum of a named drop counter over the workers.
    pub fn counter(&self, name: &str) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| w.counters.get(name))
            .sum()
    }

    /// Sum of a traffic total over the workers.
    pub fn traffic(&self, name: &str) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| w.traffic.get(name))
            .sum()
    }
}
