//! WebRTC tethers behind [`HopTransport`]: each tether a [`Tether`] (ICE, DTLS 1.2, SCTP,
//! negotiated unordered channels), driven by the worker loop.
//!
//! - `frame` turns the sealed packet into one DTLS record holding one SCTP DATA chunk, in
//!   place: [`crate::tether::HEADROOM`] bytes in front, padding and the GCM tag behind.
//! - `unframe` hands the datagram to the tether it came from (by source address: the
//!   open's candidates, then the pair ICE selected); the messages are slices of it.
//! - A tether's own datagrams (STUN, handshake, SACK, FORWARD-TSN, heartbeats, close
//!   alert) leave through `poll_transmit`, round robin over the tethers.
//! - Events become [`StateChange`]s: connected → `Up` (with the selected peer), silent →
//!   `Down`, revived → `Up`, closed → `Closed`; a fingerprint mismatch is also counted.
//!
//! A removed tether sends its close alert before it is dropped.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use conflux_shared::wire::record::report::PPM;
use conflux_shared::wire::record::{TelemetryBody, TetherId, TetherState};

use super::stun::StunDesk;
use super::{HopTransport, OpenRefused, StateChange};
use crate::packet::FlowBuildHasher;
use crate::stun::{Message, looks_like_stun};
use crate::tether::record::TAG_LEN;
use crate::tether::{
    CloseReason, Fingerprint, HEADROOM, IceCredentials, OutPacket, TAILROOM, Tether, TetherConfig,
    TetherEvent, TetherState as Life,
};

/// What the WebRTC side counts (beside each tether's own telemetry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebRtcCounters {
    /// Tethers opened.
    pub opened: u64,
    /// Tethers that came up.
    pub connected: u64,
    /// Tethers closed because the peer's certificate did not match the expected fingerprint.
    pub fingerprint_mismatch: u64,
    /// Tethers closed for any other reason (set-up failure, timeout, peer close).
    pub closed: u64,
    /// Packets a tether refused to frame (not up, window full, too big).
    pub refused: u64,
    /// Datagrams from an address no tether expects.
    pub foreign_datagrams: u64,
    /// Messages of a datagram beyond what the worker's range array holds.
    pub overflow: u64,
}

impl WebRtcCounters {
    /// Every counter with its snapshot name.
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("tether_opened", self.opened),
            ("tether_connected", self.connected),
            ("tether_fingerprint_mismatch", self.fingerprint_mismatch),
            ("tether_closed", self.closed),
            ("tether_refused", self.refused),
            ("tether_foreign_datagram", self.foreign_datagrams),
            ("tether_overflow", self.overflow),
        ]
    }
}

struct Slot {
    id: TetherId,
    tether: Tether,
    /// What it was opened with, to recognise a repeated open.
    opened_with: OpenedWith,
    /// Totals at the previous telemetry report.
    reported_bytes: u64,
    reported_packets: u64,
}

/// The WebRTC tethers of one worker.
pub struct WebRtc {
    slots: Vec<Slot>,
    by_id: HashMap<TetherId, usize, FlowBuildHasher>,
    by_addr: HashMap<SocketAddr, usize, FlowBuildHasher>,
    /// Tethers by this end's ICE username fragment: checks from an address no tether
    /// expects yet (a NAT's mapping, a peer that moved) find their ICE agent by it.
    by_ufrag: HashMap<Box<[u8]>, usize>,
    /// STUN service and reflexive-address queries.
    pub stun: StunDesk,
    /// Removed tethers still sending their close alert.
    closing: Vec<Tether>,
    changes: VecDeque<StateChange>,
    next_transmit: usize,
    /// What this side counts.
    pub counters: WebRtcCounters,
}

