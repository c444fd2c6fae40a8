//! `conflux`: the node's control process.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use conflux_controlplane::node::config::{Config, Settings};
use conflux_controlplane::node::driver;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Conflux control process: registers with Guardian, joins the realm over NATS, sets
/// up streams with the peers policy allows, and serves the local API for `conflux-ctl`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file; flags override its settings.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let file = match &args.config {
        Some(p) => Settings::from_file(p)?,
        None => Settings::default(),
    };
    let cfg = Config::from_settings(file.overridden_by(args.settings))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(driver::run(cfg, shutdown_signal()))?;
    Ok(())
}
