//! Gateways end to end: a LAN behind one node reachable from another by its LAN address,
//! only for prefixes Guardian authorized. Needs root; the labs run one at a time.

use std::time::Duration;

use conflux_tests::overlay_lab::{Lab, REALM};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn a_lan_behind_a_gateway_is_reachable_and_an_unauthorized_prefix_is_ignored() {
    let mut lab = Lab::new();
    lab.node_granted(
        "gw",
        REALM,
        &["dev"],
        "advertise_routes = [\"192.168.77.0/24\"]",
        serde_json::json!({ "routed_prefixes": ["192.168.77.0/24"] }),
    );
    // Claims a LAN Guardian never gave it.
    lab.node(
        "rogue",
        REALM,
        &["dev"],
        "advertise_routes = [\"192.168.88.0/24\"]",
    );
    lab.node("a", REALM, &["dev"], "");
    let lan = lab.lan("gw", "192.168.77.0/24", "192.168.77.5");
    let _rogue_lan = lab.lan("rogue", "192.168.88.0/24", "192.168.88.5");

    wait::until_true("a to accept gw's LAN", LIMIT, || {
        lab.get("a").ctl.status().is_some_and(|s| {
            s.accepted_routes
                .iter()
                .any(|r| r.starts_with("192.168.77.0/24"))
        })
    });
    let gw = lab.get("gw").ctl.status().unwrap();
    assert!(gw.roles.contains(&"gateway".to_owned()), "{gw:?}");
    assert_eq!(gw.advertised_routes, vec!["192.168.77.0/24".to_owned()]);

    // The LAN host answers a's pings by its LAN address.
    let start = std::time::Instant::now();
    let mut ok = false;
    while start.elapsed() < LIMIT && !ok {
        ok = lab
            .exec("a", &["ping", "-c", "1", "-W", "1", "192.168.77.5"])
            .status
            .success();
    }
    if !ok {
        lab.dump("a", 40);
        lab.dump("gw", 40);
        panic!("a does not reach 192.168.77.5 behind gw");
    }
    eprintln!("a reached 192.168.77.5 behind gw in {:?}", start.elapsed());
    // And the LAN host reaches a by its overlay address, through the gateway.
    let a_addr = lab.address("a");
    let from_lan = std::process::Command::new("ip")
        .args(["netns", "exec", &lan, "ping", "-c", "3", "-W", "1", &a_addr])
        .output()
        .unwrap();
    assert!(from_lan.status.success(), "the LAN host does not reach a");

    // The rogue's prefix is not accepted: no route, no traffic, and it is counted.
    let a = lab.get("a").ctl.status().unwrap();
    assert!(
        a.accepted_routes
            .iter()
            .all(|r| !r.starts_with("192.168.88.")),
        "{:?}",
        a.accepted_routes
    );
    assert!(a.routes_refused > 0, "{a:?}");
    let rogue = lab
        .exec("a", &["ping", "-c", "2", "-W", "1", "192.168.88.5"])
        .status
        .success();
    assert!(!rogue, "a reached a LAN nobody authorized");
    let ip_routes =
        String::from_utf8_lossy(&lab.exec("a", &["ip", "route", "show"]).stdout).into_owned();
    assert!(ip_routes.contains("192.168.77.0/24"), "{ip_routes}");
    assert!(!ip_routes.contains("192.168.88.0/24"), "{ip_routes}");

    // Nothing a added to the host routing table remains after an orderly stop.
    lab.get_mut("a").stop();
    let ip_routes =
        String::from_utf8_lossy(&lab.exec("a", &["ip", "route", "show"]).stdout).into_owned();
    assert!(!ip_routes.contains("192.168.77.0/24"), "{ip_routes}");
}
