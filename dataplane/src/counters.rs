//! A worker's counters: the named drop counters the control process sees
//! ([`CounterId`]) and the traffic totals behind telemetry.

use conflux_shared::wire::record::CounterId;

const SLOTS: usize = CounterId::ALL.len() + 1;

/// Running totals, owned by one worker (no atomics: reported through its ring).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    drops: [u64; SLOTS],
    /// Inner packets read from TUN and sent.
    pub egress_packets: u64,
    /// Inner bytes read from TUN and sent.
    pub egress_bytes: u64,
    /// Inner packets delivered to TUN.
    pub ingress_packets: u64,
    /// Inner bytes delivered to TUN.
    pub ingress_bytes: u64,
    /// Packets forwarded for other nodes.
    pub relayed_packets: u64,
    /// UDP datagrams sent.
    pub udp_tx: u64,
    /// UDP datagrams received.
    pub udp_rx: u64,
    /// TUN reads (super-packets count once).
    pub tun_reads: u64,
    /// TUN writes (merged groups count once).
    pub tun_writes: u64,
    /// Miss records written.
    pub misses_reported: u64,
    /// Stream keys installed from the control ring.
    pub keys_installed: u64,
    /// Control records applied.
    pub records_applied: u64,
}

impl Counters {
    /// Adds `n` to a named counter.
    #[inline]
    pub fn add(&mut self, id: CounterId, n: u64) {
        self.drops[id as usize] += n;
    }

    /// Adds one.
    #[inline]
    pub fn bump(&mut self, id: CounterId) {
        self.add(id, 1);
    }

    /// A named counter's total.
    pub fn get(&self, id: CounterId) -> u64 {
        match id {
            CounterId::EgressPackets => self.egress_packets,
            CounterId::IngressPackets => self.ingress_packets,
            CounterId::RelayedPackets => self.relayed_packets,
            _ => self.drops[id as usize],
        }
    }

    /// Every named counter with its total, in id order.
    pub fn named(&self) -> impl Iterator<Item = (CounterId, u64)> + '_ {
        CounterId::ALL.iter().map(|&id| (id, self.get(id)))
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock that install records state expiry in
/// (and the one `Instant` reads on Linux).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
