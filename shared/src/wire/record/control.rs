//! Record bodies that the control process writes for the data plane workers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{Immutable, IntoBytes, KnownLayout, TryFromBytes, Unaligned};
use zeroize::Zeroize;

use super::field::{IpAddrField, IpPrefix, SocketAddrField, TetherId};
use crate::crypto::key::{KEY_LEN, NONCE_LEN, StreamKey};
use crate::id::{Label, Lane, StreamId};
use crate::wire::WireError;
use crate::wire::data::KeyEpoch;

/// Which way a stream runs through this node.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(u8)]
pub enum Direction {
    /// This node is the stream's source: the worker seals.
    Egress = 0,
    /// This node is the stream's destination: the worker opens.
    Ingress = 1,
}

/// Installs (or replaces) one epoch's key of a stream in a worker.
///
/// Carries key material. The consumer copies it out with [`InstallStreamBody::stream_key`]
/// (a [`StreamKey`] is wiped on drop) and must then wipe the ring slot and any copy of the
/// record ([`super::RingRecord::wipe`], or a wiping ring consumer); this body wipes its own
/// key and nonce base when a local copy is dropped, and its `Debug` never shows them.
#[derive(PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct InstallStreamBody {
    /// The stream.
    pub stream_id: StreamId,
    /// Seal (egress) or open (ingress).
    pub direction: Direction,
    /// Egress: the lane this worker counts in. Ingress: zero.
    pub lane: Lane,
    /// Which key slot: 0 (even) or 1 (odd), as the data header's epoch bit.
    pub epoch: u8,
    /// Bit set of [`stream_flags`] (ingress only; zero for egress).
    pub flags: u8,
    /// Egress: the first hop's label. Ingress: the label this node chose for the stream.
    pub label: U32,
    /// Monotonic time (ns, `CLOCK_MONOTONIC`) past which the key must no longer be used,
    /// even with no control process attached.
    pub expires_at_ns: U64,
    /// Egress: the destination's overlay address. Ingress: the source's, for the inner
    /// source check.
    pub peer: IpAddrField,
    /// Zero.
    pub reserved2: [u8; 3],
    /// The AES-256-GCM key.
    pub key: [u8; KEY_LEN],
    /// XORed with (lane ‖ counter) to make each packet's nonce.
    pub nonce_base: [u8; NONCE_LEN],
}

impl InstallStreamBody {
    /// A body that installs `key` for one epoch of a stream.
    // Each argument is a field of its own; a builder would only restate them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream_id: StreamId,
        direction: Direction,
        lane: Lane,
        epoch: KeyEpoch,
        label: Label,
        expires_at_ns: u64,
        peer: IpAddr,
        key: &StreamKey,
    ) -> Self {
        Self {
            stream_id,
            direction,
            lane,
            epoch: epoch.index() as u8,
            flags: 0,
            label: U32::new(label),
            expires_at_ns: U64::new(expires_at_ns),
            peer: IpAddrField::new(peer),
            reserved2: [0; 3],
            key: key.key,
            nonce_base: key.nonce_base,
        }
    }

    /// The key slot.
    pub fn key_epoch(&self) -> KeyEpoch {
        if self.epoch == 0 {
            KeyEpoch::Even
        } else {
            KeyEpoch::Odd
        }
    }

    /// A copy of the key material that is wiped when dropped.
    pub fn stream_key(&self) -> StreamKey {
        StreamKey {
            key: self.key,
            nonce_base: self.nonce_base,
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.flags & !stream_flags::ALL != 0 || self.reserved2 != [0; 3] {
            return Err(WireError::Reserved);
        }
        if self.direction == Direction::Egress && self.flags != 0 {
            return Err(WireError::Field("egress stream with ingress flags"));
        }
        if self.epoch > 1 {
            return Err(WireError::Field("key epoch is neither 0 nor 1"));
        }
        if self.direction == Direction::Ingress && self.lane != 0 {
            return Err(WireError::Field("ingress stream names a lane"));
        }
        self.peer.validate()
    }
}

impl Zeroize for InstallStreamBody {
    fn zeroize(&mut self) {
        self.key.zeroize();
        self.nonce_base.zeroize();
    }
}

impl Drop for InstallStreamBody {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl fmt::Debug for InstallStreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallStreamBody")
            .field("stream_id", &self.stream_id)
            .field("direction", &self.direction)
            .field("lane", &self.lane)
            .field("epoch", &self.epoch)
            .field("label", &self.label.get())
            .field("expires_at_ns", &self.expires_at_ns.get())
            .field("peer", &self.peer.ip())
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Key slots named by [`RemoveStreamBody::epochs`].
pub mod epochs {
    /// The even key slot.
    pub const EVEN: u8 = 0b01;
    /// The odd key slot.
    pub const ODD: u8 = 0b10;
    /// Both slots: the whole stream goes.
    pub const BOTH: u8 = EVEN | ODD;
}

/// Removes one or both key slots of a stream (the old slot after a rekey, or the stream).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RemoveStreamBody {
    /// The stream.
    pub stream_id: StreamId,
    /// Which table it is in.
    pub direction: Direction,
    /// Bit set of [`epochs`]; not empty.
    pub epochs: u8,
    /// Zero.
    pub reserved: [u8; 2],
}

