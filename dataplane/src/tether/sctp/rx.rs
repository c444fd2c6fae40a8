//! Receive side of the owned association: which TSNs arrived, what the next SACK reports.
//!
//! A ring bitmap holds the TSNs above the cumulative ack, [`WINDOW`] deep. Because every
//! tether channel is unreliable, a hole the peer never fills (its FORWARD-TSN lost, or a
//! peer that never sends one) is not allowed to stall the association: a TSN arriving past
//! the window pushes the cumulative ack forward over the hole, as a FORWARD-TSN would.

/// TSNs tracked above the cumulative ack.
pub const WINDOW: u32 = 8192;
const WORDS: usize = WINDOW as usize / 64;
const MASK: u32 = WINDOW - 1;

/// What happened to one received TSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, in order.
    InOrder,
    /// First arrival, above a hole.
    OutOfOrder,
    /// Seen before (or at/below the cumulative ack).
    Duplicate,
}

/// Serial-number comparison (RFC 1982) on 32-bit TSNs: `a` is after `b`.
#[inline]
pub fn after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// TSNs received above the cumulative ack.
#[derive(Clone)]
pub struct RecvTracker {
    cum: u32,
    highest: u32,
    bits: [u64; WORDS],
    /// Times the window overflowed and the cumulative ack skipped a hole on its own.
    pub window_skips: u64,
}

