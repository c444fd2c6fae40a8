//! The `virtio_net_hdr` that precedes every packet on a TUN queue opened with
//! `IFF_VNET_HDR`, and what the data plane does with it: split the kernel's GSO
//! super-packets into wire-sized segments ([`segment`]) and merge received TCP segments
//! back into super-packets for the kernel ([`coalesce`]), so one TUN read or write moves up
//! to 64 KiB.
//!
//! The header is 10 bytes, host byte order (little-endian on every host this runs on):
//! `flags, gso_type, hdr_len, gso_size, csum_start, csum_offset`.

pub mod checksum;
pub mod coalesce;
pub mod icmp;
pub mod mss;
pub mod segment;

/// Length of the header the TUN queue is configured for (`TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only
/// the pseudo-header sum and must be completed over `csum_start..`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum has been verified.
pub const F_DATA_VALID: u8 = 2;

/// What kind of super-packet a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    /// A single packet.
    None,
    /// TCP over IPv4, split every `gso_size` payload bytes.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP, split every `gso_size` payload bytes into datagrams of their own (USO).
    UdpL4,
}

/// Why a header or super-packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VnetError {
    /// Fewer bytes than the header, or than the headers it announces.
    #[error("truncated virtio-net header or packet")]
    Truncated,
    /// A GSO type this data plane never enables (UFO, ECN-marked TSO).
    #[error("unsupported GSO type {0:#x}")]
    GsoType(u8),
    /// Header fields that do not describe the packet (checksum offsets, sizes).
    #[error("virtio-net header disagrees with the packet")]
    Inconsistent,
    /// The caller's output area cannot hold every segment.
    #[error("no room for {0} segments")]
    NoRoom(usize),
}

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHeader {
    /// `F_*` bits.
    pub flags: u8,
    /// The GSO type.
    pub gso_type: GsoType,
    /// Length of the IP and transport headers of each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHeader {
    /// A header for a single packet whose checksums are complete.
    pub const NONE: Self = Self {
        flags: 0,
        gso_type: GsoType::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Parses the first [`VNET_HDR_LEN`] bytes of a TUN read.
    pub fn parse(bytes: &[u8]) -> Result<Self, VnetError> {
        let b = bytes.get(..VNET_HDR_LEN).ok_or(VnetError::Truncated)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let gso_type = match b[1] {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            other => return Err(VnetError::GsoType(other)),
        };
        Ok(Self {
            flags: b[0],
            gso_type,
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `out`.
    pub fn emit(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = match self.gso_type {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
        };
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips() {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GsoType::TcpV6,
            hdr_len: 74,
            gso_size: 1388,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(b, [1, 4, 74, 0, 0x6c, 5, 40, 0, 16, 0]);
        assert_eq!(VnetHeader::parse(&b), Ok(h));
        assert_eq!(VnetHeader::parse(&b[..9]), Err(VnetError::Truncated));
        b[1] = 3;
        assert_eq!(VnetHeader::parse(&b), Err(VnetError::GsoType(3)));
    }

    proptest! {
        #[test]
        fn random_headers_parse_or_fail_cleanly(bytes in proptest::array::uniform10(any::<u8>())) {
            if let Ok(h) = VnetHeader::parse(&bytes) {
                let mut out = [0u8; VNET_HDR_LEN];
                h.emit(&mut out);
                prop_assert_eq!(out, bytes);
            }
        }
    }
}
