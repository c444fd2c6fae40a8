//! Record bodies that data plane workers write for the control process.

use std::net::{IpAddr, SocketAddr};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{Immutable, IntoBytes, KnownLayout, TryFromBytes, Unaligned};

use super::control::Direction;
use super::field::{IpAddrField, SocketAddrField, TetherId, WorkerId};
use crate::id::StreamId;
use crate::wire::WireError;

/// One in a million: the unit of [`TelemetryBody::loss_ppm`].
pub const PPM: u32 = 1_000_000;

/// A worker's measurements of one tether since its previous report for that tether.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TelemetryBody {
    /// The tether.
    pub tether: U32,
    /// The reporting worker.
    pub worker: U16,
    /// Zero.
    pub reserved: [u8; 2],
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: U32,
    /// Packet loss, parts per million (at most [`PPM`]).
    pub loss_ppm: U32,
    /// Bytes sent since the previous report.
    pub bytes: U64,
    /// Packets sent since the previous report.
    pub packets: U64,
    /// Packets waiting in the tether's send queue now.
    pub queue_depth: U32,
    /// The tether's confirmed path MTU now, as the largest UDP payload it sends; 0 when
    /// the transport does not discover one (plain tethers).
    pub plpmtu: U16,
    /// Zero.
    pub reserved2: [u8; 2],
}

impl TelemetryBody {
    /// A telemetry report.
    pub fn new(
        tether: TetherId,
        worker: WorkerId,
        rtt_us: u32,
        loss_ppm: u32,
        bytes: u64,
        packets: u64,
        queue_depth: u32,
    ) -> Self {
        Self {
            tether: U32::new(tether),
            worker: U16::new(worker),
            reserved: [0; 2],
            rtt_us: U32::new(rtt_us),
            loss_ppm: U32::new(loss_ppm),
            bytes: U64::new(bytes),
            packets: U64::new(packets),
            queue_depth: U32::new(queue_depth),
            plpmtu: U16::new(0),
            reserved2: [0; 2],
        }
    }

    /// The same report with the tether's path MTU.
    pub fn with_plpmtu(mut self, plpmtu: u16) -> Self {
        self.plpmtu = U16::new(plpmtu);
        self
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.reserved != [0; 2] || self.reserved2 != [0; 2] {
            return Err(WireError::Reserved);
        }
        if self.loss_ppm.get() > PPM {
            return Err(WireError::Field("telemetry loss above one million ppm"));
        }
        if self.bytes.get() < self.packets.get() {
            return Err(WireError::Field(
                "telemetry counts fewer bytes than packets",
            ));
        }
        Ok(())
    }
}

/// A packet from the TUN device whose destination no route covers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MissBody {
    /// The reporting worker.
    pub worker: U16,
    /// Zero.
    pub reserved: u8,
    /// The inner destination address.
    pub destination: IpAddrField,
}

impl MissBody {
    /// A miss for `destination`.
    pub fn new(worker: WorkerId, destination: IpAddr) -> Self {
        Self {
            worker: U16::new(worker),
            reserved: 0,
            destination: IpAddrField::new(destination),
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.reserved != 0 {
            return Err(WireError::Reserved);
        }
        self.destination.validate()
    }
}

/// The data plane's named counters; each reported value is the worker's running total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CounterId {
    /// Datagrams whose header or framing did not parse.
    MalformedPacket = 1,
    /// Packets with a label that names no stream or relay entry.
    UnknownLabel = 2,
    /// Packets whose AES-GCM tag did not verify.
    BadTag = 3,
    /// Packets rejected by the replay window.
    Replay = 4,
    /// Decrypted packets whose inner source the stream may not send from.
    InnerSource = 5,
    /// Packets for a stream whose key had passed its hard expiry.
    KeyExpired = 6,
    /// TUN packets with no route (each also reported as a miss, rate limited).
    NoRoute = 7,
    /// Ring records that failed validation.
    MalformedRecord = 8,
    /// Relay packets dropped by policy or rate limit.
    RelayDenied = 9,
    /// Failed TUN writes.
    TunWriteFailed = 10,
    /// Failed UDP sends.
    UdpSendFailed = 11,
    /// Reports dropped because the ring to the control process was full.
    RingFull = 12,
    /// Inner packets read from TUN and sent (traffic, not a drop).
    EgressPackets = 13,
    /// Inner packets delivered to TUN (traffic, not a drop).
    IngressPackets = 14,
    /// Packets forwarded for other nodes (traffic, not a drop).
    RelayedPackets = 15,
    /// Internet-bound packets from a stream that may not exit here (not a portal, or
    /// another owner's node).
    ExitDenied = 16,
    /// Inner packets too big for their route's tether (its path MTU): dropped, and the
    /// sender told by ICMP where the rules allow.
    TooBig = 17,
    /// ICMP "fragmentation needed" / "packet too big" errors written to the TUN.
    IcmpTooBigSent = 18,
    /// TCP SYNs whose MSS option was lowered to the route's path MTU (traffic, not a drop).
    MssClamped = 19,
}

