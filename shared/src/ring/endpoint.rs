//! Index bookkeeping shared by record and message rings: each side's private index, the
//! cached and checked peer index, poisoning, publishing and sleeping.
//!
//! Indices are free-running `u64` counts of slots (record rings) or bytes (message
//! rings); `index & (capacity - 1)` is the position. A peer index is accepted only if
//! `head - tail <= capacity` (and, for byte rings, it is frame-aligned); anything else
//! poisons the endpoint.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::doorbell::{self, Doorbells, SPIN_BEFORE_SLEEP};
use super::error::RingError;
use super::layout::RingMap;

/// Longest nap of an endpoint that has no doorbell to sleep on.
const NAP_WITHOUT_DOORBELL: Duration = Duration::from_micros(50);

/// Producer-side state.
#[derive(Debug)]
pub(crate) struct ProducerCore {
    pub(crate) map: RingMap,
    pub(crate) capacity: u64,
    align: u64,
    /// Next index to write; may be ahead of what the consumer has been shown.
    pub(crate) head: u64,
    published: u64,
    tail_cache: u64,
    poisoned: Option<RingError>,
    pub(crate) doorbells: Option<Doorbells>,
    pub(crate) batches: u64,
    pub(crate) wakeups: u64,
    pub(crate) corrupt: u64,
}

impl ProducerCore {
    pub(crate) fn new(map: RingMap, align: u64) -> Self {
        let head = map.head().load(Ordering::Acquire);
        let tail = map.tail().load(Ordering::Acquire);
        // Attach checked these, but the peer may have moved them since.
        let poisoned = indices_corrupt(head, tail, map.capacity, align);
        Self {
            capacity: map.capacity,
            map,
            align,
            head,
            published: head,
            tail_cache: if poisoned.is_some() { head } else { tail },
            poisoned,
            doorbells: None,
            batches: 0,
            wakeups: 0,
            corrupt: 0,
        }
    }

    pub(crate) fn check(&self) -> Result<(), RingError> {
        self.poisoned.map_or(Ok(()), Err)
    }

    /// Room for at least `want` units if there is; re-reads the tail only when the
    /// cached one does not show enough.
    pub(crate) fn free(&mut self, want: u64) -> Result<u64, RingError> {
        self.check()?;
        let free = self.capacity - (self.head - self.tail_cache);
        if free >= want {
            return Ok(free);
        }
        let tail = self.map.tail().load(Ordering::Acquire);
        let used = self.head.wrapping_sub(tail);
        if used > self.capacity || !tail.is_multiple_of(self.align) {
            return Err(self.poison(tail));
        }
        self.tail_cache = tail;
        Ok(self.capacity - used)
    }

    fn poison(&mut self, tail: u64) -> RingError {
        let err = RingError::Corrupt {
            head: self.head,
            tail,
            capacity: self.capacity,
        };
        self.poisoned = Some(err);
        self.corrupt += 1;
        err
    }

    /// Makes everything written so far visible to the consumer; returns how many units
    /// that was.
    pub(crate) fn publish(&mut self) -> u64 {
        let n = self.head - self.published;
        if n == 0 {
            return 0;
        }
        self.map.head().store(self.head, Ordering::Release);
        self.published = self.head;
        self.batches += 1;
        if let Some(bells) = &self.doorbells
            && doorbell::wake_peer(self.map.consumer_sleeping(), &bells.data)
        {
            self.wakeups += 1;
        }
        n
    }

    /// Units published and not yet released by the consumer.
    pub(crate) fn pending(&mut self) -> Result<u64, RingError> {
        let free = self.free(self.capacity)?;
        Ok(self.capacity - free)
    }

    /// Announces that the producer will sleep on the `space` doorbell until `want`
    /// units are free; `false` if they already are (do not sleep).
    pub(crate) fn prepare_sleep(&mut self, want: u64) -> Result<bool, RingError> {
        doorbell::announce_sleep(self.map.producer_sleeping());
        match self.free(want) {
            Ok(free) if free < want => Ok(true),
            other => {
                doorbell::cancel_sleep(self.map.producer_sleeping());
                other.map(|_| false)
            }
        }
    }

    /// Ends a sleep begun with [`Self::prepare_sleep`].
    pub(crate) fn finish_sleep(&mut self) {
        doorbell::cancel_sleep(self.map.producer_sleeping());
        if let Some(bells) = &self.doorbells {
            let _ = bells.space.drain();
        }
    }

