//! Conflux's data plane driven by its static driver (`conflux-dataplane static`): A → B
//! directly, and A → R → B through a relay that holds no stream key. Each node runs
//! `conflux-dataplane run` with one unpinned worker and a static driver that installs
//! tethers, streams with random secrets, routes and relay entries.
//!
//! The hops are WebRTC tethers, the product path (ICE, DTLS 1.2 authenticated by each
//! peer's certificate fingerprint, SCTP data channels; A is ICE controlling towards R and
//! B, R towards B). A row with plain tethers (one sealed packet per UDP datagram, no DTLS
//! record, no SCTP chunk) is kept as a framing-free reference: the gap between the two is
//! what the tether's framing costs.
//!
//! One worker per node: the static driver opens a WebRTC tether on worker 0 only (see
//! `conflux_dataplane::hop`), and with two cores shared by two or three nodes and both
//! iperf3 ends a second worker per node has no core of its own to run on. Unpinned, because
//! pinning every node's worker 0 to core 0 would stack all of them on one core.

use std::fmt::Write as _;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Env, Role, System, Tunnel, first_line};
use crate::harness::daemon::Daemon;
use crate::harness::netns::Netns;
use crate::harness::shell::Shell;
use crate::harness::topology::{OVERLAY_A, OVERLAY_B, OVERLAY_PREFIX, Shape, Topology};

const BIN: &str = "conflux-dataplane";
const PORT: u16 = 51820;
/// R's overlay address; nothing is sent to it.
const OVERLAY_R: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 3);

/// How the data planes frame packets between hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tethers {
    /// WebRTC tethers: DTLS 1.2 records and SCTP DATA chunks (the product path).
    WebRtc,
    /// Plain tethers: one sealed packet per datagram (a framing-free reference).
    Plain,
}

impl Tethers {
    fn suffix(self) -> &'static str {
        match self {
            Self::WebRtc => "",
            Self::Plain => ", plain tethers (framing-free reference)",
        }
    }
}

/// Conflux with A and B on one veth pair.
#[derive(Debug, Clone, Copy)]
pub struct ConfluxDirect {
    /// The hop framing.
    pub tethers: Tethers,
}

/// Conflux with A and B joined through relay R.
#[derive(Debug, Clone, Copy)]
pub struct ConfluxRelayed {
    /// The hop framing.
    pub tethers: Tethers,
}

impl System for ConfluxDirect {
    fn name(&self) -> String {
        format!("Conflux direct{}", self.tethers.suffix())
    }

    fn quick(&self) -> bool {
        self.tethers == Tethers::WebRtc
    }

    fn role(&self) -> Role {
        Role::Conflux
    }

    fn check(&self, env: &Env) -> Result<String, String> {
        check(env)
    }

    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel> {
        let streams = Streams::random()?;
        let (ua, ub) = (topo.a_link().addr, topo.b_link().addr);
        let mut daemons = Vec::new();
        let mut prints = Vec::new();
        for (ns, node, overlay) in [(&topo.a, 'a', OVERLAY_A), (&topo.b, 'b', OVERLAY_B)] {
            daemons.push(dataplane(sh, env, dir, ns, node, overlay)?);
            prints.push(self.tethers.fingerprint(sh, env, dir, ns, node)?);
        }
        let (fa, fb) = (&prints[0], &prints[1]);
        // A → B on B's label 7; B → A on A's label 8.
        let a = Config::new(dir, 'a')
            .tether(1, ub, web(true, fb))
            .stream(&streams.ab, "egress", 7, OVERLAY_B)
            .stream(&streams.ba, "ingress", 8, OVERLAY_B)
            .route(OVERLAY_B, 1, 7);
        let b = Config::new(dir, 'b')
            .tether(1, ua, web(false, fa))
            .stream(&streams.ba, "egress", 8, OVERLAY_A)
            .stream(&streams.ab, "ingress", 7, OVERLAY_A)
            .route(OVERLAY_A, 1, 8);
        for (ns, cfg) in [(&topo.a, a), (&topo.b, b)] {
            daemons.push(driver(sh, env, dir, ns, cfg)?);
        }
        Ok(Tunnel {
            target: OVERLAY_B,
            daemons,
        })
    }
}

impl System for ConfluxRelayed {
    fn name(&self) -> String {
        format!("Conflux relayed (A→R→B){}", self.tethers.suffix())
    }

