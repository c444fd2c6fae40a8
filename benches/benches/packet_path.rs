//! The data plane's in-memory packet path, layer by layer, on one core: a TUN GSO
//! super-packet (64 KiB of TCP) is split into wire-sized segments, sealed in place as one
//! batch, handed to the hop transport as datagrams, opened in place as one batch, checked
//! and coalesced back into one super-packet for the TUN queue. No sockets and no TUN: the
//! system-call side is what the namespace figures in perf/RESULTS.md add.
//!
//! Each line runs the path up to one more layer, so the cost of a layer is the difference
//! from the line before. Time is the thread's CPU time.
//!
//! Two groups: `packet_path_64k_tcp` with the plain transport (one sealed packet per
//! datagram), and `packet_path_64k_tcp_webrtc` with the WebRTC tether as the worker drives
//! it (`hop::mixed::Mixed`, two tethers connected in memory): each sealed packet becomes
//! one SCTP DATA chunk in one DTLS record in one datagram, and the receiving tether opens
//! the record, takes the chunk and acknowledges it. Its extra lines split the framing:
//! `3a` seals only the DTLS record around each packet (no SCTP), so DTLS record = 3a − 2
//! and SCTP framing = 3 − 3a; `4` is the receiving tether (record open, chunk, SACK back).
//! Both groups use the default TUN MTU (1,352: one inner packet per chunk and datagram).
//!
//! `2b_segment_seal_within_path_mtu` is line 2 with each packet checked against its
//! tether's path MTU (`egress_within`, as the worker runs it: every segment here is above
//! the base size, so each one is looked at; a SYN would also be MSS-clamped): the cost of
//! the size check is 2b − 2. The WebRTC group seals within the real tether's path MTU.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use conflux_benches::cpu_time::ThreadCpuTime;
use conflux_dataplane::counters::{Counters, monotonic_ns};
use conflux_dataplane::egress::{EgressVerdict, egress, egress_within};
use conflux_dataplane::hop::mixed::Mixed;
use conflux_dataplane::hop::{HopTransport, Plain, StateChange};
use conflux_dataplane::ingress::{IngressVerdict, ingress};
use conflux_dataplane::relay::RelayLimiter;
use conflux_dataplane::table::Tables;
use conflux_dataplane::tether::record::{DirectionKey, RecordSealer, content};
use conflux_dataplane::tether::{
    IceCredentials, LocalCertificate, MAX_DATAGRAM, TUN_MTU, TetherConfig,
};
use conflux_dataplane::vnet::coalesce::Coalescer;
use conflux_dataplane::vnet::segment::{SegmentLayout, segment};
use conflux_dataplane::vnet::{F_NEEDS_CSUM, GsoType, VnetHeader};
use conflux_shared::crypto::aead::{Backend, Verdict};
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;
use conflux_shared::wire::data::{HEADER_LEN, KeyEpoch, OVERHEAD};
use conflux_shared::wire::record::{
    Direction, InstallRouteBody, InstallStreamBody, InstallTetherBody, IpPrefix, NextHop,
    RingRecord, TetherState,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustix::time::{ClockId, clock_gettime};

const A: [u8; 4] = [100, 64, 0, 1];
const B: [u8; 4] = [100, 64, 0, 2];
/// TCP payload per segment at the default TUN MTU.
const MSS: usize = TUN_MTU - 40;
const SEGMENTS: usize = 48;
const STRIDE: usize = OVERHEAD + 40 + MSS;

fn cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn apply(t: &mut Tables, rec: RingRecord) {
    let r = rec.decode().expect("valid record");
    t.apply(&r, std::time::Instant::now(), monotonic_ns())
        .expect("applied");
}

/// A's and B's tables for one stream A → B.
fn tables() -> (Tables, Tables) {
    let key = StreamKey {
        key: [7; 32],
        nonce_base: [9; 12],
    };
    let id = StreamId([1; 16]);
    let life = monotonic_ns() + 3_600_000_000_000;
    let mut a = Tables::default();
    apply(
        &mut a,
        RingRecord::encode(&InstallTetherBody::new(
            1,
            "192.0.2.2:51820".parse().unwrap(),
        ))
        .unwrap(),
    );
    let s = InstallStreamBody::new(
        id,
        Direction::Egress,
        0,
        KeyEpoch::Even,
        7,
        life,
        IpAddr::from(B),
        &key,
    );
    apply(&mut a, RingRecord::encode(&s).unwrap());
    let r = InstallRouteBody::forward(IpPrefix::host(IpAddr::from(B)), &[NextHop::new(1, 7, 1)])
        .unwrap();
    apply(&mut a, RingRecord::encode(&r).unwrap());
    let mut b = Tables::default();
    let s = InstallStreamBody::new(
        id,
        Direction::Ingress,
        0,
        KeyEpoch::Even,
        7,
        life,
        IpAddr::from(A),
        &key,
    );
    apply(&mut b, RingRecord::encode(&s).unwrap());
    (a, b)
}

/// A TCP/IPv4 GSO super-packet of `SEGMENTS * MSS` payload bytes, checksum partial.
fn super_packet() -> (VnetHeader, Vec<u8>) {
    let payload = SEGMENTS * MSS;
    let len = 40 + payload;
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((len as u16).max(1)).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&A);
    p[16..20].copy_from_slice(&B);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x18;
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let h = VnetHeader {
        flags: F_NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        hdr_len: 40,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (h, p)
}

/// How far along the path one iteration goes.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Depth {
    Segment,
    Seal,
    Frame,
    Open,
    Coalesce,
}

