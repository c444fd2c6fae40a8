//! Fixed-size records for the shared-memory rings between the control process and the data
//! plane workers (DESIGN §9).
//!
//! Every record is one [`RingRecord`] of [`RECORD_LEN`] bytes: an 8-byte [`RecordHeader`]
//! and a body area of [`BODY_LEN`] bytes. The header names the record's [`RecordKind`] and
//! how many body bytes that kind uses; each kind has one typed body, itself a zerocopy
//! struct, that [`RingRecord::decode`] lends out of the body area as a [`RecordRef`].
//!
//! ```text
//!   0  version (1)   1  kind   2  body length (u16)   4  reserved, zero (4)
//!   8  body: the kind's body struct, then zeros up to 128
//! ```
//!
//! Both ends run on the same machine, so multi-byte fields are little-endian (the native
//! order of every host this runs on, and one order for corpus files everywhere). The other
//! process is not trusted: decoding checks the version, the kind, that the length is exactly
//! the kind's body size, that reserved bytes and the unused tail are zero, every enum, and
//! each body's own rules (prefix lengths, next-hop counts and weights, ...). A record that
//! fails is rejected with a [`WireError`]; it is never partly trusted.
//!
//! Key material travels in [`InstallStreamBody`]: see its documentation for how the consumer
//! wipes it after reading.
//!
//! - [`control`]: control process → worker bodies (streams, routes, relays, tethers,
//!   allowed prefixes, policy).
//! - [`report`]: worker → control process bodies (telemetry, misses, counters, tether state).
//! - [`field`]: address and prefix fields they share.

use std::fmt;

use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, TryFromBytes, Unaligned};
use zeroize::Zeroize;

use super::WireError;

pub mod control;
pub mod field;
pub mod report;

pub use control::{
    AllowedPrefixBody, Direction, InstallRelayBody, InstallRouteBody, InstallStreamBody,
    InstallTetherBody, MAX_NEXT_HOPS, NextHop, PolicyBody, PrefixOp, RemoveRelayBody,
    RemoveRouteBody, RemoveStreamBody, RemoveTetherBody, RouteTarget,
};
pub use field::{AddrFamily, IpAddrField, IpPrefix, SocketAddrField, TetherId, WorkerId};
pub use report::{
    CounterEntry, CounterId, CountersBody, MAX_COUNTERS, MissBody, StreamActivityBody,
    TelemetryBody, TetherState, TetherStateBody,
};

/// The record version this build speaks.
pub const VERSION: u8 = 1;
/// Size of every record.
pub const RECORD_LEN: usize = 128;
/// Size of the header.
pub const HEADER_LEN: usize = size_of::<RecordHeader>();
/// Size of the body area.
pub const BODY_LEN: usize = RECORD_LEN - HEADER_LEN;

/// The first 8 bytes of every record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RecordHeader {
    /// [`VERSION`].
    pub version: u8,
    /// A [`RecordKind`] as its byte.
    pub kind: u8,
    /// Body bytes used: the kind's body size.
    pub len: U16,
    /// Zero.
    pub reserved: [u8; 4],
}

/// One ring slot's worth of bytes.
///
/// Any 128 bytes are a `RingRecord`; only [`RingRecord::decode`] says whether they mean
/// anything. Its `Debug` shows the header only, since the body may hold a key.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RingRecord {
    /// The header.
    pub header: RecordHeader,
    /// The body area.
    pub body: [u8; BODY_LEN],
}

const _: () = assert!(size_of::<RingRecord>() == RECORD_LEN);

/// Which process writes a kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordFlow {
    /// Control process → data plane worker.
    ToWorker,
    /// Data plane worker → control process.
    ToControl,
}

/// A typed record body: a zerocopy struct with a kind of its own.
pub trait RecordBody: TryFromBytes + IntoBytes + KnownLayout + Immutable + Unaligned {
    /// The kind whose body this is.
    const KIND: RecordKind;

    /// Checks what the layout's types do not (reserved bytes, bounds, counts).
    fn validate(&self) -> Result<(), WireError>;
}

