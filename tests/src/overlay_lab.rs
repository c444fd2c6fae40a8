//! Whole nodes in network namespaces: nats-server and Guardian on a test bridge, and one
//! namespace per node running `conflux` (which starts its own data plane and TUN device),
//! with the underlay on the bridge. Everything the lab makes is removed when it drops,
//! also when a test panics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::bins;
use crate::cluster::Cluster;
use crate::ctl::{Ctl, Status};
use crate::proc::Proc;
use crate::wait;

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Labs share the machine's two cores and its TUN names: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The realm every lab node joins unless told otherwise.
pub const REALM: &str = "lab";

/// The IPv6 overlay subnet of [`REALM`] in an IPv6-underlay lab ([`Lab::new_ipv6`]).
pub const REALM_SUBNET6: &str = "fd7a:cf::/64";

/// Runs a command; panics if it cannot start.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Fails the test with the reason when it cannot run here.
pub fn preflight() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the overlay namespace tests must run as root (CI does)"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing"
    );
    for tool in ["ip", "ping", "iperf3", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(ok, "{tool} is not installed (tests/setup.sh installs it)");
    }
}

/// Gives `dev` in namespace `ns` the address `cidr` and brings it up.
fn addr_up(ns: &str, cidr: &str, dev: &str) {
    must(&["ip", "-n", ns, "addr", "add", cidr, "dev", dev]);
    must(&["ip", "-n", ns, "link", "set", dev, "up"]);
}

/// One node of the lab.
pub struct LabNode {
    /// Its namespace.
    pub ns: String,
    /// Its underlay address on the bridge.
    pub underlay: String,
    /// `conflux-ctl` on its socket.
    pub ctl: Ctl,
    config: PathBuf,
    proc: Option<Proc>,
    name: String,
}

/// The lab: a bridge, nats-server and Guardian on it, and node namespaces.
pub struct Lab {
    tag: String,
    bridge: String,
    net: u8,
    /// The underlay is IPv6 only (ULA addresses, no IPv4 on the bridge or any node).
    ipv6: bool,
    /// The next node goes behind a NAT of this kind.
    nat_next: Option<Nat>,
    nodes: BTreeMap<String, LabNode>,
    /// LAN namespaces behind gateways.
    lans: Vec<String>,
    logs: PathBuf,
    /// nats-server and Guardian (dropped after the nodes).
    pub cluster: Cluster,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// A bridge with nats-server and Guardian on it and realm [`REALM`].
    pub fn new() -> Self {
        Self::with_underlay(false)
    }

    /// Like [`Lab::new`] on an IPv6-only underlay: the bridge and every node's `eth0` have
    /// only ULA addresses (`fd00:cf:<net>::/64`), nats-server and Guardian listen on the
    /// bridge's, and realm [`REALM`] has the IPv6 subnet [`REALM_SUBNET6`] beside its IPv4 one.
    pub fn new_ipv6() -> Self {
        Self::with_underlay(true)
    }