struct Path {
    a: Tables,
    b: Tables,
    hdr: VnetHeader,
    sp: Vec<u8>,
    slab: Vec<u8>,
    lens: [u16; 64],
    eg: Vec<EgressVerdict>,
    ing: Vec<IngressVerdict>,
    aead: Vec<Verdict>,
    ca: Counters,
    cb: Counters,
    limiter: RelayLimiter,
    coalescer: Coalescer,
    hop: Plain,
    sent: u64,
    /// Seal within a path MTU (the tether carries exactly the default full-size packet).
    within: bool,
}

impl Path {
    fn new() -> Self {
        let (a, b) = tables();
        let (hdr, sp) = super_packet();
        Self {
            a,
            b,
            hdr,
            sp,
            slab: vec![0u8; 64 * STRIDE],
            lens: [0; 64],
            eg: vec![EgressVerdict::Pending; 64],
            ing: vec![IngressVerdict::Pending; 64],
            aead: vec![Verdict::Pending; 64],
            ca: Counters::default(),
            cb: Counters::default(),
            limiter: RelayLimiter::new(),
            coalescer: Coalescer::new(),
            hop: Plain::default(),
            sent: 0,
            within: false,
        }
    }

    fn run(&mut self, depth: Depth) {
        // A lane's counters under one key run out after 2^24 packets: start over well before.
        if self.sent > 8_000_000 {
            let (a, b) = tables();
            (self.a, self.b, self.sent) = (a, b, 0);
        }
        let layout = SegmentLayout {
            headroom: HEADER_LEN,
            stride: STRIDE,
        };
        let n = segment(&self.hdr, &self.sp, &mut self.slab, layout, &mut self.lens).unwrap();
        if depth == Depth::Segment {
            black_box(&self.slab);
            return;
        }
        let lens = self.lens;
        let mut pkts: Vec<&mut [u8]> = self
            .slab
            .chunks_mut(STRIDE)
            .zip(&lens[..n])
            .map(|(c, &l)| &mut c[..usize::from(l) + OVERHEAD])
            .collect();
        if self.within {
            egress_within(
                &mut self.a,
                &mut self.ca,
                std::time::Instant::now(),
                &mut pkts,
                &mut self.eg[..n],
                &|_| black_box(TUN_MTU + OVERHEAD),
            );
            debug_assert!(matches!(self.eg[0], EgressVerdict::Send { .. }));
        } else {
            egress(
                &mut self.a,
                &mut self.ca,
                std::time::Instant::now(),
                &mut pkts,
                &mut self.eg[..n],
            );
        }
        self.sent += n as u64;
        if depth == Depth::Seal {
            black_box(&pkts);
            return;
        }
        let now = std::time::Instant::now();
        for p in pkts.iter_mut() {
            let len = p.len();
            black_box(self.hop.frame(now, 1, 0, p, len));
        }
        if depth == Depth::Frame {
            return;
        }
        ingress(
            &mut self.b,
            &mut self.cb,
            &mut self.limiter,
            now,
            &mut pkts,
            &mut self.ing[..n],
            &mut self.aead[..n],
        );
        if depth == Depth::Open {
            black_box(&self.ing);
            return;
        }
        self.coalescer.clear();
        for (i, p) in pkts.iter().enumerate() {
            if let IngressVerdict::Deliver { offset, len } = self.ing[i] {
                self.coalescer.push(i as u16, &p[offset..offset + len]);
            }
        }
        let g = self.coalescer.groups()[0];
        assert_eq!(usize::from(g.count), n, "one group of every segment");
        g.rewrite_first(&mut pkts[0][HEADER_LEN..]);
        black_box(g.vnet_bytes());
    }
}

