//! TCP MSS clamping: a SYN or SYN-ACK whose MSS option promises more than the route's
//! tether carries is rewritten in place, so the TCP connection never sends a segment too big
//! for it in steady state. The checksum is updated incrementally (RFC 1624), so the rest of
//! the packet is not read.
//!
//! [`clamp`] takes untrusted bytes (a TUN read, a packet just decrypted): anything that is
//! not a well-formed TCP SYN is left alone and said why; nothing here panics or allocates.

use crate::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_TCP};

/// TCP header without options.
const TCP_HEADER_LEN: usize = 20;
/// TCP SYN flag.
const SYN: u8 = 0x02;
/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// What [`clamp`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Not TCP, not a SYN, or a later IPv4 fragment: nothing to do.
    NotSyn,
    /// A SYN whose MSS (or lack of one) already fits.
    Fits,
    /// The MSS option was lowered from `from` to `to`.
    Clamped {
        /// The MSS the sender offered.
        from: u16,
        /// The MSS written.
        to: u16,
    },
}

/// Why a SYN was left alone as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MssError {
    /// Shorter than its headers claim, or not IPv4/IPv6.
    #[error("TCP SYN truncated or not an IP packet")]
    Truncated,
    /// A TCP data offset or option length that does not fit the header.
    #[error("TCP header or option length invalid")]
    Options,
}

/// The largest MSS a TCP connection may use over an inner MTU of `mtu` bytes: the MTU less
/// the IP and TCP headers without options.
pub const fn mss_for(mtu: usize, ipv6: bool) -> u16 {
    let headers = TCP_HEADER_LEN
        + if ipv6 {
            IPV6_HEADER_LEN
        } else {
            IPV4_HEADER_LEN
        };
    let m = mtu.saturating_sub(headers);
    if m > u16::MAX as usize {
        u16::MAX
    } else {
        m as u16
    }
}

/// Where the TCP header of `packet` starts, if it is a TCP packet carrying one.
fn tcp_offset(packet: &[u8]) -> Result<Option<(usize, usize, bool)>, MssError> {
    let first = *packet.first().ok_or(MssError::Truncated)?;
    match first >> 4 {
        4 => {
            if packet.len() < IPV4_HEADER_LEN {
                return Err(MssError::Truncated);
            }
            let ihl = usize::from(first & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            if ihl < IPV4_HEADER_LEN || total < ihl || total > packet.len() {
                return Err(MssError::Truncated);
            }
            let later_fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff != 0;
            if packet[9] != PROTO_TCP || later_fragment {
                return Ok(None);
            }
            Ok(Some((ihl, total, false)))
        }
        6 => {
            if packet.len() < IPV6_HEADER_LEN {
                return Err(MssError::Truncated);
            }
            let total = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            if total > packet.len() {
                return Err(MssError::Truncated);
            }
            // Extension headers before TCP are rare on a SYN; such a packet is not clamped.
            if packet[6] != PROTO_TCP {
                return Ok(None);
            }
            Ok(Some((IPV6_HEADER_LEN, total, true)))
        }
        _ => Err(MssError::Truncated),
    }
}

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) in `packet` to what an inner MTU of
/// `mtu` bytes carries, fixing the TCP checksum.
pub fn clamp(packet: &mut [u8], mtu: usize) -> Result<Clamp, MssError> {
    let Some((at, total, ipv6)) = tcp_offset(packet)? else {
        return Ok(Clamp::NotSyn);
    };
    let tcp = &mut packet[at..total];
    if tcp.len() < TCP_HEADER_LEN {
        return Err(MssError::Truncated);
    }
    if tcp[13] & SYN == 0 {
        return Ok(Clamp::NotSyn);
    }
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset < TCP_HEADER_LEN || data_offset > tcp.len() {
        return Err(MssError::Options);
    }
    let limit = mss_for(mtu, ipv6);
    let mut i = TCP_HEADER_LEN;
    while i < data_offset {
        match tcp[i] {
            OPT_END => break,
            OPT_NOP => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1).ok_or(MssError::Options)?);
                if len < 2 || i + len > data_offset {
                    return Err(MssError::Options);
                }
                if kind == OPT_MSS {
                    if len != 4 {
                        return Err(MssError::Options);
                    }
                    let from = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if from <= limit {
                        return Ok(Clamp::Fits);
                    }
                    rewrite(tcp, i + 2, &limit.to_be_bytes());
                    return Ok(Clamp::Clamped { from, to: limit });
                }
                i += len;
            }
        }
    }
    // No MSS option: the peer assumes 536 (IPv4) or 1,220 (IPv6), which fit any tether.
    Ok(Clamp::Fits)
}

