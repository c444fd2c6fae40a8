//! The driver's half of the overlay: the data plane link, signals over NATS, and carrying
//! out what the overlay asks for.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use async_nats::Subject;
use conflux_shared::id::NodeId;
use tracing::{debug, info, warn};

use super::{Driver, Internal, now};
use crate::node::config::{DataPlane, DataPlaneMode};
use crate::node::counters::Ignored;
use crate::node::nats::subjects;
use crate::overlay::link::{Link, LinkOptions, Report};
use crate::overlay::signal::{self, Payload, SignalError};
use crate::overlay::{Action, Overlay, OverlayConfig};

/// How long a signal request waits for its reply.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a tether may take to come up before the route looks elsewhere.
const TETHER_TIMEOUT: Duration = Duration::from_secs(4);

/// The overlay and its data plane, when the node has one.
pub(super) struct OverlayState {
    pub(super) ov: Overlay,
    pub(super) link: Link,
    /// Held requests: token → reply subject and requester.
    replies: HashMap<u64, (Subject, NodeId)>,
    next_token: u64,
    /// Counter totals per worker, from the data plane.
    pub(super) dp_counters: HashMap<u16, Vec<(&'static str, u64)>>,
    /// Host and reflexive addresses, STUN.
    pub(super) underlay: super::underlay::Underlay,
}

/// The worker ports offers list: one per worker, which must differ for WebRTC tethers
/// (an association lives on one worker, so its datagrams must reach that worker). Plain
/// tethers need none: any worker takes any datagram.
fn worker_ports(ports: Vec<u16>, plain: bool) -> Result<Vec<u16>, crate::overlay::link::LinkError> {
    if plain {
        return Ok(Vec::new());
    }
    let mut seen = ports.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != ports.len() {
        return Err(crate::overlay::link::LinkError::SharedPort(ports.len()));
    }
    Ok(ports)
}

/// Every non-loopback IPv4 address of this host, then every usable IPv6 one (see
/// [`ipv6_candidates`]), with `port`.
pub(super) fn local_candidates(port: u16, tun: &str) -> Vec<SocketAddr> {
    let mut out = ipv4_candidates(port, tun);
    if let Ok(text) = std::fs::read_to_string(IF_INET6) {
        out.extend(ipv6_candidates(&text, port, tun));
    }
    out
}

/// The kernel's list of IPv6 addresses with their scope and flags.
const IF_INET6: &str = "/proc/net/if_inet6";
/// `IFA_F_*` flags that make an address unfit to offer: DAD failed, deprecated
/// (preferred lifetime over), tentative (DAD still running: nothing can be sent from it).
const IFA_F_UNFIT: u32 = 0x08 | 0x20 | 0x40;

/// The global and unique-local IPv6 addresses in `/proc/net/if_inet6` text (one address a
/// line: address in 32 hex digits, ifindex, prefix length, scope, flags, name), except
/// the TUN's own, link-local ones and those [`IFA_F_UNFIT`] marks. A malformed line is
/// skipped.
fn ipv6_candidates(text: &str, port: u16, tun: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [hex, _, _, _, flags, name] = f.as_slice() else {
                return None;
            };
            let bits = u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let ip = Ipv6Addr::from(bits);
            let usable = *name != tun
                && flags & IFA_F_UNFIT == 0
                && !ip.is_loopback()
                && !ip.is_unspecified()
                && !ip.is_multicast()
                && !ip.is_unicast_link_local()
                && ip.to_ipv4_mapped().is_none();
            usable.then(|| SocketAddr::new(IpAddr::V6(ip), port))
        })
        .collect()
}