/// How far along the WebRTC path one iteration goes.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum WebDepth {
    Segment,
    Seal,
    RecordOnly,
    Frame,
    Unframe,
    Open,
    Coalesce,
}

/// Two `Mixed` transports with one WebRTC tether between them, connected in memory.
fn connected_hops() -> (Mixed, Mixed, SocketAddr, SocketAddr) {
    let a_addr: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let b_addr: SocketAddr = "192.0.2.2:51820".parse().unwrap();
    let (ca, cb) = (
        LocalCertificate::generate().unwrap(),
        LocalCertificate::generate().unwrap(),
    );
    let (ia, ib) = (IceCredentials::random(), IceCredentials::random());
    let (fa, fb) = (ca.fingerprint(), cb.fingerprint());
    let now = Instant::now();
    let (mut a, mut b) = (Mixed::new(), Mixed::new());
    a.open_tether(
        now,
        1,
        TetherConfig::new(a_addr, vec![b_addr], ia.clone(), ib.clone(), true, ca, fb),
    )
    .unwrap();
    b.open_tether(
        now,
        1,
        TetherConfig::new(b_addr, vec![a_addr], ib, ia, false, cb, fa),
    )
    .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut ranges = vec![0..0; 16];
    let (mut up_a, mut up_b) = (false, false);
    for _ in 0..10_000 {
        let now = Instant::now();
        shuttle(now, &mut a, &mut b, a_addr, b_addr, &mut buf, &mut ranges);
        let is_up = |c: StateChange| c.state == TetherState::Up;
        while let Some(c) = a.poll_state() {
            up_a |= is_up(c);
        }
        while let Some(c) = b.poll_state() {
            up_b |= is_up(c);
        }
        if up_a && up_b {
            // The first path MTU probes and their answers: a tether starts at the base
            // size and full-size packets fit once the probe is answered.
            shuttle(now, &mut a, &mut b, a_addr, b_addr, &mut buf, &mut ranges);
            return (a, b, a_addr, b_addr);
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("tethers did not connect");
}

/// Moves every pending transport datagram (handshake, SACK, heartbeat) across both ways.
fn shuttle(
    now: Instant,
    a: &mut Mixed,
    b: &mut Mixed,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    buf: &mut [u8],
    ranges: &mut [Range<usize>],
) {
    for _ in 0..64 {
        let mut moved = false;
        while let Some((_, n)) = a.poll_transmit(now, buf) {
            moved = true;
            b.unframe(now, a_addr, Some(1), &mut buf[..n], ranges);
        }
        while let Some((_, n)) = b.poll_transmit(now, buf) {
            moved = true;
            a.unframe(now, b_addr, Some(1), &mut buf[..n], ranges);
        }
        if !moved {
            return;
        }
    }
}

struct WebPath {
    a: Tables,
    b: Tables,
    hdr: VnetHeader,
    sp: Vec<u8>,
    slab: Vec<u8>,
    stride: usize,
    lens: [u16; 64],
    eg: Vec<EgressVerdict>,
    ing: Vec<IngressVerdict>,
    aead: Vec<Verdict>,
    ca: Counters,
    cb: Counters,
    limiter: RelayLimiter,
    coalescer: Coalescer,
    hop_a: Mixed,
    hop_b: Mixed,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    /// A DTLS record sealer alone, for the record-only line.
    record: RecordSealer,
    datagrams: Vec<usize>,
    messages: Vec<Range<usize>>,
    ranges: Vec<Range<usize>>,
    scratch: Vec<u8>,
    sent: u64,
}

impl WebPath {
    fn new() -> Self {
        let (a, b) = tables();
        let (hdr, sp) = super_packet();
        let (hop_a, hop_b, a_addr, b_addr) = connected_hops();
        let stride = hop_a.framed_len(OVERHEAD + 40 + MSS);
        let key = DirectionKey {
            key: [3; 16],
            salt: [4; 4],
        };
        Self {
            a,
            b,
            hdr,
            sp,
            slab: vec![0u8; 64 * stride + 64],
            stride,
            lens: [0; 64],
            eg: vec![EgressVerdict::Pending; 64],
            ing: vec![IngressVerdict::Pending; 64],
            aead: vec![Verdict::Pending; 64],
            ca: Counters::default(),
            cb: Counters::default(),
            limiter: RelayLimiter::new(),
            coalescer: Coalescer::new(),
            hop_a,
            hop_b,
            a_addr,
            b_addr,
            record: RecordSealer::new(Backend::AwsLc, &key, 1, 0),
            datagrams: vec![0; 64],
            messages: vec![0..0; 64],
            ranges: vec![0..0; 16],
            scratch: vec![0u8; MAX_DATAGRAM],
            sent: 0,
        }
    }

    /// Runs one iteration; returns CPU time spent on work the line does not measure.
    fn run(&mut self, depth: WebDepth) -> Duration {
        if self.sent > 8_000_000 {
            let (a, b) = tables();
            (self.a, self.b, self.sent) = (a, b, 0);
        }
        let (th, tt, stride) = (self.hop_a.headroom(), self.hop_a.tailroom(), self.stride);
        let layout = SegmentLayout {
            headroom: th + HEADER_LEN,
            stride,
        };
        let n = segment(&self.hdr, &self.sp, &mut self.slab, layout, &mut self.lens).unwrap();
        if depth == WebDepth::Segment {
            black_box(&self.slab);
            return Duration::ZERO;
        }
        let lens = self.lens;
        let now = Instant::now();
        {
            let mut pkts: Vec<&mut [u8]> = self
                .slab
                .chunks_mut(stride)
                .zip(&lens[..n])
                .map(|(c, &l)| &mut c[th..th + usize::from(l) + OVERHEAD])
                .collect();
            let hop = &self.hop_a;
            egress_within(
                &mut self.a,
                &mut self.ca,
                now,
                &mut pkts,
                &mut self.eg[..n],
                &|t| hop.max_packet(t),
            );
        }
        self.sent += n as u64;
        if depth == WebDepth::Seal {
            black_box(&self.slab);
            return Duration::ZERO;
        }
        if depth == WebDepth::RecordOnly {
            // The DTLS record alone around each sealed packet, where SCTP's headers would
            // be in the headroom.
            let off = th - conflux_dataplane::tether::record::RECORD_HEADROOM;
            for (k, &l) in lens[..n].iter().enumerate() {
                let len = usize::from(l) + OVERHEAD;
                let slot = &mut self.slab[k * stride + off..][..th - off + len + tt];
                black_box(
                    self.record
                        .seal(content::APPLICATION_DATA, slot, len)
                        .unwrap(),
                );
            }
            return Duration::ZERO;
        }
        for (k, &l) in lens[..n].iter().enumerate() {
            let len = usize::from(l) + OVERHEAD;
            let start = k * stride;
            let end = (start + th + len + tt).min(self.slab.len());
            let r = self
                .hop_a
                .frame(now, 1, 0, &mut self.slab[start..end], len)
                .expect("tether up");
            self.datagrams[k] = r.end;
        }
        if depth == WebDepth::Frame {
            // The receiver still takes the datagrams and acknowledges them, so the sender's
            // window stays open, but off the clock of this line.
            let t = cpu();
            self.receive(now, n);
            return cpu() - t;
        }
        self.receive(now, n);
        if depth == WebDepth::Unframe {
            return Duration::ZERO;
        }
        let messages = &self.messages[..n];
        let mut pkts: Vec<&mut [u8]> = self
            .slab
            .chunks_mut(stride)
            .zip(messages)
            .map(|(c, r)| &mut c[r.clone()])
            .collect();
        ingress(
            &mut self.b,
            &mut self.cb,
            &mut self.limiter,
            now,
            &mut pkts,
            &mut self.ing[..n],
            &mut self.aead[..n],
        );
        if depth == WebDepth::Open {
            black_box(&self.ing);
            return Duration::ZERO;
        }
        self.coalescer.clear();
        for (i, p) in pkts.iter().enumerate() {
            if let IngressVerdict::Deliver { offset, len } = self.ing[i] {
                self.coalescer.push(i as u16, &p[offset..offset + len]);
            }
        }
        let g = self.coalescer.groups()[0];
        assert_eq!(usize::from(g.count), n, "one group of every segment");
        g.rewrite_first(&mut pkts[0][HEADER_LEN..]);
        black_box(g.vnet_bytes());
        Duration::ZERO
    }

    /// B's tether takes each datagram (record open, DATA chunk), then the SACKs go back.
    fn receive(&mut self, now: Instant, n: usize) {
        let stride = self.stride;
        for k in 0..n {
            let d = &mut self.slab[k * stride..k * stride + self.datagrams[k]];
            let got = self
                .hop_b
                .unframe(now, self.a_addr, Some(1), d, &mut self.ranges);
            assert_eq!(got, 1, "one message per datagram");
            self.messages[k] = self.ranges[0].clone();
        }
        if self.hop_b.poll_timeout().is_some_and(|t| t <= now) {
            self.hop_b.handle_timeout(now);
        }
        if self.hop_a.poll_timeout().is_some_and(|t| t <= now) {
            self.hop_a.handle_timeout(now);
        }
        shuttle(
            now,
            &mut self.hop_a,
            &mut self.hop_b,
            self.a_addr,
            self.b_addr,
            &mut self.scratch,
            &mut self.ranges,
        );
    }
}

fn bench_webrtc(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("packet_path_64k_tcp_webrtc");
    g.throughput(Throughput::Bytes((SEGMENTS * MSS) as u64));
    for (name, depth) in [
        ("1_segment", WebDepth::Segment),
        ("2_segment_seal", WebDepth::Seal),
        ("3a_segment_seal_dtls_record_only", WebDepth::RecordOnly),
        ("3_segment_seal_frame_sctp_dtls", WebDepth::Frame),
        ("4_frame_and_tether_receive_with_sacks", WebDepth::Unframe),
        ("5_frame_receive_open_check", WebDepth::Open),
        ("6_full_round_trip_with_coalesce", WebDepth::Coalesce),
    ] {
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let mut p = WebPath::new();
                p.run(depth);
                let start = cpu();
                let mut unmeasured = Duration::ZERO;
                for _ in 0..iters {
                    unmeasured += p.run(depth);
                }
                (cpu() - start).saturating_sub(unmeasured)
            })
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("packet_path_64k_tcp");
    g.throughput(Throughput::Bytes((SEGMENTS * MSS) as u64));
    for (name, depth) in [
        ("1_segment", Depth::Segment),
        ("2_segment_seal", Depth::Seal),
        ("2b_segment_seal_within_path_mtu", Depth::Seal),
        ("3_segment_seal_frame", Depth::Frame),
        ("4_segment_seal_frame_open_check", Depth::Open),
        ("5_full_round_trip_with_coalesce", Depth::Coalesce),
    ] {
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let mut p = Path::new();
                p.within = name.starts_with("2b");
                p.run(depth);
                let start = cpu();
                for _ in 0..iters {
                    p.run(depth);
                }
                cpu() - start
            })
        });
    }
    g.finish();
}

