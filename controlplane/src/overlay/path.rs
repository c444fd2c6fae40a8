//! Routes: direct when the tether to the destination is up, else through a relay, set up
//! hop by hop with route messages; and the relay entries this node holds for others.

use std::time::{Duration, Instant};

use conflux_shared::id::{Label, NodeId};
use conflux_shared::wire::route::{
    AckStatus, RouteAck, RouteMessage, RoutePath, RouteSetup, RouteTeardown, TeardownReason,
};

use super::core::{Action, Command, Directory, Overlay};
use super::signal::Payload;
use super::tether::Phase;

/// A failed route is tried again after this.
const ROUTE_RETRY: Duration = Duration::from_millis(500);
/// A route set-up is valid this long after it is made.
const SETUP_VALID_S: u64 = 30;

/// What a request in flight is for.
#[derive(Debug)]
pub(super) enum Pending {
    /// This node's tether offer.
    Offer { peer: NodeId },
    /// This node's route set-up toward `destination`.
    Setup { destination: NodeId, route_id: u64 },
    /// A set-up this node forwards as a relay; the answer goes to `token`.
    Forward { token: u64, setup: RouteSetup },
    /// A tear-down; the answer does not matter.
    Teardown,
}

/// Where this node's route to a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteState {
    /// Waiting for a tether to come up.
    Waiting,
    /// Set-up sent.
    Setting,
    /// Installed: the first hop's label.
    Up(Label),
    /// Failed; tried again after [`ROUTE_RETRY`].
    Failed,
}

/// This node's route to one destination.
#[derive(Debug)]
pub(super) struct OutRoute {
    pub(super) via: Option<NodeId>,
    pub(super) route_id: u64,
    pub(super) state: RouteState,
    pub(super) since: Instant,
    /// Relays that failed for this destination since the last success.
    pub(super) tried: Vec<NodeId>,
    pub(super) destination: NodeId,
}

impl OutRoute {
    pub(super) fn label(&self) -> Label {
        match self.state {
            RouteState::Up(l) => l,
            _ => 0,
        }
    }

    pub(super) fn first_hop(&self) -> Option<NodeId> {
        match self.state {
            RouteState::Failed => None,
            _ => Some(self.via.unwrap_or(self.destination)),
        }
    }

    pub(super) fn state_name(&self) -> &'static str {
        match self.state {
            RouteState::Waiting => "waiting",
            RouteState::Setting => "setting-up",
            RouteState::Up(_) => "up",
            RouteState::Failed => "failed",
        }
    }
}

/// A relay entry this node installed for someone else's route.
#[derive(Debug)]
pub(super) struct RelayEntry {
    pub(super) in_label: Label,
    pub(super) previous: NodeId,
    pub(super) next: NodeId,
}

/// A relayed set-up waiting for the tether to its next hop.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) token: u64,
    pub(super) setup: RouteSetup,
    pub(super) since: Instant,
}

fn route_bytes(m: RouteMessage) -> Payload {
    let mut buf = vec![0u8; m.buffer_len()];
    match m.emit(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(_) => buf.clear(),
    }
    Payload::Route(buf)
}

fn ack(route_id: u64, hop_index: u8, status: AckStatus, label: Label) -> Payload {
    route_bytes(RouteMessage::Ack(RouteAck {
        route_id,
        hop_index,
        status,
        label: if status == AckStatus::Accepted {
            label
        } else {
            0
        },
    }))
}

impl Overlay {
    /// Sets the wall clock (unix seconds) route set-ups are stamped and checked with.
    pub fn set_unix_time(&mut self, unix_s: u64) {
        self.unix_s = unix_s;
    }

