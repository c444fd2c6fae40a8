//! `conflux-ctl`: the operator CLI over a node's local API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conflux_controlplane::ctl::{client, proto, render};
use conflux_controlplane::node::config::DEFAULT_API_SOCKET;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Inspect and steer a running Conflux node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The node's local API socket.
    #[arg(long, env = "CONFLUX_SOCKET", default_value = DEFAULT_API_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The node's identity, NATS connection and counters.
    Status,
    /// Peers the node trusts, with their policy verdict.
    Peers,
    /// Established streams and their key fingerprints.
    Streams,
    /// Routes to other nodes: direct or through which relay, and their state.
    Routes,
    /// Tethers to next hops, with their state, users and round-trip time.
    Tethers,
    /// The node's taints.
    Taint {
        #[command(subcommand)]
        op: TaintOp,
    },
    /// Which regions relays may be in: shown, or replaced with `geo set`.
    Geo {
        #[command(subcommand)]
        op: Option<GeoOp>,
    },
}

#[derive(Subcommand, Debug)]
enum GeoOp {
    /// Show the policy and the known relays' regions.
    Show,
    /// Replace the policy (an empty list clears it).
    Set {
        /// Regions whose relays never carry this node's traffic.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        /// Regions whose relays are favoured.
        #[arg(long, value_delimiter = ',')]
        prefer: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum TaintOp {
    /// List the taints.
    Ls,
    /// Add a taint (re-certified by Guardian and re-announced).
    Add {
        /// The taint.
        taint: String,
    },
    /// Remove a taint (re-certified by Guardian and re-announced).
    Rm {
        /// The taint.
        taint: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conflux-ctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conflux-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<String> {
    let mut c = client::connect(&args.socket).await?;
    let json = args.json;
    let out = match args.command {
        Command::Status => {
            let r = c
                .status(proto::StatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            pick(json, &r, render::status)
        }
        Command::Peers => {
            let r = c
                .peers(proto::PeersRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            pick(json, &r, render::peers)
        }
        Command::Streams => {
            let r = c
                .streams(proto::StreamsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            pick(json, &r, render::streams)
        }
        Command::Routes | Command::Tethers => {
            let r = c
                .overlay(proto::OverlayRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if matches!(args.command, Command::Routes) {
                pick(json, &r, render::routes)
            } else {
                pick(json, &r, render::tethers)
            }
        }
        Command::Taint { op } => {
            let r = match op {
                TaintOp::Ls => c.taint_list(proto::TaintListRequest {}).await,
                TaintOp::Add { taint } => c.taint_add(proto::TaintChange { taint }).await,
                TaintOp::Rm { taint } => c.taint_remove(proto::TaintChange { taint }).await,
            }
            .map_err(status_error)?
            .into_inner();
            pick(json, &r, render::taint_set)
        }
        Command::Geo { op } => {
            let request = match op {
                None | Some(GeoOp::Show) => proto::GeoRequest::default(),
                Some(GeoOp::Set { exclude, prefer }) => proto::GeoRequest {
                    set: true,
                    exclude,
                    prefer,
                },
            };
            let r = c.geo(request).await.map_err(status_error)?.into_inner();
            pick(json, &r, render::geo)
        }
    };
    Ok(out)
}

fn pick<T: serde::Serialize>(json: bool, v: &T, table: fn(&T) -> String) -> String {
    if json { render::json(v) } else { table(v) }
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}
