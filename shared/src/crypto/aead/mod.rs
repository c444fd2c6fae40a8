//! Batched, in-place AES-256-GCM for data packets (DESIGN §4).
//!
//! Each packet buffer is laid out as the wire format: [`HEADER_LEN`](crate::wire::data::HEADER_LEN)
//! bytes of headroom for the header, the payload, then [`TAG_LEN`](crate::wire::data::TAG_LEN)
//! bytes of tailroom for the tag. A [`Sealer`] (one per sending worker and stream) writes the
//! header and seals a whole batch in place with one expanded key; an [`Opener`] (one per
//! receiving worker and stream) opens a batch in place and gives one [`Verdict`] per packet.
//! Neither copies nor allocates per packet.
//!
//! Nonces: nonce base XOR (0, 0, 0, lane, counter). Each sending worker owns a lane and
//! counts up within it, so workers sharing a key never reuse a nonce without coordinating.
//!
//! Limits: a lane asks for a rekey after [`REKEY_AFTER_MESSAGES`] packets or
//! [`REKEY_AFTER_TIME`], and a key is dead after [`REJECT_AFTER_MESSAGES`] packets on a lane
//! or [`REJECT_AFTER_TIME`]: the sealer refuses to seal and the opener drops, so the data
//! plane enforces key lifetime even with no control process attached.

use std::time::Duration;

mod backend;
mod open;
mod seal;

pub use backend::{Backend, KeyError};
pub use open::{DropReason, OpenStats, Opened, Opener, Verdict};
pub use seal::{SealError, Sealed, Sealer};

/// Lanes a stream's key can be shared by; a lane number at or above it is refused.
pub const MAX_LANES: usize = 16;

/// Packets a lane may seal before it asks for a new key.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 23;

/// Packets a lane may seal under one key, ever; the receiver refuses counters at or past it.
///
/// [`MAX_LANES`] lanes × 2^24 packets × 1,500-byte packets (2^7 AES blocks) stays within the
/// 2^35-block budget that QUIC gives AES-GCM per key (RFC 9001 §6.6) for its confidentiality
/// bound; the time limit below usually ends a key well before.
pub const REJECT_AFTER_MESSAGES: u64 = 1 << 24;

/// Age at which a sender asks for a new key.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);

/// Hard key lifetime: past it the key neither seals nor opens.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);

#[cfg(test)]
mod tests;
