//! CPU time and memory as the kernel reports them in `/proc`.

use std::fs;

/// A `/proc` file that does not have the expected shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {file}: {what}")]
pub struct ProcError {
    file: &'static str,
    what: &'static str,
}

fn malformed(file: &'static str, what: &'static str) -> ProcError {
    ProcError { file, what }
}

/// Clock ticks per second, the unit of the CPU times in `/proc`.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: the task is a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/<pid>/stat` the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (at most 15 bytes).
    pub comm: String,
    /// The task's `PF_*` flags.
    pub flags: u64,
    /// User plus system CPU time of all the process's threads, in clock ticks.
    pub ticks: u64,
}

impl ProcStat {
    /// Parses one `/proc/<pid>/stat` line. The command name may hold spaces and
    /// parentheses, so it runs to the last `)`.
    pub fn parse(text: &str) -> Result<Self, ProcError> {
        let e = |w| malformed("/proc/<pid>/stat", w);
        let open = text.find('(').ok_or_else(|| e("no '('"))?;
        let close = text.rfind(')').ok_or_else(|| e("no ')'"))?;
        let comm = text.get(open + 1..close).ok_or_else(|| e("bad name"))?;
        // After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
        let field = |i: usize| -> Result<u64, ProcError> {
            rest.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| e("missing or non-numeric field"))
        };
        Ok(Self {
            comm: comm.to_owned(),
            flags: field(6)?,
            ticks: field(11)? + field(12)?,
        })
    }

    /// Reads `/proc/<pid>/stat`; `None` once the process has gone.
    pub fn read(pid: u32) -> Option<Self> {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| Self::parse(&t).ok())
    }

    /// Whether this is a kernel thread.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| parse_vm_rss(&t))
}

/// The `VmRSS:` value of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmRSS:")
}

/// A `<field> <n> kB` value of a `/proc/<pid>/status` text (`field` with its colon), in KiB.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time the kernel spends on its own account, machine-wide, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelTicks {
    /// Hard and soft interrupt time (`irq` + `softirq` of `/proc/stat`'s `cpu` line);
    /// packet receive and veth forwarding run here, also inside `ksoftirqd`.
    pub interrupts: u64,
    /// Time of kernel threads other than `ksoftirqd` (already in `interrupts`): the
    /// workqueues where an in-kernel tunnel encrypts.
    pub threads: u64,
}

impl KernelTicks {
    /// Reads the machine's current figures.
    pub fn now() -> Result<Self, ProcError> {
        let stat =
            fs::read_to_string("/proc/stat").map_err(|_| malformed("/proc/stat", "unreadable"))?;
        let interrupts = parse_interrupt_ticks(&stat)?;
        let mut threads = 0;
        if let Ok(dir) = fs::read_dir("/proc") {
            for ent in dir.flatten() {
                let Some(pid) = ent.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if let Some(s) = ProcStat::read(pid)
                    && s.is_kernel_thread()
                    && !s.comm.starts_with("ksoftirqd")
                {
                    threads += s.ticks;
                }
            }
        }
        Ok(Self {
            interrupts,
            threads,
        })
    }

    /// Ticks spent between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> u64 {
        self.interrupts.saturating_sub(earlier.interrupts)
            + self.threads.saturating_sub(earlier.threads)
    }
}

/// `irq` + `softirq` of the aggregate `cpu` line of `/proc/stat`.
pub fn parse_interrupt_ticks(stat: &str) -> Result<u64, ProcError> {
    let e = |w| malformed("/proc/stat", w);
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| e("no cpu line"))?;
    // cpu user nice system idle iowait irq softirq steal ...
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().map_err(|_| e("non-numeric cpu field")))
        .collect::<Result<_, _>>()?;
    match (v.get(5), v.get(6)) {
        (Some(irq), Some(softirq)) => Ok(irq + softirq),
        _ => Err(e("short cpu line")),
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        let line = "7509 (boringtun (x) 1) S 1 7508 7508 0 -1 4194624 1226 0 0 0 \
                    37 151 0 0 20 0 2 0 3528 205541376 1693 18446744073709551615";
        let s = ProcStat::parse(line).unwrap();
        assert_eq!(s.comm, "boringtun (x) 1");
        assert_eq!(s.ticks, 188);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn kernel_thread_flag() {
        let line = "15 (ksoftirqd/0) S 2 0 0 0 -1 69238880 0 0 0 0 0 41 0 0 20 0 1 0 5";
        let s = ProcStat::parse(line).unwrap();
        assert!(s.is_kernel_thread());
        assert_eq!(s.ticks, 41);
    }

    #[test]
    fn truncated_stat_is_an_error() {
        assert!(ProcStat::parse("12 (x) S 1 2 3").is_err());
        assert!(ProcStat::parse("no parens here").is_err());
        assert!(ProcStat::parse(") (").is_err());
    }

    #[test]
    fn interrupt_ticks_are_irq_plus_softirq() {
        let stat = "cpu  100 2 300 4000 5 6 70 0 0 0\ncpu0 50 1 150 2000 2 3 35 0 0 0\n";
        assert_eq!(parse_interrupt_ticks(stat), Ok(76));
        assert!(parse_interrupt_ticks("cpu  1 2 3\n").is_err());
        assert!(parse_interrupt_ticks("intr 5\n").is_err());
    }

    #[test]
    fn vm_rss_in_kib() {
        let status = "Name:\tnebula\nVmPeak:\t 1000 kB\nVmRSS:\t   23456 kB\nThreads: 9\n";
        assert_eq!(parse_vm_rss(status), Some(23456));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let status = "VmRSS:\t  900 kB\nRssAnon:\t  700 kB\nRssFile:\t 200 kB\n";
        assert_eq!(parse_status_kib(status, "RssAnon:"), Some(700));
        assert_eq!(parse_status_kib(status, "RssShmem:"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        let s = ProcStat::read(me).expect("own stat");
        assert!(!s.is_kernel_thread());
        assert!(rss_kib(me).is_some_and(|r| r > 0));
    }
}
