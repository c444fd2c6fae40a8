//! WireGuard in three implementations (boringtun, wireguard-go, the kernel's), all set up
//! the same way with `wg` from wireguard-tools: one peer each side, MTU 1420.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Env, System, Tunnel, first_line};
use crate::harness::daemon::Daemon;
use crate::harness::netns::Netns;
use crate::harness::shell::{Shell, quiet};
use crate::harness::topology::{OVERLAY_A, OVERLAY_B, OVERLAY_PREFIX, Topology};

const PORT: &str = "51820";
/// The MTU wg-quick picks on a 1500-byte underlay, used by every WireGuard here.
const MTU: &str = "1420";

/// boringtun (`boringtun-cli`), with a given number of threads or its default.
#[derive(Debug, Clone, Copy)]
pub struct Boringtun {
    /// `--threads`; `None` keeps boringtun's default.
    pub threads: Option<u32>,
}

impl System for Boringtun {
    fn name(&self) -> String {
        match self.threads {
            Some(n) => format!("boringtun --threads {n}"),
            None => "boringtun (default threads)".into(),
        }
    }

    fn check(&self, env: &Env) -> Result<String, String> {
        need_wg()?;
        first_line(&env.boringtun, &["--version"])
    }

    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel> {
        start_pair(topo, env, dir, sh, 't', |sh, ns, ifname| {
            let mut cmd = ns.exec("env");
            cmd.arg("WG_SUDO=1")
                .arg(&env.boringtun)
                .args(["--foreground", "--disable-drop-privileges"]);
            if let Some(n) = self.threads {
                cmd.args(["--threads", &n.to_string()]);
            }
            cmd.args([
                "--log",
                &dir.join(format!("{ifname}.out")).to_string_lossy(),
            ])
            .arg(ifname);
            let d = Daemon::spawn(sh, &format!("boringtun-{ifname}"), &mut cmd, dir)?;
            wait_uapi(ifname)?;
            Ok(Some(d))
        })
    }
}

/// wireguard-go (Debian's package).
#[derive(Debug, Clone, Copy)]
pub struct WireGuardGo;

impl System for WireGuardGo {
    fn name(&self) -> String {
        "wireguard-go".into()
    }

    fn check(&self, _env: &Env) -> Result<String, String> {
        need_wg()?;
        first_line(Path::new("wireguard-go"), &["--version"])
    }

    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel> {
        start_pair(topo, env, dir, sh, 'g', |sh, ns, ifname| {
            let mut cmd = ns.exec("wireguard-go");
            cmd.args(["-f", ifname]);
            let d = Daemon::spawn(sh, &format!("wireguard-go-{ifname}"), &mut cmd, dir)?;
            wait_uapi(ifname)?;
            Ok(Some(d))
        })
    }
}

/// The kernel's WireGuard, where the kernel has it.
#[derive(Debug, Clone, Copy)]
pub struct KernelWireGuard;

impl System for KernelWireGuard {
    fn name(&self) -> String {
        "kernel WireGuard".into()
    }

    fn check(&self, env: &Env) -> Result<String, String> {
        need_wg()?;
        let mut sh = Shell::new();
        let ns = Netns::create(&format!("{}-k", env.tag), &mut sh).map_err(|e| format!("{e:#}"))?;
        ns.ip(&mut sh, &["link", "add", "wgprobe", "type", "wireguard"])
            .map_err(|e| {
                format!("`ip link add type wireguard` fails ({e:#}): not in this kernel")
            })?;
        Ok(format!(
            "kernel {}",
            super::super::machine::kernel_release()
        ))
    }

    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel> {
        start_pair(topo, env, dir, sh, 'k', |sh, ns, ifname| {
            ns.ip(sh, &["link", "add", ifname, "type", "wireguard"])?;
            Ok(None)
        })
    }
}

fn need_wg() -> Result<(), String> {
    first_line(Path::new("wg"), &["--version"]).map(drop)
}

/// Creates the interface on A and B with `make`, then keys, peers and addresses.
fn start_pair(
    topo: &Topology,
    env: &Env,
    dir: &Path,
    sh: &mut Shell,
    kind: char,
    make: impl Fn(&mut Shell, &Netns, &str) -> anyhow::Result<Option<Daemon>>,
) -> anyhow::Result<Tunnel> {
    std::fs::create_dir_all(dir)?;
    let ends = [
        (&topo.a, 'a', OVERLAY_A, topo.a_link().addr),
        (&topo.b, 'b', OVERLAY_B, topo.b_link().addr),
    ];
    let mut daemons = Vec::new();
    let mut keys = Vec::new();
    for (ns, node, ..) in ends {
        let ifname = env.iface(kind, node);
        daemons.extend(make(sh, ns, &ifname)?);
        keys.push(keypair(dir, node, sh)?);
    }
    for (i, (ns, node, overlay, _)) in ends.into_iter().enumerate() {
        let (_, peer_node, peer_overlay, peer_underlay) = ends[1 - i];
        let ifname = env.iface(kind, node);
        let (key_file, _) = &keys[i];
        let (_, peer_pub) = &keys[1 - i];
        debug_assert_ne!(node, peer_node);
        sh.run(ns.exec("wg").args([
            "set",
            &ifname,
            "private-key",
            &key_file.to_string_lossy(),
            "listen-port",
            PORT,
            "peer",
            peer_pub,
            "allowed-ips",
            &format!("{peer_overlay}/32"),
            "endpoint",
            &format!("{peer_underlay}:{PORT}"),
        ]))?;
        ns.ip(
            sh,
            &[
                "addr",
                "add",
                &format!("{overlay}/{OVERLAY_PREFIX}"),
                "dev",
                &ifname,
            ],
        )?;
        ns.ip(sh, &["link", "set", &ifname, "mtu", MTU, "up"])?;
    }
    Ok(Tunnel {
        target: OVERLAY_B,
        daemons,
    })
}

/// A private key in `<dir>/<node>.key` (mode 0600) and its public key.
fn keypair(dir: &Path, node: char, sh: &mut Shell) -> anyhow::Result<(PathBuf, String)> {
    let private = quiet(Command::new("wg").arg("genkey"))?;
    let path = dir.join(format!("{node}.key"));
    std::fs::File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?
        .write_all(private.as_bytes())?;
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting `wg pubkey`")?;
    child
        .stdin
        .take()
        .context("wg pubkey's stdin")?
        .write_all(private.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("`wg pubkey` failed: {}", out.status);
    }
    sh.note(format!("wg genkey > {}", path.display()));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    sh.alias(public.clone(), format!("$(wg pubkey < {})", path.display()));
    Ok((path, public))
}

/// Waits for a userspace WireGuard's control socket, which exists once the interface does.
fn wait_uapi(ifname: &str) -> anyhow::Result<()> {
    let sock = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear within 10 s", sock.display());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
