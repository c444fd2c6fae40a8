//! Sliding replay window over one lane's packet counters.
//!
//! Use it in two steps: [`ReplayWindow::check`] before decrypting (cheap, rejects replays
//! and stale packets without spending AES work on them) and [`ReplayWindow::mark`] only
//! after the tag has verified, so a forged packet can never move the window.
//!
//! The bitmap is a ring of 64-bit words indexed by `counter / 64`. Moving forward clears
//! only the words the window slides over; the word holding the newest counter may be
//! partly ahead of it, so the guaranteed depth is one word less than the ring.

use super::aead::REJECT_AFTER_MESSAGES;

const WORDS: usize = 64;
const WORD_BITS: u64 = u64::BITS as u64;

/// How far behind the newest accepted counter a packet may arrive and still be accepted.
pub const WINDOW: u64 = (WORDS as u64 - 1) * WORD_BITS;

// DESIGN §4 asks for at least 2,048 packets of reordering tolerance.
const _: () = assert!(WINDOW >= 2048);

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The counter fell behind the window: it may be a replay that can no longer be told apart.
    #[error("counter is older than the replay window")]
    TooOld,
    /// The counter was already accepted.
    #[error("counter was already received")]
    Duplicate,
    /// The counter is at or past the per-lane hard limit, which no honest sender reaches.
    #[error("counter is beyond the per-key message limit")]
    BeyondLimit,
}

/// Replay state of one (key, lane): the newest accepted counter and a bitmap behind it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One past the newest accepted counter; 0 before any.
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[inline]
fn slot(counter: u64) -> (usize, u64) {
    let word = (counter / WORD_BITS) as usize % WORDS;
    (word, 1 << (counter % WORD_BITS))
}