impl RemoveStreamBody {
    /// Removes the slots in `epochs` (see [`epochs`]).
    pub fn new(stream_id: StreamId, direction: Direction, epochs: u8) -> Self {
        Self {
            stream_id,
            direction,
            epochs,
            reserved: [0; 2],
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.reserved != [0; 2] || self.epochs & !epochs::BOTH != 0 {
            return Err(WireError::Reserved);
        }
        if self.epochs == 0 {
            return Err(WireError::Field("stream removal names no key slot"));
        }
        Ok(())
    }
}

/// Most next hops of one route.
pub const MAX_NEXT_HOPS: usize = 4;

/// One weighted next hop of a route.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct NextHop {
    /// The tether to send on.
    pub tether: U32,
    /// The label the next hop chose for this route.
    pub label: U32,
    /// Share of flows (by flow hash) relative to the other hops; zero keeps it as standby.
    pub weight: U16,
    /// Zero.
    pub reserved: [u8; 2],
}

impl NextHop {
    /// A next hop.
    pub fn new(tether: TetherId, label: Label, weight: u16) -> Self {
        Self {
            tether: U32::new(tether),
            label: U32::new(label),
            weight: U16::new(weight),
            reserved: [0; 2],
        }
    }

    const EMPTY: Self = Self {
        tether: U32::ZERO,
        label: U32::ZERO,
        weight: U16::ZERO,
        reserved: [0; 2],
    };
}

/// What a route does with packets for its prefix.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(u8)]
pub enum RouteTarget {
    /// Deliver here (TUN); no next hops.
    Local = 0,
    /// Split over the next hops by weight.
    Forward = 1,
}

/// Installs (or replaces) the route for a destination prefix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct InstallRouteBody {
    /// The destination prefix.
    pub prefix: IpPrefix,
    /// Local or forwarded.
    pub target: RouteTarget,
    /// Used entries of `hops`: 0 for local, 1 to [`MAX_NEXT_HOPS`] when forwarding.
    pub hop_count: u8,
    /// The next hops; entries past `hop_count` are zero.
    pub hops: [NextHop; MAX_NEXT_HOPS],
    /// The overlay address of the node whose egress stream seals this route's packets
    /// (a gateway's prefix, a portal's default route); `0.0.0.0`: the stream whose
    /// destination the prefix contains.
    pub via: IpAddrField,
}

impl InstallRouteBody {
    /// A route that delivers `prefix` here.
    pub fn local(prefix: IpPrefix) -> Self {
        Self {
            prefix,
            target: RouteTarget::Local,
            hop_count: 0,
            hops: [NextHop::EMPTY; MAX_NEXT_HOPS],
            via: IpAddrField::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    /// A route that splits `prefix` over `hops`; 1 to [`MAX_NEXT_HOPS`] hops, weights not
    /// all zero.
    pub fn forward(prefix: IpPrefix, hops: &[NextHop]) -> Result<Self, WireError> {
        if hops.is_empty() || hops.len() > MAX_NEXT_HOPS {
            return Err(WireError::Length(hops.len()));
        }
        let mut body = Self {
            prefix,
            target: RouteTarget::Forward,
            // Bounded by MAX_NEXT_HOPS above.
            hop_count: hops.len() as u8,
            hops: [NextHop::EMPTY; MAX_NEXT_HOPS],
            via: IpAddrField::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        };
        body.hops[..hops.len()].copy_from_slice(hops);
        body.check()?;
        Ok(body)
    }

    /// [`Self::forward`] sealed by the egress stream to `via`.
    pub fn forward_via(prefix: IpPrefix, hops: &[NextHop], via: IpAddr) -> Result<Self, WireError> {
        let mut body = Self::forward(prefix, hops)?;
        body.via = IpAddrField::new(via);
        body.check()?;
        Ok(body)
    }

    /// The node whose egress stream seals this route, when the record names one.
    pub fn via(&self) -> Option<IpAddr> {
        Some(self.via.ip()).filter(|ip| !ip.is_unspecified())
    }

    /// The used next hops (empty for a local route).
    pub fn next_hops(&self) -> &[NextHop] {
        self.hops.get(..usize::from(self.hop_count)).unwrap_or(&[])
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        self.prefix.validate()?;
        self.via.validate()?;
        if self.target == RouteTarget::Local && self.via().is_some() {
            return Err(WireError::Field("a local route names a stream"));
        }
        let n = usize::from(self.hop_count);
        match self.target {
            RouteTarget::Local if n != 0 => return Err(WireError::Length(n)),
            RouteTarget::Forward if n == 0 || n > MAX_NEXT_HOPS => {
                return Err(WireError::Length(n));
            }
            _ => {}
        }
        if self.hops[n..].iter().any(|h| *h != NextHop::EMPTY) {
            return Err(WireError::Reserved);
        }
        if self.hops[..n].iter().any(|h| h.reserved != [0; 2]) {
            return Err(WireError::Reserved);
        }
        if n > 0 && self.hops[..n].iter().all(|h| h.weight.get() == 0) {
            return Err(WireError::Field("route next hops all have weight zero"));
        }
        Ok(())
    }
}

/// Removes the route for a destination prefix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RemoveRouteBody {
    /// The destination prefix.
    pub prefix: IpPrefix,
}

impl RemoveRouteBody {
    pub(super) fn check(&self) -> Result<(), WireError> {
        self.prefix.validate()
    }
}

/// Installs (or replaces) a relay entry: packets arriving with `in_label` leave on `tether`
/// with `out_label`, still encrypted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct InstallRelayBody {
    /// The label this node chose for the route's inbound side.
    pub in_label: U32,
    /// The tether to the next hop.
    pub tether: U32,
    /// The label the next hop chose.
    pub out_label: U32,
}

