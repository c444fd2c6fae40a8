//! Packetization-layer path MTU discovery for one association (DPLPMTUD, RFC 8899 §4.4
//! and §5, with SCTP probes as §6.2 describes them).
//!
//! Sizes are whole UDP payloads (datagrams): what the path has to carry. A probe is a
//! HEARTBEAT bundled with a PAD chunk (RFC 4820) that fills the datagram to the size being
//! tried; it never carries data, so a lost probe loses nothing. Its HEARTBEAT ACK confirms
//! the size; a probe unanswered [`PmtuConfig::max_probes`] times in a row marks it too big.
//!
//! - **Base.** Every association starts at [`PmtuConfig::base`] (1,232 bytes: IPv6's
//!   1,280-byte minimum link MTU less the IPv6 and UDP headers), which any path that carries
//!   IPv6 carries, and searches upwards from there.
//! - **Search.** The first probe tries the largest size ([`PmtuConfig::max`]), the common
//!   case of a 1,500-byte path, which completes the search in one round trip; when it fails,
//!   a binary search between the largest confirmed and the smallest failed size finishes
//!   within [`GRANULARITY`] bytes.
//! - **Raise timer.** A completed search starts again after [`PmtuConfig::raise_interval`]
//!   (10 minutes by default), from the current size up, so a path that grew is used.
//! - **Black holes.** When the association sees big messages lost in a row while small
//!   ones get through, it calls [`PathMtu::suspect`]: a probe of the current size then
//!   decides. If it is lost [`PmtuConfig::max_probes`] times while a small HEARTBEAT is
//!   answered, the path shrank: the size falls back to the base at once and a new search
//!   starts [`PmtuConfig::rebound`] later. If no HEARTBEAT is answered either, the path is
//!   down, not smaller, and nothing changes until it answers again.
//!
//! - **Probe style.** A PAD chunk is what RFC 8899 §6.2 asks for, and what a Conflux
//!   peer (or any stack that skips unknown chunks as RFC 9260 §3.2 says) handles. Some
//!   WebRTC SCTP stacks (the webrtc-rs and pion lineage) drop a whole packet with a chunk
//!   they do not know instead, so a search in which no probe was answered at all is run
//!   once more with the padding inside the HEARTBEAT's own info ([`ProbeStyle::Echo`]),
//!   which every stack echoes. That answer is as big as the probe, so this style measures
//!   the smaller of the two directions; it is only the fall-back.
//!
//! Sizes tried keep the SCTP packet a multiple of four bytes (chunks are padded to four),
//! so the search steps by [`GRANULARITY`]. Nothing here reads the clock or allocates.

use std::time::{Duration, Instant};

/// The search ends when the largest confirmed and the smallest failed size are this close.
pub const GRANULARITY: usize = 4;

/// How the search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtuConfig {
    /// Datagram size every association starts with and falls back to.
    pub base: usize,
    /// Largest datagram size searched for.
    pub max: usize,
    /// Bytes of each datagram below the SCTP packet (the DTLS record's header, nonce, tag).
    pub overhead: usize,
    /// Unanswered probes of one size before it counts as too big (RFC 8899 `MAX_PROBES`).
    pub max_probes: u32,
    /// Least time a probe is waited for (raised to three smoothed RTTs).
    pub probe_timeout: Duration,
    /// Time from a completed search to the next one (RFC 8899 `PMTU_RAISE_TIMER`).
    pub raise_interval: Duration,
    /// Time from a black hole's fall-back to the base to the next search.
    pub rebound: Duration,
}

impl PmtuConfig {
    /// The largest size at or below `size` that keeps the SCTP packet four-byte aligned.
    pub const fn align(&self, size: usize) -> usize {
        if size < self.overhead {
            return self.overhead;
        }
        self.overhead + ((size - self.overhead) & !(GRANULARITY - 1))
    }
}

/// How a probe fills its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStyle {
    /// A HEARTBEAT and a PAD chunk (RFC 4820): the answer is small.
    Pad,
    /// A HEARTBEAT whose info carries the padding: the answer echoes all of it.
    Echo,
}

