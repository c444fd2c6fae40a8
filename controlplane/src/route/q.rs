//! The Q table's entries and the rule that updates them.
//!
//! # The update rule
//!
//! Node `x` estimates the cost of delivering to destination `d` through neighbour `y` as
//!
//! ```text
//! Q_x(d, y) = ĉ_xy(now) + T_x(d, y)
//! ```
//!
//! where `ĉ_xy` is the cost of the link to `y` measured now ([`Link::cost_us`]) and
//! `T_x(d, y)` is what `x` has learned about the rest of the way. When `y` publishes its own
//! best estimate `t = min_z Q_y(d, z)` with confidence `C_y`, for the same path as before:
//!
//! ```text
//! η        = C_y · max(η₀, 1 − C_x(now))            (η₀ = ETA_BASE = 0.5)
//! T_x(d,y) ← T_x(d,y) + η · (t − T_x(d,y))
//! C_x      ← C_y
//! ```
//!
//! where `C_x` decays with the time since its last update, halving every
//! [`super::RouterConfig::confidence_half_life`]: `C_x(now) = C_x · 2^(−age / half_life)`.
//! A neighbour repeats its estimates at least every publish interval (a delta that leaves an
//! entry out repeats it unchanged), so a confidence falls only when the neighbour goes quiet
//! or its own estimate was unsure. The neighbour vouches for its estimate, so `C_x` takes
//! `C_y` rather than blending towards it as confidence-based Q-routing does per packet:
//! blending at every hop of a path would compound into low confidence for any distant
//! destination. Nodes advertise the stored confidence, not the decayed one, for the same
//! reason.
//!
//! This is Boyan & Littman's Q-routing update, `Q ← Q + η (q + s + t − Q)`, with the
//! per-packet sample `q + s` (queueing and transmission at `x`) replaced by the link cost the
//! data plane measures for every packet on the tether, so a change of the local link moves
//! `Q` at once instead of at the next sample. The learning rate is that of confidence-based
//! Q-routing (Kumar & Miikkulainen 1998): a fresh, confident neighbour estimate replaces a
//! stale local one almost entirely (η → 1 as `C_x` → 0), while fresh estimates are averaged
//! (η = η₀) so queueing noise does not flip routes. Two cases bypass learning, so a failed
//! path is forgotten at once: a withdrawal (`t = ∞`) removes the entry, and an estimate for a
//! different path than the one held starts a new entry with `T = t`, `C = C_y`. When the link
//! to `y` goes down, `C_x` of every entry through `y` drops to zero, so the first estimate
//! after it comes back is taken whole.
//!
//! # Link cost
//!
//! ```text
//! ĉ = (rtt/2 + queue · service) / (1 − min(loss, 0.9)) + loss · LOSS_PENALTY_US
//! ```
//!
//! `queue` is the smoothed sum of the workers' send-queue depths for the tether, `service`
//! the smoothed time per packet measured while the queue was busy (packets sent per report
//! interval), `loss` the smoothed loss fraction. Dividing by `1 − loss` counts
//! retransmissions; the penalty stands for the stalls loss causes above the transport. With
//! [`super::Strategy::LatencyOnly`], `ĉ = rtt/2`.

use std::time::{Duration, Instant};

use super::Telemetry;

/// η₀: the learning rate between two fresh, confident estimates.
pub const ETA_BASE: f64 = 0.5;
/// Extra cost per unit of loss fraction above [`CONGESTION_LOSS`], microseconds.
pub const LOSS_PENALTY_US: f64 = 200_000.0;
/// Loss a busy path shows from its own congestion (TCP fills a bottleneck's queue until it
/// drops): queueing delay already prices it, so only loss beyond it is penalised; else the
/// path carrying the load always looks worst and the shares swing away from it.
pub const CONGESTION_LOSS: f64 = 0.05;
/// Smoothing of queue depth, loss and service time per report.
pub const LINK_SMOOTHING: f64 = 0.3;
/// Time per packet assumed before a busy interval has measured it.
pub const DEFAULT_SERVICE_US: f64 = 100.0;

/// Most workers tracked per tether; more are folded into the last slot.
const MAX_WORKERS: usize = 64;