    fn quick(&self) -> bool {
        self.tethers == Tethers::WebRtc
    }

    fn role(&self) -> Role {
        Role::Conflux
    }

    fn shape(&self) -> Shape {
        Shape::Relay
    }

    fn check(&self, env: &Env) -> Result<String, String> {
        check(env)
    }

    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel> {
        let r_ns = topo.r.as_ref().context("a relayed system needs R")?;
        let (ra, rb) = topo.r_links().context("a relayed system needs R's links")?;
        let streams = Streams::random()?;
        let nodes = [
            (&topo.a, 'a', OVERLAY_A),
            (r_ns, 'r', OVERLAY_R),
            (&topo.b, 'b', OVERLAY_B),
        ];
        let mut daemons = Vec::new();
        let mut prints = Vec::new();
        for (ns, node, overlay) in nodes {
            daemons.push(dataplane(sh, env, dir, ns, node, overlay)?);
            prints.push(self.tethers.fingerprint(sh, env, dir, ns, node)?);
        }
        let (fa, fr, fb) = (&prints[0], &prints[1], &prints[2]);
        // A → R (R's label 70) → B (B's label 7); B → R (R's label 80) → A (A's label 8).
        let a = Config::new(dir, 'a')
            .tether(1, ra.addr, web(true, fr))
            .stream(&streams.ab, "egress", 70, OVERLAY_B)
            .stream(&streams.ba, "ingress", 8, OVERLAY_B)
            .route(OVERLAY_B, 1, 70);
        let r = Config::new(dir, 'r')
            .tether(1, topo.a_link().addr, web(false, fa))
            .tether(2, topo.b_link().addr, web(true, fb))
            .relay(70, 2, 7)
            .relay(80, 1, 8);
        let b = Config::new(dir, 'b')
            .tether(1, rb.addr, web(false, fr))
            .stream(&streams.ba, "egress", 80, OVERLAY_A)
            .stream(&streams.ab, "ingress", 7, OVERLAY_A)
            .route(OVERLAY_A, 1, 80);
        for (ns, cfg) in [(&topo.a, a), (r_ns, r), (&topo.b, b)] {
            daemons.push(driver(sh, env, dir, ns, cfg)?);
        }
        Ok(Tunnel {
            target: OVERLAY_B,
            daemons,
        })
    }
}

/// A tether entry's WebRTC part, when the node has a fingerprint (WebRTC tethers).
fn web(controlling: bool, print: &Option<String>) -> Option<(bool, &str)> {
    print.as_ref().map(|f| (controlling, f.as_str()))
}

fn bin(env: &Env) -> PathBuf {
    env.bin_dir.join(BIN)
}

fn check(env: &Env) -> Result<String, String> {
    let bin = bin(env);
    if !bin.is_file() {
        return Err(format!("{} is not built", bin.display()));
    }
    first_line(&bin, &["static", "--help"])?;
    first_line(&bin, &["--version"])
}

/// The two streams of a pair, each with a fresh id and secret.
struct Streams {
    ab: Stream,
    ba: Stream,
}

struct Stream {
    id: String,
    secret: String,
}

impl Streams {
    fn random() -> anyhow::Result<Self> {
        let mut bytes = [0u8; 96];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("reading /dev/urandom")?;
        let hex = |b: &[u8]| {
            b.iter().fold(String::new(), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
        };
        Ok(Self {
            ab: Stream {
                id: hex(&bytes[..16]),
                secret: hex(&bytes[16..48]),
            },
            ba: Stream {
                id: hex(&bytes[48..64]),
                secret: hex(&bytes[64..96]),
            },
        })
    }
}

/// One node's static-driver file, built up entry by entry.
struct Config {
    node: char,
    text: String,
}

impl Config {
    fn new(dir: &Path, node: char) -> Self {
        Self {
            node,
            text: format!("socket = \"{}\"\n", socket(dir, node).display()),
        }
    }

    /// A tether to `peer`; `webrtc` (this end controlling, the peer's DTLS fingerprint)
    /// makes it a WebRTC tether, `None` a plain one.
    fn tether(mut self, id: u32, peer: Ipv4Addr, webrtc: Option<(bool, &str)>) -> Self {
        let _ = write!(
            self.text,
            "\n[[tether]]\nid = {id}\npeer = \"{peer}:{PORT}\"\n"
        );
        if let Some((controlling, fingerprint)) = webrtc {
            let _ = write!(
                self.text,
                "kind = \"webrtc\"\ncontrolling = {controlling}\nfingerprint = \"{fingerprint}\"\n"
            );
        }
        self
    }

