//! Two processes, four rings: 10 million 64-byte records each way at once, plus a few
//! thousand messages of random sizes each way, all through memfds and doorbells that
//! cross a Unix socket with `SCM_RIGHTS`.
//!
//! The parent plays the data plane (it creates the rings); the second process is this
//! test binary run again with `CHILD_ENV` set and a filter that selects
//! `second_process`. Each side checks sequence, per-record integrity and a running
//! checksum that the sender announces at the end, plus the content of every message.

use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use conflux_shared::ring::fdpass::{recv_fds, send_fds};
use conflux_shared::ring::{
    Consumer, Doorbells, MessageConsumer, MessageProducer, MessageRing, Producer, Record,
    RecordRing,
};
use rustix::event::{PollFd, PollFlags};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

const CHILD_ENV: &str = "CONFLUX_RING_TEST_SOCKET";
const RECORDS: u64 = 10_000_000;
/// One deliberately malformed record follows every this many good ones.
const MALFORMED_EVERY: u64 = 1_000_000;
const MESSAGES: u64 = 3_000;
const MAX_MESSAGE: usize = 3_000;
const BATCH: usize = 256;
const DEADLINE: Duration = Duration::from_secs(90);

const REC_DOWN: u32 = 0x100;
const REC_UP: u32 = 0x101;
const MSG_DOWN: u32 = 0x200;
const MSG_UP: u32 = 0x201;
const DONE_KIND: u16 = 0xD0;
const DESCRIPTION: &[u8] = b"rec-down rec-up msg-down msg-up, each followed by data+space bells";

/// 64 bytes: a sequence number, six payload words and an integrity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Rec64 {
    seq: u64,
    words: [u64; 6],
    check: u64,
}

const _: () = assert!(size_of::<Rec64>() == 64);

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Rec64 {
    fn fold(&self) -> u64 {
        self.words.iter().fold(mix(self.seq), |acc, w| mix(acc ^ w))
    }

    fn make(seq: u64, salt: u64) -> Self {
        let mut words = [0u64; 6];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mix(seq.wrapping_mul(8) ^ salt ^ i as u64);
        }
        let mut r = Self {
            seq,
            words,
            check: 0,
        };
        r.check = r.fold();
        r
    }
}

impl Record for Rec64 {
    type Error = ();
    const SCHEMA: u32 = 0x64;

    fn validate(&self) -> Result<(), ()> {
        (self.check == self.fold()).then_some(()).ok_or(())
    }
}

fn message(i: u64, salt: u64) -> (u16, Vec<u8>) {
    let r = mix(i ^ salt);
    let len = (r % (MAX_MESSAGE as u64 + 1)) as usize;
    let kind = 1 + (r >> 40) as u16 % 100;
    let bytes = (0..len).map(|j| mix(r ^ j as u64) as u8).collect();
    (kind, bytes)
}

/// One process's four endpoints and its progress.
struct Side {
    name: &'static str,
    salt_out: u64,
    salt_in: u64,
    rec_out: Producer<Rec64>,
    rec_in: Consumer<Rec64>,
    msg_out: MessageProducer,
    msg_in: MessageConsumer,
    sent: u64,
    sent_checksum: u64,
    injected: u64,
    received: u64,
    received_checksum: u64,
    msgs_sent: u64,
    msgs_received: u64,
    done_sent: bool,
    /// The peer's announced (records, checksum, messages).
    peer_done: Option<(u64, u64, u64)>,
    batch: Vec<Rec64>,
    buf: Vec<u8>,
    sleeps: u64,
}

impl Side {
    fn finished(&self) -> bool {
        self.done_sent
            && self
                .peer_done
                .is_some_and(|(r, _, m)| self.received == r && self.msgs_received == m)
    }

