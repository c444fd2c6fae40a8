//! The tables one worker owns and the control process fills through the worker's ring:
//! streams, routes, relay entries, tethers, allowed inner sources and policy.
//!
//! Each worker has its own copy (shared-nothing): the control process writes the same
//! record to every worker's ring, except stream installs, which name each worker's lane.
//! Applying a record is the slow path and may allocate; lookups never do.

pub mod prefix;
pub mod route;
pub mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use conflux_shared::crypto::aead::REJECT_AFTER_TIME;
use conflux_shared::id::{Label, StreamId};
use conflux_shared::wire::record::control::{epochs, policy_flags, stream_flags};
use conflux_shared::wire::record::{
    Direction, PrefixOp, RecordRef, RouteTarget, TetherId, TetherState,
};

use crate::packet::FlowBuildHasher;
use prefix::{Prefix, PrefixTable};
use route::Route;
use stream::{EgressStream, IngressStream};

/// Why a control record was not applied (it is counted as malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The install record's key expiry has already passed.
    #[error("key already expired")]
    Expired,
    /// The crypto backend refused the key or lane.
    #[error("key or lane refused")]
    Key,
    /// The record names a stream, route or tether that is not there.
    #[error("unknown stream, route or tether")]
    Unknown,
    /// A label already used by the other kind of entry (stream vs. relay).
    #[error("label already names another entry")]
    LabelTaken,
    /// A kind the worker does not accept from the control process.
    #[error("record kind not for a worker")]
    WrongFlow,
}

/// Where relayed packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayEntry {
    /// The tether to the next hop.
    pub tether: TetherId,
    /// The label the next hop chose.
    pub out_label: Label,
}

/// How a tether frames packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TetherKind {
    /// One sealed packet per datagram (an `InstallTether` record).
    Plain,
    /// WebRTC data channels (a `TetherOpen` signal).
    WebRtc,
}

/// A tether as the packet path sees it: where its datagrams go, and what went through.
#[derive(Debug, Clone)]
pub struct Tether {
    /// The peer's UDP address.
    pub peer: SocketAddr,
    /// How it frames packets.
    pub kind: TetherKind,
    /// Its last reported state.
    pub state: TetherState,
    /// Datagrams sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
}

/// Node-wide policy, as the last policy record set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// This node relays for others.
    pub relay: bool,
    /// This node may deliver inner packets for destinations outside the overlay.
    pub portal: bool,
    /// Internet-bound packets need a stream allowed to exit (see `policy_flags`).
    pub guard_exit: bool,
    /// Upper bound on any key's life from install.
    pub max_key_lifetime: Duration,
    /// Relayed packets per second per worker (0: no limit).
    pub relay_rate_pps: u32,
    /// Idle time after which a stream is reported idle (zero: never).
    pub idle_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            relay: true,
            portal: false,
            guard_exit: false,
            max_key_lifetime: REJECT_AFTER_TIME,
            relay_rate_pps: 0,
            idle_timeout: Duration::ZERO,
        }
    }
}

/// Everything a worker looks up per packet.
#[derive(Debug, Default)]
pub struct Tables {
    /// Streams this node seals, one entry per stream.
    pub egress: Vec<EgressStream>,
    /// Streams ending here.
    pub ingress: Vec<IngressStream>,
    /// Label → index in `ingress`.
    pub ingress_by_label: HashMap<Label, usize, FlowBuildHasher>,
    /// Destination prefix → route.
    pub routes: PrefixTable<Route>,
    /// Host addresses with a local route (this node's own): almost every delivered packet
    /// is for one, so the exit guard checks them before the prefix table.
    pub local_hosts: Vec<std::net::IpAddr>,
    /// Inbound label → next hop, for routes passing through.
    pub relays: HashMap<Label, RelayEntry, FlowBuildHasher>,
    /// Tethers by id.
    pub tethers: HashMap<TetherId, Tether, FlowBuildHasher>,
    /// Peer UDP address → tether, to attribute received datagrams.
    pub tether_by_peer: HashMap<SocketAddr, TetherId, FlowBuildHasher>,
    /// The policy.
    pub policy: Policy,
}

