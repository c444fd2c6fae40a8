//! The tether's own SCTP data path, once the library has set the association up.
//!
//! `rtc-sctp` runs the four-way handshake (INIT, INIT ACK with its state cookie, COOKIE
//! ECHO, COOKIE ACK). Its association keeps TSNs, verification tags and windows private, so
//! the tether reads them off the INIT and INIT ACK chunks as they pass through its record
//! layer ([`Snoop`]) and, once COOKIE ACK has crossed, drops the library's association and
//! carries on with [`Association`]: DATA chunks framed in place around caller-owned
//! payloads, SACKs and FORWARD-TSNs written into caller-owned buffers, heartbeats for RTT
//! and liveness. Nothing here allocates after construction.

pub mod pmtu;
pub mod rx;
pub mod tx;
pub mod wire;

use std::time::{Duration, Instant};

use pmtu::{PathMtu, PmtuConfig, PmtuStats};
use rx::{Arrival, RecvTracker};
use tx::{SendRefused, SendTracker};
use wire::{Data, Init, Packet, Sack, WireError, chunk, data_flags};

/// The SCTP port WebRTC uses on both ends (RFC 8841 default).
pub const PORT: u16 = 5000;
/// Gap blocks one SACK reports at most.
const MAX_GAP_BLOCKS: usize = 64;
/// Duplicate TSNs one SACK reports at most.
const MAX_DUPS: usize = 4;
/// Largest HEARTBEAT value echoed back: a whole probe in the echo style
/// ([`pmtu::ProbeStyle::Echo`]) of the largest datagram, whose answer still fits one
/// (a 1,412-byte SCTP packet less the common and chunk headers).
const MAX_HEARTBEAT_ECHO: usize = 1396;
/// HEARTBEATs waiting for their answer at most.
const MAX_ECHOES: usize = 4;
/// DATA chunks per packet whose delivery is tracked (bits of [`Inbound::accepted`]).
pub const MAX_CHUNKS_TRACKED: usize = 128;
/// PAD chunk (RFC 4820): fills a probe to the size tried. Its type's top bits (10) tell a
/// receiver that does not know it to skip it silently.
pub const PAD_CHUNK: u8 = 0x84;
/// Parameter heading a regular HEARTBEAT's info: type 1, length 20 (nonce, send time).
const HB_INFO: [u8; 4] = [0, 1, 0, 20];
/// A probe's HEARTBEAT info: type 1, length 24 (nonce, send time, size) or more (padding
/// in the echo style).
const PROBE_INFO_LEN: usize = 24;

/// Largest message a datagram of `datagram` bytes carries as one DATA chunk, when
/// `overhead` bytes of it lie below SCTP.
pub const fn max_message_in(datagram: usize, overhead: usize) -> usize {
    datagram.saturating_sub(overhead + wire::DATA_OFFSET) & !3
}

/// Tunables of the owned data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssocConfig {
    /// Send a SACK after this many new DATA chunks (RFC 9260 asks for at most 2).
    pub sack_every: u32,
    /// Longest a received DATA chunk waits for its SACK.
    pub sack_delay: Duration,
    /// A message unacknowledged this long is abandoned (raised to 2×RTT). Longer than the
    /// 200 ms a peer may delay its SACK (RFC 9260 §6.2), so a late SACK is not a loss.
    pub abandon_after: Duration,
    /// Least reordering tolerated before a missing message counts as lost.
    pub reorder_window: Duration,
    /// Interval between HEARTBEATs (RTT and liveness).
    pub heartbeat_interval: Duration,
    /// Cap on bytes in flight, whatever the peer's window says.
    pub max_in_flight: usize,
    /// Receive window this end advertises.
    pub local_rwnd: u32,
    /// Path MTU discovery.
    pub pmtu: PmtuConfig,
    /// Big messages lost in a row (none acked between) before the current path MTU is
    /// put to the test.
    pub black_hole_after: u32,
}

impl Default for AssocConfig {
    fn default() -> Self {
        Self {
            sack_every: 2,
            sack_delay: Duration::from_millis(20),
            abandon_after: Duration::from_millis(400),
            reorder_window: Duration::from_millis(1),
            heartbeat_interval: Duration::from_millis(250),
            max_in_flight: 8 << 20,
            local_rwnd: 4 << 20,
            pmtu: PmtuConfig {
                base: crate::tether::config::BASE_DATAGRAM,
                max: crate::tether::config::MAX_DATAGRAM,
                overhead: crate::tether::record::RECORD_OVERHEAD,
                max_probes: 3,
                probe_timeout: Duration::from_millis(100),
                raise_interval: Duration::from_secs(600),
                rebound: Duration::from_secs(1),
            },
            black_hole_after: 8,
        }
    }
}

