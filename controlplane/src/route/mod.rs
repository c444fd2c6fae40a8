//! The router: which paths carry traffic to each destination, and with what weights.
//!
//! A sans-io core ([`Router`]) that the control process drives: it feeds per-tether
//! telemetry from the data plane's rings ([`Router::handle_telemetry`]), the estimates
//! neighbours publish over NATS ([`Router::handle_neighbour_estimates`]) and timeouts
//! ([`Router::handle_timeout`]), then drains [`Router::poll_decision`] and sleeps until
//! [`Router::poll_timeout`]. It never reads the clock and does no I/O.
//!
//! # Algorithm
//!
//! Every node is an agent of a cooperative multi-agent Q-routing scheme (Boyan & Littman,
//! "Packet routing in dynamically changing networks: a reinforcement learning approach",
//! NIPS 6, 1994). Node `x` keeps, per destination `d` and neighbour `y`, the estimated
//! delivery cost `Q_x(d, y)` in microseconds, and learns it from its own link measurements and
//! from `y`'s published estimate of its own best cost to `d` (the cooperative part). The
//! learning rate follows confidence-based Q-routing (Kumar & Miikkulainen, "Confidence-based
//! Q-routing: an on-line adaptive network routing algorithm", ANNIE 1998), so a stale or
//! failed estimate is forgotten quickly; the exact rule is on [`q`]. Estimates carry the path
//! they are for (a path vector), which keeps routes loop-free, lets the source build the
//! route hop by hop with the route set-up messages, and lets geo policy check every relay.
//!
//! Per destination the router outputs up to [`MAX_NEXT_HOPS`] weighted paths ([`weights`]):
//! a share of flows tends to each path whose cost is near the best, so two good paths both
//! carry traffic and load moves off a queueing path until costs even out. A bounded share
//! explores recovered or unconfident paths ([`explore`]). A neighbour that stops reporting or
//! whose loss rises is abandoned at once ([`health`]). Relays in excluded regions are never
//! used; preferred regions are favoured ([`geo`]). Neighbours exchange estimates as
//! [`exchange`] messages.
//!
//! [`Strategy::LatencyOnly`] runs the same machinery as a plain latency-based choice (one
//! path, cost = measured one-way latency, no load, no exploration), so the control process
//! can swap between the two with a configuration switch.
//!
//! # Driving it
//!
//! ```text
//! loop {
//!     input = select { telemetry ring, NATS estimates, sleep_until(router.poll_timeout()) }
//!     router.handle_*(now, input)   // or handle_timeout(now) when the sleep fired
//!     while let Some(d) = router.poll_decision() {
//!         Route(r)         -> set up missing paths (RouteSetup), install weighted next hops
//!         Publish(bytes)   -> publish to every neighbour's `…node.<id>.route`
//!         LookupRegion(n)  -> fetch n's directory record, then router.set_region(n, region)
//!     }
//! }
//! ```

//!
//! # What the control process wires up
//!
//! - Tethers: [`Router::add_neighbour`] when a tether to a node is installed,
//!   [`Router::remove_neighbour`] when it is removed, [`Router::handle_tether_down`] on a
//!   `TetherState` record of `Down` or `Closed`. The tether → node map is the control
//!   process's.
//! - Telemetry: every `Telemetry` ring record, through [`Telemetry::from_record`], to
//!   [`Router::handle_telemetry`]. Liveness rests on the data plane reporting every tether
//!   about every 100 ms even when idle, with loss measured over probes every ~200 ms in a
//!   window of about a second; without that, failover takes the one-second silence.
//! - Estimates: subscribe to the node's own `…node.<id>.route` inbox and pass each message
//!   with the authenticated sender to [`Router::handle_neighbour_estimates`] (a refused one
//!   is counted, never fatal); [`Decision::Publish`] goes to every neighbour's inbox. The
//!   sender must be bound by NATS permissions (for example a subject suffix only that node
//!   may publish on), since the message's own id is only checked against it.
//! - Routes: [`Router::want`] when a stream to a destination is set up, [`Router::unwant`]
//!   when it idles. For each [`Decision::Route`], set up every path not yet set up with a
//!   route set-up message along it, then write one `InstallRoute` record with a next hop
//!   (tether to `path[0]`, label from the acknowledgement, weight) per path, then tear down
//!   paths that left (make before break). Keeping torn-down paths for a few seconds makes a
//!   path that comes back free. An empty decision removes the route.
//! - Geo: regions from certificates and directory records to [`Router::set_region`],
//!   answering [`Decision::LookupRegion`]; the configured and `conflux-ctl` policy to
//!   [`Router::set_geo`].
//! - `sequence_start`: Unix milliseconds at start; the strategy from configuration.

mod core;
pub mod exchange;
pub mod explore;
pub mod geo;
pub mod health;
pub mod q;
pub mod weights;

