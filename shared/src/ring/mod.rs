//! Shared-memory rings between the control process and the data plane (DESIGN §9).
//!
//! Every ring is single-producer single-consumer and lives in its own sealed `memfd`,
//! mapped `MAP_SHARED` by both processes. The side that creates a ring (usually the data
//! plane, which owns the rings and outlives control-process restarts) writes a header;
//! the side that attaches validates it field by field before trusting anything else.
//!
//! Memory layout (all offsets fixed, see [`layout`]):
//!
//! ```text
//! 0    header: magic, version, layout, kind, record size, schema, capacity, limits
//! 128  producer line: head (u64, free-running)
//! 256  consumer line: tail (u64, free-running)
//! 384  waiter line: "consumer sleeping" / "producer sleeping" flags for doorbells
//! 512  slots (record rings) or bytes (message rings)
//! ```
//!
//! Each index has a 128-byte line of its own so that neither the peer's index nor the
//! adjacent-line prefetcher bounces it. Each side keeps its own index in private memory
//! and only ever *publishes* it; the peer's index is re-read and checked
//! (`head - tail <= capacity`) before use, so a broken or hostile peer can make a ring
//! report [`RingError::Corrupt`], never make this side read or write out of bounds.
//!
//! - [`spsc`]: fixed-size [`Record`] rings with batch publish / consume, in-place
//!   reservation for the producer, and optional wiping of consumed slots.
//! - [`message`]: byte rings carrying bounded, length-prefixed messages (ICE candidates,
//!   SDP, fingerprints); [`message::parse_frame`] is the pure frame parser.
//! - [`doorbell`]: eventfd doorbells so that an idle side can sleep; the hot path rings
//!   one only when the peer has said it is sleeping.
//! - [`fdpass`]: sending memfds and doorbells with a small description over a Unix
//!   socket (`SCM_RIGHTS`).
//! - [`shm`]: the sealed memfd mapping underneath.

mod endpoint;
mod error;

pub mod doorbell;
pub mod fdpass;
pub mod layout;
pub mod message;
pub mod shm;
pub mod spsc;

pub use doorbell::{Doorbell, Doorbells};
pub use error::{RingError, SetupError};
pub use message::{Frame, FrameError, MessageConsumer, MessageProducer, MessageRing};
pub use spsc::{Consumer, ConsumerStats, Producer, ProducerStats, RecordRing, Reservation};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A fixed-size record that can travel through a [`spsc`] ring.
///
/// The consumer copies each record out of shared memory and calls [`Record::validate`]
/// on the copy, so a record that the peer changes after validation never reaches the
/// caller; a record that fails validation is skipped and counted as malformed.
pub trait Record: FromBytes + IntoBytes + KnownLayout + Immutable + Sized {
    /// Why a record was rejected.
    type Error;

    /// Identifies the record layout beyond its size; both sides must agree on it.
    const SCHEMA: u32 = 0;

    /// Checks a record received from the peer; `Err` rejects it.
    fn validate(&self) -> Result<(), Self::Error>;
}
