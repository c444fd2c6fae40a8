//! The egress side of the loop: TUN reads in, sealed datagrams out.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::time::Instant;

use conflux_shared::wire::data::{HEADER_LEN, OVERHEAD, TAG_LEN};
use conflux_shared::wire::record::CounterId;
use io_uring::cqueue;

use super::ops::Owner;
use super::{BATCH, HEADROOM, SlabRun, Worker};
use crate::buffer::Pkt;
use crate::egress::{EgressVerdict, egress_within};
use crate::hop::HopTransport;
use crate::vnet::icmp::{self, MAX_IPV6_ERROR, RateLimit};
use crate::vnet::segment::{SegmentLayout, finish_checksum, max_segment_len, segment};
use crate::vnet::{GsoType, VNET_HDR_LEN, VnetHeader};

/// UDP payload bytes one GSO send carries at most.
pub(super) const MAX_GSO_BYTES: usize = 65_000;
/// Datagrams one GSO send carries at most (the kernel's `UDP_MAX_SEGMENTS`).
pub(super) const MAX_GSO_SEGMENTS: usize = 64;
/// ICMP "too big" errors one worker writes per second at most, and in one burst.
const ICMP_PER_SECOND: u32 = 100;
const ICMP_BURST: u32 = 20;

thread_local! {
    /// The worker thread's ICMP budget: a worker is one thread, so this is per worker, and
    /// only the cold too-big path touches it.
    static ICMP_LIMIT: Cell<RateLimit> = const { Cell::new(RateLimit::new(ICMP_PER_SECOND, ICMP_BURST)) };
}

impl<T: HopTransport> Worker<T> {
    /// One multishot TUN read completion: a packet or a GSO super-packet.
    pub(super) fn on_tun_read(&mut self, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.tun_armed = false;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        if result <= VNET_HDR_LEN as i32 {
            self.tun_bufs.stage(bid);
            return;
        }
        self.counters.tun_reads += 1;
        let len = result as usize - VNET_HDR_LEN;
        // SAFETY: the kernel completed this buffer to us; no other view of it exists.
        let buf = unsafe { self.tun_bufs.buffer_mut(bid) };
        let Ok(hdr) = VnetHeader::parse(&buf[HEADROOM - VNET_HDR_LEN..HEADROOM]) else {
            self.counters.bump(CounterId::MalformedPacket);
            self.tun_bufs.stage(bid);
            return;
        };
        let packet = &mut buf[HEADROOM..HEADROOM + len];
        if hdr.gso_type == GsoType::None {
            if finish_checksum(&hdr, packet).is_err() {
                self.counters.bump(CounterId::MalformedPacket);
                self.tun_bufs.stage(bid);
                return;
            }
            let start = HEADROOM - HEADER_LEN;
            // SAFETY: the range lies inside the buffer (headroom and tailroom were kept free
            // by the ring's geometry) and this is the only view of it until it is released.
            let pkt = unsafe {
                Pkt::new(
                    buf.as_mut_ptr().add(start),
                    len + OVERHEAD,
                    Owner::Tun(bid).pack(),
                )
            };
            self.egress_pkts.push(pkt);
            return;
        }
        self.segment_into_slab(&hdr, bid, len);
    }

    fn segment_into_slab(&mut self, hdr: &VnetHeader, bid: u16, len: usize) {
        // SAFETY: as in `on_tun_read`; the previous view was dropped.
        let buf = unsafe { self.tun_bufs.buffer_mut(bid) };
        let packet = &buf[HEADROOM..HEADROOM + len];
        let th = self.transport.headroom();
        let Ok(seg_len) = max_segment_len(hdr, packet) else {
            self.counters.bump(CounterId::MalformedPacket);
            self.tun_bufs.stage(bid);
            return;
        };
        // Segments sit at the stride their datagrams will have, so a run framed for the
        // transport's usual tether kind leaves back to back and goes out as one GSO send.
        let stride = self
            .transport
            .framed_len(OVERHEAD + seg_len)
            .max(OVERHEAD + seg_len);
        let Some(slab) = self.slabs.take() else {
            self.counters.bump(CounterId::UdpSendFailed);
            self.tun_bufs.stage(bid);
            return;
        };
        // SAFETY: the slab was just taken; nothing else refers to it.
        let out = unsafe { self.slabs.slot_mut(slab) };
        let mut lens = [0u16; BATCH];
        let room = BATCH - self.egress_pkts.len();
        let layout = SegmentLayout {
            headroom: th + HEADER_LEN,
            stride,
        };
        let n = match segment(hdr, packet, out, layout, &mut lens[..room.min(BATCH)]) {
            Ok(n) => n,
            Err(_) => {
                self.counters.bump(CounterId::MalformedPacket);
                self.slabs.give(slab);
                self.tun_bufs.stage(bid);
                return;
            }
        };
        self.tun_bufs.stage(bid);
        self.slab_refs[usize::from(slab)] = n as u16;
        let first = self.egress_pkts.len();
        for (k, &l) in lens[..n].iter().enumerate() {
            // SAFETY: segment `k` lies at `k * stride + th` within the slab, with its header
            // and tag room inside the stride; each segment gets one view.
            let pkt = unsafe {
                Pkt::new(
                    out.as_mut_ptr().add(k * stride + th),
                    usize::from(l) + OVERHEAD,
                    Owner::Slab(slab).pack(),
                )
            };
            self.egress_pkts.push(pkt);
        }
        self.slab_runs.push(SlabRun {
            slab,
            first,
            count: n,
            stride,
        });
    }

