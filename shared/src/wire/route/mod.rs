//! Route set-up, acknowledgement and tear-down, exchanged hop by hop between control processes.
//!
//! A route is built by its source (DESIGN §3): a [`RouteSetup`] travels along the path, and
//! each hop's control process picks the label it wants to receive the route's packets on,
//! installs it in its data plane and answers with a [`RouteAck`] carrying that label, so labels
//! are chosen by the receiving hop and never collide across sources. A [`RouteTeardown`]
//! removes the route at every hop.
//!
//! Every message starts with the same two bytes, version then type, so
//! [`RouteMessage::parse`] can dispatch on them. Multi-byte fields are big-endian.
//!
//! ```text
//! RouteSetup (72 bytes + 16 per hop)
//!   0  version (1)     1  type (1)     2  hop count (1..=8)     3  hop index (< hop count)
//!   4  reserved, zero (4)
//!   8  route id (8)
//!  16  stream id (16)
//!  32  source node id (16)
//!  48  destination node id (16)
//!  64  expiry, unix seconds (8)
//!  72  path: hop count node ids (16 each), the hops after the source, ending at the destination
//!
//! RouteAck (16 bytes)
//!   0  version (1)     1  type (2)     2  hop index     3  status
//!   4  label the acking hop chose for its inbound side (4; zero unless accepted)
//!   8  route id (8)
//!
//! RouteTeardown (16 bytes)
//!   0  version (1)     1  type (3)     2  reason        3  reserved, zero (5 bytes, to 8)
//!   8  route id (8)
//! ```

mod ack;
mod setup;
mod teardown;

pub use ack::{ACK_LEN, AckStatus, RouteAck, RouteAckPacket};
pub use setup::{RoutePath, RouteSetup, RouteSetupPacket, SETUP_FIXED_LEN};
pub use teardown::{RouteTeardown, RouteTeardownPacket, TEARDOWN_LEN, TeardownReason};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::WireError;

/// The route message version this build speaks.
pub const VERSION: u8 = 1;
/// Most hops a route may have after its source.
pub const MAX_HOPS: usize = 8;

/// Size of one node id on the wire.
const NODE_ID_LEN: usize = 16;

/// The message type byte (offset 1) shared by every route message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RouteMessageType {
    /// [`RouteSetup`].
    Setup = 1,
    /// [`RouteAck`].
    Ack = 2,
    /// [`RouteTeardown`].
    Teardown = 3,
}

impl RouteMessageType {
    /// The type for a type byte, or [`WireError::UnknownType`].
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(Self::Setup),
            2 => Ok(Self::Ack),
            3 => Ok(Self::Teardown),
            _ => Err(WireError::UnknownType(v.into())),
        }
    }
}

/// Checks the version and type bytes shared by all route messages.
fn check_version_and_type(version: u8, kind: u8, want: RouteMessageType) -> Result<(), WireError> {
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    if RouteMessageType::from_u8(kind)? != want {
        return Err(WireError::UnknownType(kind.into()));
    }
    Ok(())
}

/// The fixed part at the start of a message view's buffer.
///
/// `new_checked` proved the length; a view made with `new_unchecked` over a buffer too short
/// for it is the caller's bug, and panics here.
fn fixed<F: FromBytes + KnownLayout + Immutable>(buffer: &[u8]) -> &F {
    F::ref_from_prefix(buffer)
        .map(|(f, _)| f)
        .expect("route message buffer shorter than its fixed part")
}

/// [`fixed`], writable.
fn fixed_mut<F: FromBytes + IntoBytes + KnownLayout>(buffer: &mut [u8]) -> &mut F {
    F::mut_from_prefix(buffer)
        .map(|(f, _)| f)
        .expect("route message buffer shorter than its fixed part")
}

/// Rejects a buffer that is not exactly `need` bytes long.
fn check_exact_len(have: usize, need: usize) -> Result<(), WireError> {
    if have < need {
        Err(WireError::Truncated { need, have })
    } else if have > need {
        Err(WireError::Trailing)
    } else {
        Ok(())
    }
}

/// Any route message, parsed from bytes whose type is not known in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteMessage {
    /// A set-up.
    Setup(RouteSetup),
    /// An acknowledgement.
    Ack(RouteAck),
    /// A tear-down.
    Teardown(RouteTeardown),
}

impl RouteMessage {
    /// Parses one whole message from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let [version, kind, ..] = *bytes else {
            return Err(WireError::Truncated {
                need: 2,
                have: bytes.len(),
            });
        };
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        Ok(match RouteMessageType::from_u8(kind)? {
            RouteMessageType::Setup => {
                Self::Setup(RouteSetup::parse(&RouteSetupPacket::new_checked(bytes)?)?)
            }
            RouteMessageType::Ack => {
                Self::Ack(RouteAck::parse(&RouteAckPacket::new_checked(bytes)?)?)
            }
            RouteMessageType::Teardown => Self::Teardown(RouteTeardown::parse(
                &RouteTeardownPacket::new_checked(bytes)?,
            )?),
        })
    }

    /// The message's type.
    pub fn msg_type(&self) -> RouteMessageType {
        match self {
            Self::Setup(_) => RouteMessageType::Setup,
            Self::Ack(_) => RouteMessageType::Ack,
            Self::Teardown(_) => RouteMessageType::Teardown,
        }
    }

    /// Bytes [`RouteMessage::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::Setup(m) => m.buffer_len(),
            Self::Ack(m) => m.buffer_len(),
            Self::Teardown(m) => m.buffer_len(),
        }
    }

    /// Validates the message and writes it at the start of `buf`, returning its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let have = buf.len();
        let buf = buf
            .get_mut(..len)
            .ok_or(WireError::Truncated { need: len, have })?;
        match self {
            Self::Setup(m) => {
                m.validate()?;
                m.emit(&mut RouteSetupPacket::new_unchecked(buf));
            }
            Self::Ack(m) => {
                m.validate()?;
                m.emit(&mut RouteAckPacket::new_unchecked(buf));
            }
            Self::Teardown(m) => m.emit(&mut RouteTeardownPacket::new_unchecked(buf)),
        }
        Ok(len)
    }
}

impl From<RouteSetup> for RouteMessage {
    fn from(m: RouteSetup) -> Self {
        Self::Setup(m)
    }
}

impl From<RouteAck> for RouteMessage {
    fn from(m: RouteAck) -> Self {
        Self::Ack(m)
    }
}

impl From<RouteTeardown> for RouteMessage {
    fn from(m: RouteTeardown) -> Self {
        Self::Teardown(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_rejects_short_and_unknown() {
        let short = |have| Err(WireError::Truncated { need: 2, have });
        assert_eq!(RouteMessage::parse(&[]), short(0));
        assert_eq!(RouteMessage::parse(&[1]), short(1));
        assert_eq!(RouteMessage::parse(&[0, 1]), Err(WireError::Version(0)));
        assert_eq!(RouteMessage::parse(&[1, 0]), Err(WireError::UnknownType(0)));
        assert_eq!(RouteMessage::parse(&[1, 4]), Err(WireError::UnknownType(4)));
    }

    #[test]
    fn type_byte_matches_the_variant() {
        let teardown = RouteMessage::Teardown(RouteTeardown {
            route_id: 1,
            reason: TeardownReason::Idle,
        });
        let mut buf = [0u8; TEARDOWN_LEN];
        teardown.emit(&mut buf).unwrap();
        assert_eq!(buf[1], teardown.msg_type() as u8);
        assert_eq!(
            RouteMessageType::from_u8(buf[1]),
            Ok(RouteMessageType::Teardown)
        );
    }
}