impl std::fmt::Debug for WebRtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtc")
            .field("tethers", &self.slots.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Default for WebRtc {
    fn default() -> Self {
        Self::new()
    }
}

/// Datagram length of a `len`-byte message: record header and nonce, SCTP common and DATA
/// headers, the message padded to 4 bytes, the tag.
pub const fn datagram_len(len: usize) -> usize {
    HEADROOM + ((len + 3) & !3) + TAG_LEN
}

/// The parameters of an open that make it the same tether.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenedWith {
    candidates: Vec<SocketAddr>,
    local: IceCredentials,
    remote: IceCredentials,
    controlling: bool,
    fingerprint: Fingerprint,
    channels: u16,
}

impl OpenedWith {
    fn of(cfg: &TetherConfig) -> Self {
        Self {
            candidates: cfg.remote_candidates.clone(),
            local: cfg.local_ice.clone(),
            remote: cfg.remote_ice.clone(),
            controlling: cfg.ice_controlling,
            fingerprint: cfg.expected_fingerprint,
            channels: cfg.channels,
        }
    }
}

impl WebRtc {
    /// No tethers yet.
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            by_id: HashMap::default(),
            by_addr: HashMap::default(),
            by_ufrag: HashMap::new(),
            stun: StunDesk::default(),
            closing: Vec::new(),
            changes: VecDeque::new(),
            next_transmit: 0,
            counters: WebRtcCounters::default(),
        }
    }

    /// Whether `tether` is one of these.
    #[inline]
    pub fn index(&self, tether: TetherId) -> Option<usize> {
        self.by_id.get(&tether).copied()
    }

    /// The tether `id`, if open here.
    pub fn get(&self, id: TetherId) -> Option<&Tether> {
        self.index(id).map(|i| &self.slots[i].tether)
    }

    /// Open tethers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No tether is open.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn reindex(&mut self) {
        self.by_id.clear();
        self.by_addr.clear();
        self.by_ufrag.clear();
        for (i, s) in self.slots.iter().enumerate() {
            self.by_id.insert(s.id, i);
            self.by_ufrag
                .insert(s.opened_with.local.ufrag.as_bytes().into(), i);
            for a in s.tether.candidates() {
                self.by_addr.insert(*a, i);
            }
            if let Some(r) = s.tether.remote() {
                self.by_addr.insert(r, i);
            }
        }
    }

    /// Frames one packet on the tether at `index` (see [`HopTransport::frame`]).
    #[inline]
    pub fn frame_at(
        &mut self,
        now: Instant,
        index: usize,
        flow: u32,
        buf: &mut [u8],
        len: usize,
    ) -> Option<Range<usize>> {
        let t = &mut self.slots[index].tether;
        let mut batch = [OutPacket {
            buf,
            len,
            flow,
            datagram_len: 0,
        }];
        let s = t.send_batch(now, &mut batch);
        if s.sent == 1 {
            Some(0..batch[0].datagram_len)
        } else {
            self.counters.refused += 1;
            None
        }
    }

    /// Unframes a datagram on the tether at `index` (see [`HopTransport::unframe`]).
    pub fn unframe_at(
        &mut self,
        now: Instant,
        index: usize,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut [Range<usize>],
    ) -> usize {
        let base = datagram.as_ptr() as usize;
        let stun = looks_like_stun(datagram);
        let received = self.slots[index].tether.handle_input(now, from, datagram);
        if stun {
            // A check may have moved the selected pair (a prflx candidate, a peer that
            // moved): its datagrams must find this tether from now on.
            if let Some(r) = self.slots[index].tether.remote() {
                self.by_addr.insert(r, index);
            }
            return 0;
        }
        let mut k = 0;
        for m in received {
            let Some(slot) = out.get_mut(k) else {
                self.counters.overflow += 1;
                continue;
            };
            // Messages are slices of the datagram the tether decrypted in place.
            let start = m.data.as_ptr() as usize - base;
            *slot = start..start + m.data.len();
            k += 1;
        }
        k
    }

    /// Takes a STUN datagram that is not for a known tether's ICE agent: an answer to a
    /// reflexive query, a request for the binding service, or an ICE check from an address
    /// no tether expects yet (found by its username). `None`: not handled here.
    pub fn stun_input(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut [Range<usize>],
    ) -> Option<usize> {
        if !looks_like_stun(datagram) {
            return None;
        }
        let known = self.by_addr.contains_key(&from);
        let m = match Message::parse(datagram) {
            Ok(m) => m,
            Err(_) if known => return None,
            Err(e) => {
                self.stun.counters.malformed += 1;
                tracing::debug!(%from, "STUN datagram refused: {e}");
                return Some(0);
            }
        };
        let txid = m.txid();
        if m.is_binding_success() {
            let mapped = m.xor_mapped_address().ok().flatten();
            if self.stun.answered(from, txid, mapped) {
                return Some(0);
            }
            if known {
                return None;
            }
            self.stun.unsolicited();
            return Some(0);
        }
        if !m.is_binding_request() {
            return if known { None } else { Some(0) };
        }
        let Some(ufrag) = m.local_ufrag() else {
            self.stun.answer(now, from, txid);
            return Some(0);
        };
        if known {
            return None;
        }
        let Some(&i) = self.by_ufrag.get(ufrag) else {
            self.counters.foreign_datagrams += 1;
            return Some(0);
        };
        Some(self.unframe_at(now, i, from, datagram, out))
    }

    /// The tether a datagram from `from` belongs to.
    #[inline]
    pub fn index_of_addr(&self, from: &SocketAddr) -> Option<usize> {
        self.by_addr.get(from).copied()
    }

    fn on_event(&mut self, i: usize, e: TetherEvent) {
        let s = &self.slots[i];
        let (state, peer) = match e {
            TetherEvent::Connected => {
                self.counters.connected += 1;
                (TetherState::Up, s.tether.remote())
            }
            TetherEvent::Revived => (TetherState::Up, None),
            TetherEvent::Dead => (TetherState::Down, None),
            TetherEvent::Closed(reason) => {
                if reason == CloseReason::FingerprintMismatch {
                    self.counters.fingerprint_mismatch += 1;
                    tracing::warn!(
                        tether = s.id,
                        "tether closed: peer certificate fingerprint mismatch"
                    );
                } else {
                    self.counters.closed += 1;
                    tracing::info!(tether = s.id, %reason, "tether closed");
                }
                (TetherState::Closed, None)
            }
        };
        if let Some(p) = peer {
            self.by_addr.insert(p, i);
        }
        self.changes.push_back(StateChange {
            tether: s.id,
            state,
            peer,
        });
    }
}