    fn stream(mut self, s: &Stream, direction: &str, label: u32, peer: Ipv4Addr) -> Self {
        let _ = write!(
            self.text,
            "\n[[stream]]\nid = \"{}\"\ndirection = \"{direction}\"\nlabel = {label}\npeer = \"{peer}\"\nsecret = \"{}\"\n",
            s.id, s.secret
        );
        self
    }

    fn route(mut self, to: Ipv4Addr, tether: u32, label: u32) -> Self {
        let _ = write!(
            self.text,
            "\n[[route]]\nprefix = \"{to}/32\"\nhops = [{{ tether = {tether}, label = {label} }}]\n"
        );
        self
    }

    fn relay(mut self, in_label: u32, tether: u32, out_label: u32) -> Self {
        let _ = write!(
            self.text,
            "\n[[relay]]\nin_label = {in_label}\ntether = {tether}\nout_label = {out_label}\n"
        );
        self
    }
}

impl Tethers {
    /// The node's DTLS certificate fingerprint for its peers' tether entries (WebRTC), read
    /// from its snapshot; `None` for plain tethers.
    fn fingerprint(
        self,
        sh: &mut Shell,
        env: &Env,
        dir: &Path,
        ns: &Netns,
        node: char,
    ) -> anyhow::Result<Option<String>> {
        if self == Self::Plain {
            return Ok(None);
        }
        let mut cmd = ns.exec(bin(env));
        cmd.args(["snapshot", "--socket"]).arg(socket(dir, node));
        let out = sh.run(&mut cmd)?;
        let snap: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("node {node}: snapshot is not JSON"))?;
        let print = snap["dtls_fingerprint"]
            .as_str()
            .with_context(|| format!("node {node}: no DTLS fingerprint in its snapshot"))?;
        Ok(Some(print.to_owned()))
    }
}

fn socket(dir: &Path, node: char) -> PathBuf {
    dir.join(format!("{node}.sock"))
}

/// Starts `conflux-dataplane run` in `ns` and waits for its control socket.
fn dataplane(
    sh: &mut Shell,
    env: &Env,
    dir: &Path,
    ns: &Netns,
    node: char,
    overlay: Ipv4Addr,
) -> anyhow::Result<Daemon> {
    let sock = socket(dir, node);
    let mut cmd = ns.exec(bin(env));
    cmd.args(["run", "--tun", &env.iface('c', node)])
        .args(["--address", &format!("{overlay}/{OVERLAY_PREFIX}")])
        .args(["--listen", &format!("0.0.0.0:{PORT}")]);
    if !env
        .dataplane_args
        .iter()
        .any(|a| a.starts_with("--workers"))
    {
        cmd.args(["--workers", "1", "--no-pin"]);
    }
    cmd.args(&env.dataplane_args).arg("--socket").arg(&sock);
    let mut d = Daemon::spawn(sh, &format!("dataplane-{node}"), &mut cmd, dir)?;
    wait_for(&mut d, "its control socket", || sock.exists())?;
    Ok(d)
}

/// Writes the node's configuration (mode 0600: it holds stream secrets), starts its static
/// driver in `ns` and waits until it has installed the configuration.
fn driver(
    sh: &mut Shell,
    env: &Env,
    dir: &Path,
    ns: &Netns,
    cfg: Config,
) -> anyhow::Result<Daemon> {
    let file = dir.join(format!("{}.toml", cfg.node));
    std::fs::File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, cfg.text.as_bytes()))
        .with_context(|| format!("writing {}", file.display()))?;
    sh.note(format!(
        "write {} (tethers, streams with random secrets, routes, relay entries)",
        file.display()
    ));
    let name = format!("driver-{}", cfg.node);
    let log = dir.join(format!("{name}.log"));
    let mut cmd = ns.exec(bin(env));
    cmd.args(["static", "--config"]).arg(&file);
    let mut d = Daemon::spawn(sh, &name, &mut cmd, dir)?;
    wait_for(&mut d, "the static configuration", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("static configuration installed"))
    })?;
    Ok(d)
}

fn wait_for(d: &mut Daemon, what: &str, ready: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        d.check_running()?;
        if Instant::now() > deadline {
            bail!("no {what} within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
