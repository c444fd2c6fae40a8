//! `guardian`: the Conflux authentication service.
//!
//! `guardian nats-config` prepares nats-server (operator keys and a server config);
//! `guardian serve` runs the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use conflux_controlplane::guardian::natsauth::{ServerOptions, write_server_config};
use conflux_controlplane::guardian::oauth::OAuthConfig;
use conflux_controlplane::guardian::{self, Config, Guardian, Lifetimes, NatsConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Conflux Guardian: realms, tokens, node certificates and NATS credentials.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API.
    Serve(Box<Serve>),
    /// Write operator keys and a nats-server configuration (operator mode, full resolver,
    /// JetStream) for this Guardian. Re-running keeps the keys.
    NatsConfig(NatsConfigArgs),
}

#[derive(Args, Debug)]
struct Serve {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Data directory (signing keys, default database).
    #[arg(
        long,
        env = "GUARDIAN_DATA_DIR",
        default_value = "/var/lib/conflux-guardian"
    )]
    data_dir: PathBuf,
    /// SQLite database file (default: DATA_DIR/guardian.db).
    #[arg(long, env = "GUARDIAN_DB")]
    db: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The admin token (prefer the environment or a file: arguments are visible to
    /// other local users).
    #[arg(long, env = "GUARDIAN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// File holding the admin token.
    #[arg(long, conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// OAuth: the identity provider's JWKS URL (enables OAuth registration).
    #[arg(long, requires_all = ["oauth_issuer", "oauth_audience"])]
    oauth_jwks_url: Option<String>,
    /// OAuth: required issuer (`iss`).
    #[arg(long)]
    oauth_issuer: Option<String>,
    /// OAuth: required audience (`aud`).
    #[arg(long)]
    oauth_audience: Option<String>,
    /// OAuth: seconds a fetched JWKS is cached.
    #[arg(long, default_value_t = 300)]
    oauth_cache_ttl: u64,
    /// nats-server URL (enables NATS: realm accounts, credentials, directory).
    #[arg(long, requires = "nats_dir")]
    nats_url: Option<String>,
    /// Directory written by `guardian nats-config`.
    #[arg(long)]
    nats_dir: Option<PathBuf>,
    /// Node certificate lifetime, seconds.
    #[arg(long, default_value_t = Lifetimes::default().certificate)]
    cert_lifetime: u64,
    /// Access JWT lifetime, seconds.
    #[arg(long, default_value_t = Lifetimes::default().access)]
    access_lifetime: u64,
    /// Refresh JWT lifetime, seconds.
    #[arg(long, default_value_t = Lifetimes::default().refresh)]
    refresh_lifetime: u64,
    /// Conflux token lifetime, seconds from the node's last registration.
    #[arg(long, default_value_t = Lifetimes::default().conflux_token)]
    conflux_token_lifetime: u64,
}

#[derive(Args, Debug)]
struct NatsConfigArgs {
    /// Directory for the keys, the config and server state.
    #[arg(long)]
    dir: PathBuf,
    /// Client address nats-server listens on.
    #[arg(long, default_value = "127.0.0.1:4222")]
    listen: String,
    /// JetStream storage directory (default: DIR/jetstream).
    #[arg(long)]
    jetstream_dir: Option<PathBuf>,
    /// Server name.
    #[arg(long, default_value = "conflux")]
    server_name: String,
}

fn now() -> u64 {
    guardian::system_clock()()
}

fn admin_token(s: &Serve) -> anyhow::Result<Zeroizing<String>> {
    if let Some(t) = &s.admin_token {
        return Ok(Zeroizing::new(t.clone()));
    }
    if let Some(path) = &s.admin_token_file {
        let t = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        return Ok(Zeroizing::new(t.trim().to_owned()));
    }
    anyhow::bail!("give the admin token with --admin-token-file or GUARDIAN_ADMIN_TOKEN")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn serve(s: Serve) -> anyhow::Result<()> {
    let token = admin_token(&s)?;
    let oauth = s.oauth_jwks_url.clone().map(|jwks_url| OAuthConfig {
        jwks_url,
        issuer: s.oauth_issuer.clone().unwrap_or_default(),
        audience: s.oauth_audience.clone().unwrap_or_default(),
        cache_ttl: s.oauth_cache_ttl,
        refetch_interval: 5,
    });
    let nats = s.nats_url.clone().map(|url| NatsConfig {
        url,
        dir: s.nats_dir.clone().unwrap_or_default(),
    });
    let cfg = Config {
        data_dir: s.data_dir.clone(),
        db: s.db.clone(),
        in_memory: false,
        admin_token: token.to_string(),
        oauth,
        nats,
        lifetimes: Lifetimes {
            certificate: s.cert_lifetime,
            access: s.access_lifetime,
            refresh: s.refresh_lifetime,
            conflux_token: s.conflux_token_lifetime,
        },
    };
    let g = Guardian::open(cfg, guardian::system_clock()).await?;
    let _sync = g.spawn_sync();
    let app = guardian::http::router(Arc::clone(&g));

    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let listener =
        std::net::TcpListener::bind(s.listen).with_context(|| format!("binding {}", s.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let service = app.into_make_service();
    match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            println!("guardian listening on https://{addr}");
            tracing::info!(%addr, "listening (TLS)");
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(service)
                .await?;
        }
        _ => {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "serving plain HTTP on a non-loopback address; give --tls-cert and --tls-key");
            }
            println!("guardian listening on http://{addr}");
            tracing::info!(%addr, "listening");
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Several TLS backends are linked in (through reqwest and async-nats); name the one the
    // process uses so rustls never has to guess.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::NatsConfig(a) => {
            let written = write_server_config(
                &ServerOptions {
                    dir: a.dir,
                    listen: a.listen,
                    jetstream_dir: a.jetstream_dir,
                    server_name: a.server_name,
                },
                now(),
            )?;
            println!("wrote {}", written.config.display());
            println!("operator       {}", written.operator);
            println!("system account {}", written.system_account);
            println!("run: nats-server -c {}", written.config.display());
            Ok(())
        }
        Command::Serve(s) => tokio::runtime::Runtime::new()?.block_on(serve(*s)),
    }
}
