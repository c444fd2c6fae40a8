//! The router end to end: real `conflux` nodes in network namespaces choosing, spreading
//! over and leaving paths. Needs root, nftables and tc; the labs run one at a time.

use std::time::Duration;

use conflux_tests::ctl::Route;
use conflux_tests::overlay_lab::{Lab, REALM};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(20);

/// `from`'s route to `to` (by node id), once it exists.
fn route(lab: &Lab, from: &str, to: &str) -> Option<Route> {
    let id = lab.id(to);
    lab.get(from)
        .ctl
        .overlay()?
        .routes
        .into_iter()
        .find(|r| r.destination == id)
}

/// The legs of a route that are up: (first relay or "" for direct, weight).
fn up_legs(r: &Route) -> Vec<(String, u32)> {
    r.paths
        .iter()
        .filter_map(|p| {
            let words: Vec<&str> = p.split_whitespace().collect();
            let up = words.iter().position(|w| *w == "up")?;
            let via = if words[0] == "via" {
                words[1].to_owned()
            } else {
                String::new()
            };
            Some((via, words.get(up + 1)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn cutting_the_active_path_moves_traffic_to_another_within_two_seconds() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    lab.node("r1", REALM, &["dev"], "relay = true");
    lab.node("r2", REALM, &["dev"], "relay = true");
    lab.reach("a", "b", LIMIT);
    // Three paths: direct, through r1, through r2; the router keeps a second one ready.
    wait::until_true("a second path to b to be up", LIMIT, || {
        route(&lab, "a", "b").is_some_and(|r| up_legs(&r).len() >= 2)
    });
    let before = route(&lab, "a", "b").unwrap();
    eprintln!("before the cut: {:?}", before.paths);
    let (active, _) = up_legs(&before)
        .into_iter()
        .max_by_key(|l| l.1)
        .expect("an up leg");
    let (cut_peer, cut_name) = if active.is_empty() {
        ("b", "direct")
    } else if active == lab.id("r1") {
        ("r1", "via r1")
    } else {
        ("r2", "via r2")
    };

    let iperf = lab.iperf3_start("a", "b", 10, false);
    let ping = lab.ping_start("a", "b", 20, 450);
    std::thread::sleep(Duration::from_secs(4));
    lab.block("a", cut_peer);
    let pinged = ping.finish();
    let tcp = iperf.finish();
    let after = route(&lab, "a", "b").expect("a still has a route to b");
    eprintln!(
        "cut the {cut_name} path: longest ping gap {:?} ({} of {} replies); route now {:?}",
        pinged.longest_gap, pinged.received, pinged.sent, after.paths
    );
    eprintln!("iperf3 half-seconds (Mbit/s): {:?}", mbits(&tcp.intervals));
    assert!(tcp.ok, "iperf3 across the cut failed");
    assert!(
        pinged.longest_gap < Duration::from_secs(2),
        "traffic took {:?} to recover (limit 2 s)",
        pinged.longest_gap
    );
    let cut_id = if cut_peer == "b" {
        String::new()
    } else {
        lab.id(cut_peer)
    };
    assert!(
        up_legs(&after)
            .iter()
            .all(|(via, w)| *via != cut_id || *w == 0),
        "the cut path carries nothing any more: {:?}",
        after.paths
    );
}

fn mbits(v: &[f64]) -> Vec<u32> {
    v.iter().map(|b| (b / 1e6) as u32).collect()
}

#[test]
fn two_shaped_links_carry_more_together_than_one_alone() {
    const LINK_MBIT: u32 = 200;
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    lab.node("r", REALM, &["dev"], "relay = true");
    // a's two ways out are 200 Mbit/s each: straight to b, and to r (which reaches b at
    // full speed).
    lab.shape("a", "b", LINK_MBIT);
    lab.shape("a", "r", LINK_MBIT);
    lab.reach("a", "b", LIMIT);
    wait::until_true("both paths to b to be up", LIMIT, || {
        route(&lab, "a", "b").is_some_and(|r| up_legs(&r).len() >= 2)
    });
    let relay_before = relayed(&lab, "r");
    let r = lab.iperf3_flows("a", "b", 10, false, 4).finish();
    assert!(r.ok, "iperf3 -P 4 failed");
    let total = r.bits_per_second / 1e6;
    let relay_share = relayed(&lab, "r") - relay_before;
    let legs = route(&lab, "a", "b").unwrap();
    eprintln!(
        "iperf3 -P 4 over two {LINK_MBIT} Mbit/s links: {total:.0} Mbit/s; r relayed {relay_share} packets; route {:?}; half-seconds {:?}",
        legs.paths,
        mbits(&r.intervals)
    );
    assert!(relay_share > 0, "the relayed path carried nothing");
    assert!(
        total > f64::from(LINK_MBIT) * 1.1,
        "{total:.0} Mbit/s is not more than one {LINK_MBIT} Mbit/s link carries"
    );
}

fn relayed(lab: &Lab, node: &str) -> u64 {
    lab.get(node)
        .ctl
        .overlay()
        .map(|o| o.workers.iter().map(|w| w.relayed_packets).sum())
        .unwrap_or(0)
}

#[test]
fn an_excluded_region_never_relays_and_conflux_ctl_changes_the_policy_at_once() {
    let mut lab = Lab::new();
    // Both ends exclude "bad": each end's own policy governs the paths it sends on.
    lab.node("a", REALM, &["dev"], "exclude_regions = [\"bad\"]");
    lab.node("b", REALM, &["dev"], "exclude_regions = [\"bad\"]");
    lab.node("rbad", REALM, &["dev"], "relay = true\nregion = \"bad\"");
    lab.node("rgood", REALM, &["dev"], "relay = true\nregion = \"good\"");
    lab.block("a", "b");
    lab.reach("a", "b", LIMIT);
    let r = lab.iperf3("a", "b", 3, false);
    assert!(r.ok);
    let via = route(&lab, "a", "b").expect("a route to b");
    eprintln!("with \"bad\" excluded: {:?}", via.paths);
    assert_eq!(via.via, lab.id("rgood"), "{via:?}");
    assert_eq!(
        relayed(&lab, "rbad"),
        0,
        "the excluded relay carried traffic"
    );
    assert!(relayed(&lab, "rgood") > 0);

    // The operator excludes "good" instead: traffic moves to rbad, rgood carries no more.
    for n in ["a", "b"] {
        let geo: serde_json::Value = lab
            .get(n)
            .ctl
            .run(&["geo", "set", "--exclude", "good"])
            .expect("conflux-ctl geo set");
        assert_eq!(geo["exclude"], serde_json::json!(["good"]), "{geo}");
    }
    wait::until_true(
        "the routes between a and b to go through rbad",
        LIMIT,
        || {
            lab.ping_once("a", "b", 1);
            route(&lab, "a", "b").is_some_and(|r| r.via == lab.id("rbad"))
                && route(&lab, "b", "a").is_some_and(|r| r.via == lab.id("rbad"))
        },
    );
    let good_before = relayed(&lab, "rgood");
    let r = lab.iperf3("a", "b", 3, false);
    assert!(r.ok);
    let good_after = relayed(&lab, "rgood");
    eprintln!(
        "with \"good\" excluded: {:?}; rgood relayed {} packets during it",
        route(&lab, "a", "b").map(|r| r.paths),
        good_after - good_before
    );
    assert!(relayed(&lab, "rbad") > 0);
    // Counters arrive once a second: allow what was in flight at the switch.
    assert!(
        good_after - good_before < 50,
        "rgood kept relaying: {} packets",
        good_after - good_before
    );
}
