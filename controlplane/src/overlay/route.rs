//! This node's routes: per destination, one or more weighted legs (paths through zero or
//! more relays), each set up hop by hop with route messages and installed together as one
//! data plane route whose next hops the flow hash picks from.
//!
//! Two things make legs. The first packet to a destination (a miss) builds one at once
//! without waiting for the router: direct when the tether to the destination comes up,
//! otherwise through the relay with the quickest tether ("bootstrap"). Once the router
//! ([`crate::route`]) knows paths to the destination, its decisions replace the legs: every
//! path it names is set up (paths it gives no weight stay set up as standbys, so a failed
//! leg is replaced without a round trip), and a leg it dropped is torn down only after one
//! of the new ones is up (make before break).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use conflux_shared::id::{Label, NodeId};
use conflux_shared::wire::record::TetherId;
use conflux_shared::wire::route::{
    AckStatus, RouteAck, RouteMessage, RoutePath, RouteSetup, RouteTeardown, TeardownReason,
};

use super::core::{Command, Directory, Overlay, host_len};
use super::path::{Pending, route_bytes};
use super::tether::Phase;
use crate::route::{RouteDecision, WEIGHT_TOTAL};

/// A failed route is tried again after this.
const ROUTE_RETRY: Duration = Duration::from_millis(500);
/// A route set-up is valid this long after it is made.
const SETUP_VALID_S: u64 = 30;

/// Where one leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteState {
    /// Waiting for the tether to its first hop.
    Waiting,
    /// Set-up sent.
    Setting,
    /// Installed: the first hop's label.
    Up(Label),
    /// Failed; tried again after [`ROUTE_RETRY`] if still wanted.
    Failed,
}

/// One path of a route.
#[derive(Debug, Clone)]
pub(super) struct Leg {
    /// Hops after this node, ending at the destination.
    pub(super) path: Vec<NodeId>,
    pub(super) route_id: u64,
    pub(super) state: RouteState,
    pub(super) since: Instant,
    /// Share of flows out of [`WEIGHT_TOTAL`] (0: standby).
    pub(super) weight: u16,
    /// The router no longer names it: torn down once another leg is up.
    pub(super) retiring: bool,
}

impl Leg {
    fn new(path: Vec<NodeId>, weight: u16, now: Instant) -> Self {
        Self {
            path,
            route_id: 0,
            state: RouteState::Waiting,
            since: now,
            weight,
            retiring: false,
        }
    }

    /// The next hop.
    pub(super) fn first(&self) -> NodeId {
        self.path[0]
    }

    /// The first relay, if the leg is not direct.
    pub(super) fn via(&self) -> Option<NodeId> {
        (self.path.len() > 1).then(|| self.path[0])
    }

    fn live(&self) -> bool {
        self.state != RouteState::Failed
    }

    /// "direct up 1000" or "via <relay> … standby": for status.
    pub(super) fn describe(&self) -> String {
        let hops = if self.path.len() == 1 {
            "direct".to_owned()
        } else {
            let relays: Vec<String> = self.path[..self.path.len() - 1]
                .iter()
                .map(ToString::to_string)
                .collect();
            format!("via {}", relays.join(" "))
        };
        let state = match self.state {
            RouteState::Waiting => "waiting",
            RouteState::Setting => "setting-up",
            RouteState::Up(_) => "up",
            RouteState::Failed => "failed",
        };
        format!("{hops} {state} {}", self.weight)
    }
}

/// This node's route to one destination.
#[derive(Debug)]
pub(super) struct OutRoute {
    pub(super) legs: Vec<Leg>,
    /// First hops that failed since the last success (the bootstrap looks elsewhere).
    pub(super) tried: Vec<NodeId>,
    /// When the route last lost its last live leg.
    pub(super) since: Instant,
    /// Whether the data plane holds it.
    pub(super) installed: bool,
    /// What was last written, so an unchanged route is not written again.
    written: Vec<(Vec<TetherId>, Label, u16)>,
}

impl OutRoute {
    fn new(now: Instant) -> Self {
        Self {
            legs: Vec::new(),
            tried: Vec::new(),
            since: now,
            installed: false,
            written: Vec::new(),
        }
    }

