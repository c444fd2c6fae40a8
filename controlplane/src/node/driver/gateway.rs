//! What gateways change in the host: IPv4 (and, for IPv6 LANs, IPv6) forwarding on the
//! gateway, and kernel routes for accepted LAN prefixes on the other nodes' TUN devices.
//! Both are undone at an orderly stop.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::node::gateway::{Prefix, text};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Forwarding switched on while the node is a gateway (or portal); the old values come back
/// on drop.
#[derive(Debug)]
pub(super) struct Forwarding {
    /// Each switch turned on, with the value it had.
    previous: Vec<(&'static str, String)>,
}

impl Forwarding {
    /// Switches IPv4 forwarding on (logs, and carries on, when the host refuses).
    pub(super) fn enable() -> Self {
        let mut f = Self {
            previous: Vec::new(),
        };
        f.switch_on(IP_FORWARD, "IPv4");
        f
    }

    /// Switches forwarding on for the families of `prefixes` (CIDR; unparsable ones are
    /// skipped here, the advertisement warns about them).
    pub(super) fn for_prefixes(prefixes: &[String]) -> Self {
        let parsed: Vec<Prefix> = prefixes
            .iter()
            .filter_map(|p| crate::node::gateway::parse_prefix(p).ok())
            .collect();
        let mut f = Self {
            previous: Vec::new(),
        };
        if parsed.iter().any(|p| p.0.is_ipv4()) {
            f.switch_on(IP_FORWARD, "IPv4");
        }
        if parsed.iter().any(|p| p.0.is_ipv6()) {
            f.switch_on(IPV6_FORWARD, "IPv6");
        }
        f
    }

    fn switch_on(&mut self, path: &'static str, family: &str) {
        let Some(previous) = std::fs::read_to_string(path).ok() else {
            warn!("cannot read {path}: {family} LANs may stay unreachable");
            return;
        };
        if previous.trim() == "1" {
            return;
        }
        match std::fs::write(path, "1") {
            Ok(()) => {
                info!("{family} forwarding on (gateway)");
                self.previous.push((path, previous));
            }
            Err(e) => {
                warn!("cannot switch {family} forwarding on ({e}): the LAN stays unreachable")
            }
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for (path, p) in &self.previous {
            let _ = std::fs::write(path, p.trim());
        }
    }
}

/// Kernel routes on the TUN device for LAN prefixes behind gateways.
#[derive(Debug)]
pub(super) struct KernelRoutes {
    tun: String,
    installed: BTreeSet<Prefix>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    super::exit::run("ip", args, None)
}

impl KernelRoutes {
    pub(super) fn new(tun: &str) -> Self {
        Self {
            tun: tun.to_owned(),
            installed: BTreeSet::new(),
        }
    }

    /// Makes the routes on the TUN device exactly `want`.
    pub(super) fn sync(&mut self, want: &BTreeSet<Prefix>) {
        if *want == self.installed {
            return;
        }
        for p in want.difference(&self.installed.clone()) {
            match ip(&["route", "replace", &text(*p), "dev", &self.tun]) {
                Ok(()) => {
                    info!(prefix = %text(*p), "LAN route via the overlay");
                    self.installed.insert(*p);
                }
                Err(e) => warn!("{e}"),
            }
        }
        for p in self.installed.clone().difference(want) {
            let _ = ip(&["route", "del", &text(*p), "dev", &self.tun]);
            self.installed.remove(p);
            info!(prefix = %text(*p), "LAN route removed");
        }
    }

    /// Removes every route this node added.
    pub(super) fn clear(&mut self) {
        self.sync(&BTreeSet::new());
    }
}
