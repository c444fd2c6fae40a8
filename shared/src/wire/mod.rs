//! Zero-copy views of Conflux's byte formats.
//!
//! Contract, stated once for every format here (after smoltcp's `wire`): a `*::parse` /
//! `new_checked` function takes untrusted bytes and either returns a view whose accessors
//! cannot panic, or a [`WireError`]. Emitting goes through `emit` into caller-owned storage.
//! Multi-byte integers that cross the network are in network byte order
//! (`zerocopy::network_endian`); ring records never leave the machine and are little-endian.
//! Every accepted message has exactly one encoding: emitting what was parsed gives back the
//! same bytes, which the fuzz entries in [`crate::fuzz`] assert.
//!
//! - [`data`]: the per-packet data header (version, type, flags with the key epoch, lane,
//!   64-bit counter, per-hop label); the AES-GCM tag follows the payload.
//! - [`handshake`]: stream handshake init / accept.
//! - [`route`]: route set-up, acknowledgement and tear-down (per-hop labels).
//! - [`record`]: fixed-size ring records between the control process and the data plane.

pub mod data;
pub mod handshake;
pub mod record;
pub mod route;

/// Why bytes were rejected by a parser. Every parser in [`crate::wire`] returns this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the format's fixed part or than a length field promises.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the format needs.
        need: usize,
        /// Bytes that were given.
        have: usize,
    },
    /// More bytes than the format allows.
    #[error("trailing bytes after the message")]
    Trailing,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    Version(u8),
    /// An unknown message or record type.
    #[error("unknown type {0}")]
    UnknownType(u16),
    /// Reserved bits or bytes that must be zero were set.
    #[error("reserved field is not zero")]
    Reserved,
    /// A length field out of its bounds.
    #[error("length {0} out of bounds")]
    Length(usize),
    /// A field whose value is not allowed (bad UTF-8, bad name, zero where forbidden).
    #[error("invalid field: {0}")]
    Field(&'static str),
}
