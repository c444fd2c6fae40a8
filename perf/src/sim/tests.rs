//! Simulator properties, each for a fixed seed: runs are reproducible, the router converges
//! to shortest-path delivery at low load, recovers from a cut, and honours exclusion.

use super::*;

fn short(kind: RouterKind, load: f64, seed: u64) -> SimConfig {
    SimConfig {
        warmup_s: 6.0,
        measure_s: 6.0,
        drain_s: 2.0,
        ..SimConfig::new(kind, load, seed)
    }
}

#[test]
fn a_seed_gives_the_same_run_twice() {
    let topo = Topology::from_spec("rgg:25", 3).unwrap();
    let cfg = short(RouterKind::QRouting, 400.0, 3);
    let (a, b) = (run(&topo, &cfg), run(&topo, &cfg));
    assert_eq!(
        (a.injected, a.delivered, a.route_changes),
        (b.injected, b.delivered, b.route_changes)
    );
    assert_eq!(a.mean_ms, b.mean_ms);
    let c = run(&topo, &short(RouterKind::QRouting, 400.0, 4));
    assert_ne!(a.injected, c.injected, "another seed, other traffic");
}

#[test]
fn at_low_load_the_routers_converge_to_shortest_path_delivery() {
    let topo = Topology::from_spec("grid:6x6:0.15", 5).unwrap();
    let sp = run(&topo, &short(RouterKind::ShortestPath, 200.0, 5));
    for kind in [RouterKind::QRouting, RouterKind::LatencyOnly] {
        let st = run(&topo, &short(kind, 200.0, 5));
        assert_eq!(st.control_refused, 0);
        assert!(st.drop_rate() < 0.005, "{kind:?} lost {}", st.drop_rate());
        assert!(
            st.mean_ms <= sp.mean_ms * 1.05,
            "{kind:?} mean {} ms against shortest path {} ms",
            st.mean_ms,
            sp.mean_ms
        );
    }
}

#[test]
fn after_a_cut_every_router_recovers_within_two_seconds() {
    let topo = Topology::from_spec("rgg:30", 8).unwrap();
    let link = topo
        .busiest_link()
        .expect("a link whose cut keeps the graph connected");
    for kind in RouterKind::ALL {
        let cfg = SimConfig {
            cut: Some(Cut {
                link,
                at_s: 8.0,
                restore_s: None,
            }),
            ..short(kind, 600.0, 8)
        };
        let st = run(&topo, &cfg);
        let rec = st.recovery_s.expect("a cut run reports recovery");
        assert!(st.link_down > 0, "{kind:?}: the cut link carried traffic");
        assert!(rec < 2.0, "{kind:?} recovered after {rec} s");
        let after: Vec<_> = st
            .timeline
            .iter()
            .filter(|b| b.0 >= 10.5 && b.0 < 12.0)
            .collect();
        let (inj, del) = after.iter().fold((0, 0), |a, b| (a.0 + b.1, a.1 + b.2));
        assert!(
            del as f64 >= 0.995 * inj as f64,
            "{kind:?}: {del} of {inj} after recovery"
        );
    }
}

#[test]
fn no_packet_is_relayed_through_an_excluded_region() {
    let topo = Topology::from_spec("rgg:30", 11).unwrap();
    for kind in RouterKind::ALL {
        let cfg = SimConfig {
            exclude: vec!["central".into()],
            ..short(kind, 300.0, 11)
        };
        let st = run(&topo, &cfg);
        let central: Vec<usize> = (0..topo.len())
            .filter(|&i| topo.regions[i] == "central")
            .collect();
        assert!(!central.is_empty());
        for i in central {
            assert_eq!(
                st.relayed[i], 0,
                "{kind:?} relayed through central node {i}"
            );
        }
        assert!(st.delivered > 0);
    }
}

#[test]
fn at_high_load_q_routing_loses_less_than_shortest_path() {
    let topo = Topology::from_spec("grid:6x6:0.15", 1).unwrap();
    let sp = run(&topo, &short(RouterKind::ShortestPath, 6000.0, 1));
    let q = run(&topo, &short(RouterKind::QRouting, 6000.0, 1));
    assert!(sp.drop_rate() > 0.01, "the load congests shortest path");
    assert!(
        q.drop_rate() < 0.7 * sp.drop_rate(),
        "Q-routing lost {} against shortest path {}",
        q.drop_rate(),
        sp.drop_rate()
    );
}

#[test]
fn on_two_clusters_from_an_edge_list_q_routing_uses_both_bridges() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim/two-clusters.edges");
    let topo = Topology::from_file(&file).unwrap();
    assert_eq!((topo.len(), topo.links.len()), (16, 22));
    let sp = run(&topo, &short(RouterKind::ShortestPath, 5000.0, 2));
    let q = run(&topo, &short(RouterKind::QRouting, 5000.0, 2));
    assert!(
        sp.drop_rate() > 0.01,
        "the near bridge congests under shortest path"
    );
    assert!(
        q.drop_rate() < 0.5 * sp.drop_rate(),
        "Q-routing lost {} against shortest path {}",
        q.drop_rate(),
        sp.drop_rate()
    );
    let bridge = |a: &str, b: &str| {
        let (a, b) = (
            topo.names.iter().position(|n| n == a).unwrap(),
            topo.names.iter().position(|n| n == b).unwrap(),
        );
        (q.relayed[a] + q.relayed[b], sp.relayed[a] + sp.relayed[b])
    };
    let (q_far, sp_far) = bridge("a5", "b5");
    assert!(
        q_far > sp_far,
        "Q-routing relays more over the far bridge: {q_far} against {sp_far}"
    );
}
