//! Overlays of three nodes driven in memory: signals pass between them, the data plane is
//! a list of commands, the node core is played by the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::{NodeId, StreamId};
use conflux_shared::wire::record::{TetherId, TetherState};

use super::core::{Action, Command, Directory, Overlay, OverlayConfig};
use crate::node::core::Direction;

struct Dir {
    addrs: BTreeMap<NodeId, IpAddr>,
    forbidden: BTreeSet<(NodeId, NodeId)>,
    me: NodeId,
}

impl Directory for Dir {
    fn peer_for_address(&self, ip: IpAddr) -> Option<NodeId> {
        self.addrs.iter().find(|(_, a)| **a == ip).map(|(n, _)| *n)
    }
    fn address_of(&self, peer: NodeId) -> Option<IpAddr> {
        self.addrs.get(&peer).copied()
    }
    fn allows(&self, peer: NodeId) -> bool {
        self.pair_allowed(self.me, peer)
    }
    fn pair_allowed(&self, a: NodeId, b: NodeId) -> bool {
        !self.forbidden.contains(&(a, b)) && !self.forbidden.contains(&(b, a))
    }
    fn relays(&self) -> Vec<NodeId> {
        vec![id(2)].into_iter().filter(|r| *r != self.me).collect()
    }
    fn region_of(&self, _peer: NodeId) -> Option<String> {
        None
    }
    fn routes_of(&self, _peer: NodeId) -> Vec<(IpAddr, u8)> {
        Vec::new()
    }
    fn same_owner(&self, _peer: NodeId) -> bool {
        true
    }
    fn own_portals(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

fn id(b: u8) -> NodeId {
    NodeId([b; 16])
}

fn cfg(relay: bool) -> OverlayConfig {
    OverlayConfig {
        idle_timeout: Duration::from_secs(10),
        rekey_interval: Duration::from_secs(4),
        relay,
        tether_timeout: Duration::from_secs(3),
        plain_tethers: false,
        fingerprint: "sha-256 00".into(),
        candidates: vec!["10.0.0.1:51820".into()],
        ports: Vec::new(),
        router: crate::route::RouterConfig::q_routing(),
        geo: crate::route::GeoPolicy::open(),
        unix_ms_at_start: 1_000_000_000,
        local: Vec::new(),
        portal: false,
        rift: None,
    }
}

/// Three nodes A (1), R (2), C (3); A and C cannot make a tether to each other.
struct World {
    nodes: BTreeMap<NodeId, (Overlay, Dir)>,
    commands: BTreeMap<NodeId, Vec<Command>>,
    /// (from, to) pairs whose tethers never come up.
    blocked: BTreeSet<(NodeId, NodeId)>,
    now: Instant,
    wants: Vec<(NodeId, NodeId)>,
    /// Requests answered later (relayed set-ups).
    held_requests: Vec<(NodeId, u64)>,
    start: Instant,
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        let addrs: BTreeMap<NodeId, IpAddr> = (1..=3)
            .map(|i| (id(i), format!("100.64.0.{i}").parse().unwrap()))
            .collect();
        let nodes = (1..=3)
            .map(|i| {
                let mut o = Overlay::new(cfg(i == 2), id(i), now);
                o.set_unix_time(1_000_000);
                let d = Dir {
                    addrs: addrs.clone(),
                    forbidden: BTreeSet::new(),
                    me: id(i),
                };
                (id(i), (o, d))
            })
            .collect();
        Self {
            nodes,
            commands: BTreeMap::new(),
            blocked: BTreeSet::new(),
            now,
            wants: Vec::new(),
            held_requests: Vec::new(),
            start: now,
        }
    }

    /// Runs every node's actions until nothing moves; tethers come up at once unless blocked.
    fn settle(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for me in ids {
                while let Some(a) = self.nodes.get_mut(&me).unwrap().0.poll_action() {
                    moved = true;
                    self.act(me, a);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the overlays never settled");
    }

    fn tether_peer(&self, node: NodeId, tether: TetherId) -> NodeId {
        let o = &self.nodes[&node].0;
        *o.tethers
            .iter()
            .find(|(_, t)| t.holds(tether))
            .map(|(p, _)| p)
            .unwrap()
    }

    fn act(&mut self, me: NodeId, a: Action) {
        let now = self.now;
        match a {
            Action::Command(c) => {
                if let Command::OpenTether { open: o, .. } = &c {
                    let peer = self.tether_peer(me, o.tether);
                    let state = if self.blocked.contains(&(me, peer)) {
                        TetherState::Closed
                    } else {
                        TetherState::Up
                    };
                    let tether = o.tether;
                    let (ov, d) = self.nodes.get_mut(&me).unwrap();
                    ov.handle_tether_state(now, tether, state, d);
                }
                self.commands.entry(me).or_default().push(c);
            }
            Action::Request {
                to,
                request,
                payload,
            } => {
                let (ov, d) = self.nodes.get_mut(&to).unwrap();
                let reply =
                    ov.handle_signal(now, me, payload, request + 1000 * u64::from(me.0[0]), d);
                if let Some(r) = reply {
                    let (ov, d) = self.nodes.get_mut(&me).unwrap();
                    ov.handle_reply(now, request, Some(r), d);
                } else {
                    self.held_requests.push((me, request));
                }
            }
            Action::Notify { to, payload } => {
                let (ov, d) = self.nodes.get_mut(&to).unwrap();
                assert!(ov.handle_signal(now, me, payload, 0, d).is_none());
            }
            Action::Reply { token, payload } => {
                let from = id((token / 1000) as u8);
                let request = token % 1000;
                self.held_requests.retain(|h| *h != (from, request));
                let (ov, d) = self.nodes.get_mut(&from).unwrap();
                ov.handle_reply(now, request, Some(payload), d);
            }
            Action::Want(peer) => self.wants.push((me, peer)),
            Action::Unwant(_) | Action::DropInbound(_) | Action::Rekey(_) => {}
        }
    }

    /// Plays the node cores: a stream from `src` to `dst` is up on both ends.
    fn stream(&mut self, src: NodeId, dst: NodeId, sid: u8) {
        let now = self.now;
        let key = || StreamKey {
            key: [sid; 32],
            nonce_base: [sid; 12],
        };
        let (ov, d) = self.nodes.get_mut(&dst).unwrap();
        ov.stream_up(
            now,
            src,
            Direction::In,
            StreamId([sid; 16]),
            key(),
            0,
            None,
            d,
        );
        let (ov, d) = self.nodes.get_mut(&src).unwrap();
        ov.stream_up(
            now,
            dst,
            Direction::Out,
            StreamId([sid; 16]),
            key(),
            0,
            None,
            d,
        );
    }

    fn routes(&self, node: NodeId) -> Vec<(IpAddr, Vec<(TetherId, u32)>)> {
        self.commands
            .get(&node)
            .into_iter()
            .flatten()
            .filter_map(|c| match c {
                Command::InstallRoute {
                    destination, hops, ..
                } => Some((
                    *destination,
                    hops.iter()
                        .map(|(ids, label, _)| (ids[0], *label))
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_miss_asks_for_a_stream_and_a_direct_route_follows() {
    let mut w = World::new();
    let (a, c) = (id(1), id(3));
    let now = w.now;
    let (ov, d) = w.nodes.get_mut(&a).unwrap();
    ov.handle_miss(now, "100.64.0.3".parse().unwrap(), d);
    w.settle();
    assert!(
        w.wants.contains(&(a, c)),
        "the miss asks the core for a stream"
    );
    w.stream(a, c, 7);
    w.settle();
    assert!(
        w.wants.contains(&(c, a)),
        "the receiver asks for the way back"
    );
    let routes = w.routes(a);
    assert_eq!(routes.len(), 1, "{routes:?}");
    let (dst, hops) = &routes[0];
    assert_eq!(*dst, "100.64.0.3".parse::<IpAddr>().unwrap());
    let c_label = w.nodes[&c].0.inb[&a].label;
    assert_eq!(hops[0].1, c_label, "the first hop label is the one C chose");
    let tethers_a = w.nodes[&a].0.tethers();
    let to_c: Vec<_> = tethers_a
        .iter()
        .filter(|t| t.peer == c.to_string())
        .collect();
    assert_eq!(to_c.len(), 1, "{tethers_a:?}");
    assert_eq!(to_c[0].state, "up");
    assert!(
        tethers_a.iter().any(|t| t.peer == id(2).to_string()),
        "a keeps a tether to the relay for other paths: {tethers_a:?}"
    );
    let c_to_a = w.nodes[&c]
        .0
        .tethers()
        .into_iter()
        .filter(|t| t.peer == a.to_string())
        .count();
    assert_eq!(c_to_a, 1, "one tether, shared by both ends");
}

#[test]
fn no_direct_tether_goes_through_the_relay() {
    let mut w = World::new();
    let (a, r, c) = (id(1), id(2), id(3));
    w.blocked.insert((a, c));
    w.blocked.insert((c, a));
    w.stream(a, c, 9);
    w.settle();
    let routes = w.routes(a);
    let to_c: Vec<_> = routes
        .iter()
        .filter(|(d, _)| *d == "100.64.0.3".parse::<IpAddr>().unwrap())
        .collect();
    assert_eq!(to_c.len(), 1, "{routes:?}");
    let relay_label = to_c[0].1[0].1;
    let relays: Vec<_> = w.commands[&r]
        .iter()
        .filter_map(|c| match c {
            Command::InstallRelay {
                in_label,
                out_label,
                ..
            } => Some((*in_label, *out_label)),
            _ => None,
        })
        .collect();
    assert_eq!(relays.len(), 1, "R installed one relay entry");
    assert_eq!(relays[0].0, relay_label, "A sends with R's inbound label");
    assert_eq!(
        relays[0].1, w.nodes[&c].0.inb[&a].label,
        "R forwards with C's label"
    );
    let keys_at_r = w.commands[&r]
        .iter()
        .filter(|c| matches!(c, Command::InstallStream { stream_id, .. } if *stream_id == StreamId([9; 16])))
        .count();
    assert_eq!(keys_at_r, 0, "R never holds the A→C stream key");
    assert_eq!(
        w.nodes[&a]
            .0
            .routes()
            .iter()
            .filter(|v| v.via.is_some())
            .count(),
        1
    );
}

#[test]
fn a_relay_refuses_what_policy_forbids_and_non_relays_refuse_all() {
    let mut w = World::new();
    let (a, r, c) = (id(1), id(2), id(3));
    w.blocked.insert((a, c));
    w.blocked.insert((c, a));
    w.nodes.get_mut(&r).unwrap().1.forbidden.insert((a, c));
    w.stream(a, r, 1);
    w.settle();
    w.stream(a, c, 9);
    w.settle();
    let to_c = w
        .routes(a)
        .into_iter()
        .filter(|(d, _)| *d == "100.64.0.3".parse::<IpAddr>().unwrap())
        .count();
    assert_eq!(to_c, 0, "no route to C when R may not join A and C");
    assert!(w.nodes[&r].0.status().setups_refused >= 1);
}

#[test]
fn idle_streams_dissolve_and_busy_ones_rekey() {
    let mut w = World::new();
    let (a, c) = (id(1), id(3));
    w.stream(a, c, 7);
    w.settle();
    let t0 = w.now;
    let dp_id = StreamId([7; 16]);
    let (ov, d) = w.nodes.get_mut(&a).unwrap();
    // Busy past the rekey interval: a rekey is asked for, not a dissolve.
    ov.handle_activity(
        t0 + Duration::from_secs(5),
        dp_id,
        conflux_shared::wire::record::Direction::Egress,
        10,
        1000,
    );
    ov.handle_timeout(t0 + Duration::from_secs(5), d);
    let mut acts = Vec::new();
    while let Some(x) = ov.poll_action() {
        acts.push(x);
    }
    assert!(
        acts.iter()
            .any(|x| matches!(x, Action::Rekey(p) if *p == c)),
        "{acts:?}"
    );
    assert!(!acts.iter().any(|x| matches!(x, Action::Unwant(_))));
    // Then silent for the idle timeout.
    ov.handle_timeout(t0 + Duration::from_secs(16), d);
    let mut acts = Vec::new();
    while let Some(x) = ov.poll_action() {
        acts.push(x);
    }
    assert!(
        acts.iter()
            .any(|x| matches!(x, Action::Unwant(p) if *p == c)),
        "{acts:?}"
    );
    ov.stream_down(t0 + Duration::from_secs(16), c, Direction::Out, false);
    let mut removed_route = false;
    while let Some(x) = ov.poll_action() {
        removed_route |= matches!(x, Action::Command(Command::RemoveRoute { .. }));
    }
    assert!(removed_route, "the route goes with its stream");
}

fn drain(ov: &mut Overlay) -> Vec<Action> {
    std::iter::from_fn(|| ov.poll_action()).collect()
}

fn offer_of(actions: &[Action]) -> (u64, super::signal::Payload) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Request {
                request,
                payload: p @ super::signal::Payload::Offer(_),
                ..
            } => Some((*request, p.clone())),
            _ => None,
        })
        .expect("an offer")
}

fn opens(actions: &[Action]) -> Vec<conflux_shared::proto::TetherOpen> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Command(Command::OpenTether { open, .. }) => Some(open.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn crossing_offers_make_one_tether_and_a_later_offer_replaces_it() {
    let mut w = World::new();
    let (a, c) = (id(1), id(3));
    let t0 = w.now;
    let (mut oa, da) = w.nodes.remove(&a).unwrap();
    let (mut oc, dc) = w.nodes.remove(&c).unwrap();
    // Both want a tether at once; the offers cross.
    oa.handle_miss(t0, "100.64.0.3".parse().unwrap(), &da);
    oc.handle_miss(t0, "100.64.0.1".parse().unwrap(), &dc);
    let (req_a, offer_a) = offer_of(&drain(&mut oa));
    let (req_c, offer_c) = offer_of(&drain(&mut oc));
    // c answers a's offer first, so a's tether is already opening when c's offer lands.
    let answer_by_c = oc.handle_signal(t0, a, offer_a, 1, &dc).unwrap();
    let opened_c = opens(&drain(&mut oc));
    oa.handle_reply(t0, req_a, Some(answer_by_c), &da);
    let answer_by_a = oa.handle_signal(t0, c, offer_c, 1, &da).unwrap();
    assert!(
        matches!(&answer_by_a, super::signal::Payload::Answer(x) if !x.accepted),
        "the smaller id keeps its own tether while it is being made"
    );
    let opened_a = opens(&drain(&mut oa));
    oc.handle_reply(t0, req_c, Some(answer_by_a), &dc);
    assert!(opens(&drain(&mut oc)).is_empty(), "c opens nothing more");
    assert_eq!(
        (opened_a.len(), opened_c.len()),
        (1, 1),
        "one tether each side"
    );
    let (ta, tc) = (&opened_a[0], &opened_c[0]);
    assert!(ta.controlling && !tc.controlling);
    assert_eq!(
        (ta.remote_ufrag.as_str(), tc.remote_ufrag.as_str()),
        (tc.local_ufrag.as_str(), ta.local_ufrag.as_str()),
        "both ends hold each other's credentials"
    );
    assert_eq!(oa.tethers().len(), 1);
    assert_eq!(oc.tethers().len(), 1);

    // Much later c offers again (it restarted): a's up tether gives way to the new one.
    oa.handle_tether_state(t0, ta.tether, TetherState::Up, &da);
    drain(&mut oa);
    let later = t0 + Duration::from_secs(30);
    let mut fresh = Overlay::new(cfg(false), c, later);
    fresh.set_unix_time(1_000_030);
    fresh.handle_miss(later, "100.64.0.1".parse().unwrap(), &dc);
    let (_, offer) = offer_of(&drain(&mut fresh));
    let answer = oa.handle_signal(later, c, offer, 2, &da).unwrap();
    assert!(matches!(answer, super::signal::Payload::Answer(x) if x.accepted));
    let acts = drain(&mut oa);
    assert!(
        acts.iter()
            .any(|x| matches!(x, Action::Command(Command::RemoveTether { tether }) if *tether == ta.tether)),
        "the old tether goes"
    );
    assert_eq!(opens(&acts).len(), 1, "the new one opens");
}

fn opens_on(actions: &[Action]) -> Vec<(u16, conflux_shared::proto::TetherOpen)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Command(Command::OpenTether { worker, open }) => Some((*worker, open.clone())),
            _ => None,
        })
        .collect()
}

/// Nodes 1 and 3 of a fresh world, each with its directory.
#[allow(clippy::type_complexity)]
fn nodes_1_and_3() -> (Instant, NodeId, NodeId, Overlay, Dir, Overlay, Dir) {
    let w = World::new();
    let (a, c) = (id(1), id(3));
    let mut nodes = w.nodes;
    let (oa, da) = nodes.remove(&a).unwrap();
    let (oc, dc) = nodes.remove(&c).unwrap();
    (w.now, a, c, oa, da, oc, dc)
}

/// Node 1 with two workers (host candidate `host`, ports 7000 and 7001) and node 3 with
/// one (10.0.0.3:9000), each with its directory.
#[allow(clippy::type_complexity)]
fn two_and_one_workers(host: &str) -> (Instant, NodeId, NodeId, Overlay, Dir, Overlay, Dir) {
    let (t0, a, c, _, da, _, dc) = nodes_1_and_3();
    let mut two = cfg(false);
    two.candidates = vec![host.into()];
    two.ports = vec![7000, 7001];
    let mut one = cfg(false);
    one.candidates = vec!["10.0.0.3:9000".into()];
    one.ports = vec![9000];
    let mut oa = Overlay::new(two, a, t0);
    let mut oc = Overlay::new(one, c, t0);
    oa.set_unix_time(1_000_000);
    oc.set_unix_time(1_000_000);
    (t0, a, c, oa, da, oc, dc)
}

#[test]
fn a_tether_between_two_and_one_workers_has_an_association_on_every_worker() {
    let (t0, a, _c, mut oa, da, mut oc, dc) = two_and_one_workers("10.0.0.1:7000");

    oa.handle_miss(t0, "100.64.0.3".parse().unwrap(), &da);
    let (req, offer) = offer_of(&drain(&mut oa));
    let answer = oc.handle_signal(t0, a, offer, 1, &dc).unwrap();
    let on_c = opens_on(&drain(&mut oc));
    oa.handle_reply(t0, req, Some(answer), &da);
    let on_a = opens_on(&drain(&mut oa));

    assert_eq!(
        on_a.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        vec![0, 1],
        "the two-worker end holds one association on each worker"
    );
    assert_eq!(
        on_c.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        vec![0, 0],
        "the one-worker end holds both on its only worker"
    );
    for k in 0..2 {
        let (ta, tc) = (&on_a[k].1, &on_c[k].1);
        assert_eq!(ta.remote_ufrag, tc.local_ufrag, "association {k}");
        assert_eq!(tc.remote_ufrag, ta.local_ufrag, "association {k}");
        assert_eq!(ta.candidates, vec!["10.0.0.3:9000".to_string()]);
    }
    assert_ne!(on_a[0].1.local_ufrag, on_a[1].1.local_ufrag);
    assert_ne!(on_a[0].1.tether, on_a[1].1.tether);
    assert_eq!(
        (on_c[0].1.candidates.clone(), on_c[1].1.candidates.clone()),
        (
            vec!["10.0.0.1:7000".to_string()],
            vec!["10.0.0.1:7001".to_string()]
        ),
        "each association reaches its own worker's port"
    );

    // The tether is up, and the route installed, only when both associations are.
    oa.handle_tether_state(t0, on_a[0].1.tether, TetherState::Up, &da);
    assert_eq!(oa.tethers()[0].state, "opening");
    oa.handle_tether_state(t0, on_a[1].1.tether, TetherState::Up, &da);
    assert_eq!(oa.tethers()[0].state, "up");

    // One association failing takes the whole tether down, and every one is removed.
    drain(&mut oa);
    oa.handle_tether_state(t0, on_a[1].1.tether, TetherState::Closed, &da);
    let removed: Vec<TetherId> = drain(&mut oa)
        .iter()
        .filter_map(|x| match x {
            Action::Command(Command::RemoveTether { tether }) => Some(*tether),
            _ => None,
        })
        .collect();
    assert_eq!(removed, vec![on_a[0].1.tether, on_a[1].1.tether]);
}

#[test]
fn an_offer_with_impossible_worker_ports_is_declined() {
    let (t0, a, _, mut oa, da, mut oc, dc) = nodes_1_and_3();
    oa.handle_miss(t0, "100.64.0.3".parse().unwrap(), &da);
    let (_, offer) = offer_of(&drain(&mut oa));
    let super::signal::Payload::Offer(mut bad) = offer else {
        panic!("an offer");
    };
    bad.ports = vec![0, 70_000];
    let answer = oc
        .handle_signal(t0, a, super::signal::Payload::Offer(bad), 1, &dc)
        .unwrap();
    assert!(matches!(answer, super::signal::Payload::Answer(x) if !x.accepted));
    assert!(opens(&drain(&mut oc)).is_empty());
}

impl World {
    /// Lets `d` pass in 100 ms steps: every up tether reports telemetry (1 ms RTT, no loss)
    /// from each end, and every node runs its timers.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(100);
            let now = self.now;
            for (ov, dir) in self.nodes.values_mut() {
                let ids: Vec<TetherId> = ov
                    .tethers()
                    .iter()
                    .filter(|t| t.state == "up")
                    .map(|t| t.id)
                    .collect();
                for t in ids {
                    let body = conflux_shared::wire::record::TelemetryBody::new(
                        t, 0, 1_000, 0, 10_000, 10, 0,
                    );
                    ov.handle_telemetry(now, t, &body, dir);
                }
                ov.set_unix_time(1_000_000 + (now - self.start).as_secs());
                ov.handle_timeout(now, dir);
            }
            self.settle();
        }
    }
}

#[test]
fn the_router_keeps_a_standby_through_the_relay_and_fails_over_without_a_round_trip() {
    let mut w = World::new();
    let (a, r, c) = (id(1), id(2), id(3));
    let now = w.now;
    let (ov, d) = w.nodes.get_mut(&a).unwrap();
    ov.handle_miss(now, "100.64.0.3".parse().unwrap(), d);
    w.settle();
    w.stream(a, c, 7);
    w.settle();
    w.run_for(Duration::from_secs(8));
    let view = w.nodes[&a].0.routes();
    let to_c = view
        .iter()
        .find(|v| v.destination == c.to_string())
        .expect("a route to c");
    assert!(
        to_c.paths.iter().any(|p| p.starts_with("direct up")),
        "{to_c:?}"
    );
    assert!(
        to_c.paths
            .iter()
            .any(|p| p.starts_with(&format!("via {r} up"))),
        "the relay path is set up too: {to_c:?}"
    );
    // The direct tether dies: the next route written goes through the relay at once.
    let direct = w.nodes[&a]
        .0
        .tethers()
        .into_iter()
        .find(|t| t.peer == c.to_string())
        .unwrap()
        .id;
    w.commands.clear();
    let t = w.now;
    let (ov, d) = w.nodes.get_mut(&a).unwrap();
    ov.handle_tether_state(t, direct, TetherState::Down, d);
    let acts = drain(ov);
    let installs: Vec<_> = acts
        .iter()
        .filter_map(|x| match x {
            Action::Command(Command::InstallRoute { hops, .. }) => Some(hops.clone()),
            _ => None,
        })
        .collect();
    let relay_label = w.nodes[&r]
        .0
        .relays
        .values()
        .map(|e| e.in_label)
        .collect::<Vec<_>>();
    let last = installs.last().expect("the route is rewritten at once");
    assert_eq!(last.len(), 1, "{last:?}");
    assert!(relay_label.contains(&last[0].1), "through r: {last:?}");
}

/// A directory of portals with regions, for the rift's choice.
struct Portals {
    regions: BTreeMap<NodeId, &'static str>,
}

impl Directory for Portals {
    fn peer_for_address(&self, _ip: IpAddr) -> Option<NodeId> {
        None
    }
    fn address_of(&self, peer: NodeId) -> Option<IpAddr> {
        self.regions
            .contains_key(&peer)
            .then(|| format!("100.64.0.{}", peer.0[0]).parse().unwrap())
    }
    fn allows(&self, peer: NodeId) -> bool {
        self.regions.contains_key(&peer)
    }
    fn pair_allowed(&self, _a: NodeId, _b: NodeId) -> bool {
        true
    }
    fn relays(&self) -> Vec<NodeId> {
        Vec::new()
    }
    fn region_of(&self, peer: NodeId) -> Option<String> {
        self.regions.get(&peer).map(|r| (*r).to_owned())
    }
    fn routes_of(&self, _peer: NodeId) -> Vec<(IpAddr, u8)> {
        Vec::new()
    }
    fn same_owner(&self, _peer: NodeId) -> bool {
        true
    }
    fn own_portals(&self) -> Vec<NodeId> {
        self.regions.keys().copied().collect()
    }
}

#[test]
fn a_rift_never_exits_through_an_excluded_region_and_moves_when_its_portal_goes() {
    let now = Instant::now();
    let mut c = cfg(false);
    c.rift = Some(None);
    c.geo = crate::route::GeoPolicy {
        exclude: [crate::route::Region::new("bad")].into(),
        ..crate::route::GeoPolicy::open()
    };
    let mut ov = Overlay::new(c, id(1), now);
    let mut dir = Portals {
        regions: [(id(2), "bad"), (id(3), "good"), (id(4), "good")].into(),
    };
    ov.choose_exit(now, &dir);
    assert_eq!(
        ov.exit(),
        Some(id(3)),
        "the cheapest allowed portal (ties by id)"
    );
    // The portal goes away: the rift moves to the next allowed one, never to "bad".
    dir.regions.remove(&id(3));
    ov.choose_exit(now, &dir);
    assert_eq!(ov.exit(), Some(id(4)));
    dir.regions.remove(&id(4));
    ov.choose_exit(now, &dir);
    assert_eq!(ov.exit(), None, "only an excluded portal is left");
}

#[test]
fn reflexive_candidates_reach_each_worker_trickle_later_and_a_move_offers_anew() {
    let (t0, a, c, mut oa, da, mut oc, dc) = two_and_one_workers("192.168.1.2:7000");

    // a is behind a NAT that maps each worker's socket to its own public port.
    oa.set_reflexive(vec![
        "1 203.0.113.1:40001".into(),
        "0 203.0.113.1:40000".into(),
        "bogus".into(),
    ]);
    oa.handle_miss(t0, "100.64.0.3".parse().unwrap(), &da);
    let (req, offer) = offer_of(&drain(&mut oa));
    match &offer {
        super::signal::Payload::Offer(o) => assert_eq!(
            o.reflexive,
            vec!["0 203.0.113.1:40000", "1 203.0.113.1:40001"]
        ),
        other => panic!("{other:?}"),
    }
    let answer = oc.handle_signal(t0, a, offer, 1, &dc).unwrap();
    let on_c = opens_on(&drain(&mut oc));
    assert_eq!(
        on_c.iter()
            .map(|(_, o)| o.candidates.clone())
            .collect::<Vec<_>>(),
        vec![
            vec!["192.168.1.2:7000".to_string(), "203.0.113.1:40000".into()],
            vec!["192.168.1.2:7001".to_string(), "203.0.113.1:40001".into()],
        ],
        "each association gets its own worker's host and NAT mapping"
    );
    oa.handle_reply(t0, req, Some(answer), &da);
    let on_a = opens_on(&drain(&mut oa));

    // c learns its own mapping after answering: a hears it at once, on both associations.
    oc.set_reflexive(vec!["0 198.51.100.9:9000".into()]);
    let trickle = drain(&mut oc)
        .into_iter()
        .find_map(|x| match x {
            Action::Notify { to, payload } if to == a => Some(payload),
            _ => None,
        })
        .expect("a trickle to a");
    assert!(oa.handle_signal(t0, c, trickle, 2, &da).is_none());
    let added: Vec<(u16, TetherId, Vec<String>)> = drain(&mut oa)
        .into_iter()
        .filter_map(|x| match x {
            Action::Command(Command::TetherCandidates { worker, candidates }) => {
                Some((worker, candidates.tether, candidates.candidates))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        vec![
            (0, on_a[0].1.tether, vec!["198.51.100.9:9000".to_string()]),
            (1, on_a[1].1.tether, vec!["198.51.100.9:9000".to_string()]),
        ]
    );

    // a gains an address: nothing that works is touched.
    for (_, o) in &on_a {
        oa.handle_tether_state(t0, o.tether, TetherState::Up, &da);
    }
    drain(&mut oa);
    oa.set_host_candidates(t0, vec!["192.168.1.2:7000".into(), "10.9.9.9:7000".into()]);
    assert!(drain(&mut oa).is_empty());
    // a moves: its old address is gone, so the tether is offered anew from the new one.
    let t1 = t0 + Duration::from_secs(30);
    oa.set_host_candidates(t1, vec!["10.9.9.9:7000".into()]);
    let acts = drain(&mut oa);
    let removed = acts
        .iter()
        .filter(|x| matches!(x, Action::Command(Command::RemoveTether { .. })))
        .count();
    assert_eq!(removed, 2, "both associations of the old tether go");
    match offer_of(&acts).1 {
        super::signal::Payload::Offer(o) => {
            assert_eq!(o.candidates, vec!["10.9.9.9:7000"]);
            assert!(o.reflexive.is_empty(), "old mappings are not offered");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(oa.status().ice_restarts, 1);
}

#[test]
fn an_offer_from_a_peer_that_moved_replaces_a_young_tether() {
    let (t0, _, c, mut oa, da, mut oc, dc) = nodes_1_and_3();
    oc.handle_miss(t0, "100.64.0.1".parse().unwrap(), &dc);
    let (req, offer) = offer_of(&drain(&mut oc));
    let answer = oa.handle_signal(t0, c, offer, 1, &da).unwrap();
    let on_a = opens(&drain(&mut oa));
    oc.handle_reply(t0, req, Some(answer), &dc);
    let on_c = opens(&drain(&mut oc));
    oa.handle_tether_state(t0, on_a[0].tether, TetherState::Up, &da);
    oc.handle_tether_state(t0, on_c[0].tether, TetherState::Up, &dc);
    drain(&mut oa);
    drain(&mut oc);
    // One second later c (the larger id) moves: a's young tether must not win over it.
    let t1 = t0 + Duration::from_secs(1);
    oc.set_host_candidates(t1, vec!["10.7.7.7:5000".into()]);
    let (_, offer) = offer_of(&drain(&mut oc));
    let answer = oa.handle_signal(t1, c, offer, 2, &da).unwrap();
    assert!(
        matches!(&answer, super::signal::Payload::Answer(x) if x.accepted),
        "the moved peer's offer is accepted"
    );
    let reopened = opens(&drain(&mut oa));
    assert_eq!(reopened.len(), 1);
    assert_eq!(reopened[0].candidates, vec!["10.7.7.7:5000"]);
}