    fn send_records(&mut self) -> bool {
        if self.sent >= RECORDS {
            return false;
        }
        let until_bad = MALFORMED_EVERY - self.sent % MALFORMED_EVERY;
        let want = (BATCH as u64).min(RECORDS - self.sent).min(until_bad) as usize;
        // Alternate between filling slots in place and copying a prepared batch.
        let mut checksum = self.sent_checksum;
        let n = if (self.sent / BATCH as u64).is_multiple_of(2) {
            let mut slots = self.rec_out.reserve(want).unwrap();
            let n = slots.len();
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = Rec64::make(self.sent + i as u64, self.salt_out);
                checksum = checksum.rotate_left(7) ^ slot.check;
            }
            slots.commit(n);
            n
        } else {
            self.batch.clear();
            self.batch
                .extend((0..want as u64).map(|i| Rec64::make(self.sent + i, self.salt_out)));
            let n = self.rec_out.push_batch(&self.batch).unwrap();
            for r in &self.batch[..n] {
                checksum = checksum.rotate_left(7) ^ r.check;
            }
            n
        };
        self.sent_checksum = checksum;
        self.sent += n as u64;
        if n > 0 && self.sent.is_multiple_of(MALFORMED_EVERY) {
            let mut bad = Rec64::make(u64::MAX, self.salt_out);
            bad.check ^= 1;
            // Retried until it fits, so the count on the other side is exact.
            while !self.rec_out.push(&bad).unwrap() {
                self.rec_out
                    .wait_for_space(1, Duration::from_millis(10))
                    .unwrap();
            }
            self.injected += 1;
        }
        n > 0
    }

    fn take(&mut self, r: &Rec64) {
        assert_eq!(r.seq, self.received, "{}: records out of order", self.name);
        assert_eq!(
            *r,
            Rec64::make(r.seq, self.salt_in),
            "{}: record content",
            self.name
        );
        self.received_checksum = self.received_checksum.rotate_left(7) ^ r.check;
        self.received += 1;
    }

    fn receive_records(&mut self) -> bool {
        let mut progress = false;
        if self.received.is_multiple_of(2) {
            let mut out = [Rec64::make(0, 0); BATCH];
            let n = self.rec_in.pop_batch(&mut out).unwrap();
            for r in &out[..n] {
                self.take(r);
            }
            progress |= n > 0;
        }
        let mut got = Vec::new();
        let read = self.rec_in.consume(BATCH, |r| got.push(*r)).unwrap();
        for r in &got {
            self.take(r);
        }
        progress || read > 0
    }

    fn send_messages(&mut self) -> bool {
        let mut progress = false;
        for _ in 0..4 {
            if self.msgs_sent < MESSAGES {
                let (kind, payload) = message(self.msgs_sent, self.salt_out);
                if !self.msg_out.send(kind, &payload).unwrap() {
                    break;
                }
                self.msgs_sent += 1;
                progress = true;
            }
        }
        if !self.done_sent && self.sent == RECORDS && self.msgs_sent == MESSAGES {
            let mut done = [0u8; 24];
            done[..8].copy_from_slice(&self.sent.to_le_bytes());
            done[8..16].copy_from_slice(&self.sent_checksum.to_le_bytes());
            done[16..].copy_from_slice(&self.msgs_sent.to_le_bytes());
            self.done_sent = self.msg_out.send(DONE_KIND, &done).unwrap();
            progress |= self.done_sent;
        }
        progress
    }

    fn receive_messages(&mut self) -> bool {
        let mut progress = false;
        while let Some(got) = self.msg_in.try_recv(&mut self.buf).unwrap() {
            progress = true;
            let payload = &self.buf[..got.len];
            if got.kind == DONE_KIND {
                let word = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().unwrap());
                self.peer_done = Some((word(0), word(8), word(16)));
                continue;
            }
            let (kind, expected) = message(self.msgs_received, self.salt_in);
            assert_eq!(got.kind, kind, "{}: message kind", self.name);
            assert_eq!(payload, &expected[..], "{}: message content", self.name);
            self.msgs_received += 1;
        }
        progress
    }

    /// Sleeps on every doorbell that could end the idleness, or not at all if one of
    /// the rings turns out to have work after announcing.
    fn sleep(&mut self) {
        self.sleeps += 1;
        let mut sleep = self.rec_in.prepare_sleep().unwrap();
        sleep &= self.msg_in.prepare_sleep().unwrap();
        let out_blocked = self.sent < RECORDS;
        if out_blocked {
            sleep &= self.rec_out.prepare_sleep(BATCH).unwrap();
        }
        if sleep {
            let fds = [
                self.rec_in.doorbells().unwrap().data.fd(),
                self.msg_in.doorbells().unwrap().data.fd(),
                self.rec_out.doorbells().unwrap().space.fd(),
            ];
            let n = if out_blocked { 3 } else { 2 };
            let mut polls: Vec<PollFd<'_>> = fds[..n]
                .iter()
                .map(|fd| PollFd::new(fd, PollFlags::IN))
                .collect();
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            let _ = rustix::event::poll(&mut polls, Some(&timeout));
        }
        self.rec_in.finish_sleep();
        self.msg_in.finish_sleep();
        if out_blocked {
            self.rec_out.finish_sleep();
        }
    }

    fn run(&mut self) {
        let start = Instant::now();
        let mut idle = 0u32;
        while !self.finished() {
            let mut progress = self.send_records();
            progress |= self.receive_records();
            progress |= self.send_messages();
            progress |= self.receive_messages();
            if progress {
                idle = 0;
            } else {
                idle += 1;
                if idle > 64 {
                    self.sleep();
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{}: timed out after {DEADLINE:?}: sent {} records, {} messages; received {} \
                 records, {} messages; peer done: {:?}",
                self.name,
                self.sent,
                self.msgs_sent,
                self.received,
                self.msgs_received,
                self.peer_done
            );
        }
        let (records, checksum, messages) = self.peer_done.unwrap();
        assert_eq!(records, RECORDS, "{}: peer's record count", self.name);
        assert_eq!(messages, MESSAGES, "{}: peer's message count", self.name);
        assert_eq!(self.received_checksum, checksum, "{}: checksum", self.name);
        let stats = self.rec_in.stats();
        assert_eq!(stats.records, RECORDS);
        assert_eq!(
            stats.malformed,
            RECORDS / MALFORMED_EVERY,
            "{}: malformed records counted",
            self.name
        );
        assert_eq!(self.injected, RECORDS / MALFORMED_EVERY);
        eprintln!(
            "{}: {} records and {} messages each way in {:?}; {} sleeps, {} + {} wake-ups sent",
            self.name,
            RECORDS,
            MESSAGES,
            start.elapsed(),
            self.sleeps,
            self.rec_out.stats().wakeups,
            stats.wakeups,
        );
    }
}

