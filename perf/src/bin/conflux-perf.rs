//! `conflux-perf`: measures Conflux side by side with the bare veth path, boringtun,
//! wireguard-go, Nebula and kernel WireGuard in network namespaces, and writes the report
//! and charts; then Conflux's scale figures (memory per installed stream, control-plane
//! mesh convergence). `perf/run` installs what it needs, builds, and runs this. Needs root.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use conflux_perf::harness::results::{Params, RunResult};
use conflux_perf::harness::scale::{self, ScaleParams, ScaleResult};
use conflux_perf::harness::systems::{self, Env, System};
use conflux_perf::harness::{charts, netns, report, run};

/// Side-by-side throughput, latency, CPU and memory of Conflux and other tunnels.
#[derive(Parser, Debug)]
#[command(version, about, args_override_self = true)]
struct Args {
    /// Short run of Conflux and the bare veth path only (what the test suite runs).
    #[arg(long)]
    quick: bool,
    /// Repetitions of every system (default 3).
    #[arg(long)]
    reps: Option<usize>,
    /// Measure only systems whose name contains one of these (case-insensitive); `scale`
    /// names the scale part (memory per stream, mesh convergence).
    #[arg(long)]
    only: Vec<String>,
    /// Directory of the report: `<out>/RESULTS.md` (its generated block is replaced) and
    /// `<out>/charts/*.png`.
    #[arg(long, default_value = "perf")]
    out: PathBuf,
    /// Where to keep the raw figures (default `<out>/results.json`; a run of the scale part
    /// alone writes `<stem>-scale.json` beside it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Remake the report and charts from a saved results.json without measuring.
    #[arg(long)]
    from_json: Option<PathBuf>,
    /// Where the Conflux binaries are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where `conflux`, `guardian` and `conflux-ctl` are (default: --bin-dir).
    #[arg(long)]
    control_bin_dir: Option<PathBuf>,
    /// The boringtun binary (default: target/perf-tools/bin/boringtun-cli, else PATH).
    #[arg(long)]
    boringtun: Option<PathBuf>,
    /// An extra argument for every `conflux-dataplane run` (repeat for several, e.g.
    /// `--dataplane-arg=--workers --dataplane-arg=1`).
    #[arg(long, allow_hyphen_values = true)]
    dataplane_arg: Vec<String>,
    /// List the systems and whether each can run here, then exit.
    #[arg(long)]
    list: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| args.out.join("results.json"));
    let result = match &args.from_json {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => {
            netns::install_cleanup()?;
            netns::remove_stale(run::TAG_PREFIX);
            let Some(result) = measure(&args)? else {
                return Ok(());
            };
            // A run of the scale part alone keeps its figures beside the full run's, which
            // stay whole for `--from-json`.
            let json = if result.systems.is_empty() {
                let stem = json.file_stem().unwrap_or_default().to_string_lossy();
                json.with_file_name(format!("{stem}-scale.json"))
            } else {
                json
            };
            if let Some(dir) = json.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&json, serde_json::to_string_pretty(&result)?)?;
            eprintln!("figures: {}", json.display());
            result
        }
    };
    write_report(&args.out, &result)?;
    print_summary(&result);
    eprintln!(
        "report: {}  charts: {}",
        args.out.join("RESULTS.md").display(),
        args.out.join("charts").display(),
    );
    Ok(())
}

fn measure(args: &Args) -> anyhow::Result<Option<RunResult>> {
    let exe = std::env::current_exe()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let scratch = run::scratch_dir()?;
    let bin_dir = args
        .bin_dir
        .clone()
        .or_else(|| exe.parent().map(Path::to_owned))
        .context("no directory for the Conflux binaries")?;
    let env = Env {
        tag: run::run_tag(),
        work: scratch.path().to_owned(),
        control_bin_dir: args.control_bin_dir.clone().unwrap_or(bin_dir.clone()),
        bin_dir,
        boringtun: args
            .boringtun
            .clone()
            .unwrap_or_else(|| run::default_boringtun(workspace)),
        dataplane_args: args.dataplane_arg.clone(),
    };
    let mut params = if args.quick {
        Params::quick()
    } else {
        Params::full()
    };
    if let Some(r) = args.reps {
        params.reps = r.max(1);
    }
    let chosen: Vec<Box<dyn System>> = systems::all()
        .into_iter()
        .filter(|s| !args.quick || s.quick())
        .filter(|s| {
            args.only.is_empty()
                || args
                    .only
                    .iter()
                    .any(|o| s.name().to_lowercase().contains(&o.to_lowercase()))
        })
        .collect();
    let with_scale =
        args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case("scale"));
    if args.list {
        for s in &chosen {
            match s.check(&env) {
                Ok(v) => println!("{:<30} {v}", s.name()),
                Err(why) => println!("{:<30} cannot run: {why}", s.name()),
            }
        }
        if with_scale {
            match scale::check(&env) {
                Ok(()) => println!("{:<30} ready", "scale"),
                Err(why) => println!("{:<30} cannot run: {why}", "scale"),
            }
        }
        return Ok(None);
    }
    anyhow::ensure!(
        !chosen.is_empty() || with_scale,
        "nothing matches --only {:?}",
        args.only
    );
    let mut result = run::run(&chosen, &env, &params)?;
    if with_scale {
        let scale_params = if args.quick {
            ScaleParams::quick()
        } else {
            ScaleParams::full()
        };
        result.scale = Some(match scale::check(&env) {
            Ok(()) => scale::run(&env, &scale_params)?,
            Err(why) => {
                eprintln!("skip scale: {why}");
                ScaleResult {
                    params: scale_params,
                    streams: None,
                    mesh: None,
                    failures: vec![env.neutral(&format!("not run: {why}"))],
                    commands: Vec::new(),
                }
            }
        });
    }
    let failed_scale = result
        .scale
        .as_ref()
        .is_some_and(|s| !s.failures.is_empty());
    if failed_scale || result.systems.iter().any(|s| !s.failures.is_empty()) {
        let kept = scratch.keep();
        eprintln!(
            "logs and reports of the failed repetitions: {}",
            kept.display()
        );
    }
    Ok(Some(result))
}

/// Writes the blocks of `RESULTS.md` that this run measured, and its charts.
fn write_report(out: &Path, result: &RunResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join("RESULTS.md");
    if !result.systems.is_empty() {
        charts::write_all(&out.join("charts"), result)?;
        report::write(&path, result, "charts")?;
    }
    if let Some(s) = &result.scale {
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let block = scale::report::block(result, s);
        std::fs::write(&path, scale::report::splice(&old, &block))?;
    }
    Ok(())
}

fn print_summary(r: &RunResult) {
    if r.systems.iter().all(|s| s.samples.is_empty()) {
        return;
    }
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>15} {:>9}",
        "system (medians)", "TCP-P1", "TCP-P4", "UDP", "p50/p99 loaded", "CPU s/GB"
    );
    for s in r.systems.iter().filter(|s| !s.samples.is_empty()) {
        let m =
            |f: fn(&conflux_perf::harness::results::Sample) -> f64| s.median(f).unwrap_or(f64::NAN);
        println!(
            "{:<30} {:>8.2} {:>8.2} {:>8.2} {:>7.3}/{:<7.3} {:>9.2}",
            s.name,
            m(|x| x.tcp1_gbps),
            m(|x| x.tcp4_gbps),
            m(|x| x.udp_gbps),
            m(|x| x.ping_loaded.p50_ms),
            m(|x| x.ping_loaded.p99_ms),
            m(|x| x.cpu.total()),
        );
    }
}
