//! Errors of ring set-up (create / attach) and of ring operation.

use std::io;

use super::message::FrameError;

/// Why a ring could not be created or attached. Set-up happens once per ring, so these
/// carry detail; each header field that does not match has its own variant.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The memfd is missing seals that keep the peer from resizing it under the mapping.
    #[error("shared memory is not sealed against resizing (seals {found:#x})")]
    NotSealed {
        /// Seals found on the fd.
        found: u32,
    },
    /// The memfd is smaller than a ring header or than its header promises.
    #[error("shared memory is {found} bytes, expected {expected}")]
    Size {
        /// Size of the memfd.
        found: u64,
        /// Size the header requires.
        expected: u64,
    },
    /// The header does not start with the ring magic.
    #[error("bad ring magic {found:02x?}")]
    Magic {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// A header version this build does not speak.
    #[error("ring version {found}, this build speaks {supported}")]
    Version {
        /// Version in the header.
        found: u32,
        /// Version of this build.
        supported: u32,
    },
    /// A record ring where a message ring was expected, or the reverse.
    #[error("ring layout {found}, expected {expected}")]
    Layout {
        /// Layout code in the header.
        found: u32,
        /// Layout code expected.
        expected: u32,
    },
    /// The ring carries another channel than the one being attached.
    #[error("ring kind {found:#x}, expected {expected:#x}")]
    Kind {
        /// Kind in the header.
        found: u32,
        /// Kind expected.
        expected: u32,
    },
    /// The peer's record size differs from this build's record type.
    #[error("record size {found}, expected {expected}")]
    RecordSize {
        /// Record size in the header.
        found: u32,
        /// Size of the local record type.
        expected: u32,
    },
    /// The peer's record schema differs from this build's record type.
    #[error("record schema {found:#x}, expected {expected:#x}")]
    Schema {
        /// Schema in the header.
        found: u32,
        /// Schema of the local record type.
        expected: u32,
    },
    /// Capacity not a power of two or outside the supported range.
    #[error("capacity {0} is not a power of two within the supported range")]
    Capacity(u64),
    /// Message limit zero or too large for the ring to always make progress.
    #[error("maximum message size {max} does not fit a ring of {capacity} bytes")]
    MaxMessage {
        /// Maximum payload in the header.
        max: u32,
        /// Ring capacity in bytes.
        capacity: u64,
    },
    /// The data offset in the header is not this build's.
    #[error("data offset {0}, expected the fixed layout")]
    DataOffset(u32),
    /// Reserved header bytes are not zero.
    #[error("reserved header bytes are not zero")]
    Reserved,
    /// The indices already in the ring are inconsistent.
    #[error("ring indices are inconsistent: head {head}, tail {tail}, capacity {capacity}")]
    Indices {
        /// Head found.
        head: u64,
        /// Tail found.
        tail: u64,
        /// Capacity of the ring.
        capacity: u64,
    },
    /// A file descriptor handed over as a doorbell is not an eventfd.
    #[error("file descriptor is not an eventfd")]
    NotEventfd,
}

impl SetupError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> Self {
        move |e| Self::Io {
            op,
            source: e.into(),
        }
    }
}

/// Why a ring operation failed. Once a ring reports [`RingError::Corrupt`] or
/// [`RingError::Frame`] it stays poisoned: every later call returns the same error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The peer published indices that cannot be right; nothing more is read.
    #[error("ring corrupt: head {head}, tail {tail}, capacity {capacity}")]
    Corrupt {
        /// Head observed.
        head: u64,
        /// Tail observed.
        tail: u64,
        /// Capacity of the ring.
        capacity: u64,
    },
    /// A message frame in the ring is malformed; nothing more is read.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// A message larger than the ring's limit was offered.
    #[error("message of {len} bytes exceeds the ring's limit of {max}")]
    MessageTooLarge {
        /// Length offered.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// Message kind 0 marks padding and cannot be sent.
    #[error("message kind 0 is reserved for padding")]
    ReservedKind,
    /// The caller's buffer is smaller than the next message; the message stays queued.
    #[error("buffer of {have} bytes is too small for a {need}-byte message")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// Waiting on a doorbell failed.
    #[error("doorbell: {0}")]
    Doorbell(rustix::io::Errno),
}
