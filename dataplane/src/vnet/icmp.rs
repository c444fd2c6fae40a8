//! ICMP "fragmentation needed" (IPv4, RFC 792 / RFC 1191) and ICMPv6 "packet too big"
//! (RFC 4443 §3.2) for an inner packet too big for its route's tether, written back into
//! the TUN toward the inner sender so its stack lowers its path MTU at once instead of
//! losing packets silently.
//!
//! The error comes from the packet's destination address, as if the far end's link had
//! said it: the sender's stack accepts it (the source is routed through the TUN, so reverse
//! path filters pass it) and a node's own address never appears as a source on its TUN.
//! [`too_big`] takes the untrusted packet, answers only where RFC 1122 §3.2.2 and RFC 4443
//! §2.4 allow (never to an ICMP error, a later fragment, an IPv4 packet without DF, or a
//! multicast or unspecified source), and never panics. [`RateLimit`] caps how many a worker
//! writes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::checksum::{add, checksum, fold, pseudo_header};
use crate::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, InnerPacket};

/// IP protocol number of ICMP.
const PROTO_ICMP: u8 = 1;
/// IP protocol number (next header) of ICMPv6.
const PROTO_ICMPV6: u8 = 58;
/// IPv4 "don't fragment".
const DF: u8 = 0x40;
/// Longest ICMP error, as RFC 1812 §4.3.2.3 and RFC 4443 §2.4(c) bound them.
pub const MAX_IPV4_ERROR: usize = 576;
/// Longest ICMPv6 error: the IPv6 minimum MTU.
pub const MAX_IPV6_ERROR: usize = 1280;
/// ICMP header: type, code, checksum, then 4 bytes (unused + next-hop MTU, or the MTU).
const ICMP_HEADER_LEN: usize = 8;
/// IPv6 links carry at least this much; a smaller "packet too big" MTU is never sent.
const IPV6_MIN_MTU: usize = 1280;

/// Why no error was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IcmpError {
    /// The packet is not a well-formed IPv4 or IPv6 packet.
    #[error("not an IP packet")]
    Malformed,
    /// The rules forbid an error for it (ICMP error, later fragment, no DF, multicast).
    #[error("no ICMP error may answer this packet")]
    NotAnswered,
    /// The output buffer is too small.
    #[error("buffer too small for the ICMP error")]
    Buffer,
}

/// Writes into `out` the error telling the sender of `packet` that at most `mtu` bytes
/// pass; returns its length.
pub fn too_big(packet: &[u8], mtu: usize, out: &mut [u8]) -> Result<usize, IcmpError> {
    let p = InnerPacket::parse(packet).map_err(|_| IcmpError::Malformed)?;
    let bytes = &packet[..p.total_len()];
    match (p.source(), p.destination()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => v4(bytes, src, dst, mtu, out),
        (IpAddr::V6(src), IpAddr::V6(dst)) => v6(bytes, src, dst, mtu, out),
        _ => Err(IcmpError::Malformed),
    }
}

fn v4(
    bytes: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    mtu: usize,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    let later_fragment = u16::from_be_bytes([bytes[6], bytes[7]]) & 0x1fff != 0;
    let ihl = usize::from(bytes[0] & 0x0f) * 4;
    let icmp_error = bytes[9] == PROTO_ICMP
        && bytes
            .get(ihl)
            .is_none_or(|t| matches!(t, 3 | 4 | 5 | 11 | 12));
    if bytes[6] & DF == 0
        || later_fragment
        || icmp_error
        || src.is_multicast()
        || src.is_broadcast()
        || src.is_unspecified()
    {
        return Err(IcmpError::NotAnswered);
    }
    let quote = bytes
        .len()
        .min(MAX_IPV4_ERROR - IPV4_HEADER_LEN - ICMP_HEADER_LEN);
    let len = IPV4_HEADER_LEN + ICMP_HEADER_LEN + quote;
    let out = out.get_mut(..len).ok_or(IcmpError::Buffer)?;
    let (ip, rest) = out.split_at_mut(IPV4_HEADER_LEN);
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, PROTO_ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&dst.octets());
    ip[16..20].copy_from_slice(&src.octets());
    super::checksum::set_ipv4_header(ip);
    let next_hop_mtu = mtu.min(usize::from(u16::MAX)) as u16;
    rest[..4].copy_from_slice(&[3, 4, 0, 0]);
    rest[4..6].fill(0);
    rest[6..8].copy_from_slice(&next_hop_mtu.to_be_bytes());
    rest[ICMP_HEADER_LEN..].copy_from_slice(&bytes[..quote]);
    let c = checksum(rest);
    rest[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(len)
}

