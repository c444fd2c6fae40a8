//! Egress: inner packets from the TUN queue to sealed data packets bound for a tether.
//!
//! Per batch: parse each inner packet, look up the route of its destination, pick the
//! route's next hop by the inner flow's hash (so a flow is never reordered), then seal every
//! run of packets bound for one stream with one batched AES-256-GCM call, in place, and
//! write each packet's next-hop label. A destination with no route, or a route with no
//! stream yet, is a miss: the packet is dropped and the caller reports the destination to
//! the control process (rate limited).

use std::net::IpAddr;
use std::time::Instant;

use conflux_shared::crypto::aead::SealError;
use conflux_shared::id::Label;
use conflux_shared::wire::data::{DataPacket, HEADER_LEN, OVERHEAD, PacketType, TAG_LEN};
use conflux_shared::wire::record::{CounterId, RouteTarget, TetherId};

use crate::counters::Counters;
use crate::packet::InnerPacket;
use crate::table::Tables;

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
    /// Dropped and counted under this counter.
    Drop(CounterId),
}

/// Seals a batch in place. Each buffer is one whole data packet: [`HEADER_LEN`] bytes of
/// headroom, the inner packet, [`TAG_LEN`] bytes of tailroom. Writes one verdict per packet.
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
    assert!(
        verdicts.len() >= packets.len(),
        "one verdict slot per packet"
    );
    for (p, v) in packets.iter_mut().zip(verdicts.iter_mut()) {
        *v = classify(tables, p.as_mut());
        if let EgressVerdict::Drop(c) = v {
            counters.bump(*c);
        } else if let EgressVerdict::Miss(_) = v {
            counters.bump(CounterId::NoRoute);
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

fn classify(tables: &Tables, buf: &mut [u8]) -> EgressVerdict {
    if buf.len() < OVERHEAD {
        return EgressVerdict::Drop(CounterId::MalformedPacket);
    }
    let inner = &buf[HEADER_LEN..buf.len() - TAG_LEN];
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
