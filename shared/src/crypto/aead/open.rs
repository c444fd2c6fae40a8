//! The receiving side: up to two keys (one per key epoch) and a replay window per lane.

use core::ops::Range;
use std::fmt;
use std::time::Instant;

use zeroize::Zeroize;

use super::backend::{Cipher, PacketCipher, packet_nonce};
use super::{Backend, KeyError, MAX_LANES, REJECT_AFTER_TIME};
use crate::crypto::key::{NONCE_LEN, StreamKey};
use crate::crypto::replay::{ReplayError, ReplayWindow};
use crate::id::{Label, Lane};
use crate::wire::WireError;
use crate::wire::data::{DataPacket, HEADER_LEN, KeyEpoch, PacketType};

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// The header did not parse.
    #[error("malformed header: {0}")]
    Malformed(WireError),
    /// No key is installed for the packet's epoch.
    #[error("no key for this key epoch")]
    NoKey,
    /// The key of the packet's epoch is past its hard lifetime.
    #[error("key expired")]
    KeyExpired,
    /// The lane number is not below [`MAX_LANES`].
    #[error("lane out of range")]
    Lane,
    /// The counter is behind the replay window.
    #[error("counter too old")]
    TooOld,
    /// The counter was already received.
    #[error("duplicate counter")]
    Duplicate,
    /// The counter is past the per-lane message limit.
    #[error("counter beyond the message limit")]
    BeyondLimit,
    /// The tag did not verify: forged, corrupted, or sealed under another key.
    #[error("authentication failed")]
    BadTag,
}

impl From<ReplayError> for DropReason {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::TooOld => Self::TooOld,
            ReplayError::Duplicate => Self::Duplicate,
            ReplayError::BeyondLimit => Self::BeyondLimit,
        }
    }
}

/// A packet that opened: its plaintext now lies in place, between header and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Data or probe.
    pub kind: PacketType,
    /// The key epoch that opened it.
    pub epoch: KeyEpoch,
    /// The sender's lane.
    pub lane: Lane,
    /// The packet's counter within its lane.
    pub counter: u64,
    /// The per-hop label it arrived with.
    pub label: Label,
    /// Plaintext length.
    pub len: usize,
}

impl Opened {
    /// Where the plaintext lies in the packet buffer.
    #[must_use]
    pub fn payload_range(&self) -> Range<usize> {
        HEADER_LEN..HEADER_LEN + self.len
    }
}

/// The outcome for one packet of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Not processed yet (the initial value of a verdict array).
    #[default]
    Pending,
    /// Authentic and fresh: deliver the plaintext.
    Open(Opened),
    /// Dropped, and counted in [`OpenStats`].
    Drop(DropReason),
}

/// Packets opened and dropped, by reason, over an opener's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenStats {
    /// Packets that opened.
    pub opened: u64,
    /// Plaintext bytes of the packets that opened.
    pub opened_bytes: u64,
    /// Dropped: header did not parse.
    pub malformed: u64,
    /// Dropped: no key for the epoch.
    pub no_key: u64,
    /// Dropped: key expired.
    pub key_expired: u64,
    /// Dropped: lane out of range.
    pub bad_lane: u64,
    /// Dropped: counter too old.
    pub too_old: u64,
    /// Dropped: duplicate counter.
    pub duplicate: u64,
    /// Dropped: counter beyond the limit.
    pub beyond_limit: u64,
    /// Dropped: tag did not verify.
    pub bad_tag: u64,
}

impl OpenStats {
    /// All drops, whatever the reason.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.malformed
            + self.no_key
            + self.key_expired
            + self.bad_lane
            + self.too_old
            + self.duplicate
            + self.beyond_limit
            + self.bad_tag
    }

    fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Malformed(_) => &mut self.malformed,
            DropReason::NoKey => &mut self.no_key,
            DropReason::KeyExpired => &mut self.key_expired,
            DropReason::Lane => &mut self.bad_lane,
            DropReason::TooOld => &mut self.too_old,
            DropReason::Duplicate => &mut self.duplicate,
            DropReason::BeyondLimit => &mut self.beyond_limit,
            DropReason::BadTag => &mut self.bad_tag,
        };
        *c += 1;
    }
}

/// One installed key with its replay state.
struct EpochKey {
    cipher: Cipher,
    nonce_base: [u8; NONCE_LEN],
    expires_at: Instant,
    windows: [ReplayWindow; MAX_LANES],
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        self.nonce_base.zeroize();
    }
}

