//! One worker: a thread that owns an io_uring, a TUN queue, a UDP socket, its buffers and
//! its copy of the tables, and moves packets in batches with no lock, no allocation and no
//! system call per packet once running.
//!
//! The loop, each turn:
//!
//! 1. apply the control process's records from the commands ring (a few atomic loads when
//!    there are none), and once a second expire dead keys and write reports;
//! 2. submit every queued SQE and wait for at least one completion (or the 50 ms tick);
//! 3. drain the completion queue: TUN reads (multishot, provided buffers: a GSO
//!    super-packet or one packet each), UDP receives (multishot `recvmsg`, provided
//!    buffers, GRO), finished sends and TUN writes (their buffers go back to the kernel);
//! 4. run the egress batch (segment, seal, frame, one GSO `sendmsg` per run of equal-size
//!    datagrams) and the ingress batch (unframe, relay or open, coalesce, one vectored TUN
//!    write per merged group).

mod activity;
mod ingress_io;
mod ops;
mod report;
mod signals;
mod tun_io;

use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conflux_shared::crypto::aead::Verdict;
use conflux_shared::wire::record::{CounterId, RecordFlow, RecordRef, RingRecord};
use crossbeam::channel::Receiver;
use io_uring::{IoUring, opcode, squeue, types};

use crate::buffer::{BufRing, BufferError, Geometry, Pkt, SlabPool};
use crate::control::server::Command;
use crate::control::snapshot::WorkerSnapshot;
use crate::control::{
    SIGNAL_STUN_CONTROL, SIGNAL_TETHER_CANDIDATES, SIGNAL_TETHER_OPEN, WorkerEnd,
};
use crate::counters::{Counters, monotonic_ns};
use crate::egress::EgressVerdict;
use crate::hop::HopTransport;
use crate::hop::open::OpenRequest;
use crate::ingress::IngressVerdict;
use crate::relay::RelayLimiter;
use crate::table::Tables;
use crate::tether::{LocalCertificate, TetherConfig};
use crate::vnet::VNET_HDR_LEN;
use crate::vnet::coalesce::Coalescer;
use ops::{Owner, Pool, SendCtx, WriteCtx, op, tag, untag};

/// Packets one egress or ingress batch holds at most.
pub const BATCH: usize = 256;
/// Room in front of every packet the kernel writes: the data header plus the hop
/// transport's framing.
pub const HEADROOM: usize = 128;
/// Room after every packet: the tag plus the transport's trailer.
pub const TAILROOM: usize = 64;
const TUN_BUFFERS: usize = 64;
const TUN_BUFFER_SIZE: usize = 72 * 1024;
const UDP_BUFFERS: usize = 128;
const UDP_BUFFER_SIZE: usize = 68 * 1024;
const SLABS: usize = 32;
const SLAB_SIZE: usize = 160 * 1024;
const SENDS: usize = 1024;
const WRITES: usize = 256;
const TICK: Duration = Duration::from_millis(50);
const REPORT_EVERY: Duration = Duration::from_secs(1);
const TELEMETRY_EVERY: Duration = Duration::from_millis(100);
const TUN_GROUP: u16 = 0;
const UDP_GROUP: u16 = 1;
/// Name and control space in each received UDP buffer.
const NAME_LEN: u32 = size_of::<libc::sockaddr_in6>() as u32;
const CONTROL_LEN: u32 = 64;

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// io_uring set-up failed.
    #[error("io_uring: {0}")]
    Uring(std::io::Error),
    /// Buffer pools could not be mapped or registered.
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

/// What a worker is given.
pub struct WorkerSetup<T> {
    /// Worker index (also its default lane).
    pub index: u16,
    /// Its TUN queue.
    pub tun: OwnedFd,
    /// Its UDP socket.
    pub udp: OwnedFd,
    /// Its rings to the control process.
    pub rings: WorkerEnd,
    /// Requests from the socket thread.
    pub commands: Receiver<Command>,
    /// The hop transport.
    pub transport: T,
    /// The address its UDP socket is bound to.
    pub listen: SocketAddr,
    /// The node's DTLS certificate, shared by its workers (`None`: no WebRTC tethers).
    pub certificate: Option<LocalCertificate>,
    /// Set to stop the loop.
    pub stop: Arc<AtomicBool>,
}

