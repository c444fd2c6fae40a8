//! The TUN device: one multi-queue interface (`IFF_MULTI_QUEUE | IFF_NO_PI`), one queue per
//! worker, each with a virtio-net header (`IFF_VNET_HDR`) and TSO/USO offloads so the kernel
//! hands over and accepts GSO super-packets of up to 64 KiB.
//!
//! The interface's MTU, IPv4 address and up flag are set with the classic `SIOCSIF*`
//! ioctls, which need no netlink library; an IPv6 address is added the same way, with
//! `SIOCSIFADDR` on an IPv6 socket (`in6_ifreq`).

use std::ffi::CString;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::vnet::VNET_HDR_LEN;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// Why the TUN device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The interface name is empty, too long or has a NUL.
    #[error("bad interface name {0:?}")]
    Name(String),
    /// A system call failed.
    #[error("{op} on {name}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The interface.
        name: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Which offloads a queue got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// TCP segmentation (IPv4 and IPv6) and checksum offload.
    pub tso: bool,
    /// UDP segmentation (Linux 6.2 and later).
    pub uso: bool,
}

/// One queue of the multi-queue TUN device, non-blocking.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
    /// The offloads the kernel accepted.
    pub offloads: Offloads,
}

fn ifreq(name: &str) -> Result<libc::ifreq, TunError> {
    let c = CString::new(name).map_err(|_| TunError::Name(name.into()))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ || bytes.len() < 2 {
        return Err(TunError::Name(name.into()));
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn sys<'a>(op: &'static str, name: &'a str) -> impl FnOnce(std::io::Error) -> TunError + 'a {
    move |source| TunError::Sys {
        op,
        name: name.into(),
        source,
    }
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl TunQueue {
    /// Opens (creating the interface with the first call) one queue of `name`; `offload`
    /// asks for TSO and USO.
    pub fn open(name: &str, offload: bool) -> Result<Self, TunError> {
        // SAFETY: plain open(2) of a NUL-terminated path.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        check(raw).map_err(sys("open /dev/net/tun", name))?;
        // SAFETY: `raw` is a fresh fd this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR;
        // SAFETY: TUNSETIFF reads and writes an ifreq.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) })
            .map_err(sys("TUNSETIFF", name))?;
        let size = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &size) })
            .map_err(sys("TUNSETVNETHDRSZ", name))?;
        let mut offloads = Offloads {
            tso: false,
            uso: false,
        };
        if offload {
            let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
            // SAFETY: TUNSETOFFLOAD takes the flags by value.
            if check(unsafe {
                libc::ioctl(
                    fd.as_raw_fd(),
                    TUNSETOFFLOAD,
                    (tso | TUN_F_USO4 | TUN_F_USO6) as libc::c_ulong,
                )
            })
            .is_ok()
            {
                offloads = Offloads {
                    tso: true,
                    uso: true,
                };
            // SAFETY: as above.
            } else if check(unsafe {
                libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, tso as libc::c_ulong)
            })
            .is_ok()
            {
                offloads.tso = true;
            }
        }
        Ok(Self { fd, offloads })
    }

    /// The queue's fd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// Sets the interface's MTU and IPv4 address / prefix length, and brings it up.
pub fn configure(name: &str, mtu: u32, addr: Option<(Ipv4Addr, u8)>) -> Result<(), TunError> {
    // SAFETY: a plain datagram socket for interface ioctls.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(raw).map_err(sys("socket", name))?;
    // SAFETY: fresh fd owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let s = sock.as_raw_fd();

    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU reads an ifreq.
    check(unsafe { libc::ioctl(s, libc::SIOCSIFMTU, &mut req) })
        .map_err(sys("SIOCSIFMTU", name))?;

    if let Some((ip, len)) = addr {
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_addr = sockaddr_v4(ip);
        // SAFETY: SIOCSIFADDR reads an ifreq.
        check(unsafe { libc::ioctl(s, libc::SIOCSIFADDR, &mut req) })
            .map_err(sys("SIOCSIFADDR", name))?;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        };
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_netmask = sockaddr_v4(Ipv4Addr::from(mask));
        // SAFETY: SIOCSIFNETMASK reads an ifreq.
        check(unsafe { libc::ioctl(s, libc::SIOCSIFNETMASK, &mut req) })
            .map_err(sys("SIOCSIFNETMASK", name))?;
    }

    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS writes the flags into the ifreq.
    check(unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) })
        .map_err(sys("SIOCGIFFLAGS", name))?;
    // SAFETY: the union was just written as flags.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq.
    check(unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &mut req) })
        .map_err(sys("SIOCSIFFLAGS", name))?;
    Ok(())
}

/// Adds an IPv6 address / prefix length to the interface (beside its IPv4 one). An address
/// the interface already has is left as it is.
pub fn add_ipv6(name: &str, ip: Ipv6Addr, len: u8) -> Result<(), TunError> {
    if len > 128 {
        return Err(TunError::Sys {
            op: "IPv6 prefix length",
            name: name.into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{len} is past 128"),
            ),
        });
    }
    let c = CString::new(name).map_err(|_| TunError::Name(name.into()))?;
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(sys("if_nametoindex", name)(std::io::Error::last_os_error()));
    }
    // SAFETY: a plain datagram socket for interface ioctls.
    let raw = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(raw).map_err(sys("socket (IPv6)", name))?;
    // SAFETY: fresh fd owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: ip.octets(),
        },
        ifr6_prefixlen: u32::from(len),
        ifr6_ifindex: index as libc::c_int,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads an in6_ifreq.
    match check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) }) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r.map_err(sys("SIOCSIFADDR (IPv6)", name)),
    }
}

fn sockaddr_v4(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}
