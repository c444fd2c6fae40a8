//! AES-256-GCM on the data path: one packet per call against batches of 32, for both
//! backends, at payload sizes from a TCP ACK to a GSO super-packet. Throughput counts
//! payload bytes. The raw single-call lines (no header, no counter, no batch) are the
//! reference the batched path has to match.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use conflux_shared::crypto::aead::{Backend, Opener, Sealer, Verdict};
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::wire::data::{KeyEpoch, OVERHEAD, PacketType};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const PAYLOADS: [usize; 4] = [64, 1420, 9000, 64 * 1024];
const BATCH: usize = 32;
const BACKENDS: [(Backend, &str); 2] = [
    (Backend::AwsLc, "aws-lc-rs"),
    (Backend::RustCrypto, "aes-gcm"),
];

fn stream_key() -> StreamKey {
    StreamKey {
        key: [0x42; 32],
        nonce_base: [0x17; 12],
    }
}

fn packets(payload: usize, n: usize) -> Vec<Vec<u8>> {
    vec![vec![0xa5; payload + OVERHEAD]; n]
}

fn raw_references(c: &mut Criterion, payload: usize) {
    let mut g = c.benchmark_group(format!("aead/{payload}B"));
    g.throughput(Throughput::BytesDecimal(payload as u64));
    let key = stream_key();
    let mut buf = vec![0xa5; payload];

    let aws = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.key).unwrap());
    g.bench_function("raw-seal/aws-lc-rs", |b| {
        b.iter(|| {
            aws.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(key.nonce_base),
                Aad::from(&[0u8; 12]),
                &mut buf,
            )
            .unwrap()
        })
    });

    let rc = Aes256Gcm::new_from_slice(&key.key).unwrap();
    g.bench_function("raw-seal/aes-gcm", |b| {
        b.iter(|| {
            rc.encrypt_inout_detached(
                &key.nonce_base.into(),
                &[0u8; 12],
                buf.as_mut_slice().into(),
            )
            .unwrap()
        })
    });
    g.finish();
}

fn batched(c: &mut Criterion, payload: usize) {
    let mut g = c.benchmark_group(format!("aead/{payload}B"));
    let key = stream_key();
    let t0 = Instant::now();
    for (backend, name) in BACKENDS {
        for n in [1, BATCH] {
            let mode = if n == 1 { "single" } else { "batch32" };
            g.throughput(Throughput::BytesDecimal((payload * n) as u64));
            let mut bufs = packets(payload, n);

            // A sealer lives for 2^24 packets; start a fresh one well before that.
            let mut sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
            g.bench_function(BenchmarkId::new(format!("seal/{mode}"), name), |b| {
                b.iter(|| {
                    if sealer.rekey_due(t0) {
                        sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
                    }
                    black_box(
                        sealer
                            .seal_batch(t0, PacketType::Data, 7, &mut bufs)
                            .unwrap(),
                    );
                })
            });

            // Opening needs fresh counters every time (the replay window refuses repeats),
            // so each iteration seals then opens the same batch.
            let mut sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
            let mut opener = Opener::new(backend);
            opener.install(KeyEpoch::Even, &key, t0).unwrap();
            let mut verdicts = vec![Verdict::Pending; n];
            g.bench_function(BenchmarkId::new(format!("seal+open/{mode}"), name), |b| {
                b.iter(|| {
                    if sealer.rekey_due(t0) {
                        sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
                        opener.install(KeyEpoch::Even, &key, t0).unwrap();
                    }
                    sealer
                        .seal_batch(t0, PacketType::Data, 7, &mut bufs)
                        .unwrap();
                    let opened = opener.open_batch(t0, &mut bufs, &mut verdicts);
                    assert_eq!(opened, n);
                })
            });
        }
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    for payload in PAYLOADS {
        raw_references(c, payload);
        batched(c, payload);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(400))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