impl CounterId {
    /// Every counter, in id order.
    pub const ALL: [Self; 19] = [
        Self::MalformedPacket,
        Self::UnknownLabel,
        Self::BadTag,
        Self::Replay,
        Self::InnerSource,
        Self::KeyExpired,
        Self::NoRoute,
        Self::MalformedRecord,
        Self::RelayDenied,
        Self::TunWriteFailed,
        Self::UdpSendFailed,
        Self::RingFull,
        Self::EgressPackets,
        Self::IngressPackets,
        Self::RelayedPackets,
        Self::ExitDenied,
        Self::TooBig,
        Self::IcmpTooBigSent,
        Self::MssClamped,
    ];

    /// The counter for an id byte.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        Self::ALL
            .get(usize::from(v).wrapping_sub(1))
            .copied()
            .ok_or(WireError::Field("unknown counter id"))
    }

    /// The counter's metric name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::MalformedPacket => "malformed_packet",
            Self::UnknownLabel => "unknown_label",
            Self::BadTag => "bad_tag",
            Self::Replay => "replay",
            Self::InnerSource => "inner_source",
            Self::KeyExpired => "key_expired",
            Self::NoRoute => "no_route",
            Self::MalformedRecord => "malformed_record",
            Self::RelayDenied => "relay_denied",
            Self::TunWriteFailed => "tun_write_failed",
            Self::UdpSendFailed => "udp_send_failed",
            Self::RingFull => "ring_full",
            Self::EgressPackets => "egress_packets",
            Self::IngressPackets => "ingress_packets",
            Self::RelayedPackets => "relayed_packets",
            Self::ExitDenied => "exit_denied",
            Self::TooBig => "too_big",
            Self::IcmpTooBigSent => "icmp_too_big_sent",
            Self::MssClamped => "mss_clamped",
        }
    }
}

/// One counter's value in a [`CountersBody`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CounterEntry {
    /// A [`CounterId`] as its byte.
    pub id: u8,
    /// Zero.
    pub reserved: [u8; 7],
    /// The running total.
    pub value: U64,
}

impl CounterEntry {
    const EMPTY: Self = Self {
        id: 0,
        reserved: [0; 7],
        value: U64::ZERO,
    };

    /// The counter, which [`super::RingRecord::decode`] has checked.
    pub fn counter(&self) -> Result<CounterId, WireError> {
        CounterId::from_u8(self.id)
    }
}

/// Most counters in one [`CountersBody`].
pub const MAX_COUNTERS: usize = 7;

/// A batch of a worker's counter totals.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CountersBody {
    /// The reporting worker.
    pub worker: U16,
    /// Used entries: 1 to [`MAX_COUNTERS`].
    pub count: u8,
    /// Zero.
    pub reserved: u8,
    /// The counters, each at most once; entries past `count` are zero.
    pub entries: [CounterEntry; MAX_COUNTERS],
}

impl CountersBody {
    /// A batch of 1 to [`MAX_COUNTERS`] distinct counters.
    pub fn new(worker: WorkerId, values: &[(CounterId, u64)]) -> Result<Self, WireError> {
        if values.is_empty() || values.len() > MAX_COUNTERS {
            return Err(WireError::Length(values.len()));
        }
        let mut body = Self {
            worker: U16::new(worker),
            // Bounded by MAX_COUNTERS above.
            count: values.len() as u8,
            reserved: 0,
            entries: [CounterEntry::EMPTY; MAX_COUNTERS],
        };
        for (e, &(id, value)) in body.entries.iter_mut().zip(values) {
            e.id = id as u8;
            e.value = U64::new(value);
        }
        body.check()?;
        Ok(body)
    }

    /// The used entries.
    pub fn entries(&self) -> &[CounterEntry] {
        self.entries.get(..usize::from(self.count)).unwrap_or(&[])
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        let n = usize::from(self.count);
        if n == 0 || n > MAX_COUNTERS {
            return Err(WireError::Length(n));
        }
        if self.reserved != 0 || self.entries[n..].iter().any(|e| *e != CounterEntry::EMPTY) {
            return Err(WireError::Reserved);
        }
        let used = &self.entries[..n];
        for (i, e) in used.iter().enumerate() {
            if e.reserved != [0; 7] {
                return Err(WireError::Reserved);
            }
            e.counter()?;
            if used[i + 1..].iter().any(|o| o.id == e.id) {
                return Err(WireError::Field("counter repeated in one record"));
            }
        }
        Ok(())
    }
}

