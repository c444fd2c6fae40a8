//! The scale part of `RESULTS.md`: a block of its own between two markers, so a run of the
//! scale part alone leaves the side-by-side block as it is, and the other way round.

use std::fmt::Write as _;

use super::ScaleResult;
use crate::harness::results::RunResult;

/// First line of the scale block.
pub const BEGIN: &str =
    "<!-- conflux-perf:scale:begin (written by perf/run; edit outside these markers) -->";
/// Last line of the scale block.
pub const END: &str = "<!-- conflux-perf:scale:end -->";

/// `text` with the scale block replaced by `block`, or `block` put after the side-by-side
/// block (else at the end) when there is none yet.
pub fn splice(text: &str, block: &str) -> String {
    let block = block.trim_end();
    if let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END))
        && b < e
    {
        return format!("{}{block}{}", &text[..b], &text[e + END.len()..]);
    }
    let main_end = crate::harness::report::END;
    if let Some(e) = text.find(main_end) {
        let at = e + main_end.len();
        return format!("{}\n\n{block}{}", &text[..at], &text[at..]);
    }
    let mut out = text.trim_end().to_owned();
    if out.is_empty() {
        out.push_str("# Performance results");
    }
    out.push_str("\n\n");
    out.push_str(block);
    out.push('\n');
    out
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The scale block of `run` (which must hold a scale result).
pub fn block(run: &RunResult, scale: &ScaleResult) -> String {
    let mut s = String::new();
    let m = &run.machine;
    let _ = writeln!(
        s,
        "{BEGIN}\n## Scale (Conflux)\n\nRun of {}{}: {}, {} logical CPUs, kernel {}. One run \
         of each measurement; the machine is shared, so times are indicative. `perf/run \
         --only scale` runs this part alone (every full `perf/run` runs it too; `--quick` \
         runs it with 1,000 peers and 5 nodes).\n",
        run.date,
        if run.params.quick { " (`--quick`)" } else { "" },
        m.cpu,
        m.cores,
        m.kernel,
    );
    let _ = writeln!(s, "| figure | value |\n|---|---|");
    if let Some(st) = &scale.streams {
        let _ = writeln!(
            s,
            "| streams installed in one data plane (one worker) | {} egress + {} ingress, {} \
             routes linked to their stream ({} records applied) |",
            thousands(st.egress_installed),
            thousands(st.ingress_installed),
            thousands(st.routes_installed),
            thousands(st.records_applied as usize),
        );
        let _ = writeln!(
            s,
            "| data plane RSS before → after | {:.1} MiB → {:.1} MiB (heap {:.1} → {:.1} MiB) |",
            st.rss_before_kib as f64 / 1024.0,
            st.rss_after_kib() as f64 / 1024.0,
            st.anon_before_kib as f64 / 1024.0,
            st.anon_after_kib() as f64 / 1024.0,
        );
        let _ = writeln!(
            s,
            "| **memory per idle stream** | **{:.0} B** of RSS ({:.0} B heap), a route per \
             egress stream included; {:.1} KiB per peer (both streams and the route) |",
            st.bytes_per_stream(),
            st.anon_bytes_per_stream(),
            st.bytes_per_stream() * 2.0 / 1024.0,
        );
        let per: Vec<String> = st
            .per_entry()
            .iter()
            .map(|(what, b)| format!("{what} {b:.0} B"))
            .collect();
        let _ = writeln!(s, "| RSS added per entry, by kind | {} |", per.join(", "));
        let times: Vec<String> = st
            .phases
            .iter()
            .map(|p| format!("{} {:.1} s", p.what, p.secs))
            .collect();
        let _ = writeln!(
            s,
            "| install time (pushed until the ring was drained) | {:.1} s: {} |",
            st.apply_secs,
            times.join(", ")
        );
    }
    if let Some(me) = &scale.mesh {
        let _ = writeln!(
            s,
            "| control-plane mesh on loopback | {} `conflux` processes (no data plane), \
             nats-server, Guardian |",
            me.nodes
        );
        let _ = writeln!(
            s,
            "| all registered with Guardian | {:.2} s after the first start (starting all took \
             {:.2} s) |",
            me.registered_secs, me.spawn_secs
        );
        let _ = writeln!(
            s,
            "| **mesh converged** (every node: {} peers, {} streams) | **{:.2} s** (first stream \
             up at {:.2} s, first node complete at {:.2} s; polling saw it at {:.2} s) |",
            me.nodes - 1,
            2 * (me.nodes - 1),
            me.converged_secs,
            me.first_stream_secs,
            me.first_converged_secs,
            me.detected_secs,
        );
        let _ = writeln!(
            s,
            "| **handshakes/s through control processes** | **{:.0}** from the first start \
             ({} outbound streams ÷ {:.2} s, registration included); **{:.0}** from the first \
             stream to the last |",
            me.handshakes_per_sec(),
            me.outbound_streams(),
            me.converged_secs,
            me.mesh_handshakes_per_sec(),
        );
        let _ = writeln!(
            s,
            "| handshake round trip over NATS (request to accepted reply) | median {:.1} ms, \
             slowest {:.1} ms |",
            me.handshake_p50_ms, me.handshake_max_ms
        );
        let ignored = if me.ignored.is_empty() {
            "none".to_owned()
        } else {
            me.ignored
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| handshakes counted by the nodes | {} initiated, {} answered; messages dropped: \
             {ignored} |",
            me.handshakes_initiated, me.handshakes_answered
        );
    }
    for f in &scale.failures {
        let _ = writeln!(
            s,
            "| failed | {} |",
            f.replace('|', "\\|").replace('\n', " ")
        );
    }
    let _ = writeln!(
        s,
        "\n- Memory: `conflux-dataplane run --workers 1 --no-pin` in a namespace of its own; \
         the harness attaches through the control socket and pushes one tether, then {p} egress \
         streams, {p} ingress streams and {p} routes (one /32 each) through the worker's \
         command ring, streams first as the static driver does, waiting after each kind until \
         the worker has drained the ring. VmRSS and RssAnon from `/proc/<pid>/status`, each \
         read when three readings 200 ms apart agree: after attaching, and after each kind. \
         A fresh attach's snapshot then confirms the counts (with that snapshot built, VmRSS \
         was {snap}). Bytes per stream = growth ÷ streams (routes included); growth includes \
         the allocator's and the tables' spare capacity, as a real node would hold it.\n\
         - Mesh: `guardian nats-config`, `nats-server -c`, `guardian serve`, a realm and one \
         registration token per node through Guardian's admin API, then every `conflux \
         --config` started at once (default timings, one taint shared by all). The clock runs \
         from the first start until the last stream of the mesh came up, as the nodes recorded \
         it (`conflux-ctl --json streams`, read once every node's `status` showed all peers \
         and both streams with each; polled every {poll} ms), so registration (fresh ML-DSA \
         and ML-KEM keys, a certificate, NATS credentials) is inside it.\n\
         - The sans-io core alone (two `Node`s in memory; presence and certificate checks, \
         ML-KEM-768 and ML-DSA-65 both ways): `cargo bench -p conflux-benches --bench \
         node_handshake`, figures below this block.\n",
        p = thousands(scale.params.peers),
        snap = scale
            .streams
            .as_ref()
            .map(|st| format!("{:.1} MiB", st.rss_after_snapshot_kib as f64 / 1024.0))
            .unwrap_or_else(|| "—".into()),
        poll = scale.mesh.as_ref().map_or(0, |m| m.poll_ms),
    );
    if !scale.commands.is_empty() {
        let _ = writeln!(
            s,
            "<details><summary>scale set-up commands</summary>\n\n```sh\n{}\n```\n</details>\n",
            scale.commands.join("\n")
        );
    }
    let _ = writeln!(s, "{END}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::report;

    #[test]
    fn scale_block_goes_after_the_side_by_side_block_and_is_replaced_alone() {
        let text = format!(
            "# Perf\n\n{}\nfigures\n{}\n\n## Router simulation\n\nkept\n",
            report::BEGIN,
            report::END
        );
        let once = splice(&text, &format!("{BEGIN}\nscale 1\n{END}\n"));
        assert_eq!(
            once,
            format!(
                "# Perf\n\n{}\nfigures\n{}\n\n{BEGIN}\nscale 1\n{END}\n\n## Router simulation\n\nkept\n",
                report::BEGIN,
                report::END
            )
        );
        let twice = splice(&once, &format!("{BEGIN}\nscale 2\n{END}\n"));
        assert_eq!(twice, once.replace("scale 1", "scale 2"));
        // The side-by-side block can be replaced without touching this one.
        let main = report::splice(
            &twice,
            &format!("{}\nnew\n{}\n", report::BEGIN, report::END),
        );
        assert!(main.contains("scale 2") && main.contains("\nnew\n") && !main.contains("figures"));
    }

    #[test]
    fn scale_block_in_a_file_without_blocks_goes_at_the_end() {
        let out = splice("# Perf\n\nintro\n", &format!("{BEGIN}\nx\n{END}\n"));
        assert_eq!(out, format!("# Perf\n\nintro\n\n{BEGIN}\nx\n{END}\n"));
        assert!(splice("", "b").starts_with("# Performance results\n\nb"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(20_000), "20,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