#[cfg(test)]
mod tests;

use std::time::Duration;

use conflux_shared::id::NodeId;
use conflux_shared::wire::record::TelemetryBody;
use conflux_shared::wire::record::report::PPM;

pub use self::core::{Router, RouterCounters};
pub use conflux_shared::wire::record::MAX_NEXT_HOPS;
pub use exchange::ExchangeError;
pub use geo::{GeoPolicy, Region};

/// The weights of one route's paths add up to this.
pub const WEIGHT_TOTAL: u16 = 1000;

/// What the router optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Q-routing: latency, queueing and loss; several weighted paths; bounded exploration.
    QRouting,
    /// Measured one-way latency only; one path per destination.
    LatencyOnly,
}

/// Tunables of a [`Router`]; [`RouterConfig::q_routing`] and [`RouterConfig::latency_only`]
/// give the defaults.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// What is optimised.
    pub strategy: Strategy,
    /// Longest path, in hops after this node (the route set-up message allows 8).
    pub max_hops: usize,
    /// How often weights are recomputed and smoothed.
    pub decide_interval: Duration,
    /// How often changed estimates are published.
    pub publish_interval: Duration,
    /// Every this many publications, one lists every estimate (and all wants).
    pub full_every: u32,
    /// Least gap between a triggered publication (a withdrawn or changed path) and the
    /// previous one.
    pub trigger_gap: Duration,
    /// A neighbour that has sent no telemetry for this long is abandoned.
    pub silence: Duration,
    /// A recovered neighbour carries at most the exploration share for this long.
    pub probation: Duration,
    /// Confidence in an estimate halves with every this much age.
    pub confidence_half_life: Duration,
    /// A neighbour's want lasts this long unless repeated.
    pub want_ttl: Duration,
}

impl RouterConfig {
    /// Defaults for [`Strategy::QRouting`].
    pub fn q_routing() -> Self {
        Self {
            strategy: Strategy::QRouting,
            max_hops: conflux_shared::wire::route::MAX_HOPS,
            decide_interval: Duration::from_millis(100),
            publish_interval: Duration::from_millis(250),
            full_every: 8,
            trigger_gap: Duration::from_millis(50),
            silence: Duration::from_secs(1),
            probation: Duration::from_secs(2),
            confidence_half_life: Duration::from_secs(1),
            want_ttl: Duration::from_secs(6),
        }
    }

    /// Defaults for [`Strategy::LatencyOnly`]: the same timers, so the two fail over alike.
    pub fn latency_only() -> Self {
        Self {
            strategy: Strategy::LatencyOnly,
            ..Self::q_routing()
        }
    }
}

/// One telemetry report about the tether to a neighbour, as a worker sent it over the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry {
    /// The neighbour at the far end of the tether.
    pub neighbour: NodeId,
    /// The reporting worker (each worker reports its own share of the tether).
    pub worker: u16,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// Loss of probes and data, parts per million.
    pub loss_ppm: u32,
    /// Bytes sent since this worker's previous report.
    pub bytes: u64,
    /// Packets sent since this worker's previous report.
    pub packets: u64,
    /// Packets waiting in this worker's send queue for the tether now.
    pub queue_depth: u32,
}

impl Telemetry {
    /// The report in a ring record, once the control process has mapped its tether to the
    /// neighbour's node id. Loss above one million ppm (the ring parser refuses it) is capped.
    pub fn from_record(neighbour: NodeId, body: &TelemetryBody) -> Self {
        Self {
            neighbour,
            worker: body.worker.get(),
            rtt_us: body.rtt_us.get(),
            loss_ppm: body.loss_ppm.get().min(PPM),
            bytes: body.bytes.get(),
            packets: body.packets.get(),
            queue_depth: body.queue_depth.get(),
        }
    }
}

/// One path of a route and its share of flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedPath {
    /// The hops after this node, ending at the destination; `path[0]` is the next hop.
    pub path: Vec<NodeId>,
    /// Share of flows out of [`WEIGHT_TOTAL`], at least 1.
    pub weight: u16,
    /// The estimated delivery cost over this path, microseconds.
    pub cost_us: u32,
}

/// The route to one destination: what the data plane should install now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    /// The destination node.
    pub destination: NodeId,
    /// The paths, heaviest first, with distinct next hops; empty when the destination is
    /// unreachable (remove the route). Weights add up to [`WEIGHT_TOTAL`] unless empty.
    pub paths: Vec<WeightedPath>,
}

/// What the control process must do for the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Install (or replace) the route to a destination.
    Route(RouteDecision),
    /// Publish these encoded [`exchange`] bytes to every neighbour.
    Publish(Vec<u8>),
    /// A path runs through a node whose region is unknown while geo policy needs it: look
    /// the node up and call [`Router::set_region`].
    LookupRegion(NodeId),
}
