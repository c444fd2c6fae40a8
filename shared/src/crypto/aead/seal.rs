//! The sending side: one lane of one stream key.

use std::fmt;
use std::time::Instant;

use zeroize::Zeroize;

use super::backend::{Cipher, PacketCipher, packet_nonce};
use super::{
    Backend, MAX_LANES, REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
};
use crate::crypto::key::{NONCE_LEN, StreamKey};
use crate::id::{Label, Lane};
use crate::wire::data::{DataHeader, DataPacket, KeyEpoch, OVERHEAD, PacketType};

/// Why a batch was not sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The lane number is not below [`MAX_LANES`].
    #[error("lane {0} is out of range (max {max})", max = MAX_LANES - 1)]
    Lane(Lane),
    /// A packet buffer cannot hold the header and the tag.
    #[error("packet {index} is {len} bytes, shorter than the {OVERHEAD}-byte header and tag")]
    BufferTooShort {
        /// Position of the packet in the batch.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The lane has no counters left for this batch under this key.
    #[error("lane counters exhausted under this key: rekey")]
    CountersExhausted,
    /// The key is past its hard lifetime.
    #[error("key expired: rekey")]
    KeyExpired,
    /// Refusing a packet type that is not a known one.
    #[error("cannot seal an unknown packet type")]
    UnknownType,
    /// The AES-GCM backend refused the key or a packet.
    #[error("AES-GCM backend failure")]
    Backend,
}

/// What a successful [`Sealer::seal_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Packets sealed (the whole batch).
    pub packets: usize,
    /// Counter given to the first packet; the rest follow one by one.
    pub first_counter: u64,
    /// The lane has used enough counters, or the key is old enough, to ask for a new key.
    pub rekey_due: bool,
}

/// Seals batches of packets for one lane under one stream key.
pub struct Sealer {
    cipher: Cipher,
    nonce_base: [u8; NONCE_LEN],
    lane: Lane,
    epoch: KeyEpoch,
    next_counter: u64,
    rekey_at: Instant,
    expires_at: Instant,
}

impl Sealer {
    /// Expands `key` for `lane`; `now` starts the key's lifetime.
    pub fn new(
        key: &StreamKey,
        lane: Lane,
        epoch: KeyEpoch,
        backend: Backend,
        now: Instant,
    ) -> Result<Self, SealError> {
        if usize::from(lane) >= MAX_LANES {
            return Err(SealError::Lane(lane));
        }
        Ok(Self {
            cipher: Cipher::new(backend, &key.key).map_err(|_| SealError::Backend)?,
            nonce_base: key.nonce_base,
            lane,
            epoch,
            next_counter: 0,
            rekey_at: now + REKEY_AFTER_TIME,
            expires_at: now + REJECT_AFTER_TIME,
        })
    }

    /// Writes a header (`kind`, this lane's next counters, `label`) into each packet's
    /// headroom and seals its payload in place, the tag going into its tailroom.
    ///
    /// Every buffer is the whole packet: header, payload, tag. All or nothing: if any
    /// buffer is too short, the key has expired or the lane lacks counters for the whole
    /// batch, nothing is written. The label is not authenticated, so packets of one batch
    /// bound for different next hops can be relabelled afterwards with
    /// [`DataPacket::set_label`].
    pub fn seal_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        kind: PacketType,
        label: Label,
        packets: &mut [B],
    ) -> Result<Sealed, SealError> {
        if let PacketType::Unknown(_) = kind {
            return Err(SealError::UnknownType);
        }
        if now >= self.expires_at {
            return Err(SealError::KeyExpired);
        }
        for (index, p) in packets.iter_mut().enumerate() {
            let len = p.as_mut().len();
            if len < OVERHEAD {
                return Err(SealError::BufferTooShort { index, len });
            }
        }
        let first_counter = self.next_counter;
        let end = u64::try_from(packets.len())
            .ok()
            .and_then(|n| first_counter.checked_add(n))
            .filter(|&end| end <= REJECT_AFTER_MESSAGES)
            .ok_or(SealError::CountersExhausted)?;

        let header = DataHeader::new(kind, self.epoch, self.lane, first_counter, label);
        let result = match &self.cipher {
            Cipher::AwsLc(c) => seal_all(c, &self.nonce_base, header, packets),
            Cipher::RustCrypto(c) => seal_all(&**c, &self.nonce_base, header, packets),
        };
        // Counters are spent even if the backend failed midway: a counter the backend may
        // have used is never handed out again.
        self.next_counter = end;
        result?;
        Ok(Sealed {
            packets: packets.len(),
            first_counter,
            rekey_due: self.rekey_due(now),
        })
    }

    /// Whether this lane should move to a new key (message count or age).
    #[must_use]
    pub fn rekey_due(&self, now: Instant) -> bool {
        self.next_counter >= REKEY_AFTER_MESSAGES || now >= self.rekey_at
    }

    /// Whether the key is past its hard lifetime.
    #[must_use]
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// The counter the next packet will carry.
    #[must_use]
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// This sealer's lane.
    #[must_use]
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// The key epoch written into every header.
    #[must_use]
    pub fn epoch(&self) -> KeyEpoch {
        self.epoch
    }

    /// Which AES-GCM implementation this sealer runs.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.cipher.backend()
    }
}

#[cfg(test)]
impl Sealer {
    /// Jumps the lane's counter, to reach the limits without sealing millions of packets.
    pub(super) fn next_counter_for_tests(&mut self, counter: u64) {
        self.next_counter = counter;
    }
}

fn seal_all<C: PacketCipher, B: AsMut<[u8]>>(
    cipher: &C,
    nonce_base: &[u8; NONCE_LEN],
    mut header: DataHeader,
    packets: &mut [B],
) -> Result<(), SealError> {
    let lane = header.lane;
    for (counter, p) in (header.counter.get()..).zip(packets) {
        header.counter.set(counter);
        let mut packet = DataPacket::new_unchecked(p.as_mut());
        packet.set_header(&header);
        let (aad, payload, tag) = packet.split_mut();
        cipher
            .seal(packet_nonce(nonce_base, lane, counter), aad, payload, tag)
            .map_err(|_| SealError::Backend)?;
    }
    Ok(())
}

impl Drop for Sealer {
    fn drop(&mut self) {
        // The backends wipe their own key schedules.
        self.nonce_base.zeroize();
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("backend", &self.cipher.backend())
            .field("lane", &self.lane)
            .field("epoch", &self.epoch)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}
