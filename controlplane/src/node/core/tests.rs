//! Two or three nodes driven in memory: a fake Guardian key, a simulated clock, and a
//! router that carries each node's outputs to the others as NATS would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use conflux_shared::cert::{self, GuardianKey};
use conflux_shared::crypto::identity::{NodeIdentity, SigningKey};
use conflux_shared::id::NodeId;
use conflux_shared::proto::{
    DirectoryRecord, HandshakeRequest, NodeCertificate, Revocation, SignedCertificate,
};
use prost::Message;

use super::*;

const HOUR: u64 = 3600;

struct Guardian {
    key: SigningKey,
}

impl Guardian {
    fn new() -> Self {
        Self {
            key: SigningKey::generate(),
        }
    }

    fn keys(&self) -> Vec<GuardianKey> {
        vec![GuardianKey::new(self.key.verifying_key().clone())]
    }

    fn certify(
        &self,
        id: NodeId,
        identity: &NodeIdentity,
        realm: &str,
        taints: &[&str],
        now_s: u64,
    ) -> SignedCertificate {
        cert::sign(
            NodeCertificate {
                node_id: id.0.to_vec(),
                realm: realm.into(),
                owner: "admin".into(),
                region: "lab".into(),
                taints: taints.iter().map(|t| t.to_string()).collect(),
                ml_dsa_public_key: identity.public().dsa_bytes().to_vec(),
                ml_kem_public_key: identity.public().kem_bytes().to_vec(),
                overlay_address: "10.9.0.1".into(),
                not_before: now_s - 60,
                not_after: now_s + HOUR,
                ..NodeCertificate::default()
            },
            &self.key,
        )
    }
}

fn timing() -> Timing {
    Timing {
        presence_interval: Duration::from_secs(1),
        peer_timeout: Duration::from_secs(4),
        handshake_timeout: Duration::from_secs(2),
    }
}

/// A realm of in-memory nodes with a simulated clock.
struct Mesh {
    guardian: Guardian,
    nodes: Vec<Node>,
    /// Directory records by node: `true` when revoked.
    directory: HashMap<NodeId, bool>,
    /// Nodes whose outputs are lost (a partitioned or dead node).
    muted: Vec<NodeId>,
    base: Instant,
    base_ms: u64,
    elapsed: Duration,
    /// Every `StreamUp` seen: node, direction, epoch, whether it replaces a stream.
    ups: Vec<(usize, Direction, u8, bool)>,
}

impl Mesh {
    fn new() -> Self {
        Self {
            guardian: Guardian::new(),
            nodes: Vec::new(),
            directory: HashMap::new(),
            muted: Vec::new(),
            base: Instant::now(),
            base_ms: 1_900_000_000_000,
            elapsed: Duration::ZERO,
            ups: Vec::new(),
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.base + self.elapsed,
            unix_ms: self.base_ms + self.elapsed.as_millis() as u64,
        }
    }

    fn make_node(&self, id: NodeId, realm: &str, taints: &[&str]) -> Node {
        let identity = NodeIdentity::generate();
        let now = self.now();
        let certificate = self
            .guardian
            .certify(id, &identity, realm, taints, now.unix_s());
        Node::new(
            NodeParams {
                node_id: id,
                identity,
                certificate,
                guardian_keys: self.guardian.keys(),
                timing: timing(),
            },
            now,
        )
        .unwrap()
    }

    fn add(&mut self, realm: &str, taints: &[&str]) -> usize {
        let id = NodeId::random();
        let node = self.make_node(id, realm, taints);
        self.directory.insert(id, false);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn id(&self, i: usize) -> NodeId {
        self.nodes[i].node_id()
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.node_id() == id)
    }

