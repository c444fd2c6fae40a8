//! Records per second through a shared-memory ring between two processes: 64-byte
//! records pushed one at a time, in batches of 32 and 256 (copied in), and in batches
//! of 32 filled in place through a reservation. The consumer is a second process (this
//! binary run again) that pops with the same batch size and validates every record; a
//! measurement ends only when the consumer has released every record, so the figure is
//! end-to-end. Both ends have doorbells, as in production: the hot path pays the fence
//! that checks whether the peer sleeps.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use conflux_benches::ring::{CAPACITY, CHILD_ENV, KIND_BASE, Rec64, describe, run_consumer};
use conflux_shared::ring::fdpass::send_fds;
use conflux_shared::ring::{Doorbells, Producer, RecordRing};
use criterion::{BenchmarkId, Criterion, Throughput};

/// (name, batch size, fill in place).
const CASES: [(&str, usize, bool); 4] = [
    ("single", 1, false),
    ("batch", 32, false),
    ("batch", 256, false),
    ("reserve", 32, true),
];

/// Longest a measurement may wait on the consumer before declaring it gone.
const STALL: Duration = Duration::from_secs(20);

fn push_all(p: &mut Producer<Rec64>, recs: &[Rec64]) {
    let mut off = 0;
    let start = Instant::now();
    while off < recs.len() {
        off += p.push_batch(&recs[off..]).unwrap();
        if off < recs.len() && !p.wait_for_space(1, Duration::from_millis(50)).unwrap() {
            assert!(start.elapsed() < STALL, "consumer stalled");
        }
    }
}

fn fill_in_place(p: &mut Producer<Rec64>, n: usize, seq: &mut u64) {
    let mut done = 0;
    let start = Instant::now();
    while done < n {
        let mut slots = p.reserve(n - done).unwrap();
        let k = slots.len();
        for slot in slots.iter_mut() {
            *slot = Rec64::new(*seq);
            *seq += 1;
        }
        slots.commit(k);
        done += k;
        if done < n && !p.wait_for_space(1, Duration::from_millis(50)).unwrap() {
            assert!(start.elapsed() < STALL, "consumer stalled");
        }
    }
}

fn drain(p: &mut Producer<Rec64>) {
    let start = Instant::now();
    while p.pending().unwrap() > 0 {
        std::hint::spin_loop();
        assert!(start.elapsed() < STALL, "consumer stalled");
    }
}

/// Kills the consumer if the benchmark panics.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn bench(c: &mut Criterion) {
    let rings: Vec<RecordRing<Rec64>> = (0..CASES.len())
        .map(|i| RecordRing::create(KIND_BASE + i as u32, CAPACITY).unwrap())
        .collect();
    let bells = Doorbells::new().unwrap();

    let dir = std::env::temp_dir().join(format!("conflux-ring-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rings.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &path)
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let (socket, _) = listener.accept().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let mut fds: Vec<_> = rings.iter().map(|r| r.fd()).collect();
    fds.extend(bells.fds());
    let batches: Vec<usize> = CASES.iter().map(|c| c.1).collect();
    send_fds(&socket, &describe(&batches), &fds).unwrap();

    let mut producers: Vec<Producer<Rec64>> = rings
        .into_iter()
        .map(|r| {
            let mut p = r.into_producer();
            p.set_doorbells(bells.try_clone().unwrap());
            p
        })
        .collect();

    let mut g = c.benchmark_group("ring/64B/two-processes");
    for ((name, batch, in_place), p) in CASES.iter().zip(&mut producers) {
        g.throughput(Throughput::Elements(*batch as u64));
        let mut seq = 0u64;
        g.bench_function(BenchmarkId::new(*name, batch), |b| {
            b.iter_custom(|iters| {
                let recs: Vec<Rec64> = (0..*batch as u64).map(Rec64::new).collect();
                let start = Instant::now();
                for _ in 0..iters {
                    if *in_place {
                        fill_in_place(p, *batch, &mut seq);
                    } else {
                        push_all(p, &recs);
                    }
                }
                drain(p);
                start.elapsed()
            })
        });
    }
    g.finish();

    let published: u64 = producers.iter().map(|p| p.stats().records).sum();
    drop(socket);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "consumer process failed: {status}");
    eprintln!("ring bench: {published} records published, consumer exited cleanly");
}

fn main() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        match run_consumer(&PathBuf::from(path)) {
            Ok(_) => return,
            Err(e) => {
                eprintln!("ring bench consumer: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