/// Every non-loopback IPv4 address of this host, with `port`.
fn ipv4_candidates(port: u16, tun: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list that freeifaddrs releases; every pointer read
    // below comes from that list and is checked for null first.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if name == tun {
                continue;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            if !ip.is_loopback() && !ip.is_unspecified() {
                out.push(SocketAddr::new(IpAddr::V4(ip), port));
            }
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// `100.64.0.5` in `100.64.0.0/16` → `100.64.0.5/16`.
fn tun_address(address: &str, subnet: &str) -> String {
    let len = subnet.split_once('/').map_or("32", |(_, l)| l);
    format!("{address}/{len}")
}

/// The TUN's IPv6 address with the realm's IPv6 prefix length (`fd7a:cf::5/64`); a /128
/// when Guardian gave no usable subnet, so the kernel still sends the address's own
/// traffic nowhere else.
pub(super) fn tun_address6(address: Option<Ipv6Addr>, subnet6: Option<&str>) -> Option<String> {
    let address = address?;
    let len = subnet6
        .and_then(|s| s.split_once('/'))
        .and_then(|(net, l)| Some((net.parse::<Ipv6Addr>().ok()?, l.parse::<u8>().ok()?)))
        .filter(|(_, l)| *l <= 128)
        .map_or(128, |(_, l)| l);
    Some(format!("{address}/{len}"))
}

/// What a data plane left by a previous control process holds, from its snapshot.
fn adopted(snap: &conflux_dataplane::control::snapshot::Snapshot) -> crate::overlay::Adopted {
    use std::collections::BTreeSet;
    let mut a = crate::overlay::Adopted::default();
    let (mut eg, mut ing, mut rel, mut teth, mut routes) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    for w in &snap.workers {
        for s in &w.egress {
            if let (Ok(id), Ok(peer)) = (
                conflux_shared::id::StreamId::from_hex(&s.id),
                s.peer.parse::<IpAddr>(),
            ) && eg.insert(id)
            {
                a.egress.push((id, peer));
            }
        }
        for s in &w.ingress {
            if let Ok(id) = conflux_shared::id::StreamId::from_hex(&s.id)
                && ing.insert(id)
            {
                a.ingress.push((id, s.label));
            }
        }
        for r in &w.relays {
            if rel.insert(r.0) {
                a.relays.push(r.0);
            }
        }
        for t in &w.tethers {
            if teth.insert(t.id) {
                a.tethers.push((t.id, t.peer.clone()));
            }
        }
        for r in &w.routes {
            if let Some(ip) = r
                .prefix
                .split('/')
                .next()
                .and_then(|p| p.parse::<IpAddr>().ok())
                && routes.insert(ip)
            {
                a.routes.push(ip);
            }
        }
    }
    a
}

/// Starts or attaches to the data plane and makes the overlay, unless the node runs
/// without one.
/// What the node is as an internet exit or user of one.
#[derive(Debug, Clone, Default)]
pub(super) struct Exits {
    /// Prefixes delivered here (own address, served LANs).
    pub(super) local: Vec<(IpAddr, u8)>,
    /// A certified, configured portal.
    pub(super) portal: bool,
    /// A rift, with its chosen portal if configured.
    pub(super) rift: Option<Option<NodeId>>,
}

pub(super) async fn start(
    cfg: &DataPlane,
    me: NodeId,
    address: &str,
    subnet: &str,
    address6: Option<String>,
    exits: &Exits,
) -> Result<Option<OverlayState>, crate::overlay::link::LinkError> {
    if cfg.mode == DataPlaneMode::None {
        return Ok(None);
    }
    let opts = LinkOptions {
        binary: cfg.binary.clone(),
        socket: cfg.socket.clone(),
        spawn: cfg.mode == DataPlaneMode::Spawn,
        tun: cfg.tun.clone(),
        address: tun_address(address, subnet),
        address6,
        listen: cfg.listen,
        workers: cfg.workers,
        mark: cfg.mark,
        port_per_worker: !cfg.plain_tethers,
    };
    let link = tokio::task::spawn_blocking(move || Link::start(&opts))
        .await
        .map_err(|e| {
            crate::overlay::link::LinkError::Spawn("data plane".into(), std::io::Error::other(e))
        })??;
    let ports: Vec<u16> = link
        .snapshot
        .workers
        .iter()
        .filter_map(|w| w.listen.parse::<SocketAddr>().ok().map(|a| a.port()))
        .collect();
    let ports = worker_ports(ports, cfg.plain_tethers)?;
    let port0 = ports.first().copied().unwrap_or(cfg.listen.port());
    let mut candidates: Vec<String> = cfg.advertise.iter().map(|a| a.to_string()).collect();
    if candidates.is_empty() {
        // Each address with worker 0's port; the offer lists the other workers' ports.
        let port = ports.first().copied().unwrap_or(cfg.listen.port());
        candidates = local_candidates(port, &cfg.tun)
            .into_iter()
            .map(|a| a.to_string())
            .collect();
    }
    let fingerprint = link.snapshot.dtls_fingerprint.clone();
    if fingerprint.is_empty() && !cfg.plain_tethers {
        warn!("the data plane reports no DTLS fingerprint; WebRTC tethers will not verify");
    }
    info!(?candidates, "overlay ready");
    let mut ov = Overlay::new(
        OverlayConfig {
            idle_timeout: cfg.idle_timeout,
            rekey_interval: cfg.rekey_interval,
            relay: cfg.relay,
            tether_timeout: TETHER_TIMEOUT,
            plain_tethers: cfg.plain_tethers,
            fingerprint,
            candidates,
            ports,
            router: cfg.routing.clone(),
            geo: cfg.geo.clone(),
            unix_ms_at_start: now().unix_ms,
            local: exits.local.clone(),
            portal: exits.portal,
            rift: exits.rift,
        },
        me,
        Instant::now(),
    );
    ov.adopt(Instant::now(), adopted(&link.snapshot));
    Ok(Some(OverlayState {
        ov,
        link,
        replies: HashMap::new(),
        next_token: 1,
        dp_counters: HashMap::new(),
        underlay: super::underlay::Underlay::new(
            cfg.stun_service,
            cfg.stun_servers.clone(),
            port0,
            &cfg.tun,
            cfg.advertise.is_empty(),
        ),
    }))
}

impl Driver {
    /// A report from the data plane.
    pub(super) fn report(&mut self, r: Report) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        let t = Instant::now();
        match r {
            Report::Miss(dst) => o.ov.handle_miss(t, dst, &self.node),
            Report::TetherState(id, state, peer) => {
                if let Some(p) = peer {
                    o.ov.set_tether_remote(id, p);
                }
                o.ov.handle_tether_state(t, id, state, &self.node)
            }
            Report::Telemetry(body) => {
                o.ov.handle_telemetry(t, body.tether.get(), &body, &self.node)
            }
            Report::Activity {
                stream_id,
                direction,
                packets,
                bytes,
            } => {
                o.ov.handle_activity(t, stream_id, direction, packets, bytes)
            }
            Report::Reflexive {
                worker,
                server,
                mapped,
            } => self.reflexive_learned(worker, server, mapped),
            Report::Counters { worker, values } => {
                // A worker's totals span several records: each updates its own names.
                let known = o.dp_counters.entry(worker).or_default();
                for (name, v) in values {
                    match known.iter_mut().find(|(k, _)| *k == name) {
                        Some(slot) => slot.1 = v,
                        None => known.push((name, v)),
                    }
                }
            }
        }
    }

    /// A signal on this node's signal subject.
    pub(super) async fn signal(&mut self, m: async_nats::Message) {
        let reply_to = m.reply;
        let n = now();
        let rx = match signal::decode(&m.payload, self.node.node_id(), n.unix_ms) {
            Ok(rx) => rx,
            Err(e) => {
                self.node.ignore(match e {
                    SignalError::Stale => Ignored::Stale,
                    SignalError::NotForUs | SignalError::Malformed => Ignored::Malformed,
                });
                return;
            }
        };
        if self
            .node
            .verify_signal(rx.from, &rx.signal, &rx.signature)
            .is_err()
        {
            return;
        }
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        o.ov.set_unix_time(n.unix_s());
        let token = o.next_token;
        o.next_token += 1;
        // Estimates are the only signal sent without a reply subject.
        let notify = rx.payload.is_notify();
        if notify != reply_to.is_none() {
            self.node.ignore(Ignored::Malformed);
            return;
        }
        let reply =
            o.ov.handle_signal(n.mono, rx.from, rx.payload, token, &self.node);
        let Some(reply_to) = reply_to else {
            return;
        };
        match reply {
            Some(reply) => {
                // Whatever the signal changed reaches the data plane before the answer.
                self.flush().await;
                self.send_reply(reply_to, rx.from, reply).await;
            }
            None => {
                o.replies.insert(token, (reply_to, rx.from));
            }
        }
    }

    async fn send_reply(&mut self, to_subject: Subject, to: NodeId, payload: Payload) {
        let bytes = self.sign(to, payload);
        if let Err(e) = self.client.publish(to_subject, bytes.into()).await {
            debug!("signal reply: {e}");
        }
    }

    fn sign(&self, to: NodeId, payload: Payload) -> Vec<u8> {
        let body = signal::encode(self.node.node_id(), to, now().unix_ms, payload);
        let sig = self.node.sign_signal(&body);
        signal::wrap(body, sig)
    }

    /// The reply (raw) to a signal request this node sent.
    pub(super) fn signal_reply(&mut self, to: NodeId, request: u64, reply: Option<Vec<u8>>) {
        let n = now();
        let payload = reply.and_then(|bytes| {
            let rx = signal::decode(&bytes, self.node.node_id(), n.unix_ms).ok()?;
            if rx.from != to {
                self.node.ignore(Ignored::Unexpected);
                return None;
            }
            self.node
                .verify_signal(rx.from, &rx.signal, &rx.signature)
                .ok()?;
            Some(rx.payload)
        });
        if let Some(o) = self.overlay.as_mut() {
            o.ov.set_unix_time(n.unix_s());
            o.ov.handle_reply(n.mono, request, payload, &self.node);
        }
    }

    /// `conflux-ctl geo`: the relay geo policy, replaced first when asked.
    pub(super) fn geo(
        &mut self,
        r: &crate::ctl::proto::GeoRequest,
    ) -> Result<crate::ctl::proto::GeoReply, tonic::Status> {
        let Some(o) = self.overlay.as_mut() else {
            return Err(tonic::Status::failed_precondition(
                "no data plane: this node runs the control plane only",
            ));
        };
        if r.set {
            let policy = crate::node::config::geo_policy(&r.exclude, &r.prefer)
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            info!(exclude = ?r.exclude, prefer = ?r.prefer, "geo policy changed");
            o.ov.set_geo(now().mono, policy, &self.node);
        }
        let geo = o.ov.router().geo();
        let names = |s: &std::collections::BTreeSet<crate::route::Region>| {
            s.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
        };
        let relays = self
            .node
            .relays()
            .into_iter()
            .map(|n| {
                format!(
                    "{n} {}",
                    self.node.region_of(n).unwrap_or_else(|| "-".into())
                )
            })
            .collect();
        Ok(crate::ctl::proto::GeoReply {
            exclude: names(&geo.exclude),
            prefer: names(&geo.prefer),
            relays,
        })
    }

    /// The overlay's state for `conflux-ctl routes|tethers`.
    pub(super) fn overlay_reply(&self) -> crate::ctl::proto::OverlayReply {
        use crate::ctl::proto::{OverlayReply, OverlayRoute, OverlayTether, WorkerTraffic};
        let Some(o) = &self.overlay else {
            return OverlayReply::default();
        };
        let st = o.ov.status();
        let counters = [
            ("misses", st.misses),
            ("misses_unknown", st.misses_unknown),
            ("tethers_opened", st.tethers_opened),
            ("tethers_failed", st.tethers_failed),
            ("routes_direct", st.routes_direct),
            ("routes_relayed", st.routes_relayed),
            ("relays_installed", st.relays_installed),
            ("setups_refused", st.setups_refused),
            ("idle_dissolved", st.idle_dissolved),
            ("rekeys", self.node.counters().rekeys),
            ("signals_ignored", st.signals_ignored),
            ("ice_restarts", st.ice_restarts),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut dataplane_counters: std::collections::BTreeMap<String, u64> = Default::default();
        for values in o.dp_counters.values() {
            for (k, v) in values {
                *dataplane_counters.entry((*k).to_owned()).or_default() += v;
            }
        }
        OverlayReply {
            dataplane: true,
            routes: o
                .ov
                .routes()
                .into_iter()
                .map(|r| OverlayRoute {
                    destination: r.destination,
                    address: r.address,
                    via: r.via.unwrap_or_default(),
                    state: r.state,
                    label: r.label,
                    paths: r.paths,
                })
                .collect(),
            tethers: o
                .ov
                .tethers()
                .into_iter()
                .map(|t| OverlayTether {
                    peer: t.peer,
                    id: t.id,
                    state: t.state,
                    controlling: t.controlling,
                    users: t.users as u32,
                    rtt_us: t.rtt_us,
                    tx_bytes: t.tx_bytes,
                    associations: t.associations as u32,
                    plpmtu: u32::from(t.plpmtu),
                    remotes: t.remotes,
                })
                .collect(),
            workers: {
                let mut w: Vec<WorkerTraffic> = o
                    .dp_counters
                    .iter()
                    .map(|(worker, values)| {
                        let get = |name: &str| {
                            values
                                .iter()
                                .find(|(k, _)| *k == name)
                                .map_or(0, |(_, v)| *v)
                        };
                        WorkerTraffic {
                            worker: u32::from(*worker),
                            egress_packets: get("egress_packets"),
                            ingress_packets: get("ingress_packets"),
                            relayed_packets: get("relayed_packets"),
                        }
                    })
                    .collect();
                w.sort_by_key(|x| x.worker);
                w
            },
            relays: o.ov.relay_count() as u32,
            counters,
            dataplane_counters,
            host_candidates: o.ov.host_candidates().to_vec(),
            reflexive_candidates: o.ov.reflexive().to_vec(),
            nat: o
                .underlay
                .nat_kind(o.ov.host_candidates())
                .name()
                .to_owned(),
            stun_servers: o.underlay.servers_asked(),
        }
    }

    /// Runs the overlay's timers.
    pub(super) fn overlay_timeout(&mut self) {
        if let Some(o) = self.overlay.as_mut() {
            let n = now();
            o.ov.set_unix_time(n.unix_s());
            o.ov.handle_timeout(n.mono, &self.node);
            let lans = self
                .node
                .accepted_routes()
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            self.lan_routes.sync(&lans);
        }
    }

    /// Carries out the overlay's actions; returns whether there were any.
    pub(super) async fn flush_overlay(&mut self) -> bool {
        let mut any = false;
        loop {
            let Some(o) = self.overlay.as_mut() else {
                return any;
            };
            let Some(a) = o.ov.poll_action() else {
                return any;
            };
            any = true;
            match a {
                Action::Command(c) => o.link.send(c),
                Action::Request {
                    to,
                    request,
                    payload,
                } => {
                    let bytes = self.sign(to, payload);
                    let subject = subjects::signal(self.node.realm(), to);
                    let client = self.client.clone();
                    let tx = self.internal.clone();
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(
                            SIGNAL_TIMEOUT,
                            client.request(subject, bytes.into()),
                        )
                        .await;
                        let reply = match r {
                            Ok(Ok(m)) => Some(m.payload.to_vec()),
                            _ => None,
                        };
                        let _ = tx.send(Internal::SignalReply { to, request, reply });
                    });
                }
                Action::Notify { to, payload } => {
                    let bytes = self.sign(to, payload);
                    let subject = subjects::signal(self.node.realm(), to);
                    if let Err(e) = self.client.publish(subject, bytes.into()).await {
                        debug!("signal to {to}: {e}");
                    }
                }
                Action::Reply { token, payload } => {
                    if let Some((subject, to)) = o.replies.remove(&token) {
                        self.send_reply(subject, to, payload).await;
                    }
                }
                Action::Want(peer) => {
                    self.node.want(peer, now());
                }
                Action::Unwant(peer) => {
                    info!(%peer, "outbound stream idle; dissolving");
                    self.node.unwant(peer);
                }
                Action::DropInbound(peer) => {
                    info!(%peer, "inbound stream idle; dissolving");
                    self.node.drop_inbound(peer);
                }
                Action::Rekey(peer) => self.node.rekey(peer, now()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_candidates_keep_global_and_ula_addresses_only() {
        let text = "\
fd0000000000000000000000000000a1 02 40 00 80     eth0
20010db8000000000000000000000005 02 40 00 80     eth0
fe80000000000000020000fffe000001 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd7a00cf000000000000000000000009 05 40 00 80     cfx0
fd0000000000000000000000000000b2 02 40 00 c0     eth0
fd0000000000000000000000000000b3 02 40 00 a0     eth1
fd0000000000000000000000000000b4 02 40 00 88     eth1
not an address line
fd00 02 40 00 80 eth0
";
        let got = ipv6_candidates(text, 51820, "cfx0");
        let want: Vec<SocketAddr> = ["[fd00::a1]:51820", "[2001:db8::5]:51820"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tun_addresses_take_the_realm_prefix_length() {
        assert_eq!(tun_address("10.40.0.5", "10.40.0.0/16"), "10.40.0.5/16");
        let a: Ipv6Addr = "fd7a:cf::5".parse().unwrap();
        assert_eq!(
            tun_address6(Some(a), Some("fd7a:cf::/64")).as_deref(),
            Some("fd7a:cf::5/64")
        );
        assert_eq!(
            tun_address6(Some(a), None).as_deref(),
            Some("fd7a:cf::5/128")
        );
        assert_eq!(
            tun_address6(Some(a), Some("fd7a:cf::/300")).as_deref(),
            Some("fd7a:cf::5/128")
        );
        assert_eq!(tun_address6(None, Some("fd7a:cf::/64")), None);
    }
}
