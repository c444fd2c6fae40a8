//! Longest-prefix match over IPv4 and IPv6 prefixes.
//!
//! Entries are kept sorted from the longest prefix to the shortest and a lookup scans
//! them in order, which for the tens of routes a node holds costs a few compares in one or
//! two cache lines; a node with thousands of routes would want a trie here.

use std::net::IpAddr;

use conflux_shared::wire::record::{AddrFamily, IpPrefix};

/// A prefix as one comparable key: family, length and the address as a 128-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    v6: bool,
    len: u8,
    bits: u128,
}

impl Prefix {
    /// From a validated ring-record prefix.
    pub fn from_record(p: &IpPrefix) -> Self {
        let v6 = p.family == AddrFamily::V6;
        Self::new(p.network(), p.len.min(if v6 { 128 } else { 32 }))
    }

    /// `ip/len`, host bits cleared; `len` is capped at the family's width.
    pub fn new(ip: IpAddr, len: u8) -> Self {
        let (v6, bits, width) = key(ip);
        let len = len.min(width);
        Self {
            v6,
            len,
            bits: bits & mask(len, width),
        }
    }

    /// The one-address prefix of `ip`.
    pub fn host(ip: IpAddr) -> Self {
        Self::new(ip, 128)
    }

    /// Whether `ip` lies inside.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits, width) = key(ip);
        v6 == self.v6 && bits & mask(self.len, width) == self.bits
    }

    /// Prefix length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// The single address of a host prefix (/32 or /128).
    pub fn host_address(&self) -> Option<IpAddr> {
        match (self.v6, self.len) {
            (false, 32) => Some(IpAddr::V4(std::net::Ipv4Addr::from(self.bits as u32))),
            (true, 128) => Some(IpAddr::V6(std::net::Ipv6Addr::from(self.bits))),
            _ => None,
        }
    }

    /// Whether this is a zero-length (default) prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = if self.v6 {
            IpAddr::from(self.bits.to_be_bytes())
        } else {
            IpAddr::from((self.bits as u32).to_be_bytes())
        };
        write!(f, "{ip}/{}", self.len)
    }
}

#[inline]
fn key(ip: IpAddr) -> (bool, u128, u8) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (true, u128::from(a), 128),
    }
}

#[inline]
fn mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(len))) >> (128 - u32::from(width))
    }
}

/// A longest-prefix-match table.
#[derive(Debug, Clone)]
pub struct PrefixTable<V> {
    entries: Vec<(Prefix, V)>,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> PrefixTable<V> {
    /// Inserts or replaces the value of `prefix` (slow path: may allocate).
    pub fn insert(&mut self, prefix: Prefix, value: V) {
        if let Some(e) = self.entries.iter_mut().find(|(p, _)| *p == prefix) {
            e.1 = value;
            return;
        }
        let at = self.entries.partition_point(|(p, _)| p.len >= prefix.len);
        self.entries.insert(at, (prefix, value));
    }

    /// Removes `prefix`; returns its value.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<V> {
        let i = self.entries.iter().position(|(p, _)| p == prefix)?;
        Some(self.entries.remove(i).1)
    }

    /// The value of the longest prefix containing `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        self.entries
            .iter()
            .find(|(p, _)| p.contains(ip))
            .map(|(_, v)| v)
    }

    /// Every entry, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = &(Prefix, V)> {
        self.entries.iter()
    }

    /// Every value, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry whose value fails `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.entries.retain(|(_, v)| keep(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = PrefixTable::default();
        t.insert(Prefix::new(ip("10.0.0.0"), 8), "eight");
        t.insert(Prefix::new(ip("10.1.0.0"), 16), "sixteen");
        t.insert(Prefix::new(ip("0.0.0.0"), 0), "default");
        t.insert(Prefix::new(ip("fd00::"), 8), "v6");
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&"sixteen"));
        assert_eq!(t.lookup(ip("10.2.2.3")), Some(&"eight"));
        assert_eq!(t.lookup(ip("192.168.0.1")), Some(&"default"));
        assert_eq!(t.lookup(ip("fd12::1")), Some(&"v6"));
        assert_eq!(t.lookup(ip("fe80::1")), None);
        t.remove(&Prefix::new(ip("10.1.0.0"), 16));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&"eight"));
    }

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(
            Prefix::new(ip("10.1.2.3"), 24),
            Prefix::new(ip("10.1.2.0"), 24)
        );
        assert!(Prefix::host(ip("10.1.2.3")).contains(ip("10.1.2.3")));
        assert!(!Prefix::host(ip("10.1.2.3")).contains(ip("10.1.2.4")));
        assert!(Prefix::new(ip("::"), 0).contains(ip("::1")));
        assert!(!Prefix::new(ip("::"), 0).contains(ip("1.2.3.4")));
    }
}
