//! One repetition of one system: a fresh topology, the tunnel, every figure, clean-up.
//!
//! Order within a repetition: idle ping; TCP with one stream (CPU accounted over it); TCP
//! with four streams (memory sampled midway); ping under a one-stream TCP load; the UDP
//! loss search. Receive-buffer drops are counted over the TCP tests and the loaded ping,
//! where only the tunnel itself uses UDP.

use std::net::Ipv4Addr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::daemon::Daemon;
use super::iperf::{self, Received};
use super::ping::{self, Latency};
use super::procfs::{KernelTicks, ProcStat, clk_tck, load_average, rss_kib};
use super::results::{CpuPerGb, NodeRss, Params, Sample, UdpTrial};
use super::shell::Shell;
use super::systems::{Env, System};
use super::topology::Topology;

/// Processes the harness itself runs inside the namespaces; all others are the system's.
const HARNESS_TOOLS: [&str; 4] = ["iperf3", "ping", "ip", "cat"];

/// How long a started tunnel may take to carry its first ping.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// One repetition's figures and the commands that made its network and its tunnel.
#[derive(Debug)]
pub struct Repetition {
    /// The figures.
    pub sample: Sample,
    /// Commands that made the namespaces and links.
    pub topology_commands: Vec<String>,
    /// Commands that started the system.
    pub system_commands: Vec<String>,
}

