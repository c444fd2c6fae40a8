//! The underlay UDP sockets: one per worker, bound with `SO_REUSEPORT` to one shared port
//! (or to a port of its own), marked with `SO_MARK` so policy routing keeps tunnel traffic
//! out of the tunnel, with `UDP_GRO` on receive and `UDP_SEGMENT` used per send.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOL_UDP` option: enable GRO on receive.
const UDP_GRO: libc::c_int = 104;
/// `SOL_UDP` cmsg / option: GSO segment size on send.
pub const UDP_SEGMENT: libc::c_int = 103;

/// How a worker's socket is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Address and port to bind.
    pub bind: SocketAddr,
    /// `SO_REUSEPORT` (all workers on `bind`'s port) rather than one port each.
    pub reuse_port: bool,
    /// `SO_MARK` value, or 0 for none.
    pub mark: u32,
    /// Turn on `UDP_GRO`.
    pub gro: bool,
}

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{op} for {addr}: {source}")]
pub struct UdpError {
    op: &'static str,
    addr: SocketAddr,
    source: std::io::Error,
}

/// A socket address in the kernel's layout, and its length.
pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_in6, libc::socklen_t) {
    // SAFETY: plain data; zero is valid.
    let mut out: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in fits in the front of a sockaddr_in6.
            unsafe { std::ptr::write((&mut out as *mut libc::sockaddr_in6).cast(), sin) };
            (out, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_addr.s6_addr = a.ip().octets();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_scope_id = a.scope_id();
            (out, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Parses a kernel socket address (untrusted length); IPv4-mapped IPv6 comes back as IPv4.
pub fn from_sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    match i32::from(family) {
        libc::AF_INET if bytes.len() >= 8 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = std::net::Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if bytes.len() >= 28 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[8..24]);
            let ip = std::net::Ipv6Addr::from(a);
            if let Some(v4) = ip.to_ipv4_mapped() {
                return Some(SocketAddr::V4(SocketAddrV4::new(v4, port)));
            }
            let scope = u32::from_ne_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
        }
        _ => None,
    }
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: the option value is an int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens and binds a worker's socket. It stays blocking: io_uring then waits for send
/// buffer space itself instead of failing a send with `EAGAIN`.
pub fn open(opts: &UdpOptions) -> Result<OwnedFd, UdpError> {
    let err = |op| {
        move |source| UdpError {
            op,
            addr: opts.bind,
            source,
        }
    };
    let family = if opts.bind.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(err("socket")(std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if opts.reuse_port {
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).map_err(err("SO_REUSEPORT"))?;
    }
    if opts.mark != 0 {
        setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            opts.mark as libc::c_int,
        )
        .map_err(err("SO_MARK"))?;
    }
    // Bigger socket buffers absorb a burst of GSO sends while the worker is encrypting.
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
    if opts.gro {
        setsockopt(&fd, libc::SOL_UDP, UDP_GRO, 1).map_err(err("UDP_GRO"))?;
    }
    let (sa, len) = to_sockaddr(opts.bind);
    // SAFETY: `sa` holds `len` valid bytes of a socket address.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in6).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(err("bind")(std::io::Error::last_os_error()));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sockaddr_round_trips() {
        for s in ["10.1.2.3:51820", "[fd00::1]:443", "[fe80::1%2]:1"] {
            let a: SocketAddr = s.parse().unwrap();
            let (sa, len) = to_sockaddr(a);
            // SAFETY: reading `len` bytes of the sockaddr just written.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&sa as *const libc::sockaddr_in6).cast::<u8>(),
                    len as usize,
                )
            };
            assert_eq!(from_sockaddr(bytes), Some(a));
        }
    }

    proptest! {
        #[test]
        fn random_sockaddr_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = from_sockaddr(&bytes);
        }
    }
}