/// Where the search is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmtuPhase {
    /// Probing sizes between the confirmed and the smallest failed one.
    Search,
    /// Done until the raise timer fires.
    Complete,
    /// Big messages went missing: a probe of the current size decides whether the path
    /// shrank.
    Confirm,
}

/// What the search has done (for telemetry and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PmtuStats {
    /// Probes sent (repeats included).
    pub probes_sent: u64,
    /// Probes answered.
    pub probes_acked: u64,
    /// Probes not answered in time.
    pub probes_lost: u64,
    /// Searches started (the first one included).
    pub searches: u64,
    /// Falls back to the base after a confirmed black hole.
    pub black_holes: u64,
}

/// A probe of one size: sent, or due to be sent (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    size: usize,
    /// Nonce of the first attempt at this size; later attempts count up from it.
    first_nonce: u64,
    /// When the latest attempt left; `None`: an attempt is due.
    sent_at: Option<Instant>,
    attempts: u32,
    /// A HEARTBEAT sent with or after the latest attempt was answered.
    companion_acked: bool,
}

/// A probe to send now: fill a datagram of `size` bytes and echo `nonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeDue {
    /// Datagram size to fill.
    pub size: usize,
    /// Nonce the HEARTBEAT carries.
    pub nonce: u64,
}

/// One association's path MTU state.
#[derive(Debug, Clone)]
pub struct PathMtu {
    cfg: PmtuConfig,
    plpmtu: usize,
    /// Largest size confirmed in this search.
    lo: usize,
    /// Largest size not known to fail in this search.
    hi: usize,
    /// The next probe tries `hi` itself (the first of a search).
    optimistic: bool,
    phase: PmtuPhase,
    probe: Option<Probe>,
    /// No new probe size is tried before this (the raise timer, a rebound).
    next_at: Instant,
    nonce: u64,
    /// Confirmation attempts lost while their companion HEARTBEAT was answered.
    strikes: u32,
    style: ProbeStyle,
    /// Probes sent and answered in the current search.
    search_sent: u64,
    search_acked: u64,
    /// The current search is the other style's second try.
    retried: bool,
    stats: PmtuStats,
}

impl PathMtu {
    /// Starts at the base and searches from `now`.
    pub fn new(cfg: PmtuConfig, now: Instant) -> Self {
        let base = cfg.align(cfg.base);
        let mut p = Self {
            cfg,
            plpmtu: base,
            lo: base,
            hi: base,
            optimistic: true,
            phase: PmtuPhase::Complete,
            probe: None,
            next_at: now,
            nonce: 0,
            strikes: 0,
            style: ProbeStyle::Pad,
            search_sent: 0,
            search_acked: 0,
            retried: false,
            stats: PmtuStats::default(),
        };
        p.start_search(now);
        p
    }

    /// The datagram size the association may send now (the confirmed PLPMTU).
    pub fn plpmtu(&self) -> usize {
        self.plpmtu
    }

    /// The configuration.
    pub fn config(&self) -> &PmtuConfig {
        &self.cfg
    }

    /// Where the search is.
    pub fn phase(&self) -> PmtuPhase {
        self.phase
    }

    /// How probes fill their datagrams now.
    pub fn style(&self) -> ProbeStyle {
        self.style
    }

    /// Counters.
    pub fn stats(&self) -> PmtuStats {
        self.stats
    }

    fn start_search(&mut self, now: Instant) {
        self.phase = PmtuPhase::Search;
        self.lo = self.plpmtu;
        self.hi = self.cfg.align(self.cfg.max).max(self.plpmtu);
        self.optimistic = true;
        self.probe = None;
        self.next_at = now;
        self.search_sent = 0;
        self.search_acked = 0;
        self.stats.searches += 1;
        self.finish_if_done(now);
    }

    fn finish_if_done(&mut self, now: Instant) {
        if self.phase == PmtuPhase::Search && self.hi <= self.lo {
            self.phase = PmtuPhase::Complete;
            self.probe = None;
            self.next_at = now + self.cfg.raise_interval;
            if self.search_sent > 0 && self.search_acked == 0 && !self.retried {
                // Not one probe answered: perhaps the peer drops packets with a PAD chunk
                // (or does not echo long HEARTBEATs). Try the other style once.
                self.retried = true;
                self.style = match self.style {
                    ProbeStyle::Pad => ProbeStyle::Echo,
                    ProbeStyle::Echo => ProbeStyle::Pad,
                };
                self.start_search(now);
            } else {
                self.retried = false;
            }
        }
    }

