//! Merging received TCP segments of one flow back into a GSO super-packet for the TUN
//! queue, as the kernel's GRO would, so the inner TCP stack gets one 64 KiB write instead of
//! forty-odd packets.
//!
//! Nothing is copied: a group is written with one vectored write of its virtio-net
//! header, its first packet (whose headers are rewritten in place) and the payloads of the
//! other members where they lie. Segments merge only when the result is exactly what the
//! sender's TSO would have produced: same flow, consecutive sequence numbers, same ACK,
//! window and options, ACK/PSH flags only, every segment but the last `gso_size` bytes.

use std::net::IpAddr;

use super::checksum::{fold, pseudo_header, set_ipv4_header};
use super::{F_NEEDS_CSUM, GsoType, VNET_HDR_LEN, VnetHeader};
use crate::packet::PROTO_TCP;

/// Packets one coalescing pass takes at most.
pub const MAX_PACKETS: usize = 256;
/// Groups kept open for merging at once (distinct flows in a batch).
const OPEN_GROUPS: usize = 8;
/// Most members of one group (one vectored write each).
pub const MAX_MEMBERS: usize = 64;
/// Largest IP packet a group may grow to.
const MAX_GROUP_LEN: usize = 65_535;
/// TCP flags a mergeable segment may carry: ACK and PSH.
const MERGEABLE_FLAGS: u8 = 0x10 | 0x08;
const TCP_PSH: u8 = 0x08;

/// The fields two segments must share to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    addrs: [u8; 32],
    ports: [u8; 4],
    v4: bool,
    tos_ttl: [u8; 2],
}

/// One output packet: a single packet, or several segments merged.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Index of the first member (whose headers lead the super-packet).
    pub first: u16,
    last: u16,
    /// Members.
    pub count: u16,
    /// IP length of the merged packet.
    pub len: u32,
    /// Payload bytes of each member but the last.
    pub gso_size: u16,
    /// IP + TCP header length (0 for packets that are not merge candidates).
    pub header_len: u16,
    mergeable: bool,
    closed: bool,
    key: FlowKey,
    next_seq: u32,
    ack_window: [u8; 6],
    options: [u8; 40],
    options_len: u8,
    psh: bool,
}

/// Groups a batch of received packets; reuse one across batches (no allocation after
/// construction).
#[derive(Debug)]
pub struct Coalescer {
    groups: Vec<Group>,
    next: Vec<u16>,
    open: [u16; OPEN_GROUPS],
    open_len: usize,
    open_cursor: usize,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

const NONE: u16 = u16::MAX;

impl Coalescer {
    /// An empty coalescer for up to [`MAX_PACKETS`] packets a pass.
    pub fn new() -> Self {
        Self {
            groups: Vec::with_capacity(MAX_PACKETS),
            next: vec![NONE; MAX_PACKETS],
            open: [0; OPEN_GROUPS],
            open_len: 0,
            open_cursor: 0,
        }
    }

    /// Starts a new pass.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.open_len = 0;
        self.open_cursor = 0;
    }

    /// The groups of this pass, in order of their first member.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The member after `index` in its group.
    pub fn next_member(&self, index: u16) -> Option<u16> {
        match self.next.get(usize::from(index)) {
            Some(&n) if n != NONE => Some(n),
            _ => None,
        }
    }

    /// Whether the pass is full ([`MAX_PACKETS`] offered).
    pub fn is_full(&self, index: usize) -> bool {
        index >= MAX_PACKETS
    }

