//! The discrete-event engine: packets, per-port queues, links, telemetry, the control
//! channel, and one router core per node.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use conflux_controlplane::route::{Decision, GeoPolicy, Region, Router, RouterConfig, Telemetry};
use conflux_shared::id::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stats::{Drop, Recorder, RunStats};
use super::topology::Topology;
use super::{RouterKind, SimConfig};

/// Telemetry from every port this often, microseconds (the data plane's report period).
pub const TELEMETRY_US: u64 = 100_000;
/// A liveness probe every this many telemetry periods.
pub const PROBE_EVERY: u64 = 2;
/// Loss is the share of the last this many probes that went unanswered.
pub const PROBE_WINDOW: u32 = 5;

/// The node id the simulator gives node `i`.
pub fn node_id(i: usize) -> NodeId {
    let mut b = [0u8; 16];
    b[12..].copy_from_slice(&(i as u32).to_be_bytes());
    NodeId(b)
}

fn index_of(id: &NodeId) -> usize {
    u32::from_be_bytes([id.0[12], id.0[13], id.0[14], id.0[15]]) as usize
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Inject,
    TxDone { node: u32, port: u32 },
    Arrive { node: u32, link: u32, pkt: u32 },
    Tick,
    Timer { node: u32 },
    Cut,
    Restore,
}

struct Packet {
    dst: u32,
    born: u64,
    path: Rc<[u32]>,
    hop: u32,
}

struct Port {
    peer: u32,
    link: u32,
    queue: VecDeque<u32>,
    tx: Option<u32>,
    sent_packets: u64,
    probes_lost: u32,
    probes_seen: u32,
}

impl Port {
    fn loss(&self) -> f64 {
        let window = self.probes_seen.min(PROBE_WINDOW);
        if window == 0 {
            return 0.0;
        }
        let mask = (1u32 << window) - 1;
        f64::from((self.probes_lost & mask).count_ones()) / f64::from(window)
    }
}

/// A route as the data plane holds it: paths with cumulative weights.
struct Table {
    paths: Vec<(Rc<[u32]>, u32)>,
    total: u32,
}

/// A path stays set up this long after it leaves a route, so coming back costs no set-up
/// (the cache the control process keeps).
pub const SETUP_CACHE_US: u64 = 10_000_000;

struct SimNode {
    router: Option<Router>,
    ports: Vec<Port>,
    routes: Vec<Option<Table>>,
    wanted: Vec<bool>,
    timer: Option<u64>,
    /// Per destination, paths set up and until when they stay (`u64::MAX` while in use).
    set_up: Vec<Vec<(Vec<u32>, u64)>>,
}

/// One simulation run.
pub(super) struct Engine<'a> {
    topo: &'a Topology,
    cfg: &'a SimConfig,
    rng: ChaCha8Rng,
    epoch: Instant,
    t: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    control: VecDeque<(u64, u32, u32, Rc<Vec<u8>>)>,
    nodes: Vec<SimNode>,
    link_up: Vec<bool>,
    sp_view: Vec<bool>,
    packets: Vec<Packet>,
    free: Vec<u32>,
    rec: Recorder,
    ticks: u64,
    inject_end: u64,
}

