//! The per-packet data header that precedes every encrypted payload on a stream.
//!
//! ```text
//!  0        1        2        3        4                               12               16
//! +--------+--------+--------+--------+-------------------------------+----------------+
//! |version |  type  | flags  |  lane  |       counter (u64, BE)       |  label (u32)   |
//! +--------+--------+--------+--------+-------------------------------+----------------+
//! | payload (AES-256-GCM ciphertext) ...                    | tag (16 bytes)           |
//! +---------------------------------------------------------+--------------------------+
//! ```
//!
//! The first [`AAD_LEN`] bytes are the AES-GCM associated data. The label is left out of it
//! on purpose: a relay rewrites the per-hop label in place and forwards the packet without
//! decrypting it, so the tag must stay valid across that rewrite. The nonce is derived from
//! lane and counter, both of which are authenticated.

use core::ops::Range;

use zerocopy::byteorder::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::WireError;
use crate::id::{Label, Lane};

/// Length of the data header in bytes.
pub const HEADER_LEN: usize = 16;
/// Length of the associated data: the header without the label.
pub const AAD_LEN: usize = 12;
/// Length of the AES-GCM tag that follows the payload.
pub const TAG_LEN: usize = crate::crypto::key::TAG_LEN;
/// Bytes a data packet adds around its payload (header in headroom, tag in tailroom).
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The only header version this build speaks.
pub const VERSION: u8 = 1;

/// Flag bit carrying the key epoch (which of the two overlapping keys sealed the packet).
pub const FLAG_KEY_EPOCH: u8 = 0x01;
/// Flag bits that must be zero in this version.
pub const FLAGS_RESERVED: u8 = !FLAG_KEY_EPOCH;

/// What a data packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// An encrypted inner IP packet.
    Data,
    /// A liveness probe (reserved: same framing, payload defined by the liveness protocol).
    Probe,
    /// A type this build does not know; [`DataPacket::new_checked`] rejects it.
    Unknown(u8),
}

impl From<u8> for PacketType {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::Data,
            2 => Self::Probe,
            other => Self::Unknown(other),
        }
    }
}

impl From<PacketType> for u8 {
    fn from(t: PacketType) -> Self {
        match t {
            PacketType::Data => 1,
            PacketType::Probe => 2,
            PacketType::Unknown(other) => other,
        }
    }
}

/// Which of a stream's two key slots sealed a packet; a rekey flips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyEpoch {
    /// Flag bit clear.
    Even,
    /// Flag bit set.
    Odd,
}

impl KeyEpoch {
    /// The epoch a rekey moves to.
    #[must_use]
    pub const fn next(self) -> Self {
        match self {
            Self::Even => Self::Odd,
            Self::Odd => Self::Even,
        }
    }

    /// 0 or 1, for indexing a two-slot table.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::Even => 0,
            Self::Odd => 1,
        }
    }

    /// The epoch named by a flags byte.
    #[must_use]
    pub const fn from_flags(flags: u8) -> Self {
        if flags & FLAG_KEY_EPOCH == 0 {
            Self::Even
        } else {
            Self::Odd
        }
    }

    /// This epoch's bit in a flags byte.
    #[must_use]
    pub const fn flag(self) -> u8 {
        match self {
            Self::Even => 0,
            Self::Odd => FLAG_KEY_EPOCH,
        }
    }
}

/// The data header as a fixed-layout struct, for emitting and for zero-copy reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DataHeader {
    /// Header version, [`VERSION`].
    pub version: u8,
    /// Raw packet type (see [`PacketType`]).
    pub kind: u8,
    /// Flag bits: [`FLAG_KEY_EPOCH`]; the others are reserved.
    pub flags: u8,
    /// The sending worker's lane.
    pub lane: Lane,
    /// Per-lane packet counter; with the lane it makes the nonce.
    pub counter: U64,
    /// Per-hop label, rewritten by each relay; not authenticated.
    pub label: U32,
}

const _: () = assert!(size_of::<DataHeader>() == HEADER_LEN);

impl DataHeader {
    /// A current-version header.
    #[must_use]
    pub fn new(kind: PacketType, epoch: KeyEpoch, lane: Lane, counter: u64, label: Label) -> Self {
        Self {
            version: VERSION,
            kind: kind.into(),
            flags: epoch.flag(),
            lane,
            counter: U64::new(counter),
            label: U32::new(label),
        }
    }

