//! Conflux's data plane driven by its static driver (`conflux-dataplane static`): A → B
//! directly, and A → R → B through a relay that holds no stream key. Each node runs
//! `conflux-dataplane run` (one worker per core, its defaults) and a static driver that
//! installs tethers, streams with random secrets, routes and relay entries.

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

/// Conflux with A and B on one veth pair.
#[derive(Debug, Clone, Copy)]
pub struct ConfluxDirect;

/// Conflux with A and B joined through relay R.
#[derive(Debug, Clone, Copy)]
pub struct ConfluxRelayed;

impl System for ConfluxDirect {
    fn name(&self) -> String {
        "Conflux direct".into()
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
        // A → B on B's label 7; B → A on A's label 8.
        let a = Config::new(dir, 'a')
            .tether(1, ub)
            .stream(&streams.ab, "egress", 7, OVERLAY_B)
            .stream(&streams.ba, "ingress", 8, OVERLAY_B)
            .route(OVERLAY_B, 1, 7);
        let b = Config::new(dir, 'b')
            .tether(1, ua)
            .stream(&streams.ba, "egress", 8, OVERLAY_A)
            .stream(&streams.ab, "ingress", 7, OVERLAY_A)
            .route(OVERLAY_A, 1, 8);
        let mut daemons = Vec::new();
        for (ns, node, overlay) in [(&topo.a, 'a', OVERLAY_A), (&topo.b, 'b', OVERLAY_B)] {
            daemons.push(dataplane(sh, env, dir, ns, node, overlay)?);
        }
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
        "Conflux relayed (A→R→B)".into()
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
        // A → R (R's label 70) → B (B's label 7); B → R (R's label 80) → A (A's label 8).
        let a = Config::new(dir, 'a')
            .tether(1, ra.addr)
            .stream(&streams.ab, "egress", 70, OVERLAY_B)
            .stream(&streams.ba, "ingress", 8, OVERLAY_B)
            .route(OVERLAY_B, 1, 70);
        let r = Config::new(dir, 'r')
            .tether(1, topo.a_link().addr)
            .tether(2, topo.b_link().addr)
            .relay(70, 2, 7)
            .relay(80, 1, 8);
        let b = Config::new(dir, 'b')
            .tether(1, rb.addr)
            .stream(&streams.ba, "egress", 80, OVERLAY_A)
            .stream(&streams.ab, "ingress", 7, OVERLAY_A)
            .route(OVERLAY_A, 1, 80);
        let nodes = [
            (&topo.a, 'a', OVERLAY_A),
            (r_ns, 'r', OVERLAY_R),
            (&topo.b, 'b', OVERLAY_B),
        ];
        let mut daemons = Vec::new();
        for (ns, node, overlay) in nodes {
            daemons.push(dataplane(sh, env, dir, ns, node, overlay)?);
        }
        for (ns, cfg) in [(&topo.a, a), (r_ns, r), (&topo.b, b)] {
            daemons.push(driver(sh, env, dir, ns, cfg)?);
        }
        Ok(Tunnel {
            target: OVERLAY_B,
            daemons,
        })
    }
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

    fn tether(mut self, id: u32, peer: Ipv4Addr) -> Self {
        let _ = write!(
            self.text,
            "\n[[tether]]\nid = {id}\npeer = \"{peer}:{PORT}\"\n"
        );
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
        .args(["--listen", &format!("0.0.0.0:{PORT}")])
        .args(&env.dataplane_args)
        .arg("--socket")
        .arg(&sock);
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
