//! Memory per idle stream: one `conflux-dataplane run` (one worker) in a namespace of its
//! own, and this process attached to it as a control process would be, installing one
//! tether and, per peer, an egress stream, an ingress stream and a route to the peer's
//! overlay address, through the worker's command ring. The data plane's resident memory is
//! read from `/proc` before and after; a fresh attach's snapshot confirms that every entry
//! is installed.
//!
//! Streams go in before routes, as the static driver does: installing a route looks up its
//! stream among those installed, and installing an egress stream re-links every route.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use conflux_dataplane::control::client::{Attached, attach};
use conflux_dataplane::control::snapshot::Snapshot;
use conflux_dataplane::counters::monotonic_ns;
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;
use conflux_shared::wire::data::KeyEpoch;
use conflux_shared::wire::record::{
    Direction, InstallRouteBody, InstallStreamBody, InstallTetherBody, IpPrefix, NextHop,
    RecordBody, RingRecord,
};
use rand::RngCore;

use super::{Phase, StreamMemory};
use crate::harness::daemon::Daemon;
use crate::harness::netns::Netns;
use crate::harness::procfs;
use crate::harness::shell::Shell;
use crate::harness::systems::Env;

const TETHER: u32 = 1;
/// Labels this node chose for its ingress streams start here.
const INGRESS_LABEL: u32 = 1_000;
/// First-hop labels of the egress streams start here.
const EGRESS_LABEL: u32 = 1_000_000;
/// Key lifetime given with every install: longer than any measurement.
const KEY_LIFETIME: Duration = Duration::from_secs(3600);
/// How long the data plane may take to apply everything.
const APPLY_LIMIT: Duration = Duration::from_secs(120);

/// The overlay address of peer `i` (10.100.0.0/16, from 10.100.0.1).
fn peer_addr(i: usize) -> Ipv4Addr {
    let n = i as u32 + 1;
    Ipv4Addr::new(10, 100, (n >> 8) as u8, n as u8)
}

/// Installs `peers` streams each way with routes into a fresh data plane and measures its
/// memory. Commands run go to `sh`.
pub fn measure(
    env: &Env,
    dir: &Path,
    peers: usize,
    sh: &mut Shell,
) -> anyhow::Result<StreamMemory> {
    anyhow::ensure!(
        (1..=60_000).contains(&peers),
        "{peers} peers: between 1 and 60,000"
    );
    let ns = Netns::create(&format!("{}-s", env.tag), sh)?;
    let sock = dir.join("dataplane-scale.sock");
    let bin = env.bin_dir.join("conflux-dataplane");
    let mut cmd = ns.exec(&bin);
    cmd.args(["run", "--tun", &env.iface('c', 's')])
        .args(["--address", "10.98.0.1/24"])
        .args(["--listen", "0.0.0.0:51820"])
        .args(["--workers", "1", "--no-pin"])
        .arg("--socket")
        .arg(&sock);
    let mut dp = Daemon::spawn(sh, "dataplane-scale", &mut cmd, dir)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        dp.check_running()?;
        anyhow::ensure!(Instant::now() < deadline, "no control socket within 10 s");
        thread::sleep(Duration::from_millis(20));
    }
    let pid = dp.pid();
    let mut attached = attach(&sock).context("attaching to the data plane")?;
    anyhow::ensure!(
        attached.workers.len() == 1,
        "{} workers (asked for one)",
        attached.workers.len()
    );
    // The first attach's snapshot was built before this reading, so its buffers are
    // already part of the baseline.
    let before = Rss::settled(pid)?;
    sh.note(format!(
        "attach to $WORK/dataplane-scale.sock; push 1 tether, {peers} egress streams, {peers} \
         ingress streams, {peers} routes (10.100.0.0/16, one /32 each) through the command \
         ring, waiting for the worker to drain it after each kind"
    ));
    let far = SocketAddr::from(([10, 99, 0, 2], 51820));
    push(
        &mut attached,
        &encode(&InstallTetherBody::new(TETHER, far))?,
    )?;
    let started = Instant::now();
    let mut phases = Vec::new();
    for kind in [Kind::Egress, Kind::Ingress, Kind::Routes] {
        let t = Instant::now();
        install(&mut attached, kind, peers)?;
        drained(&mut attached, &mut dp)?;
        let rss = Rss::settled(pid)?;
        phases.push(Phase {
            what: kind.name().into(),
            entries: peers,
            rss_kib: rss.total_kib,
            anon_kib: rss.anon_kib,
            secs: t.elapsed().as_secs_f64(),
        });
    }
    let applied = started.elapsed();
    drop(attached);
    let snapshot = snapshot(&sock, &mut dp)?;
    let with_snapshot = Rss::settled(pid)?;
    let w = snapshot
        .workers
        .first()
        .context("a snapshot with no worker")?;
    Ok(StreamMemory {
        peers,
        egress_installed: w.egress.len(),
        ingress_installed: w.ingress.len(),
        routes_installed: w.routes.iter().filter(|r| r.has_stream).count(),
        records_applied: snapshot.traffic("records_applied"),
        rss_before_kib: before.total_kib,
        anon_before_kib: before.anon_kib,
        phases,
        rss_after_snapshot_kib: with_snapshot.total_kib,
        apply_secs: applied.as_secs_f64(),
    })
}

