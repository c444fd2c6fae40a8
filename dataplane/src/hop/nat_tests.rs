//! Two [`Mixed`] transports with a NAT between them, in memory: the node behind it learns
//! its mapping from the other's STUN service, the public node meets it first as a
//! peer-reflexive address (found by the ICE username) and then through the trickled
//! reflexive candidate, and the tether carries packets both ways.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conflux_shared::wire::record::TetherState;

use super::mixed::Mixed;
use super::{HopTransport, StateChange};
use crate::tether::{IceCredentials, LocalCertificate, MAX_DATAGRAM, TetherConfig};

const TETHER: u32 = 9;

/// A (private, behind the NAT) and B (public), and the NAT's one mapping of A's socket.
struct Nat {
    now: Instant,
    a: Mixed,
    b: Mixed,
    a_private: SocketAddr,
    mapped: SocketAddr,
    b_addr: SocketAddr,
    /// The NAT lets B's datagrams in only after A sent to B (an outbound "hole").
    hole: bool,
    /// Datagrams B sent that the NAT dropped.
    filtered: usize,
    changes: (Vec<StateChange>, Vec<StateChange>),
}

impl Nat {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            a: Mixed::new(),
            b: Mixed::new(),
            a_private: "192.168.1.2:4001".parse().unwrap(),
            mapped: "203.0.113.1:40000".parse().unwrap(),
            b_addr: "198.51.100.2:4002".parse().unwrap(),
            hole: false,
            filtered: 0,
            changes: (Vec::new(), Vec::new()),
        }
    }

    /// Moves every datagram across the NAT; returns the data packets each side unframed.
    fn step(&mut self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut ranges = vec![0..0; 16];
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            while let Some((to, n)) = self.a.poll_transmit(self.now, &mut buf) {
                moved = true;
                if to != self.b_addr {
                    continue;
                }
                self.hole = true;
                let k = self
                    .b
                    .unframe(self.now, self.mapped, None, &mut buf[..n], &mut ranges);
                got_b.extend(ranges[..k].iter().map(|r| buf[r.clone()].to_vec()));
            }
            while let Some((to, n)) = self.b.poll_transmit(self.now, &mut buf) {
                moved = true;
                // A's private address is unreachable from B; the mapping only once opened.
                if to != self.mapped || !self.hole {
                    self.filtered += 1;
                    continue;
                }
                let k = self
                    .a
                    .unframe(self.now, self.b_addr, None, &mut buf[..n], &mut ranges);
                got_a.extend(ranges[..k].iter().map(|r| buf[r.clone()].to_vec()));
            }
            while let Some(c) = self.a.poll_state() {
                self.changes.0.push(c);
            }
            while let Some(c) = self.b.poll_state() {
                self.changes.1.push(c);
            }
            if !moved {
                break;
            }
        }
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.now + Duration::from_millis(20));
        self.now = next.clamp(
            self.now + Duration::from_micros(100),
            self.now + Duration::from_millis(20),
        );
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        (got_a, got_b)
    }

    fn up(changes: &[StateChange]) -> bool {
        changes.iter().any(|c| c.state == TetherState::Up)
    }
}

#[test]
fn a_node_behind_a_nat_learns_its_mapping_and_tethers_to_a_public_one() {
    let mut n = Nat::new();
    n.b.set_stun_service(true);
    n.a.stun_query(n.now, &[n.b_addr]);
    n.step();
    assert_eq!(n.a.poll_reflexive(), Some((n.b_addr, n.mapped)));

    let (ca, cb) = (
        LocalCertificate::generate().unwrap(),
        LocalCertificate::generate().unwrap(),
    );
    let (ia, ib) = (IceCredentials::random(), IceCredentials::random());
    let (fa, fb) = (ca.fingerprint(), cb.fingerprint());
    // B first knows only A's private host candidate: A's checks reach it from the mapping.
    let cfg_a = TetherConfig::new(
        n.a_private,
        vec![n.b_addr],
        ia.clone(),
        ib.clone(),
        true,
        ca,
        fb,
    );
    let cfg_b = TetherConfig::new(n.b_addr, vec![n.a_private], ib, ia, false, cb, fa);
    n.a.open_tether(n.now, TETHER, cfg_a).unwrap();
    n.b.open_tether(n.now, TETHER, cfg_b).unwrap();
    // The trickled reflexive candidate arrives a little later.
    for _ in 0..3 {
        n.step();
    }
    assert!(n.b.add_candidates(n.now, TETHER, &[n.mapped]));
    for _ in 0..500 {
        n.step();
        if Nat::up(&n.changes.0) && Nat::up(&n.changes.1) {
            break;
        }
    }
    assert!(
        Nat::up(&n.changes.0) && Nat::up(&n.changes.1),
        "{:?} / {:?}",
        n.changes.0,
        n.changes.1
    );
    let peer_seen_by_b = n.changes.1.iter().find_map(|c| c.peer);
    assert_eq!(
        peer_seen_by_b,
        Some(n.mapped),
        "B sends to the NAT's mapping"
    );
    assert!(
        n.filtered > 0,
        "B's checks to the private address went nowhere"
    );
    for _ in 0..5 {
        n.step();
    }

    // Packets both ways over the tether.
    let payload = vec![0x42u8; 600];
    let mut buf = vec![0u8; n.a.headroom() + payload.len() + n.a.tailroom()];
    buf[n.a.headroom()..][..payload.len()].copy_from_slice(&payload);
    let r =
        n.a.frame(n.now, TETHER, 1, &mut buf, payload.len())
            .expect("A frames");
    let mut ranges = vec![0..0; 4];
    let k = n.b.unframe(n.now, n.mapped, None, &mut buf[r], &mut ranges);
    assert_eq!(k, 1);
}

#[test]
fn stun_from_strangers_is_answered_only_as_a_service_and_garbage_is_counted() {
    let mut n = Nat::new();
    let mut buf = [0u8; 64];
    let len = crate::stun::write_binding_request(&[3; 12], &mut buf);
    let mut ranges = vec![0..0; 4];
    // Service off: no answer.
    n.b.unframe(n.now, n.mapped, None, &mut buf[..len], &mut ranges);
    let mut out = vec![0u8; MAX_DATAGRAM];
    assert!(n.b.poll_transmit(n.now, &mut out).is_none());
    n.b.set_stun_service(true);
    let len = crate::stun::write_binding_request(&[4; 12], &mut buf);
    n.b.unframe(n.now, n.mapped, None, &mut buf[..len], &mut ranges);
    let (to, m) = n.b.poll_transmit(n.now, &mut out).expect("an answer");
    assert_eq!(to, n.mapped);
    let msg = crate::stun::Message::parse(&out[..m]).unwrap();
    assert_eq!(msg.xor_mapped_address().unwrap(), Some(n.mapped));
    // A STUN-looking datagram with a broken attribute from a stranger.
    buf[3] = 40;
    let k =
        n.b.unframe(n.now, n.mapped, None, &mut buf[..len], &mut ranges);
    assert_eq!(k, 0);
    let mut counters = std::collections::BTreeMap::new();
    n.b.counters(&mut |name, v| {
        counters.insert(name, v);
    });
    assert_eq!(counters["stun_answered"], 1);
    assert_eq!(counters["stun_refused"], 1);
    assert_eq!(counters["stun_malformed"], 1);
}
