//! The node's Prometheus endpoint (`metrics_address`, off unless set): per-stream and
//! per-tether counters, the overlay's events, the data plane's drop counters and the
//! node's ignored-message counters, rendered by the driver at each scrape.

use std::fmt::Write;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};

use super::Driver;

/// A scrape waiting for the driver to render the text.
pub(super) type Scrape = oneshot::Sender<String>;

async fn metrics(State(tx): State<mpsc::Sender<Scrape>>) -> impl IntoResponse {
    let (reply, rx) = oneshot::channel();
    let body = match tx.send(reply).await {
        Ok(()) => rx.await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Serves `/metrics` on `addr` until the process ends.
pub(super) async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<Scrape>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    let app = Router::new().route("/metrics", get(metrics)).with_state(tx);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP conflux_{name} {help}");
    let _ = writeln!(out, "# TYPE conflux_{name} {kind}");
}

impl Driver {
    /// The Prometheus text for one scrape.
    pub(super) fn render_metrics(&self) -> String {
        let mut o = String::new();
        let c = self.node.counters();
        family(
            &mut o,
            "ignored_total",
            "counter",
            "Messages dropped unanswered, by reason",
        );
        for (why, n) in c.ignored_nonzero() {
            let _ = writeln!(o, "conflux_ignored_total{{reason=\"{why}\"}} {n}");
        }
        family(
            &mut o,
            "handshakes_total",
            "counter",
            "Stream handshakes completed",
        );
        let _ = writeln!(
            o,
            "conflux_handshakes_total{{role=\"initiator\"}} {}",
            c.handshakes_initiated
        );
        let _ = writeln!(
            o,
            "conflux_handshakes_total{{role=\"responder\"}} {}",
            c.handshakes_answered
        );
        family(
            &mut o,
            "rekeys_total",
            "counter",
            "Outbound streams given a fresh key",
        );
        let _ = writeln!(o, "conflux_rekeys_total {}", c.rekeys);
        let Some(ov) = &self.overlay else {
            return o;
        };
        family(
            &mut o,
            "stream_packets_total",
            "counter",
            "Packets a stream moved (data plane reports)",
        );
        let stats = ov.ov.stream_stats();
        for (peer, dir, packets, _, _) in &stats {
            let _ = writeln!(
                o,
                "conflux_stream_packets_total{{peer=\"{peer}\",direction=\"{dir}\"}} {packets}"
            );
        }
        family(
            &mut o,
            "stream_bytes_total",
            "counter",
            "Payload bytes a stream sealed",
        );
        for (peer, dir, _, bytes, _) in stats.iter().filter(|s| s.1 == "out") {
            let _ = writeln!(
                o,
                "conflux_stream_bytes_total{{peer=\"{peer}\",direction=\"{dir}\"}} {bytes}"
            );
        }
        family(
            &mut o,
            "stream_keys",
            "gauge",
            "Keys a stream has had (1 + rekeys)",
        );
        for (peer, dir, _, _, generation) in &stats {
            let _ = writeln!(
                o,
                "conflux_stream_keys{{peer=\"{peer}\",direction=\"{dir}\"}} {generation}"
            );
        }
        let tethers = ov.ov.tethers();
        family(
            &mut o,
            "tether_up",
            "gauge",
            "1 when the tether to a next hop carries traffic",
        );
        for t in &tethers {
            let up = u8::from(t.state == "up");
            let _ = writeln!(
                o,
                "conflux_tether_up{{peer=\"{}\",tether=\"{}\"}} {up}",
                t.peer, t.id
            );
        }
        family(
            &mut o,
            "tether_rtt_seconds",
            "gauge",
            "Smoothed round-trip time of a tether",
        );
        for t in &tethers {
            let _ = writeln!(
                o,
                "conflux_tether_rtt_seconds{{peer=\"{}\",tether=\"{}\"}} {}",
                t.peer,
                t.id,
                f64::from(t.rtt_us) / 1e6
            );
        }
        family(
            &mut o,
            "tether_path_mtu_bytes",
            "gauge",
            "Path MTU a tether discovered: the largest UDP payload it sends (0: not yet known)",
        );
        for t in &tethers {
            let _ = writeln!(
                o,
                "conflux_tether_path_mtu_bytes{{peer=\"{}\",tether=\"{}\"}} {}",
                t.peer, t.id, t.plpmtu
            );
        }
        family(
            &mut o,
            "tether_sent_bytes_total",
            "counter",
            "Bytes sent over a tether",
        );
        for t in &tethers {
            let _ = writeln!(
                o,
                "conflux_tether_sent_bytes_total{{peer=\"{}\",tether=\"{}\"}} {}",
                t.peer, t.id, t.tx_bytes
            );
        }
        family(
            &mut o,
            "overlay_events_total",
            "counter",
            "Overlay events (misses, routes, tethers, idle, refusals)",
        );
        let s = ov.ov.status();
        for (k, v) in [
            ("miss", s.misses),
            ("miss_unknown_address", s.misses_unknown),
            ("tether_opened", s.tethers_opened),
            ("tether_failed", s.tethers_failed),
            ("route_direct", s.routes_direct),
            ("route_relayed", s.routes_relayed),
            ("relay_installed", s.relays_installed),
            ("setup_refused", s.setups_refused),
            ("idle_dissolved", s.idle_dissolved),
            ("signal_ignored", s.signals_ignored),
        ] {
            let _ = writeln!(o, "conflux_overlay_events_total{{event=\"{k}\"}} {v}");
        }
        family(
            &mut o,
            "relay_entries",
            "gauge",
            "Relay entries held for other nodes' routes",
        );
        let _ = writeln!(o, "conflux_relay_entries {}", ov.ov.relay_count());
        family(
            &mut o,
            "dataplane_total",
            "counter",
            "Data plane counters, by worker",
        );
        let mut workers: Vec<_> = ov.dp_counters.iter().collect();
        workers.sort_by_key(|(w, _)| **w);
        for (w, values) in workers {
            for (k, v) in values {
                let _ = writeln!(
                    o,
                    "conflux_dataplane_total{{worker=\"{w}\",counter=\"{k}\"}} {v}"
                );
            }
        }
        o
    }
}
