//! Index bookkeeping shared by record and message rings: each side's private index, the
//! cached and checked peer index, poisoning, publishing and sleeping.
//!
//! Indices are free-running `u64` counts of slots (record rings) or bytes (message
//! rings); `index & (capacity - 1)` is the position. A peer index is accepted only if
//! `head - tail <= capacity` (and, for byte rings, it is frame-aligned); anything else
//! poisons the endpoint.
//!
//! The two sides mirror each other: each owns one index (the producer the head, the
//! consumer the tail), stores it for the peer, caches the peer's, sleeps on one doorbell
//! and rings the other. [`Core`] does all of it once; its `PRODUCER` parameter says which
//! index, flag and doorbell are its own.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::doorbell::{self, Doorbell, Doorbells, SPIN_BEFORE_SLEEP};
use super::error::RingError;
use super::layout::{RingMap, indices_fit};

/// Longest nap of an endpoint that has no doorbell to sleep on.
const NAP_WITHOUT_DOORBELL: Duration = Duration::from_micros(50);

/// Producer-side state: owns the head, can use the free room.
pub(crate) type ProducerCore = Core<true>;
/// Consumer-side state: owns the tail, can use the ready data.
pub(crate) type ConsumerCore = Core<false>;

/// One side's state.
#[derive(Debug)]
pub(crate) struct Core<const PRODUCER: bool> {
    pub(crate) map: RingMap,
    /// This side's next index (head or tail); may be ahead of what the peer has been shown.
    pub(crate) index: u64,
    /// `index` as last stored for the peer.
    stored: u64,
    /// The peer's index as last loaded and checked.
    peer_cache: u64,
    poisoned: Option<RingError>,
    pub(crate) doorbells: Option<Doorbells>,
    pub(crate) batches: u64,
    pub(crate) wakeups: u64,
    pub(crate) corrupt: u64,
}

impl<const PRODUCER: bool> Core<PRODUCER> {
    pub(crate) fn new(map: RingMap) -> Self {
        let (own, peer) = Self::indices(&map);
        let (own, peer) = (own.load(Ordering::Acquire), peer.load(Ordering::Acquire));
        let (head, tail) = Self::head_tail(own, peer);
        // Attach checked these, but the peer may have moved them since.
        let poisoned =
            (!indices_fit(head, tail, map.capacity, map.align)).then_some(RingError::Corrupt {
                head,
                tail,
                capacity: map.capacity,
            });
        Self {
            map,
            index: own,
            stored: own,
            peer_cache: if poisoned.is_some() { own } else { peer },
            poisoned,
            doorbells: None,
            batches: 0,
            wakeups: 0,
            corrupt: 0,
        }
    }

    /// (this side's index, the peer's) in the shared header.
    fn indices(map: &RingMap) -> (&AtomicU64, &AtomicU64) {
        if PRODUCER {
            (map.head(), map.tail())
        } else {
            (map.tail(), map.head())
        }
    }

    /// (this side's "sleeping" flag, the peer's).
    fn sleeping(map: &RingMap) -> (&AtomicU32, &AtomicU32) {
        if PRODUCER {
            (map.producer_sleeping(), map.consumer_sleeping())
        } else {
            (map.consumer_sleeping(), map.producer_sleeping())
        }
    }

    /// (the doorbell this side sleeps on, the one it rings).
    fn bells(bells: &Doorbells) -> (&Doorbell, &Doorbell) {
        if PRODUCER {
            (&bells.space, &bells.data)
        } else {
            (&bells.data, &bells.space)
        }
    }

    fn head_tail(own: u64, peer: u64) -> (u64, u64) {
        if PRODUCER { (own, peer) } else { (peer, own) }
    }

    /// What this side can use of a ring holding `used` units: the free room or the data.
    fn usable_of(&self, used: u64) -> u64 {
        if PRODUCER {
            self.map.capacity - used
        } else {
            used
        }
    }

    /// Slots or bytes in the ring.
    pub(crate) fn capacity(&self) -> u64 {
        self.map.capacity
    }