impl<'a> Engine<'a> {
    pub(super) fn new(topo: &'a Topology, cfg: &'a SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let epoch = Instant::now();
        let n = topo.len();
        let adj = topo.adjacency();
        let exclude: GeoPolicy = GeoPolicy {
            exclude: cfg.exclude.iter().map(|r| Region::new(r.clone())).collect(),
            ..GeoPolicy::open()
        };
        let mut nodes: Vec<SimNode> = (0..n)
            .map(|i| {
                let router = match cfg.router {
                    RouterKind::ShortestPath => None,
                    kind => {
                        let mut rc = match kind {
                            RouterKind::LatencyOnly => RouterConfig::latency_only(),
                            _ => RouterConfig::q_routing(),
                        };
                        rc.max_hops = cfg.max_hops;
                        // Nodes do not start in step: their timers are spread over a period.
                        let start = epoch + Duration::from_micros(rng.random_range(0..250_000));
                        let mut r = Router::new(node_id(i), rc, start, 0);
                        for &(peer, _) in &adj[i] {
                            r.add_neighbour(start, node_id(peer));
                        }
                        r.set_geo(start, exclude.clone());
                        // Traffic runs between all pairs: every destination is in use.
                        for d in (0..n).filter(|&d| d != i) {
                            r.want(start, node_id(d));
                        }
                        Some(r)
                    }
                };
                SimNode {
                    router,
                    ports: adj[i]
                        .iter()
                        .map(|&(peer, link)| Port {
                            peer: peer as u32,
                            link: link as u32,
                            queue: VecDeque::new(),
                            tx: None,
                            sent_packets: 0,
                            probes_lost: 0,
                            probes_seen: 0,
                        })
                        .collect(),
                    routes: (0..n).map(|_| None).collect(),
                    wanted: vec![cfg.router != RouterKind::ShortestPath; n],
                    timer: None,
                    set_up: vec![Vec::new(); n],
                }
            })
            .collect();
        let warm = secs(cfg.warmup_s);
        let inject_end = warm + secs(cfg.measure_s);
        let end = inject_end + secs(cfg.drain_s);
        let cut_at = cfg.cut.as_ref().map(|c| secs(c.at_s));
        let mut e = Self {
            topo,
            cfg,
            rng,
            epoch,
            t: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            control: VecDeque::new(),
            nodes: Vec::new(),
            link_up: vec![true; topo.links.len()],
            sp_view: vec![true; topo.links.len()],
            packets: Vec::new(),
            free: Vec::new(),
            rec: Recorder::new(n, warm, inject_end, end, cut_at),
            ticks: 0,
            inject_end,
        };
        std::mem::swap(&mut e.nodes, &mut nodes);
        if cfg.router == RouterKind::ShortestPath {
            e.recompute_shortest_paths();
        }
        for i in 0..n {
            e.drain(i);
        }
        e.push(0, Ev::Tick);
        e.push(0, Ev::Inject);
        if let Some(c) = &cfg.cut {
            e.push(secs(c.at_s), Ev::Cut);
            if let Some(r) = c.restore_s {
                e.push(secs(r), Ev::Restore);
            }
        }
        e
    }

    pub(super) fn run(mut self) -> RunStats {
        let end = self.rec.end();
        loop {
            let next_ev = self.heap.peek().map(|Reverse(e)| e.0);
            let next_ctl = self.control.front().map(|c| c.0);
            match (next_ev, next_ctl) {
                (_, Some(c)) if c <= end && next_ev.is_none_or(|e| c <= e) => {
                    let (t, to, from, bytes) =
                        self.control.pop_front().unwrap_or_else(|| unreachable!());
                    self.t = t;
                    let now = self.now();
                    if let Some(r) = self.nodes[to as usize].router.as_mut()
                        && r.handle_neighbour_estimates(now, node_id(from as usize), &bytes)
                            .is_err()
                    {
                        self.rec.control_refused += 1;
                    }
                    self.drain(to as usize);
                }
                (Some(e), _) if e <= end => {
                    let Reverse((t, _, ev)) = self.heap.pop().unwrap_or_else(|| unreachable!());
                    self.t = t;
                    self.handle(ev);
                }
                _ => break,
            }
        }
        self.rec.finish()
    }