/// A tether's connection state as a worker sees it.
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
pub enum TetherState {
    /// ICE / DTLS / SCTP set-up under way.
    Connecting = 0,
    /// Carrying traffic.
    Up = 1,
    /// Was up, now failing consent checks or losing every probe.
    Down = 2,
    /// Set-up failed or the peer closed it; the tether will not recover by itself.
    Closed = 3,
}

/// A tether changed state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TetherStateBody {
    /// The tether.
    pub tether: U32,
    /// The reporting worker.
    pub worker: U16,
    /// The new state.
    pub state: TetherState,
    /// 1: `peer` holds the address the tether sends to (ICE's selected pair); 0: it is
    /// all zero.
    pub has_peer: u8,
    /// The peer's address as a [`SocketAddrField`], when `has_peer` says so.
    pub peer: [u8; PEER_LEN],
}

/// Bytes of a [`SocketAddrField`].
const PEER_LEN: usize = size_of::<SocketAddrField>();

impl TetherStateBody {
    /// A state report.
    pub fn new(tether: TetherId, worker: WorkerId, state: TetherState) -> Self {
        Self {
            tether: U32::new(tether),
            worker: U16::new(worker),
            state,
            has_peer: 0,
            peer: [0; PEER_LEN],
        }
    }

    /// The report with the address the tether now sends to.
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> Self {
        if let Some(p) = peer.filter(|p| p.port() != 0) {
            self.has_peer = 1;
            self.peer
                .copy_from_slice(SocketAddrField::new(p).as_bytes());
        }
        self
    }

    /// The address the tether sends to, if the report names it.
    pub fn peer(&self) -> Option<SocketAddr> {
        if self.has_peer != 1 {
            return None;
        }
        SocketAddrField::try_ref_from_bytes(&self.peer)
            .ok()
            .map(SocketAddrField::socket_addr)
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        match self.has_peer {
            0 if self.peer.iter().all(|b| *b == 0) => Ok(()),
            0 => Err(WireError::Reserved),
            1 => SocketAddrField::try_ref_from_bytes(&self.peer)
                .map_err(|_| WireError::Field("tether state peer is not a socket address"))?
                .validate(),
            _ => Err(WireError::Field(
                "tether state peer flag is neither 0 nor 1",
            )),
        }
    }
}

/// A stream carried traffic since the worker's previous report about it.
///
/// Only streams that moved packets are reported, so the control process can tell an idle
/// stream by the absence of these records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, TryFromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StreamActivityBody {
    /// The stream.
    pub stream_id: StreamId,
    /// Which way it runs through this node.
    pub direction: Direction,
    /// Zero.
    pub reserved: u8,
    /// The reporting worker.
    pub worker: U16,
    /// Zero.
    pub reserved2: [u8; 4],
    /// Packets since the previous report.
    pub packets: U64,
    /// Payload bytes since the previous report.
    pub bytes: U64,
}

impl StreamActivityBody {
    /// An activity report.
    pub fn new(
        stream_id: StreamId,
        direction: Direction,
        worker: WorkerId,
        packets: u64,
        bytes: u64,
    ) -> Self {
        Self {
            stream_id,
            direction,
            reserved: 0,
            worker: U16::new(worker),
            reserved2: [0; 4],
            packets: U64::new(packets),
            bytes: U64::new(bytes),
        }
    }

    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.reserved != 0 || self.reserved2 != [0; 4] {
            return Err(WireError::Reserved);
        }
        if self.packets.get() == 0 {
            return Err(WireError::Field("stream activity with no packets"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::record::{RecordRef, RingRecord};

    #[test]
    fn telemetry_carries_the_path_mtu_and_keeps_its_reserved_bytes_zero() {
        let t = TelemetryBody::new(3, 1, 900, 0, 3000, 2, 5).with_plpmtu(1249);
        let rec = RingRecord::encode(&t).unwrap();
        let Ok(RecordRef::Telemetry(back)) = rec.decode() else {
            panic!("not a telemetry record");
        };
        assert_eq!(back.plpmtu.get(), 1249);
        assert_eq!(back.tether.get(), 3);
        let mut bad = t;
        bad.reserved2 = [0, 1];
        assert_eq!(
            RingRecord::encode(&bad).map(|_| ()),
            Err(WireError::Reserved)
        );
    }
}
