//! Address and prefix fields shared by several record bodies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use zerocopy::little_endian::{U16, U32};
use zerocopy::{Immutable, IntoBytes, KnownLayout, TryFromBytes, Unaligned};

use crate::wire::WireError;

/// A tether's identifier within one node, chosen by the control process.
pub type TetherId = u32;
/// A data plane worker's index (one worker per core).
pub type WorkerId = u16;

/// The address family of an address or prefix field.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(u8)]
pub enum AddrFamily {
    /// IPv4: the first 4 address bytes are used, the other 12 are zero.
    V4 = 4,
    /// IPv6: all 16 address bytes are used.
    V6 = 6,
}

impl AddrFamily {
    /// Longest prefix length of this family.
    pub const fn max_prefix_len(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }
}

fn split(ip: IpAddr) -> (AddrFamily, [u8; 16]) {
    let mut addr = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (AddrFamily::V4, addr)
        }
        IpAddr::V6(v6) => (AddrFamily::V6, v6.octets()),
    }
}

fn join(family: AddrFamily, addr: &[u8; 16]) -> IpAddr {
    match family {
        AddrFamily::V4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        AddrFamily::V6 => IpAddr::V6(Ipv6Addr::from(*addr)),
    }
}

fn check_v4_tail(family: AddrFamily, addr: &[u8; 16]) -> Result<(), WireError> {
    if family == AddrFamily::V4 && addr[4..] != [0; 12] {
        return Err(WireError::Reserved);
    }
    Ok(())
}

/// True when no bit past the first `len` bits of `addr` is set.
fn host_bits_clear(addr: &[u8; 16], len: u8) -> bool {
    let len = usize::from(len);
    let (full, rem) = (len / 8, len % 8);
    let partial_ok = match addr.get(full) {
        Some(&b) if rem > 0 => b & (0xff >> rem) == 0,
        Some(&b) => b == 0,
        None => true,
    };
    partial_ok && addr.iter().skip(full + 1).all(|&b| b == 0)
}

/// An IP address: family and 16 bytes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct IpAddrField {
    /// The family.
    pub family: AddrFamily,
    /// The address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl IpAddrField {
    /// The field for an address.
    pub fn new(ip: IpAddr) -> Self {
        let (family, addr) = split(ip);
        Self { family, addr }
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        join(self.family, &self.addr)
    }

    /// Rejects IPv4 addresses with bytes set past the first four.
    pub fn validate(&self) -> Result<(), WireError> {
        check_v4_tail(self.family, &self.addr)
    }
}

impl From<IpAddr> for IpAddrField {
    fn from(ip: IpAddr) -> Self {
        Self::new(ip)
    }
}

/// An IP prefix in canonical form: no bit set past its length.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct IpPrefix {
    /// The family.
    pub family: AddrFamily,
    /// Prefix length in bits: at most 32 for IPv4, 128 for IPv6.
    pub len: u8,
    /// The network address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl IpPrefix {
    /// The prefix `ip/len`; rejects a length past the family's and host bits that are set.
    pub fn new(ip: IpAddr, len: u8) -> Result<Self, WireError> {
        let (family, addr) = split(ip);
        let p = Self { family, len, addr };
        p.validate()?;
        Ok(p)
    }

    /// The single-address prefix `/32` or `/128`.
    pub fn host(ip: IpAddr) -> Self {
        let (family, addr) = split(ip);
        Self {
            family,
            len: family.max_prefix_len(),
            addr,
        }
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        join(self.family, &self.addr)
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (family, addr) = split(ip);
        if family != self.family {
            return false;
        }
        let len = usize::from(self.len.min(family.max_prefix_len()));
        let (full, rem) = (len / 8, len % 8);
        if addr[..full] != self.addr[..full] {
            return false;
        }
        rem == 0 || (addr[full] ^ self.addr[full]) & !(0xff >> rem) == 0
    }

    /// Rejects a length past the family's, set host bits and IPv4 tails.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.len > self.family.max_prefix_len() {
            return Err(WireError::Length(self.len.into()));
        }
        check_v4_tail(self.family, &self.addr)?;
        if !host_bits_clear(&self.addr, self.len) {
            return Err(WireError::Field("prefix has bits set past its length"));
        }
        Ok(())
    }
}

