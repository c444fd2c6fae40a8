//! `conflux-dataplane`: the node's privileged packet mover.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Conflux data plane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let _args = Args::parse();
    anyhow::bail!("the data plane's workers are not built yet")
}