    /// Seals and sends the egress batch.
    pub(super) fn flush_egress(&mut self, now: Instant) {
        let n = self.egress_pkts.len();
        if n == 0 {
            return;
        }
        let transport = &self.transport;
        egress_within(
            &mut self.tables,
            &mut self.counters,
            now,
            &mut self.egress_pkts,
            &mut self.egress_verdicts[..n],
            &|t| transport.max_packet(t),
        );
        let runs = std::mem::take(&mut self.slab_runs);
        for run in &runs {
            self.send_run(now, run);
        }
        self.slab_runs = runs;
        self.slab_runs.clear();
        for i in 0..n {
            let pkt = self.egress_pkts[i];
            let owner = Owner::unpack(pkt.owner);
            match self.egress_verdicts[i] {
                EgressVerdict::Send { tether, stream, .. } => {
                    self.send_one(now, pkt, tether, stream, owner)
                }
                EgressVerdict::Miss(dst) => {
                    self.report
                        .miss(&mut self.rings, &mut self.counters, now, dst);
                    self.release(owner);
                }
                EgressVerdict::TooBig { mtu } => {
                    self.too_big(now, pkt, mtu);
                    self.release(owner);
                }
                EgressVerdict::Drop(_) => self.release(owner),
                // Already sent as part of a GSO run.
                EgressVerdict::Pending => {}
            }
        }
        self.egress_pkts.clear();
    }

    /// Tells the sender of an inner packet too big for its route's tether, by an ICMP
    /// error written to the TUN (rate limited; a rare path, so one plain `write`).
    fn too_big(&mut self, now: Instant, mut pkt: Pkt, mtu: u16) {
        let allowed = ICMP_LIMIT.with(|l| {
            let mut r = l.get();
            let ok = r.allow(now);
            l.set(r);
            ok
        });
        if !allowed {
            return;
        }
        let buf = pkt.as_mut();
        let Some(inner) = buf.get(HEADER_LEN..buf.len().saturating_sub(TAG_LEN)) else {
            return;
        };
        // A zero virtio-net header: one packet, checksums complete.
        let mut out = [0u8; VNET_HDR_LEN + MAX_IPV6_ERROR];
        let Ok(n) = icmp::too_big(inner, usize::from(mtu), &mut out[VNET_HDR_LEN..]) else {
            return;
        };
        let len = VNET_HDR_LEN + n;
        // SAFETY: `out[..len]` is initialised and outlives the call; the fd is the worker's
        // TUN queue.
        let w = unsafe { libc::write(self.tun.as_raw_fd(), out.as_ptr().cast(), len) };
        if w == len as isize {
            self.counters.bump(CounterId::IcmpTooBigSent);
        } else {
            self.counters.bump(CounterId::TunWriteFailed);
        }
    }

