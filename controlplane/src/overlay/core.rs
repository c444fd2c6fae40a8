//! The overlay's state: streams as the data plane holds them, tethers, routes, relays.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::{Label, NodeId, StreamId};
use conflux_shared::proto::{TetherCandidates, TetherOpen};
use conflux_shared::wire::record::{Direction as DpDirection, TetherId, TetherState};

use super::path::RelayEntry;
use super::route::OutRoute;
use super::signal::Payload;
use super::tether::Tether;
use crate::node::core::Direction;

/// What the overlay needs to know about peers (the node core answers).
pub trait Directory {
    /// The trusted peer whose overlay address is `ip`.
    fn peer_for_address(&self, ip: IpAddr) -> Option<NodeId>;
    /// A trusted peer's overlay address.
    fn address_of(&self, peer: NodeId) -> Option<IpAddr>;
    /// Whether this node may talk to `peer`.
    fn allows(&self, peer: NodeId) -> bool;
    /// Whether two peers may talk to each other (relaying between them).
    fn pair_allowed(&self, a: NodeId, b: NodeId) -> bool;
    /// Peers this node may talk to that offer to relay.
    fn relays(&self) -> Vec<NodeId>;
    /// A trusted peer's certified region, if it declared one.
    fn region_of(&self, peer: NodeId) -> Option<String>;
    /// LAN prefixes a trusted peer makes reachable (authorized by its certificate).
    fn routes_of(&self, peer: NodeId) -> Vec<(IpAddr, u8)>;
    /// Whether `peer` belongs to this node's owner (who may use this portal as an exit).
    fn same_owner(&self, peer: NodeId) -> bool;
    /// Trusted portals of this node's owner that it may talk to.
    fn own_portals(&self) -> Vec<NodeId>;
}

impl Directory for crate::node::core::Node {
    fn peer_for_address(&self, ip: IpAddr) -> Option<NodeId> {
        crate::node::core::Node::peer_for_address(self, ip)
    }
    fn address_of(&self, peer: NodeId) -> Option<IpAddr> {
        crate::node::core::Node::address_of(self, peer)
    }
    fn allows(&self, peer: NodeId) -> bool {
        crate::node::core::Node::allows(self, peer)
    }
    fn pair_allowed(&self, a: NodeId, b: NodeId) -> bool {
        crate::node::core::Node::pair_allowed(self, a, b)
    }
    fn relays(&self) -> Vec<NodeId> {
        crate::node::core::Node::relays(self)
    }
    fn region_of(&self, peer: NodeId) -> Option<String> {
        crate::node::core::Node::region_of(self, peer)
    }
    fn routes_of(&self, peer: NodeId) -> Vec<(IpAddr, u8)> {
        crate::node::core::Node::routes_of(self, peer)
    }
    fn same_owner(&self, peer: NodeId) -> bool {
        crate::node::core::Node::same_owner(self, peer)
    }
    fn own_portals(&self) -> Vec<NodeId> {
        crate::node::core::Node::own_portals(self)
    }
}

/// Settings of the overlay.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    /// A stream, route or tether that carries nothing this long dissolves.
    pub idle_timeout: Duration,
    /// A stream in use gets a fresh key this often.
    pub rekey_interval: Duration,
    /// Whether this node relays for others.
    pub relay: bool,
    /// A tether not up this long after its offer counts as failed.
    pub tether_timeout: Duration,
    /// Tethers are framing-free UDP (`Plain`) instead of WebRTC: for benchmarks only.
    pub plain_tethers: bool,
    /// This data plane's DTLS fingerprint.
    pub fingerprint: String,
    /// This data plane's candidate addresses, "ip:port" with worker 0's port.
    pub candidates: Vec<String>,
    /// Each data plane worker's UDP port, worker 0 first (empty: one worker, the
    /// candidates' port).
    pub ports: Vec<u16>,
    /// The router's tunables and strategy.
    pub router: crate::route::RouterConfig,
    /// Which relay regions are excluded or preferred.
    pub geo: crate::route::GeoPolicy,
    /// Unix milliseconds at start: the router's estimates are numbered from it, so a
    /// restarted node's are never taken for stale.
    pub unix_ms_at_start: u64,
    /// This node's overlay address and the LAN prefixes it serves: delivered here; any
    /// other destination of an arriving packet is internet-bound.
    pub local: Vec<(IpAddr, u8)>,
    /// This node is an internet exit for its owner's nodes.
    pub portal: bool,
    /// This node sends its internet traffic through a portal: `Some(None)` its owner's
    /// best, `Some(Some(id))` that one.
    pub rift: Option<Option<NodeId>>,
}

