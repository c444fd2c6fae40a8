//! Neighbour liveness: when to abandon a tether and when to trust it again.
//!
//! ICE consent checks and SCTP heartbeats notice a dead path only after tens of seconds, so
//! the data plane probes each tether every few hundred milliseconds and reports loss and
//! round-trip time in its telemetry. A neighbour is abandoned when it has sent no telemetry
//! for [`super::RouterConfig::silence`] (about one second) or when the reported loss reaches
//! [`LOSS_DOWN`]; the router then moves its traffic at once, well inside two seconds. When
//! reports come back with loss under [`LOSS_UP`], the neighbour is on probation for
//! [`super::RouterConfig::probation`]: its paths carry only the exploration share until it has
//! stayed healthy that long.

use std::time::{Duration, Instant};

/// Reported loss (fraction) at or above which a neighbour is abandoned.
pub const LOSS_DOWN: f64 = 0.5;
/// Reported loss (fraction) under which an abandoned neighbour is explored again.
pub const LOSS_UP: f64 = 0.2;

/// The state of one neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// No telemetry yet.
    Unknown,
    /// Healthy.
    Up,
    /// Back after being abandoned; explored until the instant.
    Probation {
        /// When it counts as healthy again.
        until: Instant,
    },
    /// Abandoned.
    Down,
}

/// A change that the router must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The neighbour was abandoned: move its traffic now.
    WentDown,
    /// The neighbour answers again: explore it.
    CameBack,
    /// Probation ended: full weight allowed.
    Trusted,
}

/// Liveness bookkeeping for one neighbour.
#[derive(Debug, Clone)]
pub struct Health {
    state: Liveness,
    last_heard: Option<Instant>,
    silence: Duration,
    probation: Duration,
}

impl Health {
    /// A neighbour not heard from yet.
    pub fn new(silence: Duration, probation: Duration) -> Self {
        Self {
            state: Liveness::Unknown,
            last_heard: None,
            silence,
            probation,
        }
    }

    /// The current state.
    pub fn state(&self) -> Liveness {
        self.state
    }

    /// Whether paths through the neighbour may carry traffic.
    pub fn usable(&self) -> bool {
        matches!(self.state, Liveness::Up | Liveness::Probation { .. })
    }

    /// Whether the neighbour is on probation (exploration share only).
    pub fn on_probation(&self) -> bool {
        matches!(self.state, Liveness::Probation { .. })
    }

    /// When the last report arrived.
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// A telemetry report with this loss fraction arrived.
    pub fn on_report(&mut self, now: Instant, loss: f64) -> Option<Change> {
        self.last_heard = Some(now);
        match self.state {
            Liveness::Unknown if loss < LOSS_DOWN => {
                self.state = Liveness::Up;
                None
            }
            Liveness::Up | Liveness::Probation { .. } if loss >= LOSS_DOWN => {
                self.state = Liveness::Down;
                Some(Change::WentDown)
            }
            Liveness::Down if loss < LOSS_UP => {
                self.state = Liveness::Probation {
                    until: now + self.probation,
                };
                Some(Change::CameBack)
            }
            _ => self.on_timeout(now),
        }
    }

    /// The data plane reported the tether down (consent failed, every probe lost) or closed.
    pub fn force_down(&mut self) -> Option<Change> {
        let was_usable = self.usable();
        self.state = Liveness::Down;
        was_usable.then_some(Change::WentDown)
    }

    /// Time passed: silence or the end of probation may change the state.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Change> {
        let silent = self.last_heard.is_none_or(|t| now >= t + self.silence);
        match self.state {
            Liveness::Up | Liveness::Probation { .. } if silent => {
                self.state = Liveness::Down;
                Some(Change::WentDown)
            }
            Liveness::Probation { until } if now >= until => {
                self.state = Liveness::Up;
                Some(Change::Trusted)
            }
            _ => None,
        }
    }

    /// The next instant at which [`Health::on_timeout`] may change the state.
    pub fn deadline(&self) -> Option<Instant> {
        let silence = self.last_heard.map(|t| t + self.silence);
        match self.state {
            Liveness::Up => silence,
            Liveness::Probation { until } => silence.map(|s| s.min(until)),
            Liveness::Unknown | Liveness::Down => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn health() -> Health {
        Health::new(ms(1000), ms(2000))
    }

    #[test]
    fn silence_abandons_after_the_silence_interval_and_not_before() {
        let t0 = Instant::now();
        let mut h = health();
        assert_eq!(h.on_report(t0, 0.0), None);
        assert!(h.usable());
        assert_eq!(h.deadline(), Some(t0 + ms(1000)));
        assert_eq!(h.on_timeout(t0 + ms(999)), None);
        assert_eq!(h.on_timeout(t0 + ms(1000)), Some(Change::WentDown));
        assert!(!h.usable());
        assert_eq!(h.deadline(), None);
    }

    #[test]
    fn rising_loss_abandons_and_low_loss_brings_back_on_probation() {
        let t0 = Instant::now();
        let mut h = health();
        h.on_report(t0, 0.0);
        assert_eq!(h.on_report(t0 + ms(100), 0.4), None);
        assert_eq!(h.on_report(t0 + ms(200), 0.6), Some(Change::WentDown));
        // Still lossy: stays down, even though it reports.
        assert_eq!(h.on_report(t0 + ms(300), 0.3), None);
        assert!(!h.usable());
        assert_eq!(h.on_report(t0 + ms(400), 0.1), Some(Change::CameBack));
        assert!(h.usable() && h.on_probation());
        assert_eq!(h.on_report(t0 + ms(1400), 0.0), None);
        assert_eq!(h.on_report(t0 + ms(2300), 0.0), None);
        assert_eq!(h.on_timeout(t0 + ms(2400)), Some(Change::Trusted));
        assert_eq!(h.state(), Liveness::Up);
    }

    #[test]
    fn silence_during_probation_abandons_again() {
        let t0 = Instant::now();
        let mut h = health();
        h.on_report(t0, 0.0);
        h.on_report(t0 + ms(10), 1.0);
        h.on_report(t0 + ms(20), 0.0);
        assert!(h.on_probation());
        assert_eq!(h.deadline(), Some(t0 + ms(1020)));
        assert_eq!(h.on_timeout(t0 + ms(1020)), Some(Change::WentDown));
    }
}