fn v6(
    bytes: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mtu: usize,
    out: &mut [u8],
) -> Result<usize, IcmpError> {
    let icmp_error =
        bytes[6] == PROTO_ICMPV6 && bytes.get(IPV6_HEADER_LEN).is_none_or(|t| *t < 128);
    if icmp_error || src.is_multicast() || src.is_unspecified() {
        return Err(IcmpError::NotAnswered);
    }
    let quote = bytes
        .len()
        .min(MAX_IPV6_ERROR - IPV6_HEADER_LEN - ICMP_HEADER_LEN);
    let body = ICMP_HEADER_LEN + quote;
    let len = IPV6_HEADER_LEN + body;
    let out = out.get_mut(..len).ok_or(IcmpError::Buffer)?;
    let (ip, rest) = out.split_at_mut(IPV6_HEADER_LEN);
    ip[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, PROTO_ICMPV6, 64]);
    ip[4..6].copy_from_slice(&(body as u16).to_be_bytes());
    ip[8..24].copy_from_slice(&dst.octets());
    ip[24..40].copy_from_slice(&src.octets());
    // Below the IPv6 minimum a stack ignores the value (RFC 8201 §4); say the minimum.
    let mtu = mtu.max(IPV6_MIN_MTU) as u32;
    rest[..4].copy_from_slice(&[2, 0, 0, 0]);
    rest[4..8].copy_from_slice(&mtu.to_be_bytes());
    rest[ICMP_HEADER_LEN..].copy_from_slice(&bytes[..quote]);
    let sum = add(
        pseudo_header(IpAddr::V6(dst), IpAddr::V6(src), PROTO_ICMPV6, body),
        rest,
    );
    rest[2..4].copy_from_slice(&(!fold(sum)).to_be_bytes());
    Ok(len)
}

/// A token bucket: at most `per_second` errors a second, bursts of `burst`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    per_second: u32,
    burst: u32,
    tokens: u32,
    refilled: Option<Instant>,
}

