//! The next-hop transport of a batch of sealed packets: how a worker turns sealed data
//! packets into datagrams for a tether, and received datagrams back into data packets.
//!
//! The worker loop drives a [`HopTransport`] sans-io: it frames packets in place (the
//! transport's header in the headroom the buffers keep, its trailer in the tailroom),
//! hands it every datagram that arrives, and sends whatever it polls out (handshakes,
//! acknowledgements, probes). [`Plain`] is the framing-free transport: a datagram is one
//! sealed data packet. It carries traffic between data planes that share a static
//! configuration and is what the benchmarks compare the tether against. [`webrtc::WebRtc`]
//! is the WebRTC tether of DESIGN §3 behind the same trait, and [`mixed::Mixed`] carries
//! both kinds at once, each tether by the way it was installed (an `InstallTether` record:
//! plain; a `TetherOpen` signal: WebRTC).
//!
//! # Several workers
//!
//! A WebRTC tether is one ICE + DTLS + SCTP association, and it lives on the worker whose
//! signals ring carried its `TetherOpen`; nothing of it is shared between workers. A hop
//! spreads over N workers as several associations, each with its own tether id, ICE
//! credentials and address pair: the data planes run with `--port-per-worker` (with one
//! shared `SO_REUSEPORT` port the kernel, not the tether, would pick the worker a datagram
//! reaches), and the control process opens association k on its worker k mod N and
//! installs, on each worker, routes and relay entries naming only the associations that
//! worker holds (the overlay's `tether` module says how the two ends agree on them).
//! Nothing fails silently when that is not done: a worker that holds no association for a
//! tether has no table entry for it, so its packets routed there are dropped and counted
//! (`no_route`), and a datagram from an address none of its associations expects goes to
//! the plain path, whose label and tag checks drop and count it. The static driver opens
//! WebRTC tethers on worker 0 only, which suits the one-worker nodes its tests run.

pub mod mixed;
pub mod open;
pub mod stun;
pub mod webrtc;

#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use conflux_shared::wire::record::{TelemetryBody, TetherId, TetherState};

use crate::tether::TetherConfig;

/// A tether changed state (reported to the control process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The tether.
    pub tether: TetherId,
    /// Its new state.
    pub state: TetherState,
    /// Where its datagrams now go, when that changed (ICE selected a pair).
    pub peer: Option<SocketAddr>,
}

/// Why a transport refused to open a tether.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenRefused {
    /// This transport carries only plain tethers.
    #[error("this transport has no WebRTC tethers")]
    Unsupported,
    /// The tether id is open on this worker with other parameters (remove it first).
    #[error("tether {0} is already open with other parameters")]
    Exists(TetherId),
    /// The tether stack refused the configuration.
    #[error(transparent)]
    Tether(#[from] crate::tether::TetherError),
}

/// What a transport needs to carry packets for the worker.
pub trait HopTransport {
    /// Bytes the transport writes in front of each sealed packet.
    fn headroom(&self) -> usize;

    /// Bytes the transport writes after each sealed packet.
    fn tailroom(&self) -> usize;

    /// A tether was installed (or its peer changed).
    fn add_tether(&mut self, now: Instant, tether: TetherId, peer: SocketAddr);

    /// A tether was removed (either kind).
    fn remove_tether(&mut self, now: Instant, tether: TetherId);

    /// Opens a WebRTC tether (ICE, DTLS and SCTP follow as the peer answers). Returns
    /// `false` when the same tether is already open with the same parameters (a control
    /// process that attached again repeats its opens), which changes nothing.
    fn open_tether(
        &mut self,
        _now: Instant,
        _tether: TetherId,
        _cfg: TetherConfig,
    ) -> Result<bool, OpenRefused> {
        Err(OpenRefused::Unsupported)
    }

    /// Length of the datagram [`Self::frame`] makes of a `len`-byte packet on the
    /// transport's usual tether kind; egress lays GSO segments out at this stride.
    fn framed_len(&self, len: usize) -> usize {
        len
    }

