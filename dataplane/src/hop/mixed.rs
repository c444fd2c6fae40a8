//! Both tether kinds on one worker: WebRTC tethers (opened by a `TetherOpen` signal) and
//! plain ones (installed by an `InstallTether` record), each packet framed by the kind of
//! its tether.
//!
//! Buffers keep the larger (WebRTC) headroom and tailroom, so a plain datagram starts
//! [`crate::tether::HEADROOM`] bytes into its slot. GSO lays segments out at the WebRTC
//! stride once any WebRTC tether is open and at the plain one otherwise; segments for the
//! other kind then go out one datagram per send (correct, only slower).
//!
//! Received datagrams from a WebRTC tether's addresses go to that tether; anything else is
//! a plain data packet, which the packet path authenticates by its label and tag.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use conflux_shared::wire::record::{TelemetryBody, TetherId};

use super::webrtc::WebRtc;
use super::{HopTransport, OpenRefused, Plain, StateChange};
use crate::tether::TetherConfig;

/// Plain and WebRTC tethers side by side.
#[derive(Debug, Default)]
pub struct Mixed {
    plain: Plain,
    /// The WebRTC tethers.
    pub webrtc: WebRtc,
}

impl Mixed {
    /// No tethers yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl HopTransport for Mixed {
    fn headroom(&self) -> usize {
        self.webrtc.headroom()
    }

    fn tailroom(&self) -> usize {
        self.webrtc.tailroom()
    }

    fn add_tether(&mut self, now: Instant, tether: TetherId, peer: SocketAddr) {
        // An install record for an id a WebRTC tether holds replaces it with a plain one.
        if self.webrtc.index(tether).is_some() {
            self.webrtc.remove_tether(now, tether);
        }
        self.plain.add_tether(now, tether, peer);
    }

    fn remove_tether(&mut self, now: Instant, tether: TetherId) {
        if self.webrtc.index(tether).is_some() {
            self.webrtc.remove_tether(now, tether);
        } else {
            self.plain.remove_tether(now, tether);
        }
    }

    fn open_tether(
        &mut self,
        now: Instant,
        tether: TetherId,
        cfg: TetherConfig,
    ) -> Result<bool, OpenRefused> {
        self.webrtc.open_tether(now, tether, cfg)
    }

    fn framed_len(&self, len: usize) -> usize {
        if self.webrtc.is_empty() {
            len
        } else {
            self.webrtc.framed_len(len)
        }
    }

    fn max_packet(&self, tether: TetherId) -> usize {
        self.webrtc.max_packet(tether)
    }

    fn framed_range(&self, tether: TetherId, len: usize) -> Range<usize> {
        if self.webrtc.index(tether).is_some() {
            self.webrtc.framed_range(tether, len)
        } else {
            let h = self.headroom();
            h..h + len
        }
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
        match self.webrtc.index(tether) {
            Some(i) => self.webrtc.frame_at(now, i, flow, buf, len),
            None => {
                let h = self.headroom();
                Some(h..h + len)
            }
        }
    }

    #[inline]
    fn unframe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tether: Option<TetherId>,
        datagram: &mut [u8],
        out: &mut [Range<usize>],
    ) -> usize {
        if let Some(k) = self.webrtc.stun_input(now, from, datagram, out) {
            return k;
        }
        match self.webrtc.index_of_addr(&from) {
            Some(i) => self.webrtc.unframe_at(now, i, from, datagram, out),
            None => self.plain.unframe(now, from, tether, datagram, out),
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.webrtc.poll_transmit(now, buf)
    }

    fn poll_state(&mut self) -> Option<StateChange> {
        self.plain.poll_state().or_else(|| self.webrtc.poll_state())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.webrtc.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.webrtc.handle_timeout(now);
    }

    fn add_candidates(&mut self, now: Instant, tether: TetherId, cands: &[SocketAddr]) -> bool {
        self.webrtc.add_candidates(now, tether, cands)
    }

    fn set_stun_service(&mut self, on: bool) {
        self.webrtc.set_stun_service(on);
    }

    fn stun_query(&mut self, now: Instant, servers: &[SocketAddr]) {
        self.webrtc.stun_query(now, servers);
    }

    fn poll_reflexive(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        self.webrtc.poll_reflexive()
    }

    fn telemetry(&mut self, worker: u16, out: &mut dyn FnMut(TelemetryBody)) {
        self.webrtc.telemetry(worker, out);
    }

    fn counters(&self, out: &mut dyn FnMut(&'static str, u64)) {
        self.webrtc.counters(out);
    }
}