    fn route_id(&mut self) -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap_or_default();
        u64::from_le_bytes(b) | 1
    }

    /// Builds (or keeps building) the route to `dst` for the outbound stream to it.
    pub(super) fn route_to(&mut self, now: Instant, dst: NodeId, dir: &impl Directory) {
        let Some(stream_id) = self.out.get(&dst).map(|s| s.dp_id) else {
            return;
        };
        if let Some(r) = self.routes.get(&dst)
            && matches!(r.state, RouteState::Up(_) | RouteState::Setting)
        {
            return;
        }
        let mut tried = self
            .routes
            .get(&dst)
            .map(|r| r.tried.clone())
            .unwrap_or_default();
        let direct = self.tethers.get(&dst).map(|t| t.phase);
        if direct == Some(Phase::Failed) && !tried.contains(&dst) {
            tried.push(dst);
        }
        let via = if tried.contains(&dst) {
            // No direct tether: the relay with the quickest tether up, else make a tether
            // to the next relay and wait for it.
            let mut relays: Vec<(bool, u32, NodeId)> = dir
                .relays()
                .into_iter()
                .filter(|p| *p != dst && !tried.contains(p) && dir.allows(*p))
                .map(|p| match self.tethers.get(&p) {
                    Some(t) if t.is_up() => (false, t.rtt_us, p),
                    _ => (true, u32::MAX, p),
                })
                .collect();
            relays.sort();
            match relays.first() {
                Some((false, _, r)) => Some(*r),
                Some((true, _, r)) => {
                    let r = *r;
                    self.ensure_tether(now, r);
                    if self
                        .tethers
                        .get(&r)
                        .is_some_and(|t| t.phase == Phase::Failed)
                    {
                        tried.push(r);
                        self.set_route(now, dst, None, RouteState::Failed, tried);
                    } else {
                        self.set_route(now, dst, Some(r), RouteState::Waiting, tried);
                    }
                    return;
                }
                None => {
                    // Nothing left to try now: start over after a pause.
                    self.set_route(now, dst, None, RouteState::Failed, Vec::new());
                    return;
                }
            }
        } else {
            match direct {
                Some(Phase::Up) => None,
                _ => {
                    self.ensure_tether(now, dst);
                    self.set_route(now, dst, None, RouteState::Waiting, tried);
                    return;
                }
            }
        };
        let path = match via {
            None => RoutePath::new(&[dst]),
            Some(r) => RoutePath::new(&[r, dst]),
        };
        let Ok(path) = path else { return };
        let route_id = self.route_id();
        let setup = RouteSetup {
            route_id,
            stream_id,
            source: self.me,
            destination: dst,
            path,
            hop_index: 0,
            expiry_unix_s: self.unix_s + SETUP_VALID_S,
        };
        self.set_route(now, dst, via, RouteState::Setting, tried);
        if let Some(r) = self.routes.get_mut(&dst) {
            r.route_id = route_id;
        }
        self.request(
            via.unwrap_or(dst),
            route_bytes(RouteMessage::Setup(setup)),
            Pending::Setup {
                destination: dst,
                route_id,
            },
        );
    }

    fn set_route(
        &mut self,
        now: Instant,
        dst: NodeId,
        via: Option<NodeId>,
        state: RouteState,
        tried: Vec<NodeId>,
    ) {
        let route_id = self.routes.get(&dst).map_or(0, |r| r.route_id);
        self.routes.insert(
            dst,
            OutRoute {
                via,
                route_id,
                state,
                since: now,
                tried,
                destination: dst,
            },
        );
    }

    /// Forgets the route to `dst`, in the data plane and at its relay.
    pub(super) fn drop_route(&mut self, _now: Instant, dst: NodeId) {
        let Some(r) = self.routes.remove(&dst) else {
            return;
        };
        if let RouteState::Up(_) = r.state
            && let Some(address) = self.out.get(&dst).map(|s| s.address)
        {
            self.command(Command::RemoveRoute {
                destination: address,
            });
        }
        if matches!(r.state, RouteState::Up(_) | RouteState::Setting)
            && let Some(via) = r.via
        {
            let t = RouteMessage::Teardown(RouteTeardown {
                route_id: r.route_id,
                reason: TeardownReason::Closed,
            });
            self.request(via, route_bytes(t), Pending::Teardown);
        }
    }

    /// Routes whose first hop is `peer` wait for a tether again (their data plane routes go);
    /// with `failed`, `peer` is also marked as tried, so the next attempt looks elsewhere.
    pub(super) fn park_routes_through(&mut self, peer: NodeId, failed: bool) {
        let mut removed = Vec::new();
        for (dst, r) in &mut self.routes {
            if r.first_hop() != Some(peer) {
                continue;
            }
            if failed {
                r.tried.push(peer);
            }
            if let RouteState::Up(_) = r.state
                && let Some(s) = self.out.get(dst)
            {
                removed.push(s.address);
            }
            r.state = RouteState::Waiting;
            r.via = None;
        }
        for destination in removed {
            self.command(Command::RemoveRoute { destination });
        }
    }

    /// Removes the relay entries that receive from or send to `peer`.
    pub(super) fn drop_relays_through(&mut self, peer: NodeId) {
        let dead: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.next == peer || r.previous == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(r) = self.relays.remove(&id) {
                self.command(Command::RemoveRelay {
                    in_label: r.in_label,
                });
            }
        }
    }

    /// A tether to `peer` came up or failed: move the routes and relays that depend on it.
    pub(super) fn tether_changed(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        let up = self.tethers.get(&peer).is_some_and(|t| t.is_up());
        if !up {
            self.park_routes_through(peer, true);
            self.drop_relays_through(peer);
        }
        let waiting: Vec<NodeId> = self
            .routes
            .iter()
            .filter(|(_, r)| r.state == RouteState::Waiting)
            .map(|(d, _)| *d)
            .collect();
        for dst in waiting {
            self.route_to(now, dst, dir);
        }
        let held = std::mem::take(&mut self.held);
        for h in held {
            if h.setup.next_hop() != Some(peer) {
                self.held.push(h);
            } else if up {
                self.forward(h.token, h.setup);
            } else {
                let a = ack(h.setup.route_id, h.setup.hop_index, AckStatus::NoTether, 0);
                self.actions.push_back(Action::Reply {
                    token: h.token,
                    payload: a,
                });
            }
        }
    }

    /// Retries failed routes, builds missing ones, gives up on old held set-ups.
    pub(super) fn sweep_routes(&mut self, now: Instant, dir: &impl Directory) {
        let due: Vec<NodeId> = self
            .out
            .keys()
            .filter(|d| match self.routes.get(d) {
                None => true,
                Some(r) => match r.state {
                    RouteState::Failed => now >= r.since + ROUTE_RETRY,
                    RouteState::Waiting => now >= r.since + self.cfg.tether_timeout,
                    _ => false,
                },
            })
            .copied()
            .collect();
        for dst in due {
            self.route_to(now, dst, dir);
        }
        let timeout = self.cfg.tether_timeout;
        let held = std::mem::take(&mut self.held);
        for h in held {
            if now >= h.since + timeout {
                let a = ack(h.setup.route_id, h.setup.hop_index, AckStatus::NoTether, 0);
                self.actions.push_back(Action::Reply {
                    token: h.token,
                    payload: a,
                });
            } else {
                self.held.push(h);
            }
        }
    }

    fn forward(&mut self, token: u64, setup: RouteSetup) {
        let Some(next_setup) = setup.for_next_hop() else {
            return;
        };
        let next = next_setup.this_hop();
        self.request(
            next,
            route_bytes(RouteMessage::Setup(next_setup)),
            Pending::Forward { token, setup },
        );
    }

    /// A signal from a verified peer. Returns the reply, or `None` when the reply will come
    /// later as [`Action::Reply`] with `token` (or not at all).
    pub fn handle_signal(
        &mut self,
        now: Instant,
        from: NodeId,
        payload: Payload,
        token: u64,
        dir: &impl Directory,
    ) -> Option<Payload> {
        match payload {
            Payload::Offer(o) => Some(self.answer_offer(now, from, o)),
            Payload::Answer(_) => {
                self.status.signals_ignored += 1;
                None
            }
            Payload::Route(bytes) => match RouteMessage::parse(&bytes) {
                Ok(RouteMessage::Setup(s)) => self.handle_setup(now, from, s, token, dir),
                Ok(RouteMessage::Teardown(t)) => {
                    if let Some(r) = self.relays.get(&t.route_id)
                        && r.previous == from
                        && let Some(r) = self.relays.remove(&t.route_id)
                    {
                        self.command(Command::RemoveRelay {
                            in_label: r.in_label,
                        });
                    }
                    Some(Payload::Route(bytes))
                }
                Ok(RouteMessage::Ack(_)) | Err(_) => {
                    self.status.signals_ignored += 1;
                    None
                }
            },
        }
    }

    fn handle_setup(
        &mut self,
        now: Instant,
        from: NodeId,
        s: RouteSetup,
        token: u64,
        dir: &impl Directory,
    ) -> Option<Payload> {
        let refuse = |ov: &mut Self, status| {
            ov.status.setups_refused += 1;
            Some(ack(s.route_id, s.hop_index, status, 0))
        };
        if s.this_hop() != self.me || s.previous_hop() != from {
            self.status.signals_ignored += 1;
            return None;
        }
        if s.expiry_unix_s < self.unix_s {
            return refuse(self, AckStatus::Expired);
        }
        let Some(next) = s.next_hop() else {
            // This node is the destination: answer with the stream's label.
            if !dir.allows(s.source) {
                return refuse(self, AckStatus::Refused);
            }
            return match self.inb.get(&s.source) {
                Some(st) if st.dp_id == s.stream_id => {
                    Some(ack(s.route_id, s.hop_index, AckStatus::Accepted, st.label))
                }
                // The stream is not installed yet (or was replaced): the source retries.
                _ => refuse(self, AckStatus::Overloaded),
            };
        };
        if !self.cfg.relay
            || !dir.allows(s.source)
            || !dir.allows(next)
            || !dir.pair_allowed(s.source, next)
        {
            return refuse(self, AckStatus::Refused);
        }
        match self.tethers.get(&next).map(|t| t.phase) {
            Some(Phase::Up) => self.forward(token, s),
            Some(Phase::Failed) => return refuse(self, AckStatus::NoTether),
            _ => {
                self.ensure_tether(now, next);
                self.held.push(Held {
                    token,
                    setup: s,
                    since: now,
                });
            }
        }
        None
    }

    /// The reply to a request (or `None`: none came in time).
    pub fn handle_reply(
        &mut self,
        now: Instant,
        request: u64,
        reply: Option<Payload>,
        dir: &impl Directory,
    ) {
        let Some(p) = self.requests.remove(&request) else {
            return;
        };
        match p {
            Pending::Offer { peer } => {
                let answer = match reply {
                    Some(Payload::Answer(a)) => Some(a),
                    _ => None,
                };
                self.offer_answered(now, peer, answer, dir);
            }
            Pending::Setup {
                destination,
                route_id,
            } => self.setup_answered(now, destination, route_id, parse_ack(reply)),
            Pending::Forward { token, setup } => {
                let a = parse_ack(reply).filter(|a| a.route_id == setup.route_id);
                let payload = match (a, setup.next_hop()) {
                    (Some(a), Some(next)) if a.status == AckStatus::Accepted => {
                        match self
                            .tethers
                            .get(&next)
                            .filter(|t| t.is_up())
                            .map(|t| t.ids())
                        {
                            Some(tethers) => {
                                let in_label = self.label();
                                self.command(Command::InstallRelay {
                                    in_label,
                                    tethers,
                                    out_label: a.label,
                                });
                                self.relays.insert(
                                    setup.route_id,
                                    RelayEntry {
                                        in_label,
                                        previous: setup.previous_hop(),
                                        next,
                                    },
                                );
                                self.status.relays_installed += 1;
                                tracing::info!(
                                    source = %setup.source,
                                    destination = %setup.destination,
                                    in_label,
                                    "relaying"
                                );
                                ack(
                                    setup.route_id,
                                    setup.hop_index,
                                    AckStatus::Accepted,
                                    in_label,
                                )
                            }
                            None => ack(setup.route_id, setup.hop_index, AckStatus::NoTether, 0),
                        }
                    }
                    (Some(a), _) => ack(setup.route_id, setup.hop_index, a.status, 0),
                    (None, _) => ack(setup.route_id, setup.hop_index, AckStatus::NoTether, 0),
                };
                self.actions.push_back(Action::Reply { token, payload });
            }
            Pending::Teardown => {}
        }
    }

    fn setup_answered(&mut self, now: Instant, dst: NodeId, route_id: u64, a: Option<RouteAck>) {
        let Some(r) = self.routes.get_mut(&dst) else {
            return;
        };
        if r.route_id != route_id || r.state != RouteState::Setting {
            return;
        }
        let first = r.via.unwrap_or(dst);
        let tether = self
            .tethers
            .get(&first)
            .filter(|t| t.is_up())
            .map(|t| t.ids());
        let address = self.out.get(&dst).map(|s| s.address);
        match (a, tether, address) {
            (Some(a), Some(tether), Some(address))
                if a.status == AckStatus::Accepted && a.route_id == route_id =>
            {
                r.state = RouteState::Up(a.label);
                r.since = now;
                r.tried.clear();
                let via = r.via;
                if via.is_some() {
                    self.status.routes_relayed += 1;
                } else {
                    self.status.routes_direct += 1;
                }
                tracing::info!(
                    destination = %dst,
                    via = ?via.map(|v| v.to_string()),
                    label = a.label,
                    "route up"
                );
                self.command(Command::InstallRoute {
                    destination: address,
                    hops: tether.iter().map(|t| (*t, a.label)).collect(),
                });
            }
            (a, _, _) => {
                if let Some(v) = r.via {
                    r.tried.push(v);
                }
                r.state = RouteState::Failed;
                r.since = now;
                tracing::debug!(destination = %dst, status = ?a.map(|a| a.status), "route set-up failed");
            }
        }
    }
}

fn parse_ack(reply: Option<Payload>) -> Option<RouteAck> {
    match reply {
        Some(Payload::Route(b)) => match RouteMessage::parse(&b) {
            Ok(RouteMessage::Ack(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}
