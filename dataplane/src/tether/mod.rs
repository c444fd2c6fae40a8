//! Tethers: WebRTC data channels to one next-hop node, driven sans-io.
//!
//! # Shape
//!
//! The libraries do what is rare and subtle; the per-packet work is Conflux's own:
//!
//! | layer | set-up | per packet |
//! |---|---|---|
//! | ICE | `rtc-ice` full agent, host candidates (`ice`) | first-byte demux only |
//! | DTLS 1.2 | `rtc-dtls` handshake, peer fingerprint checked | [`record`]: AES-128-GCM records sealed/opened in place, batched, one key schedule |
//! | SCTP | `rtc-sctp` four-way handshake | [`sctp`]: DATA framed in place, SACK, FORWARD-TSN, HEARTBEAT |
//! | channels | negotiated (no DCEP), unordered, `maxRetransmits = 0` | stream = flow hash mod channels |
//!
//! # How the fast path stands on public APIs (the spike)
//!
//! - **DTLS record keys.** `rtc_dtls::state::State::marshal_binary` (public, meant for
//!   resuming a connection) serializes with rkyv the master secret, both randoms, the suite,
//!   the epochs and the next local sequence number. [`keys`] mirrors that layout, validates
//!   it with rkyv's checker, and expands the key block per RFC 5246 §6.3. The export is not
//!   usable through `export_keying_material`: RFC 5705 reserves the "key expansion" label
//!   and the library refuses it. The crates are pinned to `=0.21.1` because the mirror must
//!   match; the byte-compatibility tests (library-sealed records opened here and the other
//!   way round) fail if it ever does not.
//! - **Sequence numbers.** Records this end seals start 64 above the library's next local
//!   sequence number, so a flight the library repeats after the handshake never reuses one
//!   (the peer's replay window would drop the duplicate). The explicit nonce is the record's
//!   own epoch ‖ sequence: unique per key, which is all RFC 5288 asks.
//! - **Demux.** Application-data records go to the owned path; handshake, alert and
//!   ChangeCipherSpec records still go to the library, which keeps its own keys to answer a
//!   repeated Finished or an alert.
//! - **SCTP.** `rtc-sctp` keeps TSNs, verification tags and windows private (its `chunk`
//!   module is crate-private too), and TSNs cannot be shared between two senders. So the
//!   library runs only the four-way handshake; its INIT / INIT ACK pass through the owned
//!   record layer, where [`sctp::Snoop`] reads tags, initial TSNs, windows and FORWARD-TSN
//!   support. Once COOKIE ACK crosses, the library association is dropped and
//!   [`sctp::Association`] owns the data path: nothing of the library is patched.
//! - **DCEP** is not used: channels are negotiated (both ends know the stream ids from
//!   signalling), which every WebRTC stack supports; a DCEP message from a peer is not
//!   delivered and gets no answer.
//! - **AEAD.** The DTLS suite is AES-128-GCM with a 13-byte record AAD, while the shared
//!   crate's batched sealer is AES-256-GCM bound to the stream header; the record path
//!   therefore keeps its own key (aws-lc-rs, or RustCrypto `aes-gcm`, chosen by the shared
//!   [`Backend`](conflux_shared::crypto::aead::Backend)) and loops a batch over one schedule.
//! - **use_srtp.** WebRTC clients always offer SRTP profiles and a server matching none
//!   must refuse, so the handshake accepts them; no SRTP ever runs.
//!
//! # MTU
//!
//! One inner packet = one DATA chunk = one UDP datagram: [`config::MAX_MESSAGE`] is 1,384
//! bytes (a 1,452-byte datagram on a 1,500-byte IPv6 path, less 37 bytes of DTLS record and
//! 28 of SCTP), so the TUN MTU is [`config::TUN_MTU`] = 1,352 after the stream header and
//! tag. Peers must raise their SCTP MTU the same way; a fragmented message is dropped and
//! counted rather than reassembled.
//!
//! Not every path carries 1,452-byte datagrams. Each association discovers what its path
//! does ([`sctp::pmtu`], DPLPMTUD): it starts at [`config::BASE_DATAGRAM`] (1,232 bytes),
//! probes up to [`config::MAX_DATAGRAM`] with HEARTBEAT + PAD probes that carry no data
//! (padded HEARTBEATs for a peer that drops packets with a PAD chunk),
//! searches again every ten minutes, and falls back to the base at once when big messages
//! stop getting through while small ones do. [`Tether::max_message`] follows the confirmed
//! size, and [`Tether::send_batch`] refuses (and counts in `too_big`) a message above it
//! rather than let the path drop it silently; the packet path keeps inner packets within it
//! (TCP MSS clamping, ICMP "fragmentation needed" / "packet too big" to the inner sender).
//!
//! # Run loop
//!
//! ```text
//! on datagram:  for m in tether.handle_input(now, from, &mut buf[..n]) { deliver(m) }
//! on timer:     tether.handle_timeout(now)
//! then always:  while let Some(t) = tether.poll_transmit(now, &mut out) { send(t) }
//!               while let Some(e) = tether.poll_event() { report(e) }
//!               arm(tether.poll_timeout())
//! to send:      tether.send_batch(now, &mut batch); send each buf[..datagram_len]
//! ```
//!
//! Caller-owned buffers: a message to send sits at [`HEADROOM`] in a buffer with
//! [`TAILROOM`] after it and leaves as a datagram in that same buffer; a received datagram is
//! decrypted in place and its messages are slices of it. No copy, no allocation and no map
//! lookup on either path once the tether is up.

