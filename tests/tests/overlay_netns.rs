//! The overlay end to end: real `conflux` processes (each starting its own data plane and
//! TUN device) in network namespaces, real nats-server and Guardian, traffic across it.
//! Needs root; run serially (`--test-threads 1`, as `tests/all.sh` does for this file).

use std::time::Duration;

use conflux_tests::overlay_lab::{Lab, REALM};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(20);

fn iperf3(lab: &Lab, client: &str, server: &str, secs: u32, reverse: bool) -> f64 {
    let r = lab.iperf3(client, server, secs, reverse);
    assert!(r.ok, "iperf3 {client} → {server} failed");
    r.bits_per_second
}

#[test]
fn overlay_direct_and_relayed_traffic() {
    let mut lab = Lab::new();
    lab.node(
        "a",
        REALM,
        &["dev"],
        "metrics_address = \"{underlay}:9464\"",
    );
    lab.node("b", REALM, &["dev"], "");
    lab.node("c", REALM, &["dev"], "");
    lab.node("r", REALM, &["dev"], "relay = true");
    lab.block("a", "c");

    // Direct: the first packet sets up streams, tether and route.
    let first = lab.reach("a", "b", LIMIT);
    eprintln!("time to first reply a → b: {first:?}");
    let routes = lab.get("a").ctl.overlay().unwrap();
    let b_id = lab.id("b");
    assert!(
        routes.routes.iter().any(|r| r.destination == b_id),
        "a has a route to b"
    );
    // On one flat LAN the direct path is the cheapest: the router settles on it once its
    // first measurements are in.
    let direct = |lab: &Lab| {
        lab.get("a").ctl.overlay().is_some_and(|o| {
            o.routes
                .iter()
                .any(|r| r.destination == b_id && r.via.is_empty() && r.state == "up")
        })
    };
    wait::until_true("a's main path to b to be direct", LIMIT, || direct(&lab));
    let up = iperf3(&lab, "a", "b", 10, false);
    let down = iperf3(&lab, "a", "b", 10, true);
    eprintln!(
        "iperf3 a → b {:.2} Gbit/s, b → a {:.2} Gbit/s",
        up / 1e9,
        down / 1e9
    );
    assert!(up > 0.0 && down > 0.0);

    // Relayed: a and c have no underlay path; r carries their packets without the key.
    let Some(first) = lab.first_reply("a", "c", LIMIT) else {
        for n in ["a", "r", "c"] {
            lab.dump(n, 40);
        }
        panic!("a does not reach c through r");
    };
    eprintln!("time to first reply a → c (relayed): {first:?}");
    let c_id = lab.id("c");
    let r_id = lab.id("r");
    let routes = lab.get("a").ctl.overlay().unwrap();
    let to_c = routes
        .routes
        .iter()
        .find(|r| r.destination == c_id)
        .expect("a has a route to c");
    assert_eq!(to_c.via, r_id, "a → c goes through r: {to_c:?}");
    let relayed = iperf3(&lab, "a", "c", 5, false);
    eprintln!("iperf3 a → c through r {:.2} Gbit/s", relayed / 1e9);
    assert!(relayed > 0.0);
    let r = lab.get("r").ctl.overlay().unwrap();
    assert!(r.relays >= 1, "r holds relay entries: {r:?}");
    // r never took part in the a → c handshake: it holds no stream with that key.
    let a_streams = lab.get("a").ctl.streams();
    let a_to_c = a_streams
        .iter()
        .find(|s| s.peer_id == c_id && s.direction == "out")
        .expect("a holds its stream to c");
    let r_streams = lab.get("r").ctl.streams();
    assert!(
        r_streams
            .iter()
            .all(|s| s.key_fingerprint != a_to_c.key_fingerprint),
        "r holds no key of the a → c stream"
    );
    wait::until_true("c to hold the a → c stream", LIMIT, || {
        lab.get("c")
            .ctl
            .streams()
            .iter()
            .any(|s| s.key_fingerprint == a_to_c.key_fingerprint)
    });
}