impl std::fmt::Debug for RecvTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvTracker")
            .field("cum", &self.cum)
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl RecvTracker {
    /// Starts below the peer's initial TSN.
    pub fn new(peer_initial_tsn: u32) -> Self {
        let cum = peer_initial_tsn.wrapping_sub(1);
        Self {
            cum,
            highest: cum,
            bits: [0; WORDS],
            window_skips: 0,
        }
    }

    /// The cumulative TSN ack.
    pub fn cum(&self) -> u32 {
        self.cum
    }

    #[inline]
    fn slot(tsn: u32) -> (usize, u64) {
        let i = tsn & MASK;
        ((i / 64) as usize, 1 << (i % 64))
    }

    #[inline]
    fn is_set(&self, tsn: u32) -> bool {
        let (w, b) = Self::slot(tsn);
        self.bits[w] & b != 0
    }

    #[inline]
    fn clear(&mut self, tsn: u32) {
        let (w, b) = Self::slot(tsn);
        self.bits[w] &= !b;
    }

    /// Records one arrival.
    #[inline]
    pub fn receive(&mut self, tsn: u32) -> Arrival {
        if !after(tsn, self.cum) {
            return Arrival::Duplicate;
        }
        if tsn.wrapping_sub(self.cum) > WINDOW {
            self.window_skips += 1;
            self.forward(tsn.wrapping_sub(WINDOW));
        }
        if self.is_set(tsn) {
            return Arrival::Duplicate;
        }
        if tsn == self.cum.wrapping_add(1) {
            self.cum = tsn;
            if after(tsn, self.highest) {
                self.highest = tsn;
            }
            self.advance();
            Arrival::InOrder
        } else {
            let (w, b) = Self::slot(tsn);
            self.bits[w] |= b;
            if after(tsn, self.highest) {
                self.highest = tsn;
            }
            Arrival::OutOfOrder
        }
    }

    fn advance(&mut self) {
        loop {
            let next = self.cum.wrapping_add(1);
            if !self.is_set(next) {
                break;
            }
            self.clear(next);
            self.cum = next;
        }
    }

    /// Moves the cumulative ack to `new_cum` (FORWARD-TSN); returns whether it moved.
    pub fn forward(&mut self, new_cum: u32) -> bool {
        if !after(new_cum, self.cum) {
            return false;
        }
        if new_cum.wrapping_sub(self.cum) >= WINDOW {
            self.bits = [0; WORDS];
        } else {
            let mut t = self.cum.wrapping_add(1);
            while t != new_cum.wrapping_add(1) {
                self.clear(t);
                t = t.wrapping_add(1);
            }
        }
        self.cum = new_cum;
        if after(new_cum, self.highest) {
            self.highest = new_cum;
        }
        self.advance();
        true
    }

    /// Whether TSNs above the cumulative ack have arrived (the next SACK carries gap blocks).
    pub fn has_gaps(&self) -> bool {
        self.highest != self.cum
    }

    /// First offset in `from..=span` (from the cumulative ack) whose bit equals `set`.
    fn find(&self, mut off: u32, span: u32, set: bool) -> Option<u32> {
        while off <= span {
            let i = self.cum.wrapping_add(off) & MASK;
            let bit = i % 64;
            let word = self.bits[(i / 64) as usize];
            let word = (if set { word } else { !word }) >> bit;
            if word != 0 {
                let o = off + word.trailing_zeros();
                return (o <= span).then_some(o);
            }
            off += 64 - bit;
        }
        None
    }

    /// Fills `out` with gap ack blocks (offsets from the cumulative ack); returns how many.
    pub fn gap_blocks(&self, out: &mut [(u16, u16)]) -> usize {
        let span = self.highest.wrapping_sub(self.cum);
        if span == 0 || span > WINDOW {
            return 0;
        }
        let mut n = 0;
        let mut off = 1;
        while n < out.len() {
            let Some(start) = self.find(off, span, true) else {
                break;
            };
            let end = self.find(start, span, false).map_or(span, |z| z - 1);
            out[n] = (start as u16, end as u16);
            n += 1;
            off = end + 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_and_holes() {
        let mut r = RecvTracker::new(10);
        assert_eq!(r.receive(10), Arrival::InOrder);
        assert_eq!(r.receive(12), Arrival::OutOfOrder);
        assert_eq!(r.receive(13), Arrival::OutOfOrder);
        assert_eq!(r.receive(16), Arrival::OutOfOrder);
        assert_eq!(r.receive(12), Arrival::Duplicate);
        assert_eq!(r.cum(), 10);
        let mut g = [(0, 0); 8];
        assert_eq!(r.gap_blocks(&mut g), 2);
        assert_eq!(&g[..2], &[(2, 3), (6, 6)]);
        assert_eq!(r.receive(11), Arrival::InOrder);
        assert_eq!(r.cum(), 13);
        assert!(r.forward(15));
        assert_eq!(r.cum(), 16);
        assert!(!r.has_gaps());
        assert_eq!(r.receive(9), Arrival::Duplicate);
    }

    #[test]
    fn overflowing_the_window_skips_the_hole() {
        let mut r = RecvTracker::new(u32::MAX - 5);
        r.receive(u32::MAX - 5);
        let far = (u32::MAX - 5).wrapping_add(WINDOW + 10);
        assert_eq!(r.receive(far), Arrival::OutOfOrder);
        assert_eq!(r.window_skips, 1);
        assert!(far.wrapping_sub(r.cum()) <= WINDOW);
    }

    proptest! {
        /// Against a set model: the cumulative ack is the end of the contiguous prefix and the
        /// gap blocks list exactly the received TSNs above it.
        #[test]
        fn matches_a_set_model(start in any::<u32>(), offs in proptest::collection::vec(0u32..300, 0..400)) {
            let mut r = RecvTracker::new(start);
            let mut seen = std::collections::BTreeSet::new();
            for o in offs {
                let fresh = seen.insert(o);
                let a = r.receive(start.wrapping_add(o));
                prop_assert_eq!(a == Arrival::Duplicate, !fresh);
            }
            let mut cum_off = 0u32;
            while seen.contains(&cum_off) { cum_off += 1; }
            prop_assert_eq!(r.cum(), start.wrapping_add(cum_off).wrapping_sub(1));
            let mut g = [(0u16, 0u16); 400];
            let n = r.gap_blocks(&mut g);
            let mut listed = std::collections::BTreeSet::new();
            for &(s, e) in &g[..n] {
                for x in s..=e { listed.insert(u32::from(x) + cum_off - 1); }
            }
            let above: std::collections::BTreeSet<u32> = seen.into_iter().filter(|&o| o >= cum_off).collect();
            prop_assert_eq!(listed, above);
        }
    }
}
