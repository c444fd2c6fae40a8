//! IPv6 end to end: real `conflux` processes in network namespaces whose underlay has no
//! IPv4 at all (the bridge and every node's `eth0` carry only ULA IPv6 addresses; NATS and
//! Guardian listen on the bridge's), a realm with an IPv6 subnet beside its IPv4 one, and
//! IPv6 and IPv4 traffic inside the overlay over a WebRTC tether on that underlay.
//! Needs root; run serially (`--test-threads 1`).

use std::time::Duration;

use conflux_tests::overlay_lab::{Lab, REALM, REALM_SUBNET6};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(30);

/// `conflux-ctl <args> --json` as loose JSON (fields the typed views do not have).
fn ctl_json(lab: &Lab, node: &str, args: &[&str]) -> serde_json::Value {
    lab.get(node)
        .ctl
        .run::<serde_json::Value>(args)
        .unwrap_or_else(|e| panic!("conflux-ctl {args:?} on {node}: {e}"))
}

/// A node's IPv6 overlay address, from `conflux-ctl status`.
fn address6(lab: &Lab, node: &str) -> String {
    ctl_json(lab, node, &["status"])["overlay_address6"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Counts the UDP datagrams a node's `eth0` sends and receives, by family (nftables).
fn count_underlay_udp(lab: &Lab, node: &str) {
    let nft = |args: &[&str]| {
        let mut full = vec!["nft"];
        full.extend_from_slice(args);
        let o = lab.exec(node, &full);
        assert!(
            o.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    nft(&["add", "table", "inet", "cfxv6"]);
    for (chain, hook, dir) in [("out", "output", "oifname"), ("in", "input", "iifname")] {
        nft(&[
            "add",
            "chain",
            "inet",
            "cfxv6",
            chain,
            &format!("{{ type filter hook {hook} priority 0; }}"),
        ]);
        for family in ["ipv4", "ipv6"] {
            nft(&[
                "add", "rule", "inet", "cfxv6", chain, dir, "eth0", "meta", "nfproto", family,
                "meta", "l4proto", "udp", "counter", "comment", family,
            ]);
        }
    }
}

/// UDP datagrams counted on a node's `eth0` so far: (IPv4, IPv6), both directions.
fn underlay_udp(lab: &Lab, node: &str) -> (u64, u64) {
    let text = stdout(&lab.exec(node, &["nft", "list", "table", "inet", "cfxv6"]));
    let mut v4 = 0;
    let mut v6 = 0;
    for line in text.lines() {
        let Some(packets) = line
            .split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if line.contains("\"ipv6\"") {
            v6 += packets;
        } else if line.contains("\"ipv4\"") {
            v4 += packets;
        }
    }
    (v4, v6)
}

/// Pings `addr` from `from` until a reply comes (each ping waits 1 s), within `limit`.
fn reach_addr(lab: &Lab, from: &str, addr: &str, limit: Duration) -> Duration {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if lab
            .exec(from, &["ping", "-n", "-c", "1", "-W", "1", addr])
            .status
            .success()
        {
            return start.elapsed();
        }
    }
    lab.dump(from, 60);
    panic!("{from} gets no ping reply from {addr} within {limit:?}");
}

/// iperf3 over the overlay between explicit addresses (IPv6 when `addr` is), bits/s.
fn iperf3_to(lab: &Lab, client: &str, server: &str, addr: &str, secs: u32) -> f64 {
    let mut srv = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.get(server).ns])
        .args(["iperf3", "-s", "-1", "-B", addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting iperf3 -s");
    std::thread::sleep(Duration::from_millis(300));
    let family = if addr.contains(':') { "-6" } else { "-4" };
    let out = lab.exec(
        client,
        &[
            "timeout",
            &(secs + 20).to_string(),
            "iperf3",
            family,
            "-c",
            addr,
            "-t",
            &secs.to_string(),
            "-J",
        ],
    );
    let _ = srv.kill();
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() {
        lab.dump(client, 30);
        lab.dump(server, 30);
        panic!("iperf3 {client} → {addr} failed: {}", v["error"]);
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

#[test]
fn ipv6_only_underlay_carries_ipv6_and_ipv4_overlay_traffic() {
    let mut lab = Lab::new_ipv6();
    let nats = lab.cluster.nats_url();
    assert!(nats.starts_with("nats://[fd00:cf:"), "{nats}");
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");

    // The underlay has no IPv4: whatever reaches NATS, Guardian or the peer is IPv6.
    for n in ["a", "b"] {
        let v4 = stdout(&lab.exec(n, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]));
        assert!(v4.trim().is_empty(), "{n} has IPv4 on eth0: {v4}");
        let v6 = stdout(&lab.exec(
            n,
            &[
                "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
            ],
        ));
        assert!(v6.contains("fd00:cf:"), "{n}'s eth0: {v6}");
        count_underlay_udp(&lab, n);
    }
    for n in ["a", "b"] {
        wait::until_true(&format!("{n} connected to NATS over IPv6"), LIMIT, || {
            lab.get(n)
                .ctl
                .status()
                .is_some_and(|s| s.nats_state == "connected")
        });
    }

    // Guardian gave each node an address in the realm's IPv6 subnet, and the node put it on
    // its TUN beside the IPv4 one.
    let net6: std::net::Ipv6Addr = REALM_SUBNET6.trim_end_matches("/64").parse().unwrap();
    let (a6, b6) = (address6(&lab, "a"), address6(&lab, "b"));
    for (n, a) in [("a", &a6), ("b", &b6)] {
        let ip: std::net::Ipv6Addr = a.parse().expect("an IPv6 overlay address");
        assert_eq!(
            ip.segments()[..4],
            net6.segments()[..4],
            "{n}'s IPv6 overlay address {a} in {REALM_SUBNET6}"
        );
        let tun = stdout(&lab.exec(n, &["ip", "-6", "-o", "addr", "show", "dev", "cfx0"]));
        assert!(tun.contains(&format!("{a}/64")), "{n}'s TUN: {tun}");
    }
    assert_ne!(a6, b6);
    let b_id = lab.id("b");
    wait::until_true("a to know b's IPv6 overlay address", LIMIT, || {
        ctl_json(&lab, "a", &["peers"])["peers"]
            .as_array()
            .is_some_and(|p| {
                p.iter()
                    .any(|p| p["node_id"] == b_id.as_str() && p["overlay_address6"] == b6.as_str())
            })
    });

    // IPv6 inside the overlay: the first packet sets up streams, tether and route.
    let first = reach_addr(&lab, "a", &b6, LIMIT);
    eprintln!("time to first IPv6 overlay reply a → b: {first:?}");
    let ping6 = lab.exec("a", &["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", &b6]);
    assert!(ping6.status.success(), "ping -6 a → b: {}", stdout(&ping6));
    let tethers = lab.get("a").ctl.overlay().expect("a's overlay");
    assert!(
        tethers
            .tethers
            .iter()
            .any(|t| t.peer == b_id && t.state == "up"),
        "a has a WebRTC tether up to b: {:?}",
        tethers.tethers
    );

    // IPv4 inside the overlay, over the same IPv6 underlay.
    let b4 = lab.address("b");
    reach_addr(&lab, "a", &b4, LIMIT);

    let (v4_before, v6_before) = underlay_udp(&lab, "a");
    let six = iperf3_to(&lab, "a", "b", &b6, 4);
    let four = iperf3_to(&lab, "b", "a", &lab.address("a"), 3);
    let (v4_after, v6_after) = underlay_udp(&lab, "a");
    eprintln!(
        "iperf3 -6 a → b over the IPv6 underlay: {:.1} Mbit/s; IPv4 b → a: {:.1} Mbit/s; \
         a's underlay UDP datagrams during the runs: {} IPv6, {} IPv4",
        six / 1e6,
        four / 1e6,
        v6_after - v6_before,
        v4_after - v4_before
    );
    assert!(six > 0.0, "no IPv6 overlay throughput");
    assert!(four > 0.0, "no IPv4 overlay throughput");
    // The tether's datagrams are IPv6 (the underlay has nothing else to carry them).
    assert!(
        v6_after - v6_before > 1_000,
        "the overlay traffic did not cross the underlay as IPv6 UDP"
    );
    assert_eq!(v4_after, 0, "no IPv4 UDP may leave or reach a's eth0");
    for n in ["a", "b"] {
        let s = lab.get(n).ctl.status().expect("status");
        assert_eq!(s.nats_state, "connected", "{n} kept NATS");
    }
}

/// A namespace made by the test itself, removed when it drops (also on a panic).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = conflux_tests::overlay_lab::sh(&["ip", "netns", "del", &self.0]);
    }
}

#[test]
fn ipv6_overlay_and_an_ipv6_lan_over_an_ipv4_underlay() {
    use conflux_tests::overlay_lab::must;

    let mut lab = Lab::new();
    // A dual-stack realm in the IPv4 lab: the data planes' wildcard sockets are dual-stack,
    // so this also runs every tether datagram through the IPv4-mapped send path.
    lab.cluster
        .create_realm6("dual", "100.81.0.0/16", "fd7a:cf:1::/64");
    lab.node_granted(
        "gw",
        "dual",
        &["dev"],
        "advertise_routes = [\"fd00:77::/64\"]",
        serde_json::json!({ "routed_prefixes": ["fd00:77::/64"] }),
    );
    lab.node("a", "dual", &["dev"], "");

    // The LAN behind gw: host fd00:77::5, gw's side fd00:77::1.
    let lan = Netns(format!("{}lan6", lab.get("gw").ns));
    must(&["ip", "netns", "add", &lan.0]);
    must(&["ip", "-n", &lan.0, "link", "set", "lo", "up"]);
    let gw_ns = lab.get("gw").ns.clone();
    must(&[
        "ip", "-n", &gw_ns, "link", "add", "lan6", "type", "veth", "peer", "name", "eth0", "netns",
        &lan.0,
    ]);
    must(&[
        "ip",
        "-n",
        &gw_ns,
        "addr",
        "add",
        "fd00:77::1/64",
        "dev",
        "lan6",
        "nodad",
    ]);
    must(&["ip", "-n", &gw_ns, "link", "set", "lan6", "up"]);
    must(&[
        "ip",
        "-n",
        &lan.0,
        "addr",
        "add",
        "fd00:77::5/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    must(&["ip", "-n", &lan.0, "link", "set", "eth0", "up"]);
    must(&[
        "ip",
        "-n",
        &lan.0,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:77::1",
    ]);

    let a6 = address6(&lab, "a");
    let gw6 = address6(&lab, "gw");
    for a in [&a6, &gw6] {
        let ip: std::net::Ipv6Addr = a.parse().expect("an IPv6 overlay address");
        assert_eq!(
            ip.segments()[..4],
            [0xfd7a, 0xcf, 1, 0],
            "{a} in fd7a:cf:1::/64"
        );
    }
    let status = ctl_json(&lab, "a", &["status"]);
    assert_eq!(status["overlay_address"], lab.address("a").as_str());
    let table = lab.get("a").ctl.table(&["status"]).expect("status table");
    assert!(
        table.contains(&a6),
        "conflux-ctl status shows the IPv6 address: {table}"
    );

    // IPv6 and IPv4 overlay traffic over the IPv4 underlay.
    let first = reach_addr(&lab, "a", &gw6, LIMIT);
    eprintln!("time to first IPv6 overlay reply a → gw over IPv4: {first:?}");
    reach_addr(&lab, "a", &lab.address("gw"), LIMIT);
    let six = iperf3_to(&lab, "a", "gw", &gw6, 3);
    eprintln!(
        "iperf3 -6 a → gw over the IPv4 underlay: {:.1} Mbit/s",
        six / 1e6
    );
    assert!(six > 0.0);

    // The IPv6 LAN behind gw, both ways.
    wait::until_true("a to accept gw's IPv6 LAN", LIMIT, || {
        lab.get("a").ctl.status().is_some_and(|s| {
            s.accepted_routes
                .iter()
                .any(|r| r.starts_with("fd00:77::/64"))
        })
    });
    let t = reach_addr(&lab, "a", "fd00:77::5", LIMIT);
    eprintln!("a reached fd00:77::5 behind gw in {t:?}");
    let from_lan = std::process::Command::new("ip")
        .args([
            "netns", "exec", &lan.0, "ping", "-n", "-c", "3", "-W", "1", &a6,
        ])
        .output()
        .unwrap();
    assert!(
        from_lan.status.success(),
        "the IPv6 LAN host does not reach a: {}",
        stdout(&from_lan)
    );
    let fwd = stdout(&lab.exec("gw", &["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]));
    assert_eq!(fwd.trim(), "1", "the gateway forwards IPv6");
}

#[test]
fn an_ipv6_only_node_skips_a_peers_ipv4_candidates() {
    let mut lab = Lab::new_ipv6();
    // a offers an IPv4 candidate first, as a dual-stack host would; b has no IPv4 at all,
    // so its tether must be made from the IPv6 candidate.
    lab.node(
        "a",
        REALM,
        &["dev"],
        "advertise = [\"192.0.2.10:51820\", \"[{underlay}]:51820\"]",
    );
    lab.node("b", REALM, &["dev"], "");
    let a6 = address6(&lab, "a");
    let first = reach_addr(&lab, "b", &a6, LIMIT);
    eprintln!("time to first IPv6 overlay reply b → a (a offers IPv4 first): {first:?}");
    reach_addr(&lab, "a", &address6(&lab, "b"), LIMIT);
    let a_id = lab.id("a");
    let o = lab.get("b").ctl.overlay().expect("b's overlay");
    assert!(
        o.tethers.iter().any(|t| t.peer == a_id && t.state == "up"),
        "b's tether to a: {:?}",
        o.tethers
    );
}