    /// Carries outputs between nodes until none is left.
    fn deliver(&mut self) {
        let now = self.now();
        for _round in 0..100 {
            let mut any = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].poll_output() {
                    any = true;
                    let from = self.id(i);
                    if self.muted.contains(&from) {
                        continue;
                    }
                    self.route(now, i, out);
                }
            }
            if !any {
                return;
            }
        }
        panic!("outputs never settle");
    }

    fn route(&mut self, now: Now, i: usize, out: Output) {
        match out {
            Output::Publish { subject, payload } => {
                for j in 0..self.nodes.len() {
                    if j != i && subject == subjects::presence(self.nodes[j].realm()) {
                        self.nodes[j].handle_presence(now, &payload);
                    }
                }
            }
            Output::HandshakeRequest {
                peer,
                attempt,
                subject,
                payload,
            } => {
                let reply = self.index(peer).and_then(|j| {
                    if self.muted.contains(&peer)
                        || subject != subjects::handshake(self.nodes[j].realm(), peer)
                    {
                        return None;
                    }
                    self.nodes[j].handle_handshake_request(now, &payload)
                });
                self.nodes[i].handle_handshake_reply(now, peer, attempt, reply.as_deref());
            }
            Output::LookupDirectory { node } => {
                let rec = self.directory.get(&node).map(|&revoked| {
                    DirectoryRecord {
                        revoked,
                        ..DirectoryRecord::default()
                    }
                    .encode_to_vec()
                });
                self.nodes[i].handle_directory_record(now, node, rec.as_deref());
            }
            Output::StreamUp {
                direction,
                epoch,
                replaces,
                ..
            } => self.ups.push((i, direction, epoch, replaces.is_some())),
            _ => {}
        }
    }

    /// Advances the clock in steps of 100 ms, running timers and delivering.
    fn run(&mut self, d: Duration) {
        let end = self.elapsed + d;
        self.deliver();
        while self.elapsed < end {
            self.elapsed += Duration::from_millis(100);
            let now = self.now();
            for n in &mut self.nodes {
                if n.poll_timeout() <= now.mono {
                    n.handle_timeout(now);
                }
            }
            self.deliver();
        }
    }

    fn stream_fps(&self, i: usize, peer: usize, dir: &str) -> Option<String> {
        let peer = self.id(peer).to_hex();
        self.nodes[i]
            .streams()
            .streams
            .into_iter()
            .find(|s| s.peer_id == peer && s.direction == dir)
            .map(|s| s.key_fingerprint)
    }

    /// Whether `a` and `b` hold both streams with matching keys at both ends.
    fn paired(&self, a: usize, b: usize) -> bool {
        let ab = (self.stream_fps(a, b, "out"), self.stream_fps(b, a, "in"));
        let ba = (self.stream_fps(b, a, "out"), self.stream_fps(a, b, "in"));
        matches!(ab, (Some(x), Some(y)) if x == y) && matches!(ba, (Some(x), Some(y)) if x == y)
    }

    /// Whether neither node holds any stream with the other.
    fn apart(&self, a: usize, b: usize) -> bool {
        self.holds_none(a, b) && self.holds_none(b, a)
    }

    /// Whether node `i` holds no stream with `peer`.
    fn holds_none(&self, i: usize, peer: usize) -> bool {
        ["out", "in"]
            .iter()
            .all(|d| self.stream_fps(i, peer, d).is_none())
    }

    fn ignored(&self, i: usize, why: Ignored) -> u64 {
        self.nodes[i].counters().ignored(why)
    }

    fn set_taints(&mut self, i: usize, taints: &[&str]) {
        let now = self.now();
        let id = self.id(i);
        let realm = self.nodes[i].realm().to_string();
        let c = self
            .guardian
            .certify(id, &self.nodes[i].identity, &realm, taints, now.unix_s());
        self.nodes[i].set_certificate(now, &c).unwrap();
    }
}