impl Tables {
    /// Applies one control record. `now` and `now_ns` are the same moment as an `Instant`
    /// and as `CLOCK_MONOTONIC` nanoseconds.
    pub fn apply(
        &mut self,
        record: &RecordRef<'_>,
        now: Instant,
        now_ns: u64,
    ) -> Result<(), ApplyError> {
        match *record {
            RecordRef::InstallStream(b) => {
                let expires_ns = b.expires_at_ns.get();
                if expires_ns <= now_ns {
                    return Err(ApplyError::Expired);
                }
                let left =
                    Duration::from_nanos(expires_ns - now_ns).min(self.policy.max_key_lifetime);
                let expires_at = now + left;
                let key = b.stream_key();
                let epoch = b.key_epoch();
                let peer = b.peer.ip();
                let label = b.label.get();
                match b.direction {
                    Direction::Egress => {
                        if let Some(s) = self.egress.iter_mut().find(|s| s.id == b.stream_id) {
                            s.peer = peer;
                            s.rekey(label, b.lane, epoch, &key, expires_at, now)
                                .map_err(|_| ApplyError::Key)?;
                        } else {
                            let s = EgressStream::new(
                                b.stream_id,
                                peer,
                                label,
                                b.lane,
                                epoch,
                                &key,
                                expires_at,
                                now,
                            )
                            .map_err(|_| ApplyError::Key)?;
                            self.egress.push(s);
                        }
                        self.link_routes();
                    }
                    Direction::Ingress => {
                        if self.relays.contains_key(&label) {
                            return Err(ApplyError::LabelTaken);
                        }
                        let i = match self.ingress.iter().position(|s| s.id == b.stream_id) {
                            Some(i) => i,
                            None => {
                                self.ingress
                                    .push(IngressStream::new(b.stream_id, peer, label));
                                self.ingress.len() - 1
                            }
                        };
                        let s = &mut self.ingress[i];
                        if s.label != label {
                            self.ingress_by_label.remove(&s.label);
                            s.label = label;
                        }
                        s.peer = peer;
                        s.exit = b.flags & stream_flags::EXIT != 0;
                        s.install(epoch, &key, expires_at, now)
                            .map_err(|_| ApplyError::Key)?;
                        self.ingress_by_label.insert(label, i);
                    }
                }
                Ok(())
            }
            RecordRef::RemoveStream(b) => {
                match b.direction {
                    Direction::Egress => {
                        // Egress keeps only the current key: removing either slot ends it.
                        let before = self.egress.len();
                        self.egress.retain(|s| s.id != b.stream_id);
                        if self.egress.len() == before {
                            return Err(ApplyError::Unknown);
                        }
                        self.link_routes();
                    }
                    Direction::Ingress => {
                        let i = self
                            .ingress
                            .iter()
                            .position(|s| s.id == b.stream_id)
                            .ok_or(ApplyError::Unknown)?;
                        if b.epochs & epochs::EVEN != 0 {
                            self.ingress[i].retire(conflux_shared::wire::data::KeyEpoch::Even);
                        }
                        if b.epochs & epochs::ODD != 0 {
                            self.ingress[i].retire(conflux_shared::wire::data::KeyEpoch::Odd);
                        }
                        if b.epochs == epochs::BOTH {
                            self.remove_ingress(i);
                        }
                    }
                }
                Ok(())
            }
            RecordRef::InstallRoute(b) => {
                let mut route = Route::from_record(b);
                route.stream = self.stream_for(&route, Prefix::from_record(&b.prefix));
                self.routes.insert(Prefix::from_record(&b.prefix), route);
                self.index_local_hosts();
                Ok(())
            }
            RecordRef::RemoveRoute(b) => {
                let removed = self.routes.remove(&Prefix::from_record(&b.prefix));
                self.index_local_hosts();
                removed.map(|_| ()).ok_or(ApplyError::Unknown)
            }
            RecordRef::InstallRelay(b) => {
                let in_label = b.in_label.get();
                if self.ingress_by_label.contains_key(&in_label) {
                    return Err(ApplyError::LabelTaken);
                }
                self.relays.insert(
                    in_label,
                    RelayEntry {
                        tether: b.tether.get(),
                        out_label: b.out_label.get(),
                    },
                );
                Ok(())
            }
            RecordRef::RemoveRelay(b) => self
                .relays
                .remove(&b.in_label.get())
                .map(|_| ())
                .ok_or(ApplyError::Unknown),
            RecordRef::InstallTether(b) => {
                let id = b.tether.get();
                let peer = b.peer.socket_addr();
                if let Some(old) = self.tethers.get(&id) {
                    self.tether_by_peer.remove(&old.peer);
                }
                self.tethers.insert(
                    id,
                    Tether {
                        peer,
                        kind: TetherKind::Plain,
                        state: TetherState::Up,
                        tx_packets: 0,
                        tx_bytes: 0,
                        rx_packets: 0,
                        rx_bytes: 0,
                    },
                );
                self.tether_by_peer.insert(peer, id);
                Ok(())
            }
            RecordRef::RemoveTether(b) => {
                let t = self
                    .tethers
                    .remove(&b.tether.get())
                    .ok_or(ApplyError::Unknown)?;
                self.tether_by_peer.remove(&t.peer);
                Ok(())
            }
            RecordRef::AllowedPrefix(b) => {
                let s = self
                    .ingress
                    .iter_mut()
                    .find(|s| s.id == b.stream_id)
                    .ok_or(ApplyError::Unknown)?;
                let p = Prefix::from_record(&b.prefix);
                match b.op {
                    PrefixOp::Add => {
                        if !s.allowed.contains(&p) {
                            s.allowed.push(p);
                        }
                    }
                    PrefixOp::Remove => s.allowed.retain(|q| *q != p),
                }
                Ok(())
            }
            RecordRef::Policy(b) => {
                self.policy = Policy {
                    relay: b.flags & policy_flags::RELAY != 0,
                    portal: b.flags & policy_flags::PORTAL != 0,
                    guard_exit: b.flags & policy_flags::GUARD_EXIT != 0,
                    max_key_lifetime: Duration::from_secs(b.max_key_lifetime_s.get().into())
                        .min(REJECT_AFTER_TIME),
                    relay_rate_pps: b.relay_rate_pps.get(),
                    idle_timeout: Duration::from_secs(b.idle_timeout_s.get().into()),
                };
                Ok(())
            }
            RecordRef::Telemetry(_)
            | RecordRef::Miss(_)
            | RecordRef::Counters(_)
            | RecordRef::TetherState(_)
            | RecordRef::StreamActivity(_) => Err(ApplyError::WrongFlow),
        }
    }

