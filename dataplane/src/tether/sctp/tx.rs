//! Send side of the owned association: TSNs in flight, SACK processing, abandonment.
//!
//! Every message is sent once (`maxRetransmits = 0`). What would be a retransmission in
//! reliable SCTP is an abandonment here (RFC 3758 §3.5): the sender moves its "advanced
//! peer ack point" over the lost TSNs and tells the peer with one FORWARD-TSN. Loss is
//! judged by time, as RACK does for TCP (RFC 8985), so reordering is not mistaken for it:
//!
//! - an unacked TSN sent more than the reorder window before a TSN the peer has acked is
//!   lost; every such TSN goes in one abandonment, one FORWARD-TSN;
//! - an unacked TSN outstanding for the whole abandon timeout is lost (the tail of a burst,
//!   which no later arrival can reveal).
//!
//! Stale SACKs (cumulative ack behind the newest seen) are dropped and gap-acked TSNs are
//! remembered, so delivered messages are never counted lost, and a FORWARD-TSN is repeated
//! only after a whole timeout without effect: SACKs and FORWARD-TSNs never chase each other.
//!
//! There is no congestion window: the inner traffic (TCP, QUIC) controls its own
//! congestion, and a second controller nested inside would only add queueing and slow
//! starts. What the sender does respect is the peer's advertised receive window, a cap on
//! bytes in flight, and the size of its own tracking ring.

use std::time::{Duration, Instant};

use super::rx::{WINDOW, after};

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
    /// Send time of each TSN, µs since `epoch`, wrapping.
    sent_at: Box<[u32; WINDOW as usize]>,
    acked: Box<[u64; WINDOW as usize / 64]>,
    epoch: Instant,
    /// Latest `now` seen, for [`Self::timer`].
    last_now: Instant,
    in_flight_bytes: usize,
    peer_rwnd: u32,
    max_in_flight: usize,
    forward_pending: bool,
    forward_sent_at: Option<Instant>,
    /// TSNs counted lost (abandoned without being acked).
    pub lost: u64,
    /// FORWARD-TSN chunks sent.
    pub forwards_sent: u64,
    /// Messages longer than this are "big": they need more than the base path MTU.
    big_above: u16,
    /// Big messages lost since the last big one was acked.
    pub big_lost_run: u32,
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

