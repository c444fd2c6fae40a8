//! Relay: a packet whose label names a relay entry leaves on the entry's tether with the
//! next hop's label, still encrypted. The relay never holds the stream's key: the label is
//! outside the AES-GCM associated data precisely so that this rewrite keeps the tag valid.

use std::time::Instant;

use conflux_shared::wire::data::DataPacket;
use conflux_shared::wire::record::{CounterId, TetherId};

use crate::table::{RelayEntry, Tables};

/// A token bucket on relayed packets (policy `relay_rate_pps`), per worker.
#[derive(Debug, Clone)]
pub struct RelayLimiter {
    /// Whole tokens available.
    tokens: u64,
    /// Nanoseconds of refill not yet turned into a token.
    credit_ns: u64,
    last: Option<Instant>,
}

impl Default for RelayLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayLimiter {
    /// A full bucket.
    pub fn new() -> Self {
        Self {
            tokens: 0,
            credit_ns: 0,
            last: None,
        }
    }

    /// Takes one token at `rate` per second (a burst of up to one second's worth); `rate`
    /// zero means no limit.
    #[inline]
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let rate = u64::from(rate);
        match self.last {
            None => self.tokens = rate,
            Some(last) => {
                let elapsed = now
                    .saturating_duration_since(last)
                    .as_nanos()
                    .min(u128::from(u64::MAX)) as u64;
                let credit = self.credit_ns.saturating_add(elapsed.saturating_mul(rate));
                self.tokens = (self.tokens + credit / 1_000_000_000).min(rate);
                self.credit_ns = credit % 1_000_000_000;
            }
        }
        self.last = Some(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Swaps the label of `packet` (a whole data packet: header, ciphertext, tag) for the
/// entry's outbound label and returns the tether to send it on, or the counter under which
/// it is dropped: relaying switched off by policy, the rate limit, or a tether that is not
/// (or no longer) there.
#[inline]
pub fn relay(
    tables: &Tables,
    limiter: &mut RelayLimiter,
    entry: RelayEntry,
    now: Instant,
    packet: &mut [u8],
) -> Result<TetherId, CounterId> {
    if !tables.policy.relay
        || !tables.tethers.contains_key(&entry.tether)
        || !limiter.take(tables.policy.relay_rate_pps, now)
    {
        return Err(CounterId::RelayDenied);
    }
    let mut p = DataPacket::new_checked(packet).map_err(|_| CounterId::MalformedPacket)?;
    p.set_label(entry.out_label);
    Ok(entry.tether)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut l = RelayLimiter::new();
        let taken = (0..150).filter(|_| l.take(100, t0)).count();
        assert_eq!(taken, 100, "a burst of one second's worth");
        assert!(
            !l.take(100, t0 + Duration::from_millis(5)),
            "half a token is not a token"
        );
        assert!(l.take(100, t0 + Duration::from_millis(10)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            (0..150).filter(|_| l.take(100, later)).count(),
            100,
            "refill is capped"
        );
        assert!((0..10).all(|_| l.take(0, later)), "zero means no limit");
    }
}
