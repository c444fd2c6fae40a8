//! Human tables (comfy-table) and JSON for the local API's replies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use super::proto::{GeoReply, OverlayReply, PeersReply, StatusReply, StreamsReply, TaintReply};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

fn taints(t: &[String]) -> String {
    format!("{{{}}}", t.join(","))
}

/// "3.2 s ago" for a unix-millisecond timestamp, relative to `now_ms`.
fn ago(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 {
        return "-".into();
    }
    let d = now_ms.saturating_sub(then_ms);
    format!("{:.1} s ago", d as f64 / 1000.0)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// `conflux-ctl status` as a two-column table.
pub fn status(s: &StatusReply) -> String {
    let mut t = table(&["", ""]);
    let now_s = unix_ms_now() / 1000;
    let expires = if s.certificate_not_after > now_s {
        format!(
            "in {} s (unix {})",
            s.certificate_not_after - now_s,
            s.certificate_not_after
        )
    } else {
        format!("expired (unix {})", s.certificate_not_after)
    };
    let ignored = if s.ignored.is_empty() {
        "-".to_owned()
    } else {
        s.ignored
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<(&str, String)> = vec![
        ("node id", s.node_id.clone()),
        ("realm", s.realm.clone()),
        (
            "overlay address",
            both_addresses(&s.overlay_address, &s.overlay_address6),
        ),
        ("region", or_dash(&s.region)),
        ("taints", taints(&s.taints)),
        ("identity", short(&s.identity_fingerprint).to_owned()),
        (
            "nats",
            format!("{} ({} reconnects)", s.nats_state, s.nats_reconnects),
        ),
        ("certificate expires", expires),
        (
            "peers",
            format!("{} ({} compatible)", s.peers, s.compatible_peers),
        ),
        ("streams", s.streams.to_string()),
        (
            "handshakes",
            format!(
                "{} initiated, {} answered",
                s.handshakes_initiated, s.handshakes_answered
            ),
        ),
        (
            "presence",
            format!("{} sent, {} accepted", s.presence_sent, s.presence_accepted),
        ),
        ("ignored", ignored),
        ("roles", list_or_dash(&s.roles)),
        ("portal in use", or_dash(&s.exit_portal)),
        ("exit refused", format!("{} packets", s.exit_denied)),
        ("advertised routes", list_or_dash(&s.advertised_routes)),
        (
            "accepted routes",
            format!(
                "{} ({} refused: not authorized)",
                list_or_dash(&s.accepted_routes),
                s.routes_refused
            ),
        ),
        ("registration", format!("{} ms", s.registration_ms)),
        ("uptime", format!("{:.1} s", s.uptime_ms as f64 / 1000.0)),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_owned(), v]);
    }
    t.to_string()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// `conflux-ctl peers` as a table.
pub fn peers(p: &PeersReply) -> String {
    if p.peers.is_empty() {
        return "no peers".into();
    }
    let now = unix_ms_now();
    let mut t = table(&[
        "node id",
        "address",
        "region",
        "taints",
        "state",
        "last seen",
        "identity",
    ]);
    for peer in &p.peers {
        t.add_row(vec![
            peer.node_id.clone(),
            both_addresses(&peer.overlay_address, &peer.overlay_address6),
            or_dash(&peer.region),
            taints(&peer.taints),
            peer.state.clone(),
            ago(now, peer.last_seen_unix_ms),
            short(&peer.identity_fingerprint).to_owned(),
        ]);
    }
    t.to_string()
}

/// `conflux-ctl streams` as a table.
pub fn streams(s: &StreamsReply) -> String {
    if s.streams.is_empty() {
        return "no streams".into();
    }
    let now = unix_ms_now();
    let mut t = table(&[
        "stream id",
        "peer",
        "dir",
        "key fingerprint",
        "established",
        "handshake",
    ]);
    for st in &s.streams {
        let hs = if st.handshake_us == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} ms", st.handshake_us as f64 / 1000.0)
        };
        t.add_row(vec![
            st.stream_id.clone(),
            st.peer_id.clone(),
            st.direction.clone(),
            st.key_fingerprint.clone(),
            ago(now, st.established_unix_ms),
            hs,
        ]);
    }
    t.to_string()
}