/// A running worker's state.
pub struct Worker<T: HopTransport> {
    index: u16,
    ring: IoUring,
    tun: OwnedFd,
    udp: OwnedFd,
    tun_bufs: BufRing,
    udp_bufs: BufRing,
    udp_refs: Vec<u16>,
    slabs: SlabPool,
    slab_refs: Vec<u16>,
    sends: Pool<SendCtx>,
    writes: Pool<WriteCtx>,
    recv_msg: Box<libc::msghdr>,
    tables: Tables,
    counters: Counters,
    limiter: RelayLimiter,
    coalescer: Coalescer,
    transport: T,
    rings: WorkerEnd,
    commands: Receiver<Command>,
    stop: Arc<AtomicBool>,
    // Per-turn batches (allocated once).
    egress_pkts: Vec<Pkt>,
    egress_verdicts: Vec<EgressVerdict>,
    ingress_pkts: Vec<Pkt>,
    ingress_verdicts: Vec<IngressVerdict>,
    aead: Vec<Verdict>,
    ranges: Vec<Range<usize>>,
    /// Slab segments: where each sealed packet's datagram starts and the GSO stride.
    slab_runs: Vec<SlabRun>,
    /// Relayed datagrams framed in place, back to back in one receive buffer, waiting to
    /// leave as one GSO send.
    relay_run: Option<ingress_io::RelayRun>,
    tun_armed: bool,
    udp_armed: bool,
    next_report: Instant,
    next_telemetry: Instant,
    report: report::Reporter,
    listen: SocketAddr,
    certificate: Option<LocalCertificate>,
    opens: OpenCounters,
    control_scratch: Vec<u8>,
    last_send_error: i32,
}

/// One super-packet's segments in a slab, sent as one GSO run when they all go out.
#[derive(Debug, Clone, Copy)]
struct SlabRun {
    slab: u16,
    first: usize,
    count: usize,
    stride: usize,
}

