//! Control-plane mesh convergence on loopback: nats-server (configured by `guardian
//! nats-config`), Guardian, and `nodes` `conflux` control processes with no data plane
//! (`dataplane = "none"`: every allowed pair sets up its streams at once),
//! all in one realm with one shared taint, so every pair may talk and sets up both of its
//! streams. The clock starts just before the first `conflux` is started; the harness polls
//! every node's `conflux-ctl status` until each reports all other nodes as peers and two
//! streams with each, then takes the times from what the nodes recorded (each stream's
//! set-up time, each node's registration time), so polling does not blur them. Every node
//! registers with Guardian (fresh keys, a certificate, NATS credentials) inside that time,
//! as at any start.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::RngCore;
use serde_json::{Value, json};

use super::MeshConvergence;
use crate::harness::daemon::Daemon;
use crate::harness::shell::{Shell, quiet};
use crate::harness::systems::Env;

/// How long the whole mesh may take before the measurement is given up.
const LIMIT: Duration = Duration::from_secs(180);
/// Between two rounds of `conflux-ctl status` over the nodes still converging.
const POLL: Duration = Duration::from_millis(100);
const REALM: &str = "scale";

/// A free TCP port on loopback (bound, read, released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            bail!("no {what} within {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Guardian's admin API.
struct Admin {
    http: reqwest::blocking::Client,
    url: String,
    token: String,
}

