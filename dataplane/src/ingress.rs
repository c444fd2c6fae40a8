//! Ingress: data packets from a tether to inner packets for the TUN queue, or on to the
//! next hop.
//!
//! Per batch: check each header and look its label up. A label naming a relay entry is
//! relayed at once (label swapped, not decrypted). Runs of packets for one stream that
//! ends here are opened with one batched AES-256-GCM call, in place; the replay window is
//! checked before the AES work and marked only after the tag verifies. Each opened packet
//! must then come from an address its stream's source may use (its overlay address or an
//! allowed prefix, like WireGuard's AllowedIPs); anything else is dropped and counted,
//! silently. A TCP SYN or SYN-ACK delivered here has its MSS clamped to the inner MTU of
//! the route back to its sender ([`ingress_within`]), so the local end never sends that
//! peer segments its tether cannot carry.

use std::time::Instant;

use conflux_shared::crypto::aead::{DropReason, Verdict};
use conflux_shared::wire::data::{DataPacket, PacketType};
use conflux_shared::wire::record::{CounterId, TetherId};

use crate::counters::Counters;
use crate::egress::{PacketLimit, Unlimited, clamp_syn, is_tcp_syn, route_limit};
use crate::packet::InnerPacket;
use crate::relay::{RelayLimiter, relay};
use crate::table::{Tables, is_local};

/// What became of one packet of an ingress batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IngressVerdict {
    /// Not looked at yet.
    #[default]
    Pending,
    /// Waiting to be opened by the ingress stream at this index.
    Open(u32),
    /// Opened: write `buf[offset..offset + len]` to the TUN queue.
    Deliver {
        /// Start of the inner packet in the buffer.
        offset: usize,
        /// Its length.
        len: usize,
    },
    /// Relabelled: send the whole buffer on this tether.
    Relay(TetherId),
    /// Dropped and counted under this counter.
    Drop(CounterId),
    /// An authentic liveness probe: consumed here.
    Probe,
}

/// Handles a batch in place. Each buffer is one whole data packet as received. No path
/// MTU applies (see [`ingress_within`]).
///
/// # Panics
///
/// If `verdicts` or `scratch` is shorter than `packets` (a caller bug).
pub fn ingress<B: AsMut<[u8]>>(
    tables: &mut Tables,
    counters: &mut Counters,
    limiter: &mut RelayLimiter,
    now: Instant,
    packets: &mut [B],
    verdicts: &mut [IngressVerdict],
    scratch: &mut [Verdict],
) {
    ingress_within(
        tables, counters, limiter, now, packets, verdicts, scratch, &Unlimited,
    );
}

/// [`ingress`] with each tether's path MTU known: delivered TCP SYNs get their MSS clamped
/// to the inner MTU of the route back to their sender.
///
/// # Panics
///
/// If `verdicts` or `scratch` is shorter than `packets` (a caller bug).
#[allow(clippy::too_many_arguments)]
pub fn ingress_within<B: AsMut<[u8]>>(
    tables: &mut Tables,
    counters: &mut Counters,
    limiter: &mut RelayLimiter,
    now: Instant,
    packets: &mut [B],
    verdicts: &mut [IngressVerdict],
    scratch: &mut [Verdict],
    limits: &impl PacketLimit,
) {
    assert!(
        verdicts.len() >= packets.len() && scratch.len() >= packets.len(),
        "one verdict slot per packet"
    );
    for (p, v) in packets.iter_mut().zip(verdicts.iter_mut()) {
        let buf = p.as_mut();
        *v = match DataPacket::new_checked(&*buf) {
            Err(_) => IngressVerdict::Drop(CounterId::MalformedPacket),
            Ok(d) => {
                let label = d.label();
                let epoch = d.key_epoch();
                if let Some(&i) = tables.ingress_by_label.get(&label) {
                    if tables.ingress[i].epoch_expired(epoch, now) {
                        IngressVerdict::Drop(CounterId::KeyExpired)
                    } else {
                        IngressVerdict::Open(i as u32)
                    }
                } else if let Some(&entry) = tables.relays.get(&label) {
                    match relay(tables, limiter, entry, now, buf) {
                        Ok(t) => {
                            counters.relayed_packets += 1;
                            IngressVerdict::Relay(t)
                        }
                        Err(c) => IngressVerdict::Drop(c),
                    }
                } else {
                    IngressVerdict::Drop(CounterId::UnknownLabel)
                }
            }
        };
        if let IngressVerdict::Drop(c) = v {
            counters.bump(*c);
        }
    }
    let mut start = 0;
    while start < packets.len() {
        let IngressVerdict::Open(stream) = verdicts[start] else {
            start += 1;
            continue;
        };
        let mut end = start + 1;
        while end < packets.len() && verdicts[end] == IngressVerdict::Open(stream) {
            end += 1;
        }
        open_run(
            tables,
            counters,
            now,
            stream as usize,
            &mut packets[start..end],
            &mut verdicts[start..end],
            &mut scratch[start..end],
            limits,
        );
        start = end;
    }
}