impl HopTransport for WebRtc {
    fn headroom(&self) -> usize {
        HEADROOM
    }

    fn tailroom(&self) -> usize {
        TAILROOM
    }

    fn add_tether(&mut self, _now: Instant, _tether: TetherId, _peer: SocketAddr) {}

    fn remove_tether(&mut self, _now: Instant, tether: TetherId) {
        let Some(i) = self.index(tether) else {
            return;
        };
        let mut s = self.slots.remove(i);
        if !matches!(s.tether.state(), Life::Closed(_)) {
            s.tether.close();
        }
        self.closing.push(s.tether);
        self.reindex();
        self.changes.push_back(StateChange {
            tether,
            state: TetherState::Closed,
            peer: None,
        });
    }

    fn open_tether(
        &mut self,
        now: Instant,
        tether: TetherId,
        cfg: TetherConfig,
    ) -> Result<bool, OpenRefused> {
        let opened_with = OpenedWith::of(&cfg);
        if let Some(i) = self.index(tether) {
            return if self.slots[i].opened_with == opened_with {
                Ok(false)
            } else {
                Err(OpenRefused::Exists(tether))
            };
        }
        let t = Tether::new(cfg, now)?;
        self.slots.push(Slot {
            id: tether,
            tether: t,
            opened_with,
            reported_bytes: 0,
            reported_packets: 0,
        });
        self.reindex();
        self.counters.opened += 1;
        self.changes.push_back(StateChange {
            tether,
            state: TetherState::Connecting,
            peer: None,
        });
        Ok(true)
    }

    fn framed_len(&self, len: usize) -> usize {
        datagram_len(len)
    }

