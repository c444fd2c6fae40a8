//! Fixed-size record rings: one [`Producer`] and one [`Consumer`], usually in two
//! processes.
//!
//! The producer writes many slots and publishes them with one `Release` store of the
//! head; the consumer loads the head once (`Acquire`), reads many slots and hands them
//! back with one `Release` store of the tail. The producer can also fill slots in place
//! through a [`Reservation`], so the data plane builds telemetry records without a copy.
//!
//! The consumer never hands out references into shared memory: it copies each record
//! (one volatile read) and validates the copy, because the peer could rewrite the slot
//! after a check made in place. A consumer built [`Consumer::wiping`] also zeroes each
//! slot once it is read, for records carrying key material.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use zeroize::Zeroize;

use super::Record;
use super::doorbell::Doorbells;
use super::endpoint::{ConsumerCore, ProducerCore};
use super::error::{RingError, SetupError};
use super::layout::{Expect, LINE, Layout, RingMap};

/// A record ring that has been created or attached but not yet given a role.
#[derive(Debug)]
pub struct RecordRing<T: Record> {
    map: RingMap,
    _record: PhantomData<T>,
}

impl<T: Record> RecordRing<T> {
    const EXPECT_SIZE: u32 = {
        assert!(
            size_of::<T>() > 0,
            "zero-sized records cannot travel a ring"
        );
        assert!(align_of::<T>() <= LINE, "record alignment above 128 bytes");
        assert!(size_of::<T>() <= u32::MAX as usize);
        size_of::<T>() as u32
    };

    fn expect(kind: u32) -> Expect {
        Expect {
            layout: Layout::Records,
            kind,
            record_size: Self::EXPECT_SIZE,
            schema: T::SCHEMA,
        }
    }

    /// Creates a ring of `capacity` slots (a power of two, at least 2) for channel
    /// `kind` in a new sealed memfd.
    pub fn create(kind: u32, capacity: usize) -> Result<Self, SetupError> {
        let name = format!("conflux-ring-{kind:x}");
        let map = RingMap::create(&name, Self::expect(kind), capacity as u64, 0)?;
        Ok(Self {
            map,
            _record: PhantomData,
        })
    }

    /// Attaches to a ring received from the peer, checking seals, size and every header
    /// field against `kind` and the record type `T`.
    pub fn attach(fd: OwnedFd, kind: u32) -> Result<Self, SetupError> {
        let map = RingMap::attach(fd, Self::expect(kind))?;
        Ok(Self {
            map,
            _record: PhantomData,
        })
    }

    /// The memfd, to hand to the peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.map.capacity as usize
    }

    /// This side writes records.
    pub fn into_producer(self) -> Producer<T> {
        let core = ProducerCore::new(self.map);
        let slots = core.map.data().cast::<T>();
        Producer {
            core,
            slots,
            records: 0,
            full: 0,
        }
    }

    /// This side reads records.
    pub fn into_consumer(self) -> Consumer<T> {
        let core = ConsumerCore::new(self.map);
        let slots = core.map.data().cast::<T>();
        Consumer {
            core,
            slots,
            wipe: false,
            records: 0,
            malformed: 0,
        }
    }
}

/// Counters of a [`Producer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records published.
    pub records: u64,
    /// Head stores (one per published batch).
    pub batches: u64,
    /// Calls that found less room than they asked for.
    pub full: u64,
    /// Doorbell rings sent to a sleeping consumer.
    pub wakeups: u64,
    /// Times the consumer's tail was found inconsistent.
    pub corrupt: u64,
}

/// Counters of a [`Consumer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Records that passed validation and were handed to the caller.
    pub records: u64,
    /// Records that failed [`Record::validate`] and were skipped.
    pub malformed: u64,
    /// Tail stores (one per consumed batch).
    pub batches: u64,
    /// Doorbell rings sent to a sleeping producer.
    pub wakeups: u64,
    /// Times the producer's head was found inconsistent.
    pub corrupt: u64,
}

/// The writing end of a record ring.
#[derive(Debug)]
pub struct Producer<T: Record> {
    core: ProducerCore,
    slots: *mut T,
    records: u64,
    full: u64,
}

// SAFETY: the producer owns its mapping; `slots` points into it and is only used through
// `&mut self`.
unsafe impl<T: Record + Send> Send for Producer<T> {}