pub mod config;
mod handshake;
mod ice;
pub mod keys;
pub mod record;
pub mod sctp;
mod telemetry;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

pub use config::{
    Fingerprint, IceCredentials, LocalCertificate, MAX_DATAGRAM, MAX_MESSAGE, TUN_MTU, TetherConfig,
};
pub use telemetry::{CloseReason, Telemetry, TetherEvent, TetherState};

use handshake::{Dtls, SctpSetup};
use ice::Ice;
use record::{RECORD_HEADROOM, RecordHeader, RecordOpener, RecordSealer, content};
use sctp::{Association, Inbound, Messages};
use telemetry::Counters;

/// Bytes a send buffer needs in front of the message.
pub const HEADROOM: usize = RECORD_HEADROOM + sctp::wire::DATA_OFFSET;
/// Bytes a send buffer needs after the message (chunk padding and the GCM tag).
pub const TAILROOM: usize = 3 + record::TAG_LEN;
/// Records of one datagram whose messages are delivered; later ones are left unopened.
pub const MAX_RECORDS_PER_DATAGRAM: usize = 16;
/// Gap between the library's last handshake sequence number and the owned path's first.
const SEQUENCE_GAP: u64 = 64;

/// A datagram written into the caller's buffer by [`Tether::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// Length of the datagram at the front of the buffer.
    pub len: usize,
}

/// One message to send, in its own buffer: payload at `buf[HEADROOM..][..len]`.
#[derive(Debug)]
pub struct OutPacket<'a> {
    /// Headroom, payload and tailroom; the datagram is written at its front.
    pub buf: &'a mut [u8],
    /// Payload length.
    pub len: usize,
    /// Flow hash: picks the channel, so one flow stays on one channel.
    pub flow: u32,
    /// Datagram length after [`Tether::send_batch`]; 0 if the message was not sent.
    pub datagram_len: usize,
}

/// What [`Tether::send_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendSummary {
    /// Messages turned into datagrams.
    pub sent: usize,
    /// Messages refused (not up, window full, too big).
    pub refused: usize,
}

/// A delivered message: the channel it came on and its bytes, inside the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Channel (SCTP stream id).
    pub channel: u16,
    /// Payload.
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    start: usize,
    end: usize,
    accepted: u128,
}

/// The messages one datagram carried.
#[derive(Debug)]
pub struct Received<'a> {
    buf: &'a [u8],
    slots: [Slot; MAX_RECORDS_PER_DATAGRAM],
    n: usize,
    next: usize,
    cur: Messages<'a>,
}

impl<'a> Received<'a> {
    fn new(buf: &'a [u8], slots: [Slot; MAX_RECORDS_PER_DATAGRAM], n: usize) -> Self {
        Self {
            buf,
            slots,
            n,
            next: 0,
            cur: Messages::none(),
        }
    }
}

impl<'a> Iterator for Received<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        loop {
            if let Some((channel, data)) = self.cur.next() {
                return Some(Message { channel, data });
            }
            if self.next >= self.n {
                return None;
            }
            let s = self.slots[self.next];
            self.next += 1;
            self.cur = Messages::new(
                &self.buf[s.start..s.end],
                Inbound {
                    accepted: s.accepted,
                },
            );
        }
    }
}