#[inline]
fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX / 2)) as u32
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
            sent_at: Box::new([0; WINDOW as usize]),
            acked: Box::new([0; WINDOW as usize / 64]),
            epoch: now,
            last_now: now,
            in_flight_bytes: 0,
            peer_rwnd,
            max_in_flight,
            forward_pending: false,
            forward_sent_at: None,
            lost: 0,
            forwards_sent: 0,
            big_above: u16::MAX,
            big_lost_run: 0,
        }
    }

    /// Counts messages longer than `len` in [`Self::big_lost_run`].
    pub fn set_big_above(&mut self, len: usize) {
        self.big_above = len.min(usize::from(u16::MAX)) as u16;
    }

    #[inline]
    fn now_us(&mut self, now: Instant) -> u32 {
        self.last_now = self.last_now.max(now);
        self.us(now)
    }

    #[inline]
    fn us(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    /// TSNs outstanding.
    pub fn in_flight(&self) -> u32 {
        self.next_tsn.wrapping_sub(self.base).wrapping_sub(1)
    }

    /// Bytes outstanding (gap-acked ones excluded).
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
        let tsn = self.next_tsn;
        self.next_tsn = tsn.wrapping_add(1);
        let i = (tsn & MASK) as usize;
        self.sizes[i] = len.min(usize::from(u16::MAX)) as u16;
        self.sent_at[i] = self.now_us(now);
        self.acked[i / 64] &= !(1 << (i % 64));
        self.in_flight_bytes += len;
        Ok(tsn)
    }

    #[inline]
    fn is_acked(&self, tsn: u32) -> bool {
        let i = (tsn & MASK) as usize;
        self.acked[i / 64] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn sent_us(&self, tsn: u32) -> u32 {
        self.sent_at[(tsn & MASK) as usize]
    }

    /// Moves the base to `new_base`; returns how many of the TSNs passed were never
    /// gap-acked, and how many of those were big.
    fn release_to(&mut self, new_base: u32) -> (u32, u32) {
        let mut unacked = 0;
        let mut big = 0;
        let mut t = self.base.wrapping_add(1);
        while t != new_base.wrapping_add(1) {
            if !self.is_acked(t) {
                unacked += 1;
                let size = self.sizes[(t & MASK) as usize];
                big += u32::from(size > self.big_above);
                self.in_flight_bytes -= usize::from(size);
            }
            t = t.wrapping_add(1);
        }
        self.base = new_base;
        (unacked, big)
    }

    /// Marks gap-acked TSNs; returns the highest TSN acked by cum or gaps.
    fn mark_gaps(&mut self, cum: u32, gaps: impl Iterator<Item = (u16, u16)>) -> u32 {
        let mut highest = cum;
        let last_sent = self.next_tsn.wrapping_sub(1);
        for (s, e) in gaps {
            if s == 0 || e < s {
                continue;
            }
            for off in s..=e {
                let t = cum.wrapping_add(u32::from(off));
                if after(t, last_sent) {
                    break;
                }
                if after(t, highest) {
                    highest = t;
                }
                if after(t, self.base) && !self.is_acked(t) {
                    let i = (t & MASK) as usize;
                    self.acked[i / 64] |= 1 << (i % 64);
                    self.in_flight_bytes -= usize::from(self.sizes[i]);
                    if self.sizes[i] > self.big_above {
                        self.big_lost_run = 0;
                    }
                }
            }
        }
        highest
    }

    /// The newest TSN in `(base, upto]` sent at or before `threshold_us` (send times rise
    /// with TSNs, so a binary search finds it).
    fn last_sent_by(&self, upto: u32, threshold_us: u32) -> Option<u32> {
        let not_later = |t: u32| (threshold_us.wrapping_sub(self.sent_us(t)) as i32) >= 0;
        let (mut lo, mut hi) = (0u32, upto.wrapping_sub(self.base));
        // Invariant: offset `lo` qualifies (0 = base itself), `hi + 1` does not.
        if hi == 0 || hi > WINDOW {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if not_later(self.base.wrapping_add(mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        (lo > 0).then(|| self.base.wrapping_add(lo))
    }

    /// Applies a SACK: `gaps` are its blocks as (start, end) offsets from `cum`;
    /// `reorder` is how much earlier than an acked TSN a missing one must have been sent
    /// to count as lost.
    pub fn on_sack(
        &mut self,
        cum: u32,
        a_rwnd: u32,
        gaps: impl Iterator<Item = (u16, u16)>,
        now: Instant,
        reorder: Duration,
    ) -> SackOutcome {
        let mut out = SackOutcome::default();
        self.last_now = self.last_now.max(now);
        // Acks for TSNs never sent are not trusted; SACKs older than the newest seen are
        // dropped (RFC 9260 §6.2.1), so a reordered SACK never counts as a loss report.
        if after(cum, self.next_tsn.wrapping_sub(1)) || after(self.peer_cum, cum) {
            return out;
        }
        self.peer_rwnd = a_rwnd;
        if after(cum, self.peer_cum) {
            self.peer_cum = cum;
            out.progressed = true;
            if after(cum, self.base) && self.release_to(cum).1 > 0 {
                // A big message got through.
                self.big_lost_run = 0;
            }
        }
        // The peer still reports below our FORWARD-TSN point: the FORWARD-TSN was lost. Repeat
        // it, at most once per RTT (four reorder windows), rather than wait for the timer.
        if after(self.base, cum)
            && self
                .forward_sent_at
                .is_none_or(|t| now.duration_since(t) >= reorder * 4)
        {
            self.forward_pending = true;
        }
        let highest = self.mark_gaps(cum, gaps);
        if after(highest, self.base) {
            let threshold = self.sent_us(highest).wrapping_sub(micros(reorder));
            if let Some(target) = self.last_sent_by(highest, threshold) {
                out.lost = self.abandon_to(target);
            }
        }
        out
    }

    fn abandon_to(&mut self, target: u32) -> u32 {
        let (lost, big) = self.release_to(target);
        self.big_lost_run = self.big_lost_run.saturating_add(big);
        self.lost += u64::from(lost);
        self.forward_pending = true;
        lost
    }

    /// Abandons what has been outstanding for `timeout`; also repeats a FORWARD-TSN the
    /// peer has not acted on for as long. Returns TSNs newly counted lost.
    pub fn on_timer(&mut self, now: Instant, timeout: Duration) -> u32 {
        let mut lost = 0;
        if self.in_flight() > 0 {
            let threshold = self.now_us(now).wrapping_sub(micros(timeout));
            if let Some(target) = self.last_sent_by(self.next_tsn.wrapping_sub(1), threshold) {
                lost = self.abandon_to(target);
            }
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
        let now = self.last_now;
        let idle = (self.in_flight() > 0).then(|| {
            let oldest = self.sent_us(self.base.wrapping_add(1));
            let age = self.us(now).wrapping_sub(oldest);
            now + timeout.saturating_sub(Duration::from_micros(u64::from(age)))
        });
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

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn holes_are_abandoned_by_time_not_by_reordering() {
        let t0 = Instant::now();
        let mut t = SendTracker::new(100, 1 << 20, 1 << 22, t0);
        // 100..=109 sent 1 ms apart.
        for i in 0..10 {
            t.assign(1000, t0 + i * MS).unwrap();
        }
        assert_eq!((t.in_flight(), t.in_flight_bytes()), (10, 10_000));
        let now = t0 + 20 * MS;
        assert!(
            t.on_sack(101, 1 << 20, [].into_iter(), now, 3 * MS)
                .progressed
        );
        assert_eq!(t.in_flight(), 8);
        // 102 missing, 103 acked: sent only 1 ms later, within the reorder window.
        let o = t.on_sack(101, 1 << 20, [(2u16, 2u16)].into_iter(), now, 3 * MS);
        assert_eq!(o.lost, 0);
        assert_eq!(t.take_forward(now), None);
        // 106 acked, sent 4 ms after 102: 102 is lost; 104 (2 ms) is not yet.
        let o = t.on_sack(
            101,
            1 << 20,
            [(2u16, 2u16), (5, 5)].into_iter(),
            now,
            3 * MS,
        );
        assert_eq!(o.lost, 1);
        assert_eq!(t.take_forward(now), Some(103));
        assert_eq!(t.take_forward(now), None);
        // The peer keeps reporting below it: repeated once per RTT, not per SACK.
        t.on_sack(
            101,
            1 << 20,
            [(2u16, 2u16), (5, 5)].into_iter(),
            now + MS,
            3 * MS,
        );
        assert_eq!(t.take_forward(now + MS), None);
        t.on_sack(
            101,
            1 << 20,
            [(2u16, 2u16), (5, 5)].into_iter(),
            now + 12 * MS,
            3 * MS,
        );
        assert_eq!(t.take_forward(now + 12 * MS), Some(103));
        // 103 and 106 acked; 104, 105, 107..=109 outstanding.
        assert_eq!(t.in_flight_bytes(), 5000);
        // A SACK older than the newest seen is ignored.
        assert!(!t.on_sack(100, 1, [].into_iter(), now, 3 * MS).progressed);
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
        t.on_sack(4, 1 << 20, [].into_iter(), now + 2 * timeout, MS);
        assert_eq!(t.timer(timeout), None);
    }

    #[test]
    fn window_limits_and_bogus_acks() {
        let now = Instant::now();
        let mut t = SendTracker::new(1, 3000, 1 << 22, now);
        t.assign(1400, now).unwrap();
        t.assign(1400, now).unwrap();
        assert_eq!(t.assign(1400, now), Err(SendRefused::WindowFull));
        let o = t.on_sack(50, 1 << 20, [].into_iter(), now, MS);
        assert!(!o.progressed);
        assert_eq!(t.in_flight(), 2);
    }
}
