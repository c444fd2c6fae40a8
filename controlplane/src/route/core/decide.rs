//! The route to each destination this node sends to: weights over the usable paths.

use std::time::Instant;

use conflux_shared::id::NodeId;

use super::super::explore::{self, LOW_CONFIDENCE};
use super::super::geo::Verdict;
use super::super::weights::{self, SMOOTHING};
use super::super::{Decision, MAX_NEXT_HOPS, RouteDecision, WeightedPath};
use super::{Router, clamp_us};

/// A route's weights count as changed when one moves by more than this many units.
const WEIGHT_EPSILON: u16 = 50;

impl Router {
    /// Recomputes the route to `d`; `tick` takes a smoothing step towards the target shares,
    /// otherwise only paths that became unusable are dropped.
    pub(super) fn decide(&mut self, now: Instant, d: NodeId, tick: bool) {
        let Some(dest) = self.dests.get(&d) else {
            return;
        };
        let mut trusted = Vec::new();
        let mut explorers = Vec::new();
        for (v, c) in &dest.via {
            if !self.usable(*v, c) {
                continue;
            }
            let penalty = match c.verdict {
                Verdict::Allowed { penalty_us } => penalty_us,
                _ => 0.0,
            };
            let cost = self.cost(*v, c) + penalty;
            let on_probation = self
                .neighbours
                .get(v)
                .is_some_and(|nb| nb.health.on_probation());
            let unsure = self.confidence(now, d, *v, c) < LOW_CONFIDENCE;
            if !self.latency_only() && (on_probation || unsure) {
                explorers.push((*v, cost));
            } else {
                trusted.push((*v, cost));
            }
        }
        let (shares, output) = if self.latency_only() {
            let current = dest
                .installed
                .as_ref()
                .and_then(|r| r.paths.first())
                .map(|p| p.path[0]);
            let pick = weights::pick_one(current, &trusted);
            let shares: Vec<(NodeId, f64)> = pick.map(|v| (v, 1.0)).into_iter().collect();
            (shares.clone(), shares)
        } else if trusted.is_empty() {
            let t = weights::target(&explorers);
            (Vec::new(), weights::blend(&[], &t, 1.0, MAX_NEXT_HOPS))
        } else {
            let target = weights::target(&trusted);
            let kept: Vec<(NodeId, f64)> = dest
                .shares
                .iter()
                .filter(|s| trusted.iter().any(|t| t.0 == s.0))
                .copied()
                .collect();
            let shares = if kept.is_empty() {
                weights::blend(&[], &target, 1.0, MAX_NEXT_HOPS)
            } else if tick {
                weights::blend(&kept, &target, SMOOTHING, MAX_NEXT_HOPS)
            } else {
                weights::normalise(kept)
            };
            let best = trusted.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
            let output = explore::mix(
                &shares,
                &explorers,
                best,
                self.publications / u64::from(self.cfg.full_every.max(1)),
            );
            (shares, output)
        };
        let decision = self.route_decision(d, &output, &trusted, &explorers);
        let Some(dest) = self.dests.get_mut(&d) else {
            return;
        };
        dest.shares = shares;
        if dest
            .installed
            .as_ref()
            .is_none_or(|old| differs(old, &decision))
        {
            dest.installed = Some(decision.clone());
            self.counters.decisions += 1;
            self.out.push_back(Decision::Route(decision));
        }
    }

    fn route_decision(
        &self,
        d: NodeId,
        output: &[(NodeId, f64)],
        trusted: &[(NodeId, f64)],
        explorers: &[(NodeId, f64)],
    ) -> RouteDecision {
        let dest = &self.dests[&d];
        let shares: Vec<f64> = output.iter().map(|o| o.1).collect();
        let units = weights::to_units(&shares);
        let all_costs = || trusted.iter().chain(explorers);
        let cost_of = |v: NodeId| {
            all_costs()
                .find(|c| c.0 == v)
                .map_or(f64::INFINITY, |c| c.1)
        };
        let mut paths: Vec<WeightedPath> = output
            .iter()
            .zip(units)
            .map(|(o, w)| WeightedPath {
                path: dest.via[&o.0].path.clone(),
                weight: w,
                cost_us: clamp_us(cost_of(o.0)),
            })
            .collect();
        paths.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.path.cmp(&b.path)));
        RouteDecision {
            destination: d,
            paths,
        }
    }
}

/// Whether a new decision is worth writing to the data plane.
fn differs(old: &RouteDecision, new: &RouteDecision) -> bool {
    old.paths.len() != new.paths.len()
        || new.paths.iter().any(|p| {
            old.paths.iter().find(|o| o.path == p.path).is_none_or(|o| {
                o.weight.abs_diff(p.weight) > WEIGHT_EPSILON || (o.weight == 0) != (p.weight == 0)
            })
        })
}
