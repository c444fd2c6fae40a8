//! The router's state machine: inputs, timers and decisions.
//!
//! - this file: state, inputs (`handle_*`, `want`, geo), timers and what the core learns;
//! - [`decide`]: the route to each destination this node sends to;
//! - [`publish`]: what this node tells its neighbours.

mod decide;
mod publish;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use conflux_shared::id::NodeId;

use super::exchange::{self, CONFIDENCE_SCALE, Entry, ExchangeError};
use super::geo::{GeoPolicy, Region, Verdict};
use super::health::{Change, Health, Liveness};
use super::q::{Estimate, Link};
use super::{Decision, RouteDecision, RouterConfig, Strategy, Telemetry};

/// What the router ignored or did, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterCounters {
    /// Estimate messages refused as malformed.
    pub rejected: u64,
    /// Estimate messages refused as stale.
    pub stale: u64,
    /// Estimate messages from a node that is not a neighbour.
    pub not_neighbour: u64,
    /// Telemetry about a node that is not a neighbour.
    pub unknown_telemetry: u64,
    /// Neighbours abandoned.
    pub neighbours_lost: u64,
    /// Route decisions emitted.
    pub decisions: u64,
    /// Estimate messages published.
    pub publications: u64,
}

struct Neighbour {
    link: Link,
    health: Health,
    last_sequence: Option<u64>,
    /// Destinations it wants: radius and expiry.
    wants: BTreeMap<NodeId, (u32, Instant)>,
}

struct Candidate {
    /// Hops after this node; `path[0]` is the neighbour.
    path: Vec<NodeId>,
    est: Estimate,
    /// The neighbour's last published cost and confidence: a delta that leaves the entry
    /// out repeats them.
    published: (f64, f64),
    verdict: Verdict,
}

#[derive(Default)]
struct Dest {
    via: BTreeMap<NodeId, Candidate>,
    /// Smoothed shares of the trusted paths, by next hop.
    shares: Vec<(NodeId, f64)>,
    installed: Option<RouteDecision>,
    advertised: Option<(f64, Vec<NodeId>)>,
    /// When the advertised path last changed.
    advertised_at: Option<Instant>,
}

