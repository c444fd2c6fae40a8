//! Kill and restart nats-server: the nodes reconnect by themselves and their view of the
//! realm heals within 5 s.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conflux_tests::cluster::{Cluster, STARTUP, paired};
use conflux_tests::wait;

/// The bound for the view to heal after nats-server is back.
const HEAL_BOUND: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn view_heals_after_nats_server_restart() {
    let mut c = Cluster::start();
    c.create_realm("lab", "10.83.0.0/24");
    let a = c.node("a", "lab", &["a"]);
    let b = c.node("b", "lab", &["a"]);
    let n3 = c.node("c", "lab", &["a"]);
    let nodes = [&a, &b, &n3];
    wait::until_true("the mesh", STARTUP, || {
        paired(&a, &b) && paired(&a, &n3) && paired(&b, &n3)
    });

    c.kill_nats();
    wait::until_true("every node to notice the loss", STARTUP, || {
        nodes
            .iter()
            .all(|n| n.status().nats_state == "disconnected")
    });
    let t = Instant::now();
    let restart_ms = unix_ms();
    c.restart_nats();
    let listening = t.elapsed();

    let reconnected = wait::until_true("every node to reconnect", HEAL_BOUND, || {
        nodes.iter().all(|n| {
            let s = n.status();
            s.nats_state == "connected" && s.nats_reconnects >= 1
        })
    }) + listening;
    // Healed: every node has heard every peer since the restart, and every pair still
    // holds matching streams.
    wait::until_true(
        "the view of the realm to heal",
        HEAL_BOUND.saturating_sub(t.elapsed()),
        || {
            nodes.iter().all(|n| {
                let peers = n.ctl.peers();
                peers.len() == 2
                    && peers
                        .iter()
                        .all(|p| p.last_seen_unix_ms > restart_ms && p.state == "connected")
            }) && paired(&a, &b)
                && paired(&a, &n3)
                && paired(&b, &n3)
        },
    );
    let healed = t.elapsed();
    println!(
        "MEASURE nats-server restart: listening after {listening:?}; all nodes reconnected after {reconnected:?}; view healed after {healed:?} (bound {HEAL_BOUND:?})"
    );
    assert!(healed <= HEAL_BOUND);
}
