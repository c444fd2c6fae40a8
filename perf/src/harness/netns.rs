//! Network namespaces owned by one run.
//!
//! Every namespace is registered before it is created, so a signal or a panic at any point
//! removes it: removal ends every process inside it (`ip netns pids`), then deletes it,
//! which takes its veth ends and addresses along. Removal runs on drop, on SIGINT, SIGTERM
//! and SIGHUP (a watcher thread), and from the panic hook (release builds abort on panic,
//! so drops would not run).

use std::ffi::OsStr;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::shell::{Shell, quiet};

/// Namespaces created and not yet removed.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A network namespace, removed with everything inside it on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str, sh: &mut Shell) -> anyhow::Result<Self> {
        // A namespace left behind by a run that was killed outright: start clean.
        if Command::new("ip")
            .args(["netns", "pids", name])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            remove(name);
        }
        live().push(name.to_owned());
        let ns = Self {
            name: name.to_owned(),
        };
        sh.run(Command::new("ip").args(["netns", "add", name]))?;
        ns.ip(sh, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> <program>`: a command that runs inside the namespace. `ip` execs
    /// the program in place, so the child's pid is the program's.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, sh: &mut Shell, args: &[&str]) -> anyhow::Result<()> {
        sh.run(Command::new("ip").args(["-n", &self.name]).args(args))
            .map(drop)
    }

    /// Processes inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        pids(&self.name)
    }

    /// The namespace's UDP counters (`/proc/net/snmp` as seen from inside).
    pub fn udp_snmp(&self) -> anyhow::Result<UdpSnmp> {
        let text = quiet(self.exec("cat").arg("/proc/net/snmp"))?;
        UdpSnmp::parse(&text).with_context(|| format!("/proc/net/snmp in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// The UDP counters of one namespace that the report uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSnmp {
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
}

impl UdpSnmp {
    /// Reads the `Udp:` header and value lines of `/proc/net/snmp`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(head), Some(vals)) = (lines.next(), lines.next()) else {
            anyhow::bail!("no Udp: lines");
        };
        let col = head
            .split_whitespace()
            .position(|h| h == "RcvbufErrors")
            .context("no RcvbufErrors column")?;
        let v = vals
            .split_whitespace()
            .nth(col)
            .context("short Udp: value line")?;
        Ok(Self {
            rcvbuf_errors: v.parse().context("RcvbufErrors is not a number")?,
        })
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    // A poisoned list still names the namespaces to remove.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Ends every process in the namespace (SIGTERM, then SIGKILL after two seconds) and
/// deletes it.
fn remove(name: &str) {
    let signal = |sig| {
        for p in pids(name) {
            // SAFETY: kill(2) has no memory effects; a pid that has gone away gives ESRCH.
            unsafe { libc::kill(p as libc::pid_t, sig) };
        }
    };
    signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !pids(name).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    signal(libc::SIGKILL);
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    live().retain(|n| n != name);
}

/// Removes namespaces named `<prefix><hex pid>-<node>` whose run (that pid, named
/// `conflux-perf`) is gone: what a run killed outright (SIGKILL) left behind.
pub fn remove_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|r| r.split_once('-'))
            .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok())
        else {
            continue;
        };
        let alive = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "conflux-perf");
        if !alive {
            eprintln!("removing namespace {name} left by an earlier run");
            remove(name);
        }
    }
}

/// Removes every namespace this run still has.
pub fn remove_all() {
    let names = live().clone();
    for n in names {
        remove(&n);
    }
}

/// The signal that asked this run to stop, 0 until one did.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only an atomic store: the one thing a handler may safely do here.
    STOP_SIGNAL.store(sig, Ordering::Relaxed);
}

/// Makes SIGINT, SIGTERM, SIGHUP and panics remove this run's namespaces before the
/// process ends. A handler (reset to default in children at exec, unlike a blocked mask)
/// records the signal; a watcher thread does the removal.
pub fn install_cleanup() -> anyhow::Result<()> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        remove_all();
        prev(info);
    }));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler is an `extern "C"` function that only stores to an atomic.
        let prev = unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
        anyhow::ensure!(
            prev != libc::SIG_ERR,
            "installing a handler for signal {sig}"
        );
    }
    thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            loop {
                let sig = STOP_SIGNAL.load(Ordering::Relaxed);
                if sig != 0 {
                    eprintln!("conflux-perf: signal {sig}: removing namespaces");
                    remove_all();
                    std::process::exit(128 + sig);
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
        .context("starting the signal watcher")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_rcvbuf_errors_found_by_column_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            Udp: 234774 0 23905 31319 23905 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            UdpLite: 0 0 0 0 7 0\n";
        assert_eq!(UdpSnmp::parse(text).unwrap().rcvbuf_errors, 23905);
    }

    #[test]
    fn snmp_without_udp_lines_is_an_error() {
        assert!(UdpSnmp::parse("Ip: Forwarding\nIp: 1\n").is_err());
        assert!(UdpSnmp::parse("Udp: InDatagrams\nUdp: 3\n").is_err());
        assert!(UdpSnmp::parse("Udp: RcvbufErrors\nUdp: x\n").is_err());
    }
}