    /// Checks version, type and reserved flags.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.version != VERSION {
            return Err(WireError::Version(self.version));
        }
        if let PacketType::Unknown(t) = PacketType::from(self.kind) {
            return Err(WireError::UnknownType(u16::from(t)));
        }
        if self.flags & FLAGS_RESERVED != 0 {
            return Err(WireError::Reserved);
        }
        Ok(())
    }

    /// The packet type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.kind)
    }

    /// The key epoch from the flags.
    #[must_use]
    pub fn key_epoch(&self) -> KeyEpoch {
        KeyEpoch::from_flags(self.flags)
    }
}

/// A view of a data packet (header, payload, tag) over a byte buffer.
///
/// Built by [`DataPacket::new_checked`] from untrusted bytes, no accessor panics. A view
/// from [`DataPacket::new_unchecked`] over fewer than [`OVERHEAD`] bytes panics on access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// Wraps a buffer without checking it (for emitting into storage the caller sized).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes after checking length, version, type and reserved flags.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// The checks of [`DataPacket::new_checked`], on an existing view.
    pub fn check(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < OVERHEAD {
            return Err(WireError::Truncated {
                need: OVERHEAD,
                have: bytes.len(),
            });
        }
        self.header().validate()
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The header as a struct.
    pub fn header(&self) -> &DataHeader {
        let bytes = &self.buffer.as_ref()[..HEADER_LEN];
        // Infallible: `DataHeader` is unaligned, has no invalid bit patterns and the slice
        // is exactly its size.
        DataHeader::ref_from_bytes(bytes).unwrap_or_else(|_| unreachable!())
    }

    /// Header version.
    pub fn version(&self) -> u8 {
        self.header().version
    }

    /// Packet type.
    pub fn packet_type(&self) -> PacketType {
        self.header().packet_type()
    }

    /// Raw flags byte.
    pub fn flags(&self) -> u8 {
        self.header().flags
    }

    /// Key epoch from the flags.
    pub fn key_epoch(&self) -> KeyEpoch {
        KeyEpoch::from_flags(self.flags())
    }

    /// The sender's lane.
    pub fn lane(&self) -> Lane {
        self.header().lane
    }

    /// The per-lane counter.
    pub fn counter(&self) -> u64 {
        self.header().counter.get()
    }

    /// The per-hop label.
    pub fn label(&self) -> Label {
        self.header().label.get()
    }

    /// The associated data: every header byte but the label.
    pub fn aad(&self) -> &[u8; AAD_LEN] {
        let bytes = &self.buffer.as_ref()[..AAD_LEN];
        bytes.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// Where the payload lies in the buffer.
    pub fn payload_range(&self) -> Range<usize> {
        HEADER_LEN..self.buffer.as_ref().len() - TAG_LEN
    }

    /// The payload (ciphertext until opened).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }

    /// The tag that follows the payload.
    pub fn tag(&self) -> &[u8; TAG_LEN] {
        let bytes = self.buffer.as_ref();
        let tail = &bytes[bytes.len() - TAG_LEN..];
        tail.try_into().unwrap_or_else(|_| unreachable!())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataPacket<T> {
    /// The header as a mutable struct.
    pub fn header_mut(&mut self) -> &mut DataHeader {
        let bytes = &mut self.buffer.as_mut()[..HEADER_LEN];
        DataHeader::mut_from_bytes(bytes).unwrap_or_else(|_| unreachable!())
    }

    /// Writes a whole header.
    pub fn set_header(&mut self, header: &DataHeader) {
        *self.header_mut() = *header;
    }

    /// Rewrites the per-hop label in place; the tag stays valid.
    pub fn set_label(&mut self, label: Label) {
        self.header_mut().label.set(label);
    }

    /// Sets the per-lane counter.
    pub fn set_counter(&mut self, counter: u64) {
        self.header_mut().counter.set(counter);
    }

    /// The payload, writable (plaintext before sealing, after opening).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }

    /// Associated data, payload and tag at once, as in-place sealing and opening need them.
    pub fn split_mut(&mut self) -> (&[u8; AAD_LEN], &mut [u8], &mut [u8; TAG_LEN]) {
        let bytes = self.buffer.as_mut();
        let len = bytes.len();
        let (head, rest) = bytes.split_at_mut(HEADER_LEN);
        let (payload, tag) = rest.split_at_mut(len - OVERHEAD);
        let aad = (&head[..AAD_LEN])
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        let tag = tag.try_into().unwrap_or_else(|_| unreachable!());
        (aad, payload, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data, odd epoch, lane 3, counter 0x0102030405060708, label 0xdeadbeef, 2-byte payload.
    const PACKET: [u8; 34] = [
        0x01, 0x01, 0x01, 0x03, // version, type, flags, lane
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // counter
        0xde, 0xad, 0xbe, 0xef, // label
        0xaa, 0xbb, // payload
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, // tag
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    ];

    #[test]
    fn parses_fixed_bytes() {
        let p = DataPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert_eq!(p.packet_type(), PacketType::Data);
        assert_eq!(p.key_epoch(), KeyEpoch::Odd);
        assert_eq!(p.lane(), 3);
        assert_eq!(p.counter(), 0x0102_0304_0506_0708);
        assert_eq!(p.label(), 0xdead_beef);
        assert_eq!(p.aad(), &PACKET[..12]);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert_eq!(p.tag()[0], 0x10);
        assert_eq!(p.tag()[15], 0x1f);
        assert_eq!(
            p.header(),
            &DataHeader::new(
                PacketType::Data,
                KeyEpoch::Odd,
                3,
                0x0102_0304_0506_0708,
                0xdead_beef
            )
        );
    }

    #[test]
    fn emits_fixed_bytes() {
        let mut buf = [0u8; 34];
        buf[16..18].copy_from_slice(&[0xaa, 0xbb]);
        buf[18..].copy_from_slice(&PACKET[18..]);
        let mut p = DataPacket::new_unchecked(&mut buf[..]);
        p.set_header(&DataHeader::new(
            PacketType::Data,
            KeyEpoch::Odd,
            3,
            0x0102_0304_0506_0708,
            0xdead_beef,
        ));
        assert_eq!(buf, PACKET);

        let header = DataHeader::new(PacketType::Probe, KeyEpoch::Even, 0xff, 7, 9);
        assert_eq!(
            header.as_bytes(),
            &[1, 2, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9]
        );
    }

    #[test]
    fn label_rewrite_touches_only_the_label() {
        let mut buf = PACKET;
        let mut p = DataPacket::new_checked(&mut buf[..]).unwrap();
        p.set_label(0x0102_0304);
        assert_eq!(p.label(), 0x0102_0304);
        assert_eq!(&buf[..12], &PACKET[..12]);
        assert_eq!(&buf[12..16], &[1, 2, 3, 4]);
        assert_eq!(&buf[16..], &PACKET[16..]);
    }

    #[test]
    fn split_covers_the_buffer() {
        let mut buf = PACKET;
        let mut p = DataPacket::new_checked(&mut buf[..]).unwrap();
        let (aad, payload, tag) = p.split_mut();
        assert_eq!(aad, &PACKET[..12]);
        assert_eq!(payload, &[0xaa, 0xbb]);
        assert_eq!(&tag[..], &PACKET[18..]);
    }

    #[test]
    fn empty_payload_is_allowed() {
        let p = DataPacket::new_checked(&PACKET[..16]).map(|_| ());
        assert_eq!(p, Err(WireError::Truncated { need: 32, have: 16 }));
        let mut buf = [0u8; OVERHEAD];
        buf[..16].copy_from_slice(&PACKET[..16]);
        let p = DataPacket::new_checked(&buf[..]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn rejects_malformed() {
        let check = |bytes: &[u8]| DataPacket::new_checked(bytes).map(|_| ());
        assert_eq!(
            check(&PACKET[..31]),
            Err(WireError::Truncated { need: 32, have: 31 })
        );
        assert_eq!(check(&[]), Err(WireError::Truncated { need: 32, have: 0 }));

        let mut bad = PACKET;
        bad[0] = 2;
        assert_eq!(check(&bad), Err(WireError::Version(2)));
        let mut bad = PACKET;
        bad[1] = 0;
        assert_eq!(check(&bad), Err(WireError::UnknownType(0)));
        let mut bad = PACKET;
        bad[1] = 3;
        assert_eq!(check(&bad), Err(WireError::UnknownType(3)));
        for bit in 1..8 {
            let mut bad = PACKET;
            bad[2] |= 1 << bit;
            assert_eq!(check(&bad), Err(WireError::Reserved), "flag bit {bit}");
        }
    }

    #[test]
    fn epoch_flips() {
        assert_eq!(KeyEpoch::Even.next(), KeyEpoch::Odd);
        assert_eq!(KeyEpoch::Odd.next(), KeyEpoch::Even);
        assert_eq!(KeyEpoch::from_flags(KeyEpoch::Odd.flag()), KeyEpoch::Odd);
        assert_eq!(KeyEpoch::from_flags(0xfe), KeyEpoch::Even);
    }

    #[test]
    fn type_round_trips() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(PacketType::from(v)), v);
        }
    }
}
