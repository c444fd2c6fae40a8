//! Two tethers joined in memory by a simulated network with a simulated clock.

use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

/// Deterministic xorshift for loss and jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    to_b: bool,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Network conditions of one direction pair.
#[derive(Clone, Copy)]
struct Net {
    latency: Duration,
    loss: f64,
    jitter: Duration,
}

struct Pair {
    now: Instant,
    a: Tether,
    b: Tether,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    wire: BinaryHeap<InFlight>,
    seq: u64,
    net: Net,
    rng: Rng,
    /// Drop everything B sends (a dead path).
    cut_b_to_a: bool,
    /// Drop everything A sends.
    cut_a_to_b: bool,
    /// Drop datagrams longer than this, both ways (a path MTU, silently enforced).
    max_len: usize,
    got_a: Vec<(u16, Vec<u8>)>,
    got_b: Vec<(u16, Vec<u8>)>,
    events_a: Vec<TetherEvent>,
    events_b: Vec<TetherEvent>,
    buf: Vec<u8>,
}

fn configs(mismatch: bool) -> (TetherConfig, TetherConfig) {
    let a_addr: SocketAddr = "10.0.0.1:4001".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:4002".parse().unwrap();
    let (ca, cb) = (
        LocalCertificate::generate().unwrap(),
        LocalCertificate::generate().unwrap(),
    );
    let (ia, ib) = (IceCredentials::random(), IceCredentials::random());
    let expect_b = if mismatch {
        LocalCertificate::generate().unwrap().fingerprint()
    } else {
        cb.fingerprint()
    };
    let a = TetherConfig::new(
        a_addr,
        vec![b_addr],
        ia.clone(),
        ib.clone(),
        true,
        ca.clone(),
        expect_b,
    );
    let b = TetherConfig::new(b_addr, vec![a_addr], ib, ia, false, cb, ca.fingerprint());
    (a, b)
}

impl Pair {
    fn new(a: TetherConfig, b: TetherConfig, net: Net) -> Self {
        let now = Instant::now();
        let (a_addr, b_addr) = (a.local_addr, b.local_addr);
        Self {
            now,
            a: Tether::new(a, now).unwrap(),
            b: Tether::new(b, now).unwrap(),
            a_addr,
            b_addr,
            wire: BinaryHeap::new(),
            seq: 0,
            net,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            cut_b_to_a: false,
            cut_a_to_b: false,
            max_len: usize::MAX,
            got_a: Vec::new(),
            got_b: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            buf: vec![0u8; MAX_DATAGRAM],
        }
    }

