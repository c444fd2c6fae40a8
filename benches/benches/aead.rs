//! AES-256-GCM on the data path: one packet per call against batches of 32, for both
//! backends, at payload sizes from a TCP ACK to a GSO super-packet. Throughput counts
//! payload bytes. The raw single-call lines (no header, no counter, no batch) are the
//! reference the batched path has to match.
//!
//! Time is the benchmark thread's CPU time, not wall time: the benchmark machine is shared
//! by other jobs, and CPU time leaves out the slices in which the thread was not running,
//! so GB/s reads as "per core, while running".

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use conflux_benches::cpu_time::ThreadCpuTime;
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

fn packets(payload: usize) -> Vec<Vec<u8>> {
    vec![vec![0xa5; payload + OVERHEAD]; BATCH]
}

// Every line works through the same 32 packet buffers per iteration, so "single" and
// "batch32" touch the same memory and differ only in how many packets one call takes.

fn raw_references(c: &mut Criterion<ThreadCpuTime>, payload: usize) {
    let mut g = c.benchmark_group(format!("aead/{payload}B"));
    g.throughput(Throughput::BytesDecimal((payload * BATCH) as u64));
    let key = stream_key();
    let mut bufs = packets(payload);
    let aad = [0u8; 12];

    let aws = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.key).unwrap());
    g.bench_function("raw-seal/aws-lc-rs", |b| {
        b.iter(|| {
            for buf in &mut bufs {
                let tag = aws
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(key.nonce_base),
                        Aad::from(&aad),
                        &mut buf[..payload],
                    )
                    .unwrap();
                black_box(tag.as_ref());
            }
        })
    });

    let rc = Aes256Gcm::new_from_slice(&key.key).unwrap();
    g.bench_function("raw-seal/aes-gcm", |b| {
        b.iter(|| {
            for buf in &mut bufs {
                let tag = rc
                    .encrypt_inout_detached(
                        &key.nonce_base.into(),
                        &aad,
                        (&mut buf[..payload]).into(),
                    )
                    .unwrap();
                black_box(tag);
            }
        })
    });
    g.finish();
}

fn batched(c: &mut Criterion<ThreadCpuTime>, payload: usize) {
    let mut g = c.benchmark_group(format!("aead/{payload}B"));
    g.throughput(Throughput::BytesDecimal((payload * BATCH) as u64));
    let key = stream_key();
    let t0 = Instant::now();
    for (backend, name) in BACKENDS {
        for per_call in [1, BATCH] {
            let mode = if per_call == 1 { "single" } else { "batch32" };
            let mut bufs = packets(payload);

            // A sealer lives for 2^24 packets; start a fresh one well before that.
            let mut sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
            g.bench_function(BenchmarkId::new(format!("seal/{mode}"), name), |b| {
                b.iter(|| {
                    if sealer.rekey_due(t0) {
                        sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
                    }
                    for chunk in bufs.chunks_mut(per_call) {
                        let sealed = sealer.seal_batch(t0, PacketType::Data, 7, chunk);
                        black_box(sealed.unwrap());
                    }
                })
            });

            // Opening needs fresh counters every time (the replay window refuses repeats),
            // so each iteration seals then opens the same packets.
            let mut sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
            let mut opener = Opener::new(backend);
            opener.install(KeyEpoch::Even, &key, t0).unwrap();
            let mut verdicts = [Verdict::Pending; BATCH];
            g.bench_function(BenchmarkId::new(format!("seal+open/{mode}"), name), |b| {
                b.iter(|| {
                    if sealer.rekey_due(t0) {
                        sealer = Sealer::new(&key, 0, KeyEpoch::Even, backend, t0).unwrap();
                        opener.install(KeyEpoch::Even, &key, t0).unwrap();
                    }
                    for chunk in bufs.chunks_mut(per_call) {
                        sealer.seal_batch(t0, PacketType::Data, 7, chunk).unwrap();
                        let opened = opener.open_batch(t0, chunk, &mut verdicts);
                        assert_eq!(opened, chunk.len());
                    }
                })
            });
        }
    }
    g.finish();
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    for payload in PAYLOADS {
        raw_references(c, payload);
        batched(c, payload);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(Duration::from_millis(400))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
