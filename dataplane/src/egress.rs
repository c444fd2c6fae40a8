//! Egress: inner packets from the TUN queue to sealed data packets bound for a tether.
//!
//! Per batch: parse each inner packet, look up the route of its destination, pick the
//! route's next hop by the inner flow's hash (so a flow is never reordered), then seal every
//! run of packets bound for one stream with one batched AES-256-GCM call, in place, and
//! write each packet's next-hop label. A destination with no route, or a route with no
//! stream yet, is a miss: the packet is dropped and the caller reports the destination to
//! the control process (rate limited).
//!
//! # Path MTU
//!
//! Each tether carries sealed packets up to its discovered path MTU ([`PacketLimit`]). A
//! packet bigger than its route's limit is not sealed: the verdict is
//! [`EgressVerdict::TooBig`] with the inner MTU, and the caller tells the sender by ICMP. A
//! TCP SYN leaving here has its MSS clamped to that inner MTU, so TCP stays within it.
//!
//! A relayed route uses its first tether's path MTU, like a direct one. The source sees
//! only that tether, not the relay's next one, and nothing in the data plane tells a relay's
//! label from the destination's (labels are chosen per hop). A relay whose next tether
//! carries less refuses the packet and counts it (`too_big` in that tether's telemetry,
//! `tether_refused`); it cannot send the ICMP error itself, since it cannot open the packet.
//! Holding every route to the base size instead would cost 220 bytes of every full-size
//! packet on the direct paths that make most of the traffic; carrying each relay's
//! downstream size back to the source in the route set-up is the complete answer.

use std::net::IpAddr;
use std::time::Instant;

use conflux_shared::crypto::aead::SealError;
use conflux_shared::id::Label;
use conflux_shared::wire::data::{DataPacket, HEADER_LEN, OVERHEAD, PacketType, TAG_LEN};
use conflux_shared::wire::record::{CounterId, RouteTarget, TetherId};

use crate::counters::Counters;
use crate::packet::{InnerPacket, PROTO_TCP};
use crate::table::Tables;
use crate::table::route::Route;
use crate::tether::config::BASE_DATAGRAM;
use crate::tether::record::RECORD_OVERHEAD;
use crate::tether::sctp::max_message_in;
use crate::vnet::mss;

/// Largest sealed packet every tether carries: one that fits a datagram of the base path
/// MTU, where every search starts. Smaller packets need no look at their tether.
pub const BASE_MAX_PACKET: usize = max_message_in(BASE_DATAGRAM, RECORD_OVERHEAD);

/// How big a sealed data packet each tether carries now.
pub trait PacketLimit {
    /// The largest sealed data packet (stream header, inner packet, tag) `tether` carries
    /// in one datagram; `usize::MAX` when it sets no limit of its own.
    fn max_packet(&self, tether: TetherId) -> usize;
}

/// No limit but what the tethers refuse themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl PacketLimit for Unlimited {
    #[inline]
    fn max_packet(&self, _tether: TetherId) -> usize {
        usize::MAX
    }
}

impl<F: Fn(TetherId) -> usize> PacketLimit for F {
    #[inline]
    fn max_packet(&self, tether: TetherId) -> usize {
        self(tether)
    }
}

/// The last tether's limit, so a batch of packets for one tether asks once.
#[derive(Debug, Clone, Copy, Default)]
struct LimitCache(Option<(TetherId, usize)>);

impl LimitCache {
    #[inline]
    fn get(&mut self, tether: TetherId, limits: &impl PacketLimit) -> usize {
        match self.0 {
            Some((t, l)) if t == tether => l,
            _ => {
                let l = limits.max_packet(tether);
                self.0 = Some((tether, l));
                l
            }
        }
    }
}

/// The largest sealed packet every next hop of `route` carries (a flow the other way may
/// take any of them); `usize::MAX` for a route without hops.
pub(crate) fn route_limit(route: &Route, limits: &impl PacketLimit) -> usize {
    let mut cache = LimitCache::default();
    route
        .hops()
        .iter()
        .map(|h| cache.get(h.tether, limits))
        .min()
        .unwrap_or(usize::MAX)
}

/// Whether an inner packet is a TCP segment with SYN set (the only ones MSS clamping
/// touches); a cheap look at two bytes, the full check is [`mss::clamp`]'s.
#[inline]
pub(crate) fn is_tcp_syn(p: &InnerPacket<'_>, inner: &[u8]) -> bool {
    p.protocol() == PROTO_TCP && inner.get(p.header_len() + 13).is_some_and(|f| f & 2 != 0)
}

/// Clamps a SYN's MSS to an inner MTU of `mtu` bytes, counting what it did.
#[inline]
pub(crate) fn clamp_syn(counters: &mut Counters, inner: &mut [u8], mtu: usize) {
    match mss::clamp(inner, mtu) {
        Ok(mss::Clamp::Clamped { .. }) => counters.bump(CounterId::MssClamped),
        Ok(_) => {}
        Err(_) => counters.bump(CounterId::MalformedPacket),
    }
}