    fn put(&mut self, to_b: bool, data: Vec<u8>) {
        let cut = if to_b {
            self.cut_a_to_b
        } else {
            self.cut_b_to_a
        };
        if self.rng.chance(self.net.loss) || cut || data.len() > self.max_len {
            return;
        }
        let jitter = if self.net.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.next() % self.net.jitter.as_nanos() as u64)
        };
        self.seq += 1;
        self.wire.push(InFlight {
            at: self.now + self.net.latency + jitter,
            seq: self.seq,
            to_b,
            data,
        });
    }

    /// Drains every tether output into the wire.
    fn flush(&mut self) {
        for side_a in [true, false] {
            loop {
                let t = if side_a { &mut self.a } else { &mut self.b };
                let Some(tx) = t.poll_transmit(self.now, &mut self.buf) else {
                    break;
                };
                let data = self.buf[..tx.len].to_vec();
                self.put(side_a, data);
            }
            let t = if side_a { &mut self.a } else { &mut self.b };
            while let Some(e) = t.poll_event() {
                if side_a {
                    self.events_a.push(e);
                } else {
                    self.events_b.push(e);
                }
            }
        }
    }

    /// Delivers the next datagram or fires the next timer; false when nothing is left.
    fn step(&mut self) -> bool {
        self.flush();
        let next_timer = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let next_packet = self.wire.peek().map(|p| p.at);
        match (next_packet, next_timer) {
            (Some(p), t) if t.is_none_or(|t| p <= t) => {
                let mut pkt = self.wire.pop().unwrap();
                self.now = self.now.max(pkt.at);
                let (t, from, got) = if pkt.to_b {
                    (&mut self.b, self.a_addr, &mut self.got_b)
                } else {
                    (&mut self.a, self.b_addr, &mut self.got_a)
                };
                for m in t.handle_input(self.now, from, &mut pkt.data) {
                    got.push((m.channel, m.data.to_vec()));
                }
            }
            (_, Some(t)) => {
                self.now = self.now.max(t);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            _ => return false,
        }
        true
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.flush();
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Runs until both tethers are up and their path MTU searches have completed.
    fn connect(&mut self) {
        let ok = self.run_until(Duration::from_secs(10), |p| {
            p.a.state() == TetherState::Up
                && p.b.state() == TetherState::Up
                && p.searched(true)
                && p.searched(false)
        });
        assert!(
            ok,
            "not connected: {:?} {:?}",
            self.a.state(),
            self.b.state()
        );
    }

    /// Whether one side's path MTU search has completed.
    fn searched(&self, a: bool) -> bool {
        let t = if a { &self.a } else { &self.b };
        t.assoc
            .as_ref()
            .is_some_and(|s| s.path_mtu().phase() == sctp::pmtu::PmtuPhase::Complete)
    }

    /// Sends `count` numbered messages from one side, in batches, as the window allows.
    fn send_numbered(&mut self, from_a: bool, start: u64, count: u64, len: usize) -> u64 {
        let mut bufs: Vec<Vec<u8>> = (0..32)
            .map(|_| vec![0u8; HEADROOM + len + TAILROOM])
            .collect();
        let mut sent = 0;
        while sent < count {
            let n = (count - sent).min(32) as usize;
            let mut batch: Vec<OutPacket<'_>> = bufs[..n]
                .iter_mut()
                .enumerate()
                .map(|(i, b)| {
                    let id = start + sent + i as u64;
                    fill(&mut b[HEADROOM..HEADROOM + len], id);
                    OutPacket {
                        buf: b,
                        len,
                        flow: id as u32,
                        datagram_len: 0,
                    }
                })
                .collect();
            let t = if from_a { &mut self.a } else { &mut self.b };
            let s = t.send_batch(self.now, &mut batch);
            let out: Vec<Vec<u8>> = batch
                .iter()
                .take(s.sent)
                .map(|p| p.buf[..p.datagram_len].to_vec())
                .collect();
            drop(batch);
            sent += s.sent as u64;
            for d in out {
                self.put(from_a, d);
            }
            if s.refused > 0 || s.sent == 0 {
                // Window full: let the network and timers move.
                for _ in 0..64 {
                    if !self.step() {
                        break;
                    }
                }
            }
        }
        sent
    }
}

fn fill(buf: &mut [u8], id: u64) {
    buf[..8].copy_from_slice(&id.to_be_bytes());
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = (id as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
}

fn check(msg: &[u8], len: usize) -> u64 {
    assert_eq!(msg.len(), len);
    let id = u64::from_be_bytes(msg[..8].try_into().unwrap());
    let mut want = vec![0u8; len];
    fill(&mut want, id);
    assert_eq!(msg, &want[..], "content of message {id}");
    id
}

const CLEAN: Net = Net {
    latency: Duration::from_millis(1),
    loss: 0.0,
    jitter: Duration::ZERO,
};

#[test]
fn connects_and_checks_fingerprints() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b, CLEAN);
    p.connect();
    assert_eq!(p.events_a.first(), Some(&TetherEvent::Connected));
    assert_eq!(p.events_b.first(), Some(&TetherEvent::Connected));
    assert_eq!(p.a.remote(), Some(p.b_addr));
    // Heartbeats give an RTT close to twice the one-way latency.
    p.run_until(Duration::from_secs(1), |_| false);
    let rtt = p.a.telemetry().rtt.expect("heartbeat RTT");
    assert!(
        rtt >= Duration::from_millis(2) && rtt < Duration::from_millis(5),
        "{rtt:?}"
    );
}

#[test]
fn fingerprint_mismatch_closes_the_tether() {
    let (a, b) = configs(true);
    let mut p = Pair::new(a, b, CLEAN);
    p.run_until(Duration::from_secs(20), |p| {
        matches!(p.a.state(), TetherState::Closed(_))
    });
    assert_eq!(
        p.a.state(),
        TetherState::Closed(CloseReason::FingerprintMismatch)
    );
    assert!(
        p.events_a
            .contains(&TetherEvent::Closed(CloseReason::FingerprintMismatch))
    );
    assert!(!p.events_a.contains(&TetherEvent::Connected));
    let mut buf = vec![0u8; HEADROOM + 100 + TAILROOM];
    let mut batch = [OutPacket {
        buf: &mut buf,
        len: 100,
        flow: 0,
        datagram_len: 0,
    }];
    assert_eq!(p.a.send_batch(p.now, &mut batch).sent, 0);
}