/// The router of one node (see the [module documentation](super)).
pub struct Router {
    me: NodeId,
    cfg: RouterConfig,
    neighbours: BTreeMap<NodeId, Neighbour>,
    dests: BTreeMap<NodeId, Dest>,
    local_wants: BTreeSet<NodeId>,
    regions: BTreeMap<NodeId, Region>,
    geo: GeoPolicy,
    changed: BTreeSet<NodeId>,
    out: VecDeque<Decision>,
    sequence: u64,
    next_decide: Instant,
    next_publish: Instant,
    trigger: Option<Instant>,
    last_publish: Option<Instant>,
    publications: u64,
    new_wants: bool,
    /// Destinations to publish next time even if unchanged (a neighbour just asked).
    repeat: BTreeSet<NodeId>,
    asked_regions: BTreeSet<NodeId>,
    counters: RouterCounters,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("me", &self.me)
            .field("neighbours", &self.neighbours.len())
            .field("destinations", &self.dests.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router for node `me`. `sequence_start` seeds the estimate sequence numbers; pass the
    /// Unix time in milliseconds so they keep increasing across restarts.
    pub fn new(me: NodeId, cfg: RouterConfig, now: Instant, sequence_start: u64) -> Self {
        Self {
            me,
            next_decide: now + cfg.decide_interval,
            next_publish: now + cfg.publish_interval,
            cfg,
            neighbours: BTreeMap::new(),
            dests: BTreeMap::new(),
            local_wants: BTreeSet::new(),
            regions: BTreeMap::new(),
            geo: GeoPolicy::open(),
            changed: BTreeSet::new(),
            out: VecDeque::new(),
            sequence: sequence_start,
            trigger: None,
            last_publish: None,
            publications: 0,
            new_wants: false,
            repeat: BTreeSet::new(),
            asked_regions: BTreeSet::new(),
            counters: RouterCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// What was ignored or done so far.
    pub fn counters(&self) -> &RouterCounters {
        &self.counters
    }

    /// A tether to `node` exists: it is a neighbour (usable once telemetry arrives).
    pub fn add_neighbour(&mut self, now: Instant, node: NodeId) {
        if node == self.me || self.neighbours.contains_key(&node) {
            return;
        }
        self.neighbours.insert(
            node,
            Neighbour {
                link: Link::new(),
                health: Health::new(self.cfg.silence, self.cfg.probation),
                last_sequence: None,
                wants: BTreeMap::new(),
            },
        );
        let direct = Candidate {
            path: vec![node],
            est: Estimate::fresh(now, 0.0, 1.0),
            published: (0.0, 1.0),
            verdict: Verdict::Allowed { penalty_us: 0.0 },
        };
        self.dests.entry(node).or_default().via.insert(node, direct);
        self.changed.insert(node);
    }

    /// The tether to `node` is gone: nothing goes through it any more.
    pub fn remove_neighbour(&mut self, now: Instant, node: NodeId) {
        if self.neighbours.remove(&node).is_none() {
            return;
        }
        for (d, dest) in &mut self.dests {
            if dest.via.remove(&node).is_some() {
                self.changed.insert(*d);
            }
        }
        self.flush(now);
    }

    /// Start tracking routes to `destination` (this node has traffic for it).
    pub fn want(&mut self, now: Instant, destination: NodeId) {
        if destination == self.me || !self.local_wants.insert(destination) {
            return;
        }
        self.dests.entry(destination).or_default();
        self.changed.insert(destination);
        self.new_wants = true;
        self.schedule_trigger(now);
        self.flush(now);
    }

    /// Stop tracking routes to `destination` for this node's own traffic.
    pub fn unwant(&mut self, destination: NodeId) {
        self.local_wants.remove(&destination);
    }

    /// The certified region of `node` (from its certificate or directory record).
    pub fn set_region(&mut self, now: Instant, node: NodeId, region: Option<Region>) {
        match region {
            Some(r) => self.regions.insert(node, r),
            None => self.regions.remove(&node),
        };
        self.asked_regions.remove(&node);
        self.rejudge(now, Some(node));
    }

    /// Replaces the geo policy; every path is judged again at once.
    pub fn set_geo(&mut self, now: Instant, policy: GeoPolicy) {
        self.geo = policy;
        self.rejudge(now, None);
    }

    /// The geo policy in force.
    pub fn geo(&self) -> &GeoPolicy {
        &self.geo
    }

    /// The regions known so far.
    pub fn regions(&self) -> &BTreeMap<NodeId, Region> {
        &self.regions
    }

    /// `(neighbour, destination)` for every destination a neighbour wants through this
    /// node (wants not yet expired).
    pub fn wanted_by_neighbours(&self, now: Instant) -> BTreeSet<(NodeId, NodeId)> {
        self.neighbours
            .iter()
            .flat_map(|(n, nb)| {
                nb.wants
                    .iter()
                    .filter(move |(_, (_, expiry))| *expiry > now)
                    .map(move |(d, _)| (*n, *d))
            })
            .collect()
    }

    /// A worker's telemetry report on the tether to a neighbour.
    pub fn handle_telemetry(&mut self, now: Instant, t: &Telemetry) {
        let Some(nb) = self.neighbours.get_mut(&t.neighbour) else {
            self.counters.unknown_telemetry += 1;
            return;
        };
        let was_usable = nb.health.usable();
        nb.link.on_report(now, t);
        let change = nb.health.on_report(now, f64::from(t.loss_ppm) / 1e6);
        let is_usable = nb.health.usable();
        if let Some(c) = change {
            self.on_health_change(now, t.neighbour, c);
        } else if was_usable != is_usable {
            self.touch_via(t.neighbour);
            self.schedule_trigger(now);
        }
        self.flush(now);
    }

    /// The data plane reported the tether to `neighbour` down or closed: abandon it now
    /// rather than at the next telemetry. Telemetry with low loss brings it back.
    pub fn handle_tether_down(&mut self, now: Instant, neighbour: NodeId) {
        let Some(nb) = self.neighbours.get_mut(&neighbour) else {
            self.counters.unknown_telemetry += 1;
            return;
        };
        if let Some(c) = nb.health.force_down() {
            self.on_health_change(now, neighbour, c);
        }
        self.flush(now);
    }

    /// An estimates message a neighbour published, as received from NATS.
    pub fn handle_neighbour_estimates(
        &mut self,
        now: Instant,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), ExchangeError> {
        if !self.neighbours.contains_key(&from) {
            self.counters.not_neighbour += 1;
            return Err(ExchangeError::NotNeighbour);
        }
        let msg = exchange::decode(from, bytes).inspect_err(|_| self.counters.rejected += 1)?;
        let nb = self
            .neighbours
            .get_mut(&from)
            .unwrap_or_else(|| unreachable!());
        if let Some(last) = nb.last_sequence.filter(|&l| msg.sequence <= l) {
            self.counters.stale += 1;
            return Err(ExchangeError::Stale {
                got: msg.sequence,
                last,
            });
        }
        nb.last_sequence = Some(msg.sequence);
        for w in &msg.wants {
            if w.destination == self.me {
                continue;
            }
            let fresh = nb
                .wants
                .insert(w.destination, (w.radius, now + self.cfg.want_ttl))
                .is_none();
            if fresh {
                // The neighbour has not heard this destination from us: repeat it soon
                // rather than at the next full publication.
                self.repeat.insert(w.destination);
            }
            if !self.dests.contains_key(&w.destination) {
                self.dests.entry(w.destination).or_default();
                self.new_wants = true;
            }
        }
        let mentioned: BTreeSet<NodeId> = msg.entries.iter().map(|e| e.destination).collect();
        for e in &msg.entries {
            self.learn(now, from, e);
        }
        for (d, dest) in &mut self.dests {
            if mentioned.contains(d) || *d == from {
                continue;
            }
            if msg.full {
                if dest.via.remove(&from).is_some() {
                    self.changed.insert(*d);
                }
            } else if let Some(c) = dest.via.get_mut(&from) {
                // A delta leaves out what has not changed: learn from it as if repeated.
                let (t, c_y) = c.published;
                c.est.learn(now, self.cfg.confidence_half_life, t, c_y);
            }
        }
        if self.new_wants || !self.repeat.is_empty() {
            self.schedule_trigger(now);
        }
        self.flush(now);
        Ok(())
    }

    /// Time passed: liveness deadlines, decision ticks and publications.
    pub fn handle_timeout(&mut self, now: Instant) {
        let changes: Vec<(NodeId, Change)> = self
            .neighbours
            .iter_mut()
            .filter_map(|(n, nb)| nb.health.on_timeout(now).map(|c| (*n, c)))
            .collect();
        for (n, c) in changes {
            self.on_health_change(now, n, c);
        }
        if now >= self.next_decide {
            while self.next_decide <= now {
                self.next_decide += self.cfg.decide_interval;
            }
            let wanted: Vec<NodeId> = self.local_wants.iter().copied().collect();
            for d in wanted {
                self.decide(now, d, true);
            }
        }
        if now >= self.next_publish {
            while self.next_publish <= now {
                self.next_publish += self.cfg.publish_interval;
            }
            let full = self
                .publications
                .is_multiple_of(u64::from(self.cfg.full_every.max(1)));
            self.publish(now, full);
        } else if self.trigger.is_some_and(|t| now >= t) {
            self.publish(now, false);
        }
        self.flush(now);
    }

    /// The next decision for the control process to carry out, if any.
    #[must_use]
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.out.pop_front()
    }

    /// When [`Router::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let health = self
            .neighbours
            .values()
            .filter_map(|nb| nb.health.deadline());
        [self.next_decide, self.next_publish]
            .into_iter()
            .chain(self.trigger)
            .chain(health)
            .min()
            .unwrap_or(self.next_decide)
    }

    /// The liveness of a neighbour.
    pub fn neighbour_state(&self, node: NodeId) -> Option<Liveness> {
        self.neighbours.get(&node).map(|nb| nb.health.state())
    }

    /// The Q values for a destination: `(path, cost µs, confidence, usable)` per next hop.
    pub fn q_values(
        &self,
        now: Instant,
        destination: NodeId,
    ) -> Vec<(Vec<NodeId>, f64, f64, bool)> {
        let Some(dest) = self.dests.get(&destination) else {
            return Vec::new();
        };
        dest.via
            .iter()
            .map(|(v, c)| {
                (
                    c.path.clone(),
                    self.cost(*v, c),
                    self.confidence(now, destination, *v, c),
                    self.usable(*v, c),
                )
            })
            .collect()
    }

    /// The destinations this node keeps state for: its own, its neighbours, and those its
    /// neighbours want.
    pub fn tracked(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.dests.keys().copied()
    }

    /// The route last emitted for a destination.
    pub fn installed(&self, destination: NodeId) -> Option<&RouteDecision> {
        self.dests.get(&destination)?.installed.as_ref()
    }

    fn latency_only(&self) -> bool {
        self.cfg.strategy == Strategy::LatencyOnly
    }

    fn cost(&self, via: NodeId, c: &Candidate) -> f64 {
        self.neighbours
            .get(&via)
            .map_or(f64::INFINITY, |nb| nb.link.cost_us(self.latency_only()))
            + c.est.t_us
    }

    fn confidence(&self, now: Instant, d: NodeId, via: NodeId, c: &Candidate) -> f64 {
        if d == via {
            return 1.0;
        }
        c.est.confidence(now, self.cfg.confidence_half_life)
    }

    fn usable(&self, via: NodeId, c: &Candidate) -> bool {
        c.verdict.allowed()
            && self
                .neighbours
                .get(&via)
                .is_some_and(|nb| nb.health.usable())
    }

    fn on_health_change(&mut self, now: Instant, n: NodeId, c: Change) {
        match c {
            Change::WentDown => {
                self.counters.neighbours_lost += 1;
                for dest in self.dests.values_mut() {
                    if let Some(cand) = dest.via.get_mut(&n) {
                        cand.est.distrust();
                    }
                }
            }
            Change::CameBack => {
                if let Some(nb) = self.neighbours.get_mut(&n) {
                    nb.link.reset_load();
                }
            }
            Change::Trusted => {}
        }
        self.touch_via(n);
        self.schedule_trigger(now);
    }

    fn touch_via(&mut self, n: NodeId) {
        for (d, dest) in &self.dests {
            if dest.via.contains_key(&n) {
                self.changed.insert(*d);
            }
        }
    }

    fn learn(&mut self, now: Instant, from: NodeId, e: &Entry) {
        let (me, max_hops, hl) = (self.me, self.cfg.max_hops, self.cfg.confidence_half_life);
        if e.destination == me || e.destination == from {
            return;
        }
        let Some(dest) = self.dests.get_mut(&e.destination) else {
            return;
        };
        let usable_path = e.cost_us.is_some() && !e.path.contains(&me) && e.path.len() < max_hops;
        if !usable_path {
            if dest.via.remove(&from).is_some() {
                self.changed.insert(e.destination);
            }
            return;
        }
        let t_us = f64::from(e.cost_us.unwrap_or(0));
        let c_y = f64::from(e.confidence) / f64::from(CONFIDENCE_SCALE);
        match dest.via.get_mut(&from) {
            Some(c) if c.path[1..] == e.path[..] => {
                c.est.learn(now, hl, t_us, c_y);
                c.published = (t_us, c_y);
            }
            _ => {
                let mut path = Vec::with_capacity(e.path.len() + 1);
                path.push(from);
                path.extend_from_slice(&e.path);
                let verdict = self.geo.judge(&path, &self.regions);
                if let Verdict::Unknown(n) = verdict
                    && self.asked_regions.insert(n)
                {
                    self.out.push_back(Decision::LookupRegion(n));
                }
                dest.via.insert(
                    from,
                    Candidate {
                        path,
                        est: Estimate::fresh(now, t_us, c_y),
                        published: (t_us, c_y),
                        verdict,
                    },
                );
                self.changed.insert(e.destination);
            }
        }
    }

    fn rejudge(&mut self, now: Instant, only: Option<NodeId>) {
        for (d, dest) in &mut self.dests {
            for c in dest.via.values_mut() {
                if only.is_some_and(|n| !c.path.contains(&n)) {
                    continue;
                }
                let v = self.geo.judge(&c.path, &self.regions);
                if let Verdict::Unknown(n) = v
                    && self.asked_regions.insert(n)
                {
                    self.out.push_back(Decision::LookupRegion(n));
                }
                if v != c.verdict {
                    c.verdict = v;
                    self.changed.insert(*d);
                }
            }
        }
        self.schedule_trigger(now);
        self.flush(now);
    }

    /// Re-decides the destinations whose inputs changed, and schedules a publication if what
    /// this node would advertise for one of them changed path or became unreachable.
    fn flush(&mut self, now: Instant) {
        let changed = std::mem::take(&mut self.changed);
        let mut trigger = false;
        for d in changed {
            if self.local_wants.contains(&d) {
                self.decide(now, d, false);
            }
            let adv = self
                .advertisement(now, d)
                .map(|(cost, path, _)| (cost, path));
            let old = self.dests.get(&d).and_then(|x| x.advertised.as_ref());
            trigger |= match (old, &adv) {
                (Some(o), Some(a)) => o.1 != a.1,
                (None, None) => false,
                _ => true,
            };
        }
        if trigger {
            self.schedule_trigger(now);
        }
    }

    fn schedule_trigger(&mut self, now: Instant) {
        let at = self
            .last_publish
            .map_or(now, |t| (t + self.cfg.trigger_gap).max(now));
        self.trigger = Some(self.trigger.map_or(at, |t| t.min(at)));
    }
}

fn clamp_us(c: f64) -> u32 {
    if c.is_finite() {
        c.clamp(0.0, f64::from(u32::MAX)) as u32
    } else {
        u32::MAX
    }
}
