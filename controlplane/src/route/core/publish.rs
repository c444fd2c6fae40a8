//! What this node tells its neighbours: its best estimates, and the destinations wanted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use conflux_shared::id::NodeId;

use super::super::Decision;
use super::super::exchange::{self, CONFIDENCE_SCALE, Entry, Estimates, Want};
use super::{Router, clamp_us};

/// A published estimate is repeated in a delta when its cost moved by more than this fraction.
const ADVERTISE_RELATIVE: f64 = 0.05;
/// ... or by more than this many microseconds.
const ADVERTISE_ABSOLUTE_US: f64 = 500.0;
/// The advertised path changes only for one cheaper by this fraction ...
const ADVERTISE_SWITCH: f64 = 0.2;
/// ... and by this many microseconds ...
const ADVERTISE_SWITCH_US: f64 = 2_000.0;
/// ... and not within this long of the previous change. Every change is a new route set-up
/// for the sources that use the path, and relays that all chase the least loaded path at
/// once only move the hot spot; sources balance load over their neighbours instead.
const ADVERTISE_HOLD: Duration = Duration::from_secs(3);

impl Router {
    /// What this node advertises for `d`: its cheapest usable path, kept while usable until
    /// another is clearly cheaper and the hold time has passed. `(cost, path, confidence)`.
    pub(super) fn advertisement(&self, now: Instant, d: NodeId) -> Option<(f64, Vec<NodeId>, f64)> {
        let dest = self.dests.get(&d)?;
        let best = dest
            .via
            .iter()
            .filter(|(v, c)| self.usable(**v, c))
            .map(|(v, c)| (self.cost(*v, c), c, *v))
            .filter(|x| x.0.is_finite())
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        let kept = dest.advertised.as_ref().and_then(|(_, p)| {
            let c = dest
                .via
                .get(&p[0])
                .filter(|c| c.path == *p && self.usable(p[0], c))?;
            let cost = self.cost(p[0], c);
            let held = dest.advertised_at.is_some_and(|t| now < t + ADVERTISE_HOLD);
            let clearly_cheaper =
                best.0 < cost * (1.0 - ADVERTISE_SWITCH) && best.0 < cost - ADVERTISE_SWITCH_US;
            // A shorter path that costs no more always wins: otherwise a detour taken while
            // the direct link was still on probation would be kept on links whose costs
            // differ by less than the switch margin.
            let shorter = best.1.path.len() < p.len() && best.0 <= cost;
            (held || !(clearly_cheaper || shorter)).then_some((cost, c, p[0]))
        });
        let (cost, c, via) = kept.unwrap_or(best);
        // The confidence of the last update, not decayed by its age: age is this node's
        // own concern, and decaying at every hop would compound along the path.
        let conf = if via == d { 1.0 } else { c.est.conf };
        Some((cost, c.path.clone(), conf))
    }

    pub(super) fn publish(&mut self, now: Instant, full: bool) {
        self.trigger = None;
        self.last_publish = Some(now);
        if full {
            self.collect_garbage(now);
        }
        let mut entries = Vec::new();
        let ds: Vec<NodeId> = self.dests.keys().copied().collect();
        for d in ds {
            let adv = self.advertisement(now, d);
            let dest = self.dests.get_mut(&d).unwrap_or_else(|| unreachable!());
            let send = match (&dest.advertised, &adv) {
                _ if full => adv.is_some(),
                (_, Some(_)) if self.repeat.contains(&d) => true,
                (None, None) => false,
                (Some(o), Some(a)) => {
                    o.1 != a.1
                        || (o.0 - a.0).abs() > (ADVERTISE_RELATIVE * o.0).max(ADVERTISE_ABSOLUTE_US)
                }
                _ => true,
            };
            if send {
                entries.push(match &adv {
                    Some((cost, path, conf)) => Entry {
                        destination: d,
                        cost_us: Some(clamp_us(*cost).min(exchange::WITHDRAWN - 1)),
                        confidence: (conf * f64::from(CONFIDENCE_SCALE)).round() as u32,
                        path: path.clone(),
                    },
                    None => Entry {
                        destination: d,
                        cost_us: None,
                        confidence: 0,
                        path: Vec::new(),
                    },
                });
            }
            if send || full {
                let new_path = adv.as_ref().map(|a| &a.1);
                if dest.advertised.as_ref().map(|a| &a.1) != new_path {
                    dest.advertised_at = Some(now);
                }
                dest.advertised = adv.map(|(c, p, _)| (c, p));
            }
        }
        let wants = if full || self.new_wants {
            self.wants_to_pass_on(now)
        } else {
            Vec::new()
        };
        self.new_wants = false;
        self.repeat.clear();
        self.sequence += 1;
        self.publications += 1;
        self.counters.publications += 1;
        let msg = Estimates {
            sender: self.me,
            sequence: self.sequence,
            full,
            entries,
            wants,
        };
        self.out
            .push_back(Decision::Publish(exchange::encode(&msg)));
    }

    fn wants_to_pass_on(&self, now: Instant) -> Vec<Want> {
        let mut radius: BTreeMap<NodeId, u32> = BTreeMap::new();
        let local = self.cfg.max_hops.saturating_sub(1) as u32;
        for d in &self.local_wants {
            radius.insert(*d, local);
        }
        for nb in self.neighbours.values() {
            for (d, (r, expiry)) in &nb.wants {
                if *r > 0 && *expiry > now && *d != self.me {
                    let e = radius.entry(*d).or_insert(0);
                    *e = (*e).max(r - 1);
                }
            }
        }
        radius
            .into_iter()
            .map(|(destination, radius)| Want {
                destination,
                radius,
            })
            .collect()
    }

    /// Forgets expired wants and destinations nobody wants any more.
    fn collect_garbage(&mut self, now: Instant) {
        for nb in self.neighbours.values_mut() {
            nb.wants.retain(|_, (_, expiry)| *expiry > now);
        }
        let keep: BTreeSet<NodeId> = self
            .local_wants
            .iter()
            .chain(self.neighbours.keys())
            .chain(self.neighbours.values().flat_map(|nb| nb.wants.keys()))
            .copied()
            .collect();
        self.dests.retain(|d, _| keep.contains(d));
    }
}