impl<T: HopTransport> Worker<T> {
    /// Sets up the io_uring and buffers; call from the worker's own thread (the ring is
    /// single-issuer).
    pub fn new(setup: WorkerSetup<T>) -> Result<Self, WorkerError> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_defer_taskrun()
            .setup_cqsize(8192)
            .build(1024)
            .map_err(WorkerError::Uring)?;
        let tun_bufs = BufRing::new(
            Geometry {
                count: TUN_BUFFERS,
                size: TUN_BUFFER_SIZE,
                headroom: HEADROOM - VNET_HDR_LEN,
                tailroom: TAILROOM,
            },
            TUN_GROUP,
        )?;
        tun_bufs.register(&ring)?;
        let udp_bufs = BufRing::new(
            Geometry {
                count: UDP_BUFFERS,
                size: UDP_BUFFER_SIZE,
                headroom: 0,
                tailroom: 0,
            },
            UDP_GROUP,
        )?;
        udp_bufs.register(&ring)?;
        // SAFETY: an all-zero msghdr is valid; only the name and control lengths matter for
        // a multishot recvmsg.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = NAME_LEN;
        recv_msg.msg_controllen = CONTROL_LEN as usize;
        let now = Instant::now();
        Ok(Self {
            index: setup.index,
            ring,
            tun: setup.tun,
            udp: setup.udp,
            tun_bufs,
            udp_bufs,
            udp_refs: vec![0; UDP_BUFFERS],
            slabs: SlabPool::new(SLABS, SLAB_SIZE)?,
            slab_refs: vec![0; SLABS],
            sends: ops::send_pool(SENDS),
            writes: ops::write_pool(WRITES),
            recv_msg,
            tables: Tables::default(),
            counters: Counters::default(),
            limiter: RelayLimiter::new(),
            coalescer: Coalescer::new(),
            transport: setup.transport,
            rings: setup.rings,
            commands: setup.commands,
            stop: setup.stop,
            egress_pkts: Vec::with_capacity(BATCH),
            egress_verdicts: vec![EgressVerdict::Pending; BATCH],
            ingress_pkts: Vec::with_capacity(BATCH),
            ingress_verdicts: vec![IngressVerdict::Pending; BATCH],
            aead: vec![Verdict::Pending; BATCH],
            ranges: vec![0..0; 64],
            slab_runs: Vec::with_capacity(SLABS),
            relay_run: None,
            tun_armed: false,
            udp_armed: false,
            next_report: now + REPORT_EVERY,
            next_telemetry: now + TELEMETRY_EVERY,
            report: report::Reporter::new(setup.index),
            listen: setup.listen,
            certificate: setup.certificate,
            opens: OpenCounters::default(),
            control_scratch: vec![0; crate::control::MAX_SIGNAL],
            last_send_error: 0,
        })
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> Result<(), WorkerError> {
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.poll_control(now);
            if now >= self.next_report {
                self.next_report = now + REPORT_EVERY;
                self.tables.expire(now);
                self.report
                    .write(&mut self.rings, &self.tables, &mut self.counters);
                activity::report(
                    &mut self.rings,
                    &mut self.tables,
                    &mut self.counters,
                    self.index,
                );
            }
            if now >= self.next_telemetry {
                self.next_telemetry = now + TELEMETRY_EVERY;
                let (rings, counters, report) =
                    (&mut self.rings, &mut self.counters, &mut self.report);
                self.transport.telemetry(self.index, &mut |body| {
                    report.telemetry(rings, counters, &body)
                });
            }
            self.drive_transport(now);
            self.arm();
            // Wake for the transport's next timer (retransmission, SACK, heartbeat) if it
            // comes before the tick.
            let wait = self
                .transport
                .poll_timeout()
                .map_or(TICK, |t| t.saturating_duration_since(Instant::now()))
                .clamp(Duration::from_micros(50), TICK);
            let ts = types::Timespec::new()
                .sec(wait.as_secs())
                .nsec(wait.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(WorkerError::Uring(e)),
            }
            self.drain(Instant::now());
        }
        Ok(())
    }

    fn arm(&mut self) {
        if !self.tun_armed {
            let e = opcode::ReadMulti::new(types::Fd(self.tun.as_raw_fd()), 0, TUN_GROUP)
                .build()
                .user_data(tag(op::TUN_READ, 0));
            if self.push(e) {
                self.tun_armed = true;
            }
        }
        if !self.udp_armed {
            let e = opcode::RecvMsgMulti::new(
                types::Fd(self.udp.as_raw_fd()),
                &*self.recv_msg,
                UDP_GROUP,
            )
            .build()
            .user_data(tag(op::UDP_RECV, 0));
            if self.push(e) {
                self.udp_armed = true;
            }
        }
    }

    /// Queues an SQE, submitting first if the queue is full; `false` if it still is not.
    fn push(&mut self, e: squeue::Entry) -> bool {
        // SAFETY: every pointer an SQE carries (buffers, msghdrs, iovecs) lives in a pool
        // slot, buffer ring or boxed header that stays put until its completion arrives.
        if unsafe { self.ring.submission().push(&e) }.is_ok() {
            return true;
        }
        let _ = self.ring.submit();
        // SAFETY: as above.
        unsafe { self.ring.submission().push(&e) }.is_ok()
    }

    fn drain(&mut self, now: Instant) {
        loop {
            let mut any = false;
            // Completions are copied out first: handling them queues new SQEs.
            let mut batch: [(u64, i32, u32); 128] = [(0, 0, 0); 128];
            let mut n = 0;
            for cqe in self.ring.completion().take(128) {
                batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                n += 1;
            }
            for &(data, result, flags) in &batch[..n] {
                any = true;
                let (kind, index) = untag(data);
                match kind {
                    op::TUN_READ => self.on_tun_read(result, flags),
                    op::UDP_RECV => self.on_udp_recv(now, result, flags),
                    op::SEND => self.on_send_done(index, result),
                    op::TUN_WRITE => self.on_write_done(index, result),
                    _ => {}
                }
                if self.egress_pkts.len() >= BATCH - 64 {
                    self.flush_egress(now);
                }
                if self.ingress_pkts.len() >= BATCH - 64 {
                    self.flush_ingress(now);
                }
            }
            self.flush_egress(now);
            self.flush_ingress(now);
            self.tun_bufs.publish();
            self.udp_bufs.publish();
            if !any || n < 128 {
                break;
            }
        }
    }

    /// Releases one reference to the buffer a packet lived in.
    fn release(&mut self, owner: Owner) {
        match owner {
            Owner::Tun(b) => self.tun_bufs.stage(b),
            Owner::Udp(b) => {
                let r = &mut self.udp_refs[usize::from(b)];
                *r = r.saturating_sub(1);
                if *r == 0 {
                    self.udp_bufs.stage(b);
                }
            }
            Owner::Slab(s) => {
                let r = &mut self.slab_refs[usize::from(s)];
                *r = r.saturating_sub(1);
                if *r == 0 {
                    self.slabs.give(s);
                }
            }
            Owner::Scratch => {}
        }
    }

    fn on_send_done(&mut self, index: u32, result: i32) {
        let ctx = self.sends.get(index);
        let (owner, datagrams) = (ctx.owner, ctx.datagrams);
        if result < 0 {
            self.counters
                .add(CounterId::UdpSendFailed, u64::from(datagrams));
            if result != self.last_send_error {
                self.last_send_error = result;
                tracing::warn!(
                    worker = self.index,
                    errno = -result,
                    datagrams,
                    "UDP send failed"
                );
            }
        } else {
            self.counters.udp_tx += u64::from(datagrams);
        }
        self.sends.give(index);
        // A GSO send holds one reference per datagram it carries.
        for _ in 0..datagrams.max(1) {
            self.release(owner);
        }
    }

    fn on_write_done(&mut self, index: u32, result: i32) {
        if result < 0 {
            self.counters.bump(CounterId::TunWriteFailed);
        } else {
            self.counters.tun_writes += 1;
        }
        let ctx = self.writes.get(index);
        let (owners, n) = (ctx.owners, ctx.owners_len);
        self.writes.give(index);
        for &o in &owners[..n] {
            self.release(Owner::unpack(o));
        }
    }

    /// Queues one send of `len` bytes at `ptr` to `to`; `segment` non-zero asks the kernel
    /// to cut it into datagrams of that size. Returns `false` (and releases nothing) when
    /// no context is free.
    fn send(
        &mut self,
        ptr: *mut u8,
        len: usize,
        to: SocketAddr,
        segment: u16,
        owner: Owner,
        datagrams: u32,
    ) -> bool {
        let Some(i) = self.sends.take() else {
            self.counters
                .add(CounterId::UdpSendFailed, u64::from(datagrams));
            return false;
        };
        let ctx = self.sends.get(i);
        ctx.prepare(ptr, len, to, segment, owner, datagrams);
        let e = opcode::SendMsg::new(types::Fd(self.udp.as_raw_fd()), &ctx.msg)
            .build()
            .user_data(tag(op::SEND, i));
        if !self.push(e) {
            self.sends.give(i);
            self.counters
                .add(CounterId::UdpSendFailed, u64::from(datagrams));
            return false;
        }
        true
    }

    /// Sends whatever the transport wants to send of its own.
    fn drive_transport(&mut self, now: Instant) {
        if self.transport.poll_timeout().is_some_and(|t| t <= now) {
            self.transport.handle_timeout(now);
        }
        while let Some(slab) = self.slabs.take() {
            // SAFETY: the slab was just taken; nothing else refers to it.
            let buf = unsafe { self.slabs.slot_mut(slab) };
            let ptr = buf.as_mut_ptr();
            let Some((to, len)) = self.transport.poll_transmit(now, buf) else {
                self.slabs.give(slab);
                break;
            };
            self.slab_refs[usize::from(slab)] = 1;
            if !self.send(ptr, len, to, 0, Owner::Slab(slab), 1) {
                self.release(Owner::Slab(slab));
            }
        }
        self.report_reflexive();
        while let Some(c) = self.transport.poll_state() {
            self.tables.tether_changed(c.tether, c.state, c.peer);
            self.report
                .tether_state(&mut self.rings, &mut self.counters, c);
        }
    }

    /// Applies every record waiting in the commands ring, and answers socket requests.
    fn poll_control(&mut self, now: Instant) {
        let now_ns = monotonic_ns();
        let tables = &mut self.tables;
        let counters = &mut self.counters;
        let transport = &mut self.transport;
        let before = self.rings.commands.stats().malformed;
        let res = self.rings.commands.consume(64, |rec: &RingRecord| {
            let applied = match rec.decode_flow(RecordFlow::ToWorker) {
                Ok(r) => {
                    let res = tables.apply(&r, now, now_ns);
                    if res.is_ok() {
                        match r {
                            RecordRef::InstallStream(_) => counters.keys_installed += 1,
                            RecordRef::InstallTether(b) => {
                                transport.add_tether(now, b.tether.get(), b.peer.socket_addr())
                            }
                            RecordRef::RemoveTether(b) => {
                                transport.remove_tether(now, b.tether.get())
                            }
                            _ => {}
                        }
                    }
                    res.is_ok()
                }
                Err(_) => false,
            };
            if applied {
                counters.records_applied += 1;
            } else {
                counters.bump(CounterId::MalformedRecord);
            }
        });
        let malformed = self.rings.commands.stats().malformed - before;
        self.counters.add(CounterId::MalformedRecord, malformed);
        if res.is_err() {
            self.counters.bump(CounterId::MalformedRecord);
        }
        let mut scratch = std::mem::take(&mut self.control_scratch);
        loop {
            match self.rings.signals_in.try_recv(&mut scratch) {
                Ok(Some(m)) if m.kind == SIGNAL_TETHER_OPEN => {
                    self.open_tether(now, &scratch[..m.len]);
                }
                Ok(Some(m)) if m.kind == SIGNAL_TETHER_CANDIDATES => {
                    self.tether_candidates(now, &scratch[..m.len]);
                }
                Ok(Some(m)) if m.kind == SIGNAL_STUN_CONTROL => {
                    self.stun_control(now, &scratch[..m.len]);
                }
                Ok(Some(m)) => {
                    tracing::warn!(worker = self.index, kind = m.kind, "unknown signal");
                    self.opens.refused += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(worker = self.index, "signals ring: {e}");
                    self.opens.refused += 1;
                    break;
                }
            }
        }
        self.control_scratch = scratch;
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Snapshot(reply) => {
                    let mut snap = WorkerSnapshot::of(self.index, &self.tables, &self.counters);
                    snap.listen = self.listen.to_string();
                    snap.counters
                        .insert("tether_open_refused".into(), self.opens.refused);
                    self.transport.counters(&mut |name, v| {
                        snap.counters.insert(name.to_string(), v);
                    });
                    let _ = reply.send(snap);
                }
            }
        }
    }

    /// Applies one `TetherOpen` signal; a bad one is logged and counted.
    fn open_tether(&mut self, now: Instant, bytes: &[u8]) {
        let res = OpenRequest::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|req| {
                let cert = self
                    .certificate
                    .clone()
                    .ok_or_else(|| "this data plane has no DTLS certificate".to_string())?;
                // A peer behind a NAT lists private addresses this node cannot reach: the
                // local address is the one towards the first candidate that is routable.
                let local = req
                    .candidates
                    .iter()
                    .find_map(|c| local_address(self.listen, *c).ok())
                    .ok_or_else(|| format!("no local address towards {:?}", req.candidates))?;
                let mut cfg = TetherConfig::new(
                    local,
                    req.candidates.clone(),
                    req.local.clone(),
                    req.remote.clone(),
                    req.controlling,
                    cert,
                    req.fingerprint,
                );
                cfg.channels = req.channels;
                let new = self
                    .transport
                    .open_tether(now, req.tether, cfg)
                    .map_err(|e| e.to_string())?;
                if new {
                    self.tables.open_tether(req.tether, &req.candidates);
                }
                Ok((req.tether, new))
            });
        match res {
            Ok((t, true)) => {
                tracing::info!(worker = self.index, tether = t, "opening WebRTC tether")
            }
            Ok((t, false)) => {
                tracing::debug!(
                    worker = self.index,
                    tether = t,
                    "WebRTC tether already open"
                )
            }
            Err(e) => {
                self.opens.refused += 1;
                tracing::warn!(worker = self.index, "tether open refused: {e}");
            }
        }
    }
}

/// Refused `TetherOpen` signals (malformed, or the transport would not open them).
#[derive(Debug, Default, Clone, Copy)]
struct OpenCounters {
    refused: u64,
}

/// The address this worker's datagrams to `peer` leave from: the bound address, or, for a
/// wildcard bind, the source the routing table picks (a connected UDP socket sends nothing).
fn local_address(listen: SocketAddr, peer: SocketAddr) -> std::io::Result<SocketAddr> {
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    let any: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect(peer)?;
    Ok(SocketAddr::new(s.local_addr()?.ip(), listen.port()))
}