#[test]
fn hundred_thousand_messages_both_ways_intact() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b, CLEAN);
    p.connect();
    const N: u64 = 100_000;
    const LEN: usize = 1200;
    let mut sent_a = 0;
    let mut sent_b = 0;
    while sent_a < N || sent_b < N {
        sent_a += p.send_numbered(true, sent_a, 256.min(N - sent_a), LEN);
        sent_b += p.send_numbered(false, sent_b, 256.min(N - sent_b), LEN);
        for _ in 0..32 {
            p.step();
        }
    }
    p.run_until(Duration::from_secs(2), |p| {
        p.got_a.len() as u64 == N && p.got_b.len() as u64 == N
    });
    for got in [&p.got_a, &p.got_b] {
        let mut seen = vec![false; N as usize];
        for (ch, m) in got.iter() {
            let id = check(m, LEN);
            assert_eq!(u32::from(*ch), id as u32 % 4, "flow stays on its channel");
            assert!(!seen[id as usize], "duplicate {id}");
            seen[id as usize] = true;
        }
        assert_eq!(got.len() as u64, N);
    }
    let (ta, tb) = (p.a.telemetry(), p.b.telemetry());
    assert_eq!((ta.packets_sent, ta.packets_received), (N, N));
    assert_eq!(ta.bytes_received, N * LEN as u64);
    assert_eq!((ta.packets_lost, tb.packets_lost), (0, 0));
    assert_eq!((ta.bad_records, tb.bad_records, ta.bad_packets), (0, 0, 0));
}

#[test]
fn loss_and_reordering_lose_only_what_the_network_lost() {
    let (a, b) = configs(false);
    let net = Net {
        latency: Duration::from_millis(5),
        loss: 0.0,
        jitter: Duration::ZERO,
    };
    let mut p = Pair::new(a, b, net);
    p.connect();
    p.net = Net {
        latency: Duration::from_millis(5),
        loss: 0.02,
        jitter: Duration::from_millis(3),
    };
    const N: u64 = 20_000;
    const LEN: usize = 1000;
    let mut sent = 0;
    while sent < N {
        sent += p.send_numbered(true, sent, 64.min(N - sent), LEN);
        for _ in 0..16 {
            p.step();
        }
    }
    p.run_until(Duration::from_secs(3), |_| false);
    let mut seen = vec![false; N as usize];
    for (_, m) in &p.got_b {
        let id = check(m, LEN);
        assert!(!seen[id as usize], "duplicate {id}");
        seen[id as usize] = true;
    }
    let delivered = p.got_b.len() as f64 / N as f64;
    assert!((0.96..0.995).contains(&delivered), "delivered {delivered}");
    let t = p.a.telemetry();
    // Everything was either acknowledged or abandoned: nothing stuck in flight.
    assert_eq!(t.in_flight_packets, 0, "{t:?}");
    // Every message is either delivered or counted lost, never both, never neither.
    assert_eq!(t.packets_lost + p.got_b.len() as u64, N, "{t:?}");
    assert!((0.01..0.03).contains(&t.loss), "loss estimate {}", t.loss);
    // Abandonment is batched: far fewer FORWARD-TSNs than lost messages.
    let fwd = p.a.assoc.as_ref().unwrap().forwards_sent();
    assert!(
        fwd * 2 < t.packets_lost.max(1),
        "{fwd} forwards for {} lost",
        t.packets_lost
    );
}

#[test]
fn dead_path_is_noticed_and_revival_reported() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b, CLEAN);
    p.connect();
    p.cut_b_to_a = true;
    let cut_at = p.now;
    p.run_until(Duration::from_secs(5), |p| {
        p.events_a.contains(&TetherEvent::Dead)
    });
    let noticed = p.now - cut_at;
    assert!(p.a.telemetry().dead);
    assert!(noticed <= Duration::from_millis(2000), "{noticed:?}");
    p.cut_b_to_a = false;
    p.run_until(Duration::from_secs(2), |p| {
        p.events_a.contains(&TetherEvent::Revived)
    });
    assert!(!p.a.telemetry().dead);
}

