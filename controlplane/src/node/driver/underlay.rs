//! The node's underlay as ICE sees it: its host addresses (watched, so a move to another
//! network restarts ICE on every tether and reconnects NATS), its server-reflexive
//! addresses (each worker asks the STUN servers peers announce, through the data plane),
//! and the STUN service it offers itself.
//!
//! A NAT that maps one socket to different addresses for different servers (endpoint
//! dependent, "symmetric") is noticed and said: its reflexive candidates still go out, but
//! only a relay will carry traffic between two such nodes, which the router then picks.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use conflux_shared::proto::StunControl;
use tracing::{info, warn};

use super::Driver;
use crate::overlay::Command;

/// Host addresses are looked at this often.
const ADDRESS_CHECK: Duration = Duration::from_millis(500);
/// STUN servers are asked this often once the first answers are in (NAT mappings of idle
/// UDP are commonly kept 30 s or more; tethers keep their own alive with consent checks).
const GATHER_EVERY: Duration = Duration::from_secs(20);
/// Quick repeats while nothing has been learned (lost queries, servers not yet known).
const GATHER_RETRY: Duration = Duration::from_secs(1);
/// A learned mapping not confirmed for this long is forgotten.
const MAPPING_TTL: Duration = Duration::from_secs(90);

/// How this node's NAT maps its sockets, as far as the STUN answers tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NatKind {
    /// Nothing learned yet (no STUN server known or none answered).
    Unknown,
    /// Every server saw a host address: no NAT.
    None,
    /// One mapping per socket whatever the server: hole punching works.
    EndpointIndependent,
    /// Different servers saw different mappings of one socket.
    EndpointDependent,
}

impl NatKind {
    /// The name status shows.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::None => "none",
            Self::EndpointIndependent => "endpoint-independent",
            Self::EndpointDependent => "endpoint-dependent (symmetric)",
        }
    }
}

/// Whether an address is reachable from the internet as it is (no private, shared,
/// loopback, link-local or unique-local range).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            let shared = o[0] == 100 && (64..128).contains(&o[1]);
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || shared)
        }
        IpAddr::V6(v) => {
            let s = v.segments()[0];
            !(v.is_loopback() || v.is_unspecified() || s & 0xfe00 == 0xfc00 || s & 0xffc0 == 0xfe80)
        }
    }
}

/// What the driver keeps about the underlay.
#[derive(Debug)]
pub(super) struct Underlay {
    /// This node answers STUN: configured, or `None` to decide by its addresses.
    service_cfg: Option<bool>,
    /// Whether it answers now.
    service: bool,
    /// Configured STUN servers (beside the announced ones).
    servers: Vec<SocketAddr>,
    /// Worker 0's port (host candidates carry it).
    port: u16,
    tun: String,
    /// Host candidates are watched (not with a configured `advertise` list).
    watch: bool,
    next_check: Instant,
    next_gather: Instant,
    /// `(worker, server)` → what the server saw, and when.
    learned: BTreeMap<(u16, SocketAddr), (SocketAddr, Instant)>,
    /// The kind last said in the log.
    kind: NatKind,
    /// The servers the last round asked.
    asked: Vec<SocketAddr>,
    /// Tether failures seen so far: a new one may mean the NAT changed its mapping.
    failures_seen: u64,
}