impl<T: Record> Producer<T> {
    /// Copies as many of `records` as fit and publishes them with one store; returns how
    /// many were taken.
    pub fn push_batch(&mut self, records: &[T]) -> Result<usize, RingError> {
        if records.is_empty() {
            return Ok(0);
        }
        let free = self.core.usable(records.len() as u64)?;
        let n = records.len().min(free as usize);
        if n < records.len() {
            self.full += 1;
        }
        let cap = self.core.capacity() as usize;
        let start = self.core.offset();
        let first = n.min(cap - start);
        // SAFETY: slots [head, head + n) are free (checked against the tail above), and
        // positions are masked into the mapping; the consumer does not read free slots.
        unsafe {
            std::ptr::copy_nonoverlapping(records.as_ptr(), self.slots.add(start), first);
            std::ptr::copy_nonoverlapping(records.as_ptr().add(first), self.slots, n - first);
        }
        self.core.index += n as u64;
        self.publish();
        Ok(n)
    }

    /// Copies one record in and publishes it; `false` if the ring is full.
    pub fn push(&mut self, record: &T) -> Result<bool, RingError> {
        Ok(self.push_batch(std::slice::from_ref(record))? == 1)
    }

    /// Lends up to `n` free slots, contiguous in memory, to be filled in place and then
    /// published with [`Reservation::commit`]. Fewer (possibly none) are lent when the
    /// ring is nearly full or the run reaches the end of the ring.
    pub fn reserve(&mut self, n: usize) -> Result<Reservation<'_, T>, RingError> {
        let free = self.core.usable(n as u64)? as usize;
        let cap = self.core.capacity() as usize;
        let start = self.core.offset();
        let len = n.min(free).min(cap - start);
        if len < n {
            self.full += 1;
        }
        // SAFETY: `start + len <= cap`, inside the mapping.
        let slots = unsafe { self.slots.add(start) };
        Ok(Reservation {
            producer: self,
            slots,
            len,
        })
    }

    fn publish(&mut self) {
        self.records += self.core.publish();
    }

    /// Records published and not yet consumed (re-reads the consumer's tail).
    pub fn pending(&mut self) -> Result<usize, RingError> {
        Ok(self.core.pending()? as usize)
    }

    /// Gives this end the ring's doorbells: it then wakes a sleeping consumer after
    /// publishing, and can sleep itself in [`Producer::wait_for_space`].
    pub fn set_doorbells(&mut self, doorbells: Doorbells) {
        self.core.doorbells = Some(doorbells);
    }

    /// The doorbells given with [`Producer::set_doorbells`].
    pub fn doorbells(&self) -> Option<&Doorbells> {
        self.core.doorbells.as_ref()
    }

    /// For an external poller: announces that this end will sleep on the `space`
    /// doorbell until `want` slots are free. `false` means they already are: do not
    /// sleep. After waking (or deciding not to), call [`Producer::finish_sleep`].
    pub fn prepare_sleep(&mut self, want: usize) -> Result<bool, RingError> {
        let want = (want as u64).min(self.core.capacity());
        self.core.prepare_sleep(want)
    }

    /// Ends a sleep announced with [`Producer::prepare_sleep`] and resets the doorbell.
    pub fn finish_sleep(&mut self) {
        self.core.finish_sleep();
    }

    /// Spins briefly, then sleeps (on the doorbell if there is one, else in short naps)
    /// until `want` slots are free or `timeout` passes; returns whether they are.
    pub fn wait_for_space(&mut self, want: usize, timeout: Duration) -> Result<bool, RingError> {
        self.core.wait(want as u64, timeout)
    }

    /// Counters.
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            records: self.records,
            batches: self.core.batches,
            full: self.full,
            wakeups: self.core.wakeups,
            corrupt: self.core.corrupt,
        }
    }

    /// The memfd, to hand to a (re-)attaching peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.core.map.fd()
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.core.capacity() as usize
    }

    /// Channel the ring carries.
    pub fn kind(&self) -> u32 {
        self.core.map.kind
    }
}

/// Free slots lent by [`Producer::reserve`]; nothing is published unless committed.
#[derive(Debug)]
pub struct Reservation<'a, T: Record> {
    producer: &'a mut Producer<T>,
    slots: *mut T,
    len: usize,
}