/// Why a tether could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TetherError {
    /// ICE agent set-up failed.
    #[error(transparent)]
    Ice(#[from] ice::IceError),
    /// DTLS configuration failed.
    #[error("DTLS configuration failed: {0}")]
    Dtls(String),
    /// The configuration names no channel.
    #[error("a tether needs at least one channel")]
    NoChannels,
}

/// One tether: the sans-io core a worker drives (see the module doc for the loop).
pub struct Tether {
    cfg: TetherConfig,
    ice: Ice,
    dtls: Dtls,
    sctp_setup: Option<SctpSetup>,
    setup_outbound: VecDeque<Bytes>,
    sealer: Option<RecordSealer>,
    opener: Option<RecordOpener>,
    assoc: Option<Association>,
    remote: Option<SocketAddr>,
    dtls_started: bool,
    state: TetherState,
    events: VecDeque<TetherEvent>,
    created: Instant,
    last_recv: Instant,
    dead: bool,
    close_alert_due: bool,
    counters: Counters,
}

impl std::fmt::Debug for Tether {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tether")
            .field("state", &self.state)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Tether {
    /// Starts ICE; DTLS and SCTP follow as the peer answers.
    pub fn new(cfg: TetherConfig, now: Instant) -> Result<Self, TetherError> {
        if cfg.channels == 0 {
            return Err(TetherError::NoChannels);
        }
        let ice = Ice::new(now, &cfg)?;
        let dtls = Dtls::new(&cfg).map_err(TetherError::Dtls)?;
        Ok(Self {
            cfg,
            ice,
            dtls,
            sctp_setup: None,
            setup_outbound: VecDeque::new(),
            sealer: None,
            opener: None,
            assoc: None,
            remote: None,
            dtls_started: false,
            state: TetherState::Connecting,
            events: VecDeque::with_capacity(8),
            created: now,
            last_recv: now,
            dead: false,
            close_alert_due: false,
            counters: Counters::default(),
        })
    }

    /// Current state.
    pub fn state(&self) -> TetherState {
        self.state
    }

    /// The address datagrams go to (the ICE-selected remote), once known.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// This end's certificate fingerprint.
    pub fn local_fingerprint(&self) -> Fingerprint {
        self.cfg.certificate.fingerprint()
    }

    fn end(&mut self, reason: CloseReason) {
        if matches!(self.state, TetherState::Closed(_)) {
            return;
        }
        self.state = TetherState::Closed(reason);
        self.events.push_back(TetherEvent::Closed(reason));
    }

    /// Closes the tether: a DTLS close_notify and an SCTP ABORT go out with the next polls.
    pub fn close(&mut self) {
        if self.sealer.is_some() {
            self.close_alert_due = true;
        }
        if let Some(a) = self.assoc.as_mut() {
            a.abort();
        }
        self.end(CloseReason::Local);
    }

    /// The peer's candidates this tether was opened with.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.cfg.remote_candidates
    }

