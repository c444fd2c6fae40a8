//! Tether throughput, both ends on one thread, in memory, and where each layer's cost goes:
//! AES-128-GCM alone, the owned DTLS record path, the owned SCTP data path (DATA framing,
//! SACKs), the whole tether, and the full `rtc` RTCPeerConnection as the reference line.
//! Each iteration moves a batch of 32 messages from one end to the other and back the
//! acknowledgements; throughput is message bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use bytes::BytesMut;
use conflux_dataplane::tether::record::{
    DirectionKey, RECORD_HEADROOM, RecordOpener, RecordSealer, TAG_LEN, content,
};
use conflux_dataplane::tether::sctp::wire::{DATA_OFFSET, Packet};
use conflux_dataplane::tether::sctp::{AssocConfig, AssocParams, Association, Messages};
use conflux_dataplane::tether::{
    HEADROOM, IceCredentials, LocalCertificate, MAX_DATAGRAM, OutPacket, TAILROOM, Tether,
    TetherConfig, TetherState,
};
use conflux_shared::crypto::aead::Backend;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 32;
const SIZES: [usize; 2] = [1200, 1384];

fn aes_gcm(c: &mut Criterion) {
    let mut g = c.benchmark_group("tether/aes128gcm_seal_open");
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).unwrap());
    for len in SIZES {
        g.throughput(Throughput::Bytes((BATCH * len) as u64));
        let mut bufs = vec![vec![0u8; len]; BATCH];
        let mut n = 0u64;
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    n += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&n.to_be_bytes());
                    let aad = [0u8; 13];
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(aad),
                            buf,
                        )
                        .unwrap();
                    key.open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        tag.as_ref(),
                        buf,
                    )
                    .unwrap();
                }
            })
        });
    }
    g.finish();
}

fn dtls_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("tether/dtls_record");
    let k = DirectionKey {
        key: [3; 16],
        salt: [4; 4],
    };
    for len in SIZES {
        g.throughput(Throughput::Bytes((BATCH * len) as u64));
        let mut s = RecordSealer::new(Backend::AwsLc, &k, 1, 0);
        let mut o = RecordOpener::new(Backend::AwsLc, &k, 1);
        let mut bufs = vec![vec![0u8; RECORD_HEADROOM + len + TAG_LEN]; BATCH];
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| {
                for buf in bufs.iter_mut() {
                    let n = s.seal(content::APPLICATION_DATA, buf, len).unwrap();
                    o.open(&mut buf[..n]).unwrap();
                }
            })
        });
    }
    g.finish();
}

fn params(local: u32, peer: u32) -> AssocParams {
    AssocParams {
        local_vtag: local,
        peer_vtag: peer,
        local_initial_tsn: local,
        peer_initial_tsn: peer,
        peer_rwnd: 4 << 20,
        streams: 16,
        forward_tsn: true,
    }
}

fn sctp(c: &mut Criterion) {
    let mut g = c.benchmark_group("tether/sctp_data_sack");
    for len in SIZES {
        g.throughput(Throughput::Bytes((BATCH * len) as u64));
        let mut now = Instant::now();
        let mut a = Association::new(params(11, 22), AssocConfig::default(), now);
        let mut b = Association::new(params(22, 11), AssocConfig::default(), now);
        let mut bufs = vec![vec![0u8; DATA_OFFSET + len + 3]; BATCH];
        let mut ctl = vec![0u8; MAX_DATAGRAM];
        g.bench_function(BenchmarkId::from_parameter(len), |bn| {
            bn.iter(|| {
                now += Duration::from_micros(10);
                let mut delivered = 0;
                for (i, buf) in bufs.iter_mut().enumerate() {
                    let n = a.frame_data(now, buf, len, i as u16 % 4).unwrap();
                    let inb = b.handle_packet(now, &buf[..n]).unwrap();
                    delivered += Messages::new(&buf[..n], inb).count();
                    if let Some(m) = b.poll_control(now, &mut ctl) {
                        a.handle_packet(now, &ctl[..m]).unwrap();
                    }
                }
                a.handle_timeout(now);
                b.handle_timeout(now);
                while let Some(m) = a.poll_control(now, &mut ctl) {
                    b.handle_packet(now, &ctl[..m]).unwrap();
                }
                assert_eq!(delivered, BATCH);
            })
        });
    }
    g.finish();
}

