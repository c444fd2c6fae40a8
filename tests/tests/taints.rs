//! Taints decide who talks: {a}/{a,b} talk, {a}/{c} do not, a node without taints talks to
//! no one; `conflux-ctl taint rm` breaks a pair on both sides within 2 s and `taint add`
//! restores it.

use std::time::{Duration, Instant};

use conflux_tests::cluster::{Cluster, STARTUP, apart, paired};
use conflux_tests::wait;

/// The bound for a taint change to break a pair on both sides.
const TAINT_BOUND: Duration = Duration::from_secs(2);

#[test]
fn taints_decide_who_talks_and_change_at_runtime() {
    let c = Cluster::start();
    c.create_realm("lab", "10.78.0.0/24");
    let a = c.node("a", "lab", &["a"]);
    let ab = c.node("ab", "lab", &["a", "b"]);
    let cc = c.node("c", "lab", &["c"]);
    let none = c.node("none", "lab", &[]);

    wait::until_true("{a} and {a,b} to pair", STARTUP, || paired(&a, &ab));
    // Everyone has heard everyone (so the verdicts below are not just ignorance).
    wait::until_true("every node to see the three others", STARTUP, || {
        [&a, &ab, &cc, &none]
            .iter()
            .all(|n| n.ctl.peers().len() == 3)
    });
    wait::stays(
        "incompatible pairs to stay apart",
        Duration::from_secs(2),
        || {
            apart(&a, &cc)
                && apart(&ab, &cc)
                && apart(&none, &a)
                && apart(&none, &ab)
                && apart(&none, &cc)
        },
    );
    let verdicts = none.ctl.peers();
    assert!(
        verdicts
            .iter()
            .all(|p| !p.compatible && p.state == "incompatible"),
        "a node without taints talks to no one: {verdicts:?}"
    );
    let seen_by_a: Vec<_> = a.ctl.peers();
    let c_id = cc.id();
    assert!(
        seen_by_a
            .iter()
            .any(|p| p.node_id == c_id && p.state == "incompatible")
    );
    assert!(
        a.status().ignored.is_empty(),
        "policy verdicts are not drops"
    );

    // taint rm: a becomes {} and talks to no one; both sides drop within 2 s.
    let (a_id, ab_id) = (a.id(), ab.id());
    let t = Instant::now();
    assert_eq!(a.ctl.taint("rm", Some("a")).unwrap(), Vec::<String>::new());
    let certified = t.elapsed();
    wait::until_true("the pair to break on both sides", TAINT_BOUND, || {
        a.has_no_stream(&ab_id) && ab.has_no_stream(&a_id)
    });
    let broken = t.elapsed();
    println!(
        "MEASURE taint rm: re-certified by Guardian in {certified:?}, pair broken on both sides {broken:?} after the command started"
    );
    assert!(a.status().taints.is_empty());
    let ab_view = ab.ctl.peers();
    let a_in_ab = ab_view.iter().find(|p| p.node_id == a_id).unwrap();
    assert!(a_in_ab.taints.is_empty() && a_in_ab.state == "incompatible");

    // taint add: restored, with fresh keys.
    let t = Instant::now();
    assert_eq!(a.ctl.taint("add", Some("a")).unwrap(), ["a"]);
    let restored = wait::until_true("the pair to come back", STARTUP, || paired(&a, &ab));
    println!(
        "MEASURE taint add: pair restored (both streams, matching keys) {restored:?} after the command started ({:?} total)",
        t.elapsed()
    );
    assert_eq!(a.ctl.taint("ls", None).unwrap(), ["a"]);

    // Adding a taint already there changes nothing; a bad name is refused with a reason.
    assert_eq!(a.ctl.taint("add", Some("a")).unwrap(), ["a"]);
    let err = a.ctl.taint("add", Some("Not-Valid")).unwrap_err();
    assert!(err.contains("taint"), "{err}");

    // Widening {a} to {a,c}: now it talks to neither {a,b} ({a,c} vs {a,b}) nor... {c} ⊂ {a,c}.
    let t = Instant::now();
    a.ctl.taint("add", Some("c")).unwrap();
    wait::until_true("{a,c} to drop {a,b}", TAINT_BOUND, || apart(&a, &ab));
    wait::until_true("{a,c} to pair with {c}", STARTUP, || paired(&a, &cc));
    println!(
        "MEASURE taint add c: {{a,c}} left {{a,b}} and paired with {{c}} in {:?}",
        t.elapsed()
    );
}
