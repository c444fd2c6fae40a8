//! Reports a worker writes to the control process: counter totals and per-tether
//! telemetry once a second, misses (rate limited) and tether state changes as they happen.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use conflux_shared::wire::record::{
    CounterId, CountersBody, MAX_COUNTERS, MissBody, RingRecord, TelemetryBody, TetherStateBody,
};

use crate::control::WorkerEnd;
use crate::counters::Counters;
use crate::hop::StateChange;
use crate::table::{Tables, TetherKind};

/// Misses a worker reports per second at most.
const MISSES_PER_SECOND: u32 = 16;
/// Recent destinations not reported again within a second.
const RECENT: usize = 8;

/// Rate limiting and identity for reports.
#[derive(Debug)]
pub(super) struct Reporter {
    worker: u16,
    window_start: Option<Instant>,
    misses_in_window: u32,
    recent: [Option<IpAddr>; RECENT],
    recent_cursor: usize,
}

impl Reporter {
    pub(super) fn new(worker: u16) -> Self {
        Self {
            worker,
            window_start: None,
            misses_in_window: 0,
            recent: [None; RECENT],
            recent_cursor: 0,
        }
    }

    fn push(rings: &mut WorkerEnd, counters: &mut Counters, rec: &RingRecord) {
        if !matches!(rings.reports.push(rec), Ok(true)) {
            counters.bump(CounterId::RingFull);
        }
    }

    /// Counter totals and tether telemetry.
    pub(super) fn write(
        &mut self,
        rings: &mut WorkerEnd,
        tables: &Tables,
        counters: &mut Counters,
    ) {
        let values: Vec<(CounterId, u64)> = counters.named().collect();
        for chunk in values.chunks(MAX_COUNTERS) {
            if let Ok(body) = CountersBody::new(self.worker, chunk)
                && let Ok(rec) = RingRecord::encode(&body)
            {
                Self::push(rings, counters, &rec);
            }
        }
        // WebRTC tethers report their own telemetry every 100 ms.
        for (id, t) in tables
            .tethers
            .iter()
            .filter(|(_, t)| t.kind == TetherKind::Plain)
        {
            let body = TelemetryBody::new(*id, self.worker, 0, 0, t.tx_bytes, t.tx_packets, 0);
            if let Ok(rec) = RingRecord::encode(&body) {
                Self::push(rings, counters, &rec);
            }
        }
    }

    /// One tether's telemetry.
    pub(super) fn telemetry(
        &mut self,
        rings: &mut WorkerEnd,
        counters: &mut Counters,
        body: &TelemetryBody,
    ) {
        if let Ok(rec) = RingRecord::encode(body) {
            Self::push(rings, counters, &rec);
        }
    }

    /// A destination with no route, unless reported very recently or over the rate.
    pub(super) fn miss(
        &mut self,
        rings: &mut WorkerEnd,
        counters: &mut Counters,
        now: Instant,
        dst: IpAddr,
    ) {
        let fresh_window = self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1));
        if fresh_window {
            self.window_start = Some(now);
            self.misses_in_window = 0;
            self.recent = [None; RECENT];
        }
        if self.misses_in_window >= MISSES_PER_SECOND || self.recent.contains(&Some(dst)) {
            return;
        }
        self.misses_in_window += 1;
        self.recent[self.recent_cursor] = Some(dst);
        self.recent_cursor = (self.recent_cursor + 1) % RECENT;
        if let Ok(rec) = RingRecord::encode(&MissBody::new(self.worker, dst)) {
            counters.misses_reported += 1;
            Self::push(rings, counters, &rec);
        }
    }

    /// A tether's new state.
    pub(super) fn tether_state(
        &mut self,
        rings: &mut WorkerEnd,
        counters: &mut Counters,
        c: StateChange,
    ) {
        let body = TetherStateBody::new(c.tether, self.worker, c.state).with_peer(c.peer);
        if let Ok(rec) = RingRecord::encode(&body) {
            Self::push(rings, counters, &rec);
        }
    }
}