    fn with_underlay(ipv6: bool) -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        preflight();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // The demo names its lab, so its wrapper can clean up after a Ctrl-C.
        let tag = std::env::var("CONFLUX_LAB_TAG")
            .unwrap_or_else(|_| format!("{}{n}", std::process::id() % 10_000));
        // One /24 in 10.201–250 per lab: the first no interface of this host uses.
        let used =
            String::from_utf8_lossy(&sh(&["ip", "-4", "-o", "addr", "show"]).stdout).into_owned();
        let start = (std::process::id() + n * 7) % 50;
        let net = (0..50)
            .map(|i| 201 + ((start + i) % 50) as u8)
            .find(|net| !used.contains(&format!(" 10.{net}.0.")))
            .expect("a free 10.x.0.0/24 for the lab bridge");
        let bridge = format!("cfxb{tag}");
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        let here = if ipv6 {
            format!("fd00:cf:{net}::1")
        } else {
            format!("10.{net}.0.1")
        };
        if ipv6 {
            must(&[
                "ip",
                "addr",
                "add",
                &format!("{here}/64"),
                "dev",
                &bridge,
                "nodad",
            ]);
        } else {
            must(&["ip", "addr", "add", &format!("{here}/24"), "dev", &bridge]);
        }
        must(&["ip", "link", "set", &bridge, "up"]);
        let cluster = Cluster::start_on(&here);
        if ipv6 {
            cluster.create_realm6(REALM, "100.80.0.0/16", REALM_SUBNET6);
        } else {
            cluster.create_realm(REALM, "100.80.0.0/16");
        }
        let logs = cluster.logs();
        Self {
            tag,
            bridge,
            net,
            ipv6,
            nat_next: None,
            nodes: BTreeMap::new(),
            lans: Vec::new(),
            logs,
            cluster,
            _serial: serial,
        }
    }

    /// Adds node `name` in its own namespace with `taints` and extra config lines (where
    /// `{underlay}` stands for its underlay address), and starts it; waits until its local
    /// API answers.
    pub fn node(&mut self, name: &str, realm: &str, taints: &[&str], extra: &str) {
        self.node_granted(name, realm, taints, extra, serde_json::json!({}));
    }

    /// [`Lab::node`] registered with a token carrying `grants` (`routed_prefixes`,
    /// `portal`, `owner`).
    pub fn node_granted(
        &mut self,
        name: &str,
        realm: &str,
        taints: &[&str],
        extra: &str,
        grants: serde_json::Value,
    ) {
        let idx = self.nodes.len() as u8 + 10;
        let ns = format!("cfx{}{name}", self.tag);
        must(&["ip", "netns", "add", &ns]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let (outside, inside) = (format!("cv{}{name}", self.tag), "eth0".to_owned());
        let nat = self.nat_next.take();
        let underlay = if let Some(kind) = nat {
            // The node's link ends in a router namespace that NATs it onto the bridge.
            let router = self.nat_router(name, idx, kind);
            must(&[
                "ip", "-n", &router, "link", "add", &outside, "type", "veth", "peer", "name",
                &inside, "netns", &ns,
            ]);
            addr_up(&router, &format!("172.16.{idx}.1/24"), &outside);
            let a = format!("172.16.{idx}.2");
            addr_up(&ns, &format!("{a}/24"), &inside);
            must(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("172.16.{idx}.1"),
            ]);
            a
        } else {
            must(&[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside, "netns",
                &ns,
            ]);
            must(&["ip", "link", "set", &outside, "master", &self.bridge, "up"]);
            self.bridged_address(&ns, &inside, idx)
        };
        let home = self.cluster.dir.path().join("nodes").join(name);
        std::fs::create_dir_all(&home).unwrap();
        let socket = home.join("conflux.sock");
        let taints = taints
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let extra = extra.replace("{underlay}", &underlay);
        // One worker unless the node's own settings ask for more.
        let workers = if extra.contains("workers =") {
            ""
        } else {
            "workers = 1\n"
        };
        let config = format!(
            "guardian_url = {:?}\nregistration_token = {:?}\nnats_urls = [{:?}]\n\
             data_dir = {:?}\napi_socket = {:?}\ntaints = [{taints}]\n\
             presence_interval_ms = 1000\npeer_timeout_ms = 4000\n\
             dataplane = \"spawn\"\ndataplane_bin = {:?}\ndataplane_socket = {:?}\n\
             {workers}{extra}\n",
            self.cluster.guardian_url(),
            self.cluster.token_with(realm, grants),
            self.cluster.nats_url(),
            home.join("data"),
            socket,
            bins::workspace_bin("conflux-dataplane"),
            home.join("dataplane.sock"),
        );
        let config_path = home.join("conflux.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut node = LabNode {
            ns,
            underlay,
            ctl: Ctl::new(socket),
            config: config_path,
            proc: None,
            name: name.to_owned(),
        };
        node.start(&self.logs);
        let connected = |n: &LabNode| n.ctl.status().is_some_and(|s| s.nats_state == "connected");
        let start = std::time::Instant::now();
        while !connected(&node) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !connected(&node) {
            // Seen now and then on a fresh bridge port: every NATS connection attempt of a
            // new node times out while the other nodes connect. A restart clears it; the
            // cause is not known yet, so it is said, not hidden.
            eprintln!("lab: node {name} never connected to NATS in 10 s; restarting it once");
            node.stop();
            node.start(&self.logs);
        }
        self.nodes.insert(name.to_owned(), node);
    }

    /// The address of a node attached to the bridge (IPv6 in an IPv6 lab).
    fn bridged_address(&self, ns: &str, inside: &str, idx: u8) -> String {
        if self.ipv6 {
            let a = format!("fd00:cf:{}::{idx}", self.net);
            // No duplicate address detection: a tentative address is no candidate yet.
            must(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                inside,
                "nodad",
            ]);
            must(&["ip", "-n", ns, "link", "set", inside, "up"]);
            a
        } else {
            let a = format!("10.{}.0.{idx}", self.net);
            addr_up(ns, &format!("{a}/24"), inside);
            a
        }
    }

    /// [`Lab::node`] behind a NAT of its own: a router namespace on the bridge (its
    /// public address `10.<net>.0.<idx+100>`) masquerading the node's LAN
    /// `172.16.<idx>.0/24` and, like a home router, letting in only what answers traffic
    /// sent out.
    pub fn node_behind_nat(&mut self, name: &str, kind: Nat, extra: &str) {
        self.nat_next = Some(kind);
        self.node(name, REALM, &["t"], extra);
    }

    /// The NAT router for node `name`; returns its namespace.
    fn nat_router(&mut self, name: &str, idx: u8, kind: Nat) -> String {
        let ns = format!("cfx{}n{name}", self.tag);
        must(&["ip", "netns", "add", &ns]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let outside = format!("cw{}{name}", self.tag);
        must(&[
            "ip", "link", "add", &outside, "type", "veth", "peer", "name", "wan0", "netns", &ns,
        ]);
        must(&["ip", "link", "set", &outside, "master", &self.bridge, "up"]);
        let public = format!("10.{}.0.{}", self.net, u16::from(idx) + 100);
        addr_up(&ns, &format!("{public}/24"), "wan0");
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        // Endpoint-independent: masquerade keeps a socket's port for every destination.
        // Symmetric: a fresh random port for each destination.
        let masq = match kind {
            Nat::EndpointIndependent => "masquerade",
            Nat::Symmetric => "masquerade random",
        };
        let rules = format!(
            "table ip cfxnat {{\n\
             chain nat_out {{ type nat hook postrouting priority 100; oifname \"wan0\" {masq}; }}\n\
             chain forward_in {{ type filter hook forward priority 0; policy drop;\n\
               ct state established,related accept; oifname \"wan0\" accept; }}\n\
             chain local_in {{ type filter hook input priority 0; policy drop;\n\
               ct state established,related accept; iifname \"lo\" accept;\n\
               iifname != \"wan0\" accept; }}\n\
             }}\n"
        );
        let path = self.logs.join(format!("nat-{name}.nft"));
        std::fs::write(&path, rules).unwrap();
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "-f",
            path.to_str().unwrap(),
        ]);
        self.lans.push(ns.clone());
        ns
    }

    /// The public address of the NAT in front of `node`.
    pub fn nat_public(&self, node: &str) -> String {
        let idx: u16 = self.nodes[node]
            .underlay
            .rsplit('.')
            .nth(1)
            .and_then(|x| x.parse().ok())
            .expect("a node behind a NAT");
        format!("10.{}.0.{}", self.net, idx + 100)
    }

    /// Moves a bridged node to a new underlay address (the old one removed), as a laptop
    /// that changes networks would; returns the new address.
    pub fn move_node(&mut self, node: &str) -> String {
        let n = self.nodes.get_mut(node).expect("no such lab node");
        let last: u16 = n
            .underlay
            .rsplit('.')
            .next()
            .and_then(|x| x.parse().ok())
            .expect("an IPv4 bridged node");
        let new = format!("10.{}.0.{}", self.net, last + 120);
        // The old address goes first: deleting a primary address also deletes the
        // secondaries of its subnet.
        must(&[
            "ip",
            "-n",
            &n.ns,
            "addr",
            "del",
            &format!("{}/24", n.underlay),
            "dev",
            "eth0",
        ]);
        must(&[
            "ip",
            "-n",
            &n.ns,
            "addr",
            "add",
            &format!("{new}/24"),
            "dev",
            "eth0",
        ]);
        n.underlay = new.clone();
        new
    }

    /// A node.
    pub fn get(&self, name: &str) -> &LabNode {
        &self.nodes[name]
    }

    /// A node, mutably.
    pub fn get_mut(&mut self, name: &str) -> &mut LabNode {
        self.nodes.get_mut(name).expect("no such lab node")
    }

    /// The logs directory.
    pub fn logs(&self) -> &Path {
        &self.logs
    }

    /// Cuts the underlay between two nodes (UDP dropped both ways in both namespaces), as
    /// a firewall between two sites would.
    pub fn block(&self, a: &str, b: &str) {
        for (x, y) in [(a, b), (b, a)] {
            let (nx, ny) = (&self.nodes[x], &self.nodes[y]);
            let nft = |args: &[&str]| {
                let mut full = vec!["ip", "netns", "exec", &nx.ns, "nft"];
                full.extend_from_slice(args);
                must(&full);
            };
            nft(&["add", "table", "inet", "cfxblock"]);
            nft(&[
                "add",
                "chain",
                "inet",
                "cfxblock",
                "out",
                "{ type filter hook output priority 0; }",
            ]);
            nft(&[
                "add",
                "chain",
                "inet",
                "cfxblock",
                "in",
                "{ type filter hook input priority 0; }",
            ]);
            nft(&[
                "add",
                "rule",
                "inet",
                "cfxblock",
                "out",
                "ip",
                "daddr",
                &ny.underlay,
                "meta",
                "l4proto",
                "udp",
                "drop",
            ]);
            nft(&[
                "add",
                "rule",
                "inet",
                "cfxblock",
                "in",
                "ip",
                "saddr",
                &ny.underlay,
                "meta",
                "l4proto",
                "udp",
                "drop",
            ]);
        }
    }

    /// Limits what `from` sends to `to` over the underlay to `mbit` Mbit/s (an HTB class
    /// on `from`'s interface), as a slower link between two sites would.
    pub fn shape(&self, from: &str, to: &str, mbit: u32) {
        let nf = &self.nodes[from];
        let dst = &self.nodes[to].underlay;
        let minor = dst.rsplit('.').next().unwrap_or("10");
        let tc = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &nf.ns, "tc"];
            full.extend_from_slice(args);
            sh(&full)
        };
        let has_root = String::from_utf8_lossy(&tc(&["qdisc", "show", "dev", "eth0"]).stdout)
            .contains("htb 1:");
        let must_tc = |args: &[&str]| {
            let out = tc(args);
            assert!(
                out.status.success(),
                "tc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if !has_root {
            must_tc(&[
                "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "99",
            ]);
            must_tc(&[
                "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:99", "htb", "rate",
                "20gbit",
            ]);
        }
        let rate = format!("{mbit}mbit");
        let class = format!("1:{minor}");
        must_tc(&[
            "class", "add", "dev", "eth0", "parent", "1:", "classid", &class, "htb", "rate", &rate,
            "ceil", &rate,
        ]);
        must_tc(&[
            "filter",
            "add",
            "dev",
            "eth0",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "dst",
            &format!("{dst}/32"),
            "flowid",
            &class,
        ]);
    }

    /// Pings `to`'s overlay address from `from` every `interval_ms` for `count` requests,
    /// in the background.
    pub fn ping_start(&self, from: &str, to: &str, interval_ms: u32, count: u32) -> PingRun {
        let addr = self.address(to);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.nodes[from].ns])
            .args(["ping", "-n", "-W", "1", "-c", &count.to_string()])
            .args(["-i", &format!("{:.3}", f64::from(interval_ms) / 1000.0)])
            .arg(&addr)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ping");
        PingRun {
            child,
            interval_ms,
            count,
        }
    }

    /// A LAN behind node `gw`: namespace `lan` holds host `host` (e.g. `192.168.77.5`) on
    /// `net` (e.g. `192.168.77.0/24`, the gateway takes `.1`), with its default route via
    /// the gateway. Removed with the lab.
    pub fn lan(&mut self, gw: &str, net: &str, host: &str) -> String {
        let ns = format!("cfx{}lan{}", self.tag, self.lans.len());
        let gw_ns = self.nodes[gw].ns.clone();
        let (base, len) = net.split_once('/').expect("net as a.b.c.0/len");
        let gw_ip = format!("{}.1", base.rsplit_once('.').expect("IPv4 net").0);
        must(&["ip", "netns", "add", &ns]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let inside_gw = format!("lg{}", self.lans.len());
        must(&[
            "ip", "-n", &gw_ns, "link", "add", &inside_gw, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        addr_up(&gw_ns, &format!("{gw_ip}/{len}"), &inside_gw);
        addr_up(&ns, &format!("{host}/{len}"), "eth0");
        must(&["ip", "-n", &ns, "route", "add", "default", "via", &gw_ip]);
        self.lans.push(ns.clone());
        ns
    }

    /// A stand-in for the internet: namespace `inet` with a server address (returned) on
    /// its loopback and one link to each of `portals`, whose default route it becomes
    /// (portal k is `198.18.k.2`, the internet side `198.18.k.1`).
    pub fn internet(&mut self, portals: &[&str]) -> (String, String) {
        let ns = format!("cfx{}inet", self.tag);
        must(&["ip", "netns", "add", &ns]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "198.18.100.1/32",
            "dev",
            "lo",
        ]);
        for (k, p) in portals.iter().enumerate() {
            let k = k + 1;
            let pns = self.nodes[*p].ns.clone();
            let (here, there) = (format!("in{k}"), format!("up{k}"));
            must(&[
                "ip", "-n", &ns, "link", "add", &here, "type", "veth", "peer", "name", &there,
                "netns", &pns,
            ]);
            addr_up(&ns, &format!("198.18.{k}.1/24"), &here);
            addr_up(&pns, &format!("198.18.{k}.2/24"), &there);
            must(&[
                "ip",
                "-n",
                &pns,
                "route",
                "add",
                "default",
                "via",
                &format!("198.18.{k}.1"),
            ]);
        }
        self.lans.push(ns.clone());
        (ns, "198.18.100.1".to_owned())
    }

    /// Kills every process in a node's namespace (its control process and data plane).
    pub fn kill_all(&mut self, node: &str) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.kill();
            if let Ok(o) = Command::new("ip").args(["netns", "pids", &n.ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill only sends a signal.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
    }

    /// Runs a command in a node's namespace.
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.nodes[node].ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// A node's overlay address.
    pub fn address(&self, node: &str) -> String {
        self.nodes[node]
            .ctl
            .status()
            .map(|s| s.overlay_address)
            .unwrap_or_default()
    }

    /// One ping from `from` to `to`'s overlay address, waiting at most `wait_s`.
    pub fn ping_once(&self, from: &str, to: &str, wait_s: u32) -> bool {
        let addr = self.address(to);
        self.exec(from, &["ping", "-c", "1", "-W", &wait_s.to_string(), &addr])
            .status
            .success()
    }

    /// Pings until one reply comes (each ping waits 1 s); returns the time to the first
    /// reply, or `None` after `limit`.
    pub fn first_reply(&self, from: &str, to: &str, limit: Duration) -> Option<Duration> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.ping_once(from, to, 1) {
                return Some(start.elapsed());
            }
        }
        None
    }

    /// Time to the first reply from `to` within `limit`; dumps both nodes' logs and fails
    /// the test if none comes.
    pub fn reach(&self, from: &str, to: &str, limit: Duration) -> Duration {
        match self.first_reply(from, to, limit) {
            Some(t) => t,
            None => {
                self.dump(from, 60);
                self.dump(to, 60);
                panic!("{from} does not reach {to}");
            }
        }
    }

    /// Prints the last lines of a node's log (for a failing test).
    pub fn dump(&self, node: &str, lines: usize) {
        let log = self.logs.join(format!("conflux-{node}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        eprintln!("---- last lines of conflux-{node} ----");
        for l in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{l}");
        }
    }

    /// Starts `iperf3` from `client` to `server`'s overlay address for `secs` seconds in
    /// the background, reporting every half second (`reverse`: the server sends).
    pub fn iperf3_start(&self, client: &str, server: &str, secs: u32, reverse: bool) -> Iperf3 {
        self.iperf3_flows(client, server, secs, reverse, 1)
    }

    /// [`Lab::iperf3_start`] with `flows` parallel TCP connections (`-P`).
    pub fn iperf3_flows(
        &self,
        client: &str,
        server: &str,
        secs: u32,
        reverse: bool,
        flows: u32,
    ) -> Iperf3 {
        let addr = self.address(server);
        let server = Command::new("ip")
            .args(["netns", "exec", &self.nodes[server].ns])
            .args(["iperf3", "-s", "-1", "-B", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting iperf3 -s");
        std::thread::sleep(Duration::from_millis(300));
        // A stalled run must end (and fail) rather than hang.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[client].ns])
            .args(["timeout", &(secs + 20).to_string()])
            .args([
                "iperf3",
                "-c",
                &addr,
                "-t",
                &secs.to_string(),
                "-i",
                "0.5",
                "-P",
                &flows.to_string(),
                "-J",
            ]);
        if reverse {
            cmd.arg("-R");
        }
        let client = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting iperf3 -c");
        Iperf3 { server, client }
    }

    /// Runs `iperf3` to the end (see [`Lab::iperf3_start`]).
    pub fn iperf3(&self, client: &str, server: &str, secs: u32, reverse: bool) -> Iperf3Result {
        self.iperf3_start(client, server, secs, reverse).finish()
    }

    /// Node ids by name.
    pub fn id(&self, node: &str) -> String {
        self.nodes[node]
            .ctl
            .status()
            .map(|s| s.node_id)
            .unwrap_or_default()
    }
}

/// A running `ping` series.
pub struct PingRun {
    child: std::process::Child,
    interval_ms: u32,
    count: u32,
}

/// What a `ping` series saw.
#[derive(Debug, Clone)]
pub struct PingResult {
    /// Replies received.
    pub received: u32,
    /// Requests sent.
    pub sent: u32,
    /// The longest run of requests without a reply, as time (requests × interval).
    pub longest_gap: Duration,
    /// When the first reply came, from the first request (to the interval).
    pub first_reply: Option<Duration>,
}

impl PingRun {
    /// Waits for the series to end.
    pub fn finish(self) -> PingResult {
        let out = self.child.wait_with_output().expect("waiting for ping");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut seqs: Vec<u32> = text
            .lines()
            .filter_map(|l| l.split("icmp_seq=").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        // Sequence numbers start at 1; a gap before the first or after the last reply
        // counts too.
        let mut longest = 0u32;
        let mut prev = 0u32;
        for s in seqs.iter().copied().chain([self.count + 1]) {
            longest = longest.max(s.saturating_sub(prev + 1));
            prev = s;
        }
        PingResult {
            received: seqs.len() as u32,
            sent: self.count,
            longest_gap: Duration::from_millis(u64::from(longest * self.interval_ms)),
            first_reply: seqs
                .first()
                .map(|s| Duration::from_millis(u64::from((s - 1) * self.interval_ms))),
        }
    }
}

/// A running `iperf3` pair.
pub struct Iperf3 {
    server: std::process::Child,
    client: std::process::Child,
}

/// What an `iperf3` run measured.
#[derive(Debug, Clone)]
pub struct Iperf3Result {
    /// Whether the client finished successfully.
    pub ok: bool,
    /// Bits per second received, over the whole run.
    pub bits_per_second: f64,
    /// Bits per second in each half-second interval.
    pub intervals: Vec<f64>,
}

impl Iperf3 {
    /// Waits for the client and stops the server.
    pub fn finish(self) -> Iperf3Result {
        let Iperf3 { mut server, client } = self;
        let out = client.wait_with_output().expect("waiting for iperf3 -c");
        let _ = server.kill();
        let _ = server.wait();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Iperf3Result {
            ok: out.status.success(),
            bits_per_second: v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0),
            intervals: v["intervals"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|i| i["sum"]["bits_per_second"].as_f64().unwrap_or(0.0))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl LabNode {
    /// Starts `conflux` in the node's namespace; waits until its local API answers.
    pub fn start(&mut self, logs: &Path) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(bins::workspace_bin("conflux"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info");
        self.proc = Some(Proc::spawn(&format!("conflux-{}", self.name), cmd, logs));
        let ctl = self.ctl.clone();
        wait::until_true(
            &format!("node {} to answer conflux-ctl", self.name),
            crate::cluster::STARTUP,
            || {
                ctl.status()
                    .is_some_and(|s: Status| !s.overlay_address.is_empty())
            },
        );
    }

    /// Stops `conflux` in order (it stops its data plane).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Kills `conflux` at once (its data plane keeps running).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.stop();
        }
        for n in self.nodes.values() {
            // Whatever still runs in the namespace (a data plane left by a killed node).
            if let Ok(o) = Command::new("ip").args(["netns", "pids", &n.ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill only sends a signal.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = sh(&["ip", "netns", "del", &n.ns]);
        }
        for ns in &self.lans {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// How a lab NAT maps a node's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// One public port per socket, whatever the destination (hole punching works).
    EndpointIndependent,
    /// A new random public port per destination (only a relay connects two of these).
    Symmetric,
}