/// What the handshake established, read off INIT / INIT ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssocParams {
    /// Tag the peer puts in packets to us (our initiate tag).
    pub local_vtag: u32,
    /// Tag we put in packets to the peer (its initiate tag).
    pub peer_vtag: u32,
    /// Our first TSN.
    pub local_initial_tsn: u32,
    /// The peer's first TSN.
    pub peer_initial_tsn: u32,
    /// The peer's initial receive window.
    pub peer_rwnd: u32,
    /// Streams the peer accepts from us.
    pub streams: u16,
    /// Both ends announced FORWARD-TSN.
    pub forward_tsn: bool,
}

/// Watches the library's handshake packets go by and collects [`AssocParams`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Snoop {
    local: Option<Init>,
    peer: Option<Init>,
    /// COOKIE ACK crossed (sent by the acceptor or received by the initiator).
    pub cookie_acked: bool,
}

impl Snoop {
    /// Looks at one plaintext SCTP packet; `outbound` when this end sends it.
    pub fn observe(&mut self, packet: &[u8], outbound: bool) {
        let Ok(p) = Packet::parse(packet) else { return };
        for c in p.iter() {
            let Ok(c) = c else { return };
            match c.kind {
                chunk::INIT | chunk::INIT_ACK => {
                    if let Ok(init) = Init::parse(c.value) {
                        if outbound {
                            self.local = Some(init);
                        } else {
                            self.peer = Some(init);
                        }
                    }
                }
                chunk::COOKIE_ACK => self.cookie_acked = true,
                _ => {}
            }
        }
    }

    /// The parameters, once both INITs were seen and COOKIE ACK crossed.
    pub fn params(&self) -> Option<AssocParams> {
        let (l, p) = (self.local?, self.peer?);
        self.cookie_acked.then_some(AssocParams {
            local_vtag: l.initiate_tag,
            peer_vtag: p.initiate_tag,
            local_initial_tsn: l.initial_tsn,
            peer_initial_tsn: p.initial_tsn,
            peer_rwnd: p.a_rwnd,
            streams: p.inbound_streams.min(l.outbound_streams),
            forward_tsn: l.forward_tsn && p.forward_tsn,
        })
    }
}

/// Why the association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssocEnd {
    /// The peer sent ABORT.
    PeerAbort,
    /// The peer sent SHUTDOWN.
    PeerShutdown,
}

/// Counters of the owned data path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssocStats {
    /// DATA chunks sent.
    pub data_sent: u64,
    /// DATA chunks accepted (first arrivals).
    pub data_received: u64,
    /// Duplicate DATA chunks.
    pub duplicates: u64,
    /// Fragmented messages dropped (peers must not fragment: the MTU is raised for that).
    pub fragments_dropped: u64,
    /// Chunks of types the data path does not act on.
    pub ignored_chunks: u64,
    /// SACKs sent.
    pub sacks_sent: u64,
    /// HEARTBEATs sent.
    pub heartbeats_sent: u64,
    /// Path MTU probes and their outcomes.
    pub pmtu: PmtuStats,
}

/// What one inbound packet carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inbound {
    /// Bit `i` set: chunk `i` is a DATA chunk to deliver.
    pub accepted: u128,
}

/// The owned SCTP association: one per tether.
#[derive(Debug)]
pub struct Association {
    params: AssocParams,
    cfg: AssocConfig,
    rx: RecvTracker,
    tx: SendTracker,
    epoch: Instant,
    unsacked: u32,
    sack_due: bool,
    sack_deadline: Option<Instant>,
    dups: [u32; MAX_DUPS],
    n_dups: usize,
    hb_nonce: u64,
    hb_next: Instant,
    /// HEARTBEATs to answer: a probe and the small HEARTBEAT right behind it can arrive
    /// before this end polls, and both need their answer.
    hb_echo: [[u8; MAX_HEARTBEAT_ECHO]; MAX_ECHOES],
    hb_echo_len: [usize; MAX_ECHOES],
    hb_echoes: usize,
    cookie_ack_due: bool,
    shutdown_ack_due: bool,
    abort_due: bool,
    srtt: Option<Duration>,
    end: Option<AssocEnd>,
    stats: AssocStats,
    pmtu: PathMtu,
}

