//! The static driver: `conflux-dataplane static --config FILE` attaches to a running data
//! plane exactly as a control process does, installs the file's tethers, streams, routes,
//! relay entries and policy through the same rings, then stays attached to rotate keys and
//! drain reports until it is stopped. Killing it leaves the data plane forwarding with
//! the keys it has until they expire; starting it again re-attaches and re-installs the
//! same keys (the data plane recognises them and keeps counters and replay windows).
//!
//! Keys: each stream's static secret yields one key per *generation* (the Unix time divided
//! by `rekey_interval_s`), by HKDF-SHA256 over the secret with the stream id as salt; the
//! generation's parity is its key epoch. The sender switches at each generation boundary;
//! the receiver installs the next generation half an interval early and keeps the previous
//! one for the first half, so no packet is dropped at a switch. Every install carries a hard
//! expiry of three intervals, which the data plane enforces alone.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::StreamId;
use conflux_shared::wire::WireError;
use conflux_shared::wire::data::KeyEpoch;
use conflux_shared::wire::record::control::policy_flags;
use conflux_shared::wire::record::{
    AllowedPrefixBody, Direction, InstallRelayBody, InstallRouteBody, InstallStreamBody,
    InstallTetherBody, NextHop, PolicyBody, PrefixOp, RecordBody, RecordRef, RingRecord,
};
use hkdf::Hkdf;
use sha2::Sha256;
use zerocopy::little_endian::U32;

use crate::control::client::{Attached, attach};
use crate::counters::monotonic_ns;
use crate::static_config::{StaticConfig, StreamConfig, StreamDirection, TetherKind, parse_prefix};
use conflux_shared::proto::TetherOpen;

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::static_config::ConfigError),
    /// Attaching failed.
    #[error(transparent)]
    Attach(#[from] crate::control::client::AttachError),
    /// A record could not be built.
    #[error("record: {0}")]
    Record(#[from] WireError),
    /// A ring stayed full.
    #[error("worker {0}'s command ring stayed full")]
    RingFull(usize),
}

/// The key of a stream for one generation.
pub fn generation_key(secret: &[u8; 32], stream: StreamId, generation: u64) -> StreamKey {
    let hk = Hkdf::<Sha256>::new(Some(&stream.0), secret);
    let mut info = *b"conflux static stream key ........";
    info[26..].copy_from_slice(&generation.to_be_bytes());
    let mut okm = zeroize::Zeroizing::new([0u8; 44]);
    // 44 bytes is far below HKDF-SHA256's limit of 8,160.
    hk.expand(&info, &mut okm[..])
        .unwrap_or_else(|_| unreachable!());
    let mut key = StreamKey {
        key: [0; 32],
        nonce_base: [0; 12],
    };
    key.key.copy_from_slice(&okm[..32]);
    key.nonce_base.copy_from_slice(&okm[32..]);
    key
}

/// The key epoch of a generation.
pub fn epoch_of(generation: u64) -> KeyEpoch {
    if generation.is_multiple_of(2) {
        KeyEpoch::Even
    } else {
        KeyEpoch::Odd
    }
}

/// An attached driver.
pub struct Driver {
    cfg: StaticConfig,
    attached: Attached,
    /// Per stream: the generation installed in each epoch slot.
    installed: Vec<[Option<u64>; 2]>,
    /// Reports read so far (misses, counters, telemetry, tether states).
    pub reports: u64,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("workers", &self.attached.workers.len())
            .finish_non_exhaustive()
    }
}

fn encode<B: RecordBody>(b: &B) -> Result<RingRecord, WireError> {
    RingRecord::encode(b)
}

impl Driver {
    /// Attaches to the data plane named by `cfg` and installs everything in it.
    pub fn start(cfg: StaticConfig) -> Result<Self, DriverError> {
        cfg.check()?;
        let attached = attach(&cfg.socket)?;
        let installed = vec![[None; 2]; cfg.stream.len()];
        let mut d = Self {
            cfg,
            attached,
            installed,
            reports: 0,
        };
        d.install_all()?;
        Ok(d)
    }

    /// The data plane's state when the driver attached.
    pub fn snapshot(&self) -> &crate::control::snapshot::Snapshot {
        &self.attached.snapshot
    }

    fn broadcast(&mut self, rec: &RingRecord) -> Result<(), DriverError> {
        for i in 0..self.attached.workers.len() {
            self.send_to(i, rec)?;
        }
        Ok(())
    }

    fn send_to(&mut self, worker: usize, rec: &RingRecord) -> Result<(), DriverError> {
        let ring = &mut self.attached.workers[worker].commands;
        for _ in 0..200 {
            if ring.push(rec).unwrap_or(false) {
                return Ok(());
            }
            let _ = ring.wait_for_space(1, Duration::from_millis(10));
        }
        Err(DriverError::RingFull(worker))
    }