/// Writes `new` at `at` in a TCP segment and updates its checksum (bytes 16–17) for the
/// change, per RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` over the 16-bit words touched.
fn rewrite(tcp: &mut [u8], at: usize, new: &[u8; 2]) {
    // The words the field touches, aligned to the segment start (an option may sit at an
    // odd offset, straddling two words).
    let start = at & !1;
    let end = (at + 2 + 1) & !1;
    let word = |b: &[u8], k: usize| u32::from(u16::from_be_bytes([b[k], b[k + 1]]));
    let mut sum = u32::from(!u16::from_be_bytes([tcp[16], tcp[17]]));
    for k in (start..end).step_by(2) {
        sum += word(tcp, k) ^ 0xffff;
    }
    tcp[at..at + 2].copy_from_slice(new);
    for k in (start..end).step_by(2) {
        sum += word(tcp, k);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::vnet::checksum::{add, fold, pseudo_header};

    /// Whether a TCP segment's checksum verifies (the folded sum over it and its
    /// pseudo-header is all ones).
    pub(crate) fn tcp_checksum_ok(packet: &[u8]) -> bool {
        let (at, total, _) = tcp_offset(packet).unwrap().unwrap();
        let (src, dst) = addrs(packet);
        let sum = add(
            pseudo_header(src, dst, PROTO_TCP, total - at),
            &packet[at..total],
        );
        fold(sum) == 0xffff
    }

    fn addrs(p: &[u8]) -> (IpAddr, IpAddr) {
        let v = crate::packet::InnerPacket::parse(p).unwrap();
        (v.source(), v.destination())
    }

    /// A real SYN: IPv4 10.0.0.1:40000 → 10.0.0.2:5201 with the options Linux sends (MSS
    /// 1460, SACK permitted, timestamps, NOP, window scale 7), checksums filled in.
    pub(crate) fn syn_v4(mss: u16, flags: u8) -> Vec<u8> {
        syn_v4_between([10, 0, 0, 1], [10, 0, 0, 2], mss, flags)
    }

    /// [`syn_v4`] between other addresses.
    pub(crate) fn syn_v4_between(src: [u8; 4], dst: [u8; 4], mss: u16, flags: u8) -> Vec<u8> {
        let opts: [u8; 20] = [
            2,
            4,
            (mss >> 8) as u8,
            mss as u8,
            4,
            2,
            8,
            10,
            0,
            0,
            0x12,
            0x34,
            0,
            0,
            0,
            0,
            1,
            3,
            3,
            7,
        ];
        let mut p = vec![
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0]);
        p.extend_from_slice(&[0xa0, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        p.extend_from_slice(&opts);
        finish(&mut p);
        p
    }

    /// The same SYN over IPv6, with the MSS option after a NOP (at an odd offset).
    fn syn_v6(mss: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 32, 6, 64];
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x80, SYN, 0xfa, 0xf0, 0, 0, 0, 0]);
        p.extend_from_slice(&[1, 2, 4, (mss >> 8) as u8, mss as u8, 1, 1, 0, 0, 0, 0, 0]);
        finish(&mut p);
        p
    }

    fn finish(p: &mut [u8]) {
        let (at, total, v6) = tcp_offset(p).unwrap().unwrap();
        if !v6 {
            crate::vnet::checksum::set_ipv4_header(&mut p[..at]);
        }
        let (src, dst) = addrs(p);
        p[at + 16] = 0;
        p[at + 17] = 0;
        let sum = add(
            pseudo_header(src, dst, PROTO_TCP, total - at),
            &p[at..total],
        );
        p[at + 16..at + 18].copy_from_slice(&(!fold(sum)).to_be_bytes());
    }

    #[test]
    fn syn_and_syn_ack_are_clamped_with_a_valid_checksum() {
        for flags in [SYN, SYN | 0x10] {
            let mut p = syn_v4(1460, flags);
            assert!(tcp_checksum_ok(&p));
            // A 1,280-byte IPv4 underlay: 1,152 bytes of inner MTU.
            let r = clamp(&mut p, 1152).unwrap();
            assert_eq!(
                r,
                Clamp::Clamped {
                    from: 1460,
                    to: 1112
                }
            );
            assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1112, "1,152 − 40");
            assert!(tcp_checksum_ok(&p), "checksum fixed incrementally");
            // The result is what a sender offering 1,112 in the first place would send.
            assert_eq!(p, syn_v4(1112, flags));
            assert_eq!(clamp(&mut p, 1152).unwrap(), Clamp::Fits, "idempotent");
        }
    }

    #[test]
    fn ipv6_mss_at_an_odd_offset_is_clamped() {
        let mut p = syn_v6(1440);
        assert!(tcp_checksum_ok(&p));
        let r = clamp(&mut p, 1300).unwrap();
        assert_eq!(
            r,
            Clamp::Clamped {
                from: 1440,
                to: 1240
            }
        );
        assert!(tcp_checksum_ok(&p));
        assert_eq!(p, syn_v6(1240));
    }

    #[test]
    fn what_is_not_a_syn_is_left_alone() {
        let mut ack = syn_v4(1460, 0x10);
        let before = ack.clone();
        assert_eq!(clamp(&mut ack, 1000).unwrap(), Clamp::NotSyn);
        assert_eq!(ack, before);
        let mut small = syn_v4(1000, SYN);
        assert_eq!(clamp(&mut small, 1352).unwrap(), Clamp::Fits);
        let mut udp = syn_v4(1460, SYN);
        udp[9] = 17;
        assert_eq!(clamp(&mut udp, 1000).unwrap(), Clamp::NotSyn);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), mtu in 0usize..2000) {
            let _ = clamp(&mut bytes, mtu);
        }
    }

    #[test]
    fn malformed_syns_are_refused_and_never_panic() {
        let good = syn_v4(1460, SYN);
        // An option length running past the header, a zero option length, a bad offset.
        let mut p = good.clone();
        p[41] = 40;
        assert_eq!(clamp(&mut p, 1000), Err(MssError::Options));
        let mut p = good.clone();
        p[41] = 0;
        assert_eq!(clamp(&mut p, 1000), Err(MssError::Options));
        let mut p = good.clone();
        p[32] = 0xf0;
        assert_eq!(clamp(&mut p, 1000), Err(MssError::Options));
        // Every truncation and every single-byte corruption.
        for n in 0..good.len() {
            let mut t = good[..n].to_vec();
            let _ = clamp(&mut t, 1000);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 2, 4, 0x45, 0x60, 0xff] {
                let mut t = good.clone();
                t[i] = v;
                let _ = clamp(&mut t, 1000);
            }
        }
    }
}