/// A command for the data plane (the link fans it out to the workers).
#[derive(Debug)]
pub enum Command {
    /// Install one key of a stream (each worker seals in its own lane).
    InstallStream {
        /// The data plane's stream id (stable across rekeys).
        stream_id: StreamId,
        /// Which way.
        direction: DpDirection,
        /// Key epoch, 0 or 1.
        epoch: u8,
        /// Ingress: the label chosen here. Egress: the first hop's label (or 0).
        label: Label,
        /// The peer's overlay address.
        peer: IpAddr,
        /// Key and nonce base (wiped on drop).
        key: StreamKey,
        /// Hard lifetime of the key.
        lifetime: Duration,
        /// Ingress: the source may use this node as its internet exit.
        exit: bool,
    },
    /// Remove a stream (every key).
    RemoveStream {
        /// The data plane's stream id.
        stream_id: StreamId,
        /// Which way.
        direction: DpDirection,
    },
    /// Route a prefix over weighted legs: the associations of the tether to each leg's
    /// first hop, the label that hop chose, and the leg's share of flows.
    InstallRoute {
        /// The destination's overlay address, or a LAN prefix behind it.
        destination: IpAddr,
        /// Prefix length (32 or 128: the host itself).
        len: u8,
        /// For a LAN prefix: the gateway whose stream seals it.
        via: Option<IpAddr>,
        /// Legs.
        hops: Vec<(Vec<TetherId>, Label, u16)>,
    },
    /// Remove a route.
    RemoveRoute {
        /// The destination's overlay address, or a LAN prefix behind it.
        destination: IpAddr,
        /// Prefix length.
        len: u8,
    },
    /// Node-wide data plane policy.
    Policy {
        /// Relay for others.
        relay: bool,
        /// Deliver internet-bound packets from streams allowed to exit.
        portal: bool,
        /// Hard key lifetime.
        key_lifetime: Duration,
    },
    /// Deliver packets for `prefix` here (this node's address, its LANs).
    LocalRoute {
        /// The prefix.
        prefix: (IpAddr, u8),
    },
    /// Accept packets from `prefix` on an ingress stream (a gateway's LAN).
    AllowSource {
        /// The ingress stream.
        stream_id: StreamId,
        /// The prefix.
        prefix: (IpAddr, u8),
    },
    /// Relay packets arriving with `in_label` to the next hop as `out_label`.
    InstallRelay {
        /// Label packets arrive with.
        in_label: Label,
        /// The associations of the tether to the next hop (each worker uses one it holds).
        tethers: Vec<TetherId>,
        /// Label the next hop chose.
        out_label: Label,
    },
    /// Remove a relay entry.
    RemoveRelay {
        /// Label packets arrive with.
        in_label: Label,
    },
    /// Open one association of a WebRTC tether on one worker.
    OpenTether {
        /// The worker that holds it.
        worker: u16,
        /// What it opens.
        open: TetherOpen,
    },
    /// Add remote candidates to one open association (trickle ICE).
    TetherCandidates {
        /// The worker that holds it.
        worker: u16,
        /// The association and the candidates.
        candidates: TetherCandidates,
    },
    /// Switch every worker's STUN service and ask STUN servers for reflexive addresses.
    Stun(conflux_shared::proto::StunControl),
    /// Open a framing-free tether to a UDP address.
    PlainTether {
        /// The tether.
        tether: TetherId,
        /// The peer's address.
        peer: std::net::SocketAddr,
    },
    /// Close a tether.
    RemoveTether {
        /// The tether.
        tether: TetherId,
    },
}