#[test]
fn three_nodes_pair_up_with_matching_keys() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a", "b"]);
    let c = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    for (x, y) in [(a, b), (a, c), (b, c)] {
        assert!(m.paired(x, y), "{x} and {y} should hold matching streams");
    }
    let ab = m.stream_fps(a, b, "out").unwrap();
    let ba = m.stream_fps(b, a, "out").unwrap();
    assert_ne!(ab, ba, "each direction has its own key");
    let peers = m.nodes[a].peers().peers;
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.state == "connected" && p.compatible));
    let st = m.nodes[a].status(m.now());
    assert_eq!((st.peers, st.compatible_peers, st.streams), (2, 2, 4));
    assert_eq!(st.handshakes_initiated, 2);
    assert_eq!(st.handshakes_answered, 2);
    assert!(st.ignored.is_empty(), "{:?}", st.ignored);
}

#[test]
fn taints_decide_who_talks() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let ab = m.add("lab", &["a", "b"]);
    let c = m.add("lab", &["c"]);
    let none = m.add("lab", &[]);
    m.run(Duration::from_secs(2));
    assert!(m.paired(a, ab));
    for (x, y) in [(a, c), (ab, c), (none, a), (none, ab), (none, c)] {
        assert!(m.apart(x, y), "{x} and {y} must not hold streams");
    }
    let peers = m.nodes[none].peers().peers;
    assert_eq!(
        peers.len(),
        3,
        "a node sees its realm even if it talks to no one"
    );
    assert!(peers.iter().all(|p| p.state == "incompatible"));
}

#[test]
fn taint_change_breaks_and_restores_a_pair_on_both_sides() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a", "b"]);
    m.run(Duration::from_millis(500));
    assert!(m.paired(a, b));
    let before = m.stream_fps(a, b, "out").unwrap();

    m.set_taints(a, &["c"]);
    // Only one announcement gap later, both sides have dropped both streams.
    m.run(MIN_ANNOUNCE_GAP);
    assert!(m.apart(a, b));
    assert_eq!(m.nodes[b].peers().peers[0].state, "incompatible");

    m.set_taints(a, &["a", "c"]);
    m.run(MIN_ANNOUNCE_GAP);
    assert!(
        m.apart(a, b),
        "{{a,c}} and {{a,b}}: neither contains the other"
    );

    m.set_taints(a, &["a"]);
    // Restored at once: the handshake requests carry the new certificate.
    m.deliver();
    assert!(m.paired(a, b));
    assert_ne!(m.stream_fps(a, b, "out").unwrap(), before, "a fresh key");
}

#[test]
fn other_realm_is_not_believed() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    let x = m.add("other", &["a"]);
    m.run(Duration::from_millis(500));
    assert!(m.paired(a, b));
    // NATS keeps realms apart; if a message crossed anyway it would still be refused.
    m.elapsed += timing().presence_interval;
    let now = m.now();
    m.nodes[x].handle_timeout(now);
    let Some(Output::Publish { payload, .. }) = m.nodes[x].poll_output() else {
        panic!("x announces");
    };
    m.nodes[a].handle_presence(now, &payload);
    assert_eq!(m.ignored(a, Ignored::WrongRealm), 1);
    assert_eq!(m.nodes[a].peers().peers.len(), 1);
}

/// A node that holds valid realm credentials on NATS but no valid certificate.
struct Rogue {
    id: NodeId,
    identity: NodeIdentity,
}

impl Rogue {
    fn presence(&self, c: &SignedCertificate, ts: u64) -> Vec<u8> {
        presence::sign(&self.identity, self.id, c, ts).encode_to_vec()
    }
}