/// The Internet checksum of one 1,400-byte segment, side by side: the big-endian 64-bit
/// word loop with a carry chain the segmenter used before, and the data plane's
/// `vnet::checksum::checksum` (native 32-bit words, no carry chain).
fn bench_checksum(c: &mut Criterion<ThreadCpuTime>) {
    fn carry_chain(bytes: &[u8]) -> u16 {
        let mut sum = 0u64;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let (s, carry) = sum.overflowing_add(w);
            sum = s + u64::from(carry);
        }
        for w in chunks.remainder().chunks(2) {
            let hi = u64::from(w[0]) << 8;
            sum = sum.wrapping_add(hi | w.get(1).map_or(0, |&b| u64::from(b)));
        }
        !conflux_dataplane::vnet::checksum::fold(sum)
    }
    let bytes: Vec<u8> = (0..1400u32).map(|i| (i * 131 + 7) as u8).collect();
    assert_eq!(
        carry_chain(&bytes),
        conflux_dataplane::vnet::checksum::checksum(&bytes)
    );
    let mut g = c.benchmark_group("vnet_checksum_1400");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("carry_chain_before", |b| {
        b.iter(|| carry_chain(black_box(&bytes)))
    });
    g.bench_function("native_words", |b| {
        b.iter(|| conflux_dataplane::vnet::checksum::checksum(black_box(&bytes)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench, bench_webrtc, bench_checksum
}
criterion_main!(benches);