    fn remove_ingress(&mut self, i: usize) {
        let s = self.ingress.swap_remove(i);
        self.ingress_by_label.remove(&s.label);
        if let Some(moved) = self.ingress.get(i) {
            self.ingress_by_label.insert(moved.label, i);
        }
    }

    /// The egress stream that seals a route's packets: the stream to the node whose overlay
    /// address the route's prefix covers (the longest such match), else the stream whose
    /// first-hop label is one of the route's next-hop labels (a gateway's LAN prefix).
    fn stream_for(&self, route: &Route, prefix: Prefix) -> Option<u32> {
        if route.target != RouteTarget::Forward {
            return None;
        }
        if let Some(via) = route.via {
            return self
                .egress
                .iter()
                .position(|s| s.peer == via)
                .map(|i| i as u32);
        }
        self.egress
            .iter()
            .position(|s| prefix.contains(s.peer))
            .or_else(|| {
                self.egress
                    .iter()
                    .position(|s| route.hops().iter().any(|h| h.label == s.label))
            })
            .map(|i| i as u32)
    }

    fn index_local_hosts(&mut self) {
        self.local_hosts = self
            .routes
            .iter()
            .filter(|(_, r)| r.target == RouteTarget::Local)
            .filter_map(|(p, _)| p.host_address())
            .collect();
    }