/// What the overlay asks the driver to do.
#[derive(Debug)]
pub enum Action {
    /// A data plane command.
    Command(Command),
    /// Send a signal as a request; report the reply with [`Overlay::handle_reply`].
    Request {
        /// The receiver.
        to: NodeId,
        /// Names the request in the reply.
        request: u64,
        /// What to send.
        payload: Payload,
    },
    /// Send a signal that expects no reply.
    Notify {
        /// The receiver.
        to: NodeId,
        /// What to send.
        payload: Payload,
    },
    /// Answer a request held with [`Overlay::handle_signal`]'s `token`.
    Reply {
        /// The token.
        token: u64,
        /// The answer.
        payload: Payload,
    },
    /// Set up an outbound stream to the peer.
    Want(NodeId),
    /// The outbound stream to the peer went idle: drop it.
    Unwant(NodeId),
    /// The inbound stream from the peer went idle: drop it.
    DropInbound(NodeId),
    /// Give the outbound stream to the peer a fresh key.
    Rekey(NodeId),
}

/// A stream as the data plane holds it.
#[derive(Debug)]
pub(super) struct DpStream {
    /// The data plane's id: the first key's stream id.
    pub(super) dp_id: StreamId,
    /// The node core's id of the current key.
    pub(super) core_id: StreamId,
    /// The peer's overlay address.
    pub(super) address: IpAddr,
    /// Ingress: the label chosen here.
    pub(super) label: Label,
    /// Last activity (or set-up).
    pub(super) active: Instant,
    /// When the current key was installed.
    pub(super) keyed: Instant,
    /// Packets and bytes reported.
    pub(super) packets: u64,
    /// Payload bytes reported (egress).
    pub(super) bytes: u64,
    /// Keys installed.
    pub(super) generation: u64,
    /// The node core replaced the stream (the peer restarted): kept until a new one is
    /// up or a grace passes.
    pub(super) superseded: Option<Instant>,
    /// LAN prefixes behind the peer (a gateway), routed with it.
    pub(super) lan: Vec<(IpAddr, u8)>,
}

/// What a data plane held when this process attached (left by a previous control process).
#[derive(Debug, Default, Clone)]
pub struct Adopted {
    /// Egress streams: data plane id and destination address.
    pub egress: Vec<(StreamId, IpAddr)>,
    /// Ingress streams and the labels they were installed under.
    pub ingress: Vec<(StreamId, Label)>,
    /// Host routes.
    pub routes: Vec<IpAddr>,
    /// Relay entries (inbound labels).
    pub relays: Vec<Label>,
    /// Tethers and the peer address each leads to.
    pub tethers: Vec<(TetherId, String)>,
}

/// A tether as status shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TetherView {
    /// The next hop.
    pub peer: String,
    /// The data plane's tether id.
    pub id: u32,
    /// State.
    pub state: String,
    /// Whether this end is ICE-controlling.
    pub controlling: bool,
    /// Routes and relay entries using it.
    pub users: usize,
    /// Smoothed RTT from telemetry, microseconds.
    pub rtt_us: u32,
    /// Bytes sent over it (telemetry).
    pub tx_bytes: u64,
    /// Its WebRTC associations (one per worker of the end with more).
    pub associations: usize,
    /// Path MTU last reported (UDP payload bytes; 0: none yet).
    pub plpmtu: u16,
    /// Where each association sends ("ip:port", or "-" before its worker said).
    pub remotes: Vec<String>,
}

/// A route as status shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteView {
    /// The destination node.
    pub destination: String,
    /// Its overlay address.
    pub address: String,
    /// The relay, if not direct.
    pub via: Option<String>,
    /// State.
    pub state: String,
    /// First hop label.
    pub label: u32,
    /// Every leg: "direct" or "via <relay>…", its state and share of flows.
    pub paths: Vec<String>,
}