#[test]
fn overlay_tethers_spread_over_every_data_plane_worker() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "workers = 2");
    lab.node("b", REALM, &["dev"], "workers = 2");
    lab.node("c", REALM, &["dev"], "workers = 1");
    lab.node("r", REALM, &["dev"], "workers = 2\nrelay = true");
    lab.node("d", REALM, &["dev"], "workers = 2");
    lab.block("a", "d");

    // Two workers each end: two associations, one per worker on each side.
    let first = lab.reach("a", "b", LIMIT);
    eprintln!("time to first reply a → b (2 × 2 workers): {first:?}");
    let before = lab.get("b").ctl.overlay().unwrap();
    let r = lab.iperf3_flows("a", "b", 5, false, 16).finish();
    assert!(r.ok, "iperf3 -P 16 a → b failed");
    eprintln!(
        "iperf3 -P 16 a → b {:.2} Gbit/s over two workers each end",
        r.bits_per_second / 1e9
    );
    let a = lab.get("a").ctl.overlay().unwrap();
    let b = lab.get("b").ctl.overlay().unwrap();
    for (name, o) in [("a", &a), ("b", &b)] {
        let t = o
            .tethers
            .iter()
            .find(|t| t.state == "up")
            .unwrap_or_else(|| panic!("{name} has an up tether: {o:?}"));
        assert_eq!(t.associations, 2, "{name}: one association per worker");
        assert_eq!(o.workers.len(), 2, "{name} reports two workers");
    }
    for w in &a.workers {
        assert!(
            w.egress_packets > 0,
            "a's worker {} sent nothing: {:?}",
            w.worker,
            a.workers
        );
    }
    // Each association ends on its own worker of b, so both workers take packets in.
    for (w, was) in b.workers.iter().zip(&before.workers) {
        assert!(
            w.ingress_packets > was.ingress_packets,
            "b's worker {} received nothing: {:?}",
            w.worker,
            b.workers
        );
    }

    // Two workers against one: both of a's workers hold an association to c's only one.
    let first = lab.reach("a", "c", LIMIT);
    eprintln!("time to first reply a → c (2 × 1 workers): {first:?}");
    let r = lab.iperf3_flows("c", "a", 5, true, 8).finish();
    assert!(r.ok, "iperf3 -P 8 a → c failed");
    eprintln!("iperf3 -P 8 a → c {:.2} Gbit/s", r.bits_per_second / 1e9);
    let c = lab.get("c").ctl.overlay().unwrap();
    let c_tether = c
        .tethers
        .iter()
        .find(|t| t.state == "up")
        .expect("c's tether");
    assert_eq!(c_tether.associations, 2, "{c:?}");
    assert_eq!(c.workers.len(), 1);
    assert!(c.workers[0].ingress_packets > 0);

    // Relayed: each of r's workers forwards what its own associations bring in.
    let first = lab.reach("a", "d", LIMIT);
    eprintln!("time to first reply a → d through r (2 workers each): {first:?}");
    let r = lab.iperf3_flows("a", "d", 5, false, 16).finish();
    assert!(r.ok, "iperf3 -P 16 a → d through r failed");
    eprintln!(
        "iperf3 -P 16 a → d through r {:.2} Gbit/s",
        r.bits_per_second / 1e9
    );
    let relay = lab.get("r").ctl.overlay().unwrap();
    assert!(relay.relays >= 1, "{relay:?}");
    for w in &relay.workers {
        assert!(
            w.relayed_packets > 0,
            "r's worker {} relayed nothing: {:?}",
            w.worker,
            relay.workers
        );
    }
}

fn has_stream(lab: &Lab, node: &str, peer: &str) -> bool {
    let id = lab.id(peer);
    lab.get(node).ctl.streams().iter().any(|s| s.peer_id == id)
}

#[test]
fn overlay_policy_keeps_other_realms_and_taints_out_and_a_taint_change_cuts_a_flow() {
    let mut lab = Lab::new();
    lab.cluster.create_realm("other", "100.81.0.0/16");
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    lab.node("e", REALM, &["prod"], "");
    lab.node("d", "other", &["dev"], "");
    lab.reach("a", "b", LIMIT);

    // Incompatible taints: nothing gets through, and no stream exists on either side.
    assert!(!lab.ping_once("a", "e", 2), "a must not reach e");
    assert!(!has_stream(&lab, "a", "e") && !has_stream(&lab, "e", "a"));
    // Another realm: a does not even know d's address.
    assert!(
        !lab.ping_once("a", "d", 2),
        "a must not reach d in another realm"
    );
    let ov = lab.get("a").ctl.overlay().unwrap();
    assert!(ov.counter("misses_unknown") >= 1, "{:?}", ov.counters);
    assert!(lab.get("d").ctl.streams().is_empty());

    // A runtime taint change on b cuts the a ↔ b flow within 2 s, and restores it.
    let b = &lab.get("b").ctl;
    b.taint("add", Some("prod")).unwrap();
    b.taint("rm", Some("dev")).unwrap();
    let cut = wait::until_true(
        "a to drop its streams with b",
        Duration::from_secs(2),
        || !has_stream(&lab, "a", "b"),
    );
    eprintln!("streams with b gone from a {cut:?} after the taint change");
    assert!(!lab.ping_once("a", "b", 1), "no traffic after the cut");
    b.taint("add", Some("dev")).unwrap();
    b.taint("rm", Some("prod")).unwrap();
    assert!(
        lab.first_reply("a", "b", LIMIT).is_some(),
        "traffic resumes when the taints allow it again"
    );
}