    /// Re-resolves every route's stream after streams changed.
    fn link_routes(&mut self) {
        let links: Vec<Option<u32>> = self
            .routes
            .iter()
            .map(|(p, r)| self.stream_for(r, *p))
            .collect();
        for (r, link) in self.routes.values_mut().zip(links) {
            r.stream = link;
        }
    }

    /// Drops every stream whose keys have all passed their hard lifetime, with or without
    /// a control process; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.egress.len() + self.ingress.len();
        let n_egress = self.egress.len();
        self.egress.retain(|s| !s.is_expired(now));
        if self.egress.len() != n_egress {
            self.link_routes();
        }
        let mut i = 0;
        while i < self.ingress.len() {
            if self.ingress[i].is_expired(now) {
                self.remove_ingress(i);
            } else {
                i += 1;
            }
        }
        before - self.egress.len() - self.ingress.len()
    }

    /// The ingress stream with `label`.
    #[inline]
    pub fn ingress_for(&mut self, label: Label) -> Option<&mut IngressStream> {
        let i = *self.ingress_by_label.get(&label)?;
        self.ingress.get_mut(i)
    }

    /// The egress stream `id`, if installed.
    pub fn egress_stream(&self, id: StreamId) -> Option<&EgressStream> {
        self.egress.iter().find(|s| s.id == id)
    }

    /// Adds a WebRTC tether whose datagrams go to `peers[0]` until ICE picks a pair;
    /// replaces any tether with the same id.
    pub fn open_tether(&mut self, id: TetherId, peers: &[SocketAddr]) {
        let Some(&first) = peers.first() else {
            return;
        };
        if let Some(old) = self.tethers.remove(&id) {
            self.tether_by_peer.remove(&old.peer);
        }
        self.tether_by_peer.retain(|_, t| *t != id);
        self.tethers.insert(
            id,
            Tether {
                peer: first,
                kind: TetherKind::WebRtc,
                state: TetherState::Connecting,
                tx_packets: 0,
                tx_bytes: 0,
                rx_packets: 0,
                rx_bytes: 0,
            },
        );
        for p in peers {
            self.tether_by_peer.insert(*p, id);
        }
    }

    /// Records a tether's new state and, when ICE chose one, its new peer address.
    pub fn tether_changed(&mut self, id: TetherId, state: TetherState, peer: Option<SocketAddr>) {
        let Some(t) = self.tethers.get_mut(&id) else {
            return;
        };
        t.state = state;
        if let Some(p) = peer {
            t.peer = p;
            self.tether_by_peer.insert(p, id);
        }
    }

    /// The tether a datagram from `peer` came over.
    #[inline]
    pub fn tether_of(&self, peer: &SocketAddr) -> Option<TetherId> {
        self.tether_by_peer.get(peer).copied()
    }

    /// The egress route for an inner destination.
    #[inline]
    pub fn route_for(&self, dst: IpAddr) -> Option<&Route> {
        self.routes.lookup(dst)
    }
}

/// Whether packets for `ip` are delivered here: one of the node's own addresses, or a
/// local route covers it (split from [`Tables`] so a worker can ask while it holds a stream).
#[inline]
pub fn is_local(
    local_hosts: &[std::net::IpAddr],
    routes: &PrefixTable<Route>,
    ip: std::net::IpAddr,
) -> bool {
    local_hosts.contains(&ip)
        || routes
            .lookup(ip)
            .is_some_and(|r| r.target == RouteTarget::Local)
}

#[cfg(test)]
pub(crate) mod tests;
