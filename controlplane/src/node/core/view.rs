//! The node's state as the local API shows it.

use super::{Direction, Node, Now};
use crate::ctl::proto;
use crate::node::peers::Peer;
use crate::node::policy::Verdict;

impl Node {
    /// Identity, certificate, counters; the driver fills in the NATS state and timings.
    pub fn status(&self, now: Now) -> proto::StatusReply {
        let c = &self.cert;
        let streams = self
            .peers
            .values()
            .map(|p| usize::from(p.outbound.stream().is_some()) + usize::from(p.inbound.is_some()))
            .sum::<usize>();
        proto::StatusReply {
            node_id: self.id.to_hex(),
            realm: c.membership.realm.to_string(),
            overlay_address: c.overlay_address.clone(),
            region: c.region.clone(),
            taints: c.membership.taints.iter().map(|t| t.to_string()).collect(),
            identity_fingerprint: self.identity.fingerprint().to_string(),
            certificate_not_after: c.not_after,
            peers: self.peers.len() as u32,
            compatible_peers: self.peers.values().filter(|p| p.verdict.allows()).count() as u32,
            streams: streams as u32,
            uptime_ms: now.mono.saturating_duration_since(self.started).as_millis() as u64,
            ignored: self
                .counters
                .ignored_nonzero()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            presence_sent: self.counters.presence_sent,
            presence_accepted: self.counters.presence_accepted,
            handshakes_initiated: self.counters.handshakes_initiated,
            handshakes_answered: self.counters.handshakes_answered,
            roles: [
                (self.relay, "relay"),
                (!self.routes.is_empty(), "gateway"),
                (c.portal, "portal"),
            ]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, r)| r.to_owned())
            .collect(),
            advertised_routes: self.routes.clone(),
            accepted_routes: self
                .accepted_routes()
                .into_iter()
                .map(|(p, n)| format!("{} via {n}", crate::node::gateway::text(p)))
                .collect(),
            routes_refused: self.counters.routes_refused,
            overlay_address6: c
                .overlay_address6
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ..proto::StatusReply::default()
        }
    }

    /// Every trusted peer, ordered by node id.
    pub fn peers(&self) -> proto::PeersReply {
        proto::PeersReply {
            peers: self
                .peers
                .iter()
                .map(|(id, p)| proto::Peer {
                    node_id: id.to_hex(),
                    overlay_address: p.cert.overlay_address.clone(),
                    region: p.cert.region.clone(),
                    owner: p.cert.owner.clone(),
                    taints: p
                        .cert
                        .membership
                        .taints
                        .iter()
                        .map(|t| t.to_string())
                        .collect(),
                    compatible: p.verdict.allows(),
                    state: state(p).into(),
                    last_seen_unix_ms: p.last_seen_unix_ms,
                    identity_fingerprint: p.cert.identity.fingerprint().to_string(),
                    certificate_not_after: p.cert.not_after,
                    overlay_address6: p
                        .cert
                        .overlay_address6
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Every established stream, by peer then direction.
    pub fn streams(&self) -> proto::StreamsReply {
        let mut out = Vec::new();
        for (id, p) in &self.peers {
            let both = [
                (Direction::Out, p.outbound.stream()),
                (Direction::In, p.inbound.as_ref()),
            ];
            for (dir, s) in both {
                if let Some(s) = s {
                    out.push(proto::Stream {
                        stream_id: s.stream_id.to_hex(),
                        peer_id: id.to_hex(),
                        direction: dir.as_str().into(),
                        key_fingerprint: s.fingerprint.clone(),
                        established_unix_ms: s.established_unix_ms,
                        handshake_us: s.handshake_us,
                    });
                }
            }
        }
        proto::StreamsReply { streams: out }
    }

    /// This node's taints.
    pub fn taints(&self) -> Vec<String> {
        self.cert
            .membership
            .taints
            .iter()
            .map(|t| t.to_string())
            .collect()
    }
}

fn state(p: &Peer) -> &'static str {
    match p.verdict {
        Verdict::Talk if p.connected() => "connected",
        Verdict::Talk => "handshaking",
        Verdict::Taints | Verdict::OtherRealm => "incompatible",
    }
}