/// What became of one packet of an egress batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EgressVerdict {
    /// Not looked at (the initial value of a verdict array).
    #[default]
    Pending,
    /// Sealed: send the whole buffer on the tether.
    Send {
        /// The tether to the next hop.
        tether: TetherId,
        /// Index of the stream that sealed it.
        stream: u32,
        /// The next hop's label, now in the header.
        label: Label,
    },
    /// No route or no stream for the destination: report a miss.
    Miss(IpAddr),
    /// Too big for the route's tether: not sealed, counted; tell the sender the inner MTU
    /// (the inner packet is still in place, in plaintext).
    TooBig {
        /// The largest inner packet the route carries.
        mtu: u16,
    },
    /// Dropped and counted under this counter.
    Drop(CounterId),
}

/// Seals a batch in place. Each buffer is one whole data packet: [`HEADER_LEN`] bytes of
/// headroom, the inner packet, [`TAG_LEN`] bytes of tailroom. Writes one verdict per packet.
/// No path MTU applies (see [`egress_within`]).
///
/// # Panics
///
/// If `verdicts` is shorter than `packets` (a caller bug).
pub fn egress<B: AsMut<[u8]>>(
    tables: &mut Tables,
    counters: &mut Counters,
    now: Instant,
    packets: &mut [B],
    verdicts: &mut [EgressVerdict],
) {
    egress_within(tables, counters, now, packets, verdicts, &Unlimited);
}

/// [`egress`] within each tether's path MTU: a packet too big for its route is not sealed
/// ([`EgressVerdict::TooBig`]), and TCP SYNs get their MSS clamped to the route's inner MTU.
///
/// # Panics
///
/// If `verdicts` is shorter than `packets` (a caller bug).
pub fn egress_within<B: AsMut<[u8]>>(
    tables: &mut Tables,
    counters: &mut Counters,
    now: Instant,
    packets: &mut [B],
    verdicts: &mut [EgressVerdict],
    limits: &impl PacketLimit,
) {
    assert!(
        verdicts.len() >= packets.len(),
        "one verdict slot per packet"
    );
    let mut cache = LimitCache::default();
    for (p, v) in packets.iter_mut().zip(verdicts.iter_mut()) {
        *v = classify(tables, counters, p.as_mut(), limits, &mut cache);
        match v {
            EgressVerdict::Drop(c) => counters.bump(*c),
            EgressVerdict::Miss(_) => counters.bump(CounterId::NoRoute),
            EgressVerdict::TooBig { .. } => counters.bump(CounterId::TooBig),
            _ => {}
        }
    }
    let mut start = 0;
    while start < packets.len() {
        let EgressVerdict::Send { stream, .. } = verdicts[start] else {
            start += 1;
            continue;
        };
        let mut end = start + 1;
        while end < packets.len()
            && matches!(verdicts[end], EgressVerdict::Send { stream: s, .. } if s == stream)
        {
            end += 1;
        }
        seal_run(
            tables,
            counters,
            now,
            stream,
            &mut packets[start..end],
            &mut verdicts[start..end],
        );
        start = end;
    }
}

#[inline]
fn classify(
    tables: &Tables,
    counters: &mut Counters,
    buf: &mut [u8],
    limits: &impl PacketLimit,
    cache: &mut LimitCache,
) -> EgressVerdict {
    if buf.len() < OVERHEAD {
        return EgressVerdict::Drop(CounterId::MalformedPacket);
    }
    let end = buf.len() - TAG_LEN;
    let inner = &buf[HEADER_LEN..end];
    let Ok(p) = InnerPacket::parse(inner) else {
        return EgressVerdict::Drop(CounterId::MalformedPacket);
    };
    let dst = p.destination();
    let Some(route) = tables.route_for(dst) else {
        return EgressVerdict::Miss(dst);
    };
    if route.target == RouteTarget::Local {
        // The kernel routes local destinations itself; one reaching the TUN is a loop.
        return EgressVerdict::Drop(CounterId::NoRoute);
    }
    let (Some(stream), Some(hop)) = (route.stream, route.choose(p.flow_hash())) else {
        return EgressVerdict::Miss(dst);
    };
    // Packets that fit the base size fit every tether; only bigger ones and SYNs ask.
    let syn = is_tcp_syn(&p, inner);
    if buf.len() > BASE_MAX_PACKET || syn {
        let max = cache.get(hop.tether, limits);
        if buf.len() > max {
            let mtu = (max.saturating_sub(OVERHEAD)).min(usize::from(u16::MAX)) as u16;
            return EgressVerdict::TooBig { mtu };
        }
        if syn {
            clamp_syn(
                counters,
                &mut buf[HEADER_LEN..end],
                max.saturating_sub(OVERHEAD),
            );
        }
    }
    EgressVerdict::Send {
        tether: hop.tether,
        stream,
        label: hop.label,
    }
}