    /// Offers packet `index` (indices increase through a pass, below [`MAX_PACKETS`]);
    /// it joins an open group of its flow if it continues it, else starts one.
    pub fn push(&mut self, index: u16, packet: &[u8]) {
        let i = usize::from(index);
        if i >= MAX_PACKETS {
            return;
        }
        self.next[i] = NONE;
        let Some(seg) = Segment::parse(packet) else {
            self.start(index, packet.len(), None);
            return;
        };
        for slot in 0..self.open_len {
            let g_index = usize::from(self.open[slot]);
            let g = &mut self.groups[g_index];
            if g.key != seg.key {
                continue;
            }
            if g.accepts(&seg) {
                self.next[usize::from(g.last)] = index;
                g.last = index;
                g.count += 1;
                g.len += seg.payload_len as u32;
                g.next_seq = g.next_seq.wrapping_add(seg.payload_len as u32);
                g.psh = seg.flags & TCP_PSH != 0;
                g.closed |= g.psh || seg.payload_len < usize::from(g.gso_size);
                return;
            }
            // Same flow but not contiguous: the old group is finished for good.
            g.closed = true;
            self.open[slot] = self.groups.len() as u16;
            self.start(index, packet.len(), Some(seg));
            return;
        }
        let slot = if self.open_len < OPEN_GROUPS {
            self.open_len += 1;
            self.open_len - 1
        } else {
            self.open_cursor = (self.open_cursor + 1) % OPEN_GROUPS;
            self.open_cursor
        };
        self.open[slot] = self.groups.len() as u16;
        self.start(index, packet.len(), Some(seg));
    }

    fn start(&mut self, index: u16, len: usize, seg: Option<Segment>) {
        let mut g = Group {
            first: index,
            last: index,
            count: 1,
            len: len as u32,
            gso_size: 0,
            header_len: 0,
            mergeable: false,
            closed: true,
            key: FlowKey {
                addrs: [0; 32],
                ports: [0; 4],
                v4: false,
                tos_ttl: [0; 2],
            },
            next_seq: 0,
            ack_window: [0; 6],
            options: [0; 40],
            options_len: 0,
            psh: false,
        };
        if let Some(s) = seg {
            g.len = s.ip_len as u32;
            g.mergeable = true;
            g.closed = s.flags & TCP_PSH != 0 || s.payload_len == 0;
            g.gso_size = s.payload_len as u16;
            g.header_len = s.header_len as u16;
            g.key = s.key;
            g.next_seq = s.seq.wrapping_add(s.payload_len as u32);
            g.ack_window = s.ack_window;
            g.options = s.options;
            g.options_len = s.options_len;
            g.psh = s.flags & TCP_PSH != 0;
        }
        self.groups.push(g);
    }
}

impl Group {
    fn accepts(&self, s: &Segment) -> bool {
        self.mergeable
            && !self.closed
            && s.payload_len > 0
            && s.payload_len <= usize::from(self.gso_size)
            && s.seq == self.next_seq
            && s.ack_window == self.ack_window
            && s.options_len == self.options_len
            && s.options[..usize::from(s.options_len)]
                == self.options[..usize::from(self.options_len)]
            && s.header_len == usize::from(self.header_len)
            && self.len as usize + s.payload_len <= MAX_GROUP_LEN
            && usize::from(self.count) < MAX_MEMBERS
    }

    /// The virtio-net header to write before the group.
    pub fn vnet_header(&self) -> VnetHeader {
        if self.count == 1 {
            return VnetHeader::NONE;
        }
        let ip_len = self.header_len - self.tcp_header_len();
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if self.key.v4 {
                GsoType::TcpV4
            } else {
                GsoType::TcpV6
            },
            hdr_len: self.header_len,
            gso_size: self.gso_size,
            csum_start: ip_len,
            csum_offset: 16,
        }
    }

    fn tcp_header_len(&self) -> u16 {
        20 + u16::from(self.options_len)
    }

    /// The virtio-net header bytes.
    pub fn vnet_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        self.vnet_header().emit(&mut b);
        b
    }

    /// Rewrites the first member's headers in place to describe the whole group: IP
    /// length (and IPv4 header checksum), PSH from the last member, and the TCP checksum
    /// field as the pseudo-header sum the kernel completes. A single packet is left as is.
    pub fn rewrite_first(&self, first: &mut [u8]) {
        if self.count == 1 || first.len() < usize::from(self.header_len) {
            return;
        }
        let ip_len = usize::from(self.header_len - self.tcp_header_len());
        let total = self.len as usize;
        let (src, dst) = if self.key.v4 {
            first[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            set_ipv4_header(&mut first[..ip_len]);
            (
                IpAddr::from([first[12], first[13], first[14], first[15]]),
                IpAddr::from([first[16], first[17], first[18], first[19]]),
            )
        } else {
            first[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&first[8..24]);
            d.copy_from_slice(&first[24..40]);
            (IpAddr::from(s), IpAddr::from(d))
        };
        if self.psh {
            first[ip_len + 13] |= TCP_PSH;
        }
        let partial = fold(pseudo_header(src, dst, PROTO_TCP, total - ip_len));
        first[ip_len + 16..ip_len + 18].copy_from_slice(&partial.to_be_bytes());
    }
}

