//! The ingress side of the loop: UDP receives in, TUN writes and relayed datagrams out.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use conflux_shared::wire::record::CounterId;
use io_uring::{cqueue, opcode, types};

use super::ops::{MAX_WRITE_PARTS, Owner, op, tag};
use super::tun_io::{MAX_GSO_BYTES, MAX_GSO_SEGMENTS};
use super::{CONTROL_LEN, NAME_LEN, Worker};
use crate::buffer::Pkt;
use crate::hop::HopTransport;
use crate::ingress::{IngressVerdict, ingress_within};
use crate::udp::from_sockaddr;

/// `io_uring_recvmsg_out`: name, control and payload lengths, and flags.
const RECVMSG_OUT_LEN: usize = 16;
/// `SOL_UDP` / `UDP_GRO` control message: the size of the coalesced datagrams.
const UDP_GRO: i32 = 104;
/// Owner-word bit (beside the owner, which uses bits 0-15 and 30-31): the packet's own
/// datagram has room to be framed again in place.
const ROOM: u32 = 1 << 29;

/// Relayed datagrams that lie back to back in one receive buffer, all of one size but
/// perhaps the last, for one peer: one GSO send. A GRO batch received from a tether and
/// framed again in place for a tether of the same kind keeps its datagrams where they
/// arrived, so a relay sends it on with one system call instead of one per datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct RelayRun {
    ptr: *mut u8,
    len: usize,
    stride: usize,
    last: usize,
    count: u32,
    peer: SocketAddr,
    owner: Owner,
}

impl RelayRun {
    /// Whether a datagram of `len` bytes at `ptr` for `peer` extends the run.
    fn extends(&self, ptr: *mut u8, len: usize, peer: SocketAddr, owner: Owner) -> bool {
        self.owner == owner
            && self.peer == peer
            && self.last == self.stride
            && len <= self.stride
            && ptr == self.ptr.wrapping_add(self.len)
            && (self.count as usize) < MAX_GSO_SEGMENTS
            && self.len + len <= MAX_GSO_BYTES
    }
}

/// The GRO segment size in a received control area, if any.
fn gro_size(control: &[u8]) -> Option<usize> {
    let hdr = size_of::<libc::cmsghdr>();
    let mut at = 0;
    while at + hdr <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + 8].try_into().ok()?);
        let level = i32::from_ne_bytes(control[at + 8..at + 12].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[at + 12..at + 16].try_into().ok()?);
        if len < hdr || at + len > control.len() {
            return None;
        }
        if level == libc::SOL_UDP && kind == UDP_GRO && len >= hdr + 4 {
            let v = i32::from_ne_bytes(control[at + hdr..at + hdr + 4].try_into().ok()?);
            return usize::try_from(v).ok().filter(|&v| v > 0);
        }
        at += (len + 7) & !7;
    }
    None
}