    #[inline]
    fn max_packet(&self, tether: TetherId) -> usize {
        // A tether not up yet refuses everything itself; no size is known to report.
        match self
            .index(tether)
            .map(|i| self.slots[i].tether.max_message())
        {
            Some(m) if m > 0 => m,
            _ => usize::MAX,
        }
    }

    fn framed_range(&self, _tether: TetherId, len: usize) -> Range<usize> {
        0..datagram_len(len)
    }

    #[inline]
    fn frame(
        &mut self,
        now: Instant,
        tether: TetherId,
        flow: u32,
        buf: &mut [u8],
        len: usize,
    ) -> Option<Range<usize>> {
        let i = self.index(tether)?;
        self.frame_at(now, i, flow, buf, len)
    }

    fn unframe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        _tether: Option<TetherId>,
        datagram: &mut [u8],
        out: &mut [Range<usize>],
    ) -> usize {
        if let Some(k) = self.stun_input(now, from, datagram, out) {
            return k;
        }
        match self.index_of_addr(&from) {
            Some(i) => self.unframe_at(now, i, from, datagram, out),
            None => {
                self.counters.foreign_datagrams += 1;
                0
            }
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if let Some(x) = self.stun.poll_transmit(buf) {
            return Some(x);
        }
        while let Some(t) = self.closing.last_mut() {
            if let Some(x) = t.poll_transmit(now, buf) {
                return Some((x.to, x.len));
            }
            self.closing.pop();
        }
        let n = self.slots.len();
        for k in 0..n {
            let i = (self.next_transmit + k) % n;
            if let Some(x) = self.slots[i].tether.poll_transmit(now, buf) {
                // The next call starts after this tether, so one busy tether cannot starve
                // the others' acknowledgements.
                self.next_transmit = i + 1;
                return Some((x.to, x.len));
            }
        }
        None
    }

    fn add_candidates(&mut self, now: Instant, tether: TetherId, cands: &[SocketAddr]) -> bool {
        let Some(i) = self.index(tether) else {
            return false;
        };
        let s = &mut self.slots[i];
        s.tether.add_remote_candidates(now, cands);
        for c in cands {
            self.by_addr.insert(*c, i);
        }
        true
    }

    fn set_stun_service(&mut self, on: bool) {
        self.stun.service = on;
    }

    fn stun_query(&mut self, now: Instant, servers: &[SocketAddr]) {
        self.stun.query(now, servers);
    }

    fn poll_reflexive(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        self.stun.poll_learned()
    }

    fn poll_state(&mut self) -> Option<StateChange> {
        for i in 0..self.slots.len() {
            while let Some(e) = self.slots[i].tether.poll_event() {
                self.on_event(i, e);
            }
        }
        self.changes.pop_front()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.tether.poll_timeout())
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        for s in &mut self.slots {
            if s.tether.poll_timeout().is_some_and(|t| t <= now) {
                s.tether.handle_timeout(now);
            }
        }
    }

    fn counters(&self, out: &mut dyn FnMut(&'static str, u64)) {
        for (name, v) in self.counters.named() {
            out(name, v);
        }
        for (name, v) in self.stun.counters.named() {
            out(name, v);
        }
    }

    fn telemetry(&mut self, worker: u16, out: &mut dyn FnMut(TelemetryBody)) {
        for s in &mut self.slots {
            let t = s.tether.telemetry();
            let bytes = t.bytes_sent.saturating_sub(s.reported_bytes);
            let packets = t.packets_sent.saturating_sub(s.reported_packets);
            s.reported_bytes = t.bytes_sent;
            s.reported_packets = t.packets_sent;
            let rtt_us = t
                .rtt
                .map_or(0, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
            let loss_ppm = (t.loss * f64::from(PPM)).clamp(0.0, f64::from(PPM)) as u32;
            let plpmtu = u16::try_from(t.plpmtu).unwrap_or(u16::MAX);
            out(TelemetryBody::new(
                s.id,
                worker,
                rtt_us,
                loss_ppm,
                bytes,
                packets,
                t.in_flight_packets,
            )
            .with_plpmtu(plpmtu));
        }
    }
}
