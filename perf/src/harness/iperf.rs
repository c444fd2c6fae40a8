//! iperf3 clients: one run in the background, its JSON report and its own CPU time.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::netns::Netns;

/// An iperf3 report that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IperfError {
    /// The output is not JSON (iperf3 died before writing its report).
    #[error("iperf3 output is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// iperf3 reported an error of its own.
    #[error("iperf3: {0}")]
    Reported(String),
    /// A field the harness needs is missing.
    #[error("iperf3 report has no {0}")]
    Missing(&'static str),
}

/// What the receiving end of a test saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Received {
    /// Receive rate over the test.
    pub bits_per_second: f64,
    /// Bytes received.
    pub bytes: u64,
    /// Datagrams lost, in percent (UDP tests; 0 for TCP).
    pub lost_percent: f64,
}

impl Received {
    /// Reads `end.sum_received` of an `iperf3 -J` client report.
    pub fn parse(json: &str) -> Result<Self, IperfError> {
        let v: Value = serde_json::from_str(json)?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(IperfError::Reported(e.to_owned()));
        }
        let sum = v
            .pointer("/end/sum_received")
            .ok_or(IperfError::Missing("end.sum_received"))?;
        let num = |k: &'static str| {
            sum.get(k)
                .and_then(Value::as_f64)
                .ok_or(IperfError::Missing(k))
        };
        Ok(Self {
            bits_per_second: num("bits_per_second")?,
            bytes: sum
                .get("bytes")
                .and_then(Value::as_u64)
                .ok_or(IperfError::Missing("bytes"))?,
            lost_percent: sum
                .get("lost_percent")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        })
    }
}

/// An iperf3 client running in a namespace.
#[derive(Debug)]
pub struct Client {
    pid: libc::pid_t,
    out: PathBuf,
    deadline: Instant,
}

impl Client {
    /// Starts `iperf3 -c <target> -J <args>` in `ns`, its report going to `out`. It is
    /// killed if it runs `secs` + 20 s.
    pub fn start(
        ns: &Netns,
        target: Ipv4Addr,
        secs: f64,
        args: &[&str],
        out: PathBuf,
    ) -> anyhow::Result<Self> {
        let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        let child = ns
            .exec("iperf3")
            .args(["-c", &target.to_string(), "-J", "--connect-timeout", "3000"])
            .args(["-t", &format!("{secs}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3")?;
        Ok(Self {
            pid: child.id() as libc::pid_t,
            out,
            deadline: Instant::now() + Duration::from_secs_f64(secs + 20.0),
        })
    }

    /// Waits for the client; returns its report and its own CPU seconds (user + system).
    pub fn finish(self) -> anyhow::Result<(Received, f64)> {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: wait4 on our own child with valid out-pointers. It reaps the child,
            // which std's `Child` (already dropped) will not try again.
            let rc = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if rc == self.pid {
                break;
            }
            anyhow::ensure!(
                rc == 0,
                "waiting for iperf3: {}",
                std::io::Error::last_os_error()
            );
            if Instant::now() > self.deadline {
                // SAFETY: kill(2) on our unreaped child.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(10));
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
        let text = std::fs::read_to_string(&self.out)?;
        let received = Received::parse(&text).with_context(|| {
            format!(
                "iperf3 client (exit status {status:#x}), report in {}",
                self.out.display()
            )
        })?;
        Ok((received, cpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_report() {
        let j = r#"{"start":{},"end":{"sum_sent":{"bytes":5,"bits_per_second":1.0},
            "sum_received":{"bytes":154410792,"bits_per_second":410590287.3,"sender":false}}}"#;
        let r = Received::parse(j).unwrap();
        assert_eq!(r.bytes, 154_410_792);
        assert!((r.bits_per_second - 410_590_287.3).abs() < 1.0);
        assert_eq!(r.lost_percent, 0.0);
    }

    #[test]
    fn udp_report_carries_loss() {
        let j = r#"{"end":{"sum_received":{"bytes":72649200,"bits_per_second":290536658.9,
            "lost_packets":1935,"packets":62476,"lost_percent":3.0971893206991483}}}"#;
        let r = Received::parse(j).unwrap();
        assert!((r.lost_percent - 3.097).abs() < 0.001);
    }

    #[test]
    fn error_and_truncated_reports_are_rejected() {
        let e = Received::parse(r#"{"start":{},"end":{},"error":"unable to connect to server"}"#);
        assert!(matches!(e, Err(IperfError::Reported(m)) if m.contains("unable to connect")));
        assert!(matches!(
            Received::parse(r#"{"end":{}}"#),
            Err(IperfError::Missing(_))
        ));
        assert!(matches!(
            Received::parse("{\"end\":"),
            Err(IperfError::Json(_))
        ));
    }
}
