//! Streams on demand, rekeys, and what the overlay asks of the node: which peer owns an
//! overlay address, whether two nodes may talk, and signing and checking signals.

use std::net::IpAddr;

use conflux_shared::crypto::handshake::{Local, Peer as HsPeer};
use conflux_shared::crypto::identity::{Signature, SigningContext};
use conflux_shared::id::NodeId;

use super::{Direction, Node, Now, Output};
use crate::node::counters::Ignored;
use crate::node::handshake;
use crate::node::peers::{Outbound, Peer, Stream};
use crate::node::policy;

/// The context of signals between control processes (tether set-up, routes).
const SIGNAL_CONTEXT: SigningContext = SigningContext::new(b"conflux-v1 signal");

impl Node {
    /// On demand (a data plane is attached): an outbound stream is set up only for peers
    /// that traffic asks for ([`Node::want`]). Otherwise every allowed peer gets one.
    pub fn set_on_demand(&mut self, on: bool) {
        self.on_demand = on;
    }

    /// Announces this node as a relay (or not) from the next presence on.
    pub fn set_relay(&mut self, relay: bool) {
        self.relay = relay;
    }

    /// Announces where this node answers STUN binding requests (from the next presence on).
    pub fn set_stun(&mut self, stun: Vec<String>) {
        self.stun = stun;
    }

    /// STUN services trusted peers this node may talk to announce.
    pub fn stun_servers(&self) -> Vec<std::net::SocketAddr> {
        let mut out: Vec<std::net::SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.verdict.allows())
            .flat_map(|p| p.stun.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Trusted peers this node may talk to that announce they relay.
    pub fn relays(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.relay && p.verdict.allows())
            .map(|(id, _)| *id)
            .collect()
    }

    pub(super) fn wants(&self, p: &Peer) -> bool {
        !self.on_demand || p.wanted
    }

