//! Overlay subnets and address allocation.
//!
//! Each realm has one subnet, and an IPv4 realm may have an IPv6 subnet beside it (every
//! node then gets one address in each, allocated the same way). A node's address is chosen once, at its first registration,
//! and kept for the node's life. The first candidate is derived from the node id, so
//! allocations spread over the subnet instead of piling up at its start; a taken candidate
//! moves on to the next address. The store's uniqueness constraint on (realm, address) is
//! the final word on collisions.

use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use conflux_shared::id::NodeId;

/// Why a subnet or an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Not `address/prefix`.
    #[error("subnet {0:?} is not in CIDR notation (like 10.40.0.0/16)")]
    BadSubnet(String),
    /// Host bits set in the subnet's address.
    #[error("subnet {0} has host bits set; did you mean {1}?")]
    NotNetwork(String, String),
    /// Fewer than two usable host addresses.
    #[error("subnet {0} is too small (at most /30 for IPv4, /126 for IPv6)")]
    TooSmall(String),
    /// Not an IP address.
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    /// The address is outside the subnet, or is its network or broadcast address.
    #[error("address {0} is not a host address of subnet {1}")]
    Outside(String, String),
    /// An address of the other family than the subnet's.
    #[error(
        "address {0} is not of subnet {1}'s family (a realm's IPv6 addresses are allocated \
         from its subnet6, never requested)"
    )]
    WrongFamily(String, String),
    /// `subnet6` is not an IPv6 subnet.
    #[error("subnet6 {0} is not an IPv6 subnet (like fd7a:cf::/64)")]
    NotIpv6(String),
    /// `subnet6` was given beside a subnet that is already IPv6.
    #[error("subnet {0} is already IPv6; subnet6 adds an IPv6 subnet to an IPv4 realm")]
    SubnetAlreadyIpv6(String),
}

/// A realm's overlay subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet(IpNet);

