//! A discrete-event network simulator over the router's own code.
//!
//! Every node runs the control plane's sans-io [`Router`](conflux_controlplane::route::Router)
//! (Q-routing or latency-only): the simulator feeds it telemetry from its ports every
//! 100 ms, as the data plane's workers would, delivers the estimates it publishes to its
//! neighbours after a fixed control-channel delay (NATS does not ride the tethers, so a cut
//! link does not stop it), answers its region look-ups, and installs the weighted paths it
//! decides into the node's forwarding table. Shortest path is the baseline: routes by static
//! latency, recomputed at once when a link's probes fail (an ideal link-state protocol with
//! the same failure detection as the routers).
//!
//! The network: links with a one-way latency and a capacity (packets per second each way),
//! a drop-tail queue per port (per tether) of `buffer` packets, 1,000-byte packets. Traffic
//! is Poisson with `load` packets per second over the whole network, between uniformly
//! random distinct pairs; each packet is its own flow, so a source splits packets over its
//! paths by weight. Packets follow the path the source chose (source routing, as the route
//! set-up messages build). A run is deterministic for a seed.

pub mod engine;
pub mod report;
pub mod stats;
pub mod topology;

#[cfg(test)]
mod tests;

pub use stats::RunStats;
pub use topology::{EdgeListError, SpecError, Topology};

/// Which routing the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouterKind {
    /// The Q-routing router.
    QRouting,
    /// The same router with [`conflux_controlplane::route::Strategy::LatencyOnly`]: the best
    /// path by measured latency.
    LatencyOnly,
    /// Static-latency shortest path (ideal link state).
    ShortestPath,
}

impl RouterKind {
    /// All three, in report order.
    pub const ALL: [RouterKind; 3] = [Self::QRouting, Self::LatencyOnly, Self::ShortestPath];

    /// Name in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Self::QRouting => "Q-routing",
            Self::LatencyOnly => "latency-only",
            Self::ShortestPath => "shortest path",
        }
    }
}

/// A link failure during a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// The link (index into [`Topology::links`]).
    pub link: usize,
    /// When it fails, seconds from the start.
    pub at_s: f64,
    /// When it comes back, if it does.
    pub restore_s: Option<f64>,
}

/// The parameters of one run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Routing.
    pub router: RouterKind,
    /// Seed of traffic and start times.
    pub seed: u64,
    /// Packets injected per second across the network.
    pub load_pps: f64,
    /// Seconds before measuring (routes form).
    pub warmup_s: f64,
    /// Seconds of measured injection.
    pub measure_s: f64,
    /// Seconds after injection stops for packets in flight to land.
    pub drain_s: f64,
    /// Queue per port, packets.
    pub buffer: usize,
    /// Packet size, bytes (for telemetry).
    pub packet_bytes: u32,
    /// Control-channel delay, milliseconds.
    pub control_delay_ms: f64,
    /// A link failure.
    pub cut: Option<Cut>,
    /// Regions every node excludes for relays.
    pub exclude: Vec<String>,
    /// Longest path the routers accept.
    pub max_hops: usize,
}

impl SimConfig {
    /// Defaults: 10 s warm-up, 20 s measured, 3 s drain, 50-packet queues, 20 ms control
    /// delay, paths up to 32 hops.
    pub fn new(router: RouterKind, load_pps: f64, seed: u64) -> Self {
        Self {
            router,
            seed,
            load_pps,
            warmup_s: 10.0,
            measure_s: 20.0,
            drain_s: 3.0,
            buffer: 50,
            packet_bytes: 1000,
            control_delay_ms: 20.0,
            cut: None,
            exclude: Vec::new(),
            max_hops: 32,
        }
    }
}

/// Runs one simulation.
pub fn run(topo: &Topology, cfg: &SimConfig) -> RunStats {
    engine::Engine::new(topo, cfg).run()
}
