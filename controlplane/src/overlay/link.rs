//! The control process's link to its data plane: starting `conflux-dataplane` (or finding
//! a running one), attaching to its rings, and a pump thread that writes commands to every
//! worker and reads their reports.
//!
//! The data plane outlives the control process on purpose: if the control process dies,
//! established streams keep flowing until their keys expire, and the next control process
//! attaches to the same rings. Only an orderly stop of the control process stops it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command as Process};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conflux_dataplane::control::client::{Attached, ControlEnd, attach};
use conflux_dataplane::control::snapshot::Snapshot;
use conflux_dataplane::control::{
    SIGNAL_REFLEXIVE, SIGNAL_STUN_CONTROL, SIGNAL_TETHER_CANDIDATES, SIGNAL_TETHER_OPEN,
};
use conflux_dataplane::counters::monotonic_ns;
use conflux_shared::id::{Label, StreamId};
use conflux_shared::wire::record::control::{policy_flags, stream_flags};
use conflux_shared::wire::record::{
    AllowedPrefixBody, Direction as DpDirection, InstallRelayBody, InstallRouteBody,
    InstallStreamBody, InstallTetherBody, IpPrefix, MAX_NEXT_HOPS, NextHop, PolicyBody, PrefixOp,
    RecordBody, RecordRef, RemoveRelayBody, RemoveRouteBody, RemoveStreamBody, RemoveTetherBody,
    RingRecord, TelemetryBody, TetherId, TetherState,
};
use prost::Message;
use tokio::sync::mpsc;
use zerocopy::little_endian::U32;

use super::core::Command;

/// How long a started data plane may take to open its control socket.
const START_WAIT: Duration = Duration::from_secs(15);

/// How to reach the data plane.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The `conflux-dataplane` binary.
    pub binary: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Start it if nothing listens on the socket.
    pub spawn: bool,
    /// TUN interface name.
    pub tun: String,
    /// Overlay address with prefix length, e.g. `100.64.0.5/16`.
    pub address: String,
    /// IPv6 overlay address with prefix length, e.g. `fd7a:cf::5/64`.
    pub address6: Option<String>,
    /// UDP address the workers bind.
    pub listen: SocketAddr,
    /// Workers (None: one per core).
    pub workers: Option<usize>,
    /// SO_MARK for the underlay sockets.
    pub mark: u32,
    /// Each worker binds its own port (the listen port + its index): WebRTC associations
    /// live on one worker each, so their datagrams must reach that worker.
    pub port_per_worker: bool,
}

/// Why the link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Starting the data plane failed.
    #[error("starting {0}: {1}")]
    Spawn(String, std::io::Error),
    /// The data plane exited or never opened its socket.
    #[error("the data plane did not open {0} within {1:?} (see its log above)")]
    NoSocket(String, Duration),
    /// The data plane's workers share one UDP port, which WebRTC tethers on several
    /// workers cannot use.
    #[error(
        "the data plane's {0} workers share one UDP port; WebRTC tethers need a port per \
         worker (run conflux-dataplane with --port-per-worker, or with --workers 1)"
    )]
    SharedPort(usize),
    /// Attaching failed.
    #[error("attaching to the data plane: {0}")]
    Attach(#[from] conflux_dataplane::control::client::AttachError),
}

/// A report from a worker, decoded.
#[derive(Debug, Clone)]
pub enum Report {
    /// A packet to `0` had no route.
    Miss(IpAddr),
    /// A tether changed state.
    TetherState(TetherId, TetherState, Option<std::net::SocketAddr>),
    /// A tether's measurements.
    Telemetry(TelemetryBody),
    /// A stream moved packets.
    Activity {
        /// The data plane's stream id.
        stream_id: StreamId,
        /// Which way.
        direction: DpDirection,
        /// Packets since the previous report.
        packets: u64,
        /// Bytes since the previous report.
        bytes: u64,
    },
    /// A STUN server told a worker its socket's reflexive address.
    Reflexive {
        /// The worker.
        worker: u16,
        /// The server.
        server: std::net::SocketAddr,
        /// The address the server saw.
        mapped: std::net::SocketAddr,
    },
    /// A worker's counter totals.
    Counters {
        /// The worker.
        worker: u16,
        /// Name and value.
        values: Vec<(&'static str, u64)>,
    },
}

/// The attached data plane.
#[derive(Debug)]
pub struct Link {
    commands: std::sync::mpsc::Sender<Command>,
    /// Reports from every worker.
    pub reports: mpsc::UnboundedReceiver<Report>,
    /// The data plane's state when this process attached.
    pub snapshot: Snapshot,
    /// Workers.
    pub workers: usize,
    stop: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
    child: Option<Child>,
    peer_pid: Option<i32>,
}

fn peer_pid(s: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid)
}

