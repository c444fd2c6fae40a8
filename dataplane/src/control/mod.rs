//! The data plane's end of the shared-memory rings to the control process (DESIGN §9).
//!
//! The data plane creates every ring at start and keeps them for its whole life; each
//! worker has four:
//!
//! | ring | kind | direction | carries |
//! |---|---|---|---|
//! | commands | [`KIND_COMMANDS`] | control → worker | [`RingRecord`]s: streams, routes, relays, tethers, allowed prefixes, policy |
//! | reports | [`KIND_REPORTS`] | worker → control | [`RingRecord`]s: telemetry, misses, counters, tether state |
//! | signals in | [`KIND_SIGNALS_IN`] | control → worker | messages too big for a record (tether signalling) |
//! | signals out | [`KIND_SIGNALS_OUT`] | worker → control | messages from the tether stack |
//!
//! A control process attaches by connecting to the Unix socket (mode 0600) that
//! [`server::Server`] listens on; it receives, as `SCM_RIGHTS` hand-overs: a header
//! ([`Hello`]), then per worker the ring memfds and the reports ring's doorbells, then a
//! JSON [`snapshot::Snapshot`] of the current tables. One control process is attached at a
//! time. When it goes away the workers go on forwarding with the tables they have (keys
//! expire on their own); the next one attaches to the same rings and carries on from their
//! indices. [`client`] is the attaching side, used by the static driver and the tests.

pub mod client;
pub mod server;
pub mod snapshot;

use conflux_shared::ring::{
    Consumer, Doorbells, MessageConsumer, MessageProducer, MessageRing, Producer, RecordRing,
    SetupError,
};
use conflux_shared::wire::record::RingRecord;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

/// Ring kind of the commands ring.
pub const KIND_COMMANDS: u32 = 0x4346_0001;
/// Ring kind of the reports ring.
pub const KIND_REPORTS: u32 = 0x4346_0002;
/// Ring kind of the control → worker message ring.
pub const KIND_SIGNALS_IN: u32 = 0x4346_0003;
/// Ring kind of the worker → control message ring.
pub const KIND_SIGNALS_OUT: u32 = 0x4346_0004;
/// Records in a commands ring.
pub const COMMANDS_CAPACITY: usize = 1024;
/// Records in a reports ring.
pub const REPORTS_CAPACITY: usize = 4096;
/// Bytes in a message ring.
pub const SIGNALS_CAPACITY: usize = 64 * 1024;
/// Largest message on a message ring.
pub const MAX_SIGNAL: usize = 4096;
/// Version of the attach protocol.
pub const PROTOCOL_VERSION: u32 = 1;
/// Signals-in message kind: a protobuf `conflux.v1.TetherOpen` (see [`crate::hop::open`]).
pub const SIGNAL_TETHER_OPEN: u16 = 1;
/// Signals-in message kind: a protobuf `conflux.v1.TetherCandidates` (trickle ICE).
pub const SIGNAL_TETHER_CANDIDATES: u16 = 2;
/// Signals-in message kind: a protobuf `conflux.v1.StunControl`.
pub const SIGNAL_STUN_CONTROL: u16 = 3;
/// Signals-out message kind: a protobuf `conflux.v1.Reflexive`.
pub const SIGNAL_REFLEXIVE: u16 = 1;
/// Candidates or servers one signal may name, at most.
pub const MAX_SIGNAL_ADDRESSES: usize = 32;

/// The first hand-over of an attach: what follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Number of workers (one hand-over each follows).
    pub workers: u16,
    /// Bytes of JSON snapshot after the last hand-over.
    pub snapshot_len: u32,
    /// The certificate fingerprint every worker's WebRTC tethers present,
    /// `"sha-256 AA:BB:…"` (empty if the data plane has none).
    #[serde(default)]
    pub dtls_fingerprint: String,
}

/// A worker's hand-over description: the order of its fds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerFds {
    /// Worker index.
    pub worker: u16,
    /// Names of the fds, in order.
    pub fds: Vec<String>,
}

/// The fd names in a worker's hand-over, in order.
pub const WORKER_FD_NAMES: [&str; 6] = [
    "commands",
    "reports",
    "reports.data",
    "reports.space",
    "signals_in",
    "signals_out",
];

/// What a worker holds of its rings.
#[derive(Debug)]
pub struct WorkerEnd {
    /// Control → worker records; wipes each slot after reading (keys pass through it).
    pub commands: Consumer<RingRecord>,
    /// Worker → control records, with doorbells to wake a sleeping control process.
    pub reports: Producer<RingRecord>,
    /// Control → worker messages.
    pub signals_in: MessageConsumer,
    /// Worker → control messages.
    pub signals_out: MessageProducer,
}

/// Second handles on one worker's ring memfds and doorbells, kept to hand to each
/// control process that attaches.
#[derive(Debug)]
pub struct WorkerFdSet {
    /// In [`WORKER_FD_NAMES`] order.
    pub fds: Vec<OwnedFd>,
}

/// Creates one worker's rings.
pub fn create_worker_rings() -> Result<(WorkerEnd, WorkerFdSet), SetupError> {
    let commands = RecordRing::<RingRecord>::create(KIND_COMMANDS, COMMANDS_CAPACITY)?;
    let reports = RecordRing::<RingRecord>::create(KIND_REPORTS, REPORTS_CAPACITY)?;
    let signals_in = MessageRing::create(KIND_SIGNALS_IN, SIGNALS_CAPACITY, MAX_SIGNAL)?;
    let signals_out = MessageRing::create(KIND_SIGNALS_OUT, SIGNALS_CAPACITY, MAX_SIGNAL)?;
    let bells = Doorbells::new()?;
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned().map_err(|source| SetupError::Io {
            op: "dup ring fd",
            source,
        })
    };
    let [data, space] = bells.fds();
    let fds = vec![
        dup(commands.fd())?,
        dup(reports.fd())?,
        dup(data)?,
        dup(space)?,
        dup(signals_in.fd())?,
        dup(signals_out.fd())?,
    ];
    let mut reports = reports.into_producer();
    reports.set_doorbells(bells);
    Ok((
        WorkerEnd {
            commands: commands.into_consumer().wiping(),
            reports,
            signals_in: signals_in.into_consumer(),
            signals_out: signals_out.into_producer(),
        },
        WorkerFdSet { fds },
    ))
}
