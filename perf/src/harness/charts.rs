//! PNG charts of a run: throughput, latency and CPU per GB for every system, as horizontal
//! bars (median) with min–max whiskers. Text is drawn with an embedded DejaVu Sans, so the
//! charts render the same on a machine without fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::results::{RunResult, Sample, SystemResult};
use super::stats::Spread;

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1400;
const ROW_PX: u32 = 78;
const NAME_AREA: u32 = 300;

static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // Both faces are valid TrueType files shipped inside the dejavu crate; a failure
        // here would only make text disappear, so it is not worth aborting the run.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// One bar series: a label, a colour, and the figure it plots.
struct Series {
    label: &'static str,
    color: RGBColor,
    figure: fn(&Sample) -> f64,
}

/// Writes `throughput.png`, `latency.png` and `cpu.png` into `dir`.
pub fn write_all(dir: &Path, run: &RunResult) -> anyhow::Result<()> {
    register_fonts();
    std::fs::create_dir_all(dir)?;
    let ran: Vec<&SystemResult> = run
        .systems
        .iter()
        .filter(|r| !r.samples.is_empty())
        .collect();
    if ran.is_empty() {
        return Ok(());
    }
    let subtitle = format!(
        "{} · {} cores · kernel {} · {} · median of {}, whiskers min–max",
        run.machine.cpu, run.machine.cores, run.machine.kernel, run.date, run.params.reps
    );
    bars(
        &dir.join("throughput.png"),
        "Throughput through each system (Gbit/s, log scale)",
        &subtitle,
        &ran,
        &[
            Series {
                label: "TCP -P1",
                color: RGBColor(31, 119, 180),
                figure: |s| s.tcp1_gbps,
            },
            Series {
                label: "TCP -P4",
                color: RGBColor(255, 127, 14),
                figure: |s| s.tcp4_gbps,
            },
            Series {
                label: "UDP, loss < 1 %",
                color: RGBColor(44, 160, 44),
                figure: |s| s.udp_gbps,
            },
        ],
    )?;
    bars(
        &dir.join("latency.png"),
        "Ping round trip (ms, log scale)",
        &subtitle,
        &ran,
        &[
            Series {
                label: "idle p50",
                color: RGBColor(158, 202, 225),
                figure: |s| s.ping_idle.p50_ms,
            },
            Series {
                label: "idle p99",
                color: RGBColor(49, 130, 189),
                figure: |s| s.ping_idle.p99_ms,
            },
            Series {
                label: "under load p50",
                color: RGBColor(253, 174, 107),
                figure: |s| s.ping_loaded.p50_ms,
            },
            Series {
                label: "under load p99",
                color: RGBColor(230, 85, 13),
                figure: |s| s.ping_loaded.p99_ms,
            },
        ],
    )?;
    bars(
        &dir.join("cpu.png"),
        "CPU seconds per GB moved, TCP -P1 (log scale)",
        &subtitle,
        &ran,
        &[
            Series {
                label: "all",
                color: RGBColor(99, 99, 99),
                figure: |s| s.cpu.total(),
            },
            Series {
                label: "system's processes",
                color: RGBColor(214, 39, 40),
                figure: |s| s.cpu.tunnel,
            },
            Series {
                label: "kernel (machine-wide)",
                color: RGBColor(148, 103, 189),
                figure: |s| s.cpu.kernel,
            },
            Series {
                label: "iperf3 ends",
                color: RGBColor(140, 86, 75),
                figure: |s| s.cpu.iperf,
            },
        ],
    )?;
    Ok(())
}

