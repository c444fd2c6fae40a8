//! What a run measured: delivery times, drops, recovery after a cut, control traffic.

/// Width of a timeline bin, microseconds.
pub const BIN_US: u64 = 50_000;

/// Why a packet was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The port's queue was full.
    Overflow,
    /// Sent into a link that was cut.
    LinkDown,
    /// The source had no route.
    NoRoute,
}

/// The results of one run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Packets injected in the measurement window.
    pub injected: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Of those, dropped at a full queue.
    pub overflow: u64,
    /// Of those, lost on a cut link.
    pub link_down: u64,
    /// Of those, without a route at the source.
    pub no_route: u64,
    /// Of those, still in flight at the end.
    pub stuck: u64,
    /// Mean delivery time, milliseconds.
    pub mean_ms: f64,
    /// 99th percentile delivery time, milliseconds.
    pub p99_ms: f64,
    /// Seconds from the cut to the injection of the last packet the cut lost (`None`
    /// without a cut; zero if it lost none).
    pub recovery_s: Option<f64>,
    /// `(bin start s, packets injected, delivered)` over the whole run.
    pub timeline: Vec<(f64, u64, u64)>,
    /// Control-channel bytes per node per second.
    pub control_bytes_per_node_s: f64,
    /// Estimates messages a router refused (should be zero).
    pub control_refused: u64,
    /// Packets each node relayed (over the whole run).
    pub relayed: Vec<u64>,
    /// Route decisions installed in the measurement window.
    pub route_changes: u64,
    /// Paths those decisions added (each a route set-up for the control plane).
    pub path_setups: u64,
}

impl RunStats {
    /// Share of injected packets that were not delivered.
    pub fn drop_rate(&self) -> f64 {
        if self.injected == 0 {
            return 0.0;
        }
        1.0 - self.delivered as f64 / self.injected as f64
    }
}

/// Collects a run's events.
pub(super) struct Recorder {
    nodes: usize,
    warm: u64,
    stop: u64,
    end: u64,
    cut: Option<u64>,
    delays: Vec<u32>,
    injected: u64,
    delivered: u64,
    overflow: u64,
    link_down: u64,
    no_route: u64,
    last_cut_loss: Option<u64>,
    bins: Vec<(u64, u64)>,
    relayed: Vec<u64>,
    route_changes: u64,
    path_setups: u64,
    pub(super) control_bytes: u64,
    pub(super) control_refused: u64,
}

impl Recorder {
    pub(super) fn new(nodes: usize, warm: u64, stop: u64, end: u64, cut: Option<u64>) -> Self {
        Self {
            nodes,
            warm,
            stop,
            end,
            cut,
            delays: Vec::new(),
            injected: 0,
            delivered: 0,
            overflow: 0,
            link_down: 0,
            no_route: 0,
            last_cut_loss: None,
            bins: vec![(0, 0); (end / BIN_US + 1) as usize],
            relayed: vec![0; nodes],
            route_changes: 0,
            path_setups: 0,
            control_bytes: 0,
            control_refused: 0,
        }
    }

    pub(super) fn end(&self) -> u64 {
        self.end
    }

    fn measured(&self, born: u64) -> bool {
        born >= self.warm && born < self.stop
    }

    fn bin(&mut self, born: u64) -> &mut (u64, u64) {
        let i = ((born / BIN_US) as usize).min(self.bins.len() - 1);
        &mut self.bins[i]
    }

    pub(super) fn injected(&mut self, born: u64) {
        self.bin(born).0 += 1;
        if self.measured(born) {
            self.injected += 1;
        }
    }

    pub(super) fn delivered(&mut self, born: u64, now: u64) {
        self.bin(born).1 += 1;
        if self.measured(born) {
            self.delivered += 1;
            self.delays
                .push((now - born).min(u64::from(u32::MAX)) as u32);
        }
    }

    pub(super) fn dropped(&mut self, born: u64, why: Drop) {
        if self.cut.is_some_and(|c| born >= c) && why != Drop::Overflow {
            self.last_cut_loss = Some(self.last_cut_loss.map_or(born, |l| l.max(born)));
        }
        if !self.measured(born) {
            return;
        }
        match why {
            Drop::Overflow => self.overflow += 1,
            Drop::LinkDown => self.link_down += 1,
            Drop::NoRoute => self.no_route += 1,
        }
    }

    pub(super) fn relayed(&mut self, node: usize) {
        self.relayed[node] += 1;
    }

    pub(super) fn route_change(&mut self, now: u64, setups: u64) {
        if self.measured(now) {
            self.route_changes += 1;
            self.path_setups += setups;
        }
    }

    pub(super) fn finish(mut self) -> RunStats {
        self.delays.sort_unstable();
        let n = self.delays.len();
        let mean_ms = if n == 0 {
            0.0
        } else {
            self.delays.iter().map(|&d| f64::from(d)).sum::<f64>() / n as f64 / 1000.0
        };
        let p99_ms = if n == 0 {
            0.0
        } else {
            f64::from(self.delays[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1]) / 1000.0
        };
        let lost = self.overflow + self.link_down + self.no_route;
        let stuck = self.injected - self.delivered - lost;
        let seconds = self.end as f64 / 1e6;
        RunStats {
            injected: self.injected,
            delivered: self.delivered,
            overflow: self.overflow,
            link_down: self.link_down,
            no_route: self.no_route,
            stuck,
            mean_ms,
            p99_ms,
            recovery_s: self
                .cut
                .map(|c| self.last_cut_loss.map_or(0.0, |l| (l - c) as f64 / 1e6)),
            timeline: self
                .bins
                .iter()
                .enumerate()
                .map(|(i, b)| ((i as u64 * BIN_US) as f64 / 1e6, b.0, b.1))
                .collect(),
            control_bytes_per_node_s: self.control_bytes as f64 / self.nodes as f64 / seconds,
            control_refused: self.control_refused,
            relayed: self.relayed,
            route_changes: self.route_changes,
            path_setups: self.path_setups,
        }
    }
}
