//! A revoked node is cut off by nats-server and dropped by its peers within seconds.

use std::time::{Duration, Instant};

use conflux_tests::cluster::{Cluster, STARTUP, paired};
use conflux_tests::wait;

#[test]
fn revoked_node_is_cut_off_and_dropped() {
    let c = Cluster::start();
    c.create_realm("lab", "10.82.0.0/24");
    let a = c.node("a", "lab", &["a"]);
    let b = c.node("b", "lab", &["a"]);
    let r = c.node("r", "lab", &["a"]);
    wait::until_true("the mesh", STARTUP, || {
        paired(&a, &b) && paired(&a, &r) && paired(&b, &r)
    });
    let r_id = r.id();

    let t = Instant::now();
    c.revoke(&r_id);
    let revoked_in = t.elapsed();

    // Its peers drop it (the revocation notice, confirmed by the directory).
    wait::until_true(
        "the peers to drop the revoked node",
        Duration::from_secs(10),
        || {
            [&a, &b]
                .iter()
                .all(|n| n.has_no_stream(&r_id) && n.ctl.peers().iter().all(|p| p.node_id != r_id))
        },
    );
    let dropped = t.elapsed();
    // nats-server dropped the revoked user's connection and refuses it from then on.
    wait::until_true("nats-server to refuse the revoked node", STARTUP, || {
        r.status().nats_state == "refused"
    });
    let refused = t.elapsed();
    println!(
        "MEASURE revocation (from the admin's call): Guardian answered in {revoked_in:?}; both peers dropped the node after {dropped:?}; its reconnection refused by nats-server after {refused:?}"
    );
    wait::stays(
        "the revoked node to stay out",
        Duration::from_secs(3),
        || {
            r.status().nats_state != "connected"
                && [&a, &b]
                    .iter()
                    .all(|n| n.ctl.peers().iter().all(|p| p.node_id != r_id))
        },
    );
    assert!(paired(&a, &b), "the others keep their pair");
    println!(
        "MEASURE revoked node's view: nats_state={}",
        r.status().nats_state
    );
}