    /// Where in its slot (see [`Self::frame`]) the datagram of a `len`-byte packet for
    /// `tether` will lie, without framing it: GSO needs every datagram of a run to start at
    /// the slot's front and fill the stride.
    fn framed_range(&self, _tether: TetherId, len: usize) -> Range<usize> {
        let h = self.headroom();
        h..h + len
    }

    /// The largest sealed packet `tether` carries in one datagram now (its discovered path
    /// MTU less framing); `usize::MAX` when the transport sets no limit of its own.
    fn max_packet(&self, _tether: TetherId) -> usize {
        usize::MAX
    }

    /// Writes per-tether telemetry for the tethers the transport measures itself.
    fn telemetry(&mut self, _worker: u16, _out: &mut dyn FnMut(TelemetryBody)) {}

    /// The transport's own counters, by snapshot name.
    fn counters(&self, _out: &mut dyn FnMut(&'static str, u64)) {}

    /// Frames one sealed packet in place for `tether`. `buf` holds [`Self::headroom`]
    /// bytes, the packet of `len` bytes, then [`Self::tailroom`] bytes; returns the range of
    /// `buf` to send, or `None` if the tether cannot carry it now (dropped, counted).
    /// `flow` keeps packets that belong together on one channel of the tether.
    fn frame(
        &mut self,
        now: Instant,
        tether: TetherId,
        flow: u32,
        buf: &mut [u8],
        len: usize,
    ) -> Option<Range<usize>>;

    /// Takes one received datagram from `from` (attributed to `tether` when known) and
    /// writes the ranges of the data packets inside it to `out`; returns how many.
    fn unframe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tether: Option<TetherId>,
        datagram: &mut [u8],
        out: &mut [Range<usize>],
    ) -> usize;

    /// The next datagram of the transport's own (handshake, acknowledgement, probe):
    /// written into `buf`, returned with its destination and length.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)>;

    /// The next tether state change to report.
    fn poll_state(&mut self) -> Option<StateChange>;

    /// When [`Self::handle_timeout`] is next due.
    fn poll_timeout(&mut self) -> Option<Instant>;

    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// Adds remote candidates to an open WebRTC tether (trickle ICE, a peer's new NAT
    /// mapping); returns whether the tether is open here.
    fn add_candidates(&mut self, _now: Instant, _tether: TetherId, _cands: &[SocketAddr]) -> bool {
        false
    }

    /// Turns the STUN binding service (for requests no ICE agent owns) on or off.
    fn set_stun_service(&mut self, _on: bool) {}

    /// Asks STUN servers for this worker's server-reflexive address.
    fn stun_query(&mut self, _now: Instant, _servers: &[SocketAddr]) {}

    /// The next `(server, reflexive address)` a STUN server told.
    fn poll_reflexive(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        None
    }
}

/// The framing-free transport: each datagram is exactly one sealed data packet.
#[derive(Debug, Default)]
pub struct Plain {
    changes: Vec<StateChange>,
}

impl HopTransport for Plain {
    fn headroom(&self) -> usize {
        0
    }

    fn tailroom(&self) -> usize {
        0
    }

    fn add_tether(&mut self, _now: Instant, tether: TetherId, _peer: SocketAddr) {
        self.changes.push(StateChange {
            tether,
            state: TetherState::Up,
            peer: None,
        });
    }

    fn remove_tether(&mut self, _now: Instant, tether: TetherId) {
        self.changes.push(StateChange {
            tether,
            state: TetherState::Closed,
            peer: None,
        });
    }

    #[inline]
    fn frame(
        &mut self,
        _now: Instant,
        _tether: TetherId,
        _flow: u32,
        _buf: &mut [u8],
        len: usize,
    ) -> Option<Range<usize>> {
        Some(0..len)
    }

    #[inline]
    fn unframe(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _tether: Option<TetherId>,
        datagram: &mut [u8],
        out: &mut [Range<usize>],
    ) -> usize {
        match out.first_mut() {
            Some(slot) => {
                *slot = 0..datagram.len();
                1
            }
            None => 0,
        }
    }

    fn poll_transmit(&mut self, _now: Instant, _buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }

    fn poll_state(&mut self) -> Option<StateChange> {
        self.changes.pop()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant) {}
}