    fn now(&self) -> Instant {
        self.epoch + Duration::from_micros(self.t)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Inject => self.inject(),
            Ev::TxDone { node, port } => self.tx_done(node as usize, port as usize),
            Ev::Arrive { node, link, pkt } => {
                if self.link_up[link as usize] {
                    self.packets[pkt as usize].hop += 1;
                    self.forward(node as usize, pkt);
                } else {
                    self.drop_packet(pkt, Drop::LinkDown);
                }
            }
            Ev::Tick => self.tick(),
            Ev::Timer { node } => {
                if self.nodes[node as usize].timer == Some(self.t) {
                    self.nodes[node as usize].timer = None;
                    let now = self.now();
                    if let Some(r) = self.nodes[node as usize].router.as_mut() {
                        r.handle_timeout(now);
                    }
                    self.drain(node as usize);
                }
            }
            Ev::Cut => {
                if let Some(c) = &self.cfg.cut {
                    self.link_up[c.link] = false;
                }
            }
            Ev::Restore => {
                if let Some(c) = &self.cfg.cut {
                    self.link_up[c.link] = true;
                }
            }
        }
    }

    fn inject(&mut self) {
        let gap = -(1.0 - self.rng.random::<f64>()).ln() / self.cfg.load_pps;
        let next = self.t + (gap * 1e6).round().max(1.0) as u64;
        if next < self.inject_end {
            self.push(next, Ev::Inject);
        }
        let n = self.topo.len();
        let src = self.rng.random_range(0..n);
        let mut dst = self.rng.random_range(0..n - 1);
        if dst >= src {
            dst += 1;
        }
        let now = self.now();
        let node = &mut self.nodes[src];
        if !node.wanted[dst] {
            node.wanted[dst] = true;
            if let Some(r) = node.router.as_mut() {
                r.want(now, node_id(dst));
            }
            self.drain(src);
        }
        let pick = self.rng.random::<u32>();
        let path = self.nodes[src].routes[dst]
            .as_ref()
            .filter(|t| t.total > 0)
            .map(|t| {
                let r = pick % t.total;
                Rc::clone(&t.paths.iter().find(|p| p.1 > r).unwrap_or(&t.paths[0]).0)
            });
        let pkt = self.alloc(Packet {
            dst: dst as u32,
            born: self.t,
            path: path.clone().unwrap_or_else(|| Rc::from(Vec::new())),
            hop: 0,
        });
        self.rec.injected(self.t);
        if path.is_none() {
            self.drop_packet(pkt, Drop::NoRoute);
        } else {
            self.forward(src, pkt);
        }
    }

    fn alloc(&mut self, p: Packet) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.packets[i as usize] = p;
                i
            }
            None => {
                self.packets.push(p);
                (self.packets.len() - 1) as u32
            }
        }
    }

    fn drop_packet(&mut self, pkt: u32, why: Drop) {
        let p = &self.packets[pkt as usize];
        self.rec.dropped(p.born, why);
        self.free.push(pkt);
    }

    /// `pkt` is at `node`: deliver it or queue it on the port towards its next hop.
    fn forward(&mut self, node: usize, pkt: u32) {
        let p = &self.packets[pkt as usize];
        if p.dst as usize == node {
            self.rec.delivered(p.born, self.t);
            self.free.push(pkt);
            return;
        }
        let hop = p.hop as usize;
        let Some(&next) = p.path.get(hop) else {
            self.drop_packet(pkt, Drop::NoRoute);
            return;
        };
        if hop > 0 {
            self.rec.relayed(node);
        }
        let Some(port) = self.nodes[node].ports.iter().position(|q| q.peer == next) else {
            self.drop_packet(pkt, Drop::NoRoute);
            return;
        };
        let q = &mut self.nodes[node].ports[port];
        if q.queue.len() >= self.cfg.buffer {
            self.drop_packet(pkt, Drop::Overflow);
            return;
        }
        q.queue.push_back(pkt);
        if q.tx.is_none() {
            self.start_tx(node, port);
        }
    }

    fn start_tx(&mut self, node: usize, port: usize) {
        let q = &mut self.nodes[node].ports[port];
        let Some(pkt) = q.queue.pop_front() else {
            return;
        };
        q.tx = Some(pkt);
        let service = 1e6 / self.topo.links[q.link as usize].capacity_pps;
        let at = self.t + service.round().max(1.0) as u64;
        self.push(
            at,
            Ev::TxDone {
                node: node as u32,
                port: port as u32,
            },
        );
    }

    fn tx_done(&mut self, node: usize, port: usize) {
        let q = &mut self.nodes[node].ports[port];
        let Some(pkt) = q.tx.take() else {
            return;
        };
        q.sent_packets += 1;
        let (link, peer) = (q.link as usize, q.peer);
        if self.link_up[link] {
            let at = self.t + self.topo.links[link].latency_us;
            self.push(
                at,
                Ev::Arrive {
                    node: peer,
                    link: link as u32,
                    pkt,
                },
            );
        } else {
            self.drop_packet(pkt, Drop::LinkDown);
        }
        self.start_tx(node, port);
    }

    /// Probes, telemetry to every router, and the link-state view of shortest path.
    fn tick(&mut self) {
        self.ticks += 1;
        if self.t + TELEMETRY_US <= self.rec.end() {
            self.push(self.t + TELEMETRY_US, Ev::Tick);
        }
        let probe = self.ticks.is_multiple_of(PROBE_EVERY);
        let now = self.now();
        let bytes = u64::from(self.cfg.packet_bytes);
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            for q in &mut node.ports {
                if probe {
                    q.probes_lost =
                        (q.probes_lost << 1) | u32::from(!self.link_up[q.link as usize]);
                    q.probes_seen = q.probes_seen.saturating_add(1);
                }
                let Some(r) = node.router.as_mut() else {
                    continue;
                };
                let t = Telemetry {
                    neighbour: node_id(q.peer as usize),
                    worker: 0,
                    rtt_us: (2 * self.topo.links[q.link as usize].latency_us) as u32,
                    loss_ppm: (q.loss() * 1e6) as u32,
                    bytes: q.sent_packets * bytes,
                    packets: q.sent_packets,
                    queue_depth: q.queue.len() as u32,
                };
                q.sent_packets = 0;
                r.handle_telemetry(now, &t);
            }
            if node.router.is_some() {
                self.drain(i);
            }
        }
        if self.cfg.router == RouterKind::ShortestPath {
            self.link_state_view();
        }
    }

    /// Shortest path learns of a link's failure with the same probes and thresholds as the
    /// routers' liveness, then recomputes every route at once (an ideal link-state protocol).
    fn link_state_view(&mut self) {
        let mut changed = false;
        for node in &self.nodes {
            for q in &node.ports {
                let l = q.link as usize;
                let loss = q.loss();
                if self.sp_view[l] && loss >= conflux_controlplane::route::health::LOSS_DOWN {
                    self.sp_view[l] = false;
                    changed = true;
                } else if !self.sp_view[l] && loss < conflux_controlplane::route::health::LOSS_UP {
                    self.sp_view[l] = true;
                    changed = true;
                }
            }
        }
        if changed {
            self.recompute_shortest_paths();
        }
    }

    fn recompute_shortest_paths(&mut self) {
        let adj = self.topo.adjacency();
        let excluded: Vec<bool> = (0..self.topo.len())
            .map(|i| self.cfg.exclude.contains(&self.topo.regions[i]))
            .collect();
        for s in 0..self.topo.len() {
            let paths = self
                .topo
                .shortest_paths(&adj, s, &self.sp_view, &|v| !excluded[v]);
            for (d, path) in paths.into_iter().enumerate() {
                self.nodes[s].routes[d] = (!path.is_empty()).then(|| {
                    let p: Vec<u32> = path.iter().map(|&v| v as u32).collect();
                    Table {
                        paths: vec![(Rc::from(&p[..]), 1)],
                        total: 1,
                    }
                });
            }
        }
    }

    /// Carries out what node `i`'s router decided, and arms its timer.
    fn drain(&mut self, i: usize) {
        let now = self.now();
        let degree = self.nodes[i].ports.len();
        loop {
            let Some(r) = self.nodes[i].router.as_mut() else {
                return;
            };
            let Some(d) = r.poll_decision() else {
                break;
            };
            match d {
                Decision::Route(rd) => {
                    let dest = index_of(&rd.destination);
                    let all: Vec<Vec<u32>> = rd
                        .paths
                        .iter()
                        .map(|p| p.path.iter().map(|n| index_of(n) as u32).collect())
                        .collect();
                    let setups = self.note_paths(i, dest, &all);
                    let mut total = 0;
                    let paths = rd
                        .paths
                        .iter()
                        .zip(&all)
                        .filter(|(p, _)| p.weight > 0)
                        .map(|(p, a)| {
                            total += u32::from(p.weight);
                            (Rc::from(&a[..]), total)
                        })
                        .collect();
                    self.nodes[i].routes[dest] = Some(Table { paths, total });
                    self.rec.route_change(self.t, setups as u64);
                }
                Decision::Publish(bytes) => {
                    self.rec.control_bytes += (bytes.len() * degree) as u64;
                    let at = self.t + (self.cfg.control_delay_ms * 1000.0) as u64;
                    let bytes = Rc::new(bytes);
                    for q in &self.nodes[i].ports {
                        self.control
                            .push_back((at, q.peer, i as u32, Rc::clone(&bytes)));
                    }
                }
                Decision::LookupRegion(n) => {
                    let region = Region::new(self.topo.regions[index_of(&n)].clone());
                    r.set_region(now, n, Some(region));
                }
            }
        }
        let Some(r) = self.nodes[i].router.as_ref() else {
            return;
        };
        let at = r
            .poll_timeout()
            .saturating_duration_since(self.epoch)
            .as_micros() as u64;
        let at = at.max(self.t);
        if self.nodes[i].timer != Some(at) {
            self.nodes[i].timer = Some(at);
            self.push(at, Ev::Timer { node: i as u32 });
        }
    }
}

impl Engine<'_> {
    /// Notes the paths of node `i`'s new route to `dest`; returns how many need a set-up.
    fn note_paths(&mut self, i: usize, dest: usize, paths: &[Vec<u32>]) -> usize {
        let t = self.t;
        let known = &mut self.nodes[i].set_up[dest];
        known.retain(|k| k.1 > t);
        for k in known.iter_mut().filter(|k| k.1 == u64::MAX) {
            k.1 = t + SETUP_CACHE_US;
        }
        let mut setups = 0;
        for p in paths {
            match known.iter_mut().find(|k| &k.0 == p) {
                Some(k) => k.1 = u64::MAX,
                None => {
                    setups += 1;
                    known.push((p.clone(), u64::MAX));
                }
            }
        }
        setups
    }
}

fn secs(s: f64) -> u64 {
    (s * 1e6).round() as u64
}
