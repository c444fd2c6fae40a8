//! The responder's memory of init nonces, so that a captured init cannot be replayed.

use std::collections::{BTreeSet, HashSet};

use crate::wire::handshake::HANDSHAKE_NONCE_LEN;

type Nonce = [u8; HANDSHAKE_NONCE_LEN];

/// Init nonces seen and not yet expired, at most `capacity` of them.
///
/// An entry lives until its init would be refused as expired anyway, so an init is either
/// still remembered or too old: no window in between lets a replay through. Only inits that
/// passed every check are remembered, so only authenticated peers can fill the cache, and a
/// full cache refuses new inits rather than forgetting live nonces.
#[derive(Debug)]
pub(super) struct NonceCache {
    capacity: usize,
    seen: HashSet<Nonce>,
    /// (deadline, nonce), oldest deadline first, for pruning.
    by_deadline: BTreeSet<(u64, Nonce)>,
}

/// The cache holds `capacity` unexpired nonces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CacheFull;

impl NonceCache {
    /// An empty cache that holds at most `capacity` nonces.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::with_capacity(capacity.min(4096)),
            by_deadline: BTreeSet::new(),
        }
    }

    /// Forgets every nonce whose deadline is before `now`.
    pub(super) fn prune(&mut self, now: u64) {
        while let Some(&(deadline, nonce)) = self.by_deadline.first() {
            if deadline >= now {
                break;
            }
            self.by_deadline.pop_first();
            self.seen.remove(&nonce);
        }
    }

    /// Whether `nonce` is remembered.
    pub(super) fn contains(&self, nonce: &Nonce) -> bool {
        self.seen.contains(nonce)
    }

    /// Remembers `nonce` until `deadline` (unix seconds, inclusive).
    pub(super) fn insert(&mut self, nonce: Nonce, deadline: u64) -> Result<(), CacheFull> {
        if self.seen.contains(&nonce) {
            return Ok(());
        }
        if self.seen.len() >= self.capacity {
            return Err(CacheFull);
        }
        self.seen.insert(nonce);
        self.by_deadline.insert((deadline, nonce));
        Ok(())
    }

    /// Nonces remembered.
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_deadline_then_forgets() {
        let mut c = NonceCache::new(8);
        c.insert([1; 32], 100).unwrap();
        c.insert([2; 32], 50).unwrap();
        c.prune(50);
        assert!(
            c.contains(&[1; 32]) && c.contains(&[2; 32]),
            "deadline is inclusive"
        );
        c.prune(51);
        assert!(c.contains(&[1; 32]) && !c.contains(&[2; 32]));
        c.prune(101);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn full_cache_refuses_until_entries_expire() {
        let mut c = NonceCache::new(2);
        c.insert([1; 32], 10).unwrap();
        c.insert([2; 32], 20).unwrap();
        assert_eq!(c.insert([3; 32], 30), Err(CacheFull));
        assert_eq!(c.insert([1; 32], 10), Ok(()), "a known nonce needs no room");
        c.prune(11);
        assert_eq!(c.insert([3; 32], 30), Ok(()));
        assert_eq!(c.len(), 2);
    }
}
