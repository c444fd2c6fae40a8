//! Nebula (Debian's package) with the AES cipher: a CA and host certificates made offline
//! with `nebula-cert`, each host finding the other through `static_host_map`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Env, System, Tunnel, first_line};
use crate::harness::daemon::Daemon;
use crate::harness::shell::Shell;
use crate::harness::topology::{OVERLAY_A, OVERLAY_B, OVERLAY_PREFIX, Topology};

const PORT: u16 = 4242;
/// Same inner MTU as the WireGuard peers, which Nebula's 60-byte overhead fits under 1500.
const MTU: u16 = 1420;

/// Nebula with `cipher: aes`.
#[derive(Debug, Clone, Copy)]
pub struct Nebula;

impl System for Nebula {
    fn name(&self) -> String {
        "Nebula (AES)".into()
    }

    fn check(&self, _env: &Env) -> Result<String, String> {
        first_line(Path::new("nebula-cert"), &["-version"])?;
        first_line(Path::new("nebula"), &["-version"])
    }

    fn start(
        &self,
        topo: &Topology,
        env: &Env,
        dir: &Path,
        sh: &mut Shell,
    ) -> anyhow::Result<Tunnel> {
        std::fs::create_dir_all(dir)?;
        let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
        sh.run(Command::new("nebula-cert").args([
            "ca",
            "-name",
            "conflux-perf",
            "-out-crt",
            &file("ca.crt"),
            "-out-key",
            &file("ca.key"),
        ]))?;
        let ends = [
            (&topo.a, 'a', OVERLAY_A, topo.a_link().addr),
            (&topo.b, 'b', OVERLAY_B, topo.b_link().addr),
        ];
        let mut daemons = Vec::new();
        for (i, (ns, node, overlay, _)) in ends.into_iter().enumerate() {
            let (_, _, peer_overlay, peer_underlay) = ends[1 - i];
            sh.run(Command::new("nebula-cert").args([
                "sign",
                "-ca-crt",
                &file("ca.crt"),
                "-ca-key",
                &file("ca.key"),
                "-name",
                &node.to_string(),
                "-ip",
                &format!("{overlay}/{OVERLAY_PREFIX}"),
                "-out-crt",
                &file(&format!("{node}.crt")),
                "-out-key",
                &file(&format!("{node}.key")),
            ]))?;
            let config = dir.join(format!("{node}.yml"));
            let text = config_text(
                dir,
                node,
                &env.iface('n', node),
                &peer_overlay.to_string(),
                &format!("{peer_underlay}:{PORT}"),
            );
            std::fs::write(&config, text)?;
            sh.note(format!(
                "write {} (static_host_map, cipher: aes, tun mtu {MTU})",
                config.display()
            ));
            let mut cmd = ns.exec("nebula");
            cmd.arg("-config").arg(&config);
            daemons.push(Daemon::spawn(sh, &format!("nebula-{node}"), &mut cmd, dir)?);
        }
        Ok(Tunnel {
            target: OVERLAY_B,
            daemons,
        })
    }
}

fn config_text(
    dir: &Path,
    node: char,
    dev: &str,
    peer_overlay: &str,
    peer_endpoint: &str,
) -> String {
    let f = |n: String| -> PathBuf { dir.join(n) };
    format!(
        "pki:
  ca: {ca}
  cert: {crt}
  key: {key}
static_host_map:
  \"{peer_overlay}\": [\"{peer_endpoint}\"]
lighthouse:
  am_lighthouse: false
  hosts: []
listen:
  host: 0.0.0.0
  port: {PORT}
punchy:
  punch: false
cipher: aes
tun:
  dev: {dev}
  mtu: {MTU}
logging:
  level: warning
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
",
        ca = f("ca.crt".into()).display(),
        crt = f(format!("{node}.crt")).display(),
        key = f(format!("{node}.key")).display(),
    )
}
