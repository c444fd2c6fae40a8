//! Portals and rifts end to end: real `conflux` nodes in namespaces, a stand-in internet
//! namespace with an HTTP server outside the overlay, nftables NAT on the portals and
//! policy routing on the rift. Needs root, nft, curl and python3; the labs run one at a time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conflux_tests::overlay_lab::{Lab, REALM};
use conflux_tests::wait;

const LIMIT: Duration = Duration::from_secs(25);

/// An HTTP server in the internet namespace, logging each client's address.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    fn start(ns: &str, addr: &str, log: std::path::PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "python3",
                "-u",
                "-m",
                "http.server",
                "8080",
            ])
            .args(["--bind", addr])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("python3 http.server");
        std::thread::sleep(Duration::from_millis(500));
        Self { child, log }
    }

    /// The client addresses the server has seen.
    fn clients(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetch(lab: &Lab, node: &str, url: &str) -> bool {
    lab.exec(node, &["curl", "-s", "-o", "/dev/null", "-m", "3", url])
        .status
        .success()
}

fn fetch_within(lab: &Lab, node: &str, url: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if fetch(lab, node, url) {
            return Some(start.elapsed());
        }
    }
    None
}

fn nft_tables(lab: &Lab, node: &str) -> String {
    String::from_utf8_lossy(&lab.exec(node, &["nft", "list", "tables"]).stdout).into_owned()
}

fn ip_rules(lab: &Lab, node: &str, family: &str) -> String {
    String::from_utf8_lossy(&lab.exec(node, &["ip", family, "rule", "show"]).stdout).into_owned()
}

#[test]
fn a_rift_exits_through_its_owners_portal_only_and_moves_when_it_dies() {
    let mut lab = Lab::new();
    let portal = serde_json::json!({ "owner": "u", "portal": true });
    lab.node_granted("p1", REALM, &["dev"], "portal = true", portal.clone());
    lab.node_granted("p2", REALM, &["dev"], "portal = true", portal);
    lab.node_granted(
        "r",
        REALM,
        &["dev"],
        "rift = true",
        serde_json::json!({ "owner": "u" }),
    );
    let p1 = lab.id("p1");
    lab.node_granted(
        "x",
        REALM,
        &["dev"],
        &format!("rift = true\nportal_node = \"{p1}\""),
        serde_json::json!({ "owner": "v" }),
    );
    let (inet, server_ip) = lab.internet(&["p1", "p2"]);
    let server = Server::start(&inet, &server_ip, lab.logs().join("http.log"));
    let url = format!("http://{server_ip}:8080/");
    let portal_addr = |name: &str| {
        if name == "p1" {
            "198.18.1.2"
        } else {
            "198.18.2.2"
        }
    };

    for p in ["p1", "p2"] {
        let s = lab.get(p).ctl.status().unwrap();
        assert!(s.roles.contains(&"portal".to_owned()), "{p}: {s:?}");
        assert!(
            nft_tables(&lab, p).contains("conflux_portal"),
            "{p} has its NAT table"
        );
    }
    wait::until_true("r to pick a portal", LIMIT, || {
        lab.get("r")
            .ctl
            .status()
            .is_some_and(|s| !s.exit_portal.is_empty())
    });
    let chosen_id = lab.get("r").ctl.status().unwrap().exit_portal;
    let (chosen, other) = if chosen_id == p1 {
        ("p1", "p2")
    } else {
        ("p2", "p1")
    };

    // The rift reaches the internet server through its owner's portal, NATed.
    let Some(t) = fetch_within(&lab, "r", &url, LIMIT) else {
        for n in ["r", chosen] {
            lab.dump(n, 40);
        }
        panic!("r does not reach the internet through {chosen}");
    };
    eprintln!("r fetched {url} through {chosen} after {t:?}");
    assert_eq!(
        server.clients().last().map(String::as_str),
        Some(portal_addr(chosen)),
        "the server sees the portal's address"
    );

    // Another owner's node pointed at u's portal gets nothing out; p1 counts the refusals.
    wait::until_true("x to use p1", LIMIT, || {
        lab.get("x")
            .ctl
            .status()
            .is_some_and(|s| s.exit_portal == p1)
    });
    let before = server.clients().len();
    for _ in 0..3 {
        assert!(
            !fetch(&lab, "x", &url),
            "x (owner v) got out through u's portal"
        );
    }
    assert_eq!(
        server.clients().len(),
        before,
        "nothing from x reached the server"
    );
    wait::until_true("p1 to count x's refused packets", LIMIT, || {
        lab.get("p1")
            .ctl
            .status()
            .is_some_and(|s| s.exit_denied > 0)
    });

    // No IPv6 leaves the rift by its underlay while the rift is up.
    let v6 = lab.exec("r", &["ip", "-6", "route", "get", "2001:db8::1"]);
    let v6_text = format!(
        "{}{}",
        String::from_utf8_lossy(&v6.stdout),
        String::from_utf8_lossy(&v6.stderr)
    );
    assert!(
        !v6.status.success() || v6_text.contains("unreachable"),
        "IPv6 has a way out: {v6_text}"
    );
    let ping6 = lab.exec("r", &["ping", "-6", "-c", "1", "-W", "1", "2001:db8::1"]);
    assert!(!ping6.status.success(), "an IPv6 ping left the rift");

    // The chosen portal dies (control process and data plane): r moves to the other one.
    lab.kill_all(chosen);
    let cut = Instant::now();
    wait::until_true(
        "r to move to the other portal",
        Duration::from_secs(40),
        || {
            lab.get("r")
                .ctl
                .status()
                .is_some_and(|s| s.exit_portal == lab.id(other))
        },
    );
    let Some(_) = fetch_within(&lab, "r", &url, LIMIT) else {
        lab.dump("r", 40);
        lab.dump(other, 40);
        panic!("r does not get out through {other} after {chosen} died");
    };
    eprintln!(
        "r fetched through {other} {:?} after {chosen} was killed",
        cut.elapsed()
    );
    assert_eq!(
        server.clients().last().map(String::as_str),
        Some(portal_addr(other))
    );

    // kill -9 left the dead portal's NAT table: its next start replaces it, its stop
    // removes it; the others clean up on an orderly stop.
    assert!(nft_tables(&lab, chosen).contains("conflux_portal"));
    let logs = lab.logs().to_owned();
    lab.get_mut(chosen).start(&logs);
    assert_eq!(
        nft_tables(&lab, chosen).matches("conflux_portal").count(),
        1
    );
    for n in [chosen, other, "r", "x"] {
        lab.get_mut(n).stop();
    }
    for p in [chosen, other] {
        assert!(
            !nft_tables(&lab, p).contains("conflux_portal"),
            "{p} left NAT rules"
        );
    }
    for family in ["-4", "-6"] {
        let rules = ip_rules(&lab, "r", family);
        assert!(!rules.contains("51820"), "r left rules: {rules}");
    }
    let table = String::from_utf8_lossy(
        &lab.exec("r", &["ip", "route", "show", "table", "51820"])
            .stdout,
    )
    .into_owned();
    assert!(table.trim().is_empty(), "r left routes: {table}");
}