/// A UDP endpoint: family, port, address and (IPv6) scope.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TryFromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct SocketAddrField {
    /// The family.
    pub family: AddrFamily,
    /// Zero.
    pub reserved: u8,
    /// The port; never zero.
    pub port: U16,
    /// The address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// IPv6 scope id (link-local peers); zero for IPv4.
    pub scope_id: U32,
}

impl SocketAddrField {
    /// The field for a socket address (the IPv6 flow label is not kept).
    pub fn new(sa: SocketAddr) -> Self {
        let (family, addr) = split(sa.ip());
        let scope_id = match sa {
            SocketAddr::V4(_) => 0,
            SocketAddr::V6(v6) => v6.scope_id(),
        };
        Self {
            family,
            reserved: 0,
            port: U16::new(sa.port()),
            addr,
            scope_id: U32::new(scope_id),
        }
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        let port = self.port.get();
        match join(self.family, &self.addr) {
            IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, self.scope_id.get())),
        }
    }

    /// Rejects port zero, reserved bytes and IPv4 tails or scopes.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.reserved != 0 {
            return Err(WireError::Reserved);
        }
        if self.port.get() == 0 {
            return Err(WireError::Field("socket address port is zero"));
        }
        check_v4_tail(self.family, &self.addr)?;
        if self.family == AddrFamily::V4 && self.scope_id.get() != 0 {
            return Err(WireError::Reserved);
        }
        Ok(())
    }
}

impl From<SocketAddr> for SocketAddrField {
    fn from(sa: SocketAddr) -> Self {
        Self::new(sa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_bounds_and_host_bits() {
        assert!(IpPrefix::new(v4("10.0.0.0"), 8).is_ok());
        assert!(IpPrefix::new(v4("10.1.2.3"), 32).is_ok());
        assert!(IpPrefix::new(v4("0.0.0.0"), 0).is_ok());
        assert_eq!(
            IpPrefix::new(v4("10.0.0.0"), 33),
            Err(WireError::Length(33))
        );
        assert!(matches!(
            IpPrefix::new(v4("10.0.0.1"), 8),
            Err(WireError::Field(_))
        ));
        assert!(IpPrefix::new(v4("10.128.0.0"), 9).is_ok());
        assert!(matches!(
            IpPrefix::new(v4("10.192.0.0"), 9),
            Err(WireError::Field(_))
        ));
        assert!(IpPrefix::new(v4("fd00::"), 8).is_ok());
        assert!(IpPrefix::new(v4("fd00::1"), 128).is_ok());
        assert_eq!(
            IpPrefix::new(v4("fd00::"), 129),
            Err(WireError::Length(129))
        );
        assert!(matches!(
            IpPrefix::new(v4("fd00::1"), 127),
            Err(WireError::Field(_))
        ));
    }

    #[test]
    fn prefix_contains() {
        let p = IpPrefix::new(v4("10.64.0.0"), 10).unwrap();
        assert!(p.contains(v4("10.64.0.1")));
        assert!(p.contains(v4("10.127.255.255")));
        assert!(!p.contains(v4("10.128.0.0")));
        assert!(!p.contains(v4("fd00::1")));
        let h = IpPrefix::host(v4("fd00::1"));
        assert!(h.contains(v4("fd00::1")) && !h.contains(v4("fd00::2")));
        assert!(
            IpPrefix::new(v4("::"), 0)
                .unwrap()
                .contains(v4("2001:db8::1"))
        );
    }

    #[test]
    fn v4_tail_must_be_zero() {
        let mut a = IpAddrField::new(v4("192.0.2.1"));
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.ip(), v4("192.0.2.1"));
        a.addr[15] = 1;
        assert_eq!(a.validate(), Err(WireError::Reserved));
    }

    #[test]
    fn socket_addr_round_trip_and_checks() {
        for s in ["192.0.2.1:4500", "[fe80::1%3]:51820", "[2001:db8::7]:1"] {
            let sa: SocketAddr = s.parse().unwrap();
            let f = SocketAddrField::new(sa);
            assert_eq!(f.validate(), Ok(()), "{s}");
            assert_eq!(f.socket_addr(), sa, "{s}");
        }
        let mut f = SocketAddrField::new("192.0.2.1:0".parse().unwrap());
        assert!(matches!(f.validate(), Err(WireError::Field(_))));
        f.port = U16::new(1);
        f.scope_id = U32::new(2);
        assert_eq!(f.validate(), Err(WireError::Reserved));
    }
}
