//! The systems measured side by side. Each is one module implementing [`System`]: it
//! says whether it can run here, and starts its tunnel on a fresh [`Topology`]. The
//! harness does everything else (reachability, traffic, accounting, report), so adding a
//! system is adding one module and one line in [`all`].

mod bare;
mod conflux;
mod nebula;
mod wireguard;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::daemon::Daemon;
use super::shell::Shell;
use super::topology::{Shape, Topology};

pub use bare::BareVeth;
pub use conflux::{ConfluxDirect, ConfluxRelayed, Tethers};
pub use nebula::Nebula;
pub use wireguard::{Boringtun, KernelWireGuard, WireGuardGo};

/// What a system is in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// No tunnel: the most the topology carries.
    Ceiling,
    /// A system users would pick instead of Conflux.
    Peer,
    /// Conflux itself.
    Conflux,
}

/// What every system may use: names unique to this run, a scratch directory, binaries.
#[derive(Debug, Clone)]
pub struct Env {
    /// A short tag unique to this run; namespaces and interfaces are named after it.
    pub tag: String,
    /// Scratch directory of this run (keys, configs, logs).
    pub work: PathBuf,
    /// Where the Conflux binaries are.
    pub bin_dir: PathBuf,
    /// Where the control-plane binaries are (`conflux`, `guardian`, `conflux-ctl`).
    pub control_bin_dir: PathBuf,
    /// The boringtun binary (`boringtun-cli`).
    pub boringtun: PathBuf,
    /// Extra arguments for every `conflux-dataplane run` (workers, pinning, offloads).
    pub dataplane_args: Vec<String>,
}

impl Env {
    /// A tunnel interface name for `node` (`a`, `b`, `r`) of the family `kind` (one
    /// letter), unique to this run: userspace WireGuard keeps its control sockets in a
    /// directory shared by all namespaces.
    pub fn iface(&self, kind: char, node: char) -> String {
        format!("{}{kind}{node}", self.tag)
    }

    /// `text` without what is particular to this run (scratch path, run tag), for the
    /// report.
    pub fn neutral(&self, text: &str) -> String {
        text.replace(&*self.work.to_string_lossy(), "$WORK")
            .replace(&self.tag, "perf")
    }
}

/// A tunnel running between A and B.
#[derive(Debug)]
pub struct Tunnel {
    /// B's address as A reaches it through the tunnel (iperf3 and ping target).
    pub target: Ipv4Addr,
    /// The system's processes; stopped when the tunnel is dropped.
    pub daemons: Vec<Daemon>,
}

/// One system under measurement.
pub trait System {
    /// The row label in the report.
    fn name(&self) -> String;

    /// What the system is in the comparison.
    fn role(&self) -> Role {
        Role::Peer
    }

    /// Whether `--quick` (Conflux and the ceiling only) measures it.
    fn quick(&self) -> bool {
        matches!(self.role(), Role::Ceiling | Role::Conflux)
    }

    /// The topology it runs on.
    fn shape(&self) -> Shape {
        Shape::Pair
    }

    /// Its version, or why it cannot run on this machine (the run goes on without it).
    fn check(&self, env: &Env) -> Result<String, String>;

    /// Starts the tunnel on `topo`; files go in `dir`. The harness then waits until A
    /// reaches [`Tunnel::target`].
    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel>;
}

/// Every system, in report order: the ceiling, Conflux (WebRTC tethers, then the plain
/// reference), then the peers (each in its best
/// configuration, and boringtun also in its default one).
pub fn all() -> Vec<Box<dyn System>> {
    vec![
        Box::new(BareVeth),
        Box::new(ConfluxDirect {
            tethers: Tethers::WebRtc,
        }),
        Box::new(ConfluxRelayed {
            tethers: Tethers::WebRtc,
        }),
        Box::new(ConfluxDirect {
            tethers: Tethers::Plain,
        }),
        Box::new(Boringtun { threads: Some(1) }),
        Box::new(Boringtun { threads: None }),
        Box::new(WireGuardGo),
        Box::new(Nebula),
        Box::new(KernelWireGuard),
    ]
}

/// The first line of `program args`' output (stdout, else stderr), for version strings.
fn first_line(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{} not runnable: {e}", program.display()))?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned())
}
