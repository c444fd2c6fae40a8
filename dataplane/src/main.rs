//! `conflux-dataplane`: the node's privileged packet mover.
//!
//! - `conflux-dataplane run --tun cfx0 --address 100.64.0.1/24 [--address6 fd7a:cf::1/64]
//!   --listen 0.0.0.0:51820 --socket /run/conflux/dataplane.sock`: opens the TUN queues and
//!   UDP sockets, starts one worker per core and serves the rings to a control process. A
//!   wildcard listen address (`0.0.0.0` or `[::]`) serves IPv4 and IPv6 underlays alike.
//! - `conflux-dataplane static --config node.toml`: attaches to a running data plane and
//!   installs a static configuration (see `conflux_dataplane::static_config`).
//! - `conflux-dataplane snapshot --socket PATH`: prints the running data plane's tables and
//!   counters as JSON (it attaches, so not while another control process is attached).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use conflux_dataplane::control::create_worker_rings;
use conflux_dataplane::control::server::Server;
use conflux_dataplane::driver::Driver;
use conflux_dataplane::hop::mixed::Mixed;
use conflux_dataplane::hop::open::fingerprint_text;
use conflux_dataplane::static_config::StaticConfig;
use conflux_dataplane::tether::{LocalCertificate, TUN_MTU};
use conflux_dataplane::tun::{self, TunQueue};
use conflux_dataplane::udp::{self, UdpOptions};
use conflux_dataplane::worker::{Worker, WorkerSetup};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Conflux data plane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs the data plane.
    Run(RunArgs),
    /// Attaches to a running data plane and installs a static configuration.
    Static {
        /// The TOML file.
        #[arg(long)]
        config: PathBuf,
        /// Install, print the snapshot and exit instead of staying attached.
        #[arg(long)]
        once: bool,
    },
    /// Prints a running data plane's tables and counters as JSON.
    Snapshot {
        /// The data plane's control socket.
        #[arg(long)]
        socket: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// TUN interface name.
    #[arg(long, default_value = "cfx0")]
    tun: String,
    /// Overlay IPv4 address and prefix length of the interface, e.g. 100.64.0.1/24.
    #[arg(long)]
    address: Option<String>,
    /// Overlay IPv6 address and prefix length, added beside the IPv4 one, e.g. fd7a:cf::1/64.
    #[arg(long)]
    address6: Option<String>,
    /// TUN MTU. The default keeps one full-size inner packet in one WebRTC DATA chunk
    /// and one UDP datagram on a 1,500-byte underlay (see `conflux_dataplane::tether`).
    #[arg(long, default_value_t = TUN_MTU as u32)]
    mtu: u32,
    /// UDP address to bind (the port is shared with SO_REUSEPORT, or the first of one per
    /// worker with --port-per-worker). A wildcard (0.0.0.0 or [::]) binds one dual-stack
    /// socket per worker that serves IPv4 and IPv6 peers.
    #[arg(long, default_value = "0.0.0.0:51820")]
    listen: SocketAddr,
    /// Workers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
    /// Bind port + i for worker i instead of sharing the port.
    #[arg(long)]
    port_per_worker: bool,
    /// SO_MARK on the UDP sockets (0: none).
    #[arg(long, default_value_t = 0)]
    mark: u32,
    /// Do not ask the kernel for TSO/USO on the TUN queues.
    #[arg(long)]
    no_offload: bool,
    /// Do not enable UDP GRO.
    #[arg(long)]
    no_gro: bool,
    /// The control socket.
    #[arg(long, default_value = "/run/conflux/dataplane.sock")]
    socket: PathBuf,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Parses `a.b.c.d/len` (`--address`).
fn parse_v4(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (a, l) = s
        .split_once('/')
        .with_context(|| format!("--address {s:?}: must be a.b.c.d/len"))?;
    if a.parse::<Ipv6Addr>().is_ok() {
        anyhow::bail!("--address {s:?} is IPv6; give it with --address6");
    }
    let ip = a
        .parse()
        .with_context(|| format!("--address {s:?}: {a:?} is not an IPv4 address"))?;
    let len: u8 = l
        .parse()
        .with_context(|| format!("--address {s:?}: {l:?} is not a prefix length"))?;
    anyhow::ensure!(len <= 32, "--address {s:?}: prefix length {len} is past 32");
    Ok((ip, len))
}

/// Parses `addr/len` (`--address6`).
fn parse_v6(s: &str) -> anyhow::Result<(Ipv6Addr, u8)> {
    let (a, l) = s
        .split_once('/')
        .with_context(|| format!("--address6 {s:?}: must be address/len"))?;
    if a.parse::<Ipv4Addr>().is_ok() {
        anyhow::bail!("--address6 {s:?} is IPv4; give it with --address");
    }
    let ip = a
        .parse()
        .with_context(|| format!("--address6 {s:?}: {a:?} is not an IPv6 address"))?;
    let len: u8 = l
        .parse()
        .with_context(|| format!("--address6 {s:?}: {l:?} is not a prefix length"))?;
    anyhow::ensure!(
        len <= 128,
        "--address6 {s:?}: prefix length {len} is past 128"
    );
    Ok((ip, len))
}

fn pin(core: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = a.workers.unwrap_or(cores).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let mut queues = Vec::new();
    for _ in 0..workers {
        queues.push(TunQueue::open(&a.tun, !a.no_offload)?);
    }
    let addr = a.address.as_deref().map(parse_v4).transpose()?;
    let addr6 = a.address6.as_deref().map(parse_v6).transpose()?;
    tun::configure(&a.tun, a.mtu, addr)?;
    if let Some((ip, len)) = addr6 {
        // A host with IPv6 switched off still carries the IPv4 overlay.
        if let Err(e) = tun::add_ipv6(&a.tun, ip, len) {
            tracing::error!(tun = %a.tun, "IPv6 overlay address {ip}/{len} not set: {e}");
        }
    }
    tracing::info!(tun = %a.tun, workers, offloads = ?queues[0].offloads, "TUN ready");

    // One certificate for every worker: peers expect one fingerprint per node.
    let certificate = LocalCertificate::generate()?;
    let fingerprint = fingerprint_text(&certificate.fingerprint());
    tracing::info!(dtls_fingerprint = %fingerprint, "DTLS certificate ready");

    let mut sets = Vec::new();
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for (i, q) in queues.into_iter().enumerate() {
        let mut bind = a.listen;
        if a.port_per_worker {
            bind.set_port(a.listen.port() + i as u16);
        }
        let sock = udp::open(&UdpOptions {
            bind,
            reuse_port: !a.port_per_worker,
            mark: a.mark,
            gro: !a.no_gro,
        })?;
        let (end, set) = create_worker_rings()?;
        let (tx, rx) = crossbeam::channel::bounded(4);
        sets.push(set);
        senders.push(tx);
        let stop = stop.clone();
        let pin_to = (!a.no_pin).then_some(i % cores);
        let tun_fd = q.fd().try_clone()?;
        let certificate = certificate.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    if let Some(c) = pin_to {
                        pin(c);
                    }
                    let setup = WorkerSetup {
                        index: i as u16,
                        tun: tun_fd,
                        udp: sock,
                        rings: end,
                        commands: rx,
                        transport: Mixed::new(),
                        listen: bind,
                        certificate: Some(certificate),
                        stop: stop.clone(),
                    };
                    let res = Worker::new(setup).and_then(|mut w| w.run());
                    if let Err(e) = &res {
                        tracing::error!(worker = i, "worker stopped: {e}");
                        stop.store(true, Ordering::Relaxed);
                    }
                    res
                })?,
        );
    }
    let mut server = Server::bind(&a.socket, sets, senders)?;
    server.set_dtls_fingerprint(fingerprint);
    tracing::info!(socket = %a.socket.display(), "serving control socket");
    while !STOP.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        server.poll_once(std::time::Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_file(&a.socket);
    let mut failed = false;
    for t in threads {
        failed |= !matches!(t.join(), Ok(Ok(())));
    }
    anyhow::ensure!(!failed, "a worker failed");
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
    install_signals();
    match Args::parse().command {
        Cmd::Run(a) => run(a),
        Cmd::Static { config, once } => {
            let cfg = StaticConfig::load(&config)?;
            let mut d = Driver::start(cfg)?;
            tracing::info!("static configuration installed");
            if once {
                println!("{}", serde_json::to_string_pretty(d.snapshot())?);
                return Ok(());
            }
            d.run(&STOP)?;
            Ok(())
        }
        Cmd::Snapshot { socket } => {
            let attached = conflux_dataplane::control::client::attach(&socket)?;
            println!("{}", serde_json::to_string_pretty(&attached.snapshot)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_addresses_parse_by_family_with_clear_errors() {
        assert_eq!(
            parse_v4("100.64.0.1/24").unwrap(),
            ("100.64.0.1".parse().unwrap(), 24)
        );
        assert_eq!(
            parse_v6("fd7a:cf::1/64").unwrap(),
            ("fd7a:cf::1".parse().unwrap(), 64)
        );
        let e = parse_v4("fd7a:cf::1/64").unwrap_err().to_string();
        assert!(e.contains("is IPv6; give it with --address6"), "{e}");
        let e = parse_v6("10.0.0.1/24").unwrap_err().to_string();
        assert!(e.contains("is IPv4; give it with --address"), "{e}");
        assert!(parse_v4("100.64.0.1/33").is_err());
        assert!(parse_v6("fd7a:cf::1/129").is_err());
        assert!(parse_v6("fd7a:cf::1").is_err());
        assert!(parse_v4("100.64.0/24").is_err());
    }
}
