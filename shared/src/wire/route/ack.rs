//! The route acknowledgement: a hop's answer to a set-up, with the label it chose.

use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{RouteMessageType, VERSION, check_exact_len, check_version_and_type};
use crate::id::Label;
use crate::wire::WireError;

/// A [`RouteAck`] as laid out on the wire.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AckFixed {
    version: u8,
    kind: u8,
    hop_index: u8,
    status: u8,
    label: U32,
    route_id: U64,
}

/// Length of a [`RouteAck`].
pub const ACK_LEN: usize = size_of::<AckFixed>();

/// How a hop answered a set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AckStatus {
    /// Installed; the ack carries the hop's inbound label.
    Accepted = 0,
    /// Refused by policy (realm, operator's relay restrictions).
    Refused = 1,
    /// The hop has no tether to the next hop and could not make one.
    NoTether = 2,
    /// The set-up had expired when it arrived.
    Expired = 3,
    /// The hop is out of labels or rate-limiting set-ups.
    Overloaded = 4,
}

impl AckStatus {
    /// The status for a status byte.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Accepted,
            1 => Self::Refused,
            2 => Self::NoTether,
            3 => Self::Expired,
            4 => Self::Overloaded,
            _ => return Err(WireError::Field("unknown route ack status")),
        })
    }
}

/// A view of a route acknowledgement in a byte buffer (see [`super::RouteSetupPacket`] for the
/// checked / unchecked contract).
#[derive(Debug, Clone)]
pub struct RouteAckPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RouteAckPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes, checking that they are exactly [`ACK_LEN`] long.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_exact_len(buffer.as_ref().len(), ACK_LEN)?;
        Ok(Self { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn fixed(&self) -> &AckFixed {
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

    /// Index into the path of the acking hop.
    pub fn hop_index(&self) -> u8 {
        self.fixed().hop_index
    }

    /// The raw status byte.
    pub fn status(&self) -> u8 {
        self.fixed().status
    }

    /// The label the acking hop chose for its inbound side.
    pub fn label(&self) -> Label {
        self.fixed().label.get()
    }

    /// The route being acknowledged.
    pub fn route_id(&self) -> u64 {
        self.fixed().route_id.get()
    }
}

/// A hop's answer to a [`super::RouteSetup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteAck {
    /// The route being acknowledged.
    pub route_id: u64,
    /// Index into the path of the acking hop.
    pub hop_index: u8,
    /// Whether the hop installed the route.
    pub status: AckStatus,
    /// The label the hop receives the route's packets on; zero unless accepted.
    pub label: Label,
}

impl RouteAck {
    /// Checks that only an accepting ack carries a label.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.status != AckStatus::Accepted && self.label != 0 {
            return Err(WireError::Field("refusing route ack carries a label"));
        }
        Ok(())
    }

    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &RouteAckPacket<&T>) -> Result<Self, WireError> {
        check_version_and_type(packet.version(), packet.msg_type(), RouteMessageType::Ack)?;
        let repr = Self {
            route_id: packet.route_id(),
            hop_index: packet.hop_index(),
            status: AckStatus::from_u8(packet.status())?,
            label: packet.label(),
        };
        repr.validate()?;
        Ok(repr)
    }

    /// Bytes [`RouteAck::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        ACK_LEN
    }

    /// Writes the message into a view over exactly [`ACK_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut RouteAckPacket<&mut T>) {
        let fixed = AckFixed {
            version: VERSION,
            kind: RouteMessageType::Ack as u8,
            hop_index: self.hop_index,
            status: self.status as u8,
            label: U32::new(self.label),
            route_id: U64::new(self.route_id),
        };
        packet.buffer.as_mut()[..ACK_LEN].copy_from_slice(fixed.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::route::RouteMessage;

    #[rustfmt::skip]
    static ACK_BYTES: [u8; 16] = [
        0x01, 0x02, 0x01, 0x00, // version, type, hop index, status (accepted)
        0xde, 0xad, 0xbe, 0xef, // label
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // route id
    ];

    fn ack_repr() -> RouteAck {
        RouteAck {
            route_id: 0x0102_0304_0506_0708,
            hop_index: 1,
            status: AckStatus::Accepted,
            label: 0xdead_beef,
        }
    }

    #[test]
    fn ack_deconstruct_and_parse() {
        let p = RouteAckPacket::new_checked(&ACK_BYTES[..]).unwrap();
        assert_eq!((p.version(), p.msg_type()), (1, 2));
        assert_eq!((p.hop_index(), p.status()), (1, 0));
        assert_eq!(p.label(), 0xdead_beef);
        assert_eq!(p.route_id(), 0x0102_0304_0506_0708);
        assert_eq!(RouteAck::parse(&p), Ok(ack_repr()));
    }

    #[test]
    fn ack_emit() {
        let mut buf = [0u8; ACK_LEN];
        ack_repr().emit(&mut RouteAckPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ACK_BYTES);
        let mut buf = [0u8; 20];
        assert_eq!(RouteMessage::Ack(ack_repr()).emit(&mut buf), Ok(16));
        assert_eq!(buf[..16], ACK_BYTES);
    }

    #[test]
    fn ack_rejects_bad_input() {
        assert_eq!(
            RouteMessage::parse(&ACK_BYTES[..15]),
            Err(WireError::Truncated { need: 16, have: 15 })
        );
        let mut long = ACK_BYTES.to_vec();
        long.push(0);
        assert_eq!(RouteMessage::parse(&long), Err(WireError::Trailing));
        let mut b = ACK_BYTES;
        b[3] = 5;
        assert!(matches!(RouteMessage::parse(&b), Err(WireError::Field(_))));
        b[3] = AckStatus::Refused as u8;
        assert!(
            matches!(RouteMessage::parse(&b), Err(WireError::Field(_))),
            "a refusal that still names a label"
        );
        b[4..8].fill(0);
        let refused = RouteAck {
            status: AckStatus::Refused,
            label: 0,
            ..ack_repr()
        };
        assert_eq!(RouteMessage::parse(&b), Ok(RouteMessage::Ack(refused)));
    }
}