    pub(crate) fn check(&self) -> Result<(), RingError> {
        self.poisoned.map_or(Ok(()), Err)
    }

    /// Where `index` lies in the ring.
    pub(crate) fn offset(&self) -> usize {
        (self.index & (self.map.capacity - 1)) as usize
    }

    /// Units this side can use now (free room for the producer, ready data for the
    /// consumer), at least `want` if there are; re-reads the peer's index only when the
    /// cached one does not show enough.
    pub(crate) fn usable(&mut self, want: u64) -> Result<u64, RingError> {
        self.check()?;
        let (head, tail) = Self::head_tail(self.index, self.peer_cache);
        let usable = self.usable_of(head - tail);
        if usable >= want {
            return Ok(usable);
        }
        let peer = Self::indices(&self.map).1.load(Ordering::Acquire);
        let (head, tail) = Self::head_tail(self.index, peer);
        let used = head.wrapping_sub(tail);
        // `align` is a power of two: a mask, not a division, on this hot path.
        if used > self.map.capacity || peer & (self.map.align - 1) != 0 {
            return Err(self.poison(RingError::Corrupt {
                head,
                tail,
                capacity: self.map.capacity,
            }));
        }
        self.peer_cache = peer;
        Ok(self.usable_of(used))
    }

    /// Marks the endpoint unusable; every later call returns `err`.
    pub(crate) fn poison(&mut self, err: RingError) -> RingError {
        self.poisoned = Some(err);
        self.corrupt += 1;
        err
    }

    /// Stores this side's index for the peer with one `Release` store (the producer
    /// publishes records, the consumer hands their room back) and wakes the peer if it
    /// sleeps; returns how many units that was.
    pub(crate) fn publish(&mut self) -> u64 {
        let n = self.index - self.stored;
        if n == 0 {
            return 0;
        }
        Self::indices(&self.map)
            .0
            .store(self.index, Ordering::Release);
        self.stored = self.index;
        self.batches += 1;
        if let Some(bells) = &self.doorbells
            && doorbell::wake_peer(Self::sleeping(&self.map).1, Self::bells(bells).1)
        {
            self.wakeups += 1;
        }
        n
    }

    /// Announces that this side will sleep on its doorbell until `want` units are usable;
    /// `false` if they already are (do not sleep).
    pub(crate) fn prepare_sleep(&mut self, want: u64) -> Result<bool, RingError> {
        doorbell::announce_sleep(Self::sleeping(&self.map).0);
        match self.usable(want) {
            Ok(usable) if usable < want => Ok(true),
            other => {
                doorbell::cancel_sleep(Self::sleeping(&self.map).0);
                other.map(|_| false)
            }
        }
    }

    /// Ends a sleep begun with [`Self::prepare_sleep`].
    pub(crate) fn finish_sleep(&mut self) {
        doorbell::cancel_sleep(Self::sleeping(&self.map).0);
        if let Some(bells) = &self.doorbells {
            let _ = Self::bells(bells).0.drain();
        }
    }

    /// Spins, then sleeps until `want` units are usable or `timeout` passes.
    pub(crate) fn wait(&mut self, want: u64, timeout: Duration) -> Result<bool, RingError> {
        let want = want.min(self.map.capacity);
        for _ in 0..SPIN_BEFORE_SLEEP {
            if self.usable(want)? >= want {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        if self.doorbells.is_none() {
            nap(timeout);
        } else if self.prepare_sleep(want)? {
            if let Some(bells) = &self.doorbells {
                Self::bells(bells)
                    .0
                    .wait(timeout)
                    .map_err(RingError::Doorbell)?;
            }
            self.finish_sleep();
        }
        Ok(self.usable(want)? >= want)
    }
}

impl ProducerCore {
    /// Units published and not yet released by the consumer.
    pub(crate) fn pending(&mut self) -> Result<u64, RingError> {
        let free = self.usable(self.map.capacity)?;
        Ok(self.map.capacity - free)
    }
}

fn nap(timeout: Duration) {
    std::thread::yield_now();
    std::thread::sleep(timeout.min(NAP_WITHOUT_DOORBELL));
}