/// Known failure modes of other stacks (DESIGN §11): slow window growth, and a burst of
/// stale messages after an outage. The tether has no slow start, never queues and never
/// retransmits, so neither can happen.
#[test]
fn full_rate_from_the_start_and_no_late_burst_after_an_outage() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b, CLEAN);
    p.connect();
    // 2,000 messages (2.4 MB) accepted at once, before any SACK: no slow start.
    let mut bufs: Vec<Vec<u8>> = (0..2000)
        .map(|_| vec![0u8; HEADROOM + 1200 + TAILROOM])
        .collect();
    let mut batch: Vec<OutPacket<'_>> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            fill(&mut b[HEADROOM..HEADROOM + 1200], i as u64);
            OutPacket {
                buf: b,
                len: 1200,
                flow: i as u32,
                datagram_len: 0,
            }
        })
        .collect();
    assert_eq!(p.a.send_batch(p.now, &mut batch).sent, 2000);
    let out: Vec<Vec<u8>> = batch
        .iter()
        .map(|o| o.buf[..o.datagram_len].to_vec())
        .collect();
    drop(batch);
    for d in out {
        p.put(true, d);
    }
    p.run_until(Duration::from_secs(1), |p| p.got_b.len() == 2000);
    assert_eq!(p.got_b.len(), 2000);
    // An outage: what is sent meanwhile is lost, and stays lost.
    p.cut_a_to_b = true;
    p.send_numbered(true, 2000, 500, 1200);
    p.run_until(Duration::from_secs(1), |_| false);
    p.cut_a_to_b = false;
    p.run_until(Duration::from_secs(1), |_| false);
    p.send_numbered(true, 2500, 100, 1200);
    p.run_until(Duration::from_secs(1), |p| p.got_b.len() == 2100);
    let ids: Vec<u64> = p.got_b.iter().map(|(_, m)| check(m, 1200)).collect();
    assert_eq!(ids.len(), 2100);
    assert!(
        ids.iter().all(|&i| !(2000..2500).contains(&i)),
        "stale messages delivered"
    );
    p.run_until(Duration::from_millis(500), |_| false);
    let t = p.a.telemetry();
    assert_eq!((t.packets_lost, t.in_flight_packets), (500, 0));
}

#[test]
fn records_are_byte_compatible_with_the_library() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b, CLEAN);
    p.connect();
    // The library seals with its own keys and a random explicit nonce; the owned path opens.
    let pkt = sctp_probe(p.b.assoc.as_ref().unwrap().params().local_vtag);
    let rec = p.a.dtls.write_app_data(p.now, &pkt);
    let mut data = rec.clone();
    let opener = p.b.opener.as_mut().unwrap();
    let o = opener
        .open(&mut data)
        .expect("owned path opens a library record");
    assert_eq!(&data[o.plaintext], &pkt[..]);
    // The owned path seals; the library opens.
    let mut buf = vec![0u8; 256];
    buf[RECORD_HEADROOM..][..pkt.len()].copy_from_slice(&pkt);
    let sealer = p.b.sealer.as_mut().unwrap();
    let n = sealer
        .seal(content::APPLICATION_DATA, &mut buf, pkt.len())
        .unwrap();
    let r = p.a.dtls.read(p.now, &buf[..n]);
    assert_eq!(r.app_data.len(), 1);
    assert_eq!(&r.app_data[0][..], &pkt[..]);
}

/// A well-formed SCTP packet carrying one HEARTBEAT.
fn sctp_probe(vtag: u32) -> Vec<u8> {
    let mut b = vec![0u8; 12 + 8];
    sctp::wire::write_common_header(&mut b, 5000, 5000, vtag);
    sctp::wire::write_chunk(&mut b[12..], sctp::wire::chunk::HEARTBEAT, 0, &[0, 9, 0, 4]).unwrap();
    sctp::wire::seal_checksum(&mut b);
    b
}

#[test]
fn random_datagrams_are_dropped_and_counted() {
    let (a, b) = configs(false);
    let mut p = Pair::new(a, b, CLEAN);
    p.connect();
    let mut rng = Rng(42);
    for i in 0..2000 {
        let len = (rng.next() % 1500) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 2 == 0 && len > 13 {
            // Look like an application-data record of the right epoch.
            d[0] = 23;
            d[1..3].copy_from_slice(&record::DTLS_1_2);
            d[3..5].copy_from_slice(&1u16.to_be_bytes());
        }
        let from = p.b_addr;
        assert_eq!(p.a.handle_input(p.now, from, &mut d).count(), 0);
    }
    assert_eq!(p.a.state(), TetherState::Up);
    assert!(p.a.telemetry().bad_records > 0);
    // Still works afterwards.
    p.send_numbered(false, 0, 10, 100);
    p.run_until(Duration::from_secs(1), |p| p.got_a.len() == 10);
    assert_eq!(p.got_a.len(), 10);
}