#[test]
fn forged_certificates_and_signatures_are_ignored_and_counted() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    let rogue = Rogue {
        id: NodeId::random(),
        identity: NodeIdentity::generate(),
    };
    let now = m.now();

    // Self-made "Guardian" key: unknown key id.
    let fake = Guardian::new();
    let c = fake.certify(rogue.id, &rogue.identity, "lab", &["a"], now.unix_s());
    m.nodes[a].handle_presence(now, &rogue.presence(&c, now.unix_ms));
    assert_eq!(m.ignored(a, Ignored::UnknownKey), 1);

    // Self-made key claiming the real key's id: bad signature.
    let mut c2 = c.clone();
    c2.key_id = m.guardian.keys()[0].key_id().to_owned();
    m.nodes[a].handle_presence(now, &rogue.presence(&c2, now.unix_ms + 1));
    // A real certificate whose taints were edited after signing.
    let real = m
        .guardian
        .certify(rogue.id, &rogue.identity, "lab", &["x"], now.unix_s());
    let mut body = NodeCertificate::decode(real.certificate.as_slice()).unwrap();
    body.taints = vec!["a".into()];
    let edited = SignedCertificate {
        certificate: body.encode_to_vec(),
        ..real.clone()
    };
    m.nodes[a].handle_presence(now, &rogue.presence(&edited, now.unix_ms + 2));
    assert_eq!(m.ignored(a, Ignored::BadCertificate), 2);

    // Node b's real certificate presented with the rogue's signature.
    let b_cert = m.nodes[b].certificate().signed.clone();
    let stolen = Rogue {
        id: m.id(b),
        identity: NodeIdentity::generate(),
    };
    m.nodes[a].handle_presence(now, &stolen.presence(&b_cert, now.unix_ms + 3));
    assert_eq!(m.ignored(a, Ignored::BadSignature), 1);

    // A handshake request under a forged certificate gets no reply at all.
    let req = HandshakeRequest {
        presence: Some(presence::sign(
            &rogue.identity,
            rogue.id,
            &c2,
            now.unix_ms + 4,
        )),
        init: vec![1, 1, 0, 0],
        inbound_stream_id: Vec::new(),
        ..HandshakeRequest::default()
    }
    .encode_to_vec();
    assert_eq!(m.nodes[a].handle_handshake_request(now, &req), None);
    assert_eq!(m.nodes[a].handle_handshake_request(now, b"garbage"), None);
    assert!(m.ignored(a, Ignored::Malformed) >= 1);

    let peers = m.nodes[a].peers().peers;
    assert_eq!(peers.len(), 1, "only b is a peer");
    assert_eq!(peers[0].node_id, m.id(b).to_hex());
    assert!(m.paired(a, b), "the real pair is untouched");
}

#[test]
fn replays_are_ignored() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    let now = m.now();
    m.nodes[b].handle_timeout(Now {
        mono: now.mono + Duration::from_secs(1),
        unix_ms: now.unix_ms + 1000,
    });
    let mut presence = None;
    while let Some(o) = m.nodes[b].poll_output() {
        if let Output::Publish { payload, .. } = o {
            presence = Some(payload);
        }
    }
    let presence = presence.unwrap();
    m.nodes[a].handle_presence(now, &presence);
    let accepted = m.nodes[a].counters().presence_accepted;
    m.nodes[a].handle_presence(now, &presence);
    assert_eq!(m.nodes[a].counters().presence_accepted, accepted);
    assert_eq!(m.ignored(a, Ignored::Stale), 1);

    // A captured handshake request, replayed: no second reply.
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    m.deliver();
    let now = m.now();
    m.nodes[b].handle_timeout(now);
    let mut req = None;
    while let Some(o) = m.nodes[b].poll_output() {
        match o {
            Output::Publish { payload, .. } => m.nodes[a].handle_presence(now, &payload),
            Output::HandshakeRequest { payload, .. } => req = Some(payload),
            _ => {}
        }
    }
    // b does not know a yet; make it start a handshake by letting a announce.
    m.nodes[a].handle_timeout(now);
    while let Some(o) = m.nodes[a].poll_output() {
        if let Output::Publish { payload, .. } = o {
            m.nodes[b].handle_presence(now, &payload);
        }
    }
    while let Some(o) = m.nodes[b].poll_output() {
        if let Output::HandshakeRequest { payload, .. } = o {
            req = Some(payload);
        }
    }
    let req = req.expect("b starts a handshake to a");
    assert!(m.nodes[a].handle_handshake_request(now, &req).is_some());
    assert_eq!(m.nodes[a].handle_handshake_request(now, &req), None);
    assert_eq!(m.ignored(a, Ignored::Replayed), 1);
}

