//! Path MTU end to end: two nodes whose underlay between them carries only 1,280-byte
//! frames, one way by the interface MTU, the other by a bridge port that drops bigger frames
//! silently (a black hole). The tethers discover the usable datagram size, TCP runs within
//! it (MSS clamped), nothing is dropped for size in steady state, and a too-big ping with DF
//! gets "fragmentation needed" back. Needs root.

use std::time::Duration;

use conflux_tests::overlay_lab::{Lab, REALM, must};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(20);
/// IPv4 and UDP headers.
const IPV4_UDP: u32 = 28;
/// The underlay MTU on b's link.
const LINK_MTU: u32 = 1280;
/// The search's step (DTLS records keep SCTP packets four-byte aligned).
const GRANULARITY: u32 = 4;
/// DTLS record (header, explicit nonce, tag) and SCTP common + DATA chunk headers.
const TETHER_OVERHEAD: u32 = 37 + 28;
/// Stream header and tag.
const STREAM_OVERHEAD: u32 = 32;

/// Inner MTU a tether of path MTU `plpmtu` carries.
fn inner_mtu(plpmtu: u32) -> u32 {
    ((plpmtu - TETHER_OVERHEAD) & !3) - STREAM_OVERHEAD
}

fn counter(lab: &Lab, node: &str, name: &str) -> u64 {
    lab.get(node)
        .ctl
        .overlay()
        .and_then(|o| o.dataplane_counters.get(name).copied())
        .unwrap_or(0)
}

/// Each node's tether PLPMTU, once both have reported one within the search's reach.
fn plpmtus(lab: &Lab) -> Option<(u32, u32)> {
    let get = |n: &str| {
        lab.get(n)
            .ctl
            .overlay()
            .and_then(|o| o.tethers.first().map(|t| t.plpmtu))
    };
    let want = LINK_MTU - IPV4_UDP;
    let done = |p: u32| p <= want && want - p < GRANULARITY;
    match (get("a")?, get("b")?) {
        (a, b) if done(a) && done(b) => Some((a, b)),
        _ => None,
    }
}

#[test]
fn mtu_1280_underlay_tcp_without_stalls_and_icmp_frag_needed() {
    let mut lab = Lab::new();
    lab.node("a", REALM, &["dev"], "");
    lab.node("b", REALM, &["dev"], "");
    // b's link carries 1,280-byte frames: its own interface (b → a: the kernel refuses
    // bigger datagrams) and its bridge port (a → b: the bridge drops bigger frames without
    // a word, a real black hole).
    let b_ns = lab.get("b").ns.clone();
    let tag = b_ns
        .strip_prefix("cfx")
        .and_then(|s| s.strip_suffix('b'))
        .expect("lab namespace names are cfx<tag><node>");
    must(&["ip", "-n", &b_ns, "link", "set", "eth0", "mtu", "1280"]);
    must(&["ip", "link", "set", &format!("cv{tag}b"), "mtu", "1280"]);

    let first = lab.reach("a", "b", LIMIT);
    eprintln!("time to first reply a → b over the 1,280-byte link: {first:?}");
    let found = std::time::Instant::now();
    wait::until_true("both tethers to find the 1,280-byte path", LIMIT, || {
        plpmtus(&lab).is_some()
    });
    let (pa, pb) = plpmtus(&lab).unwrap();
    eprintln!(
        "PLPMTU a {pa} B, b {pb} B (path carries {} B of UDP payload), reported {:?} after the first reply",
        LINK_MTU - IPV4_UDP,
        found.elapsed()
    );
    let mtu = inner_mtu(pa.min(pb));

    // Steady state: TCP both ways, every half second moving data, nothing dropped for size.
    let too_big = (counter(&lab, "a", "too_big"), counter(&lab, "b", "too_big"));
    for reverse in [false, true] {
        let r = lab.iperf3("a", "b", 5, reverse);
        let dir = if reverse { "b → a" } else { "a → b" };
        assert!(r.ok, "iperf3 {dir} failed");
        eprintln!(
            "iperf3 {dir} over the 1,280-byte link: {:.0} Mbit/s, intervals {:?}",
            r.bits_per_second / 1e6,
            r.intervals
                .iter()
                .map(|b| (b / 1e6).round())
                .collect::<Vec<_>>()
        );
        assert!(r.intervals.len() >= 9, "{dir}: {:?}", r.intervals);
        assert!(
            r.intervals.iter().all(|&b| b > 0.0),
            "{dir}: a half second without data (a stall): {:?}",
            r.intervals
        );
    }
    let after = (counter(&lab, "a", "too_big"), counter(&lab, "b", "too_big"));
    assert_eq!(after, too_big, "inner packets dropped for size during TCP");
    for n in ["a", "b"] {
        assert!(
            counter(&lab, n, "mss_clamped") > 0,
            "{n} clamped no SYN's MSS"
        );
    }
    eprintln!(
        "mss_clamped a {}, b {}; too_big unchanged at {after:?}",
        counter(&lab, "a", "mss_clamped"),
        counter(&lab, "b", "mss_clamped")
    );

    // A ping too big for the tether, with DF: "fragmentation needed" with the inner MTU.
    let addr = lab.address("b");
    let icmp_before = counter(&lab, "a", "icmp_too_big_sent");
    let out = lab.exec(
        "a",
        &[
            "ping", "-n", "-M", "do", "-s", "1300", "-c", "3", "-W", "1", &addr,
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ping -M do -s 1300 a → b:\n{text}");
    assert!(
        text.contains("Frag needed"),
        "no fragmentation-needed error came back: {text}"
    );
    assert!(
        text.contains(&format!("mtu = {mtu}")) || text.contains(&format!("mtu={mtu}")),
        "the error names the inner MTU {mtu}: {text}"
    );
    wait::until_true("a to count the ICMP error", Duration::from_secs(5), || {
        counter(&lab, "a", "icmp_too_big_sent") > icmp_before
    });
    // A ping that fits goes through.
    let fits = (mtu - 28).to_string();
    let ok = lab.exec(
        "a",
        &[
            "ping", "-n", "-M", "do", "-s", &fits, "-c", "1", "-W", "2", &addr,
        ],
    );
    assert!(
        ok.status.success(),
        "a {mtu}-byte ping with DF does not pass"
    );
}
