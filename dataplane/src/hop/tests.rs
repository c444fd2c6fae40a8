//! Two [`Mixed`] transports joined in memory: WebRTC tethers come up, frame and unframe
//! packets in place, report their state, and a wrong fingerprint is counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conflux_shared::wire::record::TetherState;

use super::mixed::Mixed;
use super::webrtc::datagram_len;
use super::{HopTransport, StateChange};
use crate::tether::{IceCredentials, LocalCertificate, MAX_DATAGRAM, TetherConfig};

const TETHER: u32 = 5;

struct Ends {
    now: Instant,
    a: Mixed,
    b: Mixed,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    changes_a: Vec<StateChange>,
    changes_b: Vec<StateChange>,
    cfg_a: TetherConfig,
}

impl Ends {
    fn new(mismatch: bool) -> Self {
        let a_addr: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:4002".parse().unwrap();
        let (ca, cb) = (
            LocalCertificate::generate().unwrap(),
            LocalCertificate::generate().unwrap(),
        );
        let expect_b = if mismatch {
            LocalCertificate::generate().unwrap().fingerprint()
        } else {
            cb.fingerprint()
        };
        let (ia, ib) = (IceCredentials::random(), IceCredentials::random());
        let ca_fp = ca.fingerprint();
        let cfg_a = TetherConfig::new(
            a_addr,
            vec![b_addr],
            ia.clone(),
            ib.clone(),
            true,
            ca,
            expect_b,
        );
        let cfg_b = TetherConfig::new(b_addr, vec![a_addr], ib, ia, false, cb, ca_fp);
        let now = Instant::now();
        let (mut a, mut b) = (Mixed::new(), Mixed::new());
        a.open_tether(now, TETHER, cfg_a.clone()).unwrap();
        b.open_tether(now, TETHER, cfg_b).unwrap();
        Self {
            now,
            a,
            b,
            a_addr,
            b_addr,
            changes_a: Vec::new(),
            changes_b: Vec::new(),
            cfg_a,
        }
    }

    /// Moves every pending datagram across (no loss) and returns the data packets each
    /// side unframed, then advances the clock to the next timer (at most `step`).
    fn step(&mut self, step: Duration) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut ranges = vec![0..0; 16];
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            while let Some((to, n)) = self.a.poll_transmit(self.now, &mut buf) {
                assert_eq!(to, self.b_addr);
                moved = true;
                let k = self
                    .b
                    .unframe(self.now, self.a_addr, None, &mut buf[..n], &mut ranges);
                got_b.extend(ranges[..k].iter().map(|r| buf[r.clone()].to_vec()));
            }
            while let Some((to, n)) = self.b.poll_transmit(self.now, &mut buf) {
                assert_eq!(to, self.a_addr);
                moved = true;
                let k = self
                    .a
                    .unframe(self.now, self.b_addr, None, &mut buf[..n], &mut ranges);
                got_a.extend(ranges[..k].iter().map(|r| buf[r.clone()].to_vec()));
            }
            while let Some(c) = self.a.poll_state() {
                self.changes_a.push(c);
            }
            while let Some(c) = self.b.poll_state() {
                self.changes_b.push(c);
            }
            if !moved {
                break;
            }
        }
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.now + step);
        self.now = next.clamp(self.now + Duration::from_micros(100), self.now + step);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        (got_a, got_b)
    }

    fn up(&self, changes: &[StateChange]) -> bool {
        changes.iter().any(|c| c.state == TetherState::Up)
    }

    fn connect(&mut self) {
        for _ in 0..2000 {
            self.step(Duration::from_millis(20));
            if self.up(&self.changes_a) && self.up(&self.changes_b) {
                // One more exchange: the first path MTU probes and their answers, so
                // full-size packets fit (a tether starts at the base size).
                self.step(Duration::from_millis(1));
                return;
            }
        }
        panic!("no connection: {:?} / {:?}", self.changes_a, self.changes_b);
    }
}

/// A packet in a buffer with the transport's headroom and tailroom.
fn framed_packet(t: &Mixed, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; t.headroom() + payload.len() + t.tailroom()];
    buf[t.headroom()..][..payload.len()].copy_from_slice(payload);
    buf
}

#[test]
fn webrtc_tethers_connect_and_carry_packets_both_ways() {
    let mut e = Ends::new(false);
    e.connect();
    let up = e
        .changes_a
        .iter()
        .find(|c| c.state == TetherState::Up)
        .unwrap();
    assert_eq!(up.peer, Some(e.b_addr), "the ICE-selected peer is reported");
    assert_eq!(e.changes_a[0].state, TetherState::Connecting);

    let mut sent_to_b = Vec::new();
    let mut sent_to_a = Vec::new();
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for i in 0..200u32 {
        let len = 32 + (i as usize * 7) % 1300;
        let payload: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
        for (from, to, sent) in [
            (true, e.b_addr, &mut sent_to_b),
            (false, e.a_addr, &mut sent_to_a),
        ] {
            let t = if from { &mut e.a } else { &mut e.b };
            let mut buf = framed_packet(t, &payload);
            let predicted = t.framed_range(TETHER, len);
            let r = t.frame(e.now, TETHER, i, &mut buf, len).expect("tether up");
            assert_eq!(r, predicted, "framed_range predicts the datagram");
            assert_eq!(r.len(), datagram_len(len));
            assert_eq!(t.framed_len(len), r.len());
            let mut ranges = vec![0..0; 4];
            let other = if from { &mut e.b } else { &mut e.a };
            let src = if from { e.a_addr } else { e.b_addr };
            let _ = to;
            let k = other.unframe(e.now, src, None, &mut buf[r], &mut ranges);
            assert_eq!(k, 1);
            let dgram_start = 0;
            let got = buf[dgram_start..][ranges[0].clone()].to_vec();
            if from {
                got_b.push(got);
            } else {
                got_a.push(got);
            }
            sent.push(payload.clone());
        }
        e.step(Duration::from_millis(1));
    }
    assert_eq!(got_b, sent_to_b);
    assert_eq!(got_a, sent_to_a);

    let mut telemetry = Vec::new();
    e.a.telemetry(3, &mut |b| telemetry.push(b));
    assert_eq!(telemetry.len(), 1);
    assert_eq!(telemetry[0].tether.get(), TETHER);
    assert_eq!(telemetry[0].worker.get(), 3);
    assert_eq!(telemetry[0].packets.get(), 200);
    let mut again = Vec::new();
    e.a.telemetry(3, &mut |b| again.push(b));
    assert_eq!(
        again[0].packets.get(),
        0,
        "telemetry counts since the last report"
    );
}

