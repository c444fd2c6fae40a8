//! What a tether reports to its worker, and through it to the control process.

use std::time::Duration;

/// Where a tether is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TetherState {
    /// ICE, DTLS or SCTP set-up under way.
    Connecting,
    /// Carrying messages.
    Up,
    /// Finished; the reason says why.
    Closed(CloseReason),
}

/// Why a tether closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The peer's certificate does not match the fingerprint the control process signed.
    #[error("peer certificate fingerprint mismatch")]
    FingerprintMismatch,
    /// ICE found no working pair.
    #[error("ICE connectivity checks failed")]
    IceFailed,
    /// The DTLS handshake failed (fatal alert, flights exhausted).
    #[error("DTLS handshake failed")]
    HandshakeFailed,
    /// Record keys could not be taken from the handshake.
    #[error("DTLS record keys could not be exported")]
    KeyExport,
    /// Set-up took longer than the configured limit.
    #[error("tether set-up timed out")]
    SetupTimeout,
    /// The peer sent DTLS close_notify.
    #[error("peer closed DTLS")]
    PeerClosed,
    /// The peer aborted or shut down the SCTP association.
    #[error("peer ended the SCTP association")]
    PeerEnded,
    /// The record sequence space ran out.
    #[error("record sequence numbers exhausted")]
    Exhausted,
    /// Closed by this end.
    #[error("closed locally")]
    Local,
}

/// Something the worker should act on or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TetherEvent {
    /// Set-up finished: messages can be sent.
    Connected,
    /// Nothing authenticated has arrived for `dead_after`.
    Dead,
    /// Traffic arrived again after [`TetherEvent::Dead`].
    Revived,
    /// The tether closed.
    Closed(CloseReason),
}

/// Per-tether figures for routing and operators (DESIGN §7: RTT, loss, load).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    /// Current state.
    pub state: TetherState,
    /// No authenticated traffic for `dead_after`.
    pub dead: bool,
    /// Smoothed heartbeat round-trip time.
    pub rtt: Option<Duration>,
    /// Messages sent.
    pub packets_sent: u64,
    /// Message bytes sent.
    pub bytes_sent: u64,
    /// Messages delivered.
    pub packets_received: u64,
    /// Message bytes delivered.
    pub bytes_received: u64,
    /// Messages the peer never acknowledged (abandoned).
    pub packets_lost: u64,
    /// `packets_lost / packets_sent`.
    pub loss: f64,
    /// Messages refused because the send window was full.
    pub send_refused: u64,
    /// Messages refused because they exceed the path MTU or their buffer.
    pub too_big: u64,
    /// Messages sent and not yet acknowledged or abandoned (queue depth).
    pub in_flight_packets: u32,
    /// Bytes of those.
    pub in_flight_bytes: usize,
    /// Records dropped: malformed, replayed, or failing authentication.
    pub bad_records: u64,
    /// Plaintext SCTP packets dropped as malformed.
    pub bad_packets: u64,
    /// Duplicate DATA chunks.
    pub duplicates: u64,
    /// Fragmented messages dropped.
    pub fragments_dropped: u64,
    /// Datagrams that were neither STUN nor DTLS, or came from an unchecked address.
    pub foreign_datagrams: u64,
    /// Confirmed path MTU: the largest UDP payload sent (0 before the tether is up).
    pub plpmtu: usize,
    /// Largest message sent now (follows `plpmtu`).
    pub max_message: usize,
    /// Path MTU probes sent.
    pub pmtu_probes: u64,
    /// Falls back to the base path MTU after a black hole.
    pub pmtu_black_holes: u64,
}

/// Counters the tether keeps outside the association.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_sent: u64,
    pub(crate) packets_received: u64,
    pub(crate) bytes_received: u64,
    pub(crate) send_refused: u64,
    pub(crate) too_big: u64,
    pub(crate) bad_records: u64,
    pub(crate) bad_packets: u64,
    pub(crate) foreign_datagrams: u64,
}
