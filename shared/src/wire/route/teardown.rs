//! The route tear-down message.

use zerocopy::network_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{RouteMessageType, VERSION, check_exact_len, check_version_and_type};
use crate::wire::WireError;

/// A [`RouteTeardown`] as laid out on the wire.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct TeardownFixed {
    version: u8,
    kind: u8,
    reason: u8,
    reserved: [u8; 5],
    route_id: U64,
}

/// Length of a [`RouteTeardown`].
pub const TEARDOWN_LEN: usize = size_of::<TeardownFixed>();

/// Why a route is torn down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TeardownReason {
    /// The source no longer needs it.
    Closed = 0,
    /// No traffic for the idle timeout.
    Idle = 1,
    /// A hop on the path failed.
    HopFailed = 2,
    /// The set-up expired.
    Expired = 3,
    /// A taint or realm change no longer allows the stream.
    PolicyChanged = 4,
    /// A node on the path was revoked.
    Revoked = 5,
}

impl TeardownReason {
    /// The reason for a reason byte.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Closed,
            1 => Self::Idle,
            2 => Self::HopFailed,
            3 => Self::Expired,
            4 => Self::PolicyChanged,
            5 => Self::Revoked,
            _ => return Err(WireError::Field("unknown route teardown reason")),
        })
    }
}

/// A view of a route tear-down in a byte buffer (see [`super::RouteSetupPacket`] for the
/// checked / unchecked contract).
#[derive(Debug, Clone)]
pub struct RouteTeardownPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RouteTeardownPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes, checking that they are exactly [`TEARDOWN_LEN`] long.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_exact_len(buffer.as_ref().len(), TEARDOWN_LEN)?;
        Ok(Self { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn fixed(&self) -> &TeardownFixed {
        super::fixed(self.buffer.as_ref())
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        self.fixed().version
    }

    /// The message type byte.
    pub fn msg_type(&self) -> u8 {
        self.fixed().kind
    }

    /// The raw reason byte.
    pub fn reason(&self) -> u8 {
        self.fixed().reason
    }

    /// True when every reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        self.fixed().reserved == [0; 5]
    }

    /// The route to remove.
    pub fn route_id(&self) -> u64 {
        self.fixed().route_id.get()
    }
}

/// Removes a route at every hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteTeardown {
    /// The route to remove.
    pub route_id: u64,
    /// Why.
    pub reason: TeardownReason,
}

impl RouteTeardown {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &RouteTeardownPacket<&T>,
    ) -> Result<Self, WireError> {
        check_version_and_type(
            packet.version(),
            packet.msg_type(),
            RouteMessageType::Teardown,
        )?;
        if !packet.reserved_is_zero() {
            return Err(WireError::Reserved);
        }
        Ok(Self {
            route_id: packet.route_id(),
            reason: TeardownReason::from_u8(packet.reason())?,
        })
    }

    /// Bytes [`RouteTeardown::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        TEARDOWN_LEN
    }

    /// Writes the message into a view over exactly [`TEARDOWN_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut RouteTeardownPacket<&mut T>,
    ) {
        let fixed = TeardownFixed {
            version: VERSION,
            kind: RouteMessageType::Teardown as u8,
            reason: self.reason as u8,
            reserved: [0; 5],
            route_id: U64::new(self.route_id),
        };
        packet.buffer.as_mut()[..TEARDOWN_LEN].copy_from_slice(fixed.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::route::RouteMessage;

    #[rustfmt::skip]
    static TEARDOWN_BYTES: [u8; 16] = [
        0x01, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, // version, type, reason (hop failed), reserved
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x09, // route id
    ];

    fn teardown_repr() -> RouteTeardown {
        RouteTeardown {
            route_id: 0x109,
            reason: TeardownReason::HopFailed,
        }
    }

    #[test]
    fn teardown_parse_and_emit() {
        let p = RouteTeardownPacket::new_checked(&TEARDOWN_BYTES[..]).unwrap();
        assert_eq!((p.version(), p.msg_type(), p.reason()), (1, 3, 2));
        assert_eq!(p.route_id(), 0x109);
        assert_eq!(RouteTeardown::parse(&p), Ok(teardown_repr()));
        let mut buf = [0xaa; TEARDOWN_LEN];
        teardown_repr().emit(&mut RouteTeardownPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, TEARDOWN_BYTES);
    }

    #[test]
    fn teardown_rejects_bad_input() {
        let mut b = TEARDOWN_BYTES;
        b[7] = 1;
        assert_eq!(RouteMessage::parse(&b), Err(WireError::Reserved));
        b[7] = 0;
        b[2] = 6;
        assert!(matches!(RouteMessage::parse(&b), Err(WireError::Field(_))));
        assert_eq!(
            RouteMessage::parse(&TEARDOWN_BYTES[..8]),
            Err(WireError::Truncated { need: 16, have: 8 })
        );
    }
}