/// The rings, as created by the parent: (producer-side of down, consumer-side of up, …).
struct Endpoints {
    rec_out: Producer<Rec64>,
    rec_in: Consumer<Rec64>,
    msg_out: MessageProducer,
    msg_in: MessageConsumer,
}

fn side(name: &'static str, salts: (u64, u64), e: Endpoints) -> Side {
    Side {
        name,
        salt_out: salts.0,
        salt_in: salts.1,
        rec_out: e.rec_out,
        rec_in: e.rec_in,
        msg_out: e.msg_out,
        msg_in: e.msg_in,
        sent: 0,
        sent_checksum: 0,
        injected: 0,
        received: 0,
        received_checksum: 0,
        msgs_sent: 0,
        msgs_received: 0,
        done_sent: false,
        peer_done: None,
        batch: Vec::with_capacity(BATCH),
        buf: vec![0; MAX_MESSAGE],
        sleeps: 0,
    }
}

const SALT_DOWN: u64 = 0xD0D0;
const SALT_UP: u64 = 0x0F0F;

/// Kills the second process if the parent fails first.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn accept(listener: &UnixListener, child: &mut Child) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("second process exited before connecting: {status}");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "second process did not connect within 30 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn ten_million_records_each_way_between_two_processes() {
    let down = RecordRing::<Rec64>::create(REC_DOWN, 4096).unwrap();
    let up = RecordRing::<Rec64>::create(REC_UP, 4096).unwrap();
    let msg_down = MessageRing::create(MSG_DOWN, 1 << 16, MAX_MESSAGE).unwrap();
    let msg_up = MessageRing::create(MSG_UP, 1 << 16, MAX_MESSAGE).unwrap();
    let bells: Vec<Doorbells> = (0..4).map(|_| Doorbells::new().unwrap()).collect();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rings.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "second_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let socket = accept(&listener, &mut child.0);

    let mut fds = vec![down.fd(), up.fd(), msg_down.fd(), msg_up.fd()];
    for b in &bells {
        fds.extend(b.fds());
    }
    send_fds(&socket, DESCRIPTION, &fds).unwrap();

    let mut bells = bells.into_iter();
    let mut rec_out = down.into_producer();
    rec_out.set_doorbells(bells.next().unwrap());
    let mut rec_in = up.into_consumer().wiping();
    rec_in.set_doorbells(bells.next().unwrap());
    let mut msg_out = msg_down.into_producer();
    msg_out.set_doorbells(bells.next().unwrap());
    let mut msg_in = msg_up.into_consumer();
    msg_in.set_doorbells(bells.next().unwrap());
    let endpoints = Endpoints {
        rec_out,
        rec_in,
        msg_out,
        msg_in,
    };
    side("parent", (SALT_DOWN, SALT_UP), endpoints).run();

    let status = child.0.wait().unwrap();
    assert!(status.success(), "second process failed: {status}");
}

#[test]
#[ignore = "entry point of the second process of ten_million_records_each_way_between_two_processes"]
fn second_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let socket = UnixStream::connect(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut description = [0u8; 256];
    let handover = recv_fds(&socket, &mut description).unwrap();
    assert_eq!(&description[..handover.description_len], DESCRIPTION);
    assert_eq!(handover.fds.len(), 12);
    let mut fds = handover.fds.into_iter();
    let mut next = || -> OwnedFd { fds.next().unwrap() };
    let down = RecordRing::<Rec64>::attach(next(), REC_DOWN).unwrap();
    let up = RecordRing::<Rec64>::attach(next(), REC_UP).unwrap();
    let msg_down = MessageRing::attach(next(), MSG_DOWN).unwrap();
    let msg_up = MessageRing::attach(next(), MSG_UP).unwrap();
    let mut bells = || Doorbells::from_fds(next(), next()).unwrap();

    let mut rec_in = down.into_consumer();
    rec_in.set_doorbells(bells());
    let mut rec_out = up.into_producer();
    rec_out.set_doorbells(bells());
    let mut msg_in = msg_down.into_consumer();
    msg_in.set_doorbells(bells());
    let mut msg_out = msg_up.into_producer();
    msg_out.set_doorbells(bells());
    let endpoints = Endpoints {
        rec_out,
        rec_in,
        msg_out,
        msg_in,
    };
    side("child", (SALT_UP, SALT_DOWN), endpoints).run();
}
