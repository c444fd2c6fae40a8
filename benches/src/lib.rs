//! Helpers shared by the criterion benchmarks in `benches/`.

pub mod cpu_time {
    //! A criterion measurement of the benchmark thread's own CPU time.
    //!
    //! The benchmark machine is shared with other jobs: CPU time
    //! (`CLOCK_THREAD_CPUTIME_ID`) leaves out the slices in which the thread was not
    //! running, so a figure reads as "per core, while running".

    use std::time::Duration;

    use criterion::measurement::{Measurement, ValueFormatter, WallTime};
    use rustix::time::{ClockId, clock_gettime};

    /// CPU time consumed by the calling thread.
    pub struct ThreadCpuTime;

    /// CPU time the calling thread has consumed so far.
    pub fn now() -> Duration {
        let t = clock_gettime(ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    impl Measurement for ThreadCpuTime {
        type Intermediate = Duration;
        type Value = Duration;

        fn start(&self) -> Duration {
            now()
        }

        fn end(&self, started: Duration) -> Duration {
            now().saturating_sub(started)
        }

        fn add(&self, a: &Duration, b: &Duration) -> Duration {
            *a + *b
        }

        fn zero(&self) -> Duration {
            Duration::ZERO
        }

        fn to_f64(&self, value: &Duration) -> f64 {
            value.as_nanos() as f64
        }

        fn formatter(&self) -> &dyn ValueFormatter {
            // Values are nanoseconds, as for wall time, so its units and throughputs apply.
            static WALL: WallTime = WallTime;
            WALL.formatter()
        }
    }
}

pub mod ring {
    //! The two-process ring benchmark's record and its second process.
    //!
    //! The benchmark binary runs itself again with [`CHILD_ENV`] naming a Unix socket;
    //! that second process receives the rings and one shared pair of doorbells, then
    //! consumes every ring in turn (each with its own batch size) until the socket
    //! closes.

    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::time::Duration;

    use conflux_shared::ring::fdpass::recv_fds;
    use conflux_shared::ring::{Consumer, Doorbells, Record, RecordRing};
    use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

    /// Names the socket of the parent; set only in the second process.
    pub const CHILD_ENV: &str = "CONFLUX_BENCH_RING_SOCKET";
    /// Ring kind of the `i`-th benchmark ring.
    pub const KIND_BASE: u32 = 0xBE00;
    /// Slots per ring: 256 KiB of 64-byte records, within L2.
    pub const CAPACITY: usize = 4096;

    const CHECK_KEY: u64 = 0x5DEE_CE66_D1CE_4E5B;

    /// A 64-byte record: sequence number, payload, and a check the consumer verifies.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
    #[repr(C, align(64))]
    pub struct Rec64 {
        /// Sequence number.
        pub seq: u64,
        /// Payload.
        pub payload: [u64; 6],
        /// `seq ^ CHECK_KEY ^ payload[0]`.
        pub check: u64,
    }

    const _: () = assert!(size_of::<Rec64>() == 64);

    impl Rec64 {
        /// A valid record.
        pub fn new(seq: u64) -> Self {
            let payload = [seq.wrapping_mul(3); 6];
            Self {
                seq,
                payload,
                check: seq ^ CHECK_KEY ^ payload[0],
            }
        }
    }

    impl Record for Rec64 {
        type Error = ();
        const SCHEMA: u32 = 0xBE64;

        fn validate(&self) -> Result<(), ()> {
            (self.check == self.seq ^ CHECK_KEY ^ self.payload[0])
                .then_some(())
                .ok_or(())
        }
    }

    /// Description sent with the fds: the consumer's batch size per ring, `u32` LE each.
    pub fn describe(batches: &[usize]) -> Vec<u8> {
        batches
            .iter()
            .flat_map(|&b| (b as u32).to_le_bytes())
            .collect()
    }

    /// The second process: attach, consume until the parent hangs up, check every
    /// record. Returns the number of valid records consumed.
    pub fn run_consumer(socket: &Path) -> Result<u64, String> {
        let mut socket = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
        let mut description = [0u8; 64];
        let handover = recv_fds(&socket, &mut description).map_err(|e| e.to_string())?;
        let batches: Vec<usize> = description[..handover.description_len]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if handover.fds.len() != batches.len() + 2 {
            return Err(format!(
                "{} fds for {} rings",
                handover.fds.len(),
                batches.len()
            ));
        }
        let mut fds = handover.fds.into_iter();
        let mut rings: Vec<(Consumer<Rec64>, usize)> = Vec::new();
        for (i, &batch) in batches.iter().enumerate() {
            let fd = fds.next().ok_or("missing fd")?;
            let ring =
                RecordRing::<Rec64>::attach(fd, KIND_BASE + i as u32).map_err(|e| e.to_string())?;
            rings.push((ring.into_consumer(), batch.clamp(1, CAPACITY)));
        }
        let (data, space) = (fds.next().ok_or("fd")?, fds.next().ok_or("fd")?);
        let bells = Doorbells::from_fds(data, space).map_err(|e| e.to_string())?;
        for (c, _) in &mut rings {
            c.set_doorbells(bells.try_clone().map_err(|e| e.to_string())?);
        }
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;

        let mut out = vec![Rec64::new_zeroed(); CAPACITY];
        let mut idle = 0u32;
        loop {
            let mut progress = false;
            for (c, batch) in &mut rings {
                let n = c.pop_batch(&mut out[..*batch]).map_err(|e| e.to_string())?;
                progress |= n > 0;
            }
            if progress {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < 256 {
                std::hint::spin_loop();
                continue;
            }
            let mut sleep = true;
            for (c, _) in &mut rings {
                sleep &= c.prepare_sleep().map_err(|e| e.to_string())?;
            }
            if sleep {
                let _ = bells.data.wait(Duration::from_millis(100));
            }
            for (c, _) in &mut rings {
                c.finish_sleep();
            }
            match socket.read(&mut [0u8; 1]) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => return Err("unexpected bytes on the socket".into()),
                Err(e) => return Err(format!("socket: {e}")),
            }
        }
        let mut total = 0;
        for (c, _) in &rings {
            let stats = c.stats();
            if stats.malformed != 0 || stats.corrupt != 0 {
                return Err(format!("ring errors: {stats:?}"));
            }
            total += stats.records;
        }
        Ok(total)
    }
}
