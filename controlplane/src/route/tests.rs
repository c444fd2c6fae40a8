//! Router tests: several routers wired together with a simulated clock, instant telemetry
//! and a control channel with a fixed delay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use conflux_shared::id::NodeId;

use super::exchange::{self, Entry, Estimates};
use super::explore::EXPLORE_SHARE;
use super::health::Liveness;
use super::q::{ETA_BASE, Estimate};
use super::*;

fn id(n: u8) -> NodeId {
    NodeId([n; 16])
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const A: u8 = 1;
const B: u8 = 2;
const C: u8 = 3;
const D: u8 = 4;
const E: u8 = 5;

/// Routers joined by links of fixed one-way latency.
struct Net {
    now: Instant,
    routers: BTreeMap<NodeId, Router>,
    links: BTreeMap<(NodeId, NodeId), u32>,
    queue: BTreeMap<(NodeId, NodeId), u32>,
    loss: BTreeMap<(NodeId, NodeId), u32>,
    silent: BTreeSet<(NodeId, NodeId)>,
    inflight: Vec<(Instant, NodeId, NodeId, Vec<u8>)>,
    routes: Vec<(Instant, NodeId, RouteDecision)>,
    lookups: Vec<NodeId>,
    next_telemetry: Instant,
}

impl Net {
    fn new(cfg: RouterConfig, edges: &[(u8, u8, u32)]) -> Self {
        let now = Instant::now();
        let mut links = BTreeMap::new();
        for &(u, v, lat_ms) in edges {
            links.insert((id(u), id(v)), lat_ms * 1000);
            links.insert((id(v), id(u)), lat_ms * 1000);
        }
        let nodes: BTreeSet<NodeId> = links.keys().map(|k| k.0).collect();
        let mut routers = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            // Staggered starts, as real nodes have.
            let mut r = Router::new(*n, cfg.clone(), now + ms(7 * i as u64), 0);
            for (u, v) in links.keys() {
                if u == n {
                    r.add_neighbour(now, *v);
                }
            }
            for d in &nodes {
                r.want(now, *d);
            }
            routers.insert(*n, r);
        }
        let mut net = Self {
            now,
            routers,
            links,
            queue: BTreeMap::new(),
            loss: BTreeMap::new(),
            silent: BTreeSet::new(),
            inflight: Vec::new(),
            routes: Vec::new(),
            lookups: Vec::new(),
            next_telemetry: now,
        };
        net.drain();
        net
    }

    fn drain(&mut self) {
        let mut sends = Vec::new();
        for (n, r) in &mut self.routers {
            while let Some(d) = r.poll_decision() {
                match d {
                    Decision::Route(rd) => self.routes.push((self.now, *n, rd)),
                    Decision::Publish(bytes) => sends.push((*n, bytes)),
                    Decision::LookupRegion(x) => self.lookups.push(x),
                }
            }
        }
        for (from, bytes) in sends {
            for (u, v) in self.links.keys() {
                if *u == from {
                    self.inflight
                        .push((self.now + ms(5), *v, from, bytes.clone()));
                }
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += ms(5);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.inflight.drain(..).partition(|m| m.0 <= now);
            self.inflight = rest;
            for (_, to, from, bytes) in due {
                let r = self.routers.get_mut(&to).unwrap();
                r.handle_neighbour_estimates(now, from, &bytes).unwrap();
            }
            if now >= self.next_telemetry {
                self.next_telemetry = now + ms(100);
                for (&(u, v), &lat) in &self.links {
                    if self.silent.contains(&(u, v)) {
                        continue;
                    }
                    let t = Telemetry {
                        neighbour: v,
                        worker: 0,
                        rtt_us: 2 * lat,
                        loss_ppm: self.loss.get(&(u, v)).copied().unwrap_or(0),
                        bytes: 100_000,
                        packets: 100,
                        queue_depth: self.queue.get(&(u, v)).copied().unwrap_or(0),
                    };
                    self.routers.get_mut(&u).unwrap().handle_telemetry(now, &t);
                }
            }
            for r in self.routers.values_mut() {
                if r.poll_timeout() <= now {
                    r.handle_timeout(now);
                }
            }
            self.drain();
        }
    }

    fn route(&self, from: u8, to: u8) -> &RouteDecision {
        self.routers[&id(from)].installed(id(to)).expect("a route")
    }

    /// Weight of the path whose next hop is `via` in the installed route.
    fn weight(&self, from: u8, to: u8, via: u8) -> u16 {
        self.route(from, to)
            .paths
            .iter()
            .find(|p| p.path[0] == id(via))
            .map_or(0, |p| p.weight)
    }

    fn q(&self, from: u8, to: u8, via: u8) -> f64 {
        self.routers[&id(from)]
            .q_values(self.now, id(to))
            .into_iter()
            .find(|q| q.0[0] == id(via))
            .map_or(f64::INFINITY, |q| q.1)
    }
}

/// A→D: via B 20 ms, via C 30 ms, via E 40 ms.
fn diamond() -> Vec<(u8, u8, u32)> {
    vec![
        (A, B, 10),
        (B, D, 10),
        (A, C, 15),
        (C, D, 15),
        (A, E, 20),
        (E, D, 20),
    ]
}

#[test]
fn update_rule_averages_fresh_estimates_and_adopts_over_stale_ones() {
    let t0 = Instant::now();
    let hl = Duration::from_secs(1);
    let mut e = Estimate::fresh(t0, 10_000.0, 1.0);
    assert_eq!(e.eta(t0, hl, 1.0), ETA_BASE);
    e.learn(t0, hl, 20_000.0, 1.0);
    assert_eq!(e.t_us, 15_000.0);
    // Three half-lives later the old value is worth an eighth: η = 1 − 1/8.
    let later = t0 + Duration::from_secs(3);
    assert!((e.eta(later, hl, 1.0) - 0.875).abs() < 1e-9);
    e.learn(later, hl, 40_000.0, 1.0);
    assert!((e.t_us - (15_000.0 + 0.875 * 25_000.0)).abs() < 1e-6);
    // An unconfident neighbour moves a confident estimate only a little.
    let mut e = Estimate::fresh(t0, 10_000.0, 1.0);
    e.learn(t0, hl, 50_000.0, 0.1);
    assert!((e.t_us - 12_000.0).abs() < 1e-6);
    assert_eq!(e.conf, 0.1, "the neighbour vouches for its estimate");
    // A failed link's estimates are distrusted: the next estimate is taken whole.
    e.distrust();
    e.learn(t0, hl, 70_000.0, 1.0);
    assert_eq!(e.t_us, 70_000.0);
}

#[test]
fn converges_to_the_cheapest_path_and_learns_the_true_costs() {
    let mut net = Net::new(RouterConfig::q_routing(), &diamond());
    net.run(Duration::from_secs(5));
    for (via, want) in [(B, 20_000.0), (C, 30_000.0), (E, 40_000.0)] {
        let q = net.q(A, D, via);
        assert!(
            (q - want).abs() < want * 0.01,
            "Q(D, {via}) = {q}, want {want}"
        );
    }
    assert!(net.weight(A, D, B) >= 950, "{:?}", net.route(A, D));
    // The reverse direction converges as well.
    assert!(net.weight(D, A, B) >= 950, "{:?}", net.route(D, A));
}

#[test]
fn two_equal_paths_both_carry_traffic() {
    let edges = [(A, B, 10), (B, D, 10), (A, C, 10), (C, D, 10)];
    let mut net = Net::new(RouterConfig::q_routing(), &edges);
    net.run(Duration::from_secs(4));
    let (wb, wc) = (net.weight(A, D, B), net.weight(A, D, C));
    assert!(wb.abs_diff(wc) <= 50, "B {wb}, C {wc}");
}

#[test]
fn a_queueing_hop_loses_flows_to_the_other_path() {
    let edges = [(A, B, 10), (B, D, 10), (A, C, 10), (C, D, 10)];
    let mut net = Net::new(RouterConfig::q_routing(), &edges);
    net.run(Duration::from_secs(3));
    // 100 packets per 100 ms: 1 ms each, so 15 queued add 15 ms at B.
    net.queue.insert((id(B), id(D)), 15);
    net.run(Duration::from_secs(3));
    assert!(net.weight(A, D, C) >= 950, "{:?}", net.route(A, D));
    net.queue.clear();
    net.run(Duration::from_secs(3));
    assert!(
        net.weight(A, D, B) >= 300,
        "load gone, B used again: {:?}",
        net.route(A, D)
    );
}

#[test]
fn latency_only_keeps_one_path_and_ignores_load() {
    let edges = [(A, B, 10), (B, D, 10), (A, C, 11), (C, D, 11)];
    let mut net = Net::new(RouterConfig::latency_only(), &edges);
    net.run(Duration::from_secs(3));
    net.queue.insert((id(A), id(B)), 50);
    net.run(Duration::from_secs(2));
    let r = net.route(A, D);
    assert_eq!(r.paths[0].path, vec![id(B), id(D)]);
    assert_eq!(r.paths[0].weight, WEIGHT_TOTAL);
    assert!(r.paths[1..].iter().all(|p| p.weight == 0));
}

/// Cuts A's link to B (no more telemetry at all, or total loss), checks A moves to the
/// next-best path within two seconds, restores it, checks B is explored then trusted.
fn failover(silence_not_loss: bool) {
    let mut net = Net::new(RouterConfig::q_routing(), &diamond());
    net.run(Duration::from_secs(4));
    assert!(net.weight(A, D, B) >= 950);
    let cut = net.now;
    if silence_not_loss {
        net.silent.insert((id(A), id(B)));
    } else {
        net.loss.insert((id(A), id(B)), 1_000_000);
    }
    let mut moved = None;
    for _ in 0..60 {
        net.run(ms(50));
        if moved.is_none() && net.weight(A, D, B) == 0 {
            moved = Some(net.now - cut);
        }
    }
    let moved = moved.expect("traffic left the failed hop");
    assert!(moved <= Duration::from_secs(2), "moved after {moved:?}");
    assert_eq!(
        net.routers[&id(A)].neighbour_state(id(B)),
        Some(Liveness::Down)
    );
    assert!(
        net.weight(A, D, C) >= 900,
        "next best takes over: {:?}",
        net.route(A, D)
    );
    net.silent.clear();
    net.loss.clear();
    net.run(ms(500));
    let w = net.weight(A, D, B);
    assert!(w > 0, "explored again: {:?}", net.route(A, D));
    assert!(
        f64::from(w) <= EXPLORE_SHARE * f64::from(WEIGHT_TOTAL) + 1.0,
        "only the exploration share on probation: {w}"
    );
    net.run(Duration::from_secs(4));
    assert!(
        net.weight(A, D, B) >= 950,
        "trusted again: {:?}",
        net.route(A, D)
    );
}

#[test]
fn a_silent_hop_is_abandoned_within_two_seconds_and_explored_when_back() {
    failover(true);
}

#[test]
fn a_lossy_hop_is_abandoned_within_two_seconds_and_explored_when_back() {
    failover(false);
}

#[test]
fn a_failure_two_hops_away_reroutes_the_source() {
    let mut net = Net::new(RouterConfig::q_routing(), &diamond());
    net.run(Duration::from_secs(4));
    let cut = net.now;
    net.silent.insert((id(B), id(D)));
    net.silent.insert((id(D), id(B)));
    let mut moved = None;
    for _ in 0..60 {
        net.run(ms(50));
        let through_bd = net
            .route(A, D)
            .paths
            .iter()
            .any(|p| p.weight > 0 && p.path == [id(B), id(D)]);
        if moved.is_none() && !through_bd {
            moved = Some(net.now - cut);
        }
    }
    let moved = moved.expect("the source left the broken path");
    assert!(moved <= Duration::from_secs(2), "moved after {moved:?}");
}

#[test]
fn an_excluded_region_is_never_relayed_through() {
    let mut net = Net::new(RouterConfig::q_routing(), &diamond());
    let a = net.routers.get_mut(&id(A)).unwrap();
    let now = net.now;
    for (n, r) in [(B, "us"), (C, "eu"), (E, "eu"), (D, "us")] {
        a.set_region(now, id(n), Some(Region::new(r)));
    }
    a.set_geo(
        now,
        GeoPolicy {
            exclude: [Region::new("us")].into(),
            ..GeoPolicy::open()
        },
    );
    net.run(Duration::from_secs(5));
    let from_a: Vec<_> = net.routes.iter().filter(|r| r.1 == id(A)).collect();
    assert!(!from_a.is_empty());
    for (_, _, rd) in from_a {
        for p in &rd.paths {
            let relays = &p.path[..p.path.len() - 1];
            assert!(!relays.contains(&id(B)), "relayed through B: {rd:?}");
        }
    }
    // The destination in an excluded region is still reachable, and B itself directly.
    assert!(net.weight(A, D, C) >= 950, "{:?}", net.route(A, D));
    assert_eq!(net.route(A, B).paths[0].path, vec![id(B)]);
}

#[test]
fn an_unknown_relay_region_is_looked_up_and_not_used_meanwhile() {
    let mut net = Net::new(RouterConfig::q_routing(), &diamond());
    let now = net.now;
    let a = net.routers.get_mut(&id(A)).unwrap();
    a.set_geo(
        now,
        GeoPolicy {
            exclude: [Region::new("mars")].into(),
            ..GeoPolicy::open()
        },
    );
    net.run(Duration::from_secs(3));
    assert!(net.lookups.contains(&id(B)) && net.lookups.contains(&id(C)));
    assert!(
        net.routers[&id(A)]
            .installed(id(D))
            .is_none_or(|r| r.paths.is_empty())
    );
    let a = net.routers.get_mut(&id(A)).unwrap();
    for n in [B, C, E] {
        a.set_region(now, id(n), Some(Region::new("earth")));
    }
    net.run(Duration::from_secs(2));
    assert!(net.weight(A, D, B) >= 950, "{:?}", net.route(A, D));
}

#[test]
fn a_preferred_region_wins_over_a_slightly_faster_path() {
    let edges = [(A, B, 10), (B, D, 10), (A, C, 12), (C, D, 12)];
    let mut net = Net::new(RouterConfig::q_routing(), &edges);
    let now = net.now;
    let a = net.routers.get_mut(&id(A)).unwrap();
    a.set_region(now, id(B), Some(Region::new("us")));
    a.set_region(now, id(C), Some(Region::new("eu")));
    a.set_geo(
        now,
        GeoPolicy {
            prefer: [Region::new("eu")].into(),
            ..GeoPolicy::open()
        },
    );
    net.run(Duration::from_secs(4));
    assert!(net.weight(A, D, C) >= 950, "{:?}", net.route(A, D));
}

#[test]
fn a_path_through_this_node_is_not_learned() {
    let t0 = Instant::now();
    let mut a = Router::new(id(A), RouterConfig::q_routing(), t0, 0);
    a.add_neighbour(t0, id(B));
    a.want(t0, id(D));
    let msg = Estimates {
        sender: id(B),
        sequence: 1,
        full: false,
        entries: vec![Entry {
            destination: id(D),
            cost_us: Some(5_000),
            confidence: 1000,
            path: vec![id(A), id(D)],
        }],
        wants: vec![],
    };
    a.handle_neighbour_estimates(t0, id(B), &exchange::encode(&msg))
        .unwrap();
    assert!(a.q_values(t0, id(D)).is_empty());
}

#[test]
fn bad_stale_and_foreign_estimates_are_refused_and_counted() {
    let t0 = Instant::now();
    let mut a = Router::new(id(A), RouterConfig::q_routing(), t0, 0);
    a.add_neighbour(t0, id(B));
    let msg = |sequence| Estimates {
        sender: id(B),
        sequence,
        full: true,
        entries: vec![],
        wants: vec![],
    };
    assert_eq!(
        a.handle_neighbour_estimates(t0, id(C), &exchange::encode(&msg(1))),
        Err(ExchangeError::NotNeighbour)
    );
    assert!(
        a.handle_neighbour_estimates(t0, id(B), b"\xff\xff")
            .is_err()
    );
    a.handle_neighbour_estimates(t0, id(B), &exchange::encode(&msg(5)))
        .unwrap();
    assert_eq!(
        a.handle_neighbour_estimates(t0, id(B), &exchange::encode(&msg(5))),
        Err(ExchangeError::Stale { got: 5, last: 5 })
    );
    let c = a.counters();
    assert_eq!((c.not_neighbour, c.rejected, c.stale), (1, 1, 1));
}

#[test]
fn a_tether_reported_down_is_abandoned_at_once() {
    let mut net = Net::new(RouterConfig::q_routing(), &diamond());
    net.run(Duration::from_secs(4));
    let now = net.now;
    net.routers
        .get_mut(&id(A))
        .unwrap()
        .handle_tether_down(now, id(B));
    net.drain();
    assert_eq!(net.weight(A, D, B), 0, "{:?}", net.route(A, D));
}

#[test]
fn wants_travel_no_farther_than_the_path_limit() {
    // A line 1-2-…-12 where only node 1 has traffic, for nodes 5 (4 hops) and 6 (5 hops).
    let cfg = RouterConfig {
        max_hops: 4,
        ..RouterConfig::q_routing()
    };
    let edges: Vec<(u8, u8, u32)> = (1..12).map(|i| (i, i + 1, 1)).collect();
    let mut net = Net::new(cfg.clone(), &edges);
    let now = net.now;
    net.routers.clear();
    for i in 1..=12u8 {
        let mut r = Router::new(id(i), cfg.clone(), now, 0);
        for (u, v) in net.links.keys() {
            if *u == id(i) {
                r.add_neighbour(now, *v);
            }
        }
        net.routers.insert(id(i), r);
    }
    let one = net.routers.get_mut(&id(1)).unwrap();
    one.want(now, id(5));
    one.want(now, id(6));
    net.run(Duration::from_secs(3));
    assert_eq!(net.route(1, 5).paths[0].path, [2, 3, 4, 5].map(id));
    assert!(net.route(1, 6).paths.is_empty(), "6 is beyond the limit");
    let tracks = |n: u8, d: u8| net.routers[&id(n)].tracked().any(|t| t == id(d));
    assert!(tracks(4, 6) && tracks(5, 6));
    assert!(
        !tracks(9, 5) && !tracks(9, 6),
        "the want stopped within the limit"
    );
}
