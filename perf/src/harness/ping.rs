//! Round-trip latency with `ping` at a short interval: every reply's time, then p50/p99.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use super::netns::Netns;
use super::shell::quiet;
use super::stats::quantile;

/// Latency figures of one ping series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Median round trip, ms.
    pub p50_ms: f64,
    /// 99th-percentile round trip, ms.
    pub p99_ms: f64,
    /// Replies received.
    pub samples: usize,
    /// Requests without a reply.
    pub lost: usize,
}

impl Latency {
    /// Figures from `ping`'s output for `sent` requests; `None` without any reply.
    pub fn from_output(text: &str, sent: usize) -> Option<Self> {
        let mut rtts = parse_rtts(text);
        rtts.sort_by(f64::total_cmp);
        Some(Self {
            p50_ms: quantile(&rtts, 0.50)?,
            p99_ms: quantile(&rtts, 0.99)?,
            samples: rtts.len(),
            lost: sent.saturating_sub(rtts.len()),
        })
    }
}

/// The `time=<ms>` of every reply line, duplicates left out.
pub fn parse_rtts(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.contains("(DUP!)"))
        .filter_map(|l| {
            l.split_once(" time=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Sends `count` echo requests from `ns` to `target`, one every `interval`.
pub fn ping(
    ns: &Netns,
    target: Ipv4Addr,
    count: usize,
    interval: Duration,
) -> anyhow::Result<Latency> {
    let out = ns
        .exec("ping")
        .args([
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            &format!("{:.3}", interval.as_secs_f64()),
            "-W",
            "1",
            &target.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .context("starting ping")?;
    // Exit status 1 means some replies were missing; those that came still count.
    if !matches!(out.status.code(), Some(0 | 1)) {
        anyhow::bail!(
            "ping: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Latency::from_output(&text, count).context("no ping replies")
}

/// Whether a single ping from `ns` to `target` is answered within a second.
pub fn reachable(ns: &Netns, target: Ipv4Addr) -> bool {
    quiet(
        ns.exec("ping")
            .args(["-n", "-c", "1", "-W", "1", &target.to_string()]),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_and_losses_counted() {
        let text = "PING 10.98.0.2 (10.98.0.2) 56(84) bytes of data.\n\
            64 bytes from 10.98.0.2: icmp_seq=1 ttl=64 time=0.296 ms\n\
            64 bytes from 10.98.0.2: icmp_seq=2 ttl=64 time=70.3 ms\n\
            64 bytes from 10.98.0.2: icmp_seq=4 ttl=64 time=0.110 ms\n\
            64 bytes from 10.98.0.2: icmp_seq=4 ttl=64 time=0.120 ms (DUP!)\n\
            \n--- 10.98.0.2 ping statistics ---\n\
            4 packets transmitted, 3 received, 25% packet loss, time 6ms\n\
            rtt min/avg/max/mdev = 0.110/23.6/70.3/33.0 ms\n";
        assert_eq!(parse_rtts(text), vec![0.296, 70.3, 0.110]);
        let l = Latency::from_output(text, 4).unwrap();
        assert_eq!((l.p50_ms, l.p99_ms, l.samples, l.lost), (0.296, 70.3, 3, 1));
    }

    #[test]
    fn no_replies_gives_no_figures() {
        assert_eq!(
            Latency::from_output(
                "From 10.98.0.1 icmp_seq=1 Destination Host Unreachable\n",
                1
            ),
            None
        );
    }
}