macro_rules! record_kinds {
    ($( $(#[$doc:meta])* $kind:ident = $val:literal, $flow:ident, $body:ty; )*) => {
        /// What a record carries; each kind has one body type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum RecordKind {
            $( $(#[$doc])* $kind = $val, )*
        }

        impl RecordKind {
            /// Every kind.
            pub const ALL: &'static [Self] = &[$( Self::$kind, )*];

            /// The kind for a kind byte, or [`WireError::UnknownType`].
            pub fn from_u8(v: u8) -> Result<Self, WireError> {
                match v {
                    $( $val => Ok(Self::$kind), )*
                    _ => Err(WireError::UnknownType(v.into())),
                }
            }

            /// Which process writes it.
            pub const fn flow(self) -> RecordFlow {
                match self {
                    $( Self::$kind => RecordFlow::$flow, )*
                }
            }

            /// Size of its body.
            pub const fn body_len(self) -> usize {
                match self {
                    $( Self::$kind => size_of::<$body>(), )*
                }
            }
        }

        /// A decoded record: its typed body, borrowed from the record.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum RecordRef<'a> {
            $( $(#[$doc])* $kind(&'a $body), )*
        }

        impl<'a> RecordRef<'a> {
            fn decode_body(kind: RecordKind, body: &'a [u8]) -> Result<Self, WireError> {
                match kind {
                    $( RecordKind::$kind => Ok(Self::$kind(decode_body::<$body>(body)?)), )*
                }
            }

            /// The record's kind.
            pub const fn kind(&self) -> RecordKind {
                match self {
                    $( Self::$kind(_) => RecordKind::$kind, )*
                }
            }

            /// Encodes the body into a fresh record.
            pub fn to_record(&self) -> Result<RingRecord, WireError> {
                match self {
                    $( Self::$kind(b) => RingRecord::encode(*b), )*
                }
            }
        }

        $(
            impl RecordBody for $body {
                const KIND: RecordKind = RecordKind::$kind;

                fn validate(&self) -> Result<(), WireError> {
                    self.check()
                }
            }

            const _: () = assert!(size_of::<$body>() <= BODY_LEN);
        )*
    };
}

record_kinds! {
    /// Control → worker: install one epoch's key of a stream.
    InstallStream = 1, ToWorker, InstallStreamBody;
    /// Control → worker: remove key slots of a stream.
    RemoveStream = 2, ToWorker, RemoveStreamBody;
    /// Control → worker: install the route for a destination prefix.
    InstallRoute = 3, ToWorker, InstallRouteBody;
    /// Control → worker: remove the route for a destination prefix.
    RemoveRoute = 4, ToWorker, RemoveRouteBody;
    /// Control → worker: install a relay entry (label swap).
    InstallRelay = 5, ToWorker, InstallRelayBody;
    /// Control → worker: remove a relay entry.
    RemoveRelay = 6, ToWorker, RemoveRelayBody;
    /// Control → worker: open a tether to a peer's UDP address.
    InstallTether = 7, ToWorker, InstallTetherBody;
    /// Control → worker: close a tether.
    RemoveTether = 8, ToWorker, RemoveTetherBody;
    /// Control → worker: add or remove an allowed inner source prefix of a stream.
    AllowedPrefix = 9, ToWorker, AllowedPrefixBody;
    /// Control → worker: node-wide policy.
    Policy = 10, ToWorker, PolicyBody;
    /// Worker → control: a tether's measurements.
    Telemetry = 0x81, ToControl, TelemetryBody;
    /// Worker → control: a destination no route covers.
    Miss = 0x82, ToControl, MissBody;
    /// Worker → control: counter totals.
    Counters = 0x83, ToControl, CountersBody;
    /// Worker → control: a tether changed state.
    TetherState = 0x84, ToControl, TetherStateBody;
    /// Worker → control: a stream moved packets.
    StreamActivity = 0x85, ToControl, StreamActivityBody;
}

fn decode_body<B: RecordBody>(body: &[u8]) -> Result<&B, WireError> {
    let b = B::try_ref_from_bytes(body)
        .map_err(|_| WireError::Field("record enum field holds an unknown value"))?;
    b.validate()?;
    Ok(b)
}

impl RingRecord {
    /// Views exactly [`RECORD_LEN`] untrusted bytes as a record (not yet decoded).
    pub fn from_bytes(bytes: &[u8]) -> Result<&Self, WireError> {
        match bytes.len() {
            RECORD_LEN => Self::ref_from_bytes(bytes).map_err(|_| WireError::Length(RECORD_LEN)),
            n if n < RECORD_LEN => Err(WireError::Truncated {
                need: RECORD_LEN,
                have: n,
            }),
            _ => Err(WireError::Trailing),
        }
    }

    /// Checks the record and lends out its typed body.
    pub fn decode(&self) -> Result<RecordRef<'_>, WireError> {
        let h = &self.header;
        if h.version != VERSION {
            return Err(WireError::Version(h.version));
        }
        let kind = RecordKind::from_u8(h.kind)?;
        if h.reserved != [0; 4] {
            return Err(WireError::Reserved);
        }
        let len = usize::from(h.len.get());
        if len != kind.body_len() {
            return Err(WireError::Length(len));
        }
        // `len` equals a body size, and every body size fits (checked at compile time).
        let (used, tail) = self.body.split_at(len);
        if tail.iter().any(|&b| b != 0) {
            return Err(WireError::Reserved);
        }
        RecordRef::decode_body(kind, used)
    }

    /// Like [`RingRecord::decode`], and also rejects a kind that the other process writes,
    /// so each ring end accepts only what may come its way.
    pub fn decode_flow(&self, flow: RecordFlow) -> Result<RecordRef<'_>, WireError> {
        let r = self.decode()?;
        if r.kind().flow() != flow {
            return Err(WireError::UnknownType(r.kind() as u16));
        }
        Ok(r)
    }

    /// A record carrying `body`, after checking it as a consumer would.
    ///
    /// The value may hold a key: prefer [`RingRecord::encode_into`] on a ring slot, or wipe
    /// it with [`RingRecord::wipe`] after use.
    pub fn encode<B: RecordBody>(body: &B) -> Result<Self, WireError> {
        let mut rec = Self::new_zeroed();
        rec.encode_into(body)?;
        Ok(rec)
    }

    /// Overwrites this record (for example a reserved ring slot) with `body`, after
    /// checking it as a consumer would; on error the record is left untouched.
    pub fn encode_into<B: RecordBody>(&mut self, body: &B) -> Result<(), WireError> {
        body.validate()?;
        let bytes = body.as_bytes();
        self.header = RecordHeader {
            version: VERSION,
            kind: B::KIND as u8,
            // A body size is at most BODY_LEN (checked at compile time).
            len: U16::new(bytes.len() as u16),
            reserved: [0; 4],
        };
        let (used, tail) = self.body.split_at_mut(bytes.len());
        used.copy_from_slice(bytes);
        tail.fill(0);
        Ok(())
    }

    /// Zeroes the whole record with writes the compiler cannot drop, as a consumer does to
    /// a slot or a copy that held key material. A wiped record does not decode.
    pub fn wipe(&mut self) {
        self.as_mut_bytes().zeroize();
    }
}

impl Zeroize for RingRecord {
    fn zeroize(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for RingRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingRecord")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl crate::ring::Record for RingRecord {
    type Error = WireError;

    /// "CR" (Conflux record), layout version, record size.
    const SCHEMA: u32 = u32::from_be_bytes([b'C', b'R', VERSION, RECORD_LEN as u8]);

    fn validate(&self) -> Result<(), WireError> {
        self.decode().map(|_| ())
    }
}

impl RecordRef<'_> {
    /// Which process writes it.
    pub fn flow(&self) -> RecordFlow {
        self.kind().flow()
    }

    /// True for records with key material, whose slots and copies must be wiped after use.
    pub fn carries_secret(&self) -> bool {
        matches!(self, Self::InstallStream(_))
    }
}

#[cfg(test)]
mod tests;
