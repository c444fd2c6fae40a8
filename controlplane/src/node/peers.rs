//! The peers a node has heard from and trusts, and its streams with each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_shared::crypto::handshake::Initiator;
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;

use super::policy::Verdict;
use super::trust::TrustedCert;

/// First wait before a failed handshake is retried; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between handshake attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One direction of a pair, once its handshake completed.
#[derive(Debug)]
pub struct Stream {
    /// Chosen by the stream's source.
    pub stream_id: StreamId,
    /// Key and nonce base (zeroized on drop, never printed).
    pub key: StreamKey,
    /// Short fingerprint of the key, the same on both ends.
    pub fingerprint: String,
    /// When the handshake completed.
    pub established: Instant,
    /// The same, in unix milliseconds.
    pub established_unix_ms: u64,
    /// For outbound streams: request to accepted reply, in microseconds.
    pub handshake_us: u64,
    /// The data plane key epoch (0 or 1) of this key.
    pub epoch: u8,
    /// Keys this stream has had (1 for a fresh stream, +1 per rekey).
    pub generation: u64,
}

/// This node's stream to a peer.
#[derive(Debug, Default)]
pub enum Outbound {
    /// No stream, none being set up.
    #[default]
    Idle,
    /// A handshake request is in flight.
    Pending {
        /// Matches the reply to the request.
        attempt: u64,
        /// When the request was handed out.
        sent: Instant,
        /// The handshake state awaiting the accept.
        initiator: Box<Initiator>,
    },
    /// The stream is set up.
    Up(Stream),
}

impl Outbound {
    /// The stream, if it is set up.
    pub fn stream(&self) -> Option<&Stream> {
        match self {
            Outbound::Up(s) => Some(s),
            _ => None,
        }
    }
}

/// A rekey handshake in flight while the current outbound stream keeps carrying traffic.
#[derive(Debug)]
pub struct Rekey {
    /// Matches the reply to the request.
    pub attempt: u64,
    /// When the request was handed out.
    pub sent: Instant,
    /// The handshake state awaiting the accept.
    pub initiator: Box<Initiator>,
}

/// A trusted peer.
#[derive(Debug)]
pub struct Peer {
    /// The peer's current certificate.
    pub cert: Arc<TrustedCert>,
    /// The timestamp of the newest presence accepted from it (the peer's clock).
    pub last_presence_ms: u64,
    /// When that presence arrived (this node's clock).
    pub last_seen: Instant,
    /// The same, in unix milliseconds, for display.
    pub last_seen_unix_ms: u64,
    /// The policy's verdict with this node's current membership.
    pub verdict: Verdict,
    /// This node's stream to the peer.
    pub outbound: Outbound,
    /// The peer's stream to this node.
    pub inbound: Option<Stream>,
    /// No handshake is started before this.
    pub retry_at: Instant,
    /// The wait after the next failure.
    pub backoff: Duration,
    /// When the directory was last asked about this peer.
    pub directory_checked: Option<Instant>,
    /// On-demand mode: traffic asked for an outbound stream to this peer.
    pub wanted: bool,
    /// A rekey of the outbound stream in flight.
    pub rekey: Option<Rekey>,
    /// The peer says it relays for others.
    pub relay: bool,
    /// LAN prefixes the peer advertises that its certificate authorizes.
    pub routes: Vec<(std::net::IpAddr, u8)>,
    /// Where the peer answers STUN binding requests.
    pub stun: Vec<std::net::SocketAddr>,
    /// The newest presence was first seen inside a handshake request (its broadcast is
    /// still to come).
    pub presence_via_handshake: bool,
}

impl Peer {
    /// A peer first heard of now.
    pub fn new(cert: Arc<TrustedCert>, presence_ms: u64, now: Instant, now_unix_ms: u64) -> Self {
        Self {
            cert,
            last_presence_ms: presence_ms,
            last_seen: now,
            last_seen_unix_ms: now_unix_ms,
            verdict: Verdict::Taints,
            outbound: Outbound::Idle,
            inbound: None,
            retry_at: now,
            backoff: FIRST_BACKOFF,
            directory_checked: None,
            wanted: false,
            rekey: None,
            relay: false,
            routes: Vec::new(),
            stun: Vec::new(),
            presence_via_handshake: false,
        }
    }

    /// Whether both streams are up.
    pub fn connected(&self) -> bool {
        self.outbound.stream().is_some() && self.inbound.is_some()
    }

    /// Records a failed handshake attempt and schedules the next one.
    pub fn failed(&mut self, now: Instant) {
        self.outbound = Outbound::Idle;
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Forgets past failures, so the next attempt starts at once.
    pub fn retry_now(&mut self, now: Instant) {
        self.retry_at = now;
        self.backoff = FIRST_BACKOFF;
    }
}