#[allow(clippy::too_many_arguments)]
fn open_run<B: AsMut<[u8]>>(
    tables: &mut Tables,
    counters: &mut Counters,
    now: Instant,
    stream: usize,
    packets: &mut [B],
    verdicts: &mut [IngressVerdict],
    scratch: &mut [Verdict],
    limits: &impl PacketLimit,
) {
    let guard = tables.policy.guard_exit;
    let may_exit = tables.policy.portal && tables.ingress[stream].exit;
    let s = &mut tables.ingress[stream];
    let (local_hosts, routes) = (&tables.local_hosts, &tables.routes);
    s.opener.open_batch(now, packets, scratch);
    for ((p, v), a) in packets
        .iter_mut()
        .zip(verdicts.iter_mut())
        .zip(scratch.iter())
    {
        // A delivered SYN's MSS is clamped to the MTU of the way back to its sender.
        let mut clamp_to = None;
        *v = match *a {
            Verdict::Open(o) if o.kind == PacketType::Probe => IngressVerdict::Probe,
            Verdict::Open(o) => {
                let range = o.payload_range();
                let bytes = &p.as_mut()[range.clone()];
                match InnerPacket::parse(bytes) {
                    Err(_) => IngressVerdict::Drop(CounterId::MalformedPacket),
                    Ok(inner) if !s.source_allowed(inner.source()) => {
                        s.spoofed += 1;
                        IngressVerdict::Drop(CounterId::InnerSource)
                    }
                    // Internet-bound: only a portal's own owner's nodes may exit here.
                    Ok(inner)
                        if guard
                            && !may_exit
                            && !is_local(local_hosts, routes, inner.destination()) =>
                    {
                        IngressVerdict::Drop(CounterId::ExitDenied)
                    }
                    Ok(inner) => {
                        if is_tcp_syn(&inner, bytes) {
                            clamp_to = routes
                                .lookup(inner.source())
                                .map(|r| route_limit(r, limits));
                        }
                        IngressVerdict::Deliver {
                            offset: range.start,
                            len: inner.total_len(),
                        }
                    }
                }
            }
            Verdict::Drop(reason) => IngressVerdict::Drop(match reason {
                DropReason::BadTag => CounterId::BadTag,
                DropReason::TooOld | DropReason::Duplicate | DropReason::BeyondLimit => {
                    CounterId::Replay
                }
                DropReason::NoKey | DropReason::KeyExpired => CounterId::KeyExpired,
                DropReason::Malformed(_) | DropReason::Lane => CounterId::MalformedPacket,
            }),
            Verdict::Pending => IngressVerdict::Drop(CounterId::MalformedPacket),
        };
        if let (Some(max), IngressVerdict::Deliver { offset, len }) = (clamp_to, *v) {
            let mtu = max.saturating_sub(conflux_shared::wire::data::OVERHEAD);
            clamp_syn(counters, &mut p.as_mut()[offset..offset + len], mtu);
        }
        match v {
            IngressVerdict::Drop(c) => counters.bump(*c),
            IngressVerdict::Deliver { len, .. } => {
                counters.ingress_packets += 1;
                counters.ingress_bytes += *len as u64;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use conflux_shared::id::StreamId;
    use conflux_shared::wire::record::{
        InstallRouteBody, InstallTetherBody, IpPrefix, NextHop, RingRecord,
    };

    use super::*;
    use crate::egress::{EgressVerdict, egress};
    use crate::table::tests::{A, B, apply, buffers, pair};
    use crate::vnet::mss::tests::{syn_v4_between, tcp_checksum_ok};

    /// A's SYN-ACK delivered at B, whose way back to A runs over a tether with a 1,249-byte
    /// path MTU: B's stack is told MSS 1,112, whatever A's side offered.
    #[test]
    fn a_delivered_syn_is_clamped_to_the_path_mtu_of_the_way_back() {
        let (mut a, mut b) = pair(StreamId([6; 16]));
        let tether = InstallTetherBody::new(2, "192.0.2.1:51820".parse().unwrap());
        apply(&mut b, RingRecord::encode(&tether).unwrap()).unwrap();
        let back =
            InstallRouteBody::forward(IpPrefix::host(IpAddr::from(A)), &[NextHop::new(2, 9, 1)])
                .unwrap();
        apply(&mut b, RingRecord::encode(&back).unwrap()).unwrap();
        let mut c = Counters::default();
        // A sends with no limit of its own (its tether is a full-size one).
        let mut bufs = buffers(&[
            syn_v4_between(A, B, 1460, 0x12),
            syn_v4_between(A, B, 1000, 0x02),
        ]);
        let mut ev = vec![EgressVerdict::Pending; 2];
        egress(&mut a, &mut c, Instant::now(), &mut bufs, &mut ev);
        assert!(ev.iter().all(|v| matches!(v, EgressVerdict::Send { .. })));
        let mut v = vec![IngressVerdict::Pending; 2];
        let mut scratch = vec![Verdict::Pending; 2];
        let limit = |t: TetherId| {
            assert_eq!(t, 2, "the tether of the way back");
            1184
        };
        ingress_within(
            &mut b,
            &mut c,
            &mut RelayLimiter::new(),
            Instant::now(),
            &mut bufs,
            &mut v,
            &mut scratch,
            &limit,
        );
        let inner = |i: usize| {
            let IngressVerdict::Deliver { offset, len } = v[i] else {
                panic!("not delivered: {:?}", v[i]);
            };
            bufs[i][offset..offset + len].to_vec()
        };
        let clamped = inner(0);
        assert!(tcp_checksum_ok(&clamped));
        assert_eq!(clamped, syn_v4_between(A, B, 1112, 0x12));
        assert_eq!(inner(1), syn_v4_between(A, B, 1000, 0x02), "already fits");
        assert_eq!(c.get(CounterId::MssClamped), 1);
    }
}
