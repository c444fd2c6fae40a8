//! The whole run: check which systems can run, then repetitions interleaved across systems
//! (each repetition visits every system, starting one further along each time so no
//! system always follows the same neighbour).

use std::path::PathBuf;
use std::time::Instant;

use super::machine::Machine;
use super::measure::{Repetition, repetition};
use super::procfs::load_average;
use super::results::{Params, RunResult, SystemResult};
use super::shell::quiet;
use super::systems::{Env, System};

/// Measures `systems` with `params`; progress goes to stderr.
pub fn run(systems: &[Box<dyn System>], env: &Env, params: &Params) -> anyhow::Result<RunResult> {
    let started = Instant::now();
    let load_start = load_average().unwrap_or(f64::NAN);
    let mut results: Vec<SystemResult> = systems
        .iter()
        .map(|s| {
            let check = s.check(env).map_err(|why| env.neutral(&why));
            if let Err(why) = &check {
                eprintln!("skip {}: {why}", s.name());
            }
            SystemResult {
                name: s.name(),
                role: s.role(),
                shape: s.shape(),
                version: check.as_ref().ok().cloned(),
                skipped: check.err(),
                samples: Vec::new(),
                failures: Vec::new(),
                commands: Vec::new(),
            }
        })
        .collect();
    let runnable: Vec<usize> = (0..systems.len())
        .filter(|&i| results[i].skipped.is_none())
        .collect();
    anyhow::ensure!(
        systems.is_empty() || !runnable.is_empty(),
        "no system can run here"
    );

    let mut topologies = Vec::new();
    for rep in 0..params.reps {
        for k in 0..runnable.len() {
            let i = runnable[(k + rep) % runnable.len()];
            let sys = &systems[i];
            eprint!("rep {}/{} {:<28} ", rep + 1, params.reps, sys.name());
            match repetition(sys.as_ref(), env, params, rep) {
                Ok(Repetition {
                    sample,
                    topology_commands,
                    system_commands,
                }) => {
                    eprintln!(
                        "tcp1 {:6.2} tcp4 {:6.2} udp {:6.2} Gbit/s  ping {:.3}/{:.3} ms  load {:.1}",
                        sample.tcp1_gbps,
                        sample.tcp4_gbps,
                        sample.udp_gbps,
                        sample.ping_loaded.p50_ms,
                        sample.ping_loaded.p99_ms,
                        sample.load_avg,
                    );
                    let r = &mut results[i];
                    if r.commands.is_empty() {
                        r.commands = system_commands.iter().map(|c| env.neutral(c)).collect();
                    }
                    if !topologies.iter().any(|(s, _)| *s == sys.shape()) {
                        let cmds = topology_commands.iter().map(|c| env.neutral(c)).collect();
                        topologies.push((sys.shape(), cmds));
                    }
                    r.samples.push(sample);
                }
                Err(e) => {
                    eprintln!("FAILED: {e:#}");
                    let why = env.neutral(&format!("rep {}: {e:#}", rep + 1));
                    results[i].failures.push(why);
                }
            }
        }
    }

    Ok(RunResult {
        date: quiet(std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        machine: Machine::this(),
        params: params.clone(),
        load: (load_start, load_average().unwrap_or(f64::NAN)),
        wall_secs: started.elapsed().as_secs_f64(),
        tools: tool_versions(),
        dataplane_args: env.dataplane_args.clone(),
        topologies,
        systems: results,
        scale: None,
    })
}

fn tool_versions() -> Vec<(String, String)> {
    [
        ("iperf3", "--version"),
        ("ping", "-V"),
        ("ip", "-V"),
        ("wg", "--version"),
    ]
    .into_iter()
    .filter_map(|(t, flag)| {
        let out = std::process::Command::new(t).arg(flag).output().ok()?;
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .lines()
        .next()?
        .trim()
        .to_owned();
        Some((t.to_owned(), text))
    })
    .collect()
}

/// What every run's tag starts with.
pub const TAG_PREFIX: &str = "cx";

/// A tag unique to this process, short enough to prefix interface names (at most 8 bytes
/// with pids below 2²⁴, leaving room for two more under the 15-byte limit).
pub fn run_tag() -> String {
    format!("{TAG_PREFIX}{:x}", std::process::id())
}

/// A fresh scratch directory for this run.
pub fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("conflux-perf-").tempdir()?)
}

/// Where the harness finds `boringtun-cli` when not told: the tools root `perf/run`
/// installs into, then PATH.
pub fn default_boringtun(workspace: &std::path::Path) -> PathBuf {
    let local = workspace.join("target/perf-tools/bin/boringtun-cli");
    if local.is_file() {
        local
    } else {
        PathBuf::from("boringtun-cli")
    }
}