/// The overlay's totals for status and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OverlayStatus {
    /// Misses reported by the data plane.
    pub misses: u64,
    /// Misses for addresses of no known peer.
    pub misses_unknown: u64,
    /// Tethers made.
    pub tethers_opened: u64,
    /// Tethers that failed or went down.
    pub tethers_failed: u64,
    /// Routes set up direct.
    pub routes_direct: u64,
    /// Routes set up through a relay.
    pub routes_relayed: u64,
    /// Relay entries installed for others.
    pub relays_installed: u64,
    /// Route set-ups refused here.
    pub setups_refused: u64,
    /// Streams dissolved for idleness.
    pub idle_dissolved: u64,
    /// Rekeys asked for.
    pub rekeys: u64,
    /// Signals ignored (bad, unexpected).
    pub signals_ignored: u64,
    /// Times this node's addresses changed and every tether was offered anew.
    pub ice_restarts: u64,
}

/// The overlay state machine.
#[derive(Debug)]
pub struct Overlay {
    pub(super) cfg: OverlayConfig,
    pub(super) me: NodeId,
    pub(super) next_tether: TetherId,
    pub(super) next_label: Label,
    pub(super) next_request: u64,
    pub(super) next_session: u64,
    pub(super) out: HashMap<NodeId, DpStream>,
    pub(super) inb: HashMap<NodeId, DpStream>,
    pub(super) tethers: BTreeMap<NodeId, Tether>,
    pub(super) routes: BTreeMap<NodeId, OutRoute>,
    pub(super) relays: HashMap<u64, RelayEntry>,
    /// Requests in flight: request id → what the reply is for.
    pub(super) requests: HashMap<u64, super::path::Pending>,
    pub(super) actions: VecDeque<Action>,
    pub(super) status: OverlayStatus,
    pub(super) next_sweep: Instant,
    /// Relayed set-ups waiting for a tether to their next hop.
    pub(super) held: Vec<super::path::Held>,
    /// Wall clock, unix seconds (set by the driver).
    pub(super) unix_s: u64,
    /// State a previous control process left, until it is replaced or its grace ends.
    pub(super) adopted: Option<(Adopted, Instant)>,
    /// Which paths carry traffic to each destination.
    pub(super) router: crate::route::Router,
    /// The portal this rift node's internet traffic goes through.
    pub(super) exit: Option<NodeId>,
    /// This node's server-reflexive candidates ("<worker> ip:port").
    pub(super) reflexive: Vec<String>,
}

/// How often idle streams, rekeys and stuck set-ups are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How long a replaced stream keeps its key in the data plane while the new one is made.
const REPLACE_GRACE: Duration = Duration::from_secs(10);
/// How long state adopted from a previous control process is kept while it is rebuilt.
const ADOPT_GRACE: Duration = Duration::from_secs(20);

