//! Stream handshakes: complete two-party handshakes on one core (both sides' work), each
//! side's step alone, and the post-quantum primitives they are made of, with aws-lc-rs's
//! implementations of the same primitives alongside for comparison.
//!
//! The machine is shared, so besides wall time the complete handshake and the primitives are
//! also measured in the benchmark thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`): time
//! spent descheduled does not count, which is what "per core" means.

use std::hint::black_box;
use std::time::Duration;

use conflux_benches::cpu_time::ThreadCpuTime;
use conflux_shared::crypto::handshake::{
    Established, HandshakeConfig, INIT_CONTEXT, Initiator, Local, Peer, Responder,
};
use conflux_shared::crypto::identity::NodeIdentity;
use conflux_shared::id::{NodeId, StreamId};
use conflux_shared::taint::{Membership, Realm, TaintSet};
use conflux_shared::wire::handshake::{ACCEPT_MAX_LEN, HandshakeInit, INIT_MAX_LEN};
use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const START: u64 = 1_700_000_000;

struct Node {
    id: NodeId,
    identity: NodeIdentity,
    membership: Membership,
}

impl Node {
    fn new() -> Self {
        Self {
            id: NodeId::random(),
            identity: NodeIdentity::generate(),
            membership: Membership {
                realm: Realm::new("bench").unwrap(),
                taints: TaintSet::parse(["dev", "eu-west"]).unwrap(),
            },
        }
    }

    fn local(&self) -> Local<'_> {
        Local {
            id: self.id,
            identity: &self.identity,
            membership: &self.membership,
        }
    }

    fn cert(&self) -> Peer<'_> {
        Peer {
            id: self.id,
            public: self.identity.public(),
            membership: &self.membership,
        }
    }
}

/// One simulated second per handshake keeps the replay cache at its steady-state size
/// (about lifetime + skew entries) instead of filling it.
struct Clock(u64);

impl Clock {
    fn tick(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// `a` starts a handshake to `b` at `now`, writing the init into `out`.
fn start(
    config: &HandshakeConfig,
    a: &Node,
    b: &Node,
    now: u64,
    out: &mut [u8],
) -> (Initiator, usize) {
    Initiator::start(config, &a.local(), &b.cert(), StreamId::random(), now, out).unwrap()
}

/// `b` answers `a`'s init, writing the accept into `out`.
fn respond(
    responder: &mut Responder,
    a: &Node,
    b: &Node,
    init: &[u8],
    now: u64,
    out: &mut [u8],
) -> (Established, usize) {
    responder
        .handle_init(&b.local(), &a.cert(), init, now, out)
        .unwrap()
}

struct Setup {
    config: HandshakeConfig,
    a: Node,
    b: Node,
    responder: Responder,
    clock: Clock,
    init_buf: Vec<u8>,
    accept_buf: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
        let config = HandshakeConfig::default();
        Self {
            config,
            a: Node::new(),
            b: Node::new(),
            responder: Responder::new(config),
            clock: Clock(START),
            init_buf: vec![0u8; INIT_MAX_LEN],
            accept_buf: vec![0u8; ACCEPT_MAX_LEN],
        }
    }

    /// A → B, both sides' work.
    fn complete(&mut self) {
        let now = self.clock.tick();
        let (a, b) = (&self.a, &self.b);
        let (initiator, n) = start(&self.config, a, b, now, &mut self.init_buf);
        let init = &self.init_buf[..n];
        let (at_b, m) = respond(&mut self.responder, a, b, init, now, &mut self.accept_buf);
        let at_a = initiator
            .handle_accept(&a.local(), &b.cert(), &self.accept_buf[..m], now)
            .unwrap();
        debug_assert_eq!(at_a.key, at_b.key);
        black_box((at_a, at_b));
    }
}

fn complete<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut setup = Setup::new();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("complete (both sides)", |bench| {
        bench.iter(|| setup.complete())
    });
    g.finish();
}