impl Underlay {
    /// Starts watching; the first STUN round goes out at once.
    pub(super) fn new(
        service: Option<bool>,
        servers: Vec<SocketAddr>,
        port: u16,
        tun: &str,
        watch: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            service_cfg: service,
            service: service.unwrap_or(false),
            servers,
            port,
            tun: tun.to_owned(),
            watch,
            next_check: now + ADDRESS_CHECK,
            next_gather: now,
            learned: BTreeMap::new(),
            kind: NatKind::Unknown,
            asked: Vec::new(),
            failures_seen: 0,
        }
    }

    /// The STUN servers the last round asked.
    pub(super) fn servers_asked(&self) -> Vec<String> {
        self.asked.iter().map(|s| s.to_string()).collect()
    }

    /// When [`Driver::underlay_timeout`] is next due.
    pub(super) fn poll_timeout(&self) -> Instant {
        self.next_check.min(self.next_gather)
    }

    /// What the STUN answers say of this node's NAT.
    pub(super) fn nat_kind(&self, hosts: &[String]) -> NatKind {
        if self.learned.is_empty() {
            return NatKind::Unknown;
        }
        if self.learned.values().all(|(m, _)| own_ip(hosts, m)) {
            return NatKind::None;
        }
        let mut per_worker: BTreeMap<u16, SocketAddr> = BTreeMap::new();
        for ((w, _), (m, _)) in &self.learned {
            if *per_worker.entry(*w).or_insert(*m) != *m {
                return NatKind::EndpointDependent;
            }
        }
        NatKind::EndpointIndependent
    }

    /// The reflexive candidates the answers give: `"<worker> ip:port"`, leaving out
    /// addresses that are this node's own (no NAT between it and the server).
    fn reflexive(&self, hosts: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .learned
            .iter()
            .filter(|(_, (m, _))| !own_ip(hosts, m))
            .map(|((w, _), (m, _))| format!("{w} {m}"))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Whether a server saw one of this node's own host addresses (no NAT on the way).
fn own_ip(hosts: &[String], mapped: &SocketAddr) -> bool {
    hosts
        .iter()
        .any(|h| h.parse::<SocketAddr>().is_ok_and(|h| h.ip() == mapped.ip()))
}

impl Driver {
    /// Host addresses and STUN rounds, when due.
    pub(super) async fn underlay_timeout(&mut self) {
        let now = Instant::now();
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        let u = &mut o.underlay;
        let mut moved = false;
        if now >= u.next_check {
            u.next_check = now + ADDRESS_CHECK;
            if u.watch {
                let hosts: Vec<String> = super::overlay::local_candidates(u.port, &u.tun)
                    .into_iter()
                    .map(|a| a.to_string())
                    .collect();
                if !hosts.is_empty() && hosts != o.ov.host_candidates() {
                    info!(?hosts, "this node's underlay addresses changed");
                    u.learned.clear();
                    u.next_gather = now;
                    o.ov.set_host_candidates(now, hosts);
                    moved = true;
                }
            }
        }
        let failures = o.ov.status().tethers_failed;
        if failures > u.failures_seen {
            // A tether that died may have died of a new NAT mapping: learn it now, so the
            // next offer carries it instead of the stale one.
            u.failures_seen = failures;
            u.next_gather = now;
        }
        if now >= u.next_gather {
            let mut servers = u.servers.clone();
            let hosts = o.ov.host_candidates().to_vec();
            u.service = u.service_cfg.unwrap_or_else(|| {
                hosts
                    .iter()
                    .filter_map(|h| h.parse::<SocketAddr>().ok())
                    .any(|h| is_public(h.ip()))
            });
            let own = |s: &SocketAddr| {
                hosts
                    .iter()
                    .any(|h| h.parse::<SocketAddr>().ok() == Some(*s))
            };
            servers.extend(self.node.stun_servers().into_iter().filter(|s| !own(s)));
            servers.sort();
            servers.dedup();
            u.learned.retain(|_, (_, at)| now < *at + MAPPING_TTL);
            let retry = u.learned.is_empty();
            u.next_gather = now + if retry { GATHER_RETRY } else { GATHER_EVERY };
            o.link.send(Command::Stun(StunControl {
                servers: servers.iter().map(|s| s.to_string()).collect(),
                service: u.service,
            }));
            u.asked = servers;
            self.node
                .set_stun(if u.service { hosts } else { Vec::new() });
        }
        if moved {
            // The NATS connection left from an address this node no longer has: it is
            // dead even if TCP has not noticed, and the new offers must go out now.
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.force_reconnect().await {
                    warn!("NATS reconnect after an address change: {e}");
                }
            });
        }
    }

    /// A STUN server told a worker what it saw.
    pub(super) fn reflexive_learned(
        &mut self,
        worker: u16,
        server: SocketAddr,
        mapped: SocketAddr,
    ) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        let u = &mut o.underlay;
        u.learned.insert((worker, server), (mapped, Instant::now()));
        let hosts = o.ov.host_candidates().to_vec();
        let kind = u.nat_kind(&hosts);
        if kind != u.kind {
            u.kind = kind;
            info!(nat = kind.name(), "NAT behaviour learned from STUN answers");
        }
        let list = u.reflexive(&hosts);
        o.ov.set_reflexive(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn underlay() -> Underlay {
        Underlay::new(Some(false), vec![], 5000, "cfx0", false)
    }

    #[test]
    fn public_addresses_are_told_from_private_ones() {
        for (ip, public) in [
            ("203.0.113.7", true),
            ("8.8.8.8", true),
            ("10.1.2.3", false),
            ("172.20.0.1", false),
            ("192.168.0.1", false),
            ("100.64.0.1", false),
            ("169.254.1.1", false),
            ("2001:db8::1", true),
            ("fd00::1", false),
            ("fe80::1", false),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[test]
    fn nat_behaviour_follows_the_answers() {
        let hosts = vec!["192.168.1.2:5000".to_owned()];
        let (s1, s2): (SocketAddr, SocketAddr) = (
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        );
        let now = Instant::now();
        let mut u = underlay();
        assert_eq!(u.nat_kind(&hosts), NatKind::Unknown);
        u.learned
            .insert((0, s1), ("192.168.1.2:5000".parse().unwrap(), now));
        assert_eq!(u.nat_kind(&hosts), NatKind::None);
        assert!(u.reflexive(&hosts).is_empty());
        u.learned
            .insert((0, s1), ("203.0.113.5:5000".parse().unwrap(), now));
        u.learned
            .insert((0, s2), ("203.0.113.5:5000".parse().unwrap(), now));
        assert_eq!(u.nat_kind(&hosts), NatKind::EndpointIndependent);
        assert_eq!(u.reflexive(&hosts), ["0 203.0.113.5:5000"]);
        u.learned
            .insert((0, s2), ("203.0.113.5:61234".parse().unwrap(), now));
        assert_eq!(u.nat_kind(&hosts), NatKind::EndpointDependent);
        assert_eq!(u.reflexive(&hosts).len(), 2);
    }
}
