//! Stream handshakes through the control process's sans-io core: two `node::core::Node`s
//! in memory meet as they do over NATS. Each checks the other's presence (Guardian
//! certificate and presence signature), each sets up its outbound stream (ML-KEM-768 and
//! ML-DSA-65 both ways, certificates and realm/taint policy checked), until both streams
//! of the pair are up at both ends.
//!
//! One iteration is one pair meeting: two handshakes, so the throughput reads as
//! handshakes per second. Node identities, Guardian's certificates and the first presence
//! messages are made outside the measurement (a real node makes them once at start). The
//! machine is shared, so the same work is also measured in the thread's own CPU time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use conflux_benches::cpu_time::ThreadCpuTime;
use conflux_controlplane::node::config::Timing;
use conflux_controlplane::node::core::{Direction, Node, NodeParams, Now, Output};
use conflux_shared::cert::{self, GuardianKey};
use conflux_shared::crypto::identity::{NodeIdentity, SigningKey};
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::{NodeId, StreamId};
use conflux_shared::proto::NodeCertificate;
use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const HOUR: u64 = 3600;

/// Guardian's signing key, shared by every pair.
struct Guardian {
    key: SigningKey,
}

impl Guardian {
    fn keys(&self) -> Vec<GuardianKey> {
        vec![GuardianKey::new(self.key.verifying_key().clone())]
    }

    /// A registered node of realm `bench` with taints `{dev}`.
    fn node(&self, now: Now, n: u8) -> Node {
        let id = NodeId::random();
        let identity = NodeIdentity::generate();
        let certificate = cert::sign(
            NodeCertificate {
                node_id: id.0.to_vec(),
                realm: "bench".into(),
                owner: "admin".into(),
                region: "lab".into(),
                taints: vec!["dev".into()],
                ml_dsa_public_key: identity.public().dsa_bytes().to_vec(),
                ml_kem_public_key: identity.public().kem_bytes().to_vec(),
                overlay_address: format!("10.9.0.{n}"),
                not_before: now.unix_s() - 60,
                not_after: now.unix_s() + HOUR,
                ..NodeCertificate::default()
            },
            &self.key,
        );
        Node::new(
            NodeParams {
                node_id: id,
                identity,
                certificate,
                guardian_keys: self.keys(),
                timing: Timing::default(),
            },
            now,
        )
        .expect("a freshly certified node")
    }
}

/// Two nodes that have not met, with the presence each announced at start.
struct Pair {
    now: Now,
    a: Node,
    b: Node,
    presence_a: Vec<u8>,
    presence_b: Vec<u8>,
}

/// The node's first announcement (its first timeout announces it).
fn announce(node: &mut Node, now: Now) -> Vec<u8> {
    node.handle_timeout(now);
    let mut presence = None;
    while let Some(out) = node.poll_output() {
        if let Output::Publish { payload, .. } = out {
            presence = Some(payload);
        }
    }
    presence.expect("a node announces itself at its first timeout")
}

impl Pair {
    fn new(g: &Guardian) -> Self {
        let now = Now {
            mono: Instant::now(),
            unix_ms: 1_900_000_000_000,
        };
        let mut a = g.node(now, 1);
        let mut b = g.node(now, 2);
        let presence_a = announce(&mut a, now);
        let presence_b = announce(&mut b, now);
        Self {
            now,
            a,
            b,
            presence_a,
            presence_b,
        }
    }

    /// Each hears the other's presence; handshakes run until nothing is left to do.
    /// Returns the streams that came up at either end (four when the pair is done).
    fn meet(&mut self) -> Vec<Up> {
        let now = self.now;
        self.a.handle_presence(now, &self.presence_b);
        self.b.handle_presence(now, &self.presence_a);
        let mut up = Vec::with_capacity(4);
        while drain(&mut self.a, &mut self.b, now, &mut up)
            | drain(&mut self.b, &mut self.a, now, &mut up)
        {}
        up
    }
}

/// A stream that came up: its direction, id and key.
type Up = (Direction, StreamId, StreamKey);

/// Carries `from`'s outputs to `to` as NATS request/reply would; returns whether there
/// were any.
fn drain(from: &mut Node, to: &mut Node, now: Now, up: &mut Vec<Up>) -> bool {
    let mut any = false;
    while let Some(out) = from.poll_output() {
        any = true;
        match out {
            Output::HandshakeRequest {
                peer,
                attempt,
                payload,
                ..
            } => {
                let reply = to.handle_handshake_request(now, &payload);
                from.handle_handshake_reply(now, peer, attempt, reply.as_deref());
            }
            Output::StreamUp {
                direction,
                stream_id,
                key,
                ..
            } => up.push((direction, stream_id, key)),
            _ => {}
        }
    }
    any
}

/// One meeting, checked before anything is measured: both streams up at both ends, with
/// the same key at both ends of each.
fn check(g: &Guardian) {
    let mut p = Pair::new(g);
    let ups = p.meet();
    assert_eq!(ups.len(), 4, "both streams of the pair up at both ends");
    for (d, id, key) in ups.iter().filter(|u| u.0 == Direction::Out) {
        assert!(
            ups.iter()
                .any(|(d2, id2, k2)| d2 != d && id2 == id && k2 == key),
            "every outbound stream's key matches the other end's"
        );
    }
    for n in [&p.a, &p.b] {
        let c = n.counters();
        assert_eq!(
            (c.handshakes_initiated, c.handshakes_answered),
            (1, 1),
            "one handshake each way"
        );
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str, g: &Guardian) {
    let mut grp = c.benchmark_group(group);
    grp.throughput(Throughput::Elements(2));
    grp.bench_function("pair meets: presences checked, both streams up", |b| {
        b.iter_batched(
            || Pair::new(g),
            |mut p| black_box(p.meet()),
            BatchSize::SmallInput,
        )
    });
    grp.finish();
}

fn guardian() -> Guardian {
    let g = Guardian {
        key: SigningKey::generate(),
    };
    check(&g);
    g
}

fn wall_time(c: &mut Criterion) {
    bench(c, "node-handshake", &guardian());
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "cpu-time/node-handshake", &guardian());
}

criterion_group! {
    name = wall;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = wall_time
}
criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = cpu_time
}
criterion_main!(wall, cpu);
