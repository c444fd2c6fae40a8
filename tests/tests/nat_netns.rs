//! Real underlays: `conflux` nodes behind NATs that nftables masquerade makes in router
//! namespaces (endpoint-independent: one public port per socket; symmetric: a random port
//! per destination, and inbound only as answers), and a node that moves to a new address in
//! the middle of a transfer. Needs root and nftables; the labs run one at a time.
//!
//! Set-up times are from the first ping (which finds no route and starts the tether) to the
//! first reply, in a 20 ms series.

use std::time::Duration;

use conflux_tests::ctl::Overlay;
use conflux_tests::overlay_lab::{Lab, Nat, REALM};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(20);
/// Ping interval of the series that time set-up and gaps.
const TICK_MS: u32 = 20;

fn overlay(lab: &Lab, node: &str) -> Overlay {
    lab.get(node).ctl.overlay().unwrap_or_default()
}

/// Whether `from` holds an up tether to `to`.
fn tether_up(lab: &Lab, from: &str, to: &str) -> bool {
    let id = lab.id(to);
    overlay(lab, from)
        .tethers
        .iter()
        .any(|t| t.peer == id && t.state == "up")
}

/// Where `from`'s tether to `to` sends (each association's ICE-selected remote).
fn remotes(lab: &Lab, from: &str, to: &str) -> Vec<String> {
    let id = lab.id(to);
    overlay(lab, from)
        .tethers
        .into_iter()
        .find(|t| t.peer == id)
        .map(|t| t.remotes)
        .unwrap_or_default()
}

/// Waits until `node` has learned a reflexive candidate on its NAT's public address.
fn learns_its_mapping(lab: &Lab, node: &str) -> Vec<String> {
    let public = lab.nat_public(node);
    wait::until_true(
        &format!("{node} to learn its NAT mapping ({public}) from a STUN service"),
        LIMIT,
        || {
            overlay(lab, node)
                .reflexive_candidates
                .iter()
                .any(|r| r.contains(&format!(" {public}:")))
        },
    );
    overlay(lab, node).reflexive_candidates
}

/// Pings `to` from `from` every 20 ms for `secs`; returns when the first reply came.
fn set_up_time(lab: &Lab, from: &str, to: &str, secs: u32) -> Duration {
    let run = lab.ping_start(from, to, TICK_MS, secs * 1000 / TICK_MS);
    let r = run.finish();
    match r.first_reply {
        Some(t) => t,
        None => {
            lab.dump(from, 60);
            lab.dump(to, 60);
            panic!("{from} got no reply from {to} in {secs} s");
        }
    }
}

/// A 3 s TCP transfer a → b must move data.
fn carries_tcp(lab: &Lab, what: &str) {
    let iperf = lab.iperf3("a", "b", 3, false);
    eprintln!("{what}: {:.0} Mbit/s", iperf.bits_per_second / 1e6);
    assert!(iperf.ok && iperf.bits_per_second > 0.0, "{what}: {iperf:?}");
}

#[test]
fn a_node_behind_a_nat_tethers_directly_to_a_public_node() {
    let mut lab = Lab::new();
    lab.node("b", REALM, &["t"], "stun_service = true");
    lab.node_behind_nat("a", Nat::EndpointIndependent, "");
    let reflexive = learns_its_mapping(&lab, "a");
    let setup = set_up_time(&lab, "a", "b", 10);
    eprintln!("behind one NAT: a's reflexive candidates {reflexive:?}; set-up a→b {setup:?}");
    assert!(tether_up(&lab, "a", "b") && tether_up(&lab, "b", "a"));
    let nat_a = format!("{}:", lab.nat_public("a"));
    assert!(
        remotes(&lab, "b", "a")
            .iter()
            .all(|r| r.starts_with(&nat_a)),
        "b sends to a's NAT mapping: {:?}",
        remotes(&lab, "b", "a")
    );
    // Only a and b are in the realm: the traffic can only have gone over that tether.
    assert!(
        lab.ping_once("b", "a", 2),
        "b reaches a back over the tether"
    );
    // a found b's STUN service in b's presence.
    let b_addr = format!("{}:", lab.get("b").underlay);
    let a = overlay(&lab, "a");
    assert!(
        a.stun_servers.iter().any(|s| s.starts_with(&b_addr)),
        "a asks b's STUN service: {:?}",
        a.stun_servers
    );
}