impl InstallRelayBody {
    /// A relay entry.
    pub fn new(in_label: Label, tether: TetherId, out_label: Label) -> Self {
        Self {
            in_label: U32::new(in_label),
            tether: U32::new(tether),
            out_label: U32::new(out_label),
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        Ok(())
    }
}

/// Removes a relay entry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RemoveRelayBody {
    /// The inbound label of the entry.
    pub in_label: U32,
}

impl RemoveRelayBody {
    pub(super) fn check(&self) -> Result<(), WireError> {
        Ok(())
    }
}

/// Installs (or replaces) a tether to a peer's UDP endpoint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct InstallTetherBody {
    /// The tether.
    pub tether: U32,
    /// The peer's UDP address.
    pub peer: SocketAddrField,
}

impl InstallTetherBody {
    /// A tether to `peer`.
    pub fn new(tether: TetherId, peer: SocketAddr) -> Self {
        Self {
            tether: U32::new(tether),
            peer: SocketAddrField::new(peer),
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        self.peer.validate()
    }
}

/// Closes a tether.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RemoveTetherBody {
    /// The tether.
    pub tether: U32,
}

impl RemoveTetherBody {
    pub(super) fn check(&self) -> Result<(), WireError> {
        Ok(())
    }
}

/// Whether an [`AllowedPrefixBody`] adds or removes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(u8)]
pub enum PrefixOp {
    /// The stream's source may now send from the prefix.
    Add = 0,
    /// It no longer may.
    Remove = 1,
}

/// Adds or removes a prefix that an ingress stream's source may send from (beyond its own
/// overlay address), as WireGuard's allowed IPs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AllowedPrefixBody {
    /// The ingress stream.
    pub stream_id: StreamId,
    /// Add or remove.
    pub op: PrefixOp,
    /// Zero.
    pub reserved: u8,
    /// The prefix.
    pub prefix: IpPrefix,
}

impl AllowedPrefixBody {
    /// Adds or removes `prefix` for `stream_id`.
    pub fn new(stream_id: StreamId, op: PrefixOp, prefix: IpPrefix) -> Self {
        Self {
            stream_id,
            op,
            reserved: 0,
            prefix,
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.reserved != 0 {
            return Err(WireError::Reserved);
        }
        self.prefix.validate()
    }
}

/// Flag bits of [`PolicyBody::flags`].
pub mod policy_flags {
    /// This node forwards other nodes' routes (relays).
    pub const RELAY: u8 = 0b01;
    /// This node is a portal: it may deliver inner packets for destinations outside the
    /// overlay.
    pub const PORTAL: u8 = 0b10;
    /// Inner destinations that no local route covers are internet-bound: delivered only
    /// from streams allowed to exit ([`super::stream_flags::EXIT`]) on a portal, otherwise
    /// dropped and counted. Without it every opened packet is delivered.
    pub const GUARD_EXIT: u8 = 0b100;
    /// Every flag this version knows.
    pub const ALL: u8 = RELAY | PORTAL | GUARD_EXIT;
}

/// Flag bits of [`InstallStreamBody::flags`].
pub mod stream_flags {
    /// Ingress: the source may use this node as its internet exit (same owner, on a portal).
    pub const EXIT: u8 = 0b1;
    /// Every flag this version knows.
    pub const ALL: u8 = EXIT;
}

/// Node-wide data plane policy, replaced whole.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct PolicyBody {
    /// Bit set of [`policy_flags`].
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// Upper bound on any key's lifetime from install, in seconds; not zero.
    pub max_key_lifetime_s: U32,
    /// Relayed packets per second per worker; zero for no limit.
    pub relay_rate_pps: U32,
    /// Seconds without traffic before a worker reports a stream idle; zero to never.
    pub idle_timeout_s: U32,
}

impl PolicyBody {
    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.reserved != [0; 3] || self.flags & !policy_flags::ALL != 0 {
            return Err(WireError::Reserved);
        }
        if self.max_key_lifetime_s.get() == 0 {
            return Err(WireError::Field("policy key lifetime is zero"));
        }
        Ok(())
    }
}