#[test]
fn revoked_node_is_dropped_and_stays_out() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    let c = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    assert!(m.paired(a, c) && m.paired(b, c));

    // Anyone could publish a revocation: without the directory's word, nothing happens.
    let notice = Revocation {
        node_id: m.id(c).0.to_vec(),
        revoked_at: 0,
    }
    .encode_to_vec();
    let now = m.now();
    m.nodes[a].handle_revocation(now, &notice);
    m.deliver();
    assert!(m.paired(a, c), "a forged revocation is not believed");

    let cid = m.id(c);
    m.directory.insert(cid, true);
    let now = m.now();
    for i in [a, b] {
        m.nodes[i].handle_revocation(now, &notice);
    }
    m.deliver();
    for i in [a, b] {
        assert!(m.holds_none(i, c));
        assert!(
            m.nodes[i]
                .peers()
                .peers
                .iter()
                .all(|p| p.node_id != cid.to_hex())
        );
    }
    // Its later announcements (if it could still send any) are refused.
    m.run(Duration::from_secs(2));
    assert!(m.ignored(a, Ignored::Revoked) > 0);
    assert!(m.holds_none(a, c) && m.paired(a, b));
}

#[test]
fn restarted_peer_is_accepted_with_fresh_keys() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    let old_fp = m.stream_fps(a, b, "out").unwrap();
    let old_identity = m.nodes[a].peers().peers[0].identity_fingerprint.clone();

    let id = m.id(b);
    m.nodes[b] = m.make_node(id, "lab", &["a"]);
    m.run(Duration::from_millis(500));
    assert!(m.paired(a, b));
    assert_ne!(m.stream_fps(a, b, "out").unwrap(), old_fp);
    let peers = m.nodes[a].peers().peers;
    assert_eq!(peers.len(), 1, "same id, same peer");
    assert_ne!(peers[0].identity_fingerprint, old_identity);
}

#[test]
fn silent_peer_is_forgotten_and_rejoins() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    let bid = m.id(b);
    m.muted.push(bid);
    m.run(timing().peer_timeout + Duration::from_millis(200));
    assert!(m.nodes[a].peers().peers.is_empty());
    assert!(m.holds_none(a, b));
    m.muted.clear();
    m.run(Duration::from_secs(2));
    assert!(m.paired(a, b));
}

#[test]
fn a_flooding_peer_is_rate_limited() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    m.run(Duration::from_millis(500));
    let now = m.now();
    let cert = m.nodes[b].certificate().signed.clone();
    let flood: Vec<Vec<u8>> = (1..=50)
        .map(|k| {
            presence::sign(&m.nodes[b].identity, m.id(b), &cert, now.unix_ms + k).encode_to_vec()
        })
        .collect();
    let accepted = m.nodes[a].counters().presence_accepted;
    for p in &flood {
        m.nodes[a].handle_presence(now, p);
    }
    let taken = m.nodes[a].counters().presence_accepted - accepted;
    assert!(taken <= 10, "burst bounded, took {taken}");
    assert_eq!(m.ignored(a, Ignored::RateLimited), 50 - taken);
}

#[test]
fn handshake_retries_after_a_lost_reply() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    let bid = m.id(b);
    // b hears a but cannot answer or announce: a's requests go unanswered.
    m.muted.push(bid);
    m.run(Duration::from_millis(300));
    m.muted.clear();
    m.run(Duration::from_secs(6));
    assert!(m.paired(a, b));
}

#[test]
fn renewal_is_asked_for_before_expiry() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    // Certificates live an hour from 60 s ago: renewal is due at two thirds of that.
    let mut asked = false;
    for _ in 0..2500 {
        m.elapsed += Duration::from_secs(1);
        let now = m.now();
        m.nodes[a].handle_timeout(now);
        while let Some(o) = m.nodes[a].poll_output() {
            asked |= matches!(o, Output::RenewCertificate);
        }
        if asked {
            break;
        }
    }
    assert!(asked);
    let secs = m.elapsed.as_secs();
    assert!((2300..2500).contains(&secs), "renewal asked at {secs} s");
}