#[test]
fn two_nodes_behind_endpoint_independent_nats_punch_a_direct_tether() {
    let mut lab = Lab::new();
    // A public node that offers STUN and does not relay: a and b can only meet directly.
    lab.node("s", REALM, &["t"], "stun_service = true");
    lab.node_behind_nat("a", Nat::EndpointIndependent, "");
    lab.node_behind_nat("b", Nat::EndpointIndependent, "");
    learns_its_mapping(&lab, "a");
    learns_its_mapping(&lab, "b");
    assert_eq!(overlay(&lab, "a").nat, "endpoint-independent");
    let setup = set_up_time(&lab, "a", "b", 10);
    eprintln!("both behind endpoint-independent NATs: set-up a→b {setup:?}");
    assert!(tether_up(&lab, "a", "b"), "a direct tether a–b");
    let (nat_a, nat_b) = (
        format!("{}:", lab.nat_public("a")),
        format!("{}:", lab.nat_public("b")),
    );
    eprintln!(
        "a sends to {:?}, b sends to {:?}",
        remotes(&lab, "a", "b"),
        remotes(&lab, "b", "a")
    );
    assert!(
        remotes(&lab, "a", "b")
            .iter()
            .all(|r| r.starts_with(&nat_b))
    );
    assert!(
        remotes(&lab, "b", "a")
            .iter()
            .all(|r| r.starts_with(&nat_a))
    );
    let s = overlay(&lab, "s");
    assert_eq!(s.relays, 0, "s relays nothing");
    carries_tcp(&lab, "through the punched hole");
}

#[test]
fn two_nodes_behind_symmetric_nats_talk_through_a_relay() {
    let mut lab = Lab::new();
    lab.node("r", REALM, &["t"], "relay = true");
    // A second STUN service lets the nodes see that their NATs map per destination.
    lab.node("s", REALM, &["t"], "stun_service = true");
    lab.node_behind_nat("a", Nat::Symmetric, "");
    lab.node_behind_nat("b", Nat::Symmetric, "");
    learns_its_mapping(&lab, "a");
    learns_its_mapping(&lab, "b");
    wait::until_true("a to notice its NAT maps per destination", LIMIT, || {
        overlay(&lab, "a").nat.starts_with("endpoint-dependent")
    });
    let setup = set_up_time(&lab, "a", "b", 15);
    eprintln!("both behind symmetric NATs: set-up a→b through the relay {setup:?}");
    let relayed: u64 = overlay(&lab, "r")
        .workers
        .iter()
        .map(|w| w.relayed_packets)
        .sum();
    assert!(relayed > 0, "r relayed a's packets");
    assert!(
        !tether_up(&lab, "a", "b"),
        "no direct tether between two symmetric NATs"
    );
    carries_tcp(&lab, "through the relay");
}

#[test]
fn a_node_that_moves_keeps_its_transfer_after_a_short_gap() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["t"], "");
    lab.node("b", REALM, &["t"], "");
    let setup = set_up_time(&lab, "a", "b", 10);
    eprintln!("no NAT (both on the bridge): set-up a→b {setup:?}");
    let stream_ids = |lab: &Lab| {
        let mut v: Vec<String> = lab
            .get("a")
            .ctl
            .streams()
            .into_iter()
            .map(|s| s.stream_id)
            .collect();
        v.sort();
        v
    };
    let streams_before = stream_ids(&lab);
    assert!(!streams_before.is_empty());
    let ping = lab.ping_start("a", "b", TICK_MS, 12_000 / TICK_MS);
    let iperf = lab.iperf3_start("a", "b", 12, false);
    std::thread::sleep(Duration::from_secs(4));
    let new = lab.move_node("a");
    eprintln!("a moved to {new}");
    let p = ping.finish();
    let i = iperf.finish();
    eprintln!(
        "roaming: longest ping gap {:?} ({} of {} replies); iperf3 {:.0} Mbit/s, per 0.5 s: {:?}",
        p.longest_gap,
        p.received,
        p.sent,
        i.bits_per_second / 1e6,
        i.intervals
            .iter()
            .map(|b| (b / 1e6).round())
            .collect::<Vec<_>>()
    );
    if !i.ok || p.longest_gap >= Duration::from_secs(5) {
        lab.dump("a", 80);
        lab.dump("b", 40);
    }
    assert!(i.ok, "the TCP transfer survived the move");
    assert!(
        p.longest_gap < Duration::from_secs(5),
        "traffic resumed within seconds (gap {:?})",
        p.longest_gap
    );
    let tail = &i.intervals[i.intervals.len().saturating_sub(4)..];
    assert!(
        tail.iter().all(|b| *b > 0.0),
        "the transfer runs again at the end: {tail:?}"
    );
    let a = overlay(&lab, "a");
    assert!(
        a.host_candidates
            .iter()
            .any(|c| c.starts_with(&format!("{new}:"))),
        "a offers its new address: {:?}",
        a.host_candidates
    );
    assert!(a.counter("ice_restarts") >= 1);
    // The streams are end to end and were not rebuilt by the move.
    assert_eq!(stream_ids(&lab), streams_before);
    assert_eq!(
        lab.get("a").ctl.status().map(|s| s.nats_state).as_deref(),
        Some("connected")
    );
}
