//! `conflux-perf --quick` (what `perf/run --quick` runs after building) on the binaries
//! the suite built: it must finish, measure the bare veth path and Conflux direct and
//! relayed in every repetition, run the reduced scale part (1,000 peers' streams in one
//! data plane, a mesh of 5 control processes), give sane non-zero figures, write the
//! report and charts, and leave no namespace behind. No figure is compared with a
//! threshold: speed is for the report, not for a test.
//!
//! Needs root, /dev/net/tun, `ip`, `ping`, `iperf3` and `nats-server` (tests/setup.sh
//! installs them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conflux_perf::harness::report::{BEGIN, END};
use conflux_perf::harness::results::{RunResult, Sample};
use conflux_perf::harness::scale::{self, ScaleParams, ScaleResult};
use conflux_perf::harness::systems::Role;
use conflux_perf::harness::topology::Shape;
use conflux_tests::bins::workspace_bin;

/// Only guards against a hang; the quick run takes a few minutes.
const HANG: Duration = Duration::from_secs(20 * 60);

fn check_sample(name: &str, s: &Sample, ping_count: usize) {
    let ctx = format!("{name}, repetition {}: {s:?}", s.rep + 1);
    for (what, v) in [
        ("TCP -P1", s.tcp1_gbps),
        ("TCP -P4", s.tcp4_gbps),
        ("UDP", s.udp_gbps),
    ] {
        assert!(v.is_finite() && v > 0.0, "{what} throughput: {ctx}");
    }
    for (what, l) in [("idle", s.ping_idle), ("loaded", s.ping_loaded)] {
        assert!(
            l.samples > 0 && l.samples + l.lost == ping_count,
            "{what} ping count: {ctx}"
        );
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms,
            "{what} ping percentiles: {ctx}"
        );
    }
    assert!(
        s.cpu.total() > 0.0 && s.cpu.iperf > 0.0,
        "CPU per GB: {ctx}"
    );
    assert!(!s.udp_trials.is_empty(), "UDP search: {ctx}");
}

fn check_scale(s: &ScaleResult, log: &str) {
    assert!(
        s.failures.is_empty(),
        "scale failed: {:?}\n{log}",
        s.failures
    );
    assert_eq!(s.params, ScaleParams::quick());
    let st = s.streams.as_ref().expect("stream memory measured");
    let peers = s.params.peers;
    assert_eq!(
        (
            st.egress_installed,
            st.ingress_installed,
            st.routes_installed
        ),
        (peers, peers, peers),
        "the snapshot shows every stream and route: {st:?}"
    );
    assert!(
        st.records_applied > 3 * peers as u64,
        "tether, streams and routes applied: {st:?}"
    );
    assert_eq!(st.phases.len(), 3, "{st:?}");
    assert!(st.rss_before_kib > 0 && st.anon_before_kib > 0, "{st:?}");
    // Sane: installing thousands of entries grows the heap, by less than a MiB each.
    for b in [st.bytes_per_stream(), st.anon_bytes_per_stream()] {
        assert!(
            b.is_finite() && b > 0.0 && b < 1048576.0,
            "{b} B per stream: {st:?}"
        );
    }
    let m = s.mesh.as_ref().expect("mesh convergence measured");
    assert_eq!(m.nodes, s.params.nodes);
    // Times the nodes recorded, in order, and no later than polling saw the mesh complete
    // (one clock, millisecond timestamps).
    assert!(
        0.0 < m.registered_secs
            && 0.0 < m.first_stream_secs
            && m.first_stream_secs <= m.first_converged_secs
            && m.first_converged_secs <= m.converged_secs
            && m.converged_secs <= m.detected_secs + 0.01,
        "{m:?}"
    );
    assert!(
        0.0 < m.handshake_p50_ms && m.handshake_p50_ms <= m.handshake_max_ms,
        "{m:?}"
    );
    // Every node set up a stream to every other and answered every other's.
    let pairs = m.outbound_streams() as u64;
    assert!(
        m.handshakes_initiated >= pairs && m.handshakes_answered >= pairs,
        "{m:?}"
    );
    assert!(m.handshakes_per_sec().is_finite() && m.handshakes_per_sec() > 0.0);
    assert!(!s.commands.is_empty());
}

#[test]
fn perf_quick_measures_conflux_and_the_ceiling() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the perf run needs root");
    let out = tempfile::tempdir().expect("temp dir");
    let log_path = out.path().join("conflux-perf.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(workspace_bin("conflux-perf"))
        .args(["--quick", "--out"])
        .arg(out.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("starting conflux-perf");
    let tag = format!("cx{:x}", child.id());
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("conflux-perf --quick still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "conflux-perf --quick failed:\n{stderr}");

    let text = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let run: RunResult = serde_json::from_str(&text).expect("results.json parses");
    assert!(run.params.quick && run.params.reps >= 1);
    let names: Vec<(&str, Role, Shape)> = run
        .systems
        .iter()
        .map(|s| (s.name.as_str(), s.role, s.shape))
        .collect();
    assert!(
        names.iter().all(|&(_, role, _)| role != Role::Peer),
        "quick mode measures no peers: {names:?}"
    );
    for want in [
        (Role::Ceiling, Shape::Pair),
        (Role::Conflux, Shape::Pair),
        (Role::Conflux, Shape::Relay),
    ] {
        assert!(
            names.iter().any(|&(_, r, s)| (r, s) == want),
            "no {want:?} system in {names:?}"
        );
    }
    for s in &run.systems {
        assert_eq!(s.skipped, None, "{} was skipped", s.name);
        assert!(
            s.failures.is_empty(),
            "{} failed: {:?}\n{stderr}",
            s.name,
            s.failures
        );
        assert_eq!(s.samples.len(), run.params.reps, "{}", s.name);
        for sample in &s.samples {
            check_sample(&s.name, sample, run.params.ping_count);
            match s.role {
                // No tunnel: nothing of its own to hold memory or CPU.
                Role::Ceiling => assert!(sample.rss.is_empty() && sample.cpu.tunnel == 0.0),
                _ => {
                    let nodes = if s.shape == Shape::Relay { 3 } else { 2 };
                    assert_eq!(sample.rss.len(), nodes, "{}: {sample:?}", s.name);
                    assert!(
                        sample.rss.iter().all(|n| n.mib > 0.0),
                        "{}: {sample:?}",
                        s.name
                    );
                    assert!(sample.cpu.tunnel > 0.0, "{}: {sample:?}", s.name);
                }
            }
        }
    }

    check_scale(run.scale.as_ref().expect("the scale part ran"), &stderr);

    let report = std::fs::read_to_string(out.path().join("RESULTS.md")).expect("RESULTS.md");
    assert!(report.contains(BEGIN) && report.contains(END), "{report}");
    assert!(
        report.contains(scale::report::BEGIN)
            && report.contains(scale::report::END)
            && report.contains("memory per idle stream"),
        "{report}"
    );
    for s in &run.systems {
        assert!(
            report.contains(&format!("| {} |", s.name)),
            "{} not in the report",
            s.name
        );
    }
    for chart in ["throughput", "latency", "cpu"] {
        let png = std::fs::read(out.path().join(format!("charts/{chart}.png"))).expect(chart);
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{chart}.png"
        );
    }

    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&format!("{tag}-"))),
        "namespaces left behind: {left}"
    );
}