    fn send_one(&mut self, now: Instant, mut pkt: Pkt, tether: u32, flow: u32, owner: Owner) {
        let Some(t) = self.tables.tethers.get_mut(&tether) else {
            self.counters.bump(CounterId::NoRoute);
            self.release(owner);
            return;
        };
        let peer = t.peer;
        let (th, tt) = (self.transport.headroom(), self.transport.tailroom());
        let len = pkt.len();
        // SAFETY: every packet buffer keeps at least HEADROOM - HEADER_LEN bytes before and
        // TAILROOM - TAG_LEN after the data packet, which bound the transport's framing.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(pkt.as_mut().as_mut_ptr().sub(th), th + len + tt)
        };
        let Some(range) = self.transport.frame(now, tether, flow, buf, len) else {
            self.counters.bump(CounterId::UdpSendFailed);
            self.release(owner);
            return;
        };
        t.tx_packets += 1;
        t.tx_bytes += range.len() as u64;
        self.counters.egress_packets += 1;
        self.counters.egress_bytes += (len - OVERHEAD) as u64;
        // SAFETY: `range` lies within `buf`.
        let ptr = unsafe { buf.as_mut_ptr().add(range.start) };
        if !self.send(ptr, range.len(), peer, 0, owner, 1) {
            self.release(owner);
        }
    }

    /// Sends a super-packet's segments as one GSO `sendmsg` when they all go to one
    /// tether and frame into equal, back-to-back datagrams; otherwise leaves them to
    /// [`Self::send_one`]. The geometry is checked before anything is framed, because
    /// framing a packet for a tether (a DTLS record, an SCTP TSN) happens once.
    fn send_run(&mut self, now: Instant, run: &SlabRun) {
        if run.count < 2 {
            return;
        }
        let verdicts = &self.egress_verdicts[run.first..run.first + run.count];
        let EgressVerdict::Send { tether, stream, .. } = verdicts[0] else {
            return;
        };
        if !verdicts
            .iter()
            .all(|v| matches!(v, EgressVerdict::Send { tether: t, .. } if *t == tether))
        {
            return;
        }
        if !self.tables.tethers.contains_key(&tether) {
            return;
        }
        let offset = self
            .transport
            .framed_range(tether, self.egress_pkts[run.first].len())
            .start;
        for k in 0..run.count {
            let r = self
                .transport
                .framed_range(tether, self.egress_pkts[run.first + k].len());
            let last = k + 1 == run.count;
            if r.start != offset || (!last && r.len() != run.stride) {
                // Not back to back: the framed datagrams go out one by one.
                return;
            }
        }
        let (th, tt) = (self.transport.headroom(), self.transport.tailroom());
        // SAFETY: the run's segments lie in this slab, which the worker holds; the view is
        // re-derived from the pointer because releasing refused segments below borrows the
        // worker again.
        let slab: &mut [u8] = unsafe {
            let s = self.slabs.slot_mut(run.slab);
            std::slice::from_raw_parts_mut(s.as_mut_ptr(), s.len())
        };
        let mut framed = 0;
        let mut total = 0;
        for k in 0..run.count {
            let len = self.egress_pkts[run.first + k].len();
            let start = k * run.stride;
            // A slot may reach a few bytes into the next segment's (still unused) headroom;
            // framing writes only the datagram, which ends within the stride.
            let end = (start + th + len + tt).min(slab.len());
            let Some(range) = self
                .transport
                .frame(now, tether, stream, &mut slab[start..end], len)
            else {
                break;
            };
            framed += 1;
            total = start + range.end - offset;
        }
        for k in 0..run.count {
            self.egress_verdicts[run.first + k] = EgressVerdict::Pending;
        }
        // Segments the tether refused are dropped (the tether counts them).
        for _ in framed..run.count {
            self.counters.bump(CounterId::UdpSendFailed);
            self.release(Owner::Slab(run.slab));
        }
        if framed == 0 {
            return;
        }
        let Some(t) = self.tables.tethers.get_mut(&tether) else {
            return;
        };
        let peer = t.peer;
        let datagrams = framed as u32;
        t.tx_packets += u64::from(datagrams);
        t.tx_bytes += total as u64;
        self.counters.egress_packets += u64::from(datagrams);
        for k in 0..framed {
            self.counters.egress_bytes += (self.egress_pkts[run.first + k].len() - OVERHEAD) as u64;
        }
        // One GSO send may carry at most 64 KiB of UDP payload.
        let per_send = (MAX_GSO_BYTES / run.stride).clamp(1, MAX_GSO_SEGMENTS);
        // SAFETY: `offset` lies within the slab's first stride.
        let base = unsafe { slab.as_mut_ptr().add(offset) };
        let mut k = 0;
        while k < framed {
            let n = per_send.min(framed - k);
            let start = k * run.stride;
            let end = if k + n == framed {
                total
            } else {
                (k + n) * run.stride
            };
            // SAFETY: `start..end` lies within the slab, past `offset`.
            let ptr = unsafe { base.add(start) };
            if !self.send(
                ptr,
                end - start,
                peer,
                run.stride as u16,
                Owner::Slab(run.slab),
                n as u32,
            ) {
                for _ in 0..n {
                    self.release(Owner::Slab(run.slab));
                }
            }
            k += n;
        }
    }
}