    /// Traffic asks for an outbound stream to `peer`: set one up unless it exists. Returns
    /// `false` if the peer is unknown or the policy forbids it.
    pub fn want(&mut self, peer: NodeId, now: Now) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        if !p.verdict.allows() {
            return false;
        }
        p.wanted = true;
        if matches!(p.outbound, Outbound::Idle) && now.mono >= p.retry_at {
            self.start_handshake(peer, now, false);
        }
        true
    }

    /// The outbound stream to `peer` went idle: forget it until traffic asks again.
    pub fn unwant(&mut self, peer: NodeId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.wanted = false;
        p.rekey = None;
        if let Outbound::Up(s) = std::mem::take(&mut p.outbound) {
            self.outputs.push_back(Output::StreamDown {
                peer,
                direction: Direction::Out,
                stream_id: s.stream_id,
                replaced: false,
            });
        }
    }

    /// The inbound stream from `peer` went idle: forget it (the peer's own idle timer
    /// ends its side).
    pub fn drop_inbound(&mut self, peer: NodeId) {
        if let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.inbound.take()) {
            self.outputs.push_back(Output::StreamDown {
                peer,
                direction: Direction::In,
                stream_id: s.stream_id,
                replaced: false,
            });
        }
    }

    /// Starts a rekey of the outbound stream to `peer` (no-op if none is up or one is in
    /// flight).
    pub fn rekey(&mut self, peer: NodeId, now: Now) {
        self.start_handshake(peer, now, true);
    }

    /// The outbound stream to `peer`: its age and generation, if it is up.
    pub fn outbound(&self, peer: NodeId) -> Option<&Stream> {
        self.peers.get(&peer).and_then(|p| p.outbound.stream())
    }

    pub(super) fn finish_rekey(&mut self, now: Now, peer: NodeId, reply: Option<&[u8]>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(r) = p.rekey.take() else { return };
        let (Some(reply), Outbound::Up(current)) = (reply, &mut p.outbound) else {
            return;
        };
        let local = Local {
            id: self.id,
            identity: &self.identity,
            membership: &self.cert.membership,
        };
        let hs_peer = HsPeer {
            id: peer,
            public: &p.cert.identity,
            membership: &p.cert.membership,
        };
        match r
            .initiator
            .handle_accept(&local, &hs_peer, reply, now.unix_s())
        {
            Ok(est) => {
                let old = current.stream_id;
                let epoch = 1 - current.epoch;
                *current = Stream {
                    stream_id: est.stream_id,
                    fingerprint: handshake::key_fingerprint(&est.key),
                    key: est.key,
                    established: now.mono,
                    established_unix_ms: now.unix_ms,
                    handshake_us: now.mono.saturating_duration_since(r.sent).as_micros() as u64,
                    epoch,
                    generation: current.generation + 1,
                };
                self.outputs.push_back(Output::StreamUp {
                    peer,
                    direction: Direction::Out,
                    stream_id: current.stream_id,
                    key: current.key.clone(),
                    epoch,
                    replaces: Some(old),
                });
                self.counters.handshakes_initiated += 1;
                self.counters.rekeys += 1;
            }
            Err(e) => self.counters.ignore(handshake::ignored(&e)),
        }
    }

    /// The trusted peer whose certified overlay address is `ip`.
    pub fn peer_for_address(&self, ip: IpAddr) -> Option<NodeId> {
        self.peers
            .iter()
            .find(|(_, p)| {
                p.cert.overlay_address.parse::<IpAddr>().ok() == Some(ip)
                    || p.cert.overlay_address6.map(IpAddr::V6) == Some(ip)
            })
            .or_else(|| {
                // A host on a gateway's LAN: the gateway with the longest accepted prefix.
                self.peers
                    .iter()
                    .filter_map(|(id, p)| {
                        let best = p
                            .routes
                            .iter()
                            .filter(|r| crate::node::gateway::contains(**r, ip))
                            .map(|r| r.1)
                            .max()?;
                        Some((best, id, p))
                    })
                    .max_by_key(|(len, ..)| *len)
                    .map(|(_, id, p)| (id, p))
            })
            .map(|(id, _)| *id)
    }

    /// What is routed to a trusted peer besides its overlay address: its IPv6 overlay
    /// address (a /128, when its realm has an IPv6 subnet), then the LAN prefixes it
    /// advertises and its certificate authorizes. Each is routed to the peer's stream and
    /// accepted as an inner source only on it.
    pub fn routes_of(&self, peer: NodeId) -> Vec<crate::node::gateway::Prefix> {
        self.peers
            .get(&peer)
            .filter(|p| p.verdict.allows())
            .map(|p| {
                let own = p.cert.overlay_address6.map(|a| (IpAddr::V6(a), 128));
                own.into_iter().chain(p.routes.iter().copied()).collect()
            })
            .unwrap_or_default()
    }

    /// Every accepted LAN prefix with its gateway.
    pub fn accepted_routes(&self) -> Vec<(crate::node::gateway::Prefix, NodeId)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.verdict.allows())
            .flat_map(|(id, p)| p.routes.iter().map(move |r| (*r, *id)))
            .collect()
    }

    /// Whether a trusted peer has this node's owner.
    pub fn same_owner(&self, peer: NodeId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.verdict.allows() && p.cert.owner == self.cert.owner)
    }

    /// Trusted portals of this node's owner that this node may talk to.
    pub fn own_portals(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.cert.portal && p.verdict.allows() && p.cert.owner == self.cert.owner)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sets the LAN prefixes this node advertises (announced at once).
    pub fn set_routes(&mut self, routes: Vec<String>) {
        self.routes = routes;
    }

    /// The LAN prefixes this node advertises.
    pub fn advertised_routes(&self) -> &[String] {
        &self.routes
    }

    /// A trusted peer's certified overlay address.
    pub fn address_of(&self, peer: NodeId) -> Option<IpAddr> {
        self.peers
            .get(&peer)
            .and_then(|p| p.cert.overlay_address.parse().ok())
    }

    /// A trusted peer's certified region (`None` when it declared none).
    pub fn region_of(&self, peer: NodeId) -> Option<String> {
        self.peers
            .get(&peer)
            .map(|p| p.cert.region.clone())
            .filter(|r| !r.is_empty())
    }

    /// Whether this node may talk to `peer` now.
    pub fn allows(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.verdict.allows())
    }

    /// Whether two trusted peers may talk to each other (for relaying between them).
    pub fn pair_allowed(&self, a: NodeId, b: NodeId) -> bool {
        match (self.peers.get(&a), self.peers.get(&b)) {
            (Some(pa), Some(pb)) => {
                policy::judge(&pa.cert.membership, &pb.cert.membership).allows()
            }
            _ => false,
        }
    }

    /// Signs a signal with this node's key.
    pub fn sign_signal(&self, signal: &[u8]) -> Vec<u8> {
        self.identity
            .sign(SIGNAL_CONTEXT, signal)
            .as_bytes()
            .to_vec()
    }

    /// Checks a signal's signature by `from`, a trusted peer this node may talk to;
    /// counts and refuses anything else.
    pub fn verify_signal(
        &mut self,
        from: NodeId,
        signal: &[u8],
        sig: &[u8],
    ) -> Result<(), Ignored> {
        let r = (|| {
            let p = self.peers.get(&from).ok_or(Ignored::Unexpected)?;
            if !p.verdict.allows() {
                return Err(Ignored::Policy);
            }
            let sig = Signature::from_bytes(sig).map_err(|_| Ignored::Malformed)?;
            p.cert
                .identity
                .verify(SIGNAL_CONTEXT, signal, &sig)
                .map_err(|_| Ignored::BadSignature)
        })();
        if let Err(why) = r {
            self.counters.ignore(why);
        }
        r
    }
}