    /// Spins, then sleeps until `want` units are free or `timeout` passes.
    pub(crate) fn wait_for_space(
        &mut self,
        want: u64,
        timeout: Duration,
    ) -> Result<bool, RingError> {
        let want = want.min(self.capacity);
        for _ in 0..SPIN_BEFORE_SLEEP {
            if self.free(want)? >= want {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        if self.doorbells.is_none() {
            nap(timeout);
        } else if self.prepare_sleep(want)? {
            if let Some(bells) = &self.doorbells {
                bells.space.wait(timeout).map_err(RingError::Doorbell)?;
            }
            self.finish_sleep();
        }
        Ok(self.free(want)? >= want)
    }
}

/// Consumer-side state.
#[derive(Debug)]
pub(crate) struct ConsumerCore {
    pub(crate) map: RingMap,
    pub(crate) capacity: u64,
    align: u64,
    /// Next index to read; may be ahead of what the producer has been told.
    pub(crate) tail: u64,
    released: u64,
    head_cache: u64,
    poisoned: Option<RingError>,
    pub(crate) doorbells: Option<Doorbells>,
    pub(crate) batches: u64,
    pub(crate) wakeups: u64,
    pub(crate) corrupt: u64,
}

impl ConsumerCore {
    pub(crate) fn new(map: RingMap, align: u64) -> Self {
        let head = map.head().load(Ordering::Acquire);
        let tail = map.tail().load(Ordering::Acquire);
        let poisoned = indices_corrupt(head, tail, map.capacity, align);
        Self {
            capacity: map.capacity,
            map,
            align,
            tail,
            released: tail,
            head_cache: if poisoned.is_some() { tail } else { head },
            poisoned,
            doorbells: None,
            batches: 0,
            wakeups: 0,
            corrupt: 0,
        }
    }

    pub(crate) fn check(&self) -> Result<(), RingError> {
        self.poisoned.map_or(Ok(()), Err)
    }

    /// Units ready to read, at least `want` if there are; re-reads the head only when
    /// the cached one does not show enough.
    pub(crate) fn available(&mut self, want: u64) -> Result<u64, RingError> {
        self.check()?;
        let ready = self.head_cache - self.tail;
        if ready >= want {
            return Ok(ready);
        }
        let head = self.map.head().load(Ordering::Acquire);
        let ready = head.wrapping_sub(self.tail);
        if ready > self.capacity || !head.is_multiple_of(self.align) {
            return Err(self.poison(RingError::Corrupt {
                head,
                tail: self.tail,
                capacity: self.capacity,
            }));
        }
        self.head_cache = head;
        Ok(ready)
    }

    /// Marks the endpoint unusable; every later call returns `err`.
    pub(crate) fn poison(&mut self, err: RingError) -> RingError {
        self.poisoned = Some(err);
        self.corrupt += 1;
        err
    }

    /// Hands everything read so far back to the producer.
    pub(crate) fn release(&mut self) {
        if self.tail == self.released {
            return;
        }
        self.map.tail().store(self.tail, Ordering::Release);
        self.released = self.tail;
        self.batches += 1;
        if let Some(bells) = &self.doorbells
            && doorbell::wake_peer(self.map.producer_sleeping(), &bells.space)
        {
            self.wakeups += 1;
        }
    }

    /// Announces that the consumer will sleep on the `data` doorbell; `false` if data
    /// is already there (do not sleep).
    pub(crate) fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        doorbell::announce_sleep(self.map.consumer_sleeping());
        match self.available(1) {
            Ok(0) => Ok(true),
            other => {
                doorbell::cancel_sleep(self.map.consumer_sleeping());
                other.map(|_| false)
            }
        }
    }

    /// Ends a sleep begun with [`Self::prepare_sleep`].
    pub(crate) fn finish_sleep(&mut self) {
        doorbell::cancel_sleep(self.map.consumer_sleeping());
        if let Some(bells) = &self.doorbells {
            let _ = bells.data.drain();
        }
    }

    /// Spins, then sleeps until data is ready or `timeout` passes.
    pub(crate) fn wait_for_data(&mut self, timeout: Duration) -> Result<bool, RingError> {
        for _ in 0..SPIN_BEFORE_SLEEP {
            if self.available(1)? > 0 {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        if self.doorbells.is_none() {
            nap(timeout);
        } else if self.prepare_sleep()? {
            if let Some(bells) = &self.doorbells {
                bells.data.wait(timeout).map_err(RingError::Doorbell)?;
            }
            self.finish_sleep();
        }
        Ok(self.available(1)? > 0)
    }
}

fn indices_corrupt(head: u64, tail: u64, capacity: u64, align: u64) -> Option<RingError> {
    let bad = head.wrapping_sub(tail) > capacity
        || !head.is_multiple_of(align)
        || !tail.is_multiple_of(align);
    bad.then_some(RingError::Corrupt {
        head,
        tail,
        capacity,
    })
}

fn nap(timeout: Duration) {
    std::thread::yield_now();
    std::thread::sleep(timeout.min(NAP_WITHOUT_DOORBELL));
}
