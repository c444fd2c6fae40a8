//! iperf3 tests: a one-test server and a client, their JSON report and their own CPU time.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::netns::Netns;
use super::shell::quiet;

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

/// A child process reaped with `wait4`, so its own CPU time is known; killed and reaped
/// on drop if it was not waited for.
#[derive(Debug)]
struct Reaped {
    pid: Option<libc::pid_t>,
}

impl Reaped {
    fn new(child: &std::process::Child) -> Self {
        Self {
            pid: Some(child.id() as libc::pid_t),
        }
    }

    /// Waits until the process exits, killing it at `deadline`; returns its wait status
    /// and CPU seconds (user + system).
    fn wait(&mut self, deadline: Instant) -> anyhow::Result<(i32, f64)> {
        let pid = self.pid.context("already waited for")?;
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: wait4 on our own child with valid out-pointers. It reaps the child;
            // std's `Child` for it has been dropped and will not wait again.
            let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if rc == pid {
                break;
            }
            anyhow::ensure!(
                rc == 0,
                "waiting for iperf3: {}",
                std::io::Error::last_os_error()
            );
            if Instant::now() > deadline {
                // SAFETY: kill(2) on our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.pid = None;
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok((status, secs(usage.ru_utime) + secs(usage.ru_stime)))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.pid.is_some() {
            let _ = self.wait(Instant::now());
        }
    }
}

/// A one-test iperf3 server (`iperf3 -s -1`): a fresh one per test, so a test never meets
/// a server still closing the previous one, and its CPU time is exactly that test's.
#[derive(Debug)]
pub struct Server {
    proc: Reaped,
}

impl Server {
    /// Starts the server in `ns`, logging to `log`, and waits until it listens.
    pub fn start(ns: &Netns, log: &Path) -> anyhow::Result<Self> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = ns
            .exec("iperf3")
            .args(["-s", "-1"])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting the iperf3 server")?;
        let mut server = Self {
            proc: Reaped::new(&child),
        };
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let listening = quiet(ns.exec("ss").args(["-Htln", "sport = :5201"]))?;
            if !listening.trim().is_empty() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let _ = server.proc.wait(Instant::now());
                bail!(
                    "iperf3 server not listening within 5 s (log in {})",
                    log.display()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the server to end after its test; returns its CPU seconds.
    pub fn finish(mut self) -> anyhow::Result<f64> {
        let (_, cpu) = self.proc.wait(Instant::now() + Duration::from_secs(10))?;
        Ok(cpu)
    }
}

/// An iperf3 client running in a namespace.
#[derive(Debug)]
pub struct Client {
    proc: Reaped,
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
            proc: Reaped::new(&child),
            out,
            deadline: Instant::now() + Duration::from_secs_f64(secs + 20.0),
        })
    }

    /// Waits for the client; returns its report and its own CPU seconds (user + system).
    pub fn finish(mut self) -> anyhow::Result<(Received, f64)> {
        let (status, cpu) = self.proc.wait(self.deadline)?;
        let text = std::fs::read_to_string(&self.out)?;
        let received = Received::parse(&text).with_context(|| {
            format!(
                "iperf3 client (wait status {status:#x}), report in {}",
                self.out.display()
            )
        })?;
        Ok((received, cpu))
    }
}

/// One test: a fresh server in `server_ns`, a client in `client_ns`; `during` runs while
/// the test does. Returns the report, the CPU seconds of both ends, and `during`'s result.
pub fn test<R>(
    client_ns: &Netns,
    server_ns: &Netns,
    target: Ipv4Addr,
    secs: f64,
    args: &[&str],
    out: PathBuf,
    during: impl FnOnce() -> R,
) -> anyhow::Result<(Received, f64, R)> {
    let server = Server::start(server_ns, &out.with_extension("server.log"))?;
    let client = Client::start(client_ns, target, secs, args, out)?;
    let r = during();
    let (received, client_cpu) = client.finish()?;
    let server_cpu = server.finish()?;
    Ok((received, client_cpu + server_cpu, r))
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
