//! Send side of the owned association: TSNs in flight, SACK processing, abandonment.
//!
//! Every message is sent once (`maxRetransmits = 0`). What would be a retransmission in
//! reliable SCTP is an abandonment here (RFC 3758 §3.5): the sender moves its "advanced
//! peer ack point" over the lost TSNs and tells the peer with one FORWARD-TSN. Two triggers,
//! both deliberately sparse so SACKs and FORWARD-TSNs never chase each other:
//!
//! - a hole reported by [`REORDER_REPORTS`] SACKs in a row without the cumulative ack
//!   moving (the same evidence fast retransmit uses): everything below the last gap block
//!   is abandoned at once;
//! - no progress for the abandon timeout while TSNs are outstanding (the tail of a burst
//!   was lost, so no later arrival reveals the hole): everything outstanding is abandoned.
//!
//! There is no congestion window: the inner traffic (TCP, QUIC) controls its own
//! congestion, and a second controller nested inside would only add queueing and slow
//! starts. What the sender does respect is the peer's advertised receive window, a cap on
//! bytes in flight, and the size of its own tracking ring.

use std::time::{Duration, Instant};

use super::rx::{WINDOW, after};

/// SACKs reporting the same hole before it is abandoned.
pub const REORDER_REPORTS: u8 = 3;
const MASK: u32 = WINDOW - 1;

/// Why a message was not given a TSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendRefused {
    /// The peer's receive window or the in-flight cap is full.
    #[error("send window full")]
    WindowFull,
}

/// What one SACK did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SackOutcome {
    /// The cumulative ack moved.
    pub progressed: bool,
    /// TSNs newly counted as lost.
    pub lost: u32,
}

/// TSNs this end has sent and not yet seen acked or abandoned.
pub struct SendTracker {
    next_tsn: u32,
    /// Every TSN at or below this is acked or abandoned.
    base: u32,
    peer_cum: u32,
    sizes: Box<[u16; WINDOW as usize]>,
    in_flight_bytes: usize,
    peer_rwnd: u32,
    max_in_flight: usize,
    miss_reports: u8,
    last_progress: Instant,
    forward_pending: bool,
    forward_sent_at: Option<Instant>,
    /// TSNs counted lost (abandoned without being acked).
    pub lost: u64,
    /// FORWARD-TSN chunks sent.
    pub forwards_sent: u64,
}

impl std::fmt::Debug for SendTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTracker")
            .field("next_tsn", &self.next_tsn)
            .field("base", &self.base)
            .field("peer_cum", &self.peer_cum)
            .field("in_flight_bytes", &self.in_flight_bytes)
            .finish_non_exhaustive()
    }
}

impl SendTracker {
    /// Starts at our initial TSN with the peer's initial window.
    pub fn new(initial_tsn: u32, peer_rwnd: u32, max_in_flight: usize, now: Instant) -> Self {
        let base = initial_tsn.wrapping_sub(1);
        Self {
            next_tsn: initial_tsn,
            base,
            peer_cum: base,
            sizes: Box::new([0; WINDOW as usize]),
            in_flight_bytes: 0,
            peer_rwnd,
            max_in_flight,
            miss_reports: 0,
            last_progress: now,
            forward_pending: false,
            forward_sent_at: None,
            lost: 0,
            forwards_sent: 0,
        }
    }

    /// TSNs outstanding.
    pub fn in_flight(&self) -> u32 {
        self.next_tsn.wrapping_sub(self.base).wrapping_sub(1)
    }

    /// Bytes outstanding.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Assigns the next TSN to a message of `len` bytes, or refuses when a window is full.
    #[inline]
    pub fn assign(&mut self, len: usize, now: Instant) -> Result<u32, SendRefused> {
        let window = (self.peer_rwnd as usize).max(2048).min(self.max_in_flight);
        if self.in_flight() >= WINDOW - 1 || self.in_flight_bytes + len > window {
            return Err(SendRefused::WindowFull);
        }
        if self.in_flight() == 0 {
            // Nothing was outstanding: the abandon clock starts with this message.
            self.last_progress = now;
        }
        let tsn = self.next_tsn;
        self.next_tsn = tsn.wrapping_add(1);
        self.sizes[(tsn & MASK) as usize] = len.min(usize::from(u16::MAX)) as u16;
        self.in_flight_bytes += len;
        Ok(tsn)
    }

    fn release_to(&mut self, new_base: u32) {
        let mut t = self.base.wrapping_add(1);
        while t != new_base.wrapping_add(1) {
            self.in_flight_bytes -= usize::from(self.sizes[(t & MASK) as usize]);
            t = t.wrapping_add(1);
        }
        self.base = new_base;
    }