fn seal_run<B: AsMut<[u8]>>(
    tables: &mut Tables,
    counters: &mut Counters,
    now: Instant,
    stream: u32,
    packets: &mut [B],
    verdicts: &mut [EgressVerdict],
) {
    let Some(s) = tables.egress.get_mut(stream as usize) else {
        drop_all(counters, verdicts, CounterId::NoRoute);
        return;
    };
    if s.is_expired(now) {
        drop_all(counters, verdicts, CounterId::KeyExpired);
        return;
    }
    match s.sealer.seal_batch(now, PacketType::Data, s.label, packets) {
        Ok(_) => {
            for (p, v) in packets.iter_mut().zip(verdicts.iter()) {
                if let EgressVerdict::Send { label, .. } = *v {
                    let buf = p.as_mut();
                    s.packets += 1;
                    s.bytes += (buf.len() - OVERHEAD) as u64;
                    if label != s.label {
                        DataPacket::new_unchecked(buf).set_label(label);
                    }
                }
            }
        }
        Err(SealError::KeyExpired | SealError::CountersExhausted) => {
            drop_all(counters, verdicts, CounterId::KeyExpired)
        }
        Err(_) => drop_all(counters, verdicts, CounterId::MalformedPacket),
    }
}

fn drop_all(counters: &mut Counters, verdicts: &mut [EgressVerdict], c: CounterId) {
    counters.add(c, verdicts.len() as u64);
    verdicts.fill(EgressVerdict::Drop(c));
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use conflux_shared::id::StreamId;

    use super::*;
    use crate::table::tests::{A, B, buffers, pair};
    use crate::vnet::mss::tests::{syn_v4_between, tcp_checksum_ok};

    /// An ICMP echo request from A to B of `len` bytes, DF set.
    fn ping(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[12..16].copy_from_slice(&A);
        p[16..20].copy_from_slice(&B);
        crate::vnet::checksum::set_ipv4_header(&mut p[..20]);
        p[20] = 8;
        p
    }

    #[test]
    fn egress_holds_packets_to_the_tethers_path_mtu_and_clamps_syns() {
        let (mut a, _) = pair(StreamId([4; 16]));
        let mut c = Counters::default();
        // The tether's path MTU is 1,249 bytes: 1,184-byte sealed packets, 1,152 inner.
        let asked = Cell::new(0);
        let limit = |t: TetherId| {
            asked.set(asked.get() + 1);
            assert_eq!(t, 1);
            1184
        };
        let inner = vec![
            ping(1000),
            ping(1152),
            ping(1153),
            ping(1328),
            syn_v4_between(A, B, 1460, 0x02),
        ];
        let mut bufs = buffers(&inner);
        let mut v = vec![EgressVerdict::Pending; bufs.len()];
        egress_within(&mut a, &mut c, Instant::now(), &mut bufs, &mut v, &limit);
        assert!(matches!(v[0], EgressVerdict::Send { tether: 1, .. }));
        assert!(matches!(v[1], EgressVerdict::Send { tether: 1, .. }));
        assert_eq!(v[2], EgressVerdict::TooBig { mtu: 1152 });
        assert_eq!(v[3], EgressVerdict::TooBig { mtu: 1152 });
        assert!(matches!(v[4], EgressVerdict::Send { tether: 1, .. }));
        assert_eq!(c.get(CounterId::TooBig), 2);
        assert_eq!(c.get(CounterId::MssClamped), 1);
        // The small ping never asked; the big ones and the SYN asked once for the batch.
        assert_eq!(asked.get(), 1);
        // Refused packets stay in plaintext for the ICMP error.
        assert_eq!(&bufs[3][HEADER_LEN..bufs[3].len() - TAG_LEN], &inner[3][..]);

        // The SYN was clamped before it was sealed: B opens exactly what a sender offering
        // 1,112 bytes would have sent, checksum valid.
        let (_, mut b) = pair(StreamId([4; 16]));
        let mut syn = vec![bufs.swap_remove(4)];
        let mut v = vec![crate::ingress::IngressVerdict::Pending];
        let mut scratch = vec![conflux_shared::crypto::aead::Verdict::Pending];
        crate::ingress::ingress(
            &mut b,
            &mut c,
            &mut crate::relay::RelayLimiter::new(),
            Instant::now(),
            &mut syn,
            &mut v,
            &mut scratch,
        );
        let crate::ingress::IngressVerdict::Deliver { offset, len } = v[0] else {
            panic!("not delivered: {:?}", v[0]);
        };
        let got = &syn[0][offset..offset + len];
        assert!(tcp_checksum_ok(got));
        assert_eq!(got, &syn_v4_between(A, B, 1112, 0x02)[..]);
    }
}