/// Opens batches of packets of one stream, under either of its two current keys.
pub struct Opener {
    backend: Backend,
    slots: [Option<Box<EpochKey>>; 2],
    stats: OpenStats,
}

impl Opener {
    /// An opener with no key yet; every packet is dropped until [`Opener::install`].
    #[must_use]
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            slots: [None, None],
            stats: OpenStats::default(),
        }
    }

    /// Installs (or replaces) the key of `epoch` with fresh replay windows; `now` starts
    /// its lifetime. The other epoch's key stays, so a rekey drops no packet in flight.
    ///
    /// Allocates the key's state once; call it from the slow path.
    pub fn install(
        &mut self,
        epoch: KeyEpoch,
        key: &StreamKey,
        now: Instant,
    ) -> Result<(), KeyError> {
        let cipher = Cipher::new(self.backend, &key.key).map_err(|_| KeyError)?;
        self.slots[epoch.index()] = Some(Box::new(EpochKey {
            cipher,
            nonce_base: key.nonce_base,
            expires_at: now + REJECT_AFTER_TIME,
            windows: core::array::from_fn(|_| ReplayWindow::new()),
        }));
        Ok(())
    }

    /// Removes the key of `epoch` (end of a rekey overlap); its packets are dropped from now on.
    pub fn retire(&mut self, epoch: KeyEpoch) {
        self.slots[epoch.index()] = None;
    }

    /// Whether a key is installed for `epoch` (expired or not).
    #[must_use]
    pub fn has_key(&self, epoch: KeyEpoch) -> bool {
        self.slots[epoch.index()].is_some()
    }

    /// Whether no installed key can open anything any more: the stream is dead.
    #[must_use]
    pub fn is_expired(&self, now: Instant) -> bool {
        self.slots.iter().flatten().all(|k| now >= k.expires_at)
    }

    /// Drop and open counts so far.
    #[must_use]
    pub fn stats(&self) -> &OpenStats {
        &self.stats
    }

    /// Which AES-GCM implementation this opener runs.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens each packet in place and writes its verdict at the same index; returns how
    /// many opened.
    ///
    /// Per packet: parse the header, check the replay window (before any AES work), open,
    /// and only once the tag has verified mark the counter as seen. A packet that fails
    /// any step is left in an unspecified state and must not be used.
    ///
    /// # Panics
    ///
    /// If `verdicts` is shorter than `packets` (a caller bug, not a property of the input).
    pub fn open_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        packets: &mut [B],
        verdicts: &mut [Verdict],
    ) -> usize {
        assert!(
            verdicts.len() >= packets.len(),
            "one verdict slot per packet"
        );
        let mut opened = 0;
        for (p, v) in packets.iter_mut().zip(verdicts.iter_mut()) {
            *v = match self.open_one(now, p.as_mut()) {
                Ok(o) => {
                    opened += 1;
                    self.stats.opened += 1;
                    self.stats.opened_bytes += o.len as u64;
                    Verdict::Open(o)
                }
                Err(reason) => {
                    self.stats.count(reason);
                    Verdict::Drop(reason)
                }
            };
        }
        opened
    }

    #[inline]
    fn open_one(&mut self, now: Instant, bytes: &mut [u8]) -> Result<Opened, DropReason> {
        let mut packet = DataPacket::new_checked(bytes).map_err(DropReason::Malformed)?;
        let epoch = packet.key_epoch();
        let slot = self.slots[epoch.index()]
            .as_deref_mut()
            .ok_or(DropReason::NoKey)?;
        if now >= slot.expires_at {
            return Err(DropReason::KeyExpired);
        }
        let lane = packet.lane();
        let window = slot
            .windows
            .get_mut(usize::from(lane))
            .ok_or(DropReason::Lane)?;
        let counter = packet.counter();
        window.check(counter)?;

        let opened = Opened {
            kind: packet.packet_type(),
            epoch,
            lane,
            counter,
            label: packet.label(),
            len: packet.payload().len(),
        };
        let nonce = packet_nonce(&slot.nonce_base, lane, counter);
        let (aad, payload, tag) = packet.split_mut();
        let ok = match &slot.cipher {
            Cipher::AwsLc(c) => c.open(nonce, aad, payload, tag),
            Cipher::RustCrypto(c) => (**c).open(nonce, aad, payload, tag),
        };
        ok.map_err(|_| DropReason::BadTag)?;
        window.mark(counter)?;
        Ok(opened)
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("backend", &self.backend)
            .field("even_key", &self.slots[0].is_some())
            .field("odd_key", &self.slots[1].is_some())
            .field("stats", &self.stats)
            .finish()
    }
}