impl ReplayWindow {
    /// An empty window: every counter below the hard limit is fresh.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    /// Whether `counter` may be accepted; touches nothing.
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(ReplayError::BeyondLimit);
        }
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = slot(counter);
        if self.bitmap[word] & bit != 0 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }

    /// Records `counter` as received, sliding the window if it is the newest; call it only
    /// once the packet's tag has verified. Fails, changing nothing, where `check` would.
    #[inline]
    pub fn mark(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if counter >= self.next {
            self.advance(counter);
        }
        let (word, bit) = slot(counter);
        self.bitmap[word] |= bit;
        Ok(())
    }

    /// The newest accepted counter, if any.
    #[must_use]
    pub fn newest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    fn advance(&mut self, counter: u64) {
        // Words after the newest one up to the new counter's word hold counters that fell
        // out of the window a full ring ago: clear them. Before any counter, all are clear.
        if let Some(newest) = self.newest() {
            let from = newest / WORD_BITS;
            let to = counter / WORD_BITS;
            if to - from >= WORDS as u64 {
                self.bitmap = [0; WORDS];
            } else {
                for w in from + 1..=to {
                    self.bitmap[w as usize % WORDS] = 0;
                }
            }
        }
        self.next = counter + 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn accept(w: &mut ReplayWindow, c: u64) -> Result<(), ReplayError> {
        w.check(c)?;
        w.mark(c)
    }

    #[test]
    fn in_order_then_duplicate() {
        let mut w = ReplayWindow::new();
        for c in 0..10_000 {
            assert_eq!(accept(&mut w, c), Ok(()), "{c}");
        }
        assert_eq!(w.newest(), Some(9_999));
        assert_eq!(w.check(9_999), Err(ReplayError::Duplicate));
        assert_eq!(w.check(9_999 - WINDOW + 1), Err(ReplayError::Duplicate));
        assert_eq!(w.check(9_999 - WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
    }

    #[test]
    fn reordered_within_window_accepted_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 10_000), Ok(()));
        for c in (10_000 - WINDOW + 1..10_000).rev() {
            assert_eq!(accept(&mut w, c), Ok(()), "{c}");
        }
        for c in 10_000 - WINDOW + 1..=10_000 {
            assert_eq!(w.check(c), Err(ReplayError::Duplicate), "{c}");
        }
        assert_eq!(w.check(10_000 - WINDOW), Err(ReplayError::TooOld));
    }

    #[test]
    fn far_future_slides_the_window() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 5), Ok(()));
        let far = REJECT_AFTER_MESSAGES - 1;
        assert_eq!(accept(&mut w, far), Ok(()));
        assert_eq!(w.check(5), Err(ReplayError::TooOld));
        assert_eq!(w.check(far), Err(ReplayError::Duplicate));
        // The slide cleared stale bits: a counter just behind the new front is fresh.
        assert_eq!(accept(&mut w, far - 1), Ok(()));
        assert_eq!(w.check(far - WINDOW + 1), Ok(()));
    }

    #[test]
    fn slide_by_exactly_one_ring_clears_old_bits() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 64), Ok(()));
        let ahead = 64 + WORDS as u64 * WORD_BITS;
        assert_eq!(accept(&mut w, ahead), Ok(()));
        // Same ring slot as 64: stale bit must not make a fresh counter look duplicate.
        assert_eq!(w.check(ahead - 1), Ok(()));
        assert_eq!(w.check(ahead - WINDOW + 1), Ok(()));
    }

    #[test]
    fn beyond_limit_rejected() {
        let w = ReplayWindow::new();
        assert_eq!(
            w.check(REJECT_AFTER_MESSAGES),
            Err(ReplayError::BeyondLimit)
        );
        assert_eq!(w.check(u64::MAX), Err(ReplayError::BeyondLimit));
        let mut w = ReplayWindow::new();
        assert_eq!(w.mark(u64::MAX), Err(ReplayError::BeyondLimit));
        assert_eq!(w.newest(), None);
    }

    #[test]
    fn mark_refuses_what_check_refuses() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.mark(10), Ok(()));
        assert_eq!(w.mark(10), Err(ReplayError::Duplicate));
        assert_eq!(w.mark(10 + WINDOW + 5), Ok(()));
        assert_eq!(w.mark(4), Err(ReplayError::TooOld));
    }

    #[test]
    fn two_lanes_interleaved_are_independent() {
        let mut lanes = [ReplayWindow::new(), ReplayWindow::new()];
        for c in 0..3_000u64 {
            // Lane 1 runs 2,500 counters ahead and in reverse blocks of 8.
            let c1 = 2_500 + (c & !7) + (7 - (c & 7));
            assert_eq!(accept(&mut lanes[0], c), Ok(()));
            assert_eq!(accept(&mut lanes[1], c1), Ok(()));
        }
        // The same counter on the other lane is a different nonce, not a replay.
        assert_eq!(lanes[0].check(2_900), Err(ReplayError::Duplicate));
        assert_eq!(lanes[1].check(2_900), Err(ReplayError::Duplicate));
        assert_eq!(lanes[1].check(5_600), Ok(()));
        assert_eq!(lanes[0].check(3_000), Ok(()));
    }

    /// What the window must do, stated with a set of every counter ever accepted.
    #[derive(Default)]
    struct Model {
        seen: BTreeSet<u64>,
    }

    impl Model {
        fn check(&self, c: u64) -> Result<(), ReplayError> {
            if c >= REJECT_AFTER_MESSAGES {
                return Err(ReplayError::BeyondLimit);
            }
            if let Some(&newest) = self.seen.last()
                && c + WINDOW <= newest
            {
                return Err(ReplayError::TooOld);
            }
            if self.seen.contains(&c) {
                return Err(ReplayError::Duplicate);
            }
            Ok(())
        }
    }

    fn counter() -> impl Strategy<Value = u64> {
        // Mostly near a moving front, sometimes far ahead or beyond the limit.
        prop_oneof![
            8 => 0u64..12_000,
            1 => 0u64..REJECT_AFTER_MESSAGES + 10,
            1 => REJECT_AFTER_MESSAGES - 2..REJECT_AFTER_MESSAGES + 2,
        ]
    }

    proptest! {
        #[test]
        fn matches_set_model(ops in proptest::collection::vec((counter(), any::<bool>()), 1..600)) {
            let mut w = ReplayWindow::new();
            let mut m = Model::default();
            for (c, verified) in ops {
                let expect = m.check(c);
                prop_assert_eq!(w.check(c), expect, "check {}", c);
                // A packet whose tag failed is checked but never marked.
                if verified && expect.is_ok() {
                    prop_assert_eq!(w.mark(c), Ok(()));
                    m.seen.insert(c);
                }
                prop_assert_eq!(w.newest(), m.seen.last().copied());
            }
        }
    }
}