/// The measured state of the link (tether) to one neighbour.
#[derive(Debug, Clone)]
pub struct Link {
    rtt_us: Option<f64>,
    queue: f64,
    loss: f64,
    service_us: Option<f64>,
    /// Per worker: its last report time and queue depth.
    workers: Vec<(u16, Instant, u32)>,
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

impl Link {
    /// A link not measured yet.
    pub fn new() -> Self {
        Self {
            rtt_us: None,
            queue: 0.0,
            loss: 0.0,
            service_us: None,
            workers: Vec::new(),
        }
    }

    /// Folds one worker's report in.
    pub fn on_report(&mut self, now: Instant, t: &Telemetry) {
        let interval = match self.workers.iter_mut().find(|w| w.0 == t.worker) {
            Some(w) => {
                let interval = now.saturating_duration_since(w.1);
                w.1 = now;
                w.2 = t.queue_depth;
                Some(interval)
            }
            None => {
                if self.workers.len() < MAX_WORKERS {
                    self.workers.push((t.worker, now, t.queue_depth));
                }
                None
            }
        };
        let busy = t.queue_depth > 0 && t.packets > 0;
        if let (true, Some(iv)) = (busy, interval.filter(|iv| !iv.is_zero())) {
            let sample = iv.as_secs_f64() * 1e6 / t.packets as f64;
            self.service_us = Some(smooth(self.service_us, sample));
        }
        let queue: u64 = self.workers.iter().map(|w| u64::from(w.2)).sum();
        self.queue = smooth(Some(self.queue), queue as f64);
        self.loss = smooth(Some(self.loss), f64::from(t.loss_ppm) / 1e6);
        if t.rtt_us > 0 {
            self.rtt_us = Some(f64::from(t.rtt_us));
        }
    }

    /// The link's cost now, microseconds; infinite before any round-trip time is known.
    pub fn cost_us(&self, latency_only: bool) -> f64 {
        let Some(rtt) = self.rtt_us else {
            return f64::INFINITY;
        };
        if latency_only {
            return rtt / 2.0;
        }
        let service = self.service_us.unwrap_or(DEFAULT_SERVICE_US);
        let loss = self.loss.min(0.9);
        (rtt / 2.0 + self.queue * service) / (1.0 - loss)
            + (loss - CONGESTION_LOSS).max(0.0) * LOSS_PENALTY_US
    }

    /// Forgets queue and loss history (the link came back after being abandoned).
    pub fn reset_load(&mut self) {
        self.queue = 0.0;
        self.loss = 0.0;
        self.workers.clear();
    }
}

fn smooth(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(o) => o + LINK_SMOOTHING * (sample - o),
        None => sample,
    }
}

/// `T_x(d, y)` with its confidence: what node `x` has learned about the way from `y` to `d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Learned cost from the neighbour on, microseconds.
    pub t_us: f64,
    /// Confidence when last updated, 0..=1.
    pub conf: f64,
    /// When last updated.
    pub at: Instant,
}

impl Estimate {
    /// A new entry, taken whole from the neighbour's estimate.
    pub fn fresh(now: Instant, t_us: f64, conf: f64) -> Self {
        Self {
            t_us,
            conf: conf.clamp(0.0, 1.0),
            at: now,
        }
    }

    /// The confidence now, after decay.
    pub fn confidence(&self, now: Instant, half_life: Duration) -> f64 {
        let age = now.saturating_duration_since(self.at).as_secs_f64();
        self.conf * (-age / half_life.as_secs_f64()).exp2()
    }

    /// The learning rate for a neighbour estimate with confidence `c_y`.
    pub fn eta(&self, now: Instant, half_life: Duration, c_y: f64) -> f64 {
        let c_x = self.confidence(now, half_life);
        (c_y.clamp(0.0, 1.0) * ETA_BASE.max(1.0 - c_x)).clamp(0.0, 1.0)
    }

    /// Applies the update rule for neighbour estimate `t_us` with confidence `c_y`.
    pub fn learn(&mut self, now: Instant, half_life: Duration, t_us: f64, c_y: f64) {
        let eta = self.eta(now, half_life, c_y);
        self.t_us += eta * (t_us - self.t_us);
        self.conf = c_y.clamp(0.0, 1.0);
        self.at = now;
    }

    /// Drops the confidence to zero (the link to the neighbour failed).
    pub fn distrust(&mut self) {
        self.conf = 0.0;
    }
}