    /// The label of the heaviest leg that is up.
    pub(super) fn label(&self) -> Label {
        self.main_leg()
            .and_then(|l| match l.state {
                RouteState::Up(x) => Some(x),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The leg status shows: the heaviest one up, else the first live one.
    pub(super) fn main_leg(&self) -> Option<&Leg> {
        self.legs
            .iter()
            .filter(|l| matches!(l.state, RouteState::Up(_)))
            .max_by_key(|l| l.weight)
            .or_else(|| self.legs.iter().find(|l| l.live()))
    }

    /// Whether a live leg leaves through `peer`.
    pub(super) fn uses(&self, peer: NodeId) -> bool {
        self.legs.iter().any(|l| l.live() && l.first() == peer)
    }

    fn has_live_leg(&self) -> bool {
        self.legs.iter().any(Leg::live)
    }

    pub(super) fn state_name(&self) -> &'static str {
        let has = |f: fn(&RouteState) -> bool| self.legs.iter().any(|l| f(&l.state));
        if has(|s| matches!(s, RouteState::Up(_))) {
            "up"
        } else if has(|s| *s == RouteState::Setting) {
            "setting-up"
        } else if has(|s| *s == RouteState::Waiting) {
            "waiting"
        } else {
            "failed"
        }
    }
}

impl Overlay {
    fn route_id(&mut self) -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap_or_default();
        u64::from_le_bytes(b) | 1
    }

    /// Builds (or keeps building) the route to `dst` for the outbound stream to it.
    pub(super) fn route_to(&mut self, now: Instant, dst: NodeId, dir: &impl Directory) {
        if !self.out.contains_key(&dst) {
            return;
        }
        self.want_route(now, dst, dir);
        let route = self.routes.entry(dst).or_insert_with(|| OutRoute::new(now));
        if route
            .legs
            .iter()
            .any(|l| matches!(l.state, RouteState::Up(_) | RouteState::Setting))
        {
            return;
        }
        if route.legs.iter().any(|l| l.state == RouteState::Waiting) {
            self.start_waiting(now, dst, None);
            if self.routes.get(&dst).is_some_and(OutRoute::has_live_leg) {
                return;
            }
        }
        self.bootstrap(now, dst, dir);
    }

    /// A leg chosen without the router: direct when possible, else the relay with the
    /// quickest tether, else a tether to the next relay to try.
    fn bootstrap(&mut self, now: Instant, dst: NodeId, dir: &impl Directory) {
        let Some(route) = self.routes.get_mut(&dst) else {
            return;
        };
        let mut tried = std::mem::take(&mut route.tried);
        route.legs.clear();
        let direct = self.tethers.get(&dst).map(|t| t.phase);
        if direct == Some(Phase::Failed) && !tried.contains(&dst) {
            tried.push(dst);
        }
        let path = if tried.contains(&dst) {
            let mut relays: Vec<(bool, u32, NodeId)> = dir
                .relays()
                .into_iter()
                .filter(|p| {
                    *p != dst && !tried.contains(p) && dir.allows(*p) && self.relay_allowed(*p, dst)
                })
                .map(|p| match self.tethers.get(&p) {
                    Some(t) if t.is_up() => (false, t.rtt_us, p),
                    _ => (true, u32::MAX, p),
                })
                .collect();
            relays.sort();
            match relays.first() {
                Some((_, _, r)) => vec![*r, dst],
                None => {
                    // Nothing left to try now: start over after a pause.
                    if let Some(route) = self.routes.get_mut(&dst) {
                        route.since = now;
                    }
                    return;
                }
            }
        } else {
            vec![dst]
        };
        let first = path[0];
        self.ensure_tether(now, first);
        if self
            .tethers
            .get(&first)
            .is_some_and(|t| t.phase == Phase::Failed)
        {
            tried.push(first);
            if let Some(route) = self.routes.get_mut(&dst) {
                route.tried = tried;
                route.since = now;
            }
            return;
        }
        if let Some(route) = self.routes.get_mut(&dst) {
            route.tried = tried;
            route.legs.push(Leg::new(path, WEIGHT_TOTAL, now));
        }
        self.start_waiting(now, dst, Some(first));
    }

    /// Sends the set-up of every waiting leg of `dst` whose first hop's tether is up (only
    /// those through `only`, when given).
    fn start_waiting(&mut self, now: Instant, dst: NodeId, only: Option<NodeId>) {
        let Some(stream_id) = self.out.get(&dst).map(|s| s.dp_id) else {
            return;
        };
        let Some(route) = self.routes.get(&dst) else {
            return;
        };
        let ready: Vec<usize> = route
            .legs
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.state == RouteState::Waiting
                    && only.is_none_or(|o| o == l.first())
                    && self.tethers.get(&l.first()).is_some_and(|t| t.is_up())
            })
            .map(|(i, _)| i)
            .collect();
        for i in ready {
            let route_id = self.route_id();
            let Some(leg) = self.routes.get_mut(&dst).and_then(|r| r.legs.get_mut(i)) else {
                continue;
            };
            let Ok(path) = RoutePath::new(&leg.path) else {
                leg.state = RouteState::Failed;
                continue;
            };
            leg.state = RouteState::Setting;
            leg.since = now;
            leg.route_id = route_id;
            let first = leg.first();
            let setup = RouteSetup {
                route_id,
                stream_id,
                source: self.me,
                destination: dst,
                path,
                hop_index: 0,
                expiry_unix_s: self.unix_s + SETUP_VALID_S,
            };
            self.request(
                first,
                route_bytes(RouteMessage::Setup(setup)),
                Pending::Setup {
                    destination: dst,
                    route_id,
                },
            );
        }
    }

    /// The answer to one of this node's set-ups.
    pub(super) fn setup_answered(
        &mut self,
        now: Instant,
        dst: NodeId,
        route_id: u64,
        a: Option<RouteAck>,
    ) {
        let Some(route) = self.routes.get(&dst) else {
            return;
        };
        let Some(i) = route
            .legs
            .iter()
            .position(|l| l.route_id == route_id && l.state == RouteState::Setting)
        else {
            return;
        };
        let first = route.legs[i].first();
        let tether_up = self.tethers.get(&first).is_some_and(|t| t.is_up());
        let accepted = a
            .as_ref()
            .filter(|a| a.status == AckStatus::Accepted && a.route_id == route_id && tether_up);
        let Some(route) = self.routes.get_mut(&dst) else {
            return;
        };
        match accepted {
            Some(a) => {
                let leg = &mut route.legs[i];
                leg.state = RouteState::Up(a.label);
                leg.since = now;
                let via = leg.via();
                route.tried.clear();
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
                self.retire_replaced(dst);
            }
            None => {
                let leg = &mut route.legs[i];
                leg.state = RouteState::Failed;
                leg.since = now;
                if let Some(v) = leg.via() {
                    route.tried.push(v);
                }
                if !route.has_live_leg() {
                    route.since = now;
                }
                tracing::debug!(destination = %dst, status = ?a.map(|a| a.status), "route set-up failed");
            }
        }
        self.install(dst);
    }

    /// Tears down the legs the router dropped, once a leg it chose is up.
    fn retire_replaced(&mut self, dst: NodeId) {
        let Some(route) = self.routes.get_mut(&dst) else {
            return;
        };
        let chosen_up = route
            .legs
            .iter()
            .any(|l| !l.retiring && matches!(l.state, RouteState::Up(_)));
        if !chosen_up {
            return;
        }
        let (gone, kept): (Vec<Leg>, Vec<Leg>) = route.legs.drain(..).partition(|l| l.retiring);
        route.legs = kept;
        for leg in gone {
            self.teardown_leg(&leg);
        }
    }

    fn teardown_leg(&mut self, leg: &Leg) {
        if matches!(leg.state, RouteState::Up(_) | RouteState::Setting)
            && let Some(via) = leg.via()
        {
            let t = RouteMessage::Teardown(RouteTeardown {
                route_id: leg.route_id,
                reason: TeardownReason::Closed,
            });
            self.request(via, route_bytes(t), Pending::Teardown);
        }
    }

    /// Writes the route to `dst` as its up legs make it (or removes it when none is up).
    pub(super) fn install(&mut self, dst: NodeId) {
        let Some((address, lan)) = self.covered(dst) else {
            return;
        };
        let Some(route) = self.routes.get(&dst) else {
            return;
        };
        let up: Vec<(&Leg, Label)> = route
            .legs
            .iter()
            .filter_map(|l| match l.state {
                RouteState::Up(label) => Some((l, label)),
                _ => None,
            })
            .collect();
        // Standbys carry nothing while a weighted leg is up; alone, they share evenly.
        let weighted = up.iter().any(|(l, _)| l.weight > 0);
        let mut hops: Vec<(Vec<TetherId>, Label, u16)> = Vec::new();
        for (leg, label) in &up {
            if weighted && leg.weight == 0 {
                continue;
            }
            let Some(t) = self.tethers.get(&leg.first()).filter(|t| t.is_up()) else {
                continue;
            };
            let weight = if weighted { leg.weight } else { 1 };
            hops.push((t.ids(), *label, weight));
        }
        let installed = !hops.is_empty();
        if installed && !(route.installed && route.written == hops) {
            self.command(Command::InstallRoute {
                destination: address,
                len: host_len(address),
                via: None,
                hops: hops.clone(),
            });
            // A gateway's LAN goes the same way, sealed by the gateway's stream.
            for (net, len) in &lan {
                self.command(Command::InstallRoute {
                    destination: *net,
                    len: *len,
                    via: Some(address),
                    hops: hops.clone(),
                });
            }
        } else if !installed && route.installed {
            self.remove_routes(address, &lan);
        }
        if let Some(route) = self.routes.get_mut(&dst) {
            route.installed = installed;
            route.written = hops;
        }
    }

    /// Writes the route to `dst` again even if its legs did not change (what it covers did).
    pub(super) fn reinstall(&mut self, dst: NodeId) {
        if let Some(r) = self.routes.get_mut(&dst) {
            r.written.clear();
        }
        self.install(dst);
    }

    /// What the route to `dst` covers besides its host address: the LANs behind it, and
    /// everything else when it is this rift's portal.
    fn covered(&self, dst: NodeId) -> Option<(IpAddr, Vec<(IpAddr, u8)>)> {
        let s = self.out.get(&dst)?;
        let mut lan = s.lan.clone();
        if self.exit == Some(dst) {
            lan.push(super::exit::DEFAULT_V4);
        }
        Some((s.address, lan))
    }

    /// Removes the host route to `address` and the LAN prefixes behind it.
    fn remove_routes(&mut self, address: IpAddr, lan: &[(IpAddr, u8)]) {
        self.command(Command::RemoveRoute {
            destination: address,
            len: host_len(address),
        });
        for (net, len) in lan {
            self.command(Command::RemoveRoute {
                destination: *net,
                len: *len,
            });
        }
    }

    /// Carries out the router's decision for one destination.
    pub(super) fn apply_decision(&mut self, now: Instant, d: &RouteDecision, dir: &impl Directory) {
        let dst = d.destination;
        // An empty decision means the router knows no path yet; the bootstrap leg stays.
        if !self.out.contains_key(&dst) || d.paths.is_empty() {
            return;
        }
        let me = self.me;
        let standby = self.standby_path(now, dst, d);
        let route = self.routes.entry(dst).or_insert_with(|| OutRoute::new(now));
        for leg in &mut route.legs {
            leg.retiring = true;
        }
        for p in &d.paths {
            if p.path.is_empty() || p.path.contains(&me) || p.path.last() != Some(&dst) {
                continue;
            }
            keep_leg(route, &p.path, p.weight, now);
        }
        // The best path the router gives no share stays set up, so losing the others
        // moves traffic without a set-up round trip.
        if let Some(standby) = standby {
            keep_leg(route, &standby, 0, now);
        }
        // A retiring leg keeps its place until a chosen one is up; then it goes.
        let firsts: Vec<NodeId> = route
            .legs
            .iter()
            .filter(|l| l.state == RouteState::Waiting)
            .map(Leg::first)
            .collect();
        for f in firsts {
            if dir.allows(f) {
                self.ensure_tether(now, f);
            }
        }
        self.start_waiting(now, dst, None);
        self.retire_replaced(dst);
        self.install(dst);
    }

    /// The cheapest usable path to `dst` the decision leaves out, through a tether that is up.
    fn standby_path(&self, now: Instant, dst: NodeId, d: &RouteDecision) -> Option<Vec<NodeId>> {
        self.router
            .q_values(now, dst)
            .into_iter()
            .filter(|(path, cost, _, usable)| {
                *usable
                    && cost.is_finite()
                    && !path.is_empty()
                    && !path.contains(&self.me)
                    && d.paths.iter().all(|p| p.path[0] != path[0])
                    && self.tethers.get(&path[0]).is_some_and(|t| t.is_up())
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(path, ..)| path)
    }

    /// Forgets the route to `dst`, in the data plane and at its relays.
    pub(super) fn drop_route(&mut self, _now: Instant, dst: NodeId) {
        self.unwant_route(dst);
        let Some(r) = self.routes.remove(&dst) else {
            return;
        };
        if r.installed
            && let Some((address, lan)) = self.covered(dst)
        {
            self.remove_routes(address, &lan);
        }
        for leg in &r.legs {
            self.teardown_leg(leg);
        }
    }

    /// Legs whose first hop is `peer` go (their relay entries went with the tether); with
    /// `failed`, `peer` is also marked as tried, so the bootstrap looks elsewhere.
    pub(super) fn park_routes_through(&mut self, now: Instant, peer: NodeId, failed: bool) {
        let mut touched = Vec::new();
        for (dst, r) in &mut self.routes {
            if !r.legs.iter().any(|l| l.first() == peer) {
                continue;
            }
            if failed && !r.tried.contains(&peer) {
                r.tried.push(peer);
            }
            r.legs.retain(|l| l.first() != peer);
            if !r.has_live_leg() {
                r.since = now;
            }
            touched.push(*dst);
        }
        for dst in touched {
            // What is left of the route carries on at once; nothing left removes it.
            if let Some(r) = self.routes.get_mut(&dst)
                && r.legs.iter().all(|l| l.retiring)
            {
                for l in &mut r.legs {
                    l.retiring = false;
                }
            }
            self.install(dst);
        }
    }

    /// Starts the legs waiting for the tether to `peer`, and builds routes that have none.
    pub(super) fn routes_after_tether(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        let dsts: Vec<NodeId> = self.routes.keys().copied().collect();
        for dst in dsts {
            self.start_waiting(now, dst, Some(peer));
            if !self.routes.get(&dst).is_some_and(OutRoute::has_live_leg) {
                self.route_to(now, dst, dir);
            }
        }
    }

    /// Retries failed routes, builds missing ones, gives up on legs whose tether never came.
    pub(super) fn sweep_routes(&mut self, now: Instant, dir: &impl Directory) {
        let timeout = self.cfg.tether_timeout;
        for r in self.routes.values_mut() {
            for l in &mut r.legs {
                if l.state == RouteState::Waiting && now >= l.since + timeout {
                    l.state = RouteState::Failed;
                    l.since = now;
                    let first = l.first();
                    if !r.tried.contains(&first) {
                        r.tried.push(first);
                    }
                }
            }
        }
        let due: Vec<NodeId> = self
            .out
            .keys()
            .filter(|d| match self.routes.get(d) {
                None => true,
                Some(r) => !r.has_live_leg() && now >= r.since + ROUTE_RETRY,
            })
            .copied()
            .collect();
        for dst in due {
            self.route_to(now, dst, dir);
        }
        // The router's paths change without a new decision when a standby appears.
        let decided: Vec<RouteDecision> = self
            .routes
            .keys()
            .filter_map(|d| self.router.installed(*d).cloned())
            .collect();
        for d in decided {
            self.apply_decision(now, &d, dir);
        }
    }

    /// Routes and relay entries that use the tether to `peer`.
    pub(super) fn tether_users(&self, peer: NodeId) -> usize {
        let routes = self.routes.values().filter(|r| r.uses(peer)).count();
        let relays = self
            .relays
            .values()
            .filter(|r| r.next == peer || r.previous == peer)
            .count();
        routes + relays
    }
}

/// Keeps (or adds) the leg along `path` with `weight`, restarting it if it failed a while ago.
fn keep_leg(route: &mut OutRoute, path: &[NodeId], weight: u16, now: Instant) {
    match route.legs.iter_mut().find(|l| l.path == path) {
        Some(l) => {
            l.retiring = false;
            l.weight = weight;
            if l.state == RouteState::Failed && now >= l.since + ROUTE_RETRY {
                l.state = RouteState::Waiting;
                l.since = now;
            }
        }
        None => route.legs.push(Leg::new(path.to_vec(), weight, now)),
    }
}