/// Grouped horizontal bars on a log axis: one group per system (top to bottom in report
/// order), one bar per series.
fn bars(
    path: &Path,
    title: &str,
    subtitle: &str,
    ran: &[&SystemResult],
    series: &[Series],
) -> anyhow::Result<()> {
    let n = ran.len();
    let spreads: Vec<Vec<Option<Spread>>> = ran
        .iter()
        .map(|r| {
            series
                .iter()
                .map(|s| r.spread(s.figure).filter(|x| x.max > 0.0))
                .collect()
        })
        .collect();
    let positive = spreads
        .iter()
        .flatten()
        .flatten()
        .flat_map(|s| [s.min, s.max])
        .filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return Ok(());
    }
    // From a whole decade, with room right of the largest bar for its value.
    let x_lo = 10f64.powf((lo / 1.5).log10().floor());
    let x_hi = hi * 2.5;

    let height = 150 + ROW_PX * n as u32 + 30 * series.len() as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let (header, body) = root.split_vertically(115);
    header
        .draw(&Text::new(
            title,
            (20, 12),
            (FONT, 28).into_font().style(FontStyle::Bold),
        ))
        .map_err(draw_err)?;
    header
        .draw(&Text::new(
            subtitle,
            (20, 50),
            (FONT, 16).into_font().color(&RGBColor(90, 90, 90)),
        ))
        .map_err(draw_err)?;
    legend(&header, series, (20, 84))?;

    let mut chart = ChartBuilder::on(&body)
        .margin_right(30)
        .margin_bottom(10)
        .x_label_area_size(45)
        .y_label_area_size(NAME_AREA)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..n as f64)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|_| String::new())
        .x_label_style((FONT, 16))
        .x_label_formatter(&|v| trim_number(*v))
        .draw()
        .map_err(draw_err)?;

    let band = 0.8 / series.len() as f64;
    let value_font = TextStyle::from((FONT, 14).into_font());
    for (k, s) in series.iter().enumerate() {
        let color = s.color;
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        let mut labels = Vec::new();
        for (i, row) in spreads.iter().enumerate() {
            let Some(v) = row[k] else { continue };
            // Row 0 at the top.
            let y0 = (n - 1 - i) as f64 + 0.9 - band * (k + 1) as f64;
            let (y1, ym) = (y0 + band * 0.92, y0 + band * 0.46);
            rects.push(Rectangle::new(
                [(x_lo, y0), (v.median.max(x_lo), y1)],
                color.filled(),
            ));
            if v.max > v.min {
                whiskers.push(PathElement::new(
                    vec![(v.min.max(x_lo), ym), (v.max, ym)],
                    BLACK.stroke_width(2),
                ));
            }
            labels.push(Text::new(
                trim_number(v.median),
                (v.max.max(v.median) * 1.15, ym),
                value_font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
            ));
        }
        chart.draw_series(rects).map_err(draw_err)?;
        chart.draw_series(whiskers).map_err(draw_err)?;
        chart.draw_series(labels).map_err(draw_err)?;
    }

    draw_names(&body, &chart, ran, x_lo)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

/// One line of legend: a colour swatch and the series label, left to right from `at`.
fn legend(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    series: &[Series],
    at: (i32, i32),
) -> anyhow::Result<()> {
    let font = TextStyle::from((FONT, 16).into_font());
    let (mut x, y) = at;
    for s in series {
        area.draw(&Rectangle::new(
            [(x, y), (x + 18, y + 14)],
            s.color.filled(),
        ))
        .map_err(draw_err)?;
        area.draw(&Text::new(s.label, (x + 26, y - 1), font.clone()))
            .map_err(draw_err)?;
        let (w, _) = area.estimate_text_size(s.label, &font).map_err(draw_err)?;
        x += 26 + w as i32 + 30;
    }
    Ok(())
}

/// System names, right-aligned against the axis, centred on their group.
fn draw_names<X, Y>(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    chart: &ChartContext<'_, BitMapBackend<'_>, Cartesian2d<X, Y>>,
    ran: &[&SystemResult],
    x_lo: f64,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let n = ran.len();
    let (ox, oy) = area.get_base_pixel();
    let font = TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, r) in ran.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(x_lo, (n - 1 - i) as f64 + 0.5));
        area.draw(&Text::new(
            r.name.clone(),
            (px - ox - 12, py - oy),
            font.clone(),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// A number with at most three significant digits and no trailing zeros.
fn trim_number(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        (2.0 - v.log10().floor()).clamp(0.0, 6.0) as usize
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn draw_err<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::trim_number;

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(trim_number(21.43), "21.4");
        assert_eq!(trim_number(0.4812), "0.481");
        assert_eq!(trim_number(0.045), "0.045");
        assert_eq!(trim_number(100.0), "100");
        assert_eq!(trim_number(1.0), "1");
        assert_eq!(trim_number(0.001), "0.001");
    }
}
