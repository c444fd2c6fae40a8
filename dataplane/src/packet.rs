//! Views of the inner IP packets that travel through the overlay: the few header fields the
//! data plane needs (addresses, protocol, ports) and the flow hash that keeps a flow on one
//! next hop.
//!
//! [`InnerPacket::parse`] takes untrusted bytes (a TUN read, or a packet just decrypted) and
//! either returns a view whose accessors cannot panic or a [`PacketError`]. Nothing is
//! copied: the view borrows the buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Why bytes are not an IP packet the overlay carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than the header needs.
    #[error("packet truncated")]
    Truncated,
    /// Neither IPv4 nor IPv6.
    #[error("IP version {0} is not carried")]
    Version(u8),
    /// An IPv4 header length below 20 bytes or past the packet.
    #[error("bad IPv4 header length")]
    HeaderLength,
    /// The total or payload length field disagrees with the bytes.
    #[error("IP length field disagrees with the packet")]
    Length,
}

/// A parsed inner IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerPacket<'a> {
    bytes: &'a [u8],
    header_len: usize,
    total_len: usize,
}

impl<'a> InnerPacket<'a> {
    /// Checks version, header length and total length; trailing bytes past the IP length
    /// (link padding) are allowed and ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        let first = *bytes.first().ok_or(PacketError::Truncated)?;
        match first >> 4 {
            4 => {
                if bytes.len() < IPV4_HEADER_LEN {
                    return Err(PacketError::Truncated);
                }
                let header_len = usize::from(first & 0x0f) * 4;
                if header_len < IPV4_HEADER_LEN || header_len > bytes.len() {
                    return Err(PacketError::HeaderLength);
                }
                let total_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
                if total_len < header_len || total_len > bytes.len() {
                    return Err(PacketError::Length);
                }
                Ok(Self {
                    bytes,
                    header_len,
                    total_len,
                })
            }
            6 => {
                if bytes.len() < IPV6_HEADER_LEN {
                    return Err(PacketError::Truncated);
                }
                let payload = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
                let total_len = IPV6_HEADER_LEN + payload;
                if total_len > bytes.len() {
                    return Err(PacketError::Length);
                }
                Ok(Self {
                    bytes,
                    header_len: IPV6_HEADER_LEN,
                    total_len,
                })
            }
            v => Err(PacketError::Version(v)),
        }
    }

    /// 4 or 6.
    pub fn version(&self) -> u8 {
        self.bytes[0] >> 4
    }

    /// Length the IP header claims for the whole packet.
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// Length of the IP header (IPv6: the fixed header only).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The source address.
    pub fn source(&self) -> IpAddr {
        if self.version() == 4 {
            IpAddr::V4(v4(&self.bytes[12..16]))
        } else {
            IpAddr::V6(v6(&self.bytes[8..24]))
        }
    }

    /// The destination address.
    pub fn destination(&self) -> IpAddr {
        if self.version() == 4 {
            IpAddr::V4(v4(&self.bytes[16..20]))
        } else {
            IpAddr::V6(v6(&self.bytes[24..40]))
        }
    }

    /// The transport protocol (IPv6: the first next-header value).
    pub fn protocol(&self) -> u8 {
        if self.version() == 4 {
            self.bytes[9]
        } else {
            self.bytes[6]
        }
    }

    /// Source and destination ports of TCP and UDP, when the first fragment carries them.
    pub fn ports(&self) -> Option<(u16, u16)> {
        let proto = self.protocol();
        if proto != PROTO_TCP && proto != PROTO_UDP {
            return None;
        }
        if self.version() == 4 {
            // Later fragments carry no transport header.
            let frag = u16::from_be_bytes([self.bytes[6], self.bytes[7]]) & 0x1fff;
            if frag != 0 {
                return None;
            }
        }
        let t = self.bytes.get(self.header_len..self.header_len + 4)?;
        Some((
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ))
    }

    /// A hash of the flow's 5-tuple (addresses, protocol and, when present, ports); every
    /// packet of one flow hashes the same, so a flow keeps to one next hop and is never
    /// reordered by the split.
    pub fn flow_hash(&self) -> u32 {
        let (src, dst) = if self.version() == 4 {
            (&self.bytes[12..16], &self.bytes[16..20])
        } else {
            (&self.bytes[8..24], &self.bytes[24..40])
        };
        let (sp, dp) = self.ports().unwrap_or((0, 0));
        let mut h = FlowHasher::new();
        h.write(src);
        h.write(dst);
        h.write_u64(u64::from(self.protocol()) << 32 | u64::from(sp) << 16 | u64::from(dp));
        h.finish32()
    }
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ipv6Addr::from(a)
}