/// Measures `sys` once.
pub fn repetition(
    sys: &dyn System,
    env: &Env,
    params: &Params,
    rep: usize,
) -> anyhow::Result<Repetition> {
    let load_avg = load_average().unwrap_or(f64::NAN);
    let dir = env.work.join(format!("{}-{rep}", slug(&sys.name())));
    std::fs::create_dir_all(&dir)?;
    let mut topo_sh = Shell::new();
    let topo = Topology::create(sys.shape(), &env.tag, &mut topo_sh)?;
    let mut sh = Shell::new();
    let mut tunnel = sys.start(&topo, env, &dir, &mut sh)?;
    let target = tunnel.target;

    let deadline = Instant::now() + READY_WITHIN;
    while !ping::reachable(&topo.a, target) {
        for d in &mut tunnel.daemons {
            d.check_running()?;
        }
        if Instant::now() > deadline {
            bail!("{target} not reachable from A within {READY_WITHIN:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let commands = sh.into_log();

    let interval = Duration::from_secs_f64(params.ping_interval_ms / 1e3);
    let ping_idle = ping::ping(&topo.a, target, params.ping_count, interval)?;

    let drops_before = rcvbuf_errors(&topo)?;
    let (tcp1, cpu, ()) = tcp(&topo, target, params.tcp_secs, 1, &dir, || ())?;
    let half = Duration::from_secs_f64(params.tcp_secs / 2.0);
    let (tcp4, _, rss) = tcp(&topo, target, params.tcp_secs, 4, &dir, || {
        thread::sleep(half);
        node_rss(&topo)
    })?;
    let ping_loaded = loaded_ping(&topo, target, params, interval, &dir)?;
    let drops = rcvbuf_errors(&topo)?.saturating_sub(drops_before);

    let (udp_gbps, udp_trials) = udp_search(&topo, target, tcp1.bits_per_second, params, &dir)?;
    for d in &mut tunnel.daemons {
        d.check_running()?;
    }
    tunnel.daemons.iter().for_each(Daemon::terminate);
    drop(tunnel);
    drop(topo);
    Ok(Repetition {
        sample: Sample {
            rep,
            tcp1_gbps: tcp1.bits_per_second / 1e9,
            tcp4_gbps: tcp4.bits_per_second / 1e9,
            udp_gbps,
            ping_idle,
            ping_loaded,
            cpu,
            rss,
            rcvbuf_errors: drops,
            load_avg,
            udp_trials,
        },
        topology_commands: topo_sh.into_log(),
        system_commands: commands,
    })
}

/// A file-name form of a system's name.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The system's processes, by node.
fn system_pids(topo: &Topology) -> Vec<(&'static str, u32)> {
    topo.namespaces()
        .flat_map(|(node, ns)| ns.pids().into_iter().map(move |p| (node, p)))
        .filter(|&(_, p)| {
            ProcStat::read(p).is_some_and(|s| !HARNESS_TOOLS.contains(&s.comm.as_str()))
        })
        .collect()
}

fn ticks(pids: &[(&str, u32)]) -> u64 {
    pids.iter()
        .filter_map(|&(_, p)| ProcStat::read(p))
        .map(|s| s.ticks)
        .sum()
}

fn node_rss(topo: &Topology) -> Vec<NodeRss> {
    let pids = system_pids(topo);
    topo.namespaces()
        .filter_map(|(node, _)| {
            let kib: u64 = pids
                .iter()
                .filter(|&&(n, _)| n == node)
                .filter_map(|&(_, p)| rss_kib(p))
                .sum();
            (kib > 0).then(|| NodeRss {
                node: node.to_owned(),
                mib: kib as f64 / 1024.0,
            })
        })
        .collect()
}

fn rcvbuf_errors(topo: &Topology) -> anyhow::Result<u64> {
    topo.namespaces()
        .map(|(_, ns)| ns.udp_snmp().map(|s| s.rcvbuf_errors))
        .sum()
}

/// A TCP test with `streams` streams; `during` runs while it does. CPU per GB is
/// accounted over the test.
fn tcp<R>(
    topo: &Topology,
    target: Ipv4Addr,
    secs: f64,
    streams: usize,
    dir: &Path,
    during: impl FnOnce() -> R,
) -> anyhow::Result<(Received, CpuPerGb, R)> {
    let pids = system_pids(topo);
    let (t0, k0) = (ticks(&pids), KernelTicks::now()?);
    let out = dir.join(format!("tcp-p{streams}.json"));
    let args = ["-P", &streams.to_string()];
    let (received, iperf_cpu, r) = iperf::test(&topo.a, &topo.b, target, secs, &args, out, during)
        .with_context(|| format!("TCP -P{streams}"))?;
    let (t1, k1) = (ticks(&pids), KernelTicks::now()?);
    let tck = clk_tck() as f64;
    let gb = (received.bytes as f64 / 1e9).max(1e-9);
    let cpu = CpuPerGb {
        tunnel: t1.saturating_sub(t0) as f64 / tck / gb,
        kernel: k1.since(k0) as f64 / tck / gb,
        iperf: iperf_cpu / gb,
    };
    Ok((received, cpu, r))
}

/// Ping while a one-stream TCP test runs (started a second before, so TCP has ramped).
fn loaded_ping(
    topo: &Topology,
    target: Ipv4Addr,
    params: &Params,
    interval: Duration,
    dir: &Path,
) -> anyhow::Result<Latency> {
    let ping_secs = params.ping_count as f64 * interval.as_secs_f64();
    let out = dir.join("tcp-load.json");
    let (_, _, latency) = iperf::test(
        &topo.a,
        &topo.b,
        target,
        ping_secs + 2.5,
        &["-P", "1"],
        out,
        || {
            thread::sleep(Duration::from_secs(1));
            ping::ping(&topo.a, target, params.ping_count, interval)
        },
    )
    .context("TCP load under ping")?;
    latency
}

/// The highest UDP receive rate with loss under the limit: start at the TCP rate; while no
/// rate is under the limit, step down to 90 % of what got through (at most 70 % of the rate
/// tried); double while the loss stays under it; then bisect (geometrically) between the
/// best rate under the limit and the lowest over it. Stops early when the sender cannot
/// reach the rate asked: then the sender, not the path, is the limit.
fn udp_search(
    topo: &Topology,
    target: Ipv4Addr,
    start_bps: f64,
    params: &Params,
    dir: &Path,
) -> anyhow::Result<(f64, Vec<UdpTrial>)> {
    let mut rate = start_bps.max(50e6);
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut best = 0.0_f64;
    let mut trials = Vec::new();
    for step in 0..params.udp_steps {
        let out = dir.join(format!("udp-{step}.json"));
        // A 4 MiB socket buffer at both iperf3 ends, so drops are the tunnel's, not the
        // measuring tool's (with the default buffer iperf3 alone loses datagrams on veth).
        let args = [
            "-u",
            "-b",
            &format!("{rate:.0}"),
            "-l",
            &params.udp_len.to_string(),
            "-w",
            "4M",
        ];
        let (r, _, ()) = iperf::test(
            &topo.a,
            &topo.b,
            target,
            params.udp_trial_secs,
            &args,
            out,
            || (),
        )
        .context("UDP trial")?;
        trials.push(UdpTrial {
            offered_gbps: rate / 1e9,
            received_gbps: r.bits_per_second / 1e9,
            lost_percent: r.lost_percent,
        });
        if r.lost_percent < params.udp_max_loss_percent {
            best = best.max(r.bits_per_second);
            lo = Some(rate);
            if r.bits_per_second < 0.9 * rate * (1.0 - r.lost_percent / 100.0) {
                break;
            }
            rate = hi.map_or(rate * 2.0, |h| (rate * h).sqrt());
        } else {
            hi = Some(rate);
            // Without a good rate yet, the rate that got through (less a margin) is a
            // better next guess than halving when the first guess was far too high.
            let down = (rate * 0.7).min(r.bits_per_second * 0.9).max(1e6);
            rate = lo.map_or(down, |l| (rate * l).sqrt());
        }
    }
    Ok((best / 1e9, trials))
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("boringtun --threads 1"), "boringtun-threads-1");
        assert_eq!(slug("Nebula (AES)"), "nebula-aes");
        assert_eq!(slug("Conflux relayed (A→R→B)"), "conflux-relayed-a-r-b");
    }
}