#[test]
fn on_demand_streams_wait_for_want_and_rekey_flips_the_epoch_on_both_ends() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["dev"]);
    let b = m.add("lab", &["dev"]);
    m.nodes[a].set_on_demand(true);
    m.nodes[b].set_on_demand(true);
    m.run(Duration::from_secs(2));
    assert!(m.apart(a, b), "no traffic, no streams");
    let now = m.now();
    let b_id = m.id(b);
    assert!(m.nodes[a].want(b_id, now));
    m.run(Duration::from_millis(300));
    let first = m.stream_fps(a, b, "out");
    assert!(first.is_some() && first == m.stream_fps(b, a, "in"));
    assert!(
        m.stream_fps(b, a, "out").is_none(),
        "B has not asked for its own"
    );
    m.ups.sort_by_key(|u| u.0);
    let mut want = vec![(a, Direction::Out, 0, false), (b, Direction::In, 0, false)];
    want.sort_by_key(|u| u.0);
    assert_eq!(m.ups, want);

    m.ups.clear();
    let now = m.now();
    m.nodes[a].rekey(b_id, now);
    m.run(Duration::from_millis(300));
    let second = m.stream_fps(a, b, "out");
    assert!(second.is_some() && second != first, "a fresh key");
    assert_eq!(second, m.stream_fps(b, a, "in"), "both ends hold it");
    m.ups.sort_by_key(|u| u.0);
    let mut want = vec![(a, Direction::Out, 1, true), (b, Direction::In, 1, true)];
    want.sort_by_key(|u| u.0);
    assert_eq!(
        m.ups, want,
        "both ends replace the old key, in the other epoch"
    );
    assert_eq!(m.nodes[a].counters().rekeys, 1);

    m.nodes[a].unwant(b_id);
    let a_id = m.id(a);
    m.nodes[b].drop_inbound(a_id);
    m.run(Duration::from_secs(2));
    assert!(m.apart(a, b), "idle streams stay down until wanted again");
}

#[test]
fn a_presence_seen_first_in_a_handshake_is_not_stale_when_its_broadcast_follows() {
    let mut m = Mesh::new();
    let a = m.add("lab", &["a"]);
    let b = m.add("lab", &["a"]);
    let now = m.now();
    // B announces and asks A for a stream: A gets the request before the broadcast.
    m.nodes[b].handle_timeout(now);
    let (mut presence, mut request) = (None, None);
    while let Some(o) = m.nodes[b].poll_output() {
        match o {
            Output::Publish { payload, .. } => presence = Some(payload),
            Output::HandshakeRequest { payload, .. } => request = Some(payload),
            _ => {}
        }
    }
    // A learns of B from B's presence inside the request only if B knew A: make B know A.
    let a_presence = {
        m.nodes[a].handle_timeout(now);
        let mut p = None;
        while let Some(o) = m.nodes[a].poll_output() {
            if let Output::Publish { payload, .. } = o {
                p = Some(payload);
            }
        }
        p.unwrap()
    };
    m.nodes[b].handle_presence(now, &a_presence);
    while let Some(o) = m.nodes[b].poll_output() {
        match o {
            Output::Publish { payload, .. } => presence = Some(payload),
            Output::HandshakeRequest { payload, .. } => request = Some(payload),
            _ => {}
        }
    }
    let (presence, request) = (presence.unwrap(), request.unwrap());
    assert!(m.nodes[a].handle_handshake_request(now, &request).is_some());
    m.nodes[a].handle_presence(now, &presence);
    assert_eq!(m.ignored(a, Ignored::Stale), 0, "the echo is expected");
    m.nodes[a].handle_presence(now, &presence);
    assert_eq!(m.ignored(a, Ignored::Stale), 1, "a second copy is a replay");
}