    fn probe_timeout(&self, srtt: Option<Duration>) -> Duration {
        self.cfg
            .probe_timeout
            .max(srtt.map_or(Duration::ZERO, |r| r * 3))
    }

    /// The size the next probe of this search tries.
    fn candidate(&self) -> usize {
        if self.phase == PmtuPhase::Confirm {
            return self.plpmtu;
        }
        if self.optimistic {
            return self.hi;
        }
        // Midpoint, rounded up to the alignment so the search always moves; never above
        // `hi`, always above `lo`.
        let mid = self.lo + (self.hi - self.lo).div_ceil(2);
        self.cfg
            .align(mid + GRANULARITY - 1)
            .clamp(self.lo + GRANULARITY, self.hi)
    }

    /// Runs the timers due at `now`: a probe unanswered in time, the raise timer, a rebound.
    pub fn handle_timeout(&mut self, now: Instant, srtt: Option<Duration>) {
        if let Some(p) = self.probe
            && let Some(sent) = p.sent_at
            && now >= sent + self.probe_timeout(srtt)
        {
            self.stats.probes_lost += 1;
            if self.phase == PmtuPhase::Confirm {
                // Only a loss the path answered around counts against the size.
                self.strikes += u32::from(p.companion_acked);
                if self.strikes >= self.cfg.max_probes {
                    self.probe = None;
                    self.on_black_hole(now);
                } else {
                    self.probe = Some(Probe {
                        sent_at: None,
                        companion_acked: false,
                        ..p
                    });
                }
            } else if p.attempts < self.cfg.max_probes {
                self.probe = Some(Probe { sent_at: None, ..p });
            } else {
                self.probe = None;
                self.on_size_failed(now, p.size);
            }
        }
        if self.phase == PmtuPhase::Complete && now >= self.next_at {
            self.start_search(now);
        }
    }

    fn on_size_failed(&mut self, now: Instant, size: usize) {
        if self.phase == PmtuPhase::Search {
            self.optimistic = false;
            self.hi = self.cfg.align(size - 1).max(self.lo);
            self.finish_if_done(now);
        }
    }

    /// Small packets get through, the current size does not: back to the base at once.
    fn on_black_hole(&mut self, now: Instant) {
        self.stats.black_holes += 1;
        self.plpmtu = self.cfg.align(self.cfg.base);
        self.phase = PmtuPhase::Complete;
        self.next_at = now + self.cfg.rebound;
    }