impl Association {
    /// Takes over from the library with the snooped parameters.
    pub fn new(params: AssocParams, cfg: AssocConfig, now: Instant) -> Self {
        let pmtu = PathMtu::new(cfg.pmtu, now);
        let mut a = Self {
            params,
            cfg,
            rx: RecvTracker::new(params.peer_initial_tsn),
            tx: SendTracker::new(
                params.local_initial_tsn,
                params.peer_rwnd,
                cfg.max_in_flight,
                now,
            ),
            epoch: now,
            unsacked: 0,
            sack_due: false,
            sack_deadline: None,
            dups: [0; MAX_DUPS],
            n_dups: 0,
            hb_nonce: 0,
            hb_next: now,
            hb_echo: [[0; MAX_HEARTBEAT_ECHO]; MAX_ECHOES],
            hb_echo_len: [0; MAX_ECHOES],
            hb_echoes: 0,
            cookie_ack_due: false,
            shutdown_ack_due: false,
            abort_due: false,
            srtt: None,
            end: None,
            stats: AssocStats::default(),
            pmtu,
        };
        let base = a.pmtu.config().align(cfg.pmtu.base);
        a.tx.set_big_above(max_message_in(base, cfg.pmtu.overhead));
        a
    }

    /// The confirmed path MTU: the largest datagram this association sends.
    pub fn plpmtu(&self) -> usize {
        self.pmtu.plpmtu()
    }

    /// The largest message [`Self::frame_data`] should be given now: one DATA chunk in one
    /// datagram of [`Self::plpmtu`] bytes.
    #[inline]
    pub fn max_message(&self) -> usize {
        max_message_in(self.pmtu.plpmtu(), self.cfg.pmtu.overhead)
    }

    /// The path MTU search.
    pub fn path_mtu(&self) -> &PathMtu {
        &self.pmtu
    }

    /// Puts the path MTU to the test when big messages keep going missing.
    fn check_black_hole(&mut self) {
        if self.tx.big_lost_run >= self.cfg.black_hole_after {
            self.tx.big_lost_run = 0;
            self.pmtu.suspect();
        }
    }

    /// The parameters the association runs with.
    pub fn params(&self) -> &AssocParams {
        &self.params
    }

    /// Counters.
    pub fn stats(&self) -> AssocStats {
        AssocStats {
            pmtu: self.pmtu.stats(),
            ..self.stats
        }
    }

    /// Smoothed RTT from heartbeats.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// TSNs and bytes in flight.
    pub fn in_flight(&self) -> (u32, usize) {
        (self.tx.in_flight(), self.tx.in_flight_bytes())
    }

    /// Messages counted lost (abandoned unacked).
    pub fn lost(&self) -> u64 {
        self.tx.lost
    }

    /// FORWARD-TSN chunks sent.
    pub fn forwards_sent(&self) -> u64 {
        self.tx.forwards_sent
    }

    /// Why the association ended, if it did.
    pub fn end(&self) -> Option<AssocEnd> {
        self.end
    }

    /// Queues an ABORT (sent by the next [`Self::poll_control`]).
    pub fn abort(&mut self) {
        self.abort_due = true;
    }

    /// How much earlier than an acked message a missing one must have left to count as
    /// lost: a quarter RTT (RACK's choice), at least [`AssocConfig::reorder_window`].
    fn reorder_window(&self) -> Duration {
        let q = self.srtt.map_or(Duration::ZERO, |r| r / 4);
        q.max(self.cfg.reorder_window)
    }

    fn abandon_timeout(&self) -> Duration {
        self.cfg
            .abandon_after
            .max(self.srtt.map_or(Duration::ZERO, |r| 2 * r))
    }