#[test]
fn overlay_idle_streams_dissolve_on_both_ends_and_new_traffic_rebuilds_them() {
    let mut lab = Lab::new();
    let idle = "idle_timeout_ms = 3000";
    lab.node("a", REALM, &["dev"], idle);
    lab.node("b", REALM, &["dev"], idle);
    lab.reach("a", "b", LIMIT);
    assert!(has_stream(&lab, "a", "b") && has_stream(&lab, "b", "a"));
    let gone = wait::until_true("streams, routes and tethers to dissolve", LIMIT, || {
        ["a", "b"].iter().all(|n| {
            let ov = lab.get(n).ctl.overlay().unwrap_or_default();
            lab.get(n).ctl.streams().is_empty() && ov.routes.is_empty() && ov.tethers.is_empty()
        })
    });
    eprintln!("idle dissolve: everything gone {gone:?} after the last packet (timeout 3 s)");
    let again = lab
        .first_reply("a", "b", LIMIT)
        .expect("new traffic rebuilds the stream");
    eprintln!("rebuilt in {again:?}");
    assert!(has_stream(&lab, "a", "b"));
}

#[test]
fn overlay_rekeys_under_load_without_a_stall() {
    let mut lab = Lab::new();
    let rekey = "rekey_interval_ms = 2000";
    lab.node("a", REALM, &["dev"], rekey);
    lab.node("b", REALM, &["dev"], rekey);
    lab.reach("a", "b", LIMIT);
    let before = lab.get("a").ctl.overlay().unwrap().counter("rekeys");
    let r = lab.iperf3("a", "b", 12, false);
    assert!(r.ok, "iperf3 failed");
    let rates = r.intervals;
    let rekeys = lab.get("a").ctl.overlay().unwrap().counter("rekeys") - before;
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let min = rates.iter().copied().fold(f64::MAX, f64::min);
    eprintln!(
        "12 s under load: {rekeys} rekeys, mean {:.2} Gbit/s, slowest half-second {:.2} Gbit/s",
        mean / 1e9,
        min / 1e9
    );
    assert!(rekeys >= 3, "several rekeys during the run ({rekeys})");
    assert!(
        rates.iter().all(|r| *r > 0.0),
        "no half-second without traffic: {rates:?}"
    );
}

#[test]
fn overlay_traffic_survives_a_killed_control_process_and_a_restart_resumes_it() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    lab.reach("a", "b", LIMIT);
    let before = lab.get("a").ctl.status().unwrap();
    let run = lab.iperf3_start("a", "b", 14, false);
    std::thread::sleep(Duration::from_secs(3));
    lab.get_mut("a").kill();
    // The data plane goes on alone for a while.
    std::thread::sleep(Duration::from_secs(2));
    let logs = lab.logs().to_owned();
    lab.get_mut("a").start(&logs);
    let r = run.finish();
    if !r.ok {
        lab.dump("a", 60);
        lab.dump("b", 40);
        panic!("iperf3 across the restart failed: {:?}", r.intervals);
    }
    let rates = r.intervals;
    let after = lab.get("a").ctl.status().unwrap();
    assert_eq!(
        after.node_id, before.node_id,
        "same node id after the restart"
    );
    assert_ne!(
        after.identity_fingerprint, before.identity_fingerprint,
        "fresh keys after the restart"
    );
    // Half-seconds 7..10 are while the control process was dead (3 s in, 2 s long, after
    // the 0.3 s server start).
    let dead: f64 = rates.iter().skip(7).take(3).sum();
    let zero = rates.iter().filter(|r| **r == 0.0).count();
    eprintln!(
        "restart: rates while dead {:?} Gbit/s; {zero} silent half-seconds in {}",
        rates
            .iter()
            .skip(7)
            .take(3)
            .map(|r| (r / 1e8).round() / 10.0)
            .collect::<Vec<_>>(),
        rates.len()
    );
    assert!(
        dead > 0.0,
        "traffic flows while the control process is dead: {rates:?}"
    );
    assert!(
        lab.first_reply("a", "b", LIMIT).is_some(),
        "the restarted control process manages the overlay again"
    );
    wait::until_true("a's new streams with b", LIMIT, || {
        has_stream(&lab, "a", "b") && has_stream(&lab, "b", "a")
    });
}

#[test]
fn overlay_traffic_survives_a_nats_restart_and_new_streams_follow() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    lab.node("c", REALM, &["dev"], "");
    lab.reach("a", "b", LIMIT);
    let run = lab.iperf3_start("a", "b", 6, false);
    std::thread::sleep(Duration::from_secs(1));
    lab.cluster.kill_nats();
    let r = run.finish();
    assert!(r.ok, "iperf3 while NATS is down failed");
    let rates = r.intervals;
    assert!(
        rates.iter().skip(3).all(|r| *r > 0.0),
        "established traffic is unaffected while NATS is down: {rates:?}"
    );
    lab.cluster.restart_nats();
    let t = lab
        .first_reply("a", "c", Duration::from_secs(15))
        .expect("a new stream after NATS is back");
    eprintln!("new stream a → c {t:?} after nats-server restarted");
    assert!(
        t < Duration::from_secs(8),
        "new streams work again within seconds ({t:?})"
    );
}
