//! The Markdown report: a block of `RESULTS.md` between two markers, replaced by every
//! run so the file's other sections stay as they are.

use std::fmt::Write as _;
use std::path::Path;

use super::results::{Params, RunResult, Sample, SystemResult};
use super::stats::Spread;
use super::systems::Role;
use super::topology::Shape;

/// First line of the generated block.
pub const BEGIN: &str =
    "<!-- conflux-perf:begin (written by perf/run; edit outside these markers) -->";
/// Last line of the generated block.
pub const END: &str = "<!-- conflux-perf:end -->";

/// `text` with the generated block replaced by `block`, or `block` put after the first
/// heading when there is none yet.
pub fn splice(text: &str, block: &str) -> String {
    if let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END))
        && b < e
    {
        return format!(
            "{}{}{}",
            &text[..b],
            block.trim_end(),
            &text[e + END.len()..]
        );
    }
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    if lines.peek().is_some_and(|l| l.starts_with("# ")) {
        out.push_str(lines.next().unwrap_or_default());
        out.push_str("\n\n");
    } else {
        out.push_str("# Performance results\n\n");
    }
    out.push_str(block.trim_end());
    out.push_str("\n\n");
    for l in lines.skip_while(|l| l.trim().is_empty()) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Writes the block into the report at `path` (created if missing).
pub fn write(path: &Path, run: &RunResult, charts: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, splice(&old, &block(run, charts)))?;
    Ok(())
}

/// A figure of every sample.
type Figure = fn(&Sample) -> f64;

/// The generated block for `run`; charts are linked under `charts` (relative path).
pub fn block(run: &RunResult, charts: &str) -> String {
    let mut s = String::new();
    let m = &run.machine;
    let p = &run.params;
    let ran: Vec<&SystemResult> = run
        .systems
        .iter()
        .filter(|r| !r.samples.is_empty())
        .collect();
    let loads = Spread::of(
        ran.iter()
            .flat_map(|r| r.samples.iter().map(|x| x.load_avg)),
    );
    let _ = writeln!(s, "{BEGIN}\n## Side by side\n");
    let _ = writeln!(
        s,
        "Run of {}{}: {}, {} logical CPUs, {:.0} GiB, kernel {}, {}. {} repetitions of every \
         system, interleaved; {:.1} min of measurements. Every figure is median (min–max) over \
         the repetitions.\n",
        run.date,
        if p.quick { " (`--quick`)" } else { "" },
        m.cpu,
        m.cores,
        m.memory_gib,
        m.kernel,
        m.os,
        p.reps,
        run.wall_secs / 60.0,
    );
    if let Some(l) = loads {
        let _ = writeln!(
            s,
            "Load average (1 min) at the start of each repetition: {:.1} (min {:.1}, max {:.1}); \
             {:.1} before the run, {:.1} after.",
            l.median, l.min, l.max, run.load.0, run.load.1
        );
        if l.median > 1.0 {
            let _ = writeln!(
                s,
                "**Other work shared the {} cores during this run: compare rows with each other, \
                 not with another run; these figures will be re-measured on a quiet machine.**",
                m.cores
            );
        }
        s.push('\n');
    }

    charts_section(&mut s, charts);
    throughput_table(&mut s, &ran, p);
    cost_table(&mut s, &ran);
    ratio_tables(&mut s, &ran);
    skipped(&mut s, run);
    method(&mut s, run);
    commands(&mut s, run, &ran);
    let _ = writeln!(s, "{END}");
    s
}

fn charts_section(s: &mut String, charts: &str) {
    let _ = writeln!(
        s,
        "![throughput]({charts}/throughput.png)\n\n![latency]({charts}/latency.png)\n\n\
         ![CPU per GB]({charts}/cpu.png)\n"
    );
}

fn cell(r: &SystemResult, f: Figure, digits: usize) -> String {
    match r.spread(f) {
        Some(x) => format!("{:.d$} ({:.d$}–{:.d$})", x.median, x.min, x.max, d = digits),
        None => "—".into(),
    }
}

fn latency_cell(r: &SystemResult, p50: Figure, p99: Figure) -> String {
    match (r.spread(p50), r.spread(p99)) {
        (Some(a), Some(b)) => format!(
            "{:.3} / {:.3} ({:.3}–{:.3})",
            a.median, b.median, b.min, b.max
        ),
        _ => "—".into(),
    }
}

fn throughput_table(s: &mut String, ran: &[&SystemResult], p: &Params) {
    let _ = writeln!(
        s,
        "### Throughput and latency\n\n\
         | system | TCP -P1 Gbit/s | TCP -P4 Gbit/s | UDP, loss < {}% Gbit/s | ping idle p50 / p99 ms | ping under load p50 / p99 ms |\n\
         |---|---|---|---|---|---|",
        p.udp_max_loss_percent
    );
    for r in ran {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            cell(r, |x| x.tcp1_gbps, 2),
            cell(r, |x| x.tcp4_gbps, 2),
            cell(r, |x| x.udp_gbps, 2),
            latency_cell(r, |x| x.ping_idle.p50_ms, |x| x.ping_idle.p99_ms),
            latency_cell(r, |x| x.ping_loaded.p50_ms, |x| x.ping_loaded.p99_ms),
        );
    }
    let _ = writeln!(
        s,
        "\nPing figures are p50 / p99 medians, with the p99 range in parentheses; each series \
         is {} requests {} ms apart.\n",
        p.ping_count, p.ping_interval_ms
    );
}

