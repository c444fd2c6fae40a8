//! The data plane's in-memory packet path, layer by layer, on one core: a TUN GSO
//! super-packet (64 KiB of TCP) is split into wire-sized segments, sealed in place as one
//! batch, handed to the hop transport as datagrams, opened in place as one batch, checked
//! and coalesced back into one super-packet for the TUN queue. No sockets and no TUN: the
//! system-call side is what the namespace figures in perf/RESULTS.md add.
//!
//! Each line runs the path up to one more layer, so the cost of a layer is the difference
//! from the line before. Time is the thread's CPU time.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use conflux_benches::cpu_time::ThreadCpuTime;
use conflux_dataplane::counters::{Counters, monotonic_ns};
use conflux_dataplane::egress::{EgressVerdict, egress};
use conflux_dataplane::hop::{HopTransport, Plain};
use conflux_dataplane::ingress::{IngressVerdict, ingress};
use conflux_dataplane::relay::RelayLimiter;
use conflux_dataplane::table::Tables;
use conflux_dataplane::vnet::coalesce::Coalescer;
use conflux_dataplane::vnet::segment::{SegmentLayout, segment};
use conflux_dataplane::vnet::{F_NEEDS_CSUM, GsoType, VnetHeader};
use conflux_shared::crypto::aead::Verdict;
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;
use conflux_shared::wire::data::{HEADER_LEN, KeyEpoch, OVERHEAD};
use conflux_shared::wire::record::{
    Direction, InstallRouteBody, InstallStreamBody, InstallTetherBody, IpPrefix, NextHop,
    RingRecord,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustix::time::{ClockId, clock_gettime};

const A: [u8; 4] = [100, 64, 0, 1];
const B: [u8; 4] = [100, 64, 0, 2];
/// TCP payload per segment at a 1,400-byte TUN MTU.
const MSS: usize = 1360;
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
        egress(
            &mut self.a,
            &mut self.ca,
            std::time::Instant::now(),
            &mut pkts,
            &mut self.eg[..n],
        );
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

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("packet_path_64k_tcp");
    g.throughput(Throughput::Bytes((SEGMENTS * MSS) as u64));
    for (name, depth) in [
        ("1_segment", Depth::Segment),
        ("2_segment_seal", Depth::Seal),
        ("3_segment_seal_frame", Depth::Frame),
        ("4_segment_seal_frame_open_check", Depth::Open),
        ("5_full_round_trip_with_coalesce", Depth::Coalesce),
    ] {
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let mut p = Path::new();
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