/// The fields of a TCP segment that coalescing looks at.
struct Segment {
    key: FlowKey,
    ip_len: usize,
    header_len: usize,
    payload_len: usize,
    seq: u32,
    flags: u8,
    ack_window: [u8; 6],
    options: [u8; 40],
    options_len: u8,
}

impl Segment {
    /// `None` for anything but a plain TCP segment (IPv4 without options or fragments,
    /// IPv6 without extension headers) with only ACK/PSH set.
    fn parse(p: &[u8]) -> Option<Self> {
        let version = p.first()? >> 4;
        let (ip_hl, ip_len, key) = match version {
            4 => {
                if p.len() < 20 || p[0] != 0x45 || p[9] != PROTO_TCP {
                    return None;
                }
                let frag = u16::from_be_bytes([p[6], p[7]]);
                if frag & 0x3fff != 0 {
                    return None;
                }
                let mut addrs = [0u8; 32];
                addrs[..8].copy_from_slice(&p[12..20]);
                let ip_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
                (
                    20,
                    ip_len,
                    FlowKey {
                        addrs,
                        ports: [0; 4],
                        v4: true,
                        tos_ttl: [p[1], p[8]],
                    },
                )
            }
            6 => {
                if p.len() < 40 || p[6] != PROTO_TCP {
                    return None;
                }
                let mut addrs = [0u8; 32];
                addrs.copy_from_slice(&p[8..40]);
                let ip_len = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
                // Traffic class and flow label must match too.
                let tc = [(p[0] << 4) | (p[1] >> 4), p[7]];
                (
                    40,
                    ip_len,
                    FlowKey {
                        addrs,
                        ports: [0; 4],
                        v4: false,
                        tos_ttl: tc,
                    },
                )
            }
            _ => return None,
        };
        if ip_len > p.len() || ip_len < ip_hl + 20 {
            return None;
        }
        let t = &p[ip_hl..ip_len];
        let thl = usize::from(t[12] >> 4) * 4;
        if !(20..=60).contains(&thl) || thl > t.len() {
            return None;
        }
        let flags = t[13];
        if flags & !MERGEABLE_FLAGS != 0 || flags & 0x10 == 0 {
            return None;
        }
        let mut key = key;
        key.ports.copy_from_slice(&t[..4]);
        // ACK number and window must match; the flags between them may differ in PSH.
        let mut window = [0u8; 6];
        window[..4].copy_from_slice(&t[8..12]);
        window[4..].copy_from_slice(&t[14..16]);
        let mut options = [0u8; 40];
        options[..thl - 20].copy_from_slice(&t[20..thl]);
        Some(Self {
            key,
            ip_len,
            header_len: ip_hl + thl,
            payload_len: ip_len - ip_hl - thl,
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            flags,
            ack_window: window,
            options,
            options_len: (thl - 20) as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnet::segment::tests::{tcp4, transport_checksum_ok};
    use crate::vnet::segment::{SegmentLayout, finish_checksum, segment};
    use proptest::prelude::*;

    /// What the kernel would make of a written group: the super-packet bytes, with the
    /// checksum completed as a device would.
    fn assemble(c: &Coalescer, g: &Group, packets: &mut [Vec<u8>]) -> Vec<u8> {
        g.rewrite_first(&mut packets[usize::from(g.first)]);
        let mut out = packets[usize::from(g.first)][..].to_vec();
        let mut i = c.next_member(g.first);
        while let Some(m) = i {
            out.extend_from_slice(&packets[usize::from(m)][usize::from(g.header_len)..]);
            i = c.next_member(m);
        }
        let h = g.vnet_header();
        if h.flags & F_NEEDS_CSUM != 0 {
            finish_checksum(&h, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn merges_consecutive_segments() {
        let mut packets = vec![
            tcp4(100, 0x10, &[1; 1000], false),
            tcp4(1100, 0x10, &[2; 1000], false),
            tcp4(2100, 0x18, &[3; 500], false),
        ];
        let mut c = Coalescer::new();
        for (i, p) in packets.iter().enumerate() {
            c.push(i as u16, p);
        }
        assert_eq!(c.groups().len(), 1);
        let g = c.groups()[0];
        assert_eq!((g.count, g.gso_size, g.len), (3, 1000, 2540));
        let merged = assemble(&c, &g, &mut packets);
        assert_eq!(
            merged,
            tcp4(
                100,
                0x18,
                &[[1u8; 1000], [2; 1000]]
                    .concat()
                    .into_iter()
                    .chain([3; 500])
                    .collect::<Vec<_>>(),
                false
            )
        );
    }

    #[test]
    fn keeps_gaps_and_other_flags_apart() {
        let packets = [
            tcp4(100, 0x10, &[1; 100], false),
            tcp4(300, 0x10, &[2; 100], false), // gap
            tcp4(400, 0x11, &[3; 100], false), // FIN
            tcp4(500, 0x10, &[4; 100], false),
        ];
        let mut c = Coalescer::new();
        for (i, p) in packets.iter().enumerate() {
            c.push(i as u16, p);
        }
        let counts: Vec<u16> = c.groups().iter().map(|g| g.count).collect();
        assert_eq!(counts, [1, 1, 1, 1]);
        assert_eq!(c.groups()[0].vnet_header(), VnetHeader::NONE);
    }

    proptest! {
        /// Segmenting a super-packet and coalescing the segments gives it back.
        #[test]
        fn segment_then_coalesce_round_trips(len in 1usize..30_000, mss in 500u16..1460) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let sp = tcp4(7, 0x18, &payload, true);
            let hdr = VnetHeader { flags: F_NEEDS_CSUM, gso_type: GsoType::TcpV4, hdr_len: 40, gso_size: mss, csum_start: 20, csum_offset: 16 };
            let stride = 40 + usize::from(mss);
            let mut out = vec![0u8; 128 * stride];
            let mut lens = [0u16; 128];
            let n = segment(&hdr, &sp, &mut out, SegmentLayout { headroom: 0, stride }, &mut lens).unwrap();
            let mut packets: Vec<Vec<u8>> = (0..n).map(|k| out[k * stride..][..usize::from(lens[k])].to_vec()).collect();
            let mut c = Coalescer::new();
            for (i, p) in packets.iter().enumerate() {
                c.push(i as u16, p);
            }
            prop_assert_eq!(c.groups().len(), 1);
            let g = c.groups()[0];
            let merged = assemble(&c, &g, &mut packets);
            let expect = tcp4(7, 0x18, &payload, false);
            prop_assert!(transport_checksum_ok(&merged));
            prop_assert_eq!(merged, expect);
        }

        #[test]
        fn random_packets_never_panic(ps in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..20)) {
            let mut c = Coalescer::new();
            for (i, p) in ps.iter().enumerate() {
                c.push(i as u16, p);
            }
            let mut ps = ps;
            for g in c.groups().to_vec() {
                g.rewrite_first(&mut ps[usize::from(g.first)]);
            }
        }
    }
}