impl Subnet {
    /// Parses a subnet in CIDR notation; the address must be the network address.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let net: IpNet = s.parse().map_err(|_| AddrError::BadSubnet(s.to_owned()))?;
        if net.trunc() != net {
            return Err(AddrError::NotNetwork(s.to_owned(), net.trunc().to_string()));
        }
        let max = match net {
            IpNet::V4(_) => 30,
            IpNet::V6(_) => 126,
        };
        if net.prefix_len() > max {
            return Err(AddrError::TooSmall(s.to_owned()));
        }
        Ok(Self(net))
    }

    /// Parses a realm's IPv6 subnet, which sits beside the IPv4 `subnet`.
    pub fn parse6(s: &str, subnet: &Subnet) -> Result<Self, AddrError> {
        let net = Self::parse(s)?;
        if !net.is_ipv6() {
            return Err(AddrError::NotIpv6(s.to_owned()));
        }
        if subnet.is_ipv6() {
            return Err(AddrError::SubnetAlreadyIpv6(subnet.to_string()));
        }
        Ok(net)
    }

    /// Whether this is an IPv6 subnet.
    pub fn is_ipv6(&self) -> bool {
        matches!(self.0, IpNet::V6(_))
    }

    /// Number of assignable host addresses. IPv4 loses the network and broadcast
    /// addresses, IPv6 the subnet-router anycast address.
    pub fn host_count(&self) -> u128 {
        match self.0 {
            IpNet::V4(n) => (1u128 << (32 - n.prefix_len())) - 2,
            IpNet::V6(n) => {
                let bits = 128 - u32::from(n.prefix_len());
                if bits == 128 {
                    u128::MAX
                } else {
                    (1u128 << bits) - 1
                }
            }
        }
    }

    /// The `i`-th host address, `0 <= i < host_count()`.
    fn host(&self, i: u128) -> IpAddr {
        match self.0 {
            IpNet::V4(n) => {
                // host_count() < 2^32 for IPv4, so `i + 1` fits in a u32.
                let base = u32::from(n.network());
                IpAddr::V4((base + (i as u32) + 1).into())
            }
            IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) + i + 1).into()),
        }
    }

    /// Checks that `s` is a host address of this subnet.
    pub fn check_host(&self, s: &str) -> Result<IpAddr, AddrError> {
        let ip: IpAddr = s.parse().map_err(|_| AddrError::BadAddress(s.to_owned()))?;
        let outside = || AddrError::Outside(ip.to_string(), self.to_string());
        if ip.is_ipv4() != matches!(self.0, IpNet::V4(_)) {
            return Err(AddrError::WrongFamily(ip.to_string(), self.to_string()));
        }
        if !self.0.contains(&ip) || ip == self.0.network() {
            return Err(outside());
        }
        if matches!(self.0, IpNet::V4(_)) && ip == self.0.broadcast() {
            return Err(outside());
        }
        Ok(ip)
    }

    /// Picks the address for `node`: the first of its candidate sequence for which `taken`
    /// says no. `None` when every host address is taken.
    pub fn allocate(
        &self,
        node: &NodeId,
        mut taken: impl FnMut(IpAddr) -> Result<bool, rusqlite::Error>,
    ) -> Result<Option<IpAddr>, rusqlite::Error> {
        let count = self.host_count();
        let digest = Sha256::digest(node.0);
        let start = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes")) % count;
        let mut i = start;
        // Bounded by the subnet size; in the worst case (a full /16) this is 65k indexed
        // lookups, and realms that large should use larger subnets.
        for _ in 0..count.min(1 << 20) {
            let ip = self.host(i);
            if !taken(ip)? {
                return Ok(Some(ip));
            }
            i = (i + 1) % count;
        }
        Ok(None)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn subnets_are_validated() {
        assert!(Subnet::parse("10.40.0.0/16").is_ok());
        assert!(Subnet::parse("fd00:cf::/64").is_ok());
        assert!(
            matches!(Subnet::parse("10.40.0.1/16"), Err(AddrError::NotNetwork(_, n)) if n == "10.40.0.0/16")
        );
        assert!(matches!(
            Subnet::parse("10.40.0.0"),
            Err(AddrError::BadSubnet(_))
        ));
        assert!(matches!(
            Subnet::parse("10.40.0.0/31"),
            Err(AddrError::TooSmall(_))
        ));
        assert_eq!(Subnet::parse("10.0.0.0/30").unwrap().host_count(), 2);
        assert_eq!(Subnet::parse("fd00::/120").unwrap().host_count(), 255);
    }

    #[test]
    fn host_check_excludes_network_and_broadcast() {
        let s = Subnet::parse("10.9.0.0/24").unwrap();
        assert!(s.check_host("10.9.0.1").is_ok());
        assert!(s.check_host("10.9.0.254").is_ok());
        for bad in ["10.9.0.0", "10.9.0.255", "10.9.1.1"] {
            assert!(
                matches!(s.check_host(bad), Err(AddrError::Outside(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            s.check_host("nope"),
            Err(AddrError::BadAddress(_))
        ));
        let e = s.check_host("fd00::1").unwrap_err();
        assert_eq!(
            e,
            AddrError::WrongFamily("fd00::1".into(), "10.9.0.0/24".into())
        );
        assert!(e.to_string().contains("subnet6"), "{e}");
    }

    #[test]
    fn allocation_is_deterministic_unique_and_fills_the_subnet() {
        let s = Subnet::parse("10.9.0.0/29").unwrap();
        let ids: Vec<NodeId> = (0..6).map(|_| NodeId::random()).collect();
        let mut used = HashSet::new();
        for id in &ids {
            let ip = s
                .allocate(id, |ip| Ok(used.contains(&ip)))
                .unwrap()
                .unwrap();
            assert!(s.check_host(&ip.to_string()).is_ok());
            assert!(used.insert(ip), "{ip} handed out twice");
        }
        assert_eq!(used.len(), 6);
        assert_eq!(
            s.allocate(&NodeId::random(), |ip| Ok(used.contains(&ip)))
                .unwrap(),
            None
        );
        // With nothing taken, the same node always gets the same first candidate.
        let a = s.allocate(&ids[0], |_| Ok(false)).unwrap();
        assert_eq!(a, s.allocate(&ids[0], |_| Ok(false)).unwrap());
    }

    #[test]
    fn ipv6_subnet_beside_ipv4_is_checked() {
        let v4 = Subnet::parse("10.40.0.0/16").unwrap();
        let v6 = Subnet::parse6("fd7a:cf::/64", &v4).unwrap();
        assert!(v6.is_ipv6() && !v4.is_ipv6());
        assert_eq!(v6.to_string(), "fd7a:cf::/64");
        assert_eq!(
            Subnet::parse6("10.41.0.0/16", &v4),
            Err(AddrError::NotIpv6("10.41.0.0/16".into()))
        );
        assert!(matches!(
            Subnet::parse6("fd7a:cf::1/64", &v4),
            Err(AddrError::NotNetwork(..))
        ));
        assert!(matches!(
            Subnet::parse6("fd7a:cf::", &v4),
            Err(AddrError::BadSubnet(_))
        ));
        let only6 = Subnet::parse("fd00:1::/64").unwrap();
        assert_eq!(
            Subnet::parse6("fd7a:cf::/64", &only6),
            Err(AddrError::SubnetAlreadyIpv6("fd00:1::/64".into()))
        );
        let msg = Subnet::parse6("10.41.0.0/16", &v4).unwrap_err().to_string();
        assert!(msg.contains("not an IPv6 subnet"), "{msg}");
    }

    #[test]
    fn ipv6_allocation_is_deterministic_per_node() {
        let s = Subnet::parse("fd7a:cf::/64").unwrap();
        let id = NodeId::random();
        let a = s.allocate(&id, |_| Ok(false)).unwrap().unwrap();
        assert_eq!(Some(a), s.allocate(&id, |_| Ok(false)).unwrap());
        // A taken candidate moves on to the next address.
        let b = s.allocate(&id, |ip| Ok(ip == a)).unwrap().unwrap();
        assert_ne!(a, b);
        assert!(s.check_host(&b.to_string()).is_ok());
    }

    #[test]
    fn ipv6_allocation_stays_inside() {
        let s = Subnet::parse("fd00:cf:1::/64").unwrap();
        for _ in 0..50 {
            let ip = s
                .allocate(&NodeId::random(), |_| Ok(false))
                .unwrap()
                .unwrap();
            assert!(s.check_host(&ip.to_string()).is_ok(), "{ip}");
        }
    }
}
