//! The README demo: nats-server and Guardian on a bridge, four nodes A, B, C and R in
//! network namespaces (A and C have no direct path; R relays), then ping and a short
//! iperf3 A → B (direct) and A → C (through R), and a summary. Everything it made is
//! removed when it ends, also on failure; `tests/demo.sh` also cleans up after Ctrl-C.

use std::time::Duration;

use conflux_tests::overlay_lab::{Lab, REALM};

const LIMIT: Duration = Duration::from_secs(30);

struct Leg {
    name: &'static str,
    route: String,
    first: Duration,
    rtt_ms: (f64, f64, f64),
    gbps: f64,
}

fn rtt(lab: &Lab, from: &str, to: &str) -> (f64, f64, f64) {
    let addr = lab.address(to);
    let out = lab.exec(from, &["ping", "-c", "20", "-i", "0.05", "-q", &addr]);
    // "rtt min/avg/max/mdev = 0.045/0.061/0.090/0.010 ms"
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<f64> = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .map(|v| {
            v.trim()
                .trim_end_matches(" ms")
                .split('/')
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match nums.as_slice() {
        [min, avg, max, ..] => (*min, *avg, *max),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    }
}

fn leg(lab: &Lab, name: &'static str, from: &str, to: &str, names: &[(&str, String)]) -> Leg {
    let (f, t) = (from.to_uppercase(), to.to_uppercase());
    println!("== {name}: the first packet from {f} to {t} sets up streams, tether and route");
    let first = lab.first_reply(from, to, LIMIT).unwrap_or_else(|| {
        lab.dump(from, 30);
        lab.dump(to, 30);
        panic!("{from} cannot reach {to}");
    });
    let to_id = lab.id(to);
    let ov = lab.get(from).ctl.overlay().unwrap_or_default();
    let name_of = |id: &str| {
        names
            .iter()
            .find(|(_, i)| i == id)
            .map_or_else(|| id.to_owned(), |(n, _)| n.to_uppercase())
    };
    let route = ov
        .routes
        .iter()
        .find(|r| r.destination == to_id)
        .map_or_else(
            || "?".to_owned(),
            |r| {
                if r.via.is_empty() {
                    format!("{} → {} (direct)", from.to_uppercase(), to.to_uppercase())
                } else {
                    format!(
                        "{} → {} → {} (relayed)",
                        from.to_uppercase(),
                        name_of(&r.via),
                        to.to_uppercase()
                    )
                }
            },
        );
    println!("   route {route}; first reply after {first:.1?}");
    println!("== {name}: ping (20) and iperf3 (5 s)");
    let rtt_ms = rtt(lab, from, to);
    let gbps = lab.iperf3(from, to, 5, false).bits_per_second / 1e9;
    Leg {
        name,
        route,
        first,
        rtt_ms,
        gbps,
    }
}

fn main() {
    println!("== starting nats-server and Guardian on a test bridge");
    let mut lab = Lab::new();
    // tests/demo.sh cleans up after a Ctrl-C with this: the processes' common directory.
    if let Ok(f) = std::env::var("CONFLUX_DEMO_DIR_FILE") {
        let _ = std::fs::write(f, lab.cluster.dir.path().display().to_string());
    }
    for (n, extra) in [("a", ""), ("b", ""), ("c", ""), ("r", "relay = true")] {
        println!(
            "== starting node {} in its own network namespace",
            n.to_uppercase()
        );
        lab.node(n, REALM, &["demo"], extra);
    }
    println!("== cutting the underlay between A and C (nftables): they can meet only through R");
    lab.block("a", "c");
    let names: Vec<(&str, String)> = ["a", "b", "c", "r"]
        .iter()
        .map(|n| (*n, lab.id(n)))
        .collect();
    for (n, id) in &names {
        println!(
            "   {}  node {id}  overlay {}  underlay {}",
            n.to_uppercase(),
            lab.address(n),
            lab.get(n).underlay
        );
    }
    let legs = [
        leg(&lab, "A → B", "a", "b", &names),
        leg(&lab, "A → C", "a", "c", &names),
    ];
    let r = lab.get("r").ctl.overlay().unwrap_or_default();
    println!();
    println!("== summary");
    println!(
        "   {:<7} {:<28} {:>12} {:>22} {:>12}",
        "path", "route", "first reply", "ping min/avg/max ms", "iperf3"
    );
    for l in &legs {
        println!(
            "   {:<7} {:<28} {:>12} {:>22} {:>7.2} Gbit/s",
            l.name,
            l.route,
            format!("{:.2} s", l.first.as_secs_f64()),
            format!("{:.3}/{:.3}/{:.3}", l.rtt_ms.0, l.rtt_ms.1, l.rtt_ms.2),
            l.gbps
        );
    }
    println!(
        "   R relays {} route(s) without any key of A's or C's streams; every hop is a WebRTC \
         data-channel tether, every stream ML-KEM-768 + ML-DSA-65 keyed, AES-256-GCM sealed.",
        r.relays
    );
    let ok = legs.iter().all(|l| l.gbps > 0.0);
    drop(lab);
    println!("== cleaned up: namespaces, bridge and processes removed");
    if !ok {
        eprintln!("conflux-demo: an iperf3 run moved nothing");
        std::process::exit(1);
    }
}