/// The receive-side header check of one SCTP DATA packet, side by side: with its CRC32c
/// (`Packet::parse`, the handshake path) and as the data path reads it, inside an
/// authenticated DTLS record (`Packet::parse_authenticated`).
fn sctp_receive_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("tether/sctp_receive_check");
    let now = Instant::now();
    for len in SIZES {
        g.throughput(Throughput::Bytes((BATCH * len) as u64));
        let mut a = Association::new(params(11, 22), AssocConfig::default(), now);
        let mut buf = vec![0u8; DATA_OFFSET + len + 3];
        let n = a.frame_data(now, &mut buf, len, 0).unwrap();
        let packet = &buf[..n];
        g.bench_function(BenchmarkId::new("crc32c", len), |bn| {
            bn.iter(|| {
                (0..BATCH)
                    .map(|_| Packet::parse(std::hint::black_box(packet)).unwrap().vtag)
                    .fold(0u32, u32::wrapping_add)
            })
        });
        g.bench_function(BenchmarkId::new("authenticated", len), |bn| {
            bn.iter(|| {
                (0..BATCH)
                    .map(|_| {
                        Packet::parse_authenticated(std::hint::black_box(packet))
                            .unwrap()
                            .vtag
                    })
                    .fold(0u32, u32::wrapping_add)
            })
        });
    }
    g.finish();
}

/// Two tethers joined in memory on a simulated clock, connected.
struct TetherPair {
    a: Tether,
    b: Tether,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
    scratch: Vec<u8>,
}

impl TetherPair {
    fn connect() -> Self {
        let a_addr: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:4002".parse().unwrap();
        let (ca, cb) = (
            LocalCertificate::generate().unwrap(),
            LocalCertificate::generate().unwrap(),
        );
        let (ia, ib) = (IceCredentials::random(), IceCredentials::random());
        let fa = ca.fingerprint();
        let fb = cb.fingerprint();
        let ac = TetherConfig::new(a_addr, vec![b_addr], ia.clone(), ib.clone(), true, ca, fb);
        let bc = TetherConfig::new(b_addr, vec![a_addr], ib, ia, false, cb, fa);
        let mut now = Instant::now();
        let mut p = Self {
            a: Tether::new(ac, now).unwrap(),
            b: Tether::new(bc, now).unwrap(),
            a_addr,
            b_addr,
            now,
            scratch: vec![0u8; MAX_DATAGRAM],
        };
        let mut wire: VecDeque<(bool, Vec<u8>)> = VecDeque::new();
        for _ in 0..100_000 {
            if p.a.state() == TetherState::Up && p.b.state() == TetherState::Up {
                return p;
            }
            for to_b in [true, false] {
                let t = if to_b { &mut p.a } else { &mut p.b };
                while let Some(tx) = t.poll_transmit(now, &mut p.scratch) {
                    wire.push_back((to_b, p.scratch[..tx.len].to_vec()));
                }
            }
            if let Some((to_b, mut d)) = wire.pop_front() {
                let (t, from) = if to_b {
                    (&mut p.b, a_addr)
                } else {
                    (&mut p.a, b_addr)
                };
                let _ = t.handle_input(now, from, &mut d).count();
            } else {
                let next = [p.a.poll_timeout(), p.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap();
                now = now.max(next);
                p.now = now;
                p.a.handle_timeout(now);
                p.b.handle_timeout(now);
            }
        }
        panic!("tethers did not connect");
    }

    /// Moves every control datagram across until both sides are quiet.
    fn settle(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            for to_b in [true, false] {
                let (src, dst, from) = if to_b {
                    (&mut self.a, &mut self.b, self.a_addr)
                } else {
                    (&mut self.b, &mut self.a, self.b_addr)
                };
                while let Some(tx) = src.poll_transmit(self.now, &mut self.scratch) {
                    moved = true;
                    let _ = dst
                        .handle_input(self.now, from, &mut self.scratch[..tx.len])
                        .count();
                }
            }
            if !moved {
                return;
            }
        }
    }
}

fn full_tether(c: &mut Criterion) {
    let mut g = c.benchmark_group("tether/full");
    for len in SIZES {
        g.throughput(Throughput::Bytes((BATCH * len) as u64));
        let mut p = TetherPair::connect();
        let mut bufs = vec![vec![0u8; HEADROOM + len + TAILROOM]; BATCH];
        g.bench_function(BenchmarkId::from_parameter(len), |bn| {
            bn.iter(|| {
                p.now += Duration::from_micros(10);
                if p.a.poll_timeout().is_some_and(|t| t <= p.now) {
                    p.a.handle_timeout(p.now);
                }
                if p.b.poll_timeout().is_some_and(|t| t <= p.now) {
                    p.b.handle_timeout(p.now);
                }
                let mut batch: Vec<OutPacket<'_>> = bufs
                    .iter_mut()
                    .enumerate()
                    .map(|(i, b)| OutPacket {
                        buf: b,
                        len,
                        flow: i as u32,
                        datagram_len: 0,
                    })
                    .collect();
                let s = p.a.send_batch(p.now, &mut batch);
                assert_eq!(s.sent, BATCH);
                let mut delivered = 0;
                for o in batch.iter_mut() {
                    let n = o.datagram_len;
                    delivered += p.b.handle_input(p.now, p.a_addr, &mut o.buf[..n]).count();
                }
                assert_eq!(delivered, BATCH);
                p.settle();
            })
        });
    }
    g.finish();
}