/// What one step installs.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Egress,
    Ingress,
    Routes,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Egress => "egress streams",
            Kind::Ingress => "ingress streams",
            Kind::Routes => "routes",
        }
    }
}

/// Resident memory of one process, split as `/proc/<pid>/status` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rss {
    total_kib: u64,
    anon_kib: u64,
}

impl Rss {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        Ok(Self {
            total_kib: procfs::parse_vm_rss(&status).context("no VmRSS")?,
            anon_kib: procfs::parse_status_kib(&status, "RssAnon:").context("no RssAnon")?,
        })
    }

    /// The first of three readings 200 ms apart that agree (the worker may still be
    /// freeing or touching memory right after a change), or the last one after 5 s.
    fn settled(pid: u32) -> anyhow::Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = Self::read(pid)?;
        let mut same = 0;
        while same < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
            let now = Self::read(pid)?;
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        Ok(last)
    }
}

fn push(a: &mut Attached, rec: &RingRecord) -> anyhow::Result<()> {
    let ring = &mut a.workers[0].commands;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ring.push(rec).context("command ring")? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the worker's command ring stayed full for 30 s");
        }
        let _ = ring.wait_for_space(1, Duration::from_millis(10));
    }
}

fn encode<B: RecordBody>(b: &B) -> anyhow::Result<RingRecord> {
    RingRecord::encode(b).map_err(|e| anyhow::anyhow!("encoding a record: {e}"))
}

fn install(a: &mut Attached, kind: Kind, peers: usize) -> anyhow::Result<()> {
    let expires = monotonic_ns() + KEY_LIFETIME.as_nanos() as u64;
    let mut rng = rand::rng();
    for i in 0..peers {
        let (direction, label) = match kind {
            Kind::Egress => (Direction::Egress, EGRESS_LABEL),
            Kind::Ingress => (Direction::Ingress, INGRESS_LABEL),
            Kind::Routes => {
                let prefix = IpPrefix::new(IpAddr::V4(peer_addr(i)), 32)
                    .map_err(|e| anyhow::anyhow!("prefix: {e}"))?;
                let hop = NextHop::new(TETHER, EGRESS_LABEL + i as u32, 1);
                let body = InstallRouteBody::forward(prefix, &[hop])
                    .map_err(|e| anyhow::anyhow!("route: {e}"))?;
                push(a, &encode(&body)?)?;
                continue;
            }
        };
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let mut key = StreamKey {
            key: [0; 32],
            nonce_base: [0; 12],
        };
        rng.fill_bytes(&mut key.key);
        rng.fill_bytes(&mut key.nonce_base);
        let mut rec = encode(&InstallStreamBody::new(
            StreamId(id),
            direction,
            0,
            KeyEpoch::Even,
            label + i as u32,
            expires,
            IpAddr::V4(peer_addr(i)),
            &key,
        ))?;
        let r = push(a, &rec);
        rec.wipe();
        r?;
    }
    Ok(())
}

/// Waits until the worker has taken every record from its ring (it applies each as it
/// takes it).
fn drained(a: &mut Attached, dp: &mut Daemon) -> anyhow::Result<()> {
    let deadline = Instant::now() + APPLY_LIMIT;
    while a.workers[0].commands.pending().context("command ring")? > 0 {
        dp.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker left records in its ring for {APPLY_LIMIT:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A fresh attach's snapshot (the previous control process has just left, and only one
/// may be attached at a time).
fn snapshot(sock: &Path, dp: &mut Daemon) -> anyhow::Result<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        dp.check_running()?;
        match attach(sock) {
            Ok(a) => return Ok(a.snapshot),
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e).context("re-attaching for a snapshot"),
        }
    }
}
