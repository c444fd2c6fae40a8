//! The overlay end to end: real `conflux` processes (each starting its own data plane and
//! TUN device) in network namespaces, real nats-server and Guardian, traffic across it.
//! Needs root; run serially (`--test-threads 1`, as `tests/all.sh` does for this file).

use std::time::Duration;

use conflux_tests::overlay_lab::{Lab, REALM};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(20);

fn iperf3(lab: &Lab, client: &str, server: &str, secs: u32, reverse: bool) -> f64 {
    let addr = lab.address(server);
    let mut srv = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.get(server).ns,
            "iperf3",
            "-s",
            "-1",
            "-B",
            &addr,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let mut args = vec!["iperf3", "-c", &addr, "-t", "", "-J"];
    let t = secs.to_string();
    args[4] = &t;
    if reverse {
        args.push("-R");
    }
    let out = lab.exec(client, &args);
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        out.status.success(),
        "iperf3 {client} → {server}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

#[test]
fn overlay_direct_and_relayed_traffic() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    lab.node("c", REALM, &["dev"], "");
    lab.node("r", REALM, &["dev"], "relay = true");
    lab.block("a", "c");

    // Direct: the first packet sets up streams, tether and route.
    let first = lab
        .first_reply("a", "b", LIMIT)
        .expect("a reaches b through the overlay");
    eprintln!("time to first reply a → b: {first:?}");
    let routes = lab.get("a").ctl.overlay().unwrap();
    let b_id = lab.id("b");
    let to_b = routes
        .routes
        .iter()
        .find(|r| r.destination == b_id)
        .expect("a has a route to b");
    assert!(to_b.via.is_empty(), "a → b is direct: {to_b:?}");
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
