//! The underlay UDP sockets: one per worker, bound with `SO_REUSEPORT` to one shared port
//! (or to a port of its own), marked with `SO_MARK` so policy routing keeps tunnel traffic
//! out of the tunnel, with `UDP_GRO` on receive and `UDP_SEGMENT` used per send.
//!
//! A wildcard bind (`0.0.0.0` or `[::]`) makes one dual-stack `AF_INET6` socket
//! (`IPV6_V6ONLY` off), so one socket per worker serves IPv4 and IPv6 peers: IPv4 peers
//! arrive as IPv4-mapped addresses, which [`from_sockaddr`] reports as IPv4, and are
//! written back in the mapped form by [`to_sockaddr`]. A specific IPv4 address binds a
//! plain `AF_INET` socket, as does a wildcard on a host without IPv6.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether this process's worker sockets are dual-stack `AF_INET6` sockets, on which an
/// IPv4 peer must be written in the IPv4-mapped form. Every worker binds the same listen
/// address, so this is one fact for the whole process; [`open`] sets it.
static DUAL_STACK: AtomicBool = AtomicBool::new(false);

/// Whether the worker sockets are dual-stack (IPv4 peers are sent to as `::ffff:a.b.c.d`).
pub fn dual_stack() -> bool {
    DUAL_STACK.load(Ordering::Relaxed)
}

/// A socket address in the kernel's layout for this process's worker sockets, and its
/// length: on dual-stack sockets an IPv4 peer becomes its IPv4-mapped IPv6 address.
pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_in6, libc::socklen_t) {
    sockaddr_for(addr, dual_stack())
}

/// A socket address in the kernel's layout, and its length; `mapped` writes an IPv4
/// address as IPv4-mapped IPv6 (for an `AF_INET6` socket).
pub fn sockaddr_for(addr: SocketAddr, mapped: bool) -> (libc::sockaddr_in6, libc::socklen_t) {
    // SAFETY: plain data; zero is valid.
    let mut out: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) if mapped => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_addr.s6_addr = a.ip().to_ipv6_mapped().octets();
            (out, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
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

fn socket(family: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The socket for `bind` and the address it is really bound to: a wildcard becomes a
/// dual-stack `[::]` socket unless the host has no IPv6, where `0.0.0.0` stays IPv4.
fn family_socket(bind: SocketAddr) -> std::io::Result<(OwnedFd, SocketAddr, bool)> {
    let wildcard = bind.ip().is_unspecified();
    if bind.is_ipv4() && !wildcard {
        return Ok((socket(libc::AF_INET)?, bind, false));
    }
    match socket(libc::AF_INET6) {
        Ok(fd) => {
            let dual = wildcard;
            setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, i32::from(!dual))?;
            let at = if dual {
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), bind.port())
            } else {
                bind
            };
            Ok((fd, at, dual))
        }
        Err(e) if bind.is_ipv4() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let at = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), bind.port());
            Ok((socket(libc::AF_INET)?, at, false))
        }
        Err(e) => Err(e),
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
    let (fd, bind_at, dual) = family_socket(opts.bind).map_err(err("socket"))?;
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
    // Path MTU probing (`tether::sctp::pmtu`): DF on every datagram, never fragmented
    // here, and the kernel's own path MTU cache ignored, so a probe bigger than the path is
    // lost on the path (and the search learns from it) rather than refused or fragmented
    // on the strength of an ICMP error anyone could forge. The IPv4 option also covers the
    // IPv4-mapped peers of a dual-stack socket.
    setsockopt(
        &fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    )
    .map_err(err("IP_MTU_DISCOVER"))?;
    if !bind_at.is_ipv4() {
        setsockopt(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
        .map_err(err("IPV6_MTU_DISCOVER"))?;
    }
    if opts.gro {
        setsockopt(&fd, libc::SOL_UDP, UDP_GRO, 1).map_err(err("UDP_GRO"))?;
    }
    let (sa, len) = sockaddr_for(bind_at, false);
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
    if dual {
        DUAL_STACK.store(true, Ordering::Relaxed);
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_of(sa: &libc::sockaddr_in6, len: libc::socklen_t) -> Vec<u8> {
        // SAFETY: reading `len` bytes of a sockaddr just written.
        unsafe {
            std::slice::from_raw_parts((sa as *const libc::sockaddr_in6).cast::<u8>(), len as usize)
        }
        .to_vec()
    }

    #[test]
    fn ipv4_peers_of_a_dual_stack_socket_are_mapped_and_read_back_as_ipv4() {
        let a: SocketAddr = "10.1.2.3:51820".parse().unwrap();
        let (sa, len) = sockaddr_for(a, true);
        assert_eq!(i32::from(sa.sin6_family), libc::AF_INET6);
        assert_eq!(len as usize, size_of::<libc::sockaddr_in6>());
        assert_eq!(
            Ipv6Addr::from(sa.sin6_addr.s6_addr),
            "::ffff:10.1.2.3".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(from_sockaddr(&bytes_of(&sa, len)), Some(a));
        // IPv6 peers are written the same either way.
        let b: SocketAddr = "[fd00::1]:443".parse().unwrap();
        let (x, lx) = sockaddr_for(b, true);
        let (y, ly) = sockaddr_for(b, false);
        assert_eq!(bytes_of(&x, lx), bytes_of(&y, ly));
    }

    /// One wildcard socket takes datagrams from IPv4 and IPv6 senders and answers both.
    #[test]
    fn wildcard_socket_serves_both_families() {
        let (fd, at, dual) = family_socket("0.0.0.0:0".parse().unwrap()).unwrap();
        if !dual {
            return; // no IPv6 on this host
        }
        assert!(at.is_ipv6());
        let (sa, len) = sockaddr_for(at, false);
        // SAFETY: `sa` holds `len` bytes of a socket address.
        assert_eq!(
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast(),
                    len,
                )
            },
            0
        );
        let sock = std::net::UdpSocket::from(fd);
        let port = sock.local_addr().unwrap().port();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for peer in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(p) = std::net::UdpSocket::bind(peer) else {
                continue;
            };
            let to: SocketAddr = if p.local_addr().unwrap().is_ipv4() {
                (Ipv4Addr::LOCALHOST, port).into()
            } else {
                (Ipv6Addr::LOCALHOST, port).into()
            };
            p.send_to(b"hi", to).unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hi");
            let (fsa, flen) = sockaddr_for(from, false);
            let seen = from_sockaddr(&bytes_of(&fsa, flen)).unwrap();
            assert_eq!(
                seen,
                p.local_addr().unwrap(),
                "the sender is reported in its own family"
            );
            // The reply goes out in the form the dual-stack socket needs.
            let (rsa, rlen) = sockaddr_for(seen, true);
            // SAFETY: `rsa` holds `rlen` bytes of a socket address; the buffer outlives the call.
            let sent = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    b"ok".as_ptr().cast(),
                    2,
                    0,
                    (&rsa as *const libc::sockaddr_in6).cast(),
                    rlen,
                )
            };
            assert_eq!(sent, 2);
            p.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let (n, _) = p.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ok");
        }
    }

    #[test]
    fn sockaddr_round_trips() {
        for s in ["10.1.2.3:51820", "[fd00::1]:443", "[fe80::1%2]:1"] {
            let a: SocketAddr = s.parse().unwrap();
            let (sa, len) = sockaddr_for(a, false);
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