fn cost_table(s: &mut String, ran: &[&SystemResult]) {
    let _ = writeln!(
        s,
        "### CPU, memory and receive-buffer drops\n\n\
         | system | CPU s/GB, all | system's processes | kernel (machine-wide) | iperf3 ends | RSS per node MiB | UdpRcvbufErrors per repetition |\n\
         |---|---|---|---|---|---|---|"
    );
    for r in ran {
        let rss = rss_cell(r);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            cell(r, |x| x.cpu.total(), 2),
            cell(r, |x| x.cpu.tunnel, 2),
            cell(r, |x| x.cpu.kernel, 2),
            cell(r, |x| x.cpu.iperf, 2),
            rss,
            cell(r, |x| x.rcvbuf_errors as f64, 0),
        );
    }
    s.push('\n');
}

fn rss_cell(r: &SystemResult) -> String {
    let mut nodes: Vec<String> = Vec::new();
    for sample in &r.samples {
        for n in &sample.rss {
            if !nodes.contains(&n.node) {
                nodes.push(n.node.clone());
            }
        }
    }
    if nodes.is_empty() {
        return "— (in kernel)".into();
    }
    nodes
        .iter()
        .filter_map(|node| {
            let sp = Spread::of(
                r.samples
                    .iter()
                    .flat_map(|x| x.rss.iter().filter(|n| &n.node == node).map(|n| n.mib)),
            )?;
            Some(format!("{node} {:.1}", sp.median))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ratio_tables(s: &mut String, ran: &[&SystemResult]) {
    let cols: Vec<&SystemResult> = ran
        .iter()
        .copied()
        .filter(|r| r.role != Role::Conflux)
        .collect();
    let rows: Vec<&SystemResult> = if ran.iter().any(|r| r.role == Role::Conflux) {
        ran.iter()
            .copied()
            .filter(|r| r.role == Role::Conflux)
            .collect()
    } else {
        ran.to_vec()
    };
    if cols.is_empty() || rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "### Ratios to each peer\n\nMedian of the row ÷ median of the column. Throughput: \
         above 1 means the row is faster; latency and CPU: below 1 means the row is better.\n"
    );
    let figures: [(&str, Figure); 5] = [
        ("TCP -P1", |x| x.tcp1_gbps),
        ("TCP -P4", |x| x.tcp4_gbps),
        ("UDP, loss < 1%", |x| x.udp_gbps),
        ("ping p99 under load", |x| x.ping_loaded.p99_ms),
        ("CPU s/GB, all", |x| x.cpu.total()),
    ];
    for (label, f) in figures {
        let _ = write!(s, "| {label} |");
        for c in &cols {
            let _ = write!(s, " ÷ {} |", c.name);
        }
        let _ = write!(s, "\n|---|");
        for _ in &cols {
            s.push_str("---|");
        }
        s.push('\n');
        for r in &rows {
            let _ = write!(s, "| {} |", r.name);
            for c in &cols {
                let v = match (r.median(f), c.median(f)) {
                    (Some(a), Some(b)) if b > 0.0 && !std::ptr::eq(*r, *c) => {
                        format!("{:.2}", a / b)
                    }
                    _ => "—".into(),
                };
                let _ = write!(s, " {v} |");
            }
            s.push('\n');
        }
        s.push('\n');
    }
}

fn skipped(s: &mut String, run: &RunResult) {
    let notes: Vec<String> = run
        .systems
        .iter()
        .flat_map(|r| {
            r.skipped
                .iter()
                .map(move |why| format!("- {} — not measured: {why}", r.name))
                .chain(
                    r.failures
                        .iter()
                        .map(move |f| format!("- {} — failed {f}", r.name)),
                )
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "### Not measured\n\n{}\n", notes.join("\n"));
    }
}

fn method(s: &mut String, run: &RunResult) {
    let p = &run.params;
    let versions: Vec<String> = run
        .systems
        .iter()
        .filter_map(|r| Some(format!("{}: {}", r.name, r.version.as_ref()?)))
        .chain(run.tools.iter().map(|(t, v)| format!("{t}: {v}")))
        .collect();
    let _ = writeln!(
        s,
        "### How it is measured\n\n\
         - Topology: fresh network namespaces for every repetition of every system. A and B \
         are joined by one veth pair (10.99.0.1/24, 10.99.0.2/24); relayed systems run A ↔ R ↔ B \
         over two pairs (10.99.1.0/24, 10.99.2.0/24) and R does not route IP. Tunnels carry \
         10.98.0.0/24 with an inner MTU of 1420 (Conflux: its data plane's default, 1352, so \
         that a full-size inner packet, sealed, is one SCTP DATA chunk in one DTLS record in \
         one 1,500-byte datagram). \
         Every process of the run, the tunnel ends, both iperf3 ends and the kernel share the \
         same {} cores.\n\
         - Configurations: each peer as set up below; boringtun both with `--threads 1` \
         (twice its default's speed on this machine before) and with its default. Conflux: \
         `conflux-dataplane run` per node ({}) with `conflux-dataplane static` installing \
         WebRTC tethers (ICE, DTLS 1.2 checked against each peer's certificate fingerprint, \
         SCTP data channels), streams with random secrets, routes and relay entries; the \
         relay holds no stream key. The row marked *plain tethers* carries one sealed packet \
         per UDP datagram instead (no DTLS record, no SCTP chunk): a framing-free reference, \
         not a configuration a node uses.\n\
         - Throughput: `iperf3 -c <B> -J -t {} -P 1` and `-P 4`; the receiver's rate.\n\
         - UDP: `iperf3 -c <B> -u -l {} -w 4M -b <rate> -t {}`, at most {} trials: start at \
         the TCP -P1 rate, step down while loss is over {}%, double while under, then bisect; \
         the figure is the highest receive rate with loss under the limit. One iperf3 sender \
         moves one datagram per system call, so the bare veth row shows the tool's own limit.\n\
         - Latency: `ping -n -c {} -i {}` from A, idle and during a one-stream TCP test \
         started a second earlier; p50 and p99 by nearest rank.\n\
         - CPU per GB, over the TCP -P1 test, in CPU seconds per 10⁹ bytes received: the \
         system's processes (every process in the namespaces other than iperf3 and ping: \
         user + system time from `/proc/<pid>/stat`, all threads); the kernel's own account \
         (irq + softirq of `/proc/stat` plus kernel threads other than ksoftirqd, whose time \
         is already softirq — this is where the veth path, the TCP/IP stack's receive side and \
         an in-kernel tunnel's crypto run; it is machine-wide, so other work on the machine \
         adds to it); and both iperf3 ends (client from `wait4`, server from \
         `/proc/<pid>/stat`). For the bare veth path and an in-kernel tunnel the system has no \
         processes and its whole cost is in the other two columns.\n\
         - Memory: VmRSS of the system's processes per node, midway through the TCP -P4 test.\n\
         - Drops: `RcvbufErrors` of the `Udp:` line of `/proc/net/snmp` in every namespace, \
         added up, from before the TCP -P1 test to after the loaded ping.\n\
         - Versions: {}.\n",
        run.machine.cores,
        {
            // The harness's own choice unless the run named the workers (see `systems::conflux`).
            let mut args: Vec<&str> = Vec::new();
            if !run
                .dataplane_args
                .iter()
                .any(|a| a.starts_with("--workers"))
            {
                args.extend(["--workers", "1", "--no-pin"]);
            }
            args.extend(run.dataplane_args.iter().map(String::as_str));
            format!("with `{}`", args.join(" "))
        },
        p.tcp_secs,
        p.udp_len,
        p.udp_trial_secs,
        p.udp_steps,
        p.udp_max_loss_percent,
        p.ping_count,
        p.ping_interval_ms / 1e3,
        versions.join("; "),
    );
}

fn commands(s: &mut String, run: &RunResult, ran: &[&SystemResult]) {
    let _ = writeln!(s, "### Set-up commands\n");
    for (shape, cmds) in &run.topologies {
        let _ = writeln!(
            s,
            "<details><summary>network, {}</summary>\n\n```sh\n{}\n```\n</details>\n",
            shape_name(*shape),
            cmds.join("\n")
        );
    }
    for r in ran {
        if r.commands.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<details><summary>{} ({})</summary>\n\n```sh\n{}\n```\n</details>\n",
            r.name,
            shape_name(r.shape),
            r.commands.join("\n")
        );
    }
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Pair => "A ↔ B",
        Shape::Relay => "A ↔ R ↔ B",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_block() {
        let old = format!(
            "# Perf\n\nintro\n\n{BEGIN}\nold figures\n{END}\n\n## Router simulation\n\nkept\n"
        );
        let new = splice(&old, &format!("{BEGIN}\nnew figures\n{END}\n"));
        assert_eq!(
            new,
            format!(
                "# Perf\n\nintro\n\n{BEGIN}\nnew figures\n{END}\n\n## Router simulation\n\nkept\n"
            )
        );
    }

    #[test]
    fn splice_without_markers_goes_under_the_title() {
        let new = splice(
            "# Perf\n\n## Tether\n\nkept\n",
            &format!("{BEGIN}\nx\n{END}\n"),
        );
        assert_eq!(
            new,
            format!("# Perf\n\n{BEGIN}\nx\n{END}\n\n## Tether\n\nkept\n")
        );
        let new = splice("", &format!("{BEGIN}\nx\n{END}\n"));
        assert!(new.starts_with("# Performance results\n\n"));
    }
}
