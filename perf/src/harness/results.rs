//! What a run measured, kept as JSON so the report and charts can be made again from it.

use super::machine::Machine;
use super::ping::Latency;
use super::stats::Spread;
use super::systems::Role;
use super::topology::Shape;

/// How much each repetition measures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// Quick mode (Conflux and the ceiling only, shorter tests).
    pub quick: bool,
    /// Repetitions of every system, interleaved.
    pub reps: usize,
    /// Length of each TCP throughput test, s.
    pub tcp_secs: f64,
    /// Length of each UDP trial of the loss search, s.
    pub udp_trial_secs: f64,
    /// UDP trials per search.
    pub udp_steps: usize,
    /// UDP payload bytes (fits every tunnel's inner MTU without fragments).
    pub udp_len: usize,
    /// Loss that ends the UDP search, percent.
    pub udp_max_loss_percent: f64,
    /// Echo requests per ping series.
    pub ping_count: usize,
    /// Interval between echo requests, ms.
    pub ping_interval_ms: f64,
}

impl Params {
    /// The full run: every system, 3 repetitions, 8-second TCP tests.
    pub fn full() -> Self {
        Self {
            quick: false,
            reps: 3,
            tcp_secs: 8.0,
            udp_trial_secs: 1.5,
            udp_steps: 6,
            udp_len: 1200,
            udp_max_loss_percent: 1.0,
            ping_count: 1000,
            ping_interval_ms: 2.0,
        }
    }

    /// The quick run the test suite uses: short tests, same figures.
    pub fn quick() -> Self {
        Self {
            quick: true,
            reps: 3,
            tcp_secs: 2.0,
            udp_trial_secs: 1.0,
            udp_steps: 4,
            ping_interval_ms: 1.0,
            ..Self::full()
        }
    }
}

/// CPU seconds per gigabyte (10⁹ bytes) received, split by who spent them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuPerGb {
    /// The system's own processes on every node (user + system time).
    pub tunnel: f64,
    /// The kernel's own account, machine-wide: interrupt and softirq time plus kernel
    /// threads (where an in-kernel tunnel does its work).
    pub kernel: f64,
    /// Both iperf3 ends (their user time and the TCP/UDP stack work in their syscalls).
    pub iperf: f64,
}

impl CpuPerGb {
    /// All three together.
    pub fn total(&self) -> f64 {
        self.tunnel + self.kernel + self.iperf
    }
}

/// Resident memory of a system's processes on one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeRss {
    /// Node label (A, R, B).
    pub node: String,
    /// MiB.
    pub mib: f64,
}

/// One step of the UDP loss search.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UdpTrial {
    /// Rate the sender was asked for, Gbit/s.
    pub offered_gbps: f64,
    /// Rate the receiver saw, Gbit/s.
    pub received_gbps: f64,
    /// Datagrams lost, percent.
    pub lost_percent: f64,
}

/// Every figure of one repetition of one system.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Repetition number, from 0.
    pub rep: usize,
    /// TCP, one stream, Gbit/s.
    pub tcp1_gbps: f64,
    /// TCP, four streams, Gbit/s.
    pub tcp4_gbps: f64,
    /// Highest UDP receive rate with loss under the limit, Gbit/s.
    pub udp_gbps: f64,
    /// Ping with no other traffic.
    pub ping_idle: Latency,
    /// Ping during a one-stream TCP test.
    pub ping_loaded: Latency,
    /// CPU per GB during the one-stream TCP test.
    pub cpu: CpuPerGb,
    /// The system's resident memory per node, midway through the four-stream test.
    pub rss: Vec<NodeRss>,
    /// `UdpRcvbufErrors` added in all namespaces over the TCP tests and the loaded ping.
    pub rcvbuf_errors: u64,
    /// 1-minute load average when the repetition started.
    pub load_avg: f64,
    /// The UDP search's steps.
    pub udp_trials: Vec<UdpTrial>,
}

/// Everything measured for one system.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SystemResult {
    /// Row label.
    pub name: String,
    /// Ceiling, peer or Conflux.
    pub role: Role,
    /// Topology.
    pub shape: Shape,
    /// Version string, when it could run.
    pub version: Option<String>,
    /// Why it did not run.
    pub skipped: Option<String>,
    /// Successful repetitions.
    pub samples: Vec<Sample>,
    /// Repetitions that failed, with the reason.
    pub failures: Vec<String>,
    /// The commands that set it up (first repetition).
    pub commands: Vec<String>,
}

impl SystemResult {
    /// The spread of one figure over the repetitions.
    pub fn spread(&self, figure: impl Fn(&Sample) -> f64) -> Option<Spread> {
        Spread::of(self.samples.iter().map(figure))
    }

    /// Median of one figure over the repetitions.
    pub fn median(&self, figure: impl Fn(&Sample) -> f64) -> Option<f64> {
        self.spread(figure).map(|s| s.median)
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    /// When it started (UTC).
    pub date: String,
    /// Where it ran.
    pub machine: Machine,
    /// What each repetition measured.
    pub params: Params,
    /// 1-minute load average at the start and at the end.
    pub load: (f64, f64),
    /// Wall-clock length of the measurements, s.
    pub wall_secs: f64,
    /// Versions of the measuring tools.
    pub tools: Vec<(String, String)>,
    /// Extra arguments every `conflux-dataplane run` was given.
    #[serde(default)]
    pub dataplane_args: Vec<String>,
    /// The commands that made each topology, once per shape.
    pub topologies: Vec<(Shape, Vec<String>)>,
    /// Every system, in report order.
    pub systems: Vec<SystemResult>,
    /// The scale part, when it ran.
    #[serde(default)]
    pub scale: Option<super::scale::ScaleResult>,
}