fn steps(c: &mut Criterion) {
    let Setup {
        config,
        a,
        b,
        mut responder,
        mut clock,
        mut init_buf,
        mut accept_buf,
    } = Setup::new();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("initiator: start", |bench| {
        bench.iter(|| {
            let now = clock.tick();
            black_box(start(&config, &a, &b, now, &mut init_buf))
        })
    });

    g.bench_function("responder: init to accept", |bench| {
        bench.iter_batched(
            || {
                let now = clock.tick();
                let mut init = vec![0u8; INIT_MAX_LEN];
                let (_, n) = start(&config, &a, &b, now, &mut init);
                init.truncate(n);
                (init, now)
            },
            |(init, now)| black_box(respond(&mut responder, &a, &b, &init, now, &mut accept_buf)),
            BatchSize::SmallInput,
        )
    });

    g.bench_function("initiator: accept to key", |bench| {
        bench.iter_batched(
            || {
                let now = clock.tick();
                let (initiator, n) = start(&config, &a, &b, now, &mut init_buf);
                let mut accept = vec![0u8; ACCEPT_MAX_LEN];
                let (_, m) = respond(&mut responder, &a, &b, &init_buf[..n], now, &mut accept);
                accept.truncate(m);
                (initiator, accept, now)
            },
            |(initiator, accept, now)| {
                black_box(
                    initiator
                        .handle_accept(&a.local(), &b.cert(), &accept, now)
                        .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });

    // Parsing alone: what a malformed or misaddressed init costs before any signature check.
    let (_, n) = start(&config, &a, &b, START, &mut init_buf);
    let init = init_buf[..n].to_vec();
    g.bench_function("parse init", |bench| {
        bench.iter(|| black_box(HandshakeInit::parse(black_box(&init)).unwrap().expires()))
    });
    g.finish();
}

fn primitives<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let node = NodeIdentity::generate();
    let msg = [0x5au8; 1300]; // about an init's signed part
    let sig = node.sign(INIT_CONTEXT, &msg);
    let (ct, _) = node.public().encapsulate();

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("ML-KEM-768 encapsulate", |bench| {
        bench.iter(|| black_box(node.public().encapsulate()))
    });
    g.bench_function("ML-KEM-768 decapsulate", |bench| {
        bench.iter(|| black_box(node.decapsulate(black_box(&ct))))
    });
    g.bench_function("ML-DSA-65 sign 1300 B", |bench| {
        bench.iter(|| black_box(node.sign(INIT_CONTEXT, black_box(&msg))))
    });
    g.bench_function("ML-DSA-65 verify 1300 B", |bench| {
        bench.iter(|| {
            node.public()
                .verify(INIT_CONTEXT, black_box(&msg), black_box(&sig))
                .unwrap()
        })
    });
    g.bench_function("identity generate (both key pairs)", |bench| {
        bench.iter(|| black_box(NodeIdentity::generate()))
    });
    g.finish();
}

/// The same primitives in aws-lc-rs, measured side by side before any switch of backend.
fn aws_lc_reference<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, ML_KEM_768};
    use aws_lc_rs::signature::{
        KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair, UnparsedPublicKey,
    };

    let msg = [0x5au8; 1300];
    let dsa = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).unwrap();
    let mut sig = vec![0u8; ML_DSA_65_SIGNING.signature_len()];
    let sig_len = dsa.sign(&msg, &mut sig).unwrap();
    sig.truncate(sig_len);
    let verifier = UnparsedPublicKey::new(&ML_DSA_65, dsa.public_key().as_ref().to_vec());
    let dk = DecapsulationKey::generate(&ML_KEM_768).unwrap();
    let ek = dk.encapsulation_key().unwrap();
    let (ct, _) = ek.encapsulate().unwrap();
    let ct = ct.as_ref().to_vec();

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("ML-KEM-768 encapsulate", |bench| {
        bench.iter(|| black_box(ek.encapsulate().unwrap()))
    });
    g.bench_function("ML-KEM-768 decapsulate", |bench| {
        bench.iter(|| black_box(dk.decapsulate(Ciphertext::from(&ct[..])).unwrap()))
    });
    let mut out = vec![0u8; ML_DSA_65_SIGNING.signature_len()];
    g.bench_function("ML-DSA-65 sign 1300 B", |bench| {
        bench.iter(|| black_box(dsa.sign(black_box(&msg), &mut out).unwrap()))
    });
    g.bench_function("ML-DSA-65 verify 1300 B", |bench| {
        bench.iter(|| verifier.verify(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.finish();
}

fn wall_time(c: &mut Criterion) {
    complete(c, "handshake");
    steps(c);
    primitives(c, "pqcrypto");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    complete(c, "cpu-time/handshake");
    primitives(c, "cpu-time/pqcrypto");
    aws_lc_reference(c, "cpu-time/aws-lc-rs");
}

criterion_group! {
    name = wall;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = wall_time
}
criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = cpu_time
}
criterion_main!(wall, cpu);
