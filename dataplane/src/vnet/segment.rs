//! Splitting a GSO super-packet from the TUN queue into wire-sized packets, each laid out
//! with the room around it that the packet path needs (data header in front, tag behind),
//! so the segments can be sealed in place and sent with one UDP GSO call.
//!
//! This is the one copy on the egress path, and the one the kernel would otherwise have
//! made itself: every segment needs its own IP and transport header.

use std::net::IpAddr;

use super::checksum::{add, fold, pseudo_header, set_ipv4_header};
use super::{F_NEEDS_CSUM, GsoType, VnetError, VnetHeader};
use crate::packet::{PROTO_TCP, PROTO_UDP};

/// TCP flag bits a segment other than the last must not carry.
const TCP_FIN_PSH: u8 = 0x01 | 0x08;
/// TCP CWR: only the first segment carries it.
const TCP_CWR: u8 = 0x80;

/// Where segments go in the caller's output area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLayout {
    /// Bytes left free in front of each segment.
    pub headroom: usize,
    /// Distance from one segment to the next. Segments never overlap (a segment fits in
    /// the stride); slots may (the caller's tailroom can reach into the next slot's
    /// headroom, as when datagrams start after a constant offset and sit back to back).
    pub stride: usize,
}

/// Completes a partial checksum in place (`F_NEEDS_CSUM` on a single packet): the field
/// holds the pseudo-header sum, the rest is summed from `csum_start`.
pub fn finish_checksum(hdr: &VnetHeader, packet: &mut [u8]) -> Result<(), VnetError> {
    if hdr.flags & F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > packet.len() {
        return Err(VnetError::Inconsistent);
    }
    let c = !fold(add(0, &packet[start..]));
    packet[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The payload bytes per segment and the number of segments `hdr` makes of `packet`.
pub fn count(hdr: &VnetHeader, packet: &[u8]) -> Result<usize, VnetError> {
    let (hlen, _) = headers(hdr, packet)?;
    let mss = usize::from(hdr.gso_size);
    Ok((packet.len() - hlen).div_ceil(mss).max(1))
}

/// The length of the largest segment `hdr` makes of `packet`: headers plus `gso_size`.
pub fn max_segment_len(hdr: &VnetHeader, packet: &[u8]) -> Result<usize, VnetError> {
    let (hlen, _) = headers(hdr, packet)?;
    Ok(hlen + usize::from(hdr.gso_size))
}

/// Lengths of the IP + transport headers and of the transport header alone.
fn headers(hdr: &VnetHeader, packet: &[u8]) -> Result<(usize, usize), VnetError> {
    let start = usize::from(hdr.csum_start);
    if hdr.gso_size == 0 || start < 20 {
        return Err(VnetError::Inconsistent);
    }
    let thl = match hdr.gso_type {
        GsoType::TcpV4 | GsoType::TcpV6 => {
            let off = *packet.get(start + 12).ok_or(VnetError::Truncated)?;
            usize::from(off >> 4) * 4
        }
        GsoType::UdpL4 => 8,
        GsoType::None => return Err(VnetError::Inconsistent),
    };
    if thl < 8 || start + thl > packet.len() {
        return Err(VnetError::Truncated);
    }
    let version = packet[0] >> 4;
    if version == 4 && usize::from(packet[0] & 0x0f) * 4 != start {
        return Err(VnetError::Inconsistent);
    }
    let ok = match hdr.gso_type {
        GsoType::TcpV4 => version == 4,
        GsoType::TcpV6 => version == 6,
        _ => version == 4 || version == 6,
    };
    if !ok {
        return Err(VnetError::Inconsistent);
    }
    Ok((start + thl, thl))
}

/// Splits the super-packet `packet` (what follows the virtio-net header) into segments at
/// `out[k * stride + headroom..]`, writes each one's length into `lens[k]` and returns the
/// number of segments. Each segment gets its own IP header (length, IPv4 id and header
/// checksum) and transport header (TCP sequence number and flags, UDP length) with a
/// complete checksum.
pub fn segment(
    hdr: &VnetHeader,
    packet: &[u8],
    out: &mut [u8],
    layout: SegmentLayout,
    lens: &mut [u16],
) -> Result<usize, VnetError> {
    let (hlen, thl) = headers(hdr, packet)?;
    let start = usize::from(hdr.csum_start);
    let mss = usize::from(hdr.gso_size);
    let payload = &packet[hlen..];
    let n = payload.len().div_ceil(mss).max(1);
    if n > lens.len()
        || (n - 1) * layout.stride + layout.headroom + hlen + mss.min(payload.len()) > out.len()
        || hlen + mss > layout.stride
    {
        return Err(VnetError::NoRoom(n));
    }
    let v4 = packet[0] >> 4 == 4;
    let (src, dst) = addresses(packet, v4)?;
    let proto = if matches!(hdr.gso_type, GsoType::UdpL4) {
        PROTO_UDP
    } else {
        PROTO_TCP
    };
    let ip_id = u16::from_be_bytes([packet[4], packet[5]]);
    let seq = u32::from_be_bytes([
        packet[start + 4],
        packet[start + 5],
        packet[start + 6],
        packet[start + 7],
    ]);

    for k in 0..n {
        let chunk = &payload[(k * mss).min(payload.len())..((k + 1) * mss).min(payload.len())];
        let len = hlen + chunk.len();
        let base = k * layout.stride + layout.headroom;
        let seg = &mut out[base..base + len];
        seg[..hlen].copy_from_slice(&packet[..hlen]);
        seg[hlen..].copy_from_slice(chunk);

        if v4 {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&ip_id.wrapping_add(k as u16).to_be_bytes());
            set_ipv4_header(&mut seg[..start]);
        } else {
            seg[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
        let t = start;
        let csum_field = if proto == PROTO_TCP {
            let s = seq.wrapping_add((k * mss) as u32);
            seg[t + 4..t + 8].copy_from_slice(&s.to_be_bytes());
            if k + 1 < n {
                seg[t + 13] &= !TCP_FIN_PSH;
            }
            if k > 0 {
                seg[t + 13] &= !TCP_CWR;
            }
            t + 16
        } else {
            seg[t + 4..t + 6].copy_from_slice(&((thl + chunk.len()) as u16).to_be_bytes());
            t + 6
        };
        seg[csum_field..csum_field + 2].fill(0);
        let sum = add(pseudo_header(src, dst, proto, len - t), &seg[t..]);
        let mut c = !fold(sum);
        if proto == PROTO_UDP && c == 0 {
            // UDP sends a computed zero as all ones (zero means "no checksum").
            c = 0xffff;
        }
        seg[csum_field..csum_field + 2].copy_from_slice(&c.to_be_bytes());
        lens[k] = len as u16;
    }
    Ok(n)
}

fn addresses(packet: &[u8], v4: bool) -> Result<(IpAddr, IpAddr), VnetError> {
    if v4 {
        let b = packet.get(..20).ok_or(VnetError::Truncated)?;
        Ok((
            IpAddr::from([b[12], b[13], b[14], b[15]]),
            IpAddr::from([b[16], b[17], b[18], b[19]]),
        ))
    } else {
        let b = packet.get(..40).ok_or(VnetError::Truncated)?;
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&b[8..24]);
        d.copy_from_slice(&b[24..40]);
        Ok((IpAddr::from(s), IpAddr::from(d)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vnet::checksum::checksum;
    use proptest::prelude::*;

    /// A TCP/IPv4 packet with the given sequence number, flags and payload, checksums set
    /// (the TCP one complete unless `partial`, then the pseudo-header sum only).
    pub(crate) fn tcp4(seq: u32, flags: u8, payload: &[u8], partial: bool) -> Vec<u8> {
        let len = 40 + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 9, 0, 1]);
        p[16..20].copy_from_slice(&[10, 9, 0, 2]);
        set_ipv4_header(&mut p[..20]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&77u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p[40..].copy_from_slice(payload);
        let pseudo = pseudo_header(
            IpAddr::from([10, 9, 0, 1]),
            IpAddr::from([10, 9, 0, 2]),
            PROTO_TCP,
            len - 20,
        );
        let c = if partial {
            fold(pseudo)
        } else {
            !fold(add(pseudo, &p[20..]))
        };
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// Whether the TCP or UDP checksum of an IPv4 packet verifies.
    pub(crate) fn transport_checksum_ok(p: &[u8]) -> bool {
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let src = IpAddr::from([p[12], p[13], p[14], p[15]]);
        let dst = IpAddr::from([p[16], p[17], p[18], p[19]]);
        fold(add(pseudo_header(src, dst, p[9], p.len() - ihl), &p[ihl..])) == 0xffff
    }

    fn gso_hdr(mss: u16) -> VnetHeader {
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: 40,
            gso_size: mss,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[test]
    fn splits_a_tcp_super_packet() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let sp = tcp4(1000, 0x18, &payload, true);
        let layout = SegmentLayout {
            headroom: 16,
            stride: 1500,
        };
        let mut out = vec![0u8; 3 * 1500];
        let mut lens = [0u16; 8];
        let n = segment(&gso_hdr(1400), &sp, &mut out, layout, &mut lens).unwrap();
        assert_eq!(n, 3);
        assert_eq!(&lens[..3], &[1440, 1440, 240]);
        let mut joined = Vec::new();
        for k in 0..n {
            let s = &out[k * 1500 + 16..][..usize::from(lens[k])];
            assert_eq!(checksum(&s[..20]), 0, "IPv4 header checksum of segment {k}");
            assert!(transport_checksum_ok(s), "TCP checksum of segment {k}");
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + 1400 * k as u32);
            assert_eq!(s[33] & 0x08 != 0, k == 2, "PSH only on the last");
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0x1234 + k as u16);
            joined.extend_from_slice(&s[40..]);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let sp = tcp4(1, 0x10, &[7; 3000], true);
        let mut out = vec![0u8; 1500];
        let mut lens = [0u16; 8];
        let layout = SegmentLayout {
            headroom: 16,
            stride: 1500,
        };
        assert_eq!(
            segment(&gso_hdr(1400), &sp, &mut out, layout, &mut lens),
            Err(VnetError::NoRoom(3))
        );
        let mut h = gso_hdr(0);
        assert_eq!(
            segment(&h, &sp, &mut out, layout, &mut lens),
            Err(VnetError::Inconsistent)
        );
        h.gso_size = 1400;
        assert!(segment(&h, &sp[..30], &mut out, layout, &mut lens).is_err());
    }

    #[test]
    fn finishes_a_partial_checksum() {
        let mut p = tcp4(5, 0x10, b"hello", true);
        assert!(!transport_checksum_ok(&p));
        finish_checksum(&gso_hdr(1400), &mut p).unwrap();
        assert!(transport_checksum_ok(&p));
    }

    proptest! {
        #[test]
        fn segments_carry_the_payload_in_order(len in 1usize..20_000, mss in 400u16..1500) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let sp = tcp4(0xffff_f000, 0x18, &payload, true);
            let stride = 16 + 40 + usize::from(mss) + 16;
            let layout = SegmentLayout { headroom: 16, stride };
            let mut out = vec![0u8; 64 * stride];
            let mut lens = [0u16; 64];
            let n = segment(&gso_hdr(mss), &sp, &mut out, layout, &mut lens).unwrap();
            prop_assert_eq!(n, len.div_ceil(usize::from(mss)));
            let mut joined = Vec::new();
            for k in 0..n {
                let s = &out[k * stride + 16..][..usize::from(lens[k])];
                prop_assert!(transport_checksum_ok(s));
                prop_assert_eq!(checksum(&s[..20]), 0);
                joined.extend_from_slice(&s[40..]);
            }
            prop_assert_eq!(joined, payload);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), mss in 0u16..300, start in 0u16..80) {
            let hdr = VnetHeader { csum_start: start, gso_size: mss, ..gso_hdr(mss) };
            let mut out = vec![0u8; 4096];
            let mut lens = [0u16; 16];
            let _ = segment(&hdr, &bytes, &mut out, SegmentLayout { headroom: 16, stride: 512 }, &mut lens);
            let mut b = bytes.clone();
            let _ = finish_checksum(&hdr, &mut b);
        }
    }
}
