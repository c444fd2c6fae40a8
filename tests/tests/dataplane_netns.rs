//! Data planes in network namespaces, driven by the static driver: A ↔ B directly, and
//! A → R → B through a relay that holds no key, every hop a WebRTC tether (ICE, DTLS 1.2,
//! SCTP data channels) whose peer fingerprint each side reads from the other's snapshot.
//! Real TUN devices, real io_uring, real traffic (ping, iperf3). One worker per node, not pinned; the tests take a global lock so
//! they run one at a time, and every namespace and process they make is removed when a test
//! ends, passed or failed.
//!
//! Needs root, /dev/net/tun, `ip`, `ping` and `iperf3` (tests/setup.sh installs them); a
//! missing piece fails the test with the reason.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conflux_dataplane::control::client::attach;
use conflux_dataplane::control::snapshot::Snapshot;
use conflux_dataplane::driver::generation_key;
use conflux_shared::id::StreamId;
use conflux_tests::bins::workspace_bin;

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

const REKEY_S: u64 = 60;
const AB: &str = "00112233445566778899aabbccddee01";
const BA: &str = "00112233445566778899aabbccddee02";
const SECRET_AB: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SECRET_BA: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn preflight() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the data plane namespace tests must run as root"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing"
    );
    for tool in ["ip", "ping", "iperf3"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(ok, "{tool} is not installed (tests/setup.sh installs it)");
    }
}

