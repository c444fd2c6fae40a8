//! A worker's streams: the egress streams it seals for (one lane each) and the ingress
//! streams it opens, with their key lifetimes and allowed inner sources.

use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use conflux_shared::crypto::aead::{Backend, Opener, Sealer};
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::{Label, Lane, StreamId};
use conflux_shared::wire::data::KeyEpoch;
use sha2::{Digest, Sha256};

use super::prefix::Prefix;

/// A short digest of a key, to recognise a key that is installed again.
///
/// Installing the same key twice must not restart a lane's counter (nonce reuse) nor an
/// opener's replay windows (replays accepted), which is what a re-attaching control
/// process replaying its state would otherwise do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyTag([u8; 16]);

impl KeyTag {
    /// The tag of `key`.
    pub fn of(key: &StreamKey) -> Self {
        let mut h = Sha256::new();
        h.update(b"conflux key tag");
        h.update(key.key);
        h.update(key.nonce_base);
        let d = h.finalize();
        let mut t = [0u8; 16];
        t.copy_from_slice(&d[..16]);
        Self(t)
    }
}

impl fmt::Debug for KeyTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyTag(..)")
    }
}

/// A stream this node is the source of, as one worker seals it.
#[derive(Debug)]
pub struct EgressStream {
    /// The stream.
    pub id: StreamId,
    /// The destination's overlay address.
    pub peer: IpAddr,
    /// The first hop's label.
    pub label: Label,
    /// The lane this worker counts in.
    pub lane: Lane,
    /// Seals packets under the current key.
    pub sealer: Sealer,
    /// Hard expiry of the current key from its install record (the sealer has its own).
    pub expires_at: Instant,
    tag: KeyTag,
    /// Packets sealed.
    pub packets: u64,
    /// Inner bytes sealed.
    pub bytes: u64,
    /// `packets` and `bytes` when activity was last reported.
    pub reported: (u64, u64),
}

impl EgressStream {
    /// A stream sealing with `key` in `lane`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: StreamId,
        peer: IpAddr,
        label: Label,
        lane: Lane,
        epoch: KeyEpoch,
        key: &StreamKey,
        expires_at: Instant,
        now: Instant,
    ) -> Result<Self, conflux_shared::crypto::aead::SealError> {
        Ok(Self {
            id,
            peer,
            label,
            lane,
            sealer: Sealer::new(key, lane, epoch, Backend::AwsLc, now)?,
            expires_at,
            tag: KeyTag::of(key),
            packets: 0,
            bytes: 0,
            reported: (0, 0),
        })
    }

    /// Moves to a new key (rekey); the same key installed again only updates the label and
    /// expiry, so the lane's counter never restarts under one key.
    #[allow(clippy::too_many_arguments)]
    pub fn rekey(
        &mut self,
        label: Label,
        lane: Lane,
        epoch: KeyEpoch,
        key: &StreamKey,
        expires_at: Instant,
        now: Instant,
    ) -> Result<(), conflux_shared::crypto::aead::SealError> {
        let tag = KeyTag::of(key);
        self.label = label;
        self.expires_at = expires_at;
        if tag == self.tag && lane == self.lane && epoch == self.sealer.epoch() {
            return Ok(());
        }
        self.sealer = Sealer::new(key, lane, epoch, Backend::AwsLc, now)?;
        self.lane = lane;
        self.tag = tag;
        Ok(())
    }

    /// Whether the current key may no longer seal.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at || self.sealer.is_expired(now)
    }
}

/// A stream that ends at this node, as one worker opens it.
#[derive(Debug)]
pub struct IngressStream {
    /// The stream.
    pub id: StreamId,
    /// The source's overlay address: always an allowed inner source.
    pub peer: IpAddr,
    /// The label this node chose for it.
    pub label: Label,
    /// Opens packets under either epoch's key.
    pub opener: Opener,
    /// Hard expiry of each epoch's key from its install record.
    pub expires_at: [Option<Instant>; 2],
    tags: [Option<KeyTag>; 2],
    /// Further prefixes the source may send from (AllowedIPs).
    pub allowed: Vec<Prefix>,
    /// The source may use this node as its internet exit.
    pub exit: bool,
    /// Decrypted packets whose inner source was not allowed.
    pub spoofed: u64,
    /// Packets opened when activity was last reported.
    pub reported: u64,
}

impl IngressStream {
    /// A stream with no key yet.
    pub fn new(id: StreamId, peer: IpAddr, label: Label) -> Self {
        Self {
            id,
            peer,
            label,
            opener: Opener::new(Backend::AwsLc),
            expires_at: [None; 2],
            tags: [None; 2],
            allowed: Vec::new(),
            exit: false,
            spoofed: 0,
            reported: 0,
        }
    }

    /// Installs one epoch's key; the same key again only updates its expiry, so its replay
    /// windows are kept.
    pub fn install(
        &mut self,
        epoch: KeyEpoch,
        key: &StreamKey,
        expires_at: Instant,
        now: Instant,
    ) -> Result<(), conflux_shared::crypto::aead::KeyError> {
        let tag = KeyTag::of(key);
        let i = epoch.index();
        if self.tags[i] != Some(tag) || !self.opener.has_key(epoch) {
            self.opener.install(epoch, key, now)?;
            self.tags[i] = Some(tag);
        }
        self.expires_at[i] = Some(expires_at);
        Ok(())
    }

    /// Forgets one epoch's key.
    pub fn retire(&mut self, epoch: KeyEpoch) {
        self.opener.retire(epoch);
        self.expires_at[epoch.index()] = None;
        self.tags[epoch.index()] = None;
    }

    /// Whether the key of `epoch` is missing or past its record's hard expiry.
    #[inline]
    pub fn epoch_expired(&self, epoch: KeyEpoch, now: Instant) -> bool {
        self.expires_at[epoch.index()].is_none_or(|t| now >= t)
    }

    /// Whether no key can open anything any more.
    pub fn is_expired(&self, now: Instant) -> bool {
        (self.epoch_expired(KeyEpoch::Even, now) && self.epoch_expired(KeyEpoch::Odd, now))
            || self.opener.is_expired(now)
    }

    /// Whether a decrypted packet from `source` is one this stream's source may send.
    #[inline]
    pub fn source_allowed(&self, source: IpAddr) -> bool {
        source == self.peer || self.allowed.iter().any(|p| p.contains(source))
    }
}