    /// Frames one message in place: `packet[wire::DATA_OFFSET..][..len]` holds the payload and
    /// `packet` has room for up to 3 bytes of padding after it. Returns the packet length.
    #[inline]
    pub fn frame_data(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        len: usize,
        stream: u16,
    ) -> Result<usize, SendRefused> {
        let tsn = self.tx.assign(len, now)?;
        wire::write_common_header(packet, PORT, PORT, self.params.peer_vtag);
        let data = Data {
            tsn,
            stream,
            ssn: 0,
            ppid: if len == 0 {
                wire::ppid::BINARY_EMPTY
            } else {
                wire::ppid::BINARY
            },
        };
        let n = wire::COMMON_HEADER_LEN
            + wire::write_data(
                &mut packet[wire::COMMON_HEADER_LEN..],
                &data,
                data_flags::WHOLE_UNORDERED,
                len,
            );
        wire::seal_checksum(&mut packet[..n]);
        self.stats.data_sent += 1;
        Ok(n)
    }

    /// Processes one plaintext inbound packet, just opened from an authenticated DTLS
    /// record (so its checksum is not checked again: see [`Packet::parse_authenticated`]).
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) -> Result<Inbound, WireError> {
        let p = Packet::parse_authenticated(packet)?;
        if p.vtag != self.params.local_vtag {
            return Err(WireError::VerificationTag);
        }
        let mut inbound = Inbound::default();
        for (i, c) in p.iter().enumerate() {
            let c = c?;
            match c.kind {
                chunk::DATA => self.on_data(i, c.flags, c.value, &mut inbound)?,
                chunk::SACK => {
                    let s = Sack::parse(c.value)?;
                    let gaps = (0..s.gaps).map(|g| s.gap(g));
                    let reorder = self.reorder_window();
                    self.tx.on_sack(s.cum_tsn, s.a_rwnd, gaps, now, reorder);
                    self.check_black_hole();
                }
                chunk::FORWARD_TSN => {
                    let v: [u8; 4] = c
                        .value
                        .get(..4)
                        .and_then(|v| v.try_into().ok())
                        .ok_or(WireError::Truncated)?;
                    self.rx.forward(u32::from_be_bytes(v));
                    self.sack_due = true;
                }
                chunk::HEARTBEAT => {
                    if c.value.len() <= MAX_HEARTBEAT_ECHO {
                        // The newest replaces the last slot when all are taken.
                        let i = self.hb_echoes.min(MAX_ECHOES - 1);
                        self.hb_echo[i][..c.value.len()].copy_from_slice(c.value);
                        self.hb_echo_len[i] = c.value.len();
                        self.hb_echoes = i + 1;
                    }
                }
                chunk::HEARTBEAT_ACK => self.on_heartbeat_ack(now, c.value),
                chunk::COOKIE_ECHO => self.cookie_ack_due = true,
                chunk::ABORT => self.end = Some(AssocEnd::PeerAbort),
                chunk::SHUTDOWN => {
                    self.shutdown_ack_due = true;
                    self.end = Some(AssocEnd::PeerShutdown);
                }
                _ => self.stats.ignored_chunks += 1,
            }
        }
        if self.unsacked >= self.cfg.sack_every {
            self.sack_due = true;
        } else if self.unsacked > 0 && self.sack_deadline.is_none() {
            self.sack_deadline = Some(now + self.cfg.sack_delay);
        }
        Ok(inbound)
    }

    #[inline]
    fn on_data(
        &mut self,
        index: usize,
        flags: u8,
        value: &[u8],
        inbound: &mut Inbound,
    ) -> Result<(), WireError> {
        let d = Data::parse(value)?;
        match self.rx.receive(d.tsn) {
            Arrival::Duplicate => {
                self.stats.duplicates += 1;
                if self.n_dups < MAX_DUPS {
                    self.dups[self.n_dups] = d.tsn;
                    self.n_dups += 1;
                }
                self.sack_due = true;
            }
            arrival => {
                self.unsacked += 1;
                self.stats.data_received += 1;
                // Out-of-order arrivals are reported at once (RFC 9260 §6.7).
                if arrival == Arrival::OutOfOrder || self.rx.has_gaps() {
                    self.sack_due = true;
                }
                let whole = flags & (data_flags::BEGIN | data_flags::END)
                    == data_flags::BEGIN | data_flags::END;
                if !whole {
                    self.stats.fragments_dropped += 1;
                } else if d.ppid != wire::ppid::DCEP && index < MAX_CHUNKS_TRACKED {
                    inbound.accepted |= 1 << index;
                }
            }
        }
        Ok(())
    }

    fn on_heartbeat_ack(&mut self, now: Instant, value: &[u8]) {
        // Our heartbeat info: parameter type 1, length 20 (24 for a probe), nonce, send
        // time in µs (, probed size).
        let be64 = |v: &[u8]| u64::from_be_bytes(v.try_into().unwrap_or_default());
        let param_len = value
            .get(2..4)
            .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        if value.len() >= PROBE_INFO_LEN && value[..2] == [0, 1] && param_len >= PROBE_INFO_LEN {
            let size = u32::from_be_bytes(value[20..24].try_into().unwrap_or_default());
            self.pmtu
                .on_probe_ack(now, be64(&value[4..12]), size as usize);
            return;
        }
        if value.len() < 20 || value[..4] != HB_INFO {
            return;
        }
        let nonce = be64(&value[4..12]);
        let sent_us = be64(&value[12..20]);
        if nonce > self.hb_nonce || self.hb_nonce - nonce > 16 {
            return;
        }
        let sent = self.epoch + Duration::from_micros(sent_us);
        let Some(sample) = now.checked_duration_since(sent) else {
            return;
        };
        self.pmtu.on_heartbeat_ack(sent);
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
    }

    /// Writes a path MTU probe into `buf` when one is due, filling the packet to the size
    /// tried less [`PmtuConfig::overhead`]: a HEARTBEAT and a PAD chunk, or a HEARTBEAT
    /// whose info holds the padding ([`pmtu::ProbeStyle`]). Returns its length. A probe
    /// never carries data or other control chunks, so losing it loses nothing else.
    pub fn poll_probe(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let overhead = self.cfg.pmtu.overhead;
        if !self.pmtu.probe_due(now) {
            return None;
        }
        let due = self.pmtu.poll_probe(now)?;
        let len = due.size.checked_sub(overhead)?;
        let hb = wire::COMMON_HEADER_LEN;
        let info_at = hb + wire::CHUNK_HEADER_LEN;
        let info_len = match self.pmtu.style() {
            pmtu::ProbeStyle::Pad => PROBE_INFO_LEN,
            pmtu::ProbeStyle::Echo => len.checked_sub(info_at)?,
        };
        let info = buf.get_mut(info_at..info_at + info_len)?;
        info[..2].copy_from_slice(&[0, 1]);
        info[2..4].copy_from_slice(&(info_len as u16).to_be_bytes());
        info[4..12].copy_from_slice(&due.nonce.to_be_bytes());
        let us = now.duration_since(self.epoch).as_micros() as u64;
        info[12..20].copy_from_slice(&us.to_be_bytes());
        info[20..24].copy_from_slice(&(due.size as u32).to_be_bytes());
        info[PROBE_INFO_LEN..].fill(0);
        wire::write_chunk_header(
            &mut buf[hb..],
            chunk::HEARTBEAT,
            0,
            wire::CHUNK_HEADER_LEN + info_len,
        );
        let at = info_at + info_len;
        if at < len {
            let pad = len.checked_sub(at + wire::CHUNK_HEADER_LEN)?;
            let room = buf.get_mut(at..len)?;
            wire::write_chunk_header(room, PAD_CHUNK, 0, wire::CHUNK_HEADER_LEN + pad);
            room[wire::CHUNK_HEADER_LEN..].fill(0);
        }
        wire::write_common_header(buf, PORT, PORT, self.params.peer_vtag);
        wire::seal_checksum(&mut buf[..len]);
        // A small HEARTBEAT right behind it tells a lost probe from a dead path.
        self.hb_next = now;
        Some(len)
    }

    /// Whether a control packet is waiting for [`Self::poll_control`].
    pub fn control_due(&self, now: Instant) -> bool {
        self.abort_due
            || self.cookie_ack_due
            || self.shutdown_ack_due
            || self.sack_due
            || self.hb_echoes > 0
            || now >= self.hb_next
    }

    /// Writes one packet of every control chunk that is due into `buf`; returns its length.
    pub fn poll_control(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < 512 {
            return None;
        }
        let mut at = wire::COMMON_HEADER_LEN;
        let start = at;
        if self.abort_due {
            self.abort_due = false;
            at += wire::write_chunk(&mut buf[at..], chunk::ABORT, 0, &[]).ok()?;
        }
        if self.cookie_ack_due {
            self.cookie_ack_due = false;
            at += wire::write_chunk(&mut buf[at..], chunk::COOKIE_ACK, 0, &[]).ok()?;
        }
        if self.shutdown_ack_due {
            self.shutdown_ack_due = false;
            at += wire::write_chunk(&mut buf[at..], chunk::SHUTDOWN_ACK, 0, &[]).ok()?;
        }
        if self.sack_due {
            let mut gaps = [(0u16, 0u16); MAX_GAP_BLOCKS];
            let n = self.rx.gap_blocks(&mut gaps);
            at += wire::write_sack(
                &mut buf[at..],
                self.rx.cum(),
                self.cfg.local_rwnd,
                &gaps[..n],
                &self.dups[..self.n_dups],
            )
            .ok()?;
            self.sack_due = false;
            self.unsacked = 0;
            self.sack_deadline = None;
            self.n_dups = 0;
            self.stats.sacks_sent += 1;
        }
        if let Some(fwd) = self.tx.take_forward(now) {
            at += wire::write_forward_tsn(&mut buf[at..], fwd).ok()?;
        }
        // As many answers as fit; a long one (an echo-style probe) may wait for the next
        // packet.
        let mut answered = 0;
        while answered < self.hb_echoes {
            let echo = &self.hb_echo[answered][..self.hb_echo_len[answered]];
            let Ok(n) = wire::write_chunk(&mut buf[at..], chunk::HEARTBEAT_ACK, 0, echo) else {
                break;
            };
            at += n;
            answered += 1;
        }
        if answered > 0 {
            self.hb_echo.copy_within(answered..self.hb_echoes, 0);
            self.hb_echo_len.copy_within(answered..self.hb_echoes, 0);
            self.hb_echoes -= answered;
        }
        if now >= self.hb_next {
            self.hb_nonce += 1;
            self.hb_next = now + self.cfg.heartbeat_interval;
            let mut info = [0u8; 20];
            info[..4].copy_from_slice(&[0, 1, 0, 20]);
            info[4..12].copy_from_slice(&self.hb_nonce.to_be_bytes());
            let us = now.duration_since(self.epoch).as_micros() as u64;
            info[12..20].copy_from_slice(&us.to_be_bytes());
            at += wire::write_chunk(&mut buf[at..], chunk::HEARTBEAT, 0, &info).ok()?;
            self.stats.heartbeats_sent += 1;
        }
        if at == start {
            return None;
        }
        wire::write_common_header(buf, PORT, PORT, self.params.peer_vtag);
        wire::seal_checksum(&mut buf[..at]);
        Some(at)
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.sack_deadline.is_some_and(|d| now >= d) {
            self.sack_due = true;
        }
        let timeout = self.abandon_timeout();
        self.tx.on_timer(now, timeout);
        self.check_black_hole();
        self.pmtu.handle_timeout(now, self.srtt);
    }

    /// The next instant a timer needs [`Self::handle_timeout`] or [`Self::poll_control`].
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.hb_next;
        if let Some(d) = self.sack_deadline {
            t = t.min(d);
        }
        if let Some(d) = self.tx.timer(self.abandon_timeout()) {
            t = t.min(d);
        }
        if let Some(d) = self.pmtu.poll_timeout(self.srtt) {
            t = t.min(d);
        }
        t
    }
}

/// The DATA chunks [`Association::handle_packet`] accepted, as (stream, payload) slices.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    chunks: wire::ChunkIter<'a>,
    accepted: u128,
    index: usize,
}

impl<'a> Messages<'a> {
    /// Walks `packet` (already checked by `handle_packet`) for the accepted chunks.
    pub fn new(packet: &'a [u8], inbound: Inbound) -> Self {
        let chunks = match Packet::parse_unchecked(packet) {
            Some(p) => p.iter(),
            None => wire::ChunkIter::empty(),
        };
        Self {
            chunks,
            accepted: inbound.accepted,
            index: 0,
        }
    }

    /// An empty set.
    pub fn none() -> Self {
        Self {
            chunks: wire::ChunkIter::empty(),
            accepted: 0,
            index: 0,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.index < MAX_CHUNKS_TRACKED && self.accepted >> self.index != 0 {
            let c = self.chunks.next()?.ok()?;
            let i = self.index;
            self.index += 1;
            if self.accepted & (1 << i) != 0 {
                let d = Data::parse(c.value).ok()?;
                return Some((d.stream, &c.value[wire::DATA_VALUE_PAYLOAD..]));
            }
        }
        None
    }
}
