//! Three nodes register with Guardian, see each other over NATS and set up both streams of
//! every pair with matching keys; a restarted node keeps its id and gets fresh keys that
//! its peers accept.

use std::time::Instant;

use conflux_tests::cluster::{Cluster, STARTUP, paired};
use conflux_tests::wait;

#[test]
fn three_nodes_register_see_each_other_and_handshake() {
    let c = Cluster::start();
    c.create_realm("lab", "10.77.0.0/24");

    let t0 = Instant::now();
    let a = c.node("a", "lab", &["a"]);
    let b = c.node("b", "lab", &["a", "b"]);
    let mut n3 = c.node("c", "lab", &["a"]);
    let nodes = [&a, &b, &n3];

    let statuses: Vec<_> = nodes.iter().map(|n| n.status()).collect();
    for s in &statuses {
        assert_eq!(s.realm, "lab");
        assert_eq!(s.node_id.len(), 32);
        assert!(
            s.overlay_address.starts_with("10.77.0."),
            "{}",
            s.overlay_address
        );
    }
    let mut addrs: Vec<_> = statuses.iter().map(|s| s.overlay_address.clone()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 3, "every node has its own overlay address");
    let reg_ms: Vec<u64> = statuses.iter().map(|s| s.registration_ms).collect();
    println!("MEASURE registration_ms per node (token, fresh keys): {reg_ms:?}");

    let (_, mesh) = wait::until("all three pairs to hold matching streams", STARTUP, || {
        (paired(&a, &b) && paired(&a, &n3) && paired(&b, &n3)).then_some(())
    });
    println!(
        "MEASURE mesh of 3 complete {:?} after the last node answered ({:?} after the first start)",
        mesh,
        t0.elapsed()
    );
    for n in nodes {
        let peers = n.ctl.peers();
        assert_eq!(peers.len(), 2, "{} sees the two others", n.name);
        assert!(peers.iter().all(|p| p.state == "connected" && p.compatible));
        let st = n.status();
        assert_eq!(st.nats_state, "connected");
        assert!(
            st.ignored.is_empty(),
            "{}: nothing dropped: {:?}",
            n.name,
            st.ignored
        );
        let hs: Vec<f64> = n
            .ctl
            .streams()
            .iter()
            .filter(|s| s.direction == "out")
            .map(|s| s.handshake_us as f64 / 1000.0)
            .collect();
        println!(
            "MEASURE handshake over NATS (request to accept), ms, node {}: {hs:?}",
            n.name
        );
    }
    // The table output names the peers an operator would look for.
    let table = a.ctl.table(&["peers"]).unwrap();
    println!("conflux-ctl peers (node a):\n{table}");
    println!(
        "conflux-ctl streams (node a):\n{}",
        a.ctl.table(&["streams"]).unwrap()
    );
    assert!(
        table.contains(&b.id()) && table.contains("connected"),
        "{table}"
    );

    // Restart: same id from credentials.json (0600), fresh keys, peers accept them.
    let id = n3.id();
    let old_identity = n3.status().identity_fingerprint;
    let creds = n3.data_dir().join("credentials.json");
    let mode = std::fs::metadata(&creds).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    n3.stop();
    let t = Instant::now();
    n3.start();
    let st = n3.status();
    assert_eq!(st.node_id, id, "the node id survives a restart");
    assert_ne!(
        st.identity_fingerprint, old_identity,
        "fresh keys at each start"
    );
    println!(
        "MEASURE re-registration with the conflux token: {} ms",
        st.registration_ms
    );
    let (_, healed) = wait::until("peers to accept the restarted node", STARTUP, || {
        let seen = a
            .ctl
            .peers()
            .iter()
            .any(|p| p.node_id == id && p.identity_fingerprint == st.identity_fingerprint);
        (seen && paired(&a, &n3) && paired(&b, &n3)).then_some(())
    });
    println!(
        "MEASURE restarted node paired again {:?} after answering ({:?} after start)",
        healed,
        t.elapsed()
    );
    assert!(paired(&a, &b));
    assert_eq!(
        a.ctl.peers().len(),
        2,
        "the restarted node is the same peer"
    );
}