impl Link {
    /// Attaches to the data plane on `opts.socket`, starting it first if asked and needed.
    pub fn start(opts: &LinkOptions) -> Result<Self, LinkError> {
        // A data plane that outlived a previous control process is adopted as it is.
        let err = match attach(&opts.socket) {
            Ok(attached) => {
                let pid = peer_pid(&attached.socket);
                tracing::info!(
                    workers = attached.workers.len(),
                    "attached to a running data plane"
                );
                return Ok(Self::pump(attached, None, pid));
            }
            Err(e) => e,
        };
        if !opts.spawn {
            return Err(err.into());
        }
        let _ = std::fs::remove_file(&opts.socket);
        if let Some(dir) = opts.socket.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut cmd = Process::new(&opts.binary);
        cmd.arg("run")
            .args(["--tun", &opts.tun])
            .args(["--address", &opts.address])
            .args(["--listen", &opts.listen.to_string()])
            .args(["--mark", &opts.mark.to_string()])
            .arg("--socket")
            .arg(&opts.socket);
        if let Some(a) = &opts.address6 {
            cmd.args(["--address6", a]);
        }
        if let Some(n) = opts.workers {
            cmd.args(["--workers", &n.to_string()]);
        }
        if opts.port_per_worker {
            cmd.arg("--port-per-worker");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| LinkError::Spawn(opts.binary.display().to_string(), e))?;
        tracing::info!(pid = child.id(), tun = %opts.tun, "data plane started");
        let deadline = Instant::now() + START_WAIT;
        loop {
            if opts.socket.exists()
                && let Ok(attached) = attach(&opts.socket)
            {
                let pid = peer_pid(&attached.socket);
                return Ok(Self::pump(attached, Some(child), pid));
            }
            let exited = child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LinkError::NoSocket(
                    opts.socket.display().to_string(),
                    START_WAIT,
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pump(attached: Attached, child: Option<Child>, peer_pid: Option<i32>) -> Self {
        let Attached {
            workers,
            snapshot,
            socket,
        } = attached;
        let n = workers.len();
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<Command>();
        let (rep_tx, rep_rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let pump = std::thread::Builder::new()
            .name("dataplane-link".into())
            .spawn(move || {
                // The socket stays open as long as this process is attached.
                let _socket = socket;
                let mut workers = workers;
                pump_loop(&mut workers, &cmd_rx, &rep_tx, &stop2);
            })
            .ok();
        Self {
            commands: cmd_tx,
            reports: rep_rx,
            snapshot,
            workers: n,
            stop,
            pump,
            child,
            peer_pid,
        }
    }

    /// Queues a command for the workers.
    pub fn send(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Detaches; with `stop_dataplane`, also stops the data plane (orderly shutdown).
    pub fn close(mut self, stop_dataplane: bool) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
        if !stop_dataplane {
            return;
        }
        let pid = self.child.as_ref().map(|c| c.id() as i32).or(self.peer_pid);
        if let Some(pid) = pid {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pump_loop(
    workers: &mut [ControlEnd],
    commands: &std::sync::mpsc::Receiver<Command>,
    reports: &mpsc::UnboundedSender<Report>,
    stop: &AtomicBool,
) {
    let mut placement = Placement::default();
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        while let Ok(c) = commands.try_recv() {
            busy = true;
            write_command(workers, &mut placement, c);
        }
        for (i, w) in workers.iter_mut().enumerate() {
            busy |= signals_out(w, i, reports);
            let r = w.reports.consume(1024, |rec| {
                if let Some(rep) = decode(rec) {
                    let _ = reports.send(rep);
                }
            });
            if let Ok(n) = r
                && n > 0
            {
                busy = true;
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn decode(rec: &RingRecord) -> Option<Report> {
    Some(match rec.decode().ok()? {
        RecordRef::Miss(m) => Report::Miss(m.destination.ip()),
        RecordRef::TetherState(t) => Report::TetherState(t.tether.get(), t.state, t.peer()),
        RecordRef::Telemetry(t) => Report::Telemetry(*t),
        RecordRef::StreamActivity(a) => Report::Activity {
            stream_id: a.stream_id,
            direction: a.direction,
            packets: a.packets.get(),
            bytes: a.bytes.get(),
        },
        RecordRef::Counters(c) => Report::Counters {
            worker: c.worker.get(),
            values: c
                .entries()
                .iter()
                .filter_map(|e| Some((e.counter().ok()?.name(), e.value.get())))
                .collect(),
        },
        _ => return None,
    })
}

fn push(w: &mut ControlEnd, rec: &RingRecord) {
    for _ in 0..200 {
        if w.commands.push(rec).unwrap_or(false) {
            return;
        }
        let _ = w.commands.wait_for_space(1, Duration::from_millis(10));
    }
    tracing::warn!("a data plane worker's command ring stayed full; command dropped");
}

fn broadcast<B: RecordBody>(workers: &mut [ControlEnd], body: &B) {
    match RingRecord::encode(body) {
        Ok(rec) => workers.iter_mut().for_each(|w| push(w, &rec)),
        Err(e) => tracing::warn!("data plane command refused: {e}"),
    }
}

/// Which worker holds each WebRTC association (plain tethers are on every worker).
#[derive(Debug, Default)]
struct Placement(HashMap<TetherId, u16>);

impl Placement {
    /// Whether worker `w` holds tether `t`.
    fn holds(&self, w: usize, t: TetherId) -> bool {
        self.0.get(&t).is_none_or(|x| usize::from(*x) == w)
    }

    /// The tethers of `all` that worker `w` holds (all of them when it holds none, so its
    /// packets are counted as dropped there rather than lost silently).
    fn on_worker(&self, w: usize, all: &[TetherId]) -> Vec<TetherId> {
        let mine: Vec<TetherId> = all.iter().copied().filter(|t| self.holds(w, *t)).collect();
        if mine.is_empty() { all.to_vec() } else { mine }
    }

    /// A route's next hops on worker `w`: each leg's weight split over the associations of
    /// its tether that the worker holds. A route entry has room for [`MAX_NEXT_HOPS`]; when
    /// the split would not fit, each leg keeps one association, then the heaviest legs.
    fn route_on_worker(&self, w: usize, legs: &[(Vec<TetherId>, Label, u16)]) -> Vec<NextHop> {
        let groups: Vec<(Vec<TetherId>, Label, u16)> = legs
            .iter()
            .map(|(ids, l, weight)| (self.on_worker(w, ids), *l, *weight))
            .collect();
        let total: usize = groups.iter().map(|g| g.0.len()).sum();
        let mut out = Vec::new();
        if total <= MAX_NEXT_HOPS {
            for (ids, label, weight) in &groups {
                let share = (*weight / ids.len().max(1) as u16).max(1);
                out.extend(ids.iter().map(|t| NextHop::new(*t, *label, share)));
            }
        } else {
            let mut by_weight: Vec<&(Vec<TetherId>, Label, u16)> = groups.iter().collect();
            by_weight.sort_by_key(|g| std::cmp::Reverse(g.2));
            for (ids, label, weight) in by_weight.into_iter().take(MAX_NEXT_HOPS) {
                // The label spreads routes over the associations one entry can name.
                let t = ids[*label as usize % ids.len().max(1)];
                out.push(NextHop::new(t, *label, (*weight).max(1)));
            }
        }
        out
    }
}

fn write_command(workers: &mut [ControlEnd], placement: &mut Placement, c: Command) {
    match c {
        Command::InstallStream {
            stream_id,
            direction,
            epoch,
            label,
            peer,
            key,
            lifetime,
            exit,
        } => {
            let epoch = if epoch == 0 {
                conflux_shared::wire::data::KeyEpoch::Even
            } else {
                conflux_shared::wire::data::KeyEpoch::Odd
            };
            let expires = monotonic_ns() + lifetime.as_nanos() as u64;
            for (w, end) in workers.iter_mut().enumerate() {
                // Each worker seals in its own lane; ingress names none.
                let lane = if direction == DpDirection::Egress {
                    w as u8
                } else {
                    0
                };
                let mut body = InstallStreamBody::new(
                    stream_id, direction, lane, epoch, label, expires, peer, &key,
                );
                if exit {
                    body.flags = stream_flags::EXIT;
                }
                if let Ok(mut rec) = RingRecord::encode(&body) {
                    push(end, &rec);
                    rec.wipe();
                }
            }
        }
        Command::RemoveStream {
            stream_id,
            direction,
        } => broadcast(
            workers,
            &RemoveStreamBody::new(
                stream_id,
                direction,
                conflux_shared::wire::record::control::epochs::BOTH,
            ),
        ),
        Command::InstallRoute {
            destination,
            len,
            via,
            hops,
        } => {
            let Ok(prefix) = IpPrefix::new(destination, len) else {
                tracing::warn!(%destination, len, "route refused: not a prefix");
                return;
            };
            for (w, end) in workers.iter_mut().enumerate() {
                let hops = placement.route_on_worker(w, &hops);
                let body = match via {
                    Some(v) => InstallRouteBody::forward_via(prefix, &hops, v),
                    None => InstallRouteBody::forward(prefix, &hops),
                };
                match body
                    .map_err(|e| e.to_string())
                    .and_then(|b| RingRecord::encode(&b).map_err(|e| e.to_string()))
                {
                    Ok(rec) => push(end, &rec),
                    Err(e) => tracing::warn!("route refused: {e}"),
                }
            }
        }
        Command::RemoveRoute { destination, len } => match IpPrefix::new(destination, len) {
            Ok(prefix) => broadcast(workers, &RemoveRouteBody { prefix }),
            Err(e) => tracing::warn!(%destination, len, "route removal refused: {e}"),
        },
        Command::Policy {
            relay,
            portal,
            key_lifetime,
        } => {
            let mut flags = policy_flags::GUARD_EXIT;
            if relay {
                flags |= policy_flags::RELAY;
            }
            if portal {
                flags |= policy_flags::PORTAL;
            }
            broadcast(
                workers,
                &PolicyBody {
                    flags,
                    reserved: [0; 3],
                    max_key_lifetime_s: U32::new(key_lifetime.as_secs().max(1) as u32),
                    relay_rate_pps: U32::new(0),
                    idle_timeout_s: U32::new(0),
                },
            )
        }
        Command::LocalRoute { prefix } => match IpPrefix::new(prefix.0, prefix.1) {
            Ok(p) => broadcast(workers, &InstallRouteBody::local(p)),
            Err(e) => tracing::warn!(prefix = ?prefix, "local route refused: {e}"),
        },
        Command::AllowSource { stream_id, prefix } => match IpPrefix::new(prefix.0, prefix.1) {
            Ok(p) => broadcast(
                workers,
                &AllowedPrefixBody::new(stream_id, PrefixOp::Add, p),
            ),
            Err(e) => tracing::warn!(prefix = ?prefix, "allowed source refused: {e}"),
        },
        Command::InstallRelay {
            in_label,
            tethers,
            out_label,
        } => {
            for (w, end) in workers.iter_mut().enumerate() {
                // A relay entry names one tether: with several on this worker, the label
                // picks one, so one route's packets keep one association.
                let mine = placement.on_worker(w, &tethers);
                let Some(tether) = mine.get(in_label as usize % mine.len().max(1)) else {
                    continue;
                };
                match RingRecord::encode(&InstallRelayBody::new(in_label, *tether, out_label)) {
                    Ok(rec) => push(end, &rec),
                    Err(e) => tracing::warn!("relay refused: {e}"),
                }
            }
        }
        Command::RemoveRelay { in_label } => broadcast(
            workers,
            &RemoveRelayBody {
                in_label: U32::new(in_label),
            },
        ),
        Command::PlainTether { tether, peer } => {
            broadcast(workers, &InstallTetherBody::new(tether, peer))
        }
        Command::RemoveTether { tether } => {
            placement.0.remove(&tether);
            broadcast(
                workers,
                &RemoveTetherBody {
                    tether: U32::new(tether),
                },
            )
        }
        Command::OpenTether { worker, open } => {
            placement.0.insert(open.tether, worker);
            let bytes = open.encode_to_vec();
            signal(workers, usize::from(worker), SIGNAL_TETHER_OPEN, &bytes)
        }
        Command::TetherCandidates { worker, candidates } => {
            let bytes = candidates.encode_to_vec();
            signal(
                workers,
                usize::from(worker),
                SIGNAL_TETHER_CANDIDATES,
                &bytes,
            )
        }
        Command::Stun(control) => {
            let bytes = control.encode_to_vec();
            for w in 0..workers.len() {
                signal(workers, w, SIGNAL_STUN_CONTROL, &bytes);
            }
        }
    }
}

/// Hands a protobuf signal to one worker, waiting a little for ring space.
fn signal(workers: &mut [ControlEnd], worker: usize, kind: u16, bytes: &[u8]) {
    let Some(w) = workers.get_mut(worker) else {
        tracing::warn!(worker, kind, "no such data plane worker; signal not sent");
        return;
    };
    for _ in 0..200 {
        if w.signals_in.send(kind, bytes).unwrap_or(false) {
            return;
        }
        let _ = w
            .signals_in
            .wait_for_space(bytes.len(), Duration::from_millis(10));
    }
    tracing::warn!(worker, kind, "a worker's signal ring stayed full");
}

/// Decodes the signals a worker sent up (reflexive addresses it learned).
fn signals_out(w: &mut ControlEnd, worker: usize, reports: &mpsc::UnboundedSender<Report>) -> bool {
    let mut scratch = [0u8; conflux_dataplane::control::MAX_SIGNAL];
    let mut any = false;
    while let Ok(Some(m)) = w.signals_out.try_recv(&mut scratch) {
        any = true;
        if m.kind != SIGNAL_REFLEXIVE {
            continue;
        }
        let Ok(r) = conflux_shared::proto::Reflexive::decode(&scratch[..m.len]) else {
            tracing::debug!(worker, "malformed reflexive signal from a worker");
            continue;
        };
        if let (Ok(server), Ok(mapped)) = (r.server.parse(), r.mapped.parse()) {
            let _ = reports.send(Report::Reflexive {
                worker: worker as u16,
                server,
                mapped,
            });
        }
    }
    any
}