    /// Processes one received datagram, decrypting in place; returns its messages.
    pub fn handle_input<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &'a mut [u8],
    ) -> Received<'a> {
        let empty = [Slot::default(); MAX_RECORDS_PER_DATAGRAM];
        match buf.first() {
            Some(0..=3) => {
                self.ice.handle_stun(now, from, buf);
                self.after_ice(now);
                Received::new(buf, empty, 0)
            }
            Some(20..=63) if !matches!(self.state, TetherState::Closed(_)) => {
                self.handle_dtls(now, from, buf)
            }
            _ => {
                self.counters.foreign_datagrams += 1;
                Received::new(buf, empty, 0)
            }
        }
    }

    fn after_ice(&mut self, now: Instant) {
        if let Some(sel) = self.ice.selected() {
            self.remote = Some(sel);
            if !self.dtls_started {
                self.dtls_started = true;
                if self.dtls.start(now).is_err() {
                    self.end(CloseReason::HandshakeFailed);
                }
            }
        }
        if self.ice.failed() && self.state == TetherState::Connecting {
            self.end(CloseReason::IceFailed);
        }
    }

    fn handle_dtls<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &'a mut [u8],
    ) -> Received<'a> {
        let mut slots = [Slot::default(); MAX_RECORDS_PER_DATAGRAM];
        let mut n = 0;
        if Some(from) != self.remote {
            if !self.ice.validates(now, from) {
                self.counters.foreign_datagrams += 1;
                return Received::new(buf, slots, 0);
            }
            if self.remote.is_none() {
                self.remote = Some(from);
            }
        }
        let mut for_library: Option<Vec<u8>> = None;
        let mut off = 0;
        while off < buf.len() && n < MAX_RECORDS_PER_DATAGRAM {
            let Ok(h) = RecordHeader::parse(&buf[off..]) else {
                self.counters.bad_records += 1;
                break;
            };
            let end = off + h.record_len();
            let fast = h.content_type == content::APPLICATION_DATA
                && self.opener.as_ref().is_some_and(|o| o.epoch() == h.epoch);
            if fast {
                let opener = self.opener.as_mut().expect("checked above");
                match opener.open_parsed(&h, &mut buf[off..end]) {
                    Ok(o) => {
                        self.alive(now);
                        let (start, stop) = (off + o.plaintext.start, off + o.plaintext.end);
                        if let Some(accepted) = self.on_sctp(now, &buf[start..stop]) {
                            slots[n] = Slot {
                                start,
                                end: stop,
                                accepted,
                            };
                            n += 1;
                        }
                    }
                    Err(_) => self.counters.bad_records += 1,
                }
            } else {
                for_library
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&buf[off..end]);
            }
            off = end;
        }
        if let Some(records) = for_library {
            n = self.feed_library(now, &records, buf, &mut slots, n);
        }
        Received::new(buf, slots, n)
    }

    fn alive(&mut self, now: Instant) {
        self.last_recv = now;
        if self.dead {
            self.dead = false;
            self.events.push_back(TetherEvent::Revived);
        }
    }

    /// Hands records the owned path does not take to the library. Application data the
    /// library decrypted (only possible before the owned keys exist) is copied to the front
    /// of `buf`, whose records the library has already consumed.
    fn feed_library(
        &mut self,
        now: Instant,
        records: &[u8],
        buf: &mut [u8],
        slots: &mut [Slot; MAX_RECORDS_PER_DATAGRAM],
        mut n: usize,
    ) -> usize {
        let r = self.dtls.read(now, records);
        if r.completed {
            self.finish_dtls(now);
        }
        if self.dtls.fingerprint_mismatch() {
            self.end(CloseReason::FingerprintMismatch);
        } else if r.fatal {
            self.end(if self.dtls.is_complete() {
                CloseReason::PeerClosed
            } else {
                CloseReason::HandshakeFailed
            });
        } else if r.peer_closed {
            self.end(CloseReason::PeerClosed);
        }
        if r.rejected {
            self.counters.bad_records += 1;
        }
        let mut at = if n == 0 { 0 } else { buf.len() };
        for d in r.app_data {
            self.alive(now);
            if at + d.len() <= buf.len() && n < MAX_RECORDS_PER_DATAGRAM {
                buf[at..at + d.len()].copy_from_slice(&d);
                if let Some(accepted) = self.on_sctp(now, &buf[at..at + d.len()]) {
                    slots[n] = Slot {
                        start: at,
                        end: at + d.len(),
                        accepted,
                    };
                    n += 1;
                }
                at += d.len();
            } else {
                let _ = self.on_sctp(now, &d);
            }
        }
        n
    }

    fn finish_dtls(&mut self, now: Instant) {
        let Some(state) = self.dtls.state() else {
            self.end(CloseReason::HandshakeFailed);
            return;
        };
        let matches = state
            .peer_certificates
            .first()
            .is_some_and(|c| Fingerprint::of_der(c) == self.cfg.expected_fingerprint);
        if !matches {
            self.end(CloseReason::FingerprintMismatch);
            return;
        }
        let keys = match keys::export_session_keys(state) {
            Ok(k) => k,
            Err(_) => {
                self.end(CloseReason::KeyExport);
                return;
            }
        };
        let b = self.cfg.backend;
        self.sealer = Some(RecordSealer::new(
            b,
            &keys.local,
            keys.local_epoch,
            keys.next_local_sequence + SEQUENCE_GAP,
        ));
        self.opener = Some(RecordOpener::new(b, &keys.remote, keys.remote_epoch));
        let streams = self.cfg.channels.max(16);
        match SctpSetup::new(
            now,
            self.cfg.dtls_client,
            self.cfg.assoc.local_rwnd,
            streams,
        ) {
            Ok(s) => self.sctp_setup = Some(s),
            Err(_) => self.end(CloseReason::HandshakeFailed),
        }
    }

    /// One plaintext SCTP packet; returns the DATA chunks to deliver.
    fn on_sctp(&mut self, now: Instant, packet: &[u8]) -> Option<u128> {
        if self.assoc.is_none() {
            let setup = self.sctp_setup.as_mut()?;
            setup.handle(now, packet);
            self.try_take_over(now);
        }
        let assoc = self.assoc.as_mut()?;
        let r = assoc.handle_packet(now, packet);
        if assoc.end().is_some() {
            self.end(CloseReason::PeerEnded);
        }
        match r {
            Ok(i) => {
                self.counters.packets_received += u64::from(i.accepted.count_ones());
                let bytes: usize = Messages::new(packet, i).map(|(_, d)| d.len()).sum();
                self.counters.bytes_received += bytes as u64;
                Some(i.accepted)
            }
            Err(_) => {
                self.counters.bad_packets += 1;
                None
            }
        }
    }

    /// The largest message [`Self::send_batch`] takes now: one DATA chunk in one datagram of
    /// the association's confirmed path MTU (the base until the first probe answers; 0
    /// before the tether is up).
    #[inline]
    pub fn max_message(&self) -> usize {
        self.assoc.as_ref().map_or(0, Association::max_message)
    }

    /// The association's confirmed path MTU (a UDP payload size), once up.
    pub fn plpmtu(&self) -> Option<usize> {
        self.assoc.as_ref().map(Association::plpmtu)
    }

    fn try_take_over(&mut self, now: Instant) {
        let Some(params) = self.sctp_setup.as_ref().and_then(|s| s.snoop.params()) else {
            return;
        };
        let setup = self.sctp_setup.take().expect("params came from it");
        self.setup_outbound = setup.into_outbound();
        self.assoc = Some(Association::new(params, self.cfg.assoc, now));
        if self.state == TetherState::Connecting {
            self.state = TetherState::Up;
            self.last_recv = now;
            self.events.push_back(TetherEvent::Connected);
        }
    }

    /// Frames, seals and writes each message of `batch` as a datagram into its own buffer,
    /// all under one key schedule. Send each `buf[..datagram_len]` to [`Self::remote`].
    pub fn send_batch(&mut self, now: Instant, batch: &mut [OutPacket<'_>]) -> SendSummary {
        let mut summary = SendSummary::default();
        let (Some(assoc), Some(sealer), TetherState::Up) =
            (self.assoc.as_mut(), self.sealer.as_mut(), self.state)
        else {
            for p in batch.iter_mut() {
                p.datagram_len = 0;
            }
            summary.refused = batch.len();
            self.counters.send_refused += batch.len() as u64;
            return summary;
        };
        let channels = u32::from(self.cfg.channels);
        let max = assoc.max_message().min(MAX_MESSAGE);
        for p in batch.iter_mut() {
            p.datagram_len = 0;
            if p.len > max || p.buf.len() < HEADROOM + p.len + TAILROOM {
                self.counters.too_big += 1;
                summary.refused += 1;
                continue;
            }
            let stream = (p.flow % channels) as u16;
            let Ok(n) = assoc.frame_data(now, &mut p.buf[RECORD_HEADROOM..], p.len, stream) else {
                self.counters.send_refused += 1;
                summary.refused += 1;
                continue;
            };
            match sealer.seal(content::APPLICATION_DATA, p.buf, n) {
                Ok(len) => {
                    p.datagram_len = len;
                    summary.sent += 1;
                    self.counters.bytes_sent += p.len as u64;
                }
                Err(_) => {
                    self.end(CloseReason::Exhausted);
                    summary.refused += batch.len() - summary.sent;
                    return summary;
                }
            }
        }
        summary
    }

    /// Writes the next control datagram (ICE, handshake, SACK, FORWARD-TSN, heartbeat, …)
    /// into `buf`, which must hold [`MAX_DATAGRAM`] bytes.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((to, len)) = self.ice.poll_transmit(buf) {
            return Some(Transmit { to, len });
        }
        let to = self.remote?;
        if let Some(len) = self.dtls.poll_transmit(buf) {
            return Some(Transmit { to, len });
        }
        let sealer = self.sealer.as_mut()?;
        if buf.len() < MAX_DATAGRAM {
            return None;
        }
        let room = buf.len() - RECORD_HEADROOM - record::TAG_LEN;
        let pending = self
            .setup_outbound
            .pop_front()
            .or_else(|| self.sctp_setup.as_mut()?.pop_outbound());
        if let Some(p) = pending.filter(|p| p.len() <= room) {
            buf[RECORD_HEADROOM..][..p.len()].copy_from_slice(&p);
            if let Ok(len) = sealer.seal(content::APPLICATION_DATA, buf, p.len()) {
                return Some(Transmit { to, len });
            }
        }
        if self.close_alert_due {
            self.close_alert_due = false;
            // close_notify: warning level (1), description 0.
            buf[RECORD_HEADROOM..RECORD_HEADROOM + 2].copy_from_slice(&[1, 0]);
            if let Ok(len) = sealer.seal(content::ALERT, buf, 2) {
                return Some(Transmit { to, len });
            }
        }
        let assoc = self.assoc.as_mut()?;
        if let Some(n) = assoc.poll_probe(now, &mut buf[RECORD_HEADROOM..RECORD_HEADROOM + room]) {
            let len = sealer.seal(content::APPLICATION_DATA, buf, n).ok()?;
            return Some(Transmit { to, len });
        }
        let n = assoc.poll_control(now, &mut buf[RECORD_HEADROOM..RECORD_HEADROOM + room])?;
        let len = sealer.seal(content::APPLICATION_DATA, buf, n).ok()?;
        Some(Transmit { to, len })
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ice.handle_timeout(now);
        self.after_ice(now);
        if self.dtls.handle_timeout(now).is_err() && !self.dtls.is_complete() {
            self.end(CloseReason::HandshakeFailed);
        }
        if let Some(s) = self.sctp_setup.as_mut() {
            s.handle_timeout(now);
        }
        if let Some(a) = self.assoc.as_mut() {
            a.handle_timeout(now);
        }
        match self.state {
            TetherState::Connecting if now >= self.created + self.cfg.setup_timeout => {
                self.end(CloseReason::SetupTimeout);
            }
            TetherState::Up if !self.dead && now >= self.last_recv + self.cfg.dead_after => {
                self.dead = true;
                self.events.push_back(TetherEvent::Dead);
            }
            _ => {}
        }
    }

    /// The next instant [`Self::handle_timeout`] is due.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let closed = matches!(self.state, TetherState::Closed(_));
        let mut t = [
            self.ice.poll_timeout(),
            self.dtls.poll_timeout(),
            self.sctp_setup.as_ref().and_then(SctpSetup::poll_timeout),
            self.assoc.as_ref().map(Association::poll_timeout),
            (self.state == TetherState::Connecting).then(|| self.created + self.cfg.setup_timeout),
            (self.state == TetherState::Up && !self.dead)
                .then(|| self.last_recv + self.cfg.dead_after),
        ]
        .into_iter()
        .flatten()
        .min();
        if closed {
            t = None;
        }
        t
    }

    /// The next event for the worker.
    pub fn poll_event(&mut self) -> Option<TetherEvent> {
        self.events.pop_front()
    }

    /// Figures for the worker to report.
    pub fn telemetry(&self) -> Telemetry {
        let c = &self.counters;
        let (in_flight_packets, in_flight_bytes) =
            self.assoc.as_ref().map_or((0, 0), Association::in_flight);
        let s = self
            .assoc
            .as_ref()
            .map(Association::stats)
            .unwrap_or_default();
        let lost = self.assoc.as_ref().map_or(0, Association::lost);
        Telemetry {
            state: self.state,
            dead: self.dead,
            rtt: self.assoc.as_ref().and_then(Association::srtt),
            packets_sent: s.data_sent,
            bytes_sent: c.bytes_sent,
            packets_received: c.packets_received,
            bytes_received: c.bytes_received,
            packets_lost: lost,
            loss: if s.data_sent == 0 {
                0.0
            } else {
                lost as f64 / s.data_sent as f64
            },
            send_refused: c.send_refused,
            too_big: c.too_big,
            in_flight_packets,
            in_flight_bytes,
            bad_records: c.bad_records,
            bad_packets: c.bad_packets,
            duplicates: s.duplicates,
            fragments_dropped: s.fragments_dropped,
            foreign_datagrams: c.foreign_datagrams,
            plpmtu: self.plpmtu().unwrap_or(0),
            max_message: self.max_message(),
            pmtu_probes: s.pmtu.probes_sent,
            pmtu_black_holes: s.pmtu.black_holes,
        }
    }
}
