//! Random push / reserve / pop / consume sequences on a record ring, checked against a
//! `VecDeque` model: same records, same order, same room, malformed ones counted.

use std::collections::VecDeque;

use conflux_shared::ring::{Consumer, Producer, Record, RecordRing};
use proptest::prelude::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Rec {
    seq: u64,
    check: u64,
}

impl Rec {
    fn new(seq: u64, valid: bool) -> Self {
        let check = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(!valid);
        Self { seq, check }
    }
}

impl Record for Rec {
    type Error = ();

    fn validate(&self) -> Result<(), ()> {
        (self.check == self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .then_some(())
            .ok_or(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Push `n` records; every record whose bit is set in the mask is malformed.
    Push(usize, u32),
    /// Reserve `n` slots, fill them, commit `k` of them.
    Reserve(usize, usize),
    /// Pop up to `n` into a buffer.
    Pop(usize),
    /// Consume up to `n` through the callback.
    Consume(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..40, any::<u32>()).prop_map(|(n, m)| Op::Push(n, m & m.rotate_left(7))),
        (0usize..40, 0usize..40).prop_map(|(n, k)| Op::Reserve(n, k)),
        (0usize..40).prop_map(Op::Pop),
        (0usize..40).prop_map(Op::Consume),
    ]
}

fn pair(capacity: usize) -> (Producer<Rec>, Consumer<Rec>) {
    let ring = RecordRing::<Rec>::create(0x70, capacity).unwrap();
    let fd = rustix::io::dup(ring.fd()).unwrap();
    let consumer = RecordRing::<Rec>::attach(fd, 0x70).unwrap().into_consumer();
    (ring.into_producer(), consumer)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ring_behaves_like_a_bounded_queue(cap_log in 1u32..6, ops in prop::collection::vec(op(), 1..120)) {
        let capacity = 1usize << cap_log;
        let (mut producer, mut consumer) = pair(capacity);
        // Everything in the ring, malformed included: (record, valid).
        let mut model: VecDeque<(Rec, bool)> = VecDeque::new();
        let mut next = 0u64;
        let mut malformed = 0u64;

        for op in ops {
            match op {
                Op::Push(n, mask) => {
                    let batch: Vec<(Rec, bool)> = (0..n)
                        .map(|i| {
                            let valid = mask >> (i % 32) & 1 == 0;
                            (Rec::new(next + i as u64, valid), valid)
                        })
                        .collect();
                    let recs: Vec<Rec> = batch.iter().map(|b| b.0).collect();
                    let taken = producer.push_batch(&recs).unwrap();
                    prop_assert_eq!(taken, n.min(capacity - model.len()));
                    model.extend(batch.into_iter().take(taken));
                    next += taken as u64;
                }
                Op::Reserve(n, k) => {
                    let free = capacity - model.len();
                    let mut slots = producer.reserve(n).unwrap();
                    prop_assert!(slots.len() <= n.min(free));
                    let k = k.min(slots.len());
                    for (i, slot) in slots.iter_mut().enumerate() {
                        *slot = Rec::new(next + i as u64, true);
                    }
                    slots.commit(k);
                    model.extend((0..k).map(|i| (Rec::new(next + i as u64, true), true)));
                    next += k as u64;
                }
                Op::Pop(n) => {
                    let mut out = vec![Rec::new(0, true); n];
                    let got = consumer.pop_batch(&mut out).unwrap();
                    let taken: Vec<(Rec, bool)> = model.drain(..n.min(model.len())).collect();
                    malformed += taken.iter().filter(|t| !t.1).count() as u64;
                    let expected: Vec<Rec> = taken.iter().filter(|t| t.1).map(|t| t.0).collect();
                    prop_assert_eq!(&out[..got], &expected[..]);
                }
                Op::Consume(n) => {
                    let mut seen = Vec::new();
                    let read = consumer.consume(n, |r| seen.push(*r)).unwrap();
                    prop_assert_eq!(read, n.min(model.len()));
                    let taken: Vec<(Rec, bool)> = model.drain(..read).collect();
                    malformed += taken.iter().filter(|t| !t.1).count() as u64;
                    let expected: Vec<Rec> = taken.iter().filter(|t| t.1).map(|t| t.0).collect();
                    prop_assert_eq!(seen, expected);
                }
            }
            prop_assert_eq!(producer.pending().unwrap(), model.len());
            prop_assert_eq!(consumer.ready().unwrap(), model.len());
            prop_assert_eq!(consumer.stats().malformed, malformed);
        }
    }
}