impl Admin {
    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .with_context(|| format!("Guardian {path}"))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        anyhow::ensure!(status.is_success(), "Guardian {path}: {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// What the harness knows of one node.
struct NodeState {
    socket: PathBuf,
    /// When it was started, from the first start.
    spawned: Duration,
    /// When polling first saw it complete.
    converged: Option<Duration>,
    last: Value,
}

/// `conflux-ctl --json <what>` of a node, when it answers.
fn ctl_json(ctl: &Path, socket: &Path, what: &str) -> Option<Value> {
    if !socket.exists() {
        return None;
    }
    let out = quiet(
        Command::new(ctl)
            .arg("--socket")
            .arg(socket)
            .args(["--json", what]),
    )
    .ok()?;
    serde_json::from_str(&out).ok()
}

fn count(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// Starts the realm and `nodes` control processes, and times the mesh.
pub fn measure(
    env: &Env,
    dir: &Path,
    nodes: usize,
    sh: &mut Shell,
) -> anyhow::Result<MeshConvergence> {
    anyhow::ensure!(
        (2..=200).contains(&nodes),
        "{nodes} nodes: between 2 and 200"
    );
    let bin = |name: &str| env.control_bin_dir.join(name);
    let (guardian, conflux, ctl) = (bin("guardian"), bin("conflux"), bin("conflux-ctl"));
    let work = dir.join("mesh");
    std::fs::create_dir_all(&work)?;

    let nats_dir = work.join("nats");
    let nats_port = free_port()?;
    sh.run(
        Command::new(&guardian)
            .args(["nats-config", "--dir"])
            .arg(&nats_dir)
            .args(["--listen", &format!("127.0.0.1:{nats_port}")]),
    )?;
    let mut daemons = Vec::new();
    let mut cmd = Command::new("nats-server");
    cmd.arg("-c").arg(nats_dir.join("nats-server.conf"));
    daemons.push(Daemon::spawn(sh, "nats-server", &mut cmd, &work)?);
    wait_until("nats-server listening", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", nats_port)).is_ok()
    })?;

    let mut secret = [0u8; 16];
    rand::rng().fill_bytes(&mut secret);
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    sh.alias(token.clone(), "$ADMIN_TOKEN");
    let guardian_port = free_port()?;
    let guardian_url = format!("http://127.0.0.1:{guardian_port}");
    let mut cmd = Command::new(&guardian);
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{guardian_port}")])
        .arg("--data-dir")
        .arg(work.join("guardian"))
        .args(["--nats-url", &format!("nats://127.0.0.1:{nats_port}")])
        .arg("--nats-dir")
        .arg(&nats_dir)
        .env("GUARDIAN_ADMIN_TOKEN", &token)
        .env("RUST_LOG", "warn");
    sh.note("GUARDIAN_ADMIN_TOKEN=$ADMIN_TOKEN in the environment of guardian serve");
    daemons.push(Daemon::spawn(sh, "guardian", &mut cmd, &work)?);
    let admin = Admin {
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?,
        url: guardian_url.clone(),
        token,
    };
    wait_until("Guardian /healthz", Duration::from_secs(30), || {
        admin
            .http
            .get(format!("{guardian_url}/healthz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    })?;
    admin.post(
        "/v1/realms",
        json!({ "name": REALM, "subnet": "10.77.0.0/24" }),
    )?;
    sh.note(format!(
        "POST /v1/realms {{name: {REALM}, subnet: 10.77.0.0/24}}; one single-use \
         registration token per node (POST /v1/realms/{REALM}/tokens)"
    ));

    let mut configs = Vec::new();
    let mut states = Vec::new();
    for i in 0..nodes {
        let home = work.join(format!("n{i:03}"));
        std::fs::create_dir_all(&home)?;
        let v = admin.post(
            &format!("/v1/realms/{REALM}/tokens"),
            json!({ "expires_in_secs": 3600, "uses": 1 }),
        )?;
        let reg = v["token"]
            .as_str()
            .context("no token in Guardian's answer")?;
        let socket = home.join("conflux.sock");
        let config = home.join("conflux.toml");
        // Default timings (presence every 5 s): what an operator gets. Control plane only:
        // no data plane, streams to every allowed peer.
        std::fs::write(
            &config,
            format!(
                "guardian_url = {guardian_url:?}\nregistration_token = {reg:?}\n\
                 nats_urls = [\"nats://127.0.0.1:{nats_port}\"]\ndata_dir = {:?}\n\
                 api_socket = {socket:?}\ntaints = [\"mesh\"]\ndataplane = \"none\"\n",
                home.join("data"),
            ),
        )?;
        configs.push(config);
        states.push(NodeState {
            socket,
            spawned: Duration::ZERO,
            converged: None,
            last: Value::Null,
        });
    }
    sh.note(format!(
        "write $WORK/mesh/n000..n{:03}/conflux.toml (guardian_url, registration_token, \
         nats_urls, data_dir, api_socket, taints = [\"mesh\"], dataplane = \"none\"; \
         default timings)",
        nodes - 1
    ));

    let t0 = Instant::now();
    let t0_unix_ms = unix_ms();
    for (i, config) in configs.iter().enumerate() {
        let mut cmd = Command::new(&conflux);
        cmd.arg("--config").arg(config).env("RUST_LOG", "warn");
        states[i].spawned = t0.elapsed();
        daemons.push(Daemon::spawn(
            sh,
            &format!("conflux-{i:03}"),
            &mut cmd,
            &work,
        )?);
    }
    let spawned = t0.elapsed();
    let want_peers = (nodes - 1) as u64;
    while states.iter().any(|s| s.converged.is_none()) {
        for d in &mut daemons {
            d.check_running()?;
        }
        if t0.elapsed() > LIMIT {
            let stuck: Vec<String> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| s.converged.is_none())
                .map(|(i, s)| {
                    format!(
                        "n{i:03}: {} peers, {} streams",
                        count(&s.last, "peers"),
                        count(&s.last, "streams")
                    )
                })
                .collect();
            bail!("mesh not complete after {LIMIT:?}: {}", stuck.join("; "));
        }
        for s in states.iter_mut().filter(|s| s.converged.is_none()) {
            let Some(v) = ctl_json(&ctl, &s.socket, "status") else {
                continue;
            };
            if count(&v, "peers") == want_peers && count(&v, "streams") == 2 * want_peers {
                s.converged = Some(t0.elapsed());
            }
            s.last = v;
        }
        thread::sleep(POLL);
    }
    let detected = t0.elapsed();
    // Once every node is done, read what each recorded itself: its registration time, when
    // each of its streams came up (unix ms, one clock for all), the handshakes' round trips
    // and its counters. Polling only gates; these give the times.
    let mut ignored: BTreeMap<String, u64> = BTreeMap::new();
    let (mut initiated, mut answered) = (0, 0);
    let mut registered = Vec::new();
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    let mut round_trips_us = Vec::new();
    for s in &states {
        let v =
            ctl_json(&ctl, &s.socket, "status").context("a converged node stopped answering")?;
        initiated += count(&v, "handshakes_initiated");
        answered += count(&v, "handshakes_answered");
        if let Some(m) = v.get("ignored").and_then(Value::as_object) {
            for (k, n) in m {
                *ignored.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        registered.push(s.spawned.as_secs_f64() + count(&v, "registration_ms") as f64 / 1e3);
        let streams = ctl_json(&ctl, &s.socket, "streams").context("a node's streams")?;
        let streams = streams
            .get("streams")
            .and_then(Value::as_array)
            .context("no streams in conflux-ctl's answer")?;
        anyhow::ensure!(
            streams.len() as u64 == 2 * want_peers,
            "{} streams after convergence",
            streams.len()
        );
        let at: Vec<f64> = streams
            .iter()
            .map(|x| count(x, "established_unix_ms").saturating_sub(t0_unix_ms) as f64 / 1e3)
            .collect();
        firsts.push(at.iter().copied().fold(f64::INFINITY, f64::min));
        lasts.push(at.iter().copied().fold(0.0, f64::max));
        round_trips_us.extend(
            streams
                .iter()
                .filter(|x| x.get("direction").and_then(Value::as_str) == Some("out"))
                .map(|x| count(x, "handshake_us")),
        );
    }
    for d in &daemons {
        d.terminate();
    }
    round_trips_us.sort_unstable();
    let pick = |q: f64| {
        let i = ((round_trips_us.len() as f64 * q).ceil() as usize).saturating_sub(1);
        round_trips_us.get(i).copied().unwrap_or(0) as f64 / 1e3
    };
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(MeshConvergence {
        nodes,
        spawn_secs: spawned.as_secs_f64(),
        registered_secs: max(&registered),
        first_stream_secs: min(&firsts),
        first_converged_secs: min(&lasts),
        converged_secs: max(&lasts),
        detected_secs: detected.as_secs_f64(),
        handshake_p50_ms: pick(0.5),
        handshake_max_ms: pick(1.0),
        handshakes_initiated: initiated,
        handshakes_answered: answered,
        ignored,
        poll_ms: POLL.as_millis() as u64,
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
