//! What gateways change in the host: IPv4 forwarding on the gateway, and kernel routes for
//! accepted LAN prefixes on the other nodes' TUN devices. Both are undone at an orderly stop.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::node::gateway::{Prefix, text};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// IPv4 forwarding switched on while the node is a gateway; the old value comes back on drop.
#[derive(Debug)]
pub(super) struct Forwarding {
    previous: Option<String>,
}

impl Forwarding {
    /// Switches forwarding on (logs, and carries on, when the host refuses).
    pub(super) fn enable() -> Self {
        let previous = std::fs::read_to_string(IP_FORWARD).ok();
        if previous.as_deref().map(str::trim) != Some("1") {
            match std::fs::write(IP_FORWARD, "1") {
                Ok(()) => info!("IPv4 forwarding on (gateway)"),
                Err(e) => {
                    warn!("cannot switch IPv4 forwarding on ({e}): the LAN stays unreachable")
                }
            }
        }
        Self { previous }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(p) = self.previous.as_deref().map(str::trim)
            && p != "1"
        {
            let _ = std::fs::write(IP_FORWARD, p);
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
