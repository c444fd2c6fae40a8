//! What internet exits change in the host, set up at start and undone at an orderly stop;
//! a start also removes what a killed run left (kill -9 runs no clean-up).
//!
//! - Portal: IPv4 forwarding, and an nftables table `ip conflux_portal` that masquerades
//!   overlay sources leaving through any interface but the TUN device. The data plane has
//!   already dropped (and counted) every internet-bound packet from a node of another
//!   owner before the kernel sees it.
//! - Rift: policy routing in the manner of wg-quick. Table [`RIFT_TABLE`] sends everything
//!   into the TUN device; rules send to it whatever the main table would route by its
//!   default route, except packets carrying the data plane's mark (its underlay sockets)
//!   and the NATS and Guardian servers. IPv6 gets the same rules with an unreachable
//!   default, so no IPv6 packet leaves by the underlay while the rift is up.

use std::net::{IpAddr, ToSocketAddrs};
use std::process::{Command, Stdio};

use tracing::{info, warn};

use super::gateway::Forwarding;
use crate::node::config::Config;

/// The routing table a rift's default route lives in.
pub(super) const RIFT_TABLE: &str = "51820";
/// Rule priorities: NATS/Guardian exceptions, main without its default, the tunnel.
const PREFS: [&str; 3] = ["5200", "5201", "5202"];
/// The portal's nftables table.
const NAT_TABLE: &str = "conflux_portal";

/// Runs a host command (`ip`, `nft`), feeding it `input`; `Err` holds its stderr.
pub(super) fn run(cmd: &str, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut c = Command::new(cmd);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().map_err(|e| format!("{cmd}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The exit state of the host.
#[derive(Debug, Default)]
pub(super) struct HostExit {
    forwarding: Option<Forwarding>,
    nat: bool,
    rift: bool,
}

impl HostExit {
    /// Sets up what the node's role needs; failures are logged (the node still runs, its
    /// exit does not).
    pub(super) fn start(cfg: &Config, exits: &super::overlay::Exits, subnet: &str) -> Self {
        clear_nat();
        clear_rift();
        let mut me = Self::default();
        if exits.portal {
            me.forwarding = Some(Forwarding::enable());
            let rules = format!(
                "table ip {NAT_TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting \
                 priority srcnat; policy accept;\n    ip saddr {subnet} oifname != \"{tun}\" \
                 masquerade\n  }}\n}}\n",
                tun = cfg.dataplane.tun
            );
            match run("nft", &["-f", "-"], Some(&rules)) {
                Ok(()) => {
                    info!(%subnet, "portal: NAT for this owner's nodes");
                    me.nat = true;
                }
                Err(e) => warn!("portal NAT not set up: {e}"),
            }
        }
        if exits.rift.is_some() {
            match rift_rules(cfg) {
                Ok(()) => {
                    info!(
                        mark = cfg.dataplane.mark,
                        "rift: internet traffic goes into the overlay"
                    );
                    me.rift = true;
                }
                Err(e) => {
                    warn!("rift routing not set up: {e}");
                    clear_rift();
                }
            }
        }
        me
    }

    /// Undoes everything.
    pub(super) fn stop(&mut self) {
        if std::mem::take(&mut self.nat) {
            clear_nat();
        }
        if std::mem::take(&mut self.rift) {
            clear_rift();
        }
        self.forwarding = None;
    }
}

fn clear_nat() {
    let _ = run("nft", &["delete", "table", "ip", NAT_TABLE], None);
}

fn clear_rift() {
    for family in ["-4", "-6"] {
        for pref in PREFS {
            // Several rules may share a priority (one per exception).
            while run("ip", &[family, "rule", "del", "pref", pref], None).is_ok() {}
        }
        let _ = run("ip", &[family, "route", "flush", "table", RIFT_TABLE], None);
    }
}

/// The addresses of the NATS servers and Guardian, which must not enter the tunnel.
fn control_servers(cfg: &Config) -> Vec<IpAddr> {
    let hosts = cfg
        .nats_urls
        .iter()
        .chain(std::iter::once(&cfg.guardian_url))
        .filter_map(|u| {
            let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
            let hostport = rest.split('/').next()?;
            let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
            let with_port = if hostport.contains(':') && !hostport.ends_with(']') {
                hostport.to_owned()
            } else {
                format!("{hostport}:0")
            };
            with_port.to_socket_addrs().ok()
        })
        .flatten()
        .map(|a| a.ip());
    let mut out: Vec<IpAddr> = hosts.collect();
    out.sort();
    out.dedup();
    out
}

fn rift_rules(cfg: &Config) -> Result<(), String> {
    let tun = &cfg.dataplane.tun;
    let mark = cfg.dataplane.mark.to_string();
    run(
        "ip",
        &[
            "-4", "route", "replace", "default", "dev", tun, "table", RIFT_TABLE,
        ],
        None,
    )?;
    run(
        "ip",
        &[
            "-6",
            "route",
            "replace",
            "unreachable",
            "default",
            "table",
            RIFT_TABLE,
        ],
        None,
    )?;
    for server in control_servers(cfg) {
        let (family, host) = match server {
            IpAddr::V4(a) => ("-4", format!("{a}/32")),
            IpAddr::V6(a) => ("-6", format!("{a}/128")),
        };
        run(
            "ip",
            &[
                family, "rule", "add", "pref", PREFS[0], "to", &host, "lookup", "main",
            ],
            None,
        )?;
    }
    for family in ["-4", "-6"] {
        run(
            "ip",
            &[
                family,
                "rule",
                "add",
                "pref",
                PREFS[1],
                "lookup",
                "main",
                "suppress_prefixlength",
                "0",
            ],
            None,
        )?;
        run(
            "ip",
            &[
                family, "rule", "add", "pref", PREFS[2], "not", "fwmark", &mark, "lookup",
                RIFT_TABLE,
            ],
            None,
        )?;
    }
    Ok(())
}