/// Namespaces, veth links and processes of one test; removed on drop.
struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    /// Long-running processes: (name, child).
    procs: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Self {
        preflight();
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            tag,
            dir: tempfile::tempdir().expect("temp dir"),
            namespaces: Vec::new(),
            procs: Vec::new(),
        }
    }

    fn ns(&self, node: &str) -> String {
        format!("cfx{}{node}", self.tag)
    }

    fn add_ns(&mut self, node: &str) {
        let ns = self.ns(node);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }

    /// A veth pair between two nodes with underlay addresses on 10.<net>.0.0/24.
    fn link(&mut self, a: &str, b: &str, net: u8) -> (String, String) {
        let (na, nb) = (self.ns(a), self.ns(b));
        let (va, vb) = (
            format!("v{}{a}{b}", self.tag),
            format!("v{}{b}{a}", self.tag),
        );
        must(&[
            "ip", "link", "add", &va, "netns", &na, "type", "veth", "peer", "name", &vb, "netns",
            &nb,
        ]);
        let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
        must(&[
            "ip",
            "-n",
            &na,
            "addr",
            "add",
            &format!("{ia}/24"),
            "dev",
            &va,
        ]);
        must(&[
            "ip",
            "-n",
            &nb,
            "addr",
            "add",
            &format!("{ib}/24"),
            "dev",
            &vb,
        ]);
        must(&["ip", "-n", &na, "link", "set", &va, "up"]);
        must(&["ip", "-n", &nb, "link", "set", &vb, "up"]);
        (ia, ib)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self, name: &str, ns: Option<&str>, args: &[&str]) {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("log file");
        let mut cmd = match ns {
            Some(node) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.ns(node)]);
                c.args(args);
                c
            }
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        self.procs.push((name.to_string(), child));
    }

    /// Stops one process (SIGKILL) and waits for it.
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.procs.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.procs.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts a data plane in `node` with overlay address 100.64.0.<host>.
    fn dataplane(&mut self, node: &str, host: u8) {
        let bin = workspace_bin("conflux-dataplane");
        let sock = self.path(&format!("{node}.sock"));
        let (bin, sock) = (
            bin.to_string_lossy().into_owned(),
            sock.to_string_lossy().into_owned(),
        );
        let addr = format!("100.64.0.{host}/24");
        self.spawn(
            &format!("dp-{node}"),
            Some(node),
            &[
                &bin,
                "run",
                "--tun",
                "cfx0",
                "--address",
                &addr,
                "--workers",
                "1",
                "--no-pin",
                "--socket",
                &sock,
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&sock).exists() {
            assert!(
                Instant::now() < deadline,
                "data plane {node} did not start:\n{}",
                self.log(&format!("dp-{node}"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `config` for `node` and starts its static driver.
    fn driver(&mut self, node: &str, config: &str) {
        let file = self.path(&format!("{node}.toml"));
        std::fs::write(&file, config).expect("config");
        let bin = workspace_bin("conflux-dataplane")
            .to_string_lossy()
            .into_owned();
        let name = format!("driver-{node}");
        self.spawn(
            &name,
            None,
            &[&bin, "static", "--config", &file.to_string_lossy()],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log(&name).contains("static configuration installed") {
            assert!(
                Instant::now() < deadline,
                "driver {node} did not attach:\n{}",
                self.log(&name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The worker applies records within its 50 ms tick.
        std::thread::sleep(Duration::from_millis(200));
    }

    /// The node's DTLS fingerprint, as its snapshot announces it (before its driver
    /// attaches: one control process attaches at a time).
    fn fingerprint(&self, node: &str) -> String {
        let f = self.snapshot(node).dtls_fingerprint;
        assert!(f.starts_with("sha-256 "), "fingerprint of {node}: {f:?}");
        f
    }

    /// The node's tables and counters (the node's driver must be stopped first: one control
    /// process attaches at a time).
    fn snapshot(&self, node: &str) -> Snapshot {
        let a = attach(&self.path(&format!("{node}.sock"))).expect("attach for a snapshot");
        a.snapshot
    }

    fn exec(&self, node: &str, args: &[&str]) -> std::process::Output {
        let ns = self.ns(node);
        let mut all = vec!["ip", "netns", "exec", &ns];
        all.extend_from_slice(args);
        sh(&all)
    }

    fn ping(&self, node: &str, dst: &str, count: u32) -> bool {
        self.exec(
            node,
            &[
                "ping",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "2",
                dst,
            ],
        )
        .status
        .success()
    }

    /// Runs iperf3 from `client` to `server_addr` (a server in `server`) for `secs`,
    /// reversed with `reverse`; returns the receiver's bits per second and the JSON.
    fn iperf(
        &mut self,
        client: &str,
        server: &str,
        server_addr: &str,
        secs: u32,
        reverse: bool,
    ) -> (f64, serde_json::Value) {
        let port = (5201 + NEXT.fetch_add(1, Ordering::Relaxed) % 500).to_string();
        let sname = format!("iperf-s-{port}");
        self.spawn(&sname, Some(server), &["iperf3", "-s", "-1", "-p", &port]);
        std::thread::sleep(Duration::from_millis(300));
        let t = secs.to_string();
        let mut args = vec!["iperf3", "-c", server_addr, "-p", &port, "-t", &t, "-J"];
        if reverse {
            args.push("-R");
        }
        let out = self.exec(client, &args);
        self.kill(&sname);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "iperf3 output: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        (bps, json)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            // Whatever still runs inside (iperf3 started by `ip netns exec`) goes first.
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn stream(id: &str, direction: &str, label: u32, peer: &str, secret: &str) -> String {
    format!(
        "[[stream]]\nid = \"{id}\"\ndirection = \"{direction}\"\nlabel = {label}\npeer = \"{peer}\"\nsecret = \"{secret}\"\n"
    )
}

/// A WebRTC tether entry: `controlling` on exactly one end, `fingerprint` the peer's.
fn tether(id: u32, peer: &str, controlling: bool, fingerprint: &str) -> String {
    format!(
        "[[tether]]\nid = {id}\npeer = \"{peer}:51820\"\nkind = \"webrtc\"\ncontrolling = {controlling}\nfingerprint = \"{fingerprint}\"\n"
    )
}

fn header(lab: &Lab, node: &str) -> String {
    format!(
        "socket = \"{}\"\nrekey_interval_s = {REKEY_S}\n",
        lab.path(&format!("{node}.sock")).display()
    )
}

/// A and B joined directly: A → B on B's label 7, B → A on A's label 8. A expects
/// `a_expects` as B's fingerprint (B's real one when `None`).
fn direct_pair_expecting(lab: &mut Lab, a_expects: Option<&str>) {
    lab.add_ns("a");
    lab.add_ns("b");
    let (ua, ub) = lab.link("a", "b", 91);
    lab.dataplane("a", 1);
    lab.dataplane("b", 2);
    let (fa, fb) = (lab.fingerprint("a"), lab.fingerprint("b"));
    let a = header(lab, "a")
        + &tether(1, &ub, true, a_expects.unwrap_or(&fb))
        + &stream(AB, "egress", 7, "100.64.0.2", SECRET_AB)
        + &stream(BA, "ingress", 8, "100.64.0.2", SECRET_BA)
        + "[[route]]\nprefix = \"100.64.0.2/32\"\nhops = [{ tether = 1, label = 7 }]\n";
    let b = header(lab, "b")
        + &tether(1, &ua, false, &fa)
        + &stream(BA, "egress", 8, "100.64.0.1", SECRET_BA)
        + &stream(AB, "ingress", 7, "100.64.0.1", SECRET_AB)
        + "[[route]]\nprefix = \"100.64.0.1/32\"\nhops = [{ tether = 1, label = 8 }]\n";
    lab.driver("a", &a);
    lab.driver("b", &b);
}

fn direct_pair(lab: &mut Lab) {
    direct_pair_expecting(lab, None);
}

#[test]
fn dataplane_a_b_ping_and_iperf3_both_directions() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new();
    direct_pair(&mut lab);
    assert!(
        lab.ping("a", "100.64.0.2", 5),
        "A cannot ping B over the overlay"
    );
    assert!(
        lab.ping("b", "100.64.0.1", 5),
        "B cannot ping A over the overlay"
    );
    // The tether's state changes reach the control side as records.
    let log = lab.log("driver-a");
    assert!(
        log.lines()
            .any(|l| l.contains("tether state") && l.contains("Up")),
        "driver A saw no tether come up:\n{log}"
    );
    let (up, _) = lab.iperf("a", "b", "100.64.0.2", 10, false);
    let (down, _) = lab.iperf("a", "b", "100.64.0.2", 10, true);
    eprintln!("A→B {:.2} Gbit/s, B→A {:.2} Gbit/s", up / 1e9, down / 1e9);
    assert!(
        up > 50e6 && down > 50e6,
        "TCP over the overlay: A→B {up} bit/s, B→A {down} bit/s"
    );
    lab.kill("driver-a");
    let snap = lab.snapshot("a");
    assert_eq!(
        snap.counter("bad_tag") + snap.counter("replay") + snap.counter("malformed_packet"),
        0,
        "{snap:?}"
    );
    assert!(snap.traffic("egress_packets") > 10_000, "{snap:?}");
    let t = &snap.workers[0].tethers[0];
    assert_eq!(
        (t.kind.as_str(), t.state.as_str()),
        ("webrtc", "up"),
        "{snap:?}"
    );
    assert_eq!(snap.counter("tether_fingerprint_mismatch"), 0, "{snap:?}");
}

#[test]
fn dataplane_tether_with_a_wrong_fingerprint_never_carries_traffic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new();
    let wrong = format!("sha-256 {}", ["5A"; 32].join(":"));
    direct_pair_expecting(&mut lab, Some(&wrong));
    assert!(
        !lab.ping("a", "100.64.0.2", 3),
        "a tether to an unexpected certificate carried traffic"
    );
    lab.kill("driver-a");
    // A malformed open on the ring is refused and counted, and changes nothing.
    {
        let mut control = attach(&lab.path("a.sock")).expect("attach");
        let bad = conflux_shared::proto::TetherOpen {
            tether: 0,
            ..Default::default()
        };
        assert!(control.workers[0].open_tether(&bad).expect("ring"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let snap = lab.snapshot("a");
    assert_eq!(snap.counter("tether_open_refused"), 1, "{snap:?}");
    assert_eq!(snap.counter("tether_fingerprint_mismatch"), 1, "{snap:?}");
    assert_eq!(snap.counter("tether_connected"), 0, "{snap:?}");
    let t = &snap.workers[0].tethers[0];
    assert_eq!((t.state.as_str(), t.tx_packets), ("closed", 0), "{snap:?}");
    lab.kill("driver-b");
    let b = lab.snapshot("b");
    assert_eq!(b.traffic("ingress_packets"), 0, "{b:?}");
}

#[test]
fn dataplane_relay_forwards_without_the_stream_key() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new();
    for n in ["a", "r", "b"] {
        lab.add_ns(n);
    }
    let (ua, ura) = lab.link("a", "r", 92);
    let (urb, ub) = lab.link("r", "b", 93);
    lab.dataplane("a", 1);
    lab.dataplane("r", 3);
    lab.dataplane("b", 2);
    let (fa, fr, fb) = (
        lab.fingerprint("a"),
        lab.fingerprint("r"),
        lab.fingerprint("b"),
    );
    // A → R (R's label 70) → B (B's label 7); B → R (R's label 80) → A (A's label 8).
    let a = header(&lab, "a")
        + &tether(1, &ura, true, &fr)
        + &stream(AB, "egress", 70, "100.64.0.2", SECRET_AB)
        + &stream(BA, "ingress", 8, "100.64.0.2", SECRET_BA)
        + "[[route]]\nprefix = \"100.64.0.2/32\"\nhops = [{ tether = 1, label = 70 }]\n";
    let r = header(&lab, "r")
        + &tether(1, &ua, false, &fa)
        + &tether(2, &ub, true, &fb)
        + "[[relay]]\nin_label = 70\ntether = 2\nout_label = 7\n"
        + "[[relay]]\nin_label = 80\ntether = 1\nout_label = 8\n";
    let b = header(&lab, "b")
        + &tether(1, &urb, false, &fr)
        + &stream(BA, "egress", 80, "100.64.0.1", SECRET_BA)
        + &stream(AB, "ingress", 7, "100.64.0.1", SECRET_AB)
        + "[[route]]\nprefix = \"100.64.0.1/32\"\nhops = [{ tether = 1, label = 80 }]\n";
    assert!(
        !r.contains("secret"),
        "the relay's configuration names no stream"
    );
    lab.driver("a", &a);
    lab.driver("r", &r);
    lab.driver("b", &b);
    assert!(lab.ping("a", "100.64.0.2", 5), "A cannot reach B through R");
    let (bps, _) = lab.iperf("a", "b", "100.64.0.2", 5, false);
    eprintln!("A→R→B {:.2} Gbit/s", bps / 1e9);
    assert!(bps > 50e6, "TCP through the relay: {bps} bit/s");

    // R's rings: never a stream install, and no key of either stream anywhere in them.
    lab.kill("driver-r");
    let snap = lab.snapshot("r");
    assert_eq!(
        snap.traffic("keys_installed"),
        0,
        "the relay was given a key: {snap:?}"
    );
    assert!(
        snap.workers
            .iter()
            .all(|w| w.egress.is_empty() && w.ingress.is_empty()),
        "{snap:?}"
    );
    assert!(snap.traffic("relayed_packets") > 10_000, "{snap:?}");
    assert!(
        snap.workers[0]
            .tethers
            .iter()
            .all(|t| t.kind == "webrtc" && t.state == "up"),
        "{snap:?}"
    );
    let gen_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / REKEY_S;
    let mut keys = Vec::new();
    for (id, secret) in [(AB, SECRET_AB), (BA, SECRET_BA)] {
        let mut s = [0u8; 32];
        hex_decode(secret, &mut s);
        let id = StreamId::from_hex(id).unwrap();
        for g in gen_now.saturating_sub(2)..=gen_now + 2 {
            keys.push(generation_key(&s, id, g).key);
        }
    }
    let memory = ring_memory(&lab.path("r.sock"));
    assert!(
        memory.len() > 100_000,
        "read {} bytes of ring memory",
        memory.len()
    );
    for k in &keys {
        assert!(
            !memory.windows(16).any(|w| w == &k[..16]),
            "a stream key is in the relay's ring memory"
        );
    }
}

#[test]
fn dataplane_traffic_continues_when_the_driver_dies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new();
    direct_pair(&mut lab);
    assert!(lab.ping("a", "100.64.0.2", 3));
    let ns_a = lab.ns("a");
    let port = "5199";
    lab.spawn("iperf-s", Some("b"), &["iperf3", "-s", "-1", "-p", port]);
    std::thread::sleep(Duration::from_millis(300));
    let mut client = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns_a,
            "iperf3",
            "-c",
            "100.64.0.2",
            "-p",
            port,
            "-t",
            "8",
            "-J",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 client");
    std::thread::sleep(Duration::from_secs(2));
    lab.kill("driver-a");
    lab.kill("driver-b");
    let mut out = String::new();
    client
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("iperf3 output");
    let _ = client.wait();
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3: {e}: {out}"));
    let intervals = json["intervals"].as_array().expect("intervals");
    let late: Vec<f64> = intervals
        .iter()
        .skip(3)
        .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
        .collect();
    assert!(late.len() >= 4, "{out}");
    assert!(
        late.iter().all(|&b| b > 10e6),
        "throughput after the drivers died: {late:?}"
    );
    assert!(
        lab.ping("a", "100.64.0.2", 3),
        "ping after the drivers died"
    );
    // A new control process attaches to the same rings and sees the installed state.
    let snap = lab.snapshot("a");
    assert_eq!(snap.workers[0].egress.len(), 1, "{snap:?}");
    assert_eq!(snap.workers[0].routes.len(), 1, "{snap:?}");
}

#[test]
fn dataplane_spoofed_inner_source_is_dropped_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new();
    direct_pair(&mut lab);
    assert!(lab.ping("a", "100.64.0.2", 2));
    // A sends from an address its stream to B does not cover.
    let ns_a = lab.ns("a");
    must(&[
        "ip",
        "-n",
        &ns_a,
        "addr",
        "add",
        "100.64.0.99/32",
        "dev",
        "cfx0",
    ]);
    let spoofed = lab.exec(
        "a",
        &[
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "100.64.0.99",
            "100.64.0.2",
        ],
    );
    assert!(!spoofed.status.success(), "a spoofed source got an answer");
    lab.kill("driver-b");
    let snap = lab.snapshot("b");
    assert!(
        snap.counter("inner_source") >= 5,
        "spoofed packets not counted: {snap:?}"
    );
    assert_eq!(
        snap.workers[0]
            .ingress
            .iter()
            .map(|s| s.spoofed)
            .sum::<u64>(),
        snap.counter("inner_source")
    );
}

fn hex_decode(s: &str, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
}

/// Every byte of every ring memfd a data plane hands to a control process.
fn ring_memory(socket: &Path) -> Vec<u8> {
    use conflux_shared::ring::fdpass::recv_fds;
    let s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut desc = [0u8; 4096];
    let hello = recv_fds(&s, &mut desc).expect("hello");
    let h: serde_json::Value =
        serde_json::from_slice(&desc[..hello.description_len]).expect("hello json");
    let mut all = Vec::new();
    for _ in 0..h["workers"].as_u64().expect("workers") {
        let handover = recv_fds(&s, &mut desc).expect("worker fds");
        for fd in handover.fds {
            let mut f = std::fs::File::from(fd);
            let _ = f.read_to_end(&mut all);
        }
    }
    all
}