impl RateLimit {
    /// A full bucket.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            tokens: burst,
            refilled: None,
        }
    }

    /// Takes a token if one is left at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let last = *self.refilled.get_or_insert(now);
        let step = Duration::from_secs(1) / self.per_second.max(1);
        let elapsed = now.saturating_duration_since(last);
        let new = (elapsed.as_nanos() / step.as_nanos().max(1)).min(u128::from(self.burst)) as u32;
        if new > 0 {
            self.tokens = (self.tokens + new).min(self.burst);
            self.refilled = Some(last + step * new);
            if self.tokens == self.burst {
                self.refilled = Some(now);
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnet::mss::tests::syn_v4;

    fn ping_v4(len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0x77, 0x77, 0, 0, 64, 1, 0, 0, 100, 80, 0, 1, 100, 80, 0, 2,
        ]);
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        if df {
            p[6] = DF;
        }
        crate::vnet::checksum::set_ipv4_header(&mut p[..20]);
        p[20] = 8; // echo request
        p
    }

    #[test]
    fn fragmentation_needed_for_a_ping_with_df() {
        // `ping -M do -s 1300`: 1,328 bytes; the tether carries 1,152.
        let ping = ping_v4(1328, true);
        let mut out = [0u8; 600];
        let n = too_big(&ping, 1152, &mut out).unwrap();
        let e = &out[..n];
        assert_eq!(n, MAX_IPV4_ERROR, "as much of the packet as 576 bytes hold");
        assert_eq!(checksum(&e[..20]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&e[20..]), 0, "ICMP checksum");
        assert_eq!(e[9], PROTO_ICMP);
        assert_eq!(
            &e[12..16],
            &[100, 80, 0, 2],
            "from the packet's destination"
        );
        assert_eq!(&e[16..20], &[100, 80, 0, 1], "to its sender");
        assert_eq!(
            &e[20..22],
            &[3, 4],
            "destination unreachable, fragmentation needed"
        );
        assert_eq!(u16::from_be_bytes([e[26], e[27]]), 1152, "next-hop MTU");
        assert_eq!(&e[28..48], &ping[..20], "the original header is quoted");
    }

    #[test]
    fn packet_too_big_for_ipv6_says_at_least_1280() {
        let mut p = vec![0u8; 1400];
        p[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 17, 64]);
        p[4..6].copy_from_slice(&(1400u16 - 40).to_be_bytes());
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        let mut out = [0u8; 1400];
        let n = too_big(&p, 1300, &mut out).unwrap();
        assert_eq!(n, MAX_IPV6_ERROR);
        let e = &out[..n];
        assert_eq!((e[6], e[40], e[41]), (PROTO_ICMPV6, 2, 0));
        assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 1300);
        let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&e[8..24]).unwrap()));
        let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&e[24..40]).unwrap()));
        assert_eq!(dst.to_string(), "fd00::1");
        let sum = add(pseudo_header(src, dst, PROTO_ICMPV6, n - 40), &e[40..]);
        assert_eq!(fold(sum), 0xffff, "ICMPv6 checksum");
        too_big(&p, 1152, &mut out).unwrap();
        assert_eq!(
            u32::from_be_bytes([out[44], out[45], out[46], out[47]]),
            1280
        );
    }

    #[test]
    fn errors_are_never_answered_where_the_rules_forbid() {
        let mut out = [0u8; 1500];
        assert_eq!(
            too_big(&ping_v4(1328, false), 1152, &mut out),
            Err(IcmpError::NotAnswered),
            "no DF: the sender allowed fragmentation"
        );
        let mut err = ping_v4(1328, true);
        err[20] = 3;
        assert_eq!(too_big(&err, 1152, &mut out), Err(IcmpError::NotAnswered));
        let mut frag = ping_v4(1328, true);
        frag[7] = 10;
        assert_eq!(too_big(&frag, 1152, &mut out), Err(IcmpError::NotAnswered));
        assert_eq!(too_big(&[0x45], 1152, &mut out), Err(IcmpError::Malformed));
        assert_eq!(
            too_big(&ping_v4(1328, true), 1152, &mut [0u8; 100]),
            Err(IcmpError::Buffer)
        );
        // A TCP segment with DF is answered.
        assert!(too_big(&syn_v4(1460, 2), 1152, &mut out).is_ok());
        // Truncations and corruptions never panic.
        let good = ping_v4(200, true);
        for n in 0..good.len() {
            let _ = too_big(&good[..n], 100, &mut out);
        }
        for i in 0..40 {
            for v in [0u8, 0x40, 0x45, 0x4f, 0x60, 0xff] {
                let mut t = good.clone();
                t[i] = v;
                let _ = too_big(&t, 100, &mut out);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500), mtu in 0usize..2000) {
            let mut out = [0u8; MAX_IPV6_ERROR];
            let _ = too_big(&bytes, mtu, &mut out);
        }
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(100, 10);
        assert_eq!((0..50).filter(|_| r.allow(t0)).count(), 10);
        let ms = Duration::from_millis(1);
        // 100 a second: one every 10 ms.
        let later = (1..=100).filter(|i| r.allow(t0 + ms * *i)).count();
        assert_eq!(later, 10);
    }
}
