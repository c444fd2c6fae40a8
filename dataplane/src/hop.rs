//! The next-hop transport of a batch of sealed packets: how a worker turns sealed data
//! packets into datagrams for a tether, and received datagrams back into data packets.
//!
//! The worker loop drives a [`HopTransport`] sans-io: it frames packets in place (the
//! transport's header in the headroom the buffers keep, its trailer in the tailroom),
//! hands it every datagram that arrives, and sends whatever it polls out (handshakes,
//! acknowledgements, probes). [`Plain`] is the framing-free transport: a datagram is one
//! sealed data packet. It carries traffic between data planes that share a static
//! configuration and is what the in-memory benchmark compares the tether against; it is
//! not the WebRTC tether that DESIGN §3 puts on every hop, which plugs in behind this same
//! trait.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use conflux_shared::wire::record::{TetherId, TetherState};

/// A tether changed state (reported to the control process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The tether.
    pub tether: TetherId,
    /// Its new state.
    pub state: TetherState,
}

/// What a transport needs to carry packets for the worker.
pub trait HopTransport {
    /// Bytes the transport writes in front of each sealed packet.
    fn headroom(&self) -> usize;

    /// Bytes the transport writes after each sealed packet.
    fn tailroom(&self) -> usize;

    /// A tether was installed (or its peer changed).
    fn add_tether(&mut self, now: Instant, tether: TetherId, peer: SocketAddr);

    /// A tether was removed.
    fn remove_tether(&mut self, tether: TetherId);

    /// Frames one sealed packet in place for `tether`. `buf` holds [`Self::headroom`]
    /// bytes, the packet of `len` bytes, then [`Self::tailroom`] bytes; returns the range of
    /// `buf` to send, or `None` if the tether cannot carry it now (dropped, counted).
    fn frame(
        &mut self,
        now: Instant,
        tether: TetherId,
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
        });
    }

    fn remove_tether(&mut self, tether: TetherId) {
        self.changes.push(StateChange {
            tether,
            state: TetherState::Closed,
        });
    }

    #[inline]
    fn frame(
        &mut self,
        _now: Instant,
        _tether: TetherId,
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