    /// The probe to send at `now`, if one is due.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeDue> {
        if self.probe.is_none() {
            let ready = match self.phase {
                PmtuPhase::Search => now >= self.next_at,
                PmtuPhase::Confirm => true,
                PmtuPhase::Complete => false,
            };
            if !ready {
                return None;
            }
            self.probe = Some(Probe {
                size: self.candidate(),
                first_nonce: self.nonce + 1,
                sent_at: None,
                attempts: 0,
                companion_acked: false,
            });
        }
        let p = self.probe.as_mut()?;
        if p.sent_at.is_some() {
            return None;
        }
        self.nonce += 1;
        p.sent_at = Some(now);
        p.attempts += 1;
        self.stats.probes_sent += 1;
        self.search_sent += 1;
        Some(ProbeDue {
            size: p.size,
            nonce: self.nonce,
        })
    }

    /// A HEARTBEAT ACK for a probe of `size` with `nonce`.
    pub fn on_probe_ack(&mut self, now: Instant, nonce: u64, size: usize) {
        let Some(p) = self.probe else { return };
        if size != p.size || nonce < p.first_nonce || nonce > self.nonce {
            return;
        }
        self.stats.probes_acked += 1;
        self.search_acked += 1;
        self.probe = None;
        match self.phase {
            PmtuPhase::Search => {
                self.optimistic = false;
                self.lo = size;
                self.plpmtu = self.plpmtu.max(size);
                self.finish_if_done(now);
            }
            PmtuPhase::Confirm => {
                // The current size still passes: the losses were something else.
                self.phase = PmtuPhase::Complete;
                self.next_at = now + self.cfg.raise_interval;
            }
            PmtuPhase::Complete => {}
        }
    }

    /// A small HEARTBEAT sent at `sent` was answered: the path is up. The association
    /// sends one right after each probe, so a probe lost while its companion came back was
    /// lost for its size.
    pub fn on_heartbeat_ack(&mut self, sent: Instant) {
        if let Some(p) = self.probe.as_mut()
            && p.sent_at.is_some_and(|s| sent >= s)
        {
            p.companion_acked = true;
        }
    }

    /// Big messages went missing while the path seemed up: check the current size.
    pub fn suspect(&mut self) {
        if self.phase == PmtuPhase::Confirm || self.plpmtu <= self.cfg.align(self.cfg.base) {
            return;
        }
        self.phase = PmtuPhase::Confirm;
        self.strikes = 0;
        self.probe = None;
    }

    /// The next instant [`Self::handle_timeout`] or [`Self::poll_probe`] has work.
    pub fn poll_timeout(&self, srtt: Option<Duration>) -> Option<Instant> {
        match self.probe {
            Some(Probe {
                sent_at: Some(t), ..
            }) => Some(t + self.probe_timeout(srtt)),
            // Due now: the caller polls for it.
            Some(Probe { sent_at: None, .. }) => None,
            None => match self.phase {
                PmtuPhase::Confirm => None,
                PmtuPhase::Search | PmtuPhase::Complete => Some(self.next_at),
            },
        }
    }

    /// Whether [`Self::poll_probe`] would return a probe at `now`.
    pub fn probe_due(&self, now: Instant) -> bool {
        match self.probe {
            Some(p) => p.sent_at.is_none(),
            None => match self.phase {
                PmtuPhase::Search => now >= self.next_at,
                PmtuPhase::Confirm => true,
                PmtuPhase::Complete => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> PmtuConfig {
        PmtuConfig {
            base: 1232,
            max: 1452,
            overhead: 37,
            max_probes: 3,
            probe_timeout: Duration::from_millis(100),
            raise_interval: Duration::from_secs(600),
            rebound: Duration::from_secs(1),
        }
    }

    /// Runs the search against a path that carries datagrams up to `path` bytes; acks
    /// come back after 1 ms. Returns the time it took.
    /// Stops when the search completes or another one starts.
    fn converge(p: &mut PathMtu, mut now: Instant, path: usize) -> Instant {
        let searches = p.stats().searches;
        for _ in 0..200 {
            if p.phase() == PmtuPhase::Complete || p.stats().searches != searches {
                return now;
            }
            if let Some(d) = p.poll_probe(now)
                && d.size <= path
            {
                now += MS;
                p.on_probe_ack(now, d.nonce, d.size);
                continue;
            }
            now = p.poll_timeout(None).unwrap_or(now).max(now);
            p.handle_timeout(now, None);
        }
        panic!("no convergence: {p:?}");
    }

    #[test]
    fn a_full_size_path_completes_with_one_probe() {
        let t0 = Instant::now();
        let mut p = PathMtu::new(cfg(), t0);
        assert_eq!(p.plpmtu(), 1229, "base, aligned");
        let done = converge(&mut p, t0, 1452);
        assert_eq!(p.plpmtu(), 1449);
        assert_eq!(p.stats().probes_sent, 1);
        assert_eq!(done - t0, MS);
    }

    #[test]
    fn the_search_finds_every_path_size_within_the_granularity() {
        for path in [1232, 1252, 1300, 1372, 1400, 1448, 1451] {
            let t0 = Instant::now();
            let mut p = PathMtu::new(cfg(), t0);
            let done = converge(&mut p, t0, path);
            assert!(p.plpmtu() <= path, "{path}: {}", p.plpmtu());
            assert!(path - p.plpmtu() < GRANULARITY, "{path}: {}", p.plpmtu());
            assert_eq!((p.plpmtu() - 37) % 4, 0);
            // Each failed size costs three probe timeouts; the search has about six steps.
            assert!(
                done - t0 < Duration::from_secs(3),
                "{path}: {:?}",
                done - t0
            );
        }
    }

    #[test]
    fn raise_timer_searches_again_and_finds_a_grown_path() {
        let t0 = Instant::now();
        let mut p = PathMtu::new(cfg(), t0);
        let t1 = converge(&mut p, t0, 1300);
        assert!(p.plpmtu() <= 1300 && p.plpmtu() > 1296);
        assert_eq!(p.poll_timeout(None), Some(t1 + cfg().raise_interval));
        let later = t1 + cfg().raise_interval;
        p.handle_timeout(later, None);
        assert_eq!(p.phase(), PmtuPhase::Search);
        converge(&mut p, later, 1452);
        assert_eq!(p.plpmtu(), 1449);
    }

    #[test]
    fn black_hole_falls_back_only_when_small_packets_pass() {
        let t0 = Instant::now();
        let mut p = PathMtu::new(cfg(), t0);
        let mut now = converge(&mut p, t0, 1452);
        // An outage: neither probes nor heartbeats answered. Nothing changes.
        p.suspect();
        for _ in 0..10 {
            assert!(p.poll_probe(now).is_some());
            now += 200 * MS;
            p.handle_timeout(now, None);
        }
        // The path comes back between a probe and its timeout: a heartbeat sent before the
        // probe is answered, which says nothing about the probe.
        assert!(p.poll_probe(now).is_some());
        p.on_heartbeat_ack(now - MS);
        now += 200 * MS;
        p.handle_timeout(now, None);
        assert_eq!((p.plpmtu(), p.stats().black_holes), (1449, 0));
        // The path is back at full size: the probe confirms the size.
        let d = p.poll_probe(now).unwrap();
        p.on_probe_ack(now + MS, d.nonce, d.size);
        assert_eq!(p.phase(), PmtuPhase::Complete);
        assert_eq!(p.plpmtu(), 1449);
        // Now the path shrinks to 1,300: heartbeats pass, the probe does not.
        p.suspect();
        for _ in 0..3 {
            assert!(p.poll_probe(now).is_some());
            p.on_heartbeat_ack(now);
            now += 200 * MS;
            p.handle_timeout(now, None);
        }
        assert_eq!(p.stats().black_holes, 1);
        assert_eq!(p.plpmtu(), 1229, "back to the base at once");
        assert!(p.poll_probe(now).is_none(), "a rebound before searching");
        now += cfg().rebound;
        p.handle_timeout(now, None);
        converge(&mut p, now, 1300);
        assert!(p.plpmtu() > 1296 && p.plpmtu() <= 1300, "{}", p.plpmtu());
    }

    #[test]
    fn a_peer_that_answers_no_pad_probe_is_searched_again_with_echo_probes() {
        let t0 = Instant::now();
        let mut p = PathMtu::new(cfg(), t0);
        assert_eq!(p.style(), ProbeStyle::Pad);
        // Nothing answered: the search runs down to the base.
        let now = converge(&mut p, t0, 0);
        // ... and at once again in the other style, which this peer answers.
        assert_eq!(p.style(), ProbeStyle::Echo);
        assert_eq!(p.phase(), PmtuPhase::Search);
        assert_eq!(p.stats().searches, 2);
        converge(&mut p, now, 1452);
        assert_eq!(p.plpmtu(), 1449);
        assert_eq!(p.style(), ProbeStyle::Echo, "what worked is kept");
        // A path that really carries only the base: both styles fail once, then it rests.
        let mut q = PathMtu::new(cfg(), t0);
        let t = converge(&mut q, t0, 0);
        let t = converge(&mut q, t, 0);
        assert_eq!(q.phase(), PmtuPhase::Complete);
        assert_eq!(q.plpmtu(), 1229);
        assert_eq!(q.poll_timeout(None), Some(t + cfg().raise_interval));
    }

    #[test]
    fn stale_or_foreign_acks_change_nothing() {
        let t0 = Instant::now();
        let mut p = PathMtu::new(cfg(), t0);
        let d = p.poll_probe(t0).unwrap();
        p.on_probe_ack(t0, d.nonce + 1, d.size);
        p.on_probe_ack(t0, d.nonce, d.size - 4);
        p.on_probe_ack(t0, 0, d.size);
        assert_eq!(p.plpmtu(), 1229);
        assert_eq!(p.phase(), PmtuPhase::Search);
    }
}