/// Every tether starts at the base, and its search ends within the granularity below what
/// the path carries; a message that fits is one datagram, one that does not is refused.
#[test]
fn path_mtu_converges_to_the_largest_size_the_path_carries() {
    // 1,280-byte IPv4 link (1,252 bytes of UDP payload), a few in between, a full one.
    for path in [1252, 1300, 1400, 1452] {
        let (a, b) = configs(false);
        let mut p = Pair::new(a, b, CLEAN);
        p.max_len = path;
        p.connect();
        for t in [&p.a, &p.b] {
            let m = t.telemetry();
            assert!(
                m.plpmtu <= path && path - m.plpmtu < sctp::pmtu::GRANULARITY,
                "path {path}: PLPMTU {}",
                m.plpmtu
            );
            assert_eq!(m.max_message, t.max_message());
            assert_eq!(m.pmtu_black_holes, 0);
        }
        let max = p.a.max_message();
        assert_eq!(
            super::record::RECORD_OVERHEAD + sctp::wire::DATA_OFFSET + max,
            p.a.plpmtu().unwrap(),
            "the largest message fills the datagram"
        );
        p.send_numbered(true, 0, 100, max);
        p.run_until(Duration::from_secs(1), |p| p.got_b.len() == 100);
        assert_eq!(p.got_b.len(), 100, "path {path}: full-size messages arrive");
        let before = p.a.telemetry().too_big;
        let mut buf = vec![0u8; HEADROOM + max + 4 + TAILROOM];
        let mut batch = [OutPacket {
            buf: &mut buf,
            len: max + 4,
            flow: 0,
            datagram_len: 0,
        }];
        assert_eq!(p.a.send_batch(p.now, &mut batch).refused, 1);
        assert_eq!(p.a.telemetry().too_big, before + 1, "refused and counted");
        let t = p.a.telemetry();
        assert_eq!(t.packets_lost, 0, "path {path}: probing lost no data");
    }
}

/// The path shrinks under a stream of full-size messages: big messages stop being
/// acknowledged while heartbeats still are, the tether falls back to the base at once and
/// finds the new size, and full-size messages of that size flow again.
#[test]
fn path_mtu_drop_mid_stream_is_detected_and_recovered() {
    let (a, b) = configs(false);
    let net = Net {
        latency: Duration::from_millis(5),
        loss: 0.0,
        jitter: Duration::ZERO,
    };
    let mut p = Pair::new(a, b, net);
    p.connect();
    assert_eq!(p.a.plpmtu(), Some(MAX_DATAGRAM - 3));
    let mut id = 0;
    for _ in 0..20 {
        let len = p.a.max_message();
        id += p.send_numbered(true, id, 50, len);
        p.run_until(Duration::from_millis(20), |_| false);
    }
    let cut_at = p.now;
    p.max_len = 1300;
    // The sender keeps sending the largest message the tether takes.
    let mut recovered = None;
    while p.now < cut_at + Duration::from_secs(10) {
        let len = p.a.max_message();
        id += p.send_numbered(true, id, 20, len);
        p.run_until(Duration::from_millis(20), |_| false);
        let t = p.a.telemetry();
        if recovered.is_none()
            && t.pmtu_black_holes == 1
            && p.searched(true)
            && t.plpmtu > 1300 - sctp::pmtu::GRANULARITY
        {
            recovered = Some(p.now - cut_at);
            break;
        }
    }
    let took = recovered.unwrap_or_else(|| panic!("not recovered: {:?}", p.a.telemetry()));
    eprintln!(
        "path MTU 1,452 → 1,300: recovered in {took:?}: {:?}",
        p.a.telemetry()
    );
    // Detection (8 lost big messages, three probe rounds) and a search after a 1 s rebound.
    assert!(took < Duration::from_secs(4), "recovery took {took:?}");
    let t = p.a.telemetry();
    assert!(t.plpmtu <= 1300, "{t:?}");
    // From now on nothing is lost.
    let (delivered, lost) = (p.got_b.len() as u64, t.packets_lost);
    let len = p.a.max_message();
    p.send_numbered(true, id, 1000, len);
    p.run_until(Duration::from_secs(2), |p| {
        p.got_b.len() as u64 == delivered + 1000
    });
    assert_eq!(p.got_b.len() as u64, delivered + 1000);
    assert_eq!(p.a.telemetry().packets_lost, lost);
}