mod rtc_reference {
    use super::*;
    use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
    use rtc::peer_connection::RTCPeerConnectionBuilder;
    use rtc::peer_connection::configuration::RTCConfigurationBuilder;
    use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
    use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
    use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
    use rtc::peer_connection::transport::{
        CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
    };
    use rtc::peer_connection::{RTCPeerConnection, state::RTCPeerConnectionState};
    use rtc::sansio::Protocol;
    use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

    pub(super) struct RtcPair {
        a: RTCPeerConnection,
        b: RTCPeerConnection,
        a_addr: SocketAddr,
        b_addr: SocketAddr,
        a_dc: RTCDataChannelId,
    }

    fn peer(addr: SocketAddr, role: RTCDtlsRole) -> RTCPeerConnection {
        let se = SettingEngineBuilder::new()
            .with_answering_dtls_role(role)
            .with_sctp_mtu(1400)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(se)
            .build(Instant::now())
            .unwrap();
        let cand = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&cand).to_json().unwrap())
            .unwrap();
        pc
    }

    fn shuttle(
        src: &mut RTCPeerConnection,
        dst: &mut RTCPeerConnection,
        dst_addr: SocketAddr,
    ) -> (bool, usize) {
        let mut moved = false;
        while let Some(m) = src.poll_write() {
            moved = true;
            let _ = dst.handle_read(TaggedBytesMut {
                now: Instant::now(),
                transport: TransportContext {
                    local_addr: dst_addr,
                    peer_addr: m.transport.local_addr,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: m.message,
            });
        }
        let mut got = 0;
        while let Some(TaggedRTCMessage { message, .. }) = dst.poll_read() {
            if let RTCMessage::DataChannelMessage(..) = message {
                got += 1;
            }
        }
        (moved, got)
    }

    impl RtcPair {
        pub(super) fn connect() -> Self {
            let a_addr: SocketAddr = "127.0.0.1:5001".parse().unwrap();
            let b_addr: SocketAddr = "127.0.0.1:5002".parse().unwrap();
            let mut a = peer(a_addr, RTCDtlsRole::Server);
            let mut b = peer(b_addr, RTCDtlsRole::Client);
            let init = RTCDataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                negotiated: Some(1),
                ..Default::default()
            };
            let a_dc = a
                .create_data_channel("bench", Some(init.clone()))
                .unwrap()
                .id();
            b.create_data_channel("bench", Some(init)).unwrap();
            let offer = a.create_offer(None).unwrap();
            a.set_local_description(Instant::now(), offer.clone())
                .unwrap();
            b.set_remote_description(Instant::now(), offer).unwrap();
            let answer = b.create_answer(None).unwrap();
            b.set_local_description(Instant::now(), answer.clone())
                .unwrap();
            a.set_remote_description(Instant::now(), answer).unwrap();
            let mut p = Self {
                a,
                b,
                a_addr,
                b_addr,
                a_dc,
            };
            let (mut up, mut open) = (false, false);
            let start = Instant::now();
            while !(up && open) {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "rtc pair did not connect"
                );
                shuttle(&mut p.a, &mut p.b, p.b_addr);
                shuttle(&mut p.b, &mut p.a, p.a_addr);
                while let Some(e) = p.a.poll_event() {
                    match e {
                        RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                            RTCPeerConnectionState::Connected,
                        ) => up = true,
                        RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) => {
                            open = true
                        }
                        _ => {}
                    }
                }
                while p.b.poll_event().is_some() {}
                let now = Instant::now();
                p.a.handle_timeout(now).ok();
                p.b.handle_timeout(now).ok();
                std::thread::sleep(Duration::from_micros(200));
            }
            p
        }

        /// Sends a batch from A and carries everything across until B has it all.
        pub(super) fn round(&mut self, payload: &[u8]) -> usize {
            let now = Instant::now();
            let mut dc = self.a.data_channel(self.a_dc).unwrap();
            for _ in 0..BATCH {
                dc.send(now, BytesMut::from(payload)).unwrap();
            }
            let mut got = 0;
            for _ in 0..64 {
                let (m1, g) = shuttle(&mut self.a, &mut self.b, self.b_addr);
                let (m2, _) = shuttle(&mut self.b, &mut self.a, self.a_addr);
                got += g;
                while self.a.poll_event().is_some() {}
                while self.b.poll_event().is_some() {}
                if !m1 && !m2 {
                    break;
                }
            }
            self.a.handle_timeout(Instant::now()).ok();
            self.b.handle_timeout(Instant::now()).ok();
            got
        }
    }
}

fn rtc_peer_connection(c: &mut Criterion) {
    let mut g = c.benchmark_group("tether/rtc_peer_connection");
    for len in SIZES {
        g.throughput(Throughput::Bytes((BATCH * len) as u64));
        let mut p = rtc_reference::RtcPair::connect();
        let payload = vec![0x42u8; len];
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| p.round(&payload))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    aes_gcm,
    dtls_record,
    sctp,
    sctp_receive_check,
    full_tether,
    rtc_peer_connection
);
criterion_main!(benches);