impl<T: Record> Reservation<'_, T> {
    /// Publishes the first `n` slots (all of them at most) with one store.
    ///
    /// # Panics
    ///
    /// If `n` exceeds the reservation: committing slots that were not lent would publish
    /// records the caller never wrote.
    pub fn commit(self, n: usize) {
        assert!(
            n <= self.len,
            "committing {n} slots of a {}-slot reservation",
            self.len
        );
        self.producer.core.index += n as u64;
        self.producer.publish();
    }
}

impl<T: Record> Deref for Reservation<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: the slots are free, inside the mapping, initialized (the memfd starts
        // zeroed and `T: FromBytes`), and lent exclusively through `&mut Producer`.
        unsafe { std::slice::from_raw_parts(self.slots, self.len) }
    }
}

impl<T: Record> DerefMut for Reservation<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`.
        unsafe { std::slice::from_raw_parts_mut(self.slots, self.len) }
    }
}

/// The reading end of a record ring.
#[derive(Debug)]
pub struct Consumer<T: Record> {
    core: ConsumerCore,
    slots: *mut T,
    wipe: bool,
    records: u64,
    malformed: u64,
}

// SAFETY: as for `Producer`.
unsafe impl<T: Record + Send> Send for Consumer<T> {}

impl<T: Record> Consumer<T> {
    /// Zeroes every slot after reading it, and the local copies handed to
    /// [`Consumer::consume`] callbacks, so key material does not linger.
    pub fn wiping(mut self) -> Self {
        self.wipe = true;
        self
    }

    /// Reads one slot: a volatile copy, so that what is validated is what is used.
    ///
    /// # Safety
    ///
    /// `index` must be in `[tail, head)` as last validated.
    unsafe fn take(&mut self, index: u64) -> T {
        let mask = self.core.capacity() - 1;
        // SAFETY: masked position inside the mapping; slots are aligned for `T` and any
        // bytes are a valid `T`. The caller guarantees the producer is done with it.
        unsafe {
            let slot = self.slots.add((index & mask) as usize);
            let record = std::ptr::read_volatile(slot);
            if self.wipe {
                std::ptr::write_bytes(slot, 0, 1);
            }
            record
        }
    }

    /// Copies up to `out.len()` records out, skipping (and counting) malformed ones,
    /// and releases their slots with one store. Returns how many valid records were
    /// written to the front of `out`; 0 can also mean every record read was malformed.
    pub fn pop_batch(&mut self, out: &mut [T]) -> Result<usize, RingError> {
        if out.is_empty() {
            return Ok(0);
        }
        let ready = self.core.usable(out.len() as u64)?;
        let n = out.len().min(ready as usize);
        let mut valid = 0;
        for i in 0..n {
            // SAFETY: `tail + i < tail + ready <= head`.
            out[valid] = unsafe { self.take(self.core.index + i as u64) };
            if out[valid].validate().is_ok() {
                valid += 1;
            } else {
                self.malformed += 1;
            }
        }
        self.core.index += n as u64;
        self.core.publish();
        self.records += valid as u64;
        Ok(valid)
    }

    /// Reads the next valid record, skipping malformed ones; `None` when empty.
    pub fn pop(&mut self) -> Result<Option<T>, RingError> {
        let mut out = [T::new_zeroed()];
        while self.core.usable(1)? > 0 {
            if self.pop_batch(&mut out)? == 1 {
                let [record] = out;
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Calls `f` on a copy of each of up to `max` ready records that passes validation
    /// (malformed ones are skipped and counted), then releases their slots with one
    /// store. Returns the number of records read, valid or not.
    pub fn consume(&mut self, max: usize, mut f: impl FnMut(&T)) -> Result<usize, RingError> {
        let ready = self.core.usable(max as u64)?;
        let n = max.min(ready as usize);
        for i in 0..n {
            // SAFETY: `tail + i < head`.
            let mut record = unsafe { self.take(self.core.index + i as u64) };
            if record.validate().is_ok() {
                f(&record);
                self.records += 1;
            } else {
                self.malformed += 1;
            }
            if self.wipe {
                record.as_mut_bytes().zeroize();
            }
        }
        self.core.index += n as u64;
        self.core.publish();
        Ok(n)
    }

    /// Records ready to read, re-reading the producer's head.
    pub fn ready(&mut self) -> Result<usize, RingError> {
        Ok(self.core.usable(self.core.capacity())? as usize)
    }

    /// Gives this end the ring's doorbells: it then wakes a producer sleeping on a full
    /// ring after consuming, and can sleep itself in [`Consumer::wait_for_records`].
    pub fn set_doorbells(&mut self, doorbells: Doorbells) {
        self.core.doorbells = Some(doorbells);
    }

    /// The doorbells given with [`Consumer::set_doorbells`].
    pub fn doorbells(&self) -> Option<&Doorbells> {
        self.core.doorbells.as_ref()
    }

    /// For an external poller: announces that this end will sleep on the `data`
    /// doorbell. `false` means records are already there: do not sleep. After waking
    /// (or deciding not to), call [`Consumer::finish_sleep`].
    pub fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        self.core.prepare_sleep(1)
    }

    /// Ends a sleep announced with [`Consumer::prepare_sleep`] and resets the doorbell.
    pub fn finish_sleep(&mut self) {
        self.core.finish_sleep();
    }

    /// Spins briefly, then sleeps (on the doorbell if there is one, else in short naps)
    /// until records are ready or `timeout` passes; returns whether they are.
    pub fn wait_for_records(&mut self, timeout: Duration) -> Result<bool, RingError> {
        self.core.wait(1, timeout)
    }

    /// Counters.
    pub fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            records: self.records,
            malformed: self.malformed,
            batches: self.core.batches,
            wakeups: self.core.wakeups,
            corrupt: self.core.corrupt,
        }
    }

    /// The memfd, to hand to a (re-)attaching peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.core.map.fd()
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.core.capacity() as usize
    }

    /// Channel the ring carries.
    pub fn kind(&self) -> u32 {
        self.core.map.kind
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    use super::*;

    /// A record whose `check` must equal `!value`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
    #[repr(C)]
    struct Rec {
        value: u64,
        check: u64,
    }

    impl Rec {
        fn new(value: u64) -> Self {
            Self {
                value,
                check: !value,
            }
        }
    }

    impl Record for Rec {
        type Error = ();
        const SCHEMA: u32 = 0x5EC;

        fn validate(&self) -> Result<(), ()> {
            if self.check == !self.value {
                Ok(())
            } else {
                Err(())
            }
        }
    }

    fn pair(capacity: usize) -> (Producer<Rec>, Consumer<Rec>) {
        let ring = RecordRing::<Rec>::create(1, capacity).unwrap();
        let fd = rustix::io::dup(ring.fd()).unwrap();
        let other = RecordRing::<Rec>::attach(fd, 1).unwrap();
        (ring.into_producer(), other.into_consumer())
    }

    fn recs(range: std::ops::Range<u64>) -> Vec<Rec> {
        range.map(Rec::new).collect()
    }

    #[test]
    fn full_and_empty_are_reported() {
        let (mut p, mut c) = pair(4);
        assert_eq!(c.pop().unwrap(), None);
        assert_eq!(p.push_batch(&recs(0..6)).unwrap(), 4);
        assert!(!p.push(&Rec::new(9)).unwrap());
        assert_eq!(p.stats().full, 2);
        assert_eq!(p.pending().unwrap(), 4);
        let mut out = [Rec::new(0); 8];
        assert_eq!(c.pop_batch(&mut out).unwrap(), 4);
        assert_eq!(&out[..4], &recs(0..4)[..]);
        assert_eq!(c.pop_batch(&mut out).unwrap(), 0);
        assert_eq!(p.pending().unwrap(), 0);
    }

    #[test]
    fn batches_wrap_around_the_end() {
        let (mut p, mut c) = pair(8);
        let mut out = [Rec::new(0); 8];
        let mut next = 0;
        let mut expect = 0;
        for round in 0..50u64 {
            let n = 1 + (round * 7 % 8);
            let pushed = p.push_batch(&recs(next..next + n)).unwrap();
            next += pushed as u64;
            let got = c.pop_batch(&mut out[..(round % 5 + 1) as usize]).unwrap();
            for r in &out[..got] {
                assert_eq!(r.value, expect);
                expect += 1;
            }
        }
        while let Some(r) = c.pop().unwrap() {
            assert_eq!(r.value, expect);
            expect += 1;
        }
        assert_eq!(expect, next);
        assert!(next > 100, "the ring wrapped many times");
        assert_eq!(c.stats().records, next);
        assert_eq!(p.stats().records, next);
    }

    #[test]
    fn one_store_per_batch() {
        let (mut p, mut c) = pair(64);
        p.push_batch(&recs(0..32)).unwrap();
        p.push_batch(&recs(32..64)).unwrap();
        let mut out = [Rec::new(0); 64];
        assert_eq!(c.pop_batch(&mut out).unwrap(), 64);
        assert_eq!(p.stats().batches, 2);
        assert_eq!(c.stats().batches, 1);
    }

    #[test]
    fn reservation_fills_slots_in_place_up_to_the_end_of_the_ring() {
        let (mut p, mut c) = pair(8);
        p.push_batch(&recs(0..6)).unwrap();
        let mut out = [Rec::new(0); 8];
        assert_eq!(c.pop_batch(&mut out).unwrap(), 6);
        let mut slots = p.reserve(5).unwrap();
        assert_eq!(slots.len(), 2, "only two slots before the end of the ring");
        slots[0] = Rec::new(6);
        slots[1] = Rec::new(7);
        slots.commit(2);
        let mut slots = p.reserve(5).unwrap();
        assert_eq!(slots.len(), 5);
        for (i, s) in slots.iter_mut().enumerate() {
            *s = Rec::new(8 + i as u64);
        }
        slots.commit(3);
        // An uncommitted reservation publishes nothing.
        {
            let mut uncommitted = p.reserve(1).unwrap();
            uncommitted[0] = Rec::new(99);
        }
        assert_eq!(c.pop_batch(&mut out).unwrap(), 5);
        assert_eq!(&out[..5], &recs(6..11)[..]);
    }

    #[test]
    #[should_panic(expected = "committing 3 slots")]
    fn committing_more_than_reserved_panics() {
        let (mut p, _c) = pair(8);
        let slots = p.reserve(2).unwrap();
        slots.commit(3);
    }

    #[test]
    fn malformed_record_is_counted_and_skipped() {
        let (mut p, mut c) = pair(8);
        let mut batch = recs(0..5);
        batch[2].check = 0;
        p.push_batch(&batch).unwrap();
        let mut out = [Rec::new(0); 8];
        assert_eq!(c.pop_batch(&mut out).unwrap(), 4);
        let values: Vec<u64> = out[..4].iter().map(|r| r.value).collect();
        assert_eq!(values, [0, 1, 3, 4]);
        assert_eq!(c.stats().malformed, 1);
        assert_eq!(c.stats().records, 4);

        batch[0].check = 1;
        p.push_batch(&batch).unwrap();
        let mut seen = Vec::new();
        assert_eq!(c.consume(8, |r| seen.push(r.value)).unwrap(), 5);
        assert_eq!(seen, [1, 3, 4]);
        assert_eq!(c.stats().malformed, 3);
    }

    #[test]
    fn wiping_consumer_zeroes_slots_it_has_read() {
        let (mut p, c) = pair(4);
        let mut c = c.wiping();
        p.push_batch(&recs(1..4)).unwrap();
        assert_eq!(c.pop().unwrap(), Some(Rec::new(1)));
        let base = c.slots;
        // SAFETY: slot 0 is inside the mapping and has been consumed.
        let slot0 = unsafe { std::ptr::read_volatile(base) };
        let slot1 = unsafe { std::ptr::read_volatile(base.add(1)) };
        assert_eq!(slot0, Rec { value: 0, check: 0 });
        assert_eq!(slot1, Rec::new(2), "unread slots are left alone");
    }

    #[test]
    fn corrupt_head_is_detected_and_poisons_the_consumer() {
        let (mut p, mut c) = pair(8);
        p.push_batch(&recs(0..3)).unwrap();
        c.core.map.head().store(100, Ordering::Release);
        let err = c.pop().unwrap_err();
        assert_eq!(
            err,
            RingError::Corrupt {
                head: 100,
                tail: 0,
                capacity: 8
            }
        );
        // Even with a sane head again, the endpoint stays poisoned.
        c.core.map.head().store(3, Ordering::Release);
        assert_eq!(c.pop().unwrap_err(), err);
        assert_eq!(c.stats().corrupt, 1);
    }

    #[test]
    fn head_behind_tail_is_corrupt() {
        let (mut p, mut c) = pair(8);
        p.push_batch(&recs(0..3)).unwrap();
        assert_eq!(c.pop_batch(&mut [Rec::new(0); 3]).unwrap(), 3);
        c.core.map.head().store(1, Ordering::Release);
        assert!(matches!(c.ready(), Err(RingError::Corrupt { .. })));
    }

    #[test]
    fn corrupt_tail_is_detected_by_the_producer() {
        let (mut p, _c) = pair(8);
        p.push_batch(&recs(0..8)).unwrap();
        p.core.map.tail().store(20, Ordering::Release);
        assert!(matches!(
            p.push(&Rec::new(0)),
            Err(RingError::Corrupt {
                head: 8,
                tail: 20,
                ..
            })
        ));
        assert_eq!(p.stats().corrupt, 1);
    }

    #[test]
    fn reattaching_consumer_resumes_at_the_published_tail() {
        let ring = RecordRing::<Rec>::create(2, 8).unwrap();
        let fd = rustix::io::dup(ring.fd()).unwrap();
        let mut p = ring.into_producer();
        let mut c = RecordRing::<Rec>::attach(fd, 2).unwrap().into_consumer();
        p.push_batch(&recs(0..5)).unwrap();
        assert_eq!(c.pop_batch(&mut [Rec::new(0); 2]).unwrap(), 2);
        drop(c);
        let fd = rustix::io::dup(p.fd()).unwrap();
        let mut c = RecordRing::<Rec>::attach(fd, 2).unwrap().into_consumer();
        assert_eq!(c.pop().unwrap(), Some(Rec::new(2)));
    }

    #[test]
    fn wrong_record_type_or_kind_is_refused() {
        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
        #[repr(C)]
        struct Other(u64, u64);
        impl Record for Other {
            type Error = ();
            fn validate(&self) -> Result<(), ()> {
                Ok(())
            }
        }
        let ring = RecordRing::<Rec>::create(3, 8).unwrap();
        let dup = || rustix::io::dup(ring.fd()).unwrap();
        assert!(matches!(
            RecordRing::<Other>::attach(dup(), 3),
            Err(SetupError::Schema { .. })
        ));
        assert!(matches!(
            RecordRing::<Rec>::attach(dup(), 4),
            Err(SetupError::Kind { .. })
        ));
        assert!(matches!(
            RecordRing::<Small>::attach(dup(), 3),
            Err(SetupError::RecordSize {
                found: 16,
                expected: 8
            })
        ));
    }

    #[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
    #[repr(transparent)]
    struct Small(u64);

    impl Record for Small {
        type Error = std::convert::Infallible;
        const SCHEMA: u32 = 0x5EC;
        fn validate(&self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    #[test]
    fn doorbell_wakes_a_sleeping_consumer() {
        let (mut p, mut c) = pair(8);
        let bells = Doorbells::new().unwrap();
        p.set_doorbells(bells.try_clone().unwrap());
        c.set_doorbells(bells);
        // Publishing while the consumer is awake rings nothing.
        p.push(&Rec::new(0)).unwrap();
        assert_eq!(p.stats().wakeups, 0);
        assert_eq!(c.pop().unwrap(), Some(Rec::new(0)));
        let t = std::thread::spawn(move || {
            let mut c = c;
            let woke = c.wait_for_records(Duration::from_secs(20)).unwrap();
            (woke, c.pop().unwrap())
        });
        std::thread::sleep(Duration::from_millis(50));
        p.push(&Rec::new(1)).unwrap();
        let (woke, rec) = t.join().unwrap();
        assert!(woke);
        assert_eq!(rec, Some(Rec::new(1)));
    }

    #[test]
    fn doorbell_wakes_a_producer_waiting_for_space() {
        let (mut p, mut c) = pair(4);
        let bells = Doorbells::new().unwrap();
        p.set_doorbells(bells.try_clone().unwrap());
        c.set_doorbells(bells);
        p.push_batch(&recs(0..4)).unwrap();
        assert!(
            p.prepare_sleep(2).unwrap(),
            "full ring: the producer may sleep"
        );
        assert_eq!(c.pop_batch(&mut [Rec::new(0); 2]).unwrap(), 2);
        assert_eq!(c.stats().wakeups, 1);
        assert!(p.doorbells().unwrap().space.wait(Duration::ZERO).unwrap());
        p.finish_sleep();
        assert!(!p.prepare_sleep(2).unwrap(), "room now: no sleep");
        p.finish_sleep();
        assert!(p.wait_for_space(2, Duration::from_secs(1)).unwrap());
    }
}