    fn open_tether(&mut self, worker: usize, open: &TetherOpen) -> Result<(), DriverError> {
        let end = &mut self.attached.workers[worker];
        for _ in 0..200 {
            if end.open_tether(open).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(DriverError::RingFull(worker))
    }

    fn install_all(&mut self) -> Result<(), DriverError> {
        if let Some(p) = self.cfg.policy.clone() {
            let body = PolicyBody {
                flags: if p.relay { policy_flags::RELAY } else { 0 },
                reserved: [0; 3],
                max_key_lifetime_s: U32::new(p.max_key_lifetime_s.max(1)),
                relay_rate_pps: U32::new(p.relay_rate_pps),
                idle_timeout_s: U32::new(0),
            };
            self.broadcast(&encode(&body)?)?;
        }
        for t in self.cfg.tether.clone() {
            match t.kind {
                TetherKind::Plain => {
                    self.broadcast(&encode(&InstallTetherBody::new(t.id, t.peer))?)?;
                }
                TetherKind::Webrtc => self.open_tether(0, &t.open_message()?)?,
            }
        }
        for r in self.cfg.relay.clone() {
            self.broadcast(&encode(&InstallRelayBody::new(
                r.in_label,
                r.tether,
                r.out_label,
            ))?)?;
        }
        self.rotate()?;
        for s in self.cfg.stream.clone() {
            if s.direction == StreamDirection::Ingress {
                for p in &s.allowed {
                    let body =
                        AllowedPrefixBody::new(s.stream_id()?, PrefixOp::Add, parse_prefix(p)?);
                    self.broadcast(&encode(&body)?)?;
                }
            }
        }
        for r in self.cfg.route.clone() {
            let prefix = parse_prefix(&r.prefix)?;
            let body = if r.local {
                InstallRouteBody::local(prefix)
            } else {
                let hops: Vec<NextHop> = r
                    .hops
                    .iter()
                    .map(|h| NextHop::new(h.tether, h.label, h.weight))
                    .collect();
                InstallRouteBody::forward(prefix, &hops)?
            };
            self.broadcast(&encode(&body)?)?;
        }
        Ok(())
    }

    /// Installs whatever keys the current time calls for; call a few times a second.
    pub fn rotate(&mut self) -> Result<(), DriverError> {
        let interval = self.cfg.rekey_interval_s;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let generation = now.as_secs() / interval;
        let second_half = now.as_secs_f64() / interval as f64 - generation as f64 >= 0.5;
        for i in 0..self.cfg.stream.len() {
            let s = self.cfg.stream[i].clone();
            let wanted: &[u64] = match s.direction {
                StreamDirection::Egress => &[generation],
                StreamDirection::Ingress if second_half => &[generation, generation + 1],
                StreamDirection::Ingress => &[generation.saturating_sub(1), generation],
            };
            for &g in wanted {
                let slot = (g % 2) as usize;
                if self.installed[i][slot] == Some(g) {
                    continue;
                }
                self.install_stream(&s, g, interval)?;
                self.installed[i][slot] = Some(g);
                // Egress keeps one key: the other slot is no longer in use.
                if s.direction == StreamDirection::Egress {
                    self.installed[i][1 - slot] = None;
                }
            }
        }
        Ok(())
    }

    fn install_stream(
        &mut self,
        s: &StreamConfig,
        generation: u64,
        interval: u64,
    ) -> Result<(), DriverError> {
        let id = s.stream_id()?;
        let secret = s.secret_bytes()?;
        let key = generation_key(&secret, id, generation);
        let expires = monotonic_ns() + Duration::from_secs(3 * interval).as_nanos() as u64;
        let (direction, peer): (Direction, IpAddr) = match s.direction {
            StreamDirection::Egress => (Direction::Egress, s.peer),
            StreamDirection::Ingress => (Direction::Ingress, s.peer),
        };
        for w in 0..self.attached.workers.len() {
            // Each worker seals in its own lane; ingress names none.
            let lane = if direction == Direction::Egress {
                w as u8
            } else {
                0
            };
            let mut rec = encode(&InstallStreamBody::new(
                id,
                direction,
                lane,
                epoch_of(generation),
                s.label,
                expires,
                peer,
                &key,
            ))?;
            let res = self.send_to(w, &rec);
            rec.wipe();
            res?;
        }
        Ok(())
    }

    /// Reads and logs every pending report; returns how many there were.
    pub fn drain_reports(&mut self) -> usize {
        let mut n = 0;
        for (i, w) in self.attached.workers.iter_mut().enumerate() {
            let _ = w.reports.consume(1024, |rec| {
                n += 1;
                match rec.decode() {
                    Ok(RecordRef::Miss(m)) => {
                        tracing::debug!(worker = i, destination = %m.destination.ip(), "miss");
                    }
                    Ok(RecordRef::TetherState(t)) => {
                        tracing::info!(
                            worker = i,
                            tether = t.tether.get(),
                            state = ?t.state,
                            "tether state"
                        );
                    }
                    Ok(RecordRef::Telemetry(t)) => {
                        tracing::debug!(
                            worker = i,
                            tether = t.tether.get(),
                            rtt_us = t.rtt_us.get(),
                            loss_ppm = t.loss_ppm.get(),
                            packets = t.packets.get(),
                            queue = t.queue_depth.get(),
                            "tether telemetry"
                        );
                    }
                    _ => {}
                }
            });
        }
        self.reports += n as u64;
        n
    }

    /// Rotates keys and drains reports until `stop` is set.
    pub fn run(&mut self, stop: &std::sync::atomic::AtomicBool) -> Result<(), DriverError> {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            self.rotate()?;
            self.drain_reports();
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_give_distinct_keys_and_alternate_epochs() {
        let s = [7u8; 32];
        let id = StreamId([1; 16]);
        let (a, b) = (generation_key(&s, id, 10), generation_key(&s, id, 11));
        assert_ne!(a.key, b.key);
        assert_ne!(a.nonce_base, b.nonce_base);
        assert_eq!(
            generation_key(&s, id, 10),
            a,
            "both ends derive the same key"
        );
        assert_ne!(
            generation_key(&s, StreamId([2; 16]), 10).key,
            a.key,
            "streams differ"
        );
        assert_ne!(epoch_of(10), epoch_of(11));
    }
}
