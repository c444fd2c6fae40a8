//! Tables (Markdown) and PNG charts of simulation sweeps. Text in charts is drawn with an
//! embedded DejaVu Sans, so they render the same on a machine without fonts.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;

use super::{RouterKind, RunStats};

const FONT: &str = "sans-serif";
static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // The dejavu crate ships a valid TrueType file; failing would only lose the text.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

fn color(k: RouterKind) -> RGBColor {
    match k {
        RouterKind::QRouting => RGBColor(0, 114, 178),
        RouterKind::LatencyOnly => RGBColor(230, 159, 0),
        RouterKind::ShortestPath => RGBColor(204, 51, 51),
    }
}

/// One run of a load sweep.
#[derive(Debug, Clone)]
pub struct LoadPoint {
    /// Offered load, packets per second.
    pub load_pps: f64,
    /// Routing.
    pub kind: RouterKind,
    /// What it measured.
    pub stats: RunStats,
}

/// A Markdown table: one row per load, mean / p99 / drops per router.
pub fn load_table(points: &[LoadPoint]) -> String {
    let mut loads: Vec<f64> = points.iter().map(|p| p.load_pps).collect();
    loads.sort_by(f64::total_cmp);
    loads.dedup();
    let mut s = String::from("| load (pkt/s) |");
    for k in RouterKind::ALL {
        let _ = write!(s, " {0} mean ms | {0} p99 ms | {0} drop % |", k.label());
    }
    s.push_str("\n|---:|");
    s.push_str(&"---:|".repeat(3 * RouterKind::ALL.len()));
    s.push('\n');
    for load in loads {
        let _ = write!(s, "| {load:.0} |");
        for k in RouterKind::ALL {
            match points.iter().find(|p| p.load_pps == load && p.kind == k) {
                Some(p) => {
                    let st = &p.stats;
                    let _ = write!(
                        s,
                        " {:.1} | {:.1} | {:.2} |",
                        st.mean_ms,
                        st.p99_ms,
                        100.0 * st.drop_rate()
                    );
                }
                None => s.push_str(" – | – | – |"),
            }
        }
        s.push('\n');
    }
    s
}

/// A Markdown table of cut runs: recovery time and what the cut cost.
pub fn cut_table(runs: &[(RouterKind, RunStats)]) -> String {
    let mut s = String::from(
        "| router | recovery s | lost to the cut | drop % | mean ms | p99 ms | control B/node/s |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (k, st) in runs {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {} | {:.2} | {:.1} | {:.1} | {:.0} |",
            k.label(),
            st.recovery_s.unwrap_or(0.0),
            st.link_down + st.no_route,
            100.0 * st.drop_rate(),
            st.mean_ms,
            st.p99_ms,
            st.control_bytes_per_node_s
        );
    }
    s
}

/// Writes mean delivery time, p99 and drop rate against load, one panel each.
pub fn load_chart(path: &Path, title: &str, points: &[LoadPoint]) -> anyhow::Result<()> {
    register_fonts();
    let root = BitMapBackend::new(path, (1800, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root.titled(title, (FONT, 28)).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((1, 3));
    let max_load = points.iter().map(|p| p.load_pps).fold(0.0, f64::max) * 1.05;
    type Pick = fn(&RunStats) -> f64;
    let figures: [(&str, &str, Pick); 3] = [
        ("Mean delivery time", "ms", |s| s.mean_ms),
        ("99th percentile delivery time", "ms", |s| s.p99_ms),
        ("Packets lost", "%", |s| 100.0 * s.drop_rate()),
    ];
    for (panel, (caption, unit, pick)) in panels.iter().zip(figures) {
        let top = points.iter().map(|p| pick(&p.stats)).fold(0.0, f64::max) * 1.1 + 1e-9;
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, (FONT, 22))
            .margin(18)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..max_load, 0.0..top)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("offered load, packets/s")
            .y_desc(unit)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(WHITE)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for k in RouterKind::ALL {
            let mut line: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.kind == k)
                .map(|p| (p.load_pps, pick(&p.stats)))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = color(k);
            chart
                .draw_series(LineSeries::new(line.clone(), c.stroke_width(3)))
                .map_err(|e| anyhow!("{e}"))?
                .label(k.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                });
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Writes the share of packets delivered, by injection time, around a link cut.
pub fn cut_chart(
    path: &Path,
    title: &str,
    runs: &[(RouterKind, RunStats)],
    cut_s: f64,
    window_s: (f64, f64),
) -> anyhow::Result<()> {
    register_fonts();
    let root = BitMapBackend::new(path, (1200, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (from, to) = (cut_s - window_s.0, cut_s + window_s.1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(20)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(-window_s.0..window_s.1, 0.0..105.0)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the cut")
        .y_desc("packets delivered, %")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (k, st) in runs {
        let line: Vec<(f64, f64)> = st
            .timeline
            .iter()
            .filter(|b| b.0 >= from && b.0 <= to && b.1 > 0)
            .map(|b| (b.0 - cut_s, 100.0 * b.2 as f64 / b.1 as f64))
            .collect();
        let c = color(*k);
        chart
            .draw_series(LineSeries::new(line, c.stroke_width(3)))
            .map_err(|e| anyhow!("{e}"))?
            .label(k.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, 105.0)],
            BLACK.mix(0.5).stroke_width(1),
        )))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