#[test]
fn a_repeated_open_changes_nothing_and_a_different_one_is_refused() {
    let mut e = Ends::new(false);
    e.connect();
    let before = e.changes_a.len();
    assert_eq!(e.a.open_tether(e.now, TETHER, e.cfg_a.clone()), Ok(false));
    let mut other = e.cfg_a.clone();
    other.expected_fingerprint = LocalCertificate::generate().unwrap().fingerprint();
    assert_eq!(
        e.a.open_tether(e.now, TETHER, other),
        Err(super::OpenRefused::Exists(TETHER))
    );
    e.step(Duration::from_millis(1));
    assert_eq!(e.changes_a.len(), before, "{:?}", &e.changes_a[before..]);
    let mut buf = framed_packet(&e.a, &[3; 64]);
    assert!(
        e.a.frame(e.now, TETHER, 0, &mut buf, 64).is_some(),
        "still up"
    );
}

#[test]
fn a_removed_tether_refuses_packets_and_reports_closed() {
    let mut e = Ends::new(false);
    e.connect();
    e.a.remove_tether(e.now, TETHER);
    let mut buf = framed_packet(&e.a, &[1; 100]);
    assert!(
        e.a.frame(e.now, TETHER, 0, &mut buf, 100).is_some(),
        "unknown ids are plain"
    );
    for _ in 0..50 {
        e.step(Duration::from_millis(20));
    }
    assert_eq!(e.changes_a.last().unwrap().state, TetherState::Closed);
    assert!(
        e.changes_b.iter().any(|c| c.state == TetherState::Closed),
        "the peer learns of the close: {:?}",
        e.changes_b
    );
}

#[test]
fn a_fingerprint_mismatch_never_carries_traffic_and_is_counted() {
    let mut e = Ends::new(true);
    for _ in 0..500 {
        e.step(Duration::from_millis(20));
    }
    assert!(!e.up(&e.changes_a), "{:?}", e.changes_a);
    assert!(e.changes_a.iter().any(|c| c.state == TetherState::Closed));
    let mut named = std::collections::BTreeMap::new();
    e.a.counters(&mut |n, v| {
        named.insert(n, v);
    });
    assert_eq!(named["tether_fingerprint_mismatch"], 1, "{named:?}");
    let mut buf = framed_packet(&e.a, &[1; 100]);
    assert!(e.a.frame(e.now, TETHER, 0, &mut buf, 100).is_none());
    assert_eq!(e.a.webrtc.counters.refused, 1);
}

#[test]
fn plain_tethers_ride_beside_webrtc_ones() {
    let mut e = Ends::new(false);
    e.connect();
    let now = e.now;
    e.a.add_tether(now, 9, "10.0.0.9:1".parse().unwrap());
    let mut buf = framed_packet(&e.a, &[7; 64]);
    let h = e.a.headroom();
    assert_eq!(e.a.framed_range(9, 64), h..h + 64);
    assert_eq!(e.a.frame(now, 9, 0, &mut buf, 64), Some(h..h + 64));
    let mut ranges = vec![0..0; 4];
    let mut d = [7u8; 64];
    let k = e.b.unframe(
        now,
        "10.0.0.9:1".parse().unwrap(),
        Some(9),
        &mut d,
        &mut ranges,
    );
    assert_eq!((k, ranges[0].clone()), (1, 0..64));
}

#[test]
fn random_datagrams_from_the_peer_address_are_dropped_and_the_tether_stays_up() {
    let mut e = Ends::new(false);
    e.connect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut ranges = vec![0..0; 16];
    for i in 0..3000usize {
        let len = 1 + i % 1400;
        let mut d: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Cover STUN, DTLS (every content type) and foreign first bytes.
        d[0] = [0, 1, 20, 21, 22, 23, 64, 200][i % 8];
        let k = e.b.unframe(e.now, e.a_addr, None, &mut d, &mut ranges);
        assert_eq!(k, 0, "random bytes delivered a message");
    }
    e.step(Duration::from_millis(1));
    let payload = [9u8; 300];
    let mut buf = framed_packet(&e.a, &payload);
    let r =
        e.a.frame(e.now, TETHER, 1, &mut buf, 300)
            .expect("still up");
    let k = e.b.unframe(e.now, e.a_addr, None, &mut buf[r], &mut ranges);
    assert_eq!(k, 1);
    assert_eq!(&buf[ranges[0].clone()], &payload[..]);
}