    /// Applies a SACK: `gaps` are its blocks as (start, end) offsets from `cum`.
    pub fn on_sack(
        &mut self,
        cum: u32,
        a_rwnd: u32,
        gaps: impl Iterator<Item = (u16, u16)> + Clone,
        now: Instant,
    ) -> SackOutcome {
        let mut out = SackOutcome::default();
        // Acks for TSNs never sent are ignored rather than trusted.
        if after(cum, self.next_tsn.wrapping_sub(1)) {
            return out;
        }
        self.peer_rwnd = a_rwnd;
        if after(cum, self.peer_cum) {
            self.peer_cum = cum;
            out.progressed = true;
            self.miss_reports = 0;
            self.last_progress = now;
            if after(cum, self.base) {
                self.release_to(cum);
            }
        }
        let last = gaps.clone().last();
        if let Some((last_start, _)) = last {
            if !out.progressed {
                self.miss_reports = self.miss_reports.saturating_add(1);
            }
            if self.miss_reports >= REORDER_REPORTS && last_start > 1 {
                let target = cum.wrapping_add(u32::from(last_start) - 1);
                if after(target, self.base) {
                    // Blocks below the last one arrived: only the holes are lost.
                    let arrived: u32 = gaps
                        .filter(|&(s, _)| s < last_start)
                        .map(|(s, e)| u32::from(e.saturating_sub(s)) + 1)
                        .sum();
                    let span = target.wrapping_sub(self.base);
                    out.lost = span.saturating_sub(arrived);
                    self.lost += u64::from(out.lost);
                    self.abandon_to(target, now);
                }
                self.miss_reports = 0;
            }
        }
        out
    }

    fn abandon_to(&mut self, target: u32, now: Instant) {
        self.release_to(target);
        self.forward_pending = true;
        self.last_progress = now;
    }

    /// Abandons everything outstanding once nothing has moved for `timeout`; also repeats a
    /// FORWARD-TSN the peer has not acted on. Returns TSNs newly counted lost.
    pub fn on_timer(&mut self, now: Instant, timeout: Duration) -> u32 {
        let mut lost = 0;
        if self.in_flight() > 0 && now.duration_since(self.last_progress) >= timeout {
            let target = self.next_tsn.wrapping_sub(1);
            lost = target.wrapping_sub(self.base);
            self.lost += u64::from(lost);
            self.abandon_to(target, now);
        }
        if after(self.base, self.peer_cum)
            && self
                .forward_sent_at
                .is_some_and(|t| now.duration_since(t) >= timeout)
        {
            self.forward_pending = true;
        }
        lost
    }

    /// When [`Self::on_timer`] has work to do next.
    pub fn timer(&self, timeout: Duration) -> Option<Instant> {
        let idle = (self.in_flight() > 0).then(|| self.last_progress + timeout);
        let resend = after(self.base, self.peer_cum)
            .then(|| self.forward_sent_at.map(|t| t + timeout))
            .flatten();
        match (idle, resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A FORWARD-TSN to send, if one is due: the new cumulative TSN.
    pub fn take_forward(&mut self, now: Instant) -> Option<u32> {
        if !self.forward_pending {
            return None;
        }
        self.forward_pending = false;
        if !after(self.base, self.peer_cum) {
            return None;
        }
        self.forward_sent_at = Some(now);
        self.forwards_sent += 1;
        Some(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sack_releases_and_holes_are_abandoned_after_three_reports() {
        let now = Instant::now();
        let mut t = SendTracker::new(100, 1 << 20, 1 << 22, now);
        for _ in 0..10 {
            t.assign(1000, now).unwrap();
        }
        assert_eq!((t.in_flight(), t.in_flight_bytes()), (10, 10_000));
        let o = t.on_sack(102, 1 << 20, [].into_iter(), now);
        assert!(o.progressed);
        assert_eq!(t.in_flight(), 7);
        // 103 lost, 104..=106 arrived: three reports abandon 103 only.
        let gaps = [(2u16, 4u16)];
        for _ in 0..2 {
            assert_eq!(t.on_sack(102, 1 << 20, gaps.into_iter(), now).lost, 0);
            assert_eq!(t.take_forward(now), None);
        }
        let o = t.on_sack(102, 1 << 20, gaps.into_iter(), now);
        assert_eq!(o.lost, 1);
        assert_eq!(t.take_forward(now), Some(103));
        assert_eq!(t.take_forward(now), None);
        assert_eq!(t.in_flight(), 6);
    }

    #[test]
    fn silent_tail_is_abandoned_by_the_timer_and_forward_repeated() {
        let now = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut t = SendTracker::new(1, 1 << 20, 1 << 22, now);
        for _ in 0..4 {
            t.assign(500, now).unwrap();
        }
        assert_eq!(t.on_timer(now + timeout / 2, timeout), 0);
        assert_eq!(t.timer(timeout), Some(now + timeout));
        assert_eq!(t.on_timer(now + timeout, timeout), 4);
        assert_eq!(t.take_forward(now + timeout), Some(4));
        assert_eq!(t.in_flight_bytes(), 0);
        // The peer never acts on it: repeated one timeout later, not before.
        t.on_timer(now + timeout + timeout / 2, timeout);
        assert_eq!(t.take_forward(now + timeout + timeout / 2), None);
        t.on_timer(now + 2 * timeout, timeout);
        assert_eq!(t.take_forward(now + 2 * timeout), Some(4));
        // The peer catches up: nothing more is sent.
        t.on_sack(4, 1 << 20, [].into_iter(), now + 2 * timeout);
        assert_eq!(t.timer(timeout), None);
    }

    #[test]
    fn window_limits_and_bogus_acks() {
        let now = Instant::now();
        let mut t = SendTracker::new(1, 3000, 1 << 22, now);
        t.assign(1400, now).unwrap();
        t.assign(1400, now).unwrap();
        assert_eq!(t.assign(1400, now), Err(SendRefused::WindowFull));
        let o = t.on_sack(50, 1 << 20, [].into_iter(), now);
        assert!(!o.progressed);
        assert_eq!(t.in_flight(), 2);
    }
}
