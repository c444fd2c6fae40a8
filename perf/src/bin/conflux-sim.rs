//! `conflux-sim`: runs the router simulator over a topology, sweeping the offered load for
//! Q-routing, latency-only and shortest path, optionally cutting the busiest link, and
//! prints Markdown tables and writes PNG charts.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use clap::Parser;
use conflux_perf::sim::report::{self, LoadPoint};
use conflux_perf::sim::{self, Cut, RouterKind, SimConfig, Topology};

/// Discrete-event simulation of the Conflux router against shortest path and a
/// latency-only choice.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// `grid:WxH[:holes]`, `rgg:N[:radius]`, or an edge-list file (`u v [latency_ms]
    /// [capacity_pps]` per line, `#` comments).
    #[arg(long, default_value = "rgg:100")]
    topology: String,
    /// Seed of the topology, traffic and start times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Offered loads to sweep, packets per second across the network.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,4000,6000,8000"
    )]
    loads: Vec<f64>,
    /// Also cut the busiest link at this load and measure recovery.
    #[arg(long)]
    cut_load: Option<f64>,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    measure: f64,
    /// Queue per port, packets.
    #[arg(long, default_value_t = 50)]
    buffer: usize,
    /// Regions every node excludes for relays (`west`, `central`, `east`).
    #[arg(long)]
    exclude: Vec<String>,
    /// Where to write the charts (`<dir>/router-<name>-load.png`, `-cut.png`).
    #[arg(long)]
    chart_dir: Option<PathBuf>,
    /// Name in chart file names (default: from the topology).
    #[arg(long)]
    name: Option<String>,
    /// Runs at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topo = Topology::from_spec(&args.topology, args.seed)
        .with_context(|| format!("topology {}", args.topology))?;
    let config = |kind, load| SimConfig {
        warmup_s: args.warmup,
        measure_s: args.measure,
        buffer: args.buffer,
        exclude: args.exclude.clone(),
        ..SimConfig::new(kind, load, args.seed)
    };
    println!(
        "## {} ({} nodes, {} links), seed {}\n",
        topo.name,
        topo.len(),
        topo.links.len(),
        args.seed
    );
    let mut jobs: Vec<SimConfig> = Vec::new();
    for &load in &args.loads {
        for kind in RouterKind::ALL {
            jobs.push(config(kind, load));
        }
    }
    let cut = args.cut_load.map(|load| {
        let link = topo.busiest_link().unwrap_or(0);
        let at_s = args.warmup + args.measure / 2.0;
        (load, link, at_s)
    });
    if let Some((load, link, at_s)) = cut {
        for kind in RouterKind::ALL {
            jobs.push(SimConfig {
                cut: Some(Cut {
                    link,
                    at_s,
                    restore_s: None,
                }),
                ..config(kind, load)
            });
        }
    }
    let results = run_all(&topo, &jobs, args.jobs.max(1));
    let mut points = Vec::new();
    let mut cut_runs = Vec::new();
    for (cfg, stats) in jobs.iter().zip(results) {
        if cfg.cut.is_some() {
            cut_runs.push((cfg.router, stats));
        } else {
            points.push(LoadPoint {
                load_pps: cfg.load_pps,
                kind: cfg.router,
                stats,
            });
        }
    }
    println!("{}", report::load_table(&points));
    let name = args.name.clone().unwrap_or_else(|| slug(&args.topology));
    if let Some(dir) = &args.chart_dir {
        let path = dir.join(format!("router-{name}-load.png"));
        let title = format!("{}: delivery time and loss against load", topo.name);
        report::load_chart(&path, &title, &points)?;
        println!("chart: {}\n", path.display());
    }
    if let Some((load, link, at_s)) = cut {
        let l = &topo.links[link];
        println!(
            "### Cut of link {}–{} at {at_s} s, load {load} pkt/s\n",
            topo.names[l.a], topo.names[l.b]
        );
        println!("{}", report::cut_table(&cut_runs));
        if let Some(dir) = &args.chart_dir {
            let path = dir.join(format!("router-{name}-cut.png"));
            let title = format!("{}: delivery around a cut of the busiest link", topo.name);
            report::cut_chart(&path, &title, &cut_runs, at_s, (1.0, 4.0))?;
            println!("chart: {}\n", path.display());
        }
    }
    Ok(())
}

/// Runs every configuration, `jobs` at a time, in order of `jobs`.
fn run_all(topo: &Topology, configs: &[SimConfig], jobs: usize) -> Vec<sim::RunStats> {
    let next = Mutex::new(0usize);
    let out = Mutex::new(vec![None; configs.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(cfg) = configs.get(i) else {
                        break;
                    };
                    let stats = sim::run(topo, cfg);
                    eprintln!(
                        "{:>13} load {:>6}{}: mean {:.1} ms, p99 {:.1} ms, lost {:.2} % \
                         (queue {}, cut {}, no route {}, in flight {}), {} route changes, {} path set-ups",
                        cfg.router.label(),
                        cfg.load_pps,
                        if cfg.cut.is_some() { " (cut)" } else { "" },
                        stats.mean_ms,
                        stats.p99_ms,
                        100.0 * stats.drop_rate(),
                        stats.overflow,
                        stats.link_down,
                        stats.no_route,
                        stats.stuck,
                        stats.route_changes,
                        stats.path_setups
                    );
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(stats);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn slug(spec: &str) -> String {
    let path = std::path::Path::new(spec);
    let base = match path.file_stem() {
        Some(stem) if path.is_file() => stem.to_string_lossy().into_owned(),
        _ => spec.to_string(),
    };
    base.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
