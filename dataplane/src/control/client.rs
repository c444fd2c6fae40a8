//! The attaching side of the control socket: what a control process (or the static
//! driver, or a test) runs to get a data plane's rings and current state.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use conflux_shared::proto::TetherOpen;
use conflux_shared::ring::RingError;
use conflux_shared::ring::fdpass::recv_fds;
use conflux_shared::ring::{
    Consumer, Doorbells, MessageConsumer, MessageProducer, MessageRing, Producer, RecordRing,
};
use conflux_shared::wire::record::RingRecord;
use prost::Message;

use super::snapshot::Snapshot;
use super::{
    Hello, KIND_COMMANDS, KIND_REPORTS, KIND_SIGNALS_IN, KIND_SIGNALS_OUT, PROTOCOL_VERSION,
    SIGNAL_TETHER_OPEN, WORKER_FD_NAMES, WorkerFds,
};

/// Largest snapshot accepted.
const MAX_SNAPSHOT: usize = 16 << 20;

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Connecting or reading failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// Receiving fds failed.
    #[error("fd hand-over: {0}")]
    FdPass(#[from] conflux_shared::ring::fdpass::FdPassError),
    /// A ring did not attach.
    #[error("ring: {0}")]
    Ring(#[from] conflux_shared::ring::SetupError),
    /// A description or the snapshot did not parse.
    #[error("attach protocol: {0}")]
    Protocol(String),
}

/// One worker's rings as the control process holds them.
#[derive(Debug)]
pub struct ControlEnd {
    /// Records to the worker.
    pub commands: Producer<RingRecord>,
    /// Records from the worker.
    pub reports: Consumer<RingRecord>,
    /// Messages to the worker.
    pub signals_in: MessageProducer,
    /// Messages from the worker.
    pub signals_out: MessageConsumer,
}

impl ControlEnd {
    /// Asks this worker to open a WebRTC tether; `Ok(false)` when the ring is full (try
    /// again later). The worker checks the message and counts a bad one
    /// (`tether_open_refused` in its snapshot).
    pub fn open_tether(&mut self, open: &TetherOpen) -> Result<bool, RingError> {
        self.signals_in
            .send(SIGNAL_TETHER_OPEN, &open.encode_to_vec())
    }
}

/// An attached control process's view of a data plane.
#[derive(Debug)]
pub struct Attached {
    /// Per worker, in order.
    pub workers: Vec<ControlEnd>,
    /// The data plane's state at attach time.
    pub snapshot: Snapshot,
    /// The connection; dropping it detaches.
    pub socket: UnixStream,
}

fn protocol(e: impl std::fmt::Display) -> AttachError {
    AttachError::Protocol(e.to_string())
}

/// Connects to the data plane's control socket at `path` and attaches to every ring.
pub fn attach(path: &Path) -> Result<Attached, AttachError> {
    let socket = UnixStream::connect(path)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut desc = [0u8; 4096];
    let h = recv_fds(&socket, &mut desc)?;
    let hello: Hello = serde_json::from_slice(&desc[..h.description_len]).map_err(protocol)?;
    if hello.version != PROTOCOL_VERSION {
        return Err(protocol(format!(
            "attach protocol version {}",
            hello.version
        )));
    }
    if !h.fds.is_empty() || usize::try_from(hello.snapshot_len).map_or(true, |n| n > MAX_SNAPSHOT) {
        return Err(protocol("bad hello"));
    }
    let mut workers = Vec::new();
    for i in 0..hello.workers {
        let h = recv_fds(&socket, &mut desc)?;
        let d: WorkerFds = serde_json::from_slice(&desc[..h.description_len]).map_err(protocol)?;
        if d.worker != i || d.fds != WORKER_FD_NAMES || h.fds.len() != WORKER_FD_NAMES.len() {
            return Err(protocol(format!("worker {i}: unexpected fds {:?}", d.fds)));
        }
        let mut fds = h.fds.into_iter();
        let mut next = || fds.next().ok_or_else(|| protocol("missing fd"));
        let commands = RecordRing::<RingRecord>::attach(next()?, KIND_COMMANDS)?.into_producer();
        let mut reports = RecordRing::<RingRecord>::attach(next()?, KIND_REPORTS)?.into_consumer();
        let (data, space) = (next()?, next()?);
        reports.set_doorbells(Doorbells::from_fds(data, space)?);
        let signals_in = MessageRing::attach(next()?, KIND_SIGNALS_IN)?.into_producer();
        let signals_out = MessageRing::attach(next()?, KIND_SIGNALS_OUT)?.into_consumer();
        workers.push(ControlEnd {
            commands,
            reports,
            signals_in,
            signals_out,
        });
    }
    let mut snap = vec![0u8; hello.snapshot_len as usize];
    (&socket).read_exact(&mut snap)?;
    let snapshot = serde_json::from_slice(&snap).map_err(protocol)?;
    Ok(Attached {
        workers,
        snapshot,
        socket,
    })
}