impl Overlay {
    /// An empty overlay for node `me`.
    pub fn new(cfg: OverlayConfig, me: NodeId, now: Instant) -> Self {
        let mut router =
            crate::route::Router::new(me, cfg.router.clone(), now, cfg.unix_ms_at_start);
        router.set_geo(now, cfg.geo.clone());
        let mut ov = Self {
            exit: None,
            reflexive: Vec::new(),
            router,
            cfg,
            me,
            next_tether: 1,
            next_label: 0x100 + (u32::from_le_bytes([me.0[0], me.0[1], 0, 0]) << 8),
            next_request: 1,
            // Random, so a restarted node's offers never repeat an old session number.
            next_session: {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).unwrap_or_default();
                u64::from_le_bytes(b)
            },
            out: HashMap::new(),
            inb: HashMap::new(),
            tethers: BTreeMap::new(),
            routes: BTreeMap::new(),
            relays: HashMap::new(),
            requests: HashMap::new(),
            actions: VecDeque::new(),
            status: OverlayStatus::default(),
            next_sweep: now,
            held: Vec::new(),
            unix_s: 0,
            adopted: None,
        };
        let key_lifetime = ov.key_lifetime();
        ov.command(Command::Policy {
            relay: ov.cfg.relay,
            portal: ov.cfg.portal,
            key_lifetime,
        });
        for prefix in ov.cfg.local.clone() {
            ov.command(Command::LocalRoute { prefix });
        }
        ov
    }

    /// Takes over what a previous control process left in the data plane: its traffic
    /// keeps flowing while new streams to the same peers are made, then it is removed.
    pub fn adopt(&mut self, now: Instant, a: Adopted) {
        let max_tether = a.tethers.iter().map(|(t, _)| *t).max().unwrap_or(0);
        let max_label = a
            .relays
            .iter()
            .copied()
            .chain(a.ingress.iter().map(|(_, l)| *l))
            .max()
            .unwrap_or(0);
        self.next_tether = self.next_tether.max(max_tether.saturating_add(1));
        self.next_label = self.next_label.max(max_label.saturating_add(1));
        if !(a.egress.is_empty()
            && a.ingress.is_empty()
            && a.relays.is_empty()
            && a.tethers.is_empty())
        {
            tracing::info!(
                egress = a.egress.len(),
                ingress = a.ingress.len(),
                relays = a.relays.len(),
                tethers = a.tethers.len(),
                "adopting the data plane's state"
            );
            self.adopted = Some((a, now + ADOPT_GRACE));
        }
    }

    /// A new outbound stream to `address` takes over from the adopted one: the adopted
    /// route would otherwise carry the new stream's packets under the old label.
    fn retire_adopted_egress(&mut self, address: IpAddr) {
        let Some((a, _)) = &mut self.adopted else {
            return;
        };
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut a.egress)
            .into_iter()
            .partition(|(_, addr)| *addr == address);
        a.egress = keep;
        if old.is_empty() {
            return;
        }
        a.routes.retain(|r| *r != address);
        self.command(Command::RemoveRoute {
            destination: address,
            len: host_len(address),
        });
        for (stream_id, _) in old {
            self.command(Command::RemoveStream {
                stream_id,
                direction: DpDirection::Egress,
            });
        }
    }

    /// Asks for new streams to the peers adopted streams lead to; removes what is left of
    /// the adopted state after its grace.
    fn sweep_adopted(&mut self, now: Instant, dir: &impl Directory) {
        let Some((a, until)) = self.adopted.take() else {
            return;
        };
        if now >= until {
            for (stream_id, address) in a.egress {
                self.command(Command::RemoveStream {
                    stream_id,
                    direction: DpDirection::Egress,
                });
                if !self.out.values().any(|s| s.address == address) {
                    self.command(Command::RemoveRoute {
                        destination: address,
                        len: host_len(address),
                    });
                }
            }
            for (stream_id, _) in a.ingress {
                self.command(Command::RemoveStream {
                    stream_id,
                    direction: DpDirection::Ingress,
                });
            }
            for in_label in a.relays {
                self.command(Command::RemoveRelay { in_label });
            }
            for (tether, _) in a.tethers {
                self.command(Command::RemoveTether { tether });
            }
            return;
        }
        for (_, address) in &a.egress {
            if let Some(peer) = dir.peer_for_address(*address)
                && !self.out.contains_key(&peer)
                && dir.allows(peer)
            {
                self.actions.push_back(Action::Want(peer));
            }
        }
        self.adopted = Some((a, until));
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Overlay::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep.min(self.router.poll_timeout())
    }

    /// Totals.
    pub fn status(&self) -> &OverlayStatus {
        &self.status
    }

    pub(super) fn command(&mut self, c: Command) {
        self.actions.push_back(Action::Command(c));
    }

    pub(super) fn label(&mut self) -> Label {
        let l = self.next_label;
        // Labels wrap below the adopted range only after four billion set-ups.
        self.next_label = self.next_label.wrapping_add(1).max(0x100);
        l
    }

    pub(super) fn request(&mut self, to: NodeId, payload: Payload, p: super::path::Pending) {
        let request = self.next_request;
        self.next_request += 1;
        self.requests.insert(request, p);
        self.actions.push_back(Action::Request {
            to,
            request,
            payload,
        });
    }

    fn key_lifetime(&self) -> Duration {
        // Without a control process, a key still carries traffic through two missed
        // rekeys, then the data plane drops it.
        (self.cfg.rekey_interval * 3).max(Duration::from_secs(30))
    }

    /// The data plane reported a packet to `dst` with no route.
    pub fn handle_miss(&mut self, now: Instant, dst: IpAddr, dir: &impl Directory) {
        self.status.misses += 1;
        // Outside the overlay: the rift's portal carries it, if this node has one.
        let Some(peer) = dir.peer_for_address(dst).or(self.exit) else {
            self.status.misses_unknown += 1;
            return;
        };
        if !dir.allows(peer) {
            return;
        }
        if self.out.contains_key(&peer) {
            // A stream is up but its route is not (yet): make sure one is being built.
            self.route_to(now, peer, dir);
        } else {
            // The handshake runs over NATS; the direct tether is tried meanwhile.
            self.actions.push_back(Action::Want(peer));
            self.ensure_tether(now, peer);
        }
    }

    /// The node core set up (or rekeyed) a stream.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_up(
        &mut self,
        now: Instant,
        peer: NodeId,
        direction: Direction,
        stream_id: StreamId,
        key: StreamKey,
        epoch: u8,
        replaces: Option<StreamId>,
        dir: &impl Directory,
    ) {
        let Some(address) = dir.address_of(peer) else {
            return;
        };
        let lifetime = self.key_lifetime();
        let (map, dp_dir) = match direction {
            Direction::Out => (&mut self.out, DpDirection::Egress),
            Direction::In => (&mut self.inb, DpDirection::Ingress),
        };
        let existing = map
            .get_mut(&peer)
            .filter(|s| replaces.is_some_and(|r| r == s.core_id));
        let (dp_id, label) = match existing {
            Some(s) => {
                s.core_id = stream_id;
                s.keyed = now;
                s.generation += 1;
                (s.dp_id, s.label)
            }
            None => {
                if let Some(old) = map.remove(&peer) {
                    self.actions
                        .push_back(Action::Command(Command::RemoveStream {
                            stream_id: old.dp_id,
                            direction: dp_dir,
                        }));
                }
                let label = match direction {
                    Direction::In => self.label(),
                    Direction::Out => 0,
                };
                let map = match direction {
                    Direction::Out => &mut self.out,
                    Direction::In => &mut self.inb,
                };
                map.insert(
                    peer,
                    DpStream {
                        dp_id: stream_id,
                        core_id: stream_id,
                        address,
                        label,
                        active: now,
                        keyed: now,
                        packets: 0,
                        bytes: 0,
                        generation: 1,
                        superseded: None,
                        lan: dir.routes_of(peer),
                    },
                );
                (stream_id, label)
            }
        };
        if direction == Direction::Out && replaces.is_none() {
            self.retire_adopted_egress(address);
        }
        let first_hop_label = match direction {
            Direction::In => label,
            Direction::Out => self.routes.get(&peer).map_or(0, |r| r.label()),
        };
        let exit = direction == Direction::In && self.cfg.portal && dir.same_owner(peer);
        self.command(Command::InstallStream {
            stream_id: dp_id,
            direction: dp_dir,
            epoch,
            label: first_hop_label,
            peer: address,
            key,
            lifetime,
            exit,
        });
        if direction == Direction::In && Some(peer) == self.exit {
            // Replies from anywhere on the internet come back through the portal.
            self.command(Command::AllowSource {
                stream_id: dp_id,
                prefix: (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
            });
        }
        if direction == Direction::In {
            // Hosts on a gateway's LAN send through the gateway's stream, and only there.
            for prefix in dir.routes_of(peer) {
                self.command(Command::AllowSource {
                    stream_id: dp_id,
                    prefix,
                });
            }
        }
        match direction {
            Direction::Out if replaces.is_none() => self.route_to(now, peer, dir),
            Direction::In if replaces.is_none() && !self.out.contains_key(&peer) => {
                // Replies are likely: set up the way back now rather than on their miss.
                self.actions.push_back(Action::Want(peer));
                self.ensure_tether(now, peer);
            }
            _ => {}
        }
    }

    /// The node core dropped a stream. A `replaced` one keeps carrying traffic until the
    /// new stream is up (or [`REPLACE_GRACE`] passes).
    pub fn stream_down(
        &mut self,
        now: Instant,
        peer: NodeId,
        direction: Direction,
        replaced: bool,
    ) {
        if replaced {
            let map = match direction {
                Direction::Out => &mut self.out,
                Direction::In => &mut self.inb,
            };
            if let Some(s) = map.get_mut(&peer) {
                s.superseded.get_or_insert(now);
                if direction == Direction::Out {
                    self.actions.push_back(Action::Want(peer));
                }
                return;
            }
        }
        match direction {
            Direction::Out => {
                // The route first: removing it needs the stream's address.
                self.drop_route(now, peer);
                if let Some(s) = self.out.remove(&peer) {
                    self.command(Command::RemoveStream {
                        stream_id: s.dp_id,
                        direction: DpDirection::Egress,
                    });
                }
            }
            Direction::In => {
                if let Some(s) = self.inb.remove(&peer) {
                    self.command(Command::RemoveStream {
                        stream_id: s.dp_id,
                        direction: DpDirection::Ingress,
                    });
                }
            }
        }
    }

    /// A worker reported a stream's traffic.
    pub fn handle_activity(
        &mut self,
        now: Instant,
        stream_id: StreamId,
        direction: DpDirection,
        packets: u64,
        bytes: u64,
    ) {
        let map = match direction {
            DpDirection::Egress => &mut self.out,
            DpDirection::Ingress => &mut self.inb,
        };
        if let Some(s) = map.values_mut().find(|s| s.dp_id == stream_id) {
            s.active = now;
            s.packets += packets;
            s.bytes += bytes;
        }
    }

    /// A worker reported a tether's state.
    pub fn handle_tether_state(
        &mut self,
        now: Instant,
        tether: TetherId,
        state: TetherState,
        dir: &impl Directory,
    ) {
        let Some(peer) = self
            .tethers
            .iter()
            .find(|(_, t)| t.holds(tether))
            .map(|(p, _)| *p)
        else {
            return;
        };
        match state {
            TetherState::Up => self.association_state(now, peer, tether, true, dir),
            TetherState::Down | TetherState::Closed => {
                self.association_state(now, peer, tether, false, dir)
            }
            _ => {}
        }
    }

    /// A worker's telemetry about a tether.
    pub fn handle_telemetry(
        &mut self,
        now: Instant,
        tether: TetherId,
        body: &conflux_shared::wire::record::TelemetryBody,
        dir: &impl Directory,
    ) {
        let Some((peer, t)) = self.tethers.iter_mut().find(|(_, t)| t.holds(tether)) else {
            return;
        };
        let peer = *peer;
        let (rtt_us, bytes) = (body.rtt_us.get(), body.bytes.get());
        if rtt_us > 0 {
            t.rtt_us = rtt_us;
        }
        if body.plpmtu.get() > 0 {
            t.plpmtu = body.plpmtu.get();
        }
        if bytes > 0 {
            t.tx_bytes += bytes;
            t.active = now;
        }
        if t.is_up() {
            let report = crate::route::Telemetry::from_record(peer, body);
            self.router_telemetry(now, &report, dir);
        }
    }

    /// Runs what is due: idle streams, rekeys, stuck tethers and set-ups, policy changes.
    pub fn handle_timeout(&mut self, now: Instant, dir: &impl Directory) {
        self.router_timeout(now, dir);
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.relay_tethers(now, dir);
        self.choose_exit(now, dir);
        self.sweep_adopted(now, dir);
        let expired: Vec<(NodeId, Direction)> = self
            .out
            .iter()
            .map(|(p, s)| (p, s, Direction::Out))
            .chain(self.inb.iter().map(|(p, s)| (p, s, Direction::In)))
            .filter(|(_, s, _)| s.superseded.is_some_and(|t| now >= t + REPLACE_GRACE))
            .map(|(p, _, d)| (*p, d))
            .collect();
        for (peer, d) in expired {
            self.stream_down(now, peer, d, false);
        }
        let idle = self.cfg.idle_timeout;
        for (peer, s) in &self.out {
            if s.superseded.is_some() {
                continue;
            }
            if now.saturating_duration_since(s.active) >= idle {
                self.status.idle_dissolved += 1;
                self.actions.push_back(Action::Unwant(*peer));
            } else if now.saturating_duration_since(s.keyed) >= self.cfg.rekey_interval {
                self.status.rekeys += 1;
                self.actions.push_back(Action::Rekey(*peer));
            }
        }
        for (peer, s) in &self.inb {
            if s.superseded.is_some() {
                continue;
            }
            if now.saturating_duration_since(s.active) >= idle {
                self.status.idle_dissolved += 1;
                self.actions.push_back(Action::DropInbound(*peer));
            }
        }
        // A rekey asked for is not asked again until the interval passes once more.
        for s in self.out.values_mut() {
            if now.saturating_duration_since(s.keyed) >= self.cfg.rekey_interval {
                s.keyed = now;
            }
        }
        let gone: Vec<NodeId> = self
            .tethers
            .keys()
            .filter(|p| !dir.allows(**p))
            .copied()
            .collect();
        for p in gone {
            self.close_tether(now, p, dir);
        }
        self.sweep_tethers(now, dir);
        self.sweep_routes(now, dir);
        self.sweep_held(now);
    }

    /// Tethers for status.
    pub fn tethers(&self) -> Vec<TetherView> {
        self.tethers
            .iter()
            .map(|(p, t)| TetherView {
                peer: p.to_string(),
                id: t.id,
                state: t.state_name().into(),
                controlling: t.controlling,
                users: self.tether_users(*p),
                rtt_us: t.rtt_us,
                tx_bytes: t.tx_bytes,
                associations: t.assocs.len(),
                plpmtu: t.plpmtu,
                remotes: t
                    .assocs
                    .iter()
                    .map(|a| a.remote.map_or_else(|| "-".to_owned(), |r| r.to_string()))
                    .collect(),
            })
            .collect()
    }

    /// Routes for status.
    pub fn routes(&self) -> Vec<RouteView> {
        self.routes
            .iter()
            .map(|(d, r)| RouteView {
                destination: d.to_string(),
                address: self
                    .out
                    .get(d)
                    .map(|s| s.address.to_string())
                    .unwrap_or_default(),
                via: r.main_leg().and_then(|l| l.via()).map(|v| v.to_string()),
                state: r.state_name().into(),
                label: r.label(),
                paths: r.legs.iter().map(super::route::Leg::describe).collect(),
            })
            .collect()
    }

    /// Per-stream traffic for metrics: (peer, direction, packets, bytes, generation).
    pub fn stream_stats(&self) -> Vec<(NodeId, &'static str, u64, u64, u64)> {
        let out = self
            .out
            .iter()
            .map(|(p, s)| (*p, "out", s.packets, s.bytes, s.generation));
        let inb = self
            .inb
            .iter()
            .map(|(p, s)| (*p, "in", s.packets, s.bytes, s.generation));
        out.chain(inb).collect()
    }

    /// Relay entries installed here for others.
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }
}

/// The prefix length of a host route to `ip`.
pub(super) fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}