/// A small multiply-rotate hash (FxHash family) for flow tuples and table keys: the keys
/// come from inner packets, and a flood of colliding keys can at worst unbalance a split,
/// never break a table, so a keyed hash is not worth its cost per packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FlowHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(0)
    }

    /// Mixes a word in.
    #[inline]
    pub fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }

    /// Mixes bytes in, eight at a time.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ (rest.len() as u64) << 59);
        }
    }

    /// The hash, its high half folded into the low.
    #[inline]
    pub fn finish32(&self) -> u32 {
        // A final avalanche so that nearby tuples spread over the weight range.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        (x ^ (x >> 32)) as u32
    }
}

impl std::hash::Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        u64::from(self.finish32()) | self.0 << 32
    }

    fn write(&mut self, bytes: &[u8]) {
        FlowHasher::write(self, bytes);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        FlowHasher::write_u64(self, v);
    }
}

/// Builds [`FlowHasher`]s for the data plane's hash maps.
pub type FlowBuildHasher = std::hash::BuildHasherDefault<FlowHasher>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 UDP packet with `payload` bytes of payload (checksums not filled).
    pub(crate) fn udp4(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        payload: usize,
    ) -> Vec<u8> {
        let total = 28 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    #[test]
    fn parses_ipv4_udp() {
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 10);
        let v = InnerPacket::parse(&p).unwrap();
        assert_eq!(v.version(), 4);
        assert_eq!(v.source(), IpAddr::from([10, 0, 0, 1]));
        assert_eq!(v.destination(), IpAddr::from([10, 0, 0, 2]));
        assert_eq!(v.protocol(), PROTO_UDP);
        assert_eq!(v.ports(), Some((1234, 80)));
        assert_eq!(v.total_len(), 38);
    }

    #[test]
    fn parses_ipv6() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&8u16.to_be_bytes());
        p[6] = PROTO_TCP;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        p[40..42].copy_from_slice(&443u16.to_be_bytes());
        p[42..44].copy_from_slice(&5555u16.to_be_bytes());
        let v = InnerPacket::parse(&p).unwrap();
        assert_eq!(v.source(), "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(v.destination(), "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(v.ports(), Some((443, 5555)));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(InnerPacket::parse(&[]), Err(PacketError::Truncated));
        assert_eq!(InnerPacket::parse(&[0x45; 10]), Err(PacketError::Truncated));
        assert_eq!(
            InnerPacket::parse(&[0x20; 40]),
            Err(PacketError::Version(2))
        );
        let mut p = udp4([1; 4], [2; 4], 1, 2, 4);
        p[0] = 0x44;
        assert_eq!(InnerPacket::parse(&p), Err(PacketError::HeaderLength));
        let mut p = udp4([1; 4], [2; 4], 1, 2, 4);
        p[3] += 1;
        assert_eq!(InnerPacket::parse(&p), Err(PacketError::Length));
    }

    #[test]
    fn flow_hash_follows_the_tuple() {
        let a = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 10);
        let b = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, 500);
        let c = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1001, 80, 10);
        let h = |p: &[u8]| InnerPacket::parse(p).unwrap().flow_hash();
        assert_eq!(h(&a), h(&b), "same flow, other length");
        assert_ne!(h(&a), h(&c), "other source port");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(p) = InnerPacket::parse(&bytes) {
                let _ = (p.source(), p.destination(), p.ports(), p.flow_hash());
                prop_assert!(p.total_len() <= bytes.len());
            }
        }
    }
}