impl<T: HopTransport> Worker<T> {
    /// One multishot `recvmsg` completion: a datagram, or several coalesced by GRO.
    pub(super) fn on_udp_recv(&mut self, now: Instant, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.udp_armed = false;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        if result < 0 {
            self.udp_bufs.stage(bid);
            return;
        }
        // SAFETY: the kernel completed this buffer to us; no other view of it exists.
        let buf = unsafe { self.udp_bufs.buffer_mut(bid) };
        let filled = (result as usize).min(buf.len());
        let (name_len, ctrl_len, payload_len, msg_flags) = {
            let w = |i: usize| {
                u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]) as usize
            };
            (w(0), w(4), w(8), w(12) as i32)
        };
        let name_at = RECVMSG_OUT_LEN;
        let ctrl_at = name_at + NAME_LEN as usize;
        let payload_at = ctrl_at + CONTROL_LEN as usize;
        if filled < payload_at || msg_flags & libc::MSG_TRUNC != 0 {
            self.counters.bump(CounterId::MalformedPacket);
            self.udp_bufs.stage(bid);
            return;
        }
        let payload_len = payload_len.min(filled - payload_at);
        let from = from_sockaddr(&buf[name_at..name_at + name_len.min(NAME_LEN as usize)]);
        let segment = gro_size(&buf[ctrl_at..ctrl_at + ctrl_len.min(CONTROL_LEN as usize)])
            .unwrap_or(payload_len);
        let Some(from) = from else {
            self.udp_bufs.stage(bid);
            return;
        };
        let tether = self.tables.tether_of(&from);
        let th = self.transport.headroom();
        let mut refs = 0u16;
        let mut at = payload_at;
        let end = payload_at + payload_len;
        while at < end && segment > 0 {
            let dlen = segment.min(end - at);
            self.counters.udp_rx += 1;
            if let Some(t) = tether.and_then(|t| self.tables.tethers.get_mut(&t)) {
                t.rx_packets += 1;
                t.rx_bytes += dlen as u64;
            }
            let datagram = &mut buf[at..at + dlen];
            let dptr = datagram.as_mut_ptr();
            let k = self
                .transport
                .unframe(now, from, tether, datagram, &mut self.ranges);
            for r in self.ranges[..k].iter().cloned() {
                if r.end > dlen || self.ingress_pkts.len() >= super::BATCH {
                    self.counters.bump(CounterId::MalformedPacket);
                    continue;
                }
                // Whether a relay may frame this packet in place for the usual tether kind
                // without touching the next datagram of a GRO batch, or another message of
                // the same datagram (peers that bundle chunks).
                let framed = self.transport.framed_len(r.len());
                let room = k == 1
                    && r.start >= th
                    && framed >= th + r.len()
                    && r.start - th + framed <= dlen;
                let owner = Owner::Udp(bid).pack() | if room { ROOM } else { 0 };
                // SAFETY: `r` lies within this datagram, inside the buffer the worker holds;
                // the transport returns disjoint ranges, so each byte has one view.
                let pkt = unsafe { Pkt::new(dptr.add(r.start), r.len(), owner) };
                self.ingress_pkts.push(pkt);
                refs += 1;
            }
            at += dlen;
        }
        self.udp_refs[usize::from(bid)] = refs;
        if refs == 0 {
            self.udp_bufs.stage(bid);
        }
    }

    /// Relays, opens, checks and writes the ingress batch.
    pub(super) fn flush_ingress(&mut self, now: Instant) {
        let n = self.ingress_pkts.len();
        if n == 0 {
            return;
        }
        let transport = &self.transport;
        ingress_within(
            &mut self.tables,
            &mut self.counters,
            &mut self.limiter,
            now,
            &mut self.ingress_pkts,
            &mut self.ingress_verdicts[..n],
            &mut self.aead[..n],
            &|t| transport.max_packet(t),
        );
        self.coalescer.clear();
        for i in 0..n {
            let mut pkt = self.ingress_pkts[i];
            let owner = Owner::unpack(pkt.owner);
            match self.ingress_verdicts[i] {
                IngressVerdict::Deliver { offset, len } => {
                    self.coalescer
                        .push(i as u16, &pkt.as_mut()[offset..offset + len]);
                }
                IngressVerdict::Relay(tether) => self.relay_one(now, pkt, tether, owner),
                _ => self.release(owner),
            }
        }
        self.flush_relay();
        for g in 0..self.coalescer.groups().len() {
            self.write_group(g);
        }
        self.ingress_pkts.clear();
    }

    /// Adds a relayed datagram to the pending GSO run, sending the run first when the
    /// datagram does not extend it.
    fn queue_relay(&mut self, ptr: *mut u8, len: usize, peer: SocketAddr, owner: Owner) {
        if let Some(r) = &mut self.relay_run {
            if r.extends(ptr, len, peer, owner) {
                r.len += len;
                r.last = len;
                r.count += 1;
                return;
            }
            self.flush_relay();
        }
        self.relay_run = Some(RelayRun {
            ptr,
            len,
            stride: len,
            last: len,
            count: 1,
            peer,
            owner,
        });
    }

    /// Sends the pending relay run: one datagram, or one GSO send of several.
    fn flush_relay(&mut self) {
        let Some(r) = self.relay_run.take() else {
            return;
        };
        let segment = if r.count > 1 { r.stride as u16 } else { 0 };
        if !self.send(r.ptr, r.len, r.peer, segment, r.owner, r.count) {
            for _ in 0..r.count {
                self.release(r.owner);
            }
        }
    }

    fn relay_one(&mut self, now: Instant, mut pkt: Pkt, tether: u32, owner: Owner) {
        // The outgoing label keeps one route's packets on one channel.
        let label = pkt
            .as_mut()
            .get(..conflux_shared::wire::data::HEADER_LEN)
            .map_or(0, |h| u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
        let Some(t) = self.tables.tethers.get_mut(&tether) else {
            self.release(owner);
            return;
        };
        let peer = t.peer;
        let (th, tt) = (self.transport.headroom(), self.transport.tailroom());
        let len = pkt.len();
        let need = self.transport.framed_range(tether, len);
        if (need.start < th || need.end > th + len) && pkt.owner & ROOM == 0 {
            // Framing would write outside the datagram the packet came in (a plain datagram
            // relayed onto a WebRTC tether): the bytes there may be the next datagram's.
            self.counters.bump(CounterId::RelayDenied);
            self.release(owner);
            return;
        }
        // SAFETY: the packet sits `th` or more bytes into a UDP buffer (after the recvmsg
        // header, name and control areas, or inside its own framed datagram), and framing
        // writes only where the check above allows.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(pkt.as_mut().as_mut_ptr().sub(th), th + len + tt)
        };
        let Some(range) = self.transport.frame(now, tether, label, buf, len) else {
            self.release(owner);
            return;
        };
        t.tx_packets += 1;
        t.tx_bytes += range.len() as u64;
        // SAFETY: `range` lies within `buf`.
        let ptr = unsafe { buf.as_mut_ptr().add(range.start) };
        self.queue_relay(ptr, range.len(), peer, owner);
    }

    /// One vectored TUN write for a coalesced group: virtio-net header, the first packet
    /// (headers rewritten for the group), then the other members' payloads in place.
    fn write_group(&mut self, g: usize) {
        let group = self.coalescer.groups()[g];
        let Some(w) = self.writes.take() else {
            self.drop_group(&group);
            return;
        };
        let ctx = self.writes.get(w);
        ctx.hdr = group.vnet_bytes();
        ctx.iov[0] = libc::iovec {
            iov_base: ctx.hdr.as_mut_ptr().cast(),
            iov_len: ctx.hdr.len(),
        };
        ctx.iov_len = 1;
        ctx.owners_len = 0;
        let mut member = Some(group.first);
        let mut first = true;
        while let Some(m) = member {
            if ctx.owners_len >= MAX_WRITE_PARTS {
                break;
            }
            let mut pkt = self.ingress_pkts[usize::from(m)];
            let IngressVerdict::Deliver { offset, len } = self.ingress_verdicts[usize::from(m)]
            else {
                break;
            };
            let inner = &mut pkt.as_mut()[offset..offset + len];
            let part = if first {
                group.rewrite_first(inner);
                first = false;
                &mut inner[..]
            } else {
                &mut inner[usize::from(group.header_len)..]
            };
            ctx.iov[ctx.iov_len] = libc::iovec {
                iov_base: part.as_mut_ptr().cast(),
                iov_len: part.len(),
            };
            ctx.iov_len += 1;
            ctx.owners[ctx.owners_len] = pkt.owner;
            ctx.owners_len += 1;
            member = self.coalescer.next_member(m);
        }
        let e = opcode::Writev::new(
            types::Fd(self.tun.as_raw_fd()),
            ctx.iov.as_ptr(),
            ctx.iov_len as u32,
        )
        .build()
        .user_data(tag(op::TUN_WRITE, w));
        if !self.push(e) {
            self.counters.bump(CounterId::TunWriteFailed);
            self.on_write_abort(w);
        }
    }

    fn on_write_abort(&mut self, w: u32) {
        let ctx = self.writes.get(w);
        let (owners, n) = (ctx.owners, ctx.owners_len);
        self.writes.give(w);
        for &o in &owners[..n] {
            self.release(Owner::unpack(o));
        }
    }

    fn drop_group(&mut self, group: &crate::vnet::coalesce::Group) {
        self.counters.bump(CounterId::TunWriteFailed);
        let mut member = Some(group.first);
        while let Some(m) = member {
            let owner = Owner::unpack(self.ingress_pkts[usize::from(m)].owner);
            self.release(owner);
            member = self.coalescer.next_member(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_gro_size() {
        let mut c = [0u8; 64];
        c[..8].copy_from_slice(&20usize.to_ne_bytes());
        c[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        c[12..16].copy_from_slice(&UDP_GRO.to_ne_bytes());
        c[16..20].copy_from_slice(&1448i32.to_ne_bytes());
        assert_eq!(gro_size(&c[..24]), Some(1448));
        assert_eq!(gro_size(&c[..10]), None);
        assert_eq!(gro_size(&[]), None);
    }

    #[test]
    fn a_relay_run_takes_back_to_back_datagrams_of_one_size() {
        let mut buf = vec![0u8; 70_000];
        let base = buf.as_mut_ptr();
        let peer: SocketAddr = "10.0.0.2:51820".parse().unwrap();
        let other: SocketAddr = "10.0.0.3:51820".parse().unwrap();
        let owner = Owner::Udp(3);
        let mut run = RelayRun {
            ptr: base,
            len: 1400,
            stride: 1400,
            last: 1400,
            count: 1,
            peer,
            owner,
        };
        let next = base.wrapping_add(1400);
        assert!(run.extends(next, 1400, peer, owner));
        assert!(run.extends(next, 900, peer, owner), "a shorter last one");
        assert!(
            !run.extends(next, 1401, peer, owner),
            "longer than the stride"
        );
        assert!(
            !run.extends(base.wrapping_add(1404), 1400, peer, owner),
            "a gap"
        );
        assert!(!run.extends(next, 1400, other, owner), "another peer");
        assert!(
            !run.extends(next, 1400, peer, Owner::Udp(4)),
            "another buffer"
        );
        run.len += 900;
        run.last = 900;
        run.count += 1;
        assert!(
            !run.extends(base.wrapping_add(2300), 900, peer, owner),
            "nothing after a short one"
        );
        // 1,000-byte datagrams: 64 of them fit in 64 KiB, so the segment limit decides.
        let at = |k: usize| base.wrapping_add(1000 * k);
        let almost = RelayRun {
            len: 1000 * (MAX_GSO_SEGMENTS - 1),
            stride: 1000,
            last: 1000,
            count: MAX_GSO_SEGMENTS as u32 - 1,
            ..run
        };
        assert!(almost.extends(at(MAX_GSO_SEGMENTS - 1), 1000, peer, owner));
        let full = RelayRun {
            len: 1000 * MAX_GSO_SEGMENTS,
            count: MAX_GSO_SEGMENTS as u32,
            ..almost
        };
        assert!(
            !full.extends(at(MAX_GSO_SEGMENTS), 1000, peer, owner),
            "the kernel's segment limit"
        );
        let big = RelayRun {
            len: 64_800,
            stride: 1200,
            last: 1200,
            count: 54,
            ..run
        };
        assert!(
            !big.extends(base.wrapping_add(64_800), 1200, peer, owner),
            "64 KiB"
        );
    }

    proptest! {
        #[test]
        fn random_control_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = gro_size(&bytes);
        }
    }
}