/// `conflux-ctl routes` as a table.
pub fn routes(o: &OverlayReply) -> String {
    if !o.dataplane {
        return "no data plane: this node runs the control plane only".into();
    }
    if o.routes.is_empty() {
        return format!("no routes ({} relay entries for others)", o.relays);
    }
    let mut t = table(&["destination", "address", "via", "state", "label"]);
    for r in &o.routes {
        let via = if r.via.is_empty() {
            "direct".to_owned()
        } else {
            r.via.clone()
        };
        t.add_row(vec![
            r.destination.clone(),
            r.address.clone(),
            via,
            r.state.clone(),
            r.label.to_string(),
        ]);
    }
    format!("{t}\n{} relay entries for others", o.relays)
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

/// `conflux-ctl tethers` as a table.
pub fn tethers(o: &OverlayReply) -> String {
    if !o.dataplane {
        return "no data plane: this node runs the control plane only".into();
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    let underlay = format!(
        "underlay: host {}; reflexive {}; NAT {}; STUN servers {}\n",
        list(&o.host_candidates),
        list(&o.reflexive_candidates),
        o.nat,
        list(&o.stun_servers)
    );
    if o.tethers.is_empty() {
        return underlay + "no tethers";
    }
    let mut t = table(&[
        "peer",
        "id",
        "state",
        "role",
        "associations",
        "users",
        "remote",
        "rtt",
        "path MTU",
        "sent",
    ]);
    for x in &o.tethers {
        t.add_row(vec![
            x.peer.clone(),
            x.id.to_string(),
            x.state.clone(),
            if x.controlling {
                "controlling"
            } else {
                "controlled"
            }
            .to_owned(),
            x.associations.to_string(),
            x.users.to_string(),
            list(&x.remotes),
            format!("{:.2} ms", f64::from(x.rtt_us) / 1000.0),
            if x.plpmtu == 0 {
                "-".to_owned()
            } else {
                format!("{} B", x.plpmtu)
            },
            format!("{} B", x.tx_bytes),
        ]);
    }
    underlay + &t.to_string()
}

/// `conflux-ctl geo`: the policy and the relays' regions.
pub fn geo(g: &GeoReply) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut out = format!(
        "exclude: {}\nprefer:  {}\n",
        list(&g.exclude),
        list(&g.prefer)
    );
    let mut t = table(&["relay", "region"]);
    for r in &g.relays {
        let (node, region) = r.split_once(' ').unwrap_or((r.as_str(), "-"));
        t.add_row(vec![node.to_owned(), region.to_owned()]);
    }
    out.push_str(&t.to_string());
    out
}

/// `conflux-ctl taint ls|add|rm`: the resulting taint set.
pub fn taint_set(t: &TaintReply) -> String {
    taints(&t.taints)
}

/// Any reply as pretty JSON.
pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("replies always serialize")
}

/// The overlay address, and the IPv6 one beside it when there is one.
fn both_addresses(v4: &str, v6: &str) -> String {
    if v6.is_empty() {
        v4.to_owned()
    } else {
        format!("{v4} {v6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{OverlayTether, Peer, Stream};

    #[test]
    fn tethers_show_the_path_mtu_once_reported() {
        let tether = |id, plpmtu| OverlayTether {
            peer: "ab".repeat(16),
            id,
            state: "up".into(),
            plpmtu,
            ..OverlayTether::default()
        };
        let o = OverlayReply {
            dataplane: true,
            tethers: vec![tether(1, 1249), tether(2, 0)],
            ..OverlayReply::default()
        };
        let text = tethers(&o);
        assert!(text.contains("path MTU"), "{text}");
        assert!(text.contains("1249 B"), "{text}");
        let unknown = text.lines().find(|l| l.contains(" 2 ")).unwrap_or_default();
        assert!(unknown.contains(" - "), "no report yet: {text}");
    }

    #[test]
    fn tables_show_what_an_operator_looks_for() {
        let p = PeersReply {
            peers: vec![Peer {
                node_id: "ab".repeat(16),
                overlay_address: "10.9.0.2".into(),
                overlay_address6: "fd7a:cf::2".into(),
                taints: vec!["a".into(), "b".into()],
                state: "connected".into(),
                identity_fingerprint: "cd".repeat(32),
                ..Peer::default()
            }],
        };
        let out = peers(&p);
        assert!(out.contains(&"ab".repeat(16)), "{out}");
        assert!(out.contains("10.9.0.2 fd7a:cf::2"), "{out}");
        assert!(out.contains("{a,b}") && out.contains("connected"), "{out}");
        assert!(out.contains(&"cd".repeat(8)) && !out.contains(&"cd".repeat(9)));
        assert_eq!(peers(&PeersReply::default()), "no peers");

        let s = StreamsReply {
            streams: vec![Stream {
                stream_id: "01".repeat(16),
                direction: "out".into(),
                key_fingerprint: "0123456789abcdef".into(),
                handshake_us: 2500,
                ..Stream::default()
            }],
        };
        let out = streams(&s);
        assert!(
            out.contains("0123456789abcdef") && out.contains("2.5 ms"),
            "{out}"
        );
    }

    #[test]
    fn json_has_field_names() {
        let t = TaintReply {
            taints: vec!["a".into()],
        };
        let v: serde_json::Value = serde_json::from_str(&json(&t)).unwrap();
        assert_eq!(v["taints"][0], "a");
        let s = StatusReply {
            ignored: [("bad_signature".to_owned(), 3u64)].into_iter().collect(),
            ..StatusReply::default()
        };
        let v: serde_json::Value = serde_json::from_str(&json(&s)).unwrap();
        assert_eq!(v["ignored"]["bad_signature"], 3);
    }
}
