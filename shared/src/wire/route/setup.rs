//! The route set-up message: builds one route hop by hop.

use std::fmt;

use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{
    MAX_HOPS, NODE_ID_LEN, RouteMessageType, VERSION, check_exact_len, check_version_and_type,
};
use crate::id::{NodeId, StreamId};
use crate::wire::WireError;

/// The fixed part of a [`RouteSetup`], as laid out on the wire.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct SetupFixed {
    version: u8,
    kind: u8,
    hop_count: u8,
    hop_index: u8,
    reserved: U32,
    route_id: U64,
    stream_id: StreamId,
    source: NodeId,
    destination: NodeId,
    expiry: U64,
}

/// Length of a [`RouteSetup`] before its path.
pub const SETUP_FIXED_LEN: usize = size_of::<SetupFixed>();

/// A view of a route set-up message in a byte buffer.
///
/// After [`RouteSetupPacket::new_checked`] no accessor panics. A view made with
/// [`RouteSetupPacket::new_unchecked`] over a buffer shorter than [`SETUP_FIXED_LEN`] panics on
/// access; use it only to emit into a buffer sized with [`RouteSetup::buffer_len`].
#[derive(Debug, Clone)]
pub struct RouteSetupPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RouteSetupPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes, checking that the hop count is in bounds and the buffer holds
    /// exactly the fixed part and the path it announces.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let have = buffer.as_ref().len();
        let (fixed, _) =
            SetupFixed::ref_from_prefix(buffer.as_ref()).map_err(|_| WireError::Truncated {
                need: SETUP_FIXED_LEN,
                have,
            })?;
        let hops = usize::from(fixed.hop_count);
        if hops == 0 || hops > MAX_HOPS {
            return Err(WireError::Length(hops));
        }
        check_exact_len(have, SETUP_FIXED_LEN + hops * NODE_ID_LEN)?;
        Ok(Self { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn fixed(&self) -> &SetupFixed {
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

    /// Number of hops after the source.
    pub fn hop_count(&self) -> u8 {
        self.fixed().hop_count
    }

    /// Index into the path of the hop this message is for.
    pub fn hop_index(&self) -> u8 {
        self.fixed().hop_index
    }

    /// The reserved word (zero in a valid message).
    pub fn reserved(&self) -> u32 {
        self.fixed().reserved.get()
    }

    /// The route's identifier, chosen by the source.
    pub fn route_id(&self) -> u64 {
        self.fixed().route_id.get()
    }

    /// The stream the route carries.
    pub fn stream_id(&self) -> StreamId {
        self.fixed().stream_id
    }

    /// The route's source node.
    pub fn source(&self) -> NodeId {
        self.fixed().source
    }

    /// The route's destination node.
    pub fn destination(&self) -> NodeId {
        self.fixed().destination
    }

    /// When the set-up stops being valid, in unix seconds.
    pub fn expiry(&self) -> u64 {
        self.fixed().expiry.get()
    }

    /// The hops after the source; empty if the buffer does not hold the announced path.
    pub fn path(&self) -> &[NodeId] {
        let end = SETUP_FIXED_LEN + usize::from(self.hop_count()) * NODE_ID_LEN;
        self.buffer
            .as_ref()
            .get(SETUP_FIXED_LEN..end)
            .and_then(|b| <[NodeId]>::ref_from_bytes(b).ok())
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RouteSetupPacket<T> {
    fn fixed_mut(&mut self) -> &mut SetupFixed {
        super::fixed_mut(self.buffer.as_mut())
    }

    /// Sets the hop index, as a hop does before forwarding the set-up to the next one.
    pub fn set_hop_index(&mut self, index: u8) {
        self.fixed_mut().hop_index = index;
    }
}

/// A bounded list of the hops after a route's source, ending at its destination.
///
/// Holds 1 to [`MAX_HOPS`] distinct nodes, inline so a set-up never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutePath {
    len: u8,
    // Entries past `len` stay zeroed so the derived comparisons see only the path.
    hops: [NodeId; MAX_HOPS],
}

impl RoutePath {
    /// A path of 1 to [`MAX_HOPS`] hops in which no node appears twice.
    pub fn new(hops: &[NodeId]) -> Result<Self, WireError> {
        if hops.is_empty() || hops.len() > MAX_HOPS {
            return Err(WireError::Length(hops.len()));
        }
        for (i, a) in hops.iter().enumerate() {
            if hops[i + 1..].contains(a) {
                return Err(WireError::Field("route path visits a node twice"));
            }
        }
        let mut out = [NodeId([0; 16]); MAX_HOPS];
        out[..hops.len()].copy_from_slice(hops);
        Ok(Self {
            // Bounded by MAX_HOPS above.
            len: hops.len() as u8,
            hops: out,
        })
    }

    /// The hops in order.
    pub fn as_slice(&self) -> &[NodeId] {
        &self.hops[..usize::from(self.len)]
    }

    /// Number of hops (at least 1).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a path has at least one hop.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last hop, which is the destination.
    pub fn last(&self) -> NodeId {
        self.hops[usize::from(self.len).saturating_sub(1)]
    }
}

impl fmt::Debug for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A route set-up message: builds one route hop by hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSetup {
    /// The route's identifier, chosen by the source.
    pub route_id: u64,
    /// The stream the route carries.
    pub stream_id: StreamId,
    /// The node that set the route up.
    pub source: NodeId,
    /// The node the route ends at.
    pub destination: NodeId,
    /// The hops after the source, ending at the destination.
    pub path: RoutePath,
    /// Index into `path` of the hop this message is for.
    pub hop_index: u8,
    /// When the set-up stops being valid, in unix seconds.
    pub expiry_unix_s: u64,
}

impl RouteSetup {
    /// Checks what the types do not: the path ends at the destination, never passes through
    /// the source, and the hop index points into it.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.source == self.destination {
            return Err(WireError::Field("route source is its destination"));
        }
        if self.path.last() != self.destination {
            return Err(WireError::Field(
                "route path does not end at the destination",
            ));
        }
        if self.path.as_slice().contains(&self.source) {
            return Err(WireError::Field("route path passes through its source"));
        }
        if usize::from(self.hop_index) >= self.path.len() {
            return Err(WireError::Field("route hop index is past the path"));
        }
        Ok(())
    }

    /// Parses a checked view, rejecting a bad version or type, reserved bits and
    /// inconsistent paths.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &RouteSetupPacket<&T>,
    ) -> Result<Self, WireError> {
        check_version_and_type(packet.version(), packet.msg_type(), RouteMessageType::Setup)?;
        if packet.reserved() != 0 {
            return Err(WireError::Reserved);
        }
        let repr = Self {
            route_id: packet.route_id(),
            stream_id: packet.stream_id(),
            source: packet.source(),
            destination: packet.destination(),
            path: RoutePath::new(packet.path())?,
            hop_index: packet.hop_index(),
            expiry_unix_s: packet.expiry(),
        };
        repr.validate()?;
        Ok(repr)
    }

    /// Bytes [`RouteSetup::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        SETUP_FIXED_LEN + self.path.len() * NODE_ID_LEN
    }

    /// Writes the message into a view over exactly [`RouteSetup::buffer_len`] bytes.
    ///
    /// Emits the fields as they are; a value that [`RouteSetup::validate`] rejects gives
    /// bytes that [`RouteSetup::parse`] rejects.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut RouteSetupPacket<&mut T>,
    ) {
        let buf = packet.buffer.as_mut();
        let fixed = SetupFixed {
            version: VERSION,
            kind: RouteMessageType::Setup as u8,
            // Bounded by MAX_HOPS in RoutePath.
            hop_count: self.path.len() as u8,
            hop_index: self.hop_index,
            reserved: U32::ZERO,
            route_id: U64::new(self.route_id),
            stream_id: self.stream_id,
            source: self.source,
            destination: self.destination,
            expiry: U64::new(self.expiry_unix_s),
        };
        let (head, rest) = buf.split_at_mut(SETUP_FIXED_LEN);
        head.copy_from_slice(fixed.as_bytes());
        rest[..self.path.len() * NODE_ID_LEN].copy_from_slice(self.path.as_slice().as_bytes());
    }

    /// The node this message is for.
    pub fn this_hop(&self) -> NodeId {
        self.path.as_slice()[usize::from(self.hop_index).min(self.path.len() - 1)]
    }

    /// The node this hop receives the route's packets from (the source for hop 0).
    pub fn previous_hop(&self) -> NodeId {
        match usize::from(self.hop_index) {
            0 => self.source,
            i => self
                .path
                .as_slice()
                .get(i - 1)
                .copied()
                .unwrap_or(self.source),
        }
    }

    /// The node this hop forwards to, or `None` at the destination.
    pub fn next_hop(&self) -> Option<NodeId> {
        self.path
            .as_slice()
            .get(usize::from(self.hop_index) + 1)
            .copied()
    }

    /// The same set-up addressed to the next hop, or `None` at the destination.
    pub fn for_next_hop(&self) -> Option<Self> {
        self.next_hop().map(|_| Self {
            hop_index: self.hop_index + 1,
            ..*self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::route::RouteMessage;

    fn node(b: u8) -> NodeId {
        NodeId([b; 16])
    }

    /// Route 0x0102030405060708 for stream 0x55.. from 0xa1.. to 0xd4.. through 0xb2.., 0xc3..,
    /// addressed to hop 1 (0xc3..), expiring at 1_700_000_000.
    #[rustfmt::skip]
    static SETUP_BYTES: [u8; 120] = [
        0x01, 0x01, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, // version, type, hop count, hop index, reserved
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // route id
        0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, // stream id
        0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
        0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, // source
        0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1, 0xa1,
        0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, // destination
        0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4,
        0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xf1, 0x00, // expiry
        0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, // path[0]
        0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2, 0xb2,
        0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, // path[1]
        0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3,
        0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, // path[2] = destination
        0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4, 0xd4,
    ];

    fn setup_repr() -> RouteSetup {
        RouteSetup {
            route_id: 0x0102_0304_0506_0708,
            stream_id: StreamId([0x55; 16]),
            source: node(0xa1),
            destination: node(0xd4),
            path: RoutePath::new(&[node(0xb2), node(0xc3), node(0xd4)]).unwrap(),
            hop_index: 1,
            expiry_unix_s: 1_700_000_000,
        }
    }

    #[test]
    fn setup_deconstruct() {
        let p = RouteSetupPacket::new_checked(&SETUP_BYTES[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert_eq!(p.msg_type(), 1);
        assert_eq!(p.hop_count(), 3);
        assert_eq!(p.hop_index(), 1);
        assert_eq!(p.route_id(), 0x0102_0304_0506_0708);
        assert_eq!(p.source(), node(0xa1));
        assert_eq!(p.destination(), node(0xd4));
        assert_eq!(p.expiry(), 1_700_000_000);
        assert_eq!(p.path(), &[node(0xb2), node(0xc3), node(0xd4)]);
    }

    #[test]
    fn setup_parse_and_emit() {
        let repr = RouteSetup::parse(&RouteSetupPacket::new_checked(&SETUP_BYTES[..]).unwrap());
        assert_eq!(repr, Ok(setup_repr()));
        let mut buf = vec![0xff; setup_repr().buffer_len()];
        setup_repr().emit(&mut RouteSetupPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, SETUP_BYTES);
    }

    #[test]
    fn setup_hop_navigation() {
        let s = setup_repr();
        assert_eq!(s.this_hop(), node(0xc3));
        assert_eq!(s.previous_hop(), node(0xb2));
        assert_eq!(s.next_hop(), Some(node(0xd4)));
        let last = s.for_next_hop().unwrap();
        assert_eq!(last.this_hop(), node(0xd4));
        assert_eq!(last.next_hop(), None);
        assert_eq!(last.for_next_hop(), None);
        let first = RouteSetup { hop_index: 0, ..s };
        assert_eq!(first.previous_hop(), node(0xa1));
    }

    #[test]
    fn relay_bumps_hop_index_in_place() {
        let mut buf = SETUP_BYTES;
        let mut p = RouteSetupPacket::new_checked(&mut buf[..]).unwrap();
        p.set_hop_index(2);
        let next = setup_repr().for_next_hop().unwrap();
        assert_eq!(RouteMessage::parse(&buf), Ok(RouteMessage::Setup(next)));
    }

    #[test]
    fn setup_rejects_bad_input() {
        let parse = |b: &[u8]| RouteMessage::parse(b);
        let short = |need, have| Err(WireError::Truncated { need, have });
        assert_eq!(parse(&SETUP_BYTES[..71]), short(72, 71));
        assert_eq!(parse(&SETUP_BYTES[..119]), short(120, 119));
        let mut long = SETUP_BYTES.to_vec();
        long.push(0);
        assert_eq!(parse(&long), Err(WireError::Trailing));

        let with = |i: usize, v: u8| {
            let mut b = SETUP_BYTES;
            b[i] = v;
            parse(&b)
        };
        assert_eq!(with(0, 2), Err(WireError::Version(2)));
        assert_eq!(with(1, 9), Err(WireError::UnknownType(9)));
        assert_eq!(with(2, 0), Err(WireError::Length(0)));
        assert_eq!(with(2, 9), Err(WireError::Length(9)));
        assert_eq!(with(2, 2), Err(WireError::Trailing));
        assert_eq!(with(5, 1), Err(WireError::Reserved));
        let bad_field = |r: Result<RouteMessage, WireError>| matches!(r, Err(WireError::Field(_)));
        assert!(bad_field(with(3, 3)), "hop index past the path");
        assert!(bad_field(with(119, 0)), "last hop is not the destination");
        let mut b = SETUP_BYTES;
        b.copy_within(72..88, 88);
        assert!(bad_field(parse(&b)), "a node twice in the path");
        let mut b = SETUP_BYTES;
        b.copy_within(32..48, 72);
        assert!(bad_field(parse(&b)), "the path passes through the source");
        let mut b = SETUP_BYTES;
        b.copy_within(48..64, 32);
        assert!(bad_field(parse(&b)), "source is the destination");
    }

    #[test]
    fn emit_checks_room_and_validity() {
        let mut small = [0u8; 100];
        assert_eq!(
            RouteMessage::Setup(setup_repr()).emit(&mut small),
            Err(WireError::Truncated {
                need: 120,
                have: 100
            })
        );
        let bad = RouteSetup {
            hop_index: 3,
            ..setup_repr()
        };
        let mut buf = [0u8; 200];
        assert!(matches!(
            RouteMessage::Setup(bad).emit(&mut buf),
            Err(WireError::Field(_))
        ));
    }

    #[test]
    fn path_bounds() {
        assert_eq!(RoutePath::new(&[]), Err(WireError::Length(0)));
        let nine: Vec<NodeId> = (1..=9).map(node).collect();
        assert_eq!(RoutePath::new(&nine), Err(WireError::Length(9)));
        assert_eq!(RoutePath::new(&nine[..8]).map(|p| p.len()), Ok(8));
        assert!(matches!(
            RoutePath::new(&[node(1), node(2), node(1)]),
            Err(WireError::Field(_))
        ));
    }
}
