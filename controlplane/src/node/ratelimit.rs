//! Token-bucket rate limits, per peer and overall (sans-io: `now` is passed in).
//!
//! Every handshake and presence costs signature checks, so a peer that sends faster than
//! its bucket refills has its excess dropped and counted, and a global bucket bounds the
//! work that many peers (or many forged ids) can cause together.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens the bucket holds (the allowed burst).
    pub burst: f64,
}

impl Rate {
    /// A rate of `per_sec` tokens a second with bursts of up to `burst`.
    pub const fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst }
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate.per_sec).min(self.rate.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has been full long enough to be forgotten without changing any
    /// later decision.
    fn is_idle(&self, now: Instant) -> bool {
        let missing = self.rate.burst - self.tokens;
        let refill = Duration::from_secs_f64((missing / self.rate.per_sec).max(0.0));
        now.saturating_duration_since(self.last) >= refill
    }
}

/// One bucket per key, plus a global bucket that every key also draws from.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    per_key: Rate,
    buckets: HashMap<K, TokenBucket>,
    global: TokenBucket,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter that tracks at most `max_keys` keys at once; beyond that, idle keys are
    /// forgotten, and if none is idle new keys are refused.
    pub fn new(per_key: Rate, global: Rate, max_keys: usize, now: Instant) -> Self {
        Self {
            per_key,
            buckets: HashMap::new(),
            global: TokenBucket::new(global, now),
            max_keys,
        }
    }

    /// Whether `key` may act now; takes a token from its bucket and the global one.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.max_keys {
                self.buckets.retain(|_, b| !b.is_idle(now));
                if self.buckets.len() >= self.max_keys {
                    return false;
                }
            }
            self.buckets
                .insert(key.clone(), TokenBucket::new(self.per_key, now));
        }
        let Some(bucket) = self.buckets.get_mut(key) else {
            return false;
        };
        // The key's own bucket is checked first so one noisy key cannot drain the global one.
        bucket.try_take(now) && self.global.try_take(now)
    }

    /// Forgets a key (a peer that left).
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Rate::new(2.0, 3.0), t0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0), "burst exhausted");
        assert!(!b.try_take(t0 + Duration::from_millis(400)));
        assert!(
            b.try_take(t0 + Duration::from_millis(600)),
            "one token after 0.5 s"
        );
        assert!(!b.try_take(t0 + Duration::from_millis(600)));
    }

    #[test]
    fn one_noisy_key_does_not_starve_another() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::new(1.0, 2.0), Rate::new(100.0, 10.0), 16, t0);
        let allowed = (0..50).filter(|_| l.allow(&"noisy", t0)).count();
        assert_eq!(allowed, 2);
        assert!(l.allow(&"quiet", t0));
    }

    #[test]
    fn global_bucket_bounds_many_keys() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::new(1.0, 1.0), Rate::new(1.0, 5.0), 1000, t0);
        let allowed = (0..100u32).filter(|k| l.allow(k, t0)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn key_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::new(1.0, 1.0), Rate::new(1e6, 1e6), 4, t0);
        assert!((0..4u32).all(|k| l.allow(&k, t0)));
        assert!(!l.allow(&99, t0), "table full of busy keys");
        let later = t0 + Duration::from_secs(2);
        assert!(l.allow(&99, later), "idle keys are forgotten");
    }
}
