//! What the worker keeps alive for each operation in flight: user-data tags, send and
//! TUN-write contexts (whose `msghdr`, `iovec` and address the kernel reads until the
//! operation completes), and the owners of the buffers they point into.

use std::net::SocketAddr;

use crate::udp::{UDP_SEGMENT, to_sockaddr};
use crate::vnet::VNET_HDR_LEN;

/// Operation kinds in the top byte of a user-data word.
pub(super) mod op {
    pub(crate) const TUN_READ: u8 = 1;
    pub(crate) const UDP_RECV: u8 = 2;
    pub(crate) const SEND: u8 = 3;
    pub(crate) const TUN_WRITE: u8 = 4;
}

/// A user-data word: kind and index.
#[inline]
pub(super) fn tag(kind: u8, index: u32) -> u64 {
    u64::from(kind) << 56 | u64::from(index)
}

/// Splits a user-data word.
#[inline]
pub(super) fn untag(data: u64) -> (u8, u32) {
    ((data >> 56) as u8, data as u32)
}

/// Which buffer a packet's bytes live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// A TUN receive buffer (one packet each).
    Tun(u16),
    /// A UDP receive buffer (reference counted: many packets each).
    Udp(u16),
    /// A segmentation slab (reference counted).
    Slab(u16),
    /// Worker-owned scratch that needs no release.
    Scratch,
}

impl Owner {
    /// Packs into a `Pkt` owner word.
    #[inline]
    pub(super) fn pack(self) -> u32 {
        match self {
            Self::Tun(b) => u32::from(b),
            Self::Udp(b) => 1 << 30 | u32::from(b),
            Self::Slab(b) => 2 << 30 | u32::from(b),
            Self::Scratch => 3 << 30,
        }
    }

    /// Unpacks a `Pkt` owner word.
    #[inline]
    pub(super) fn unpack(w: u32) -> Self {
        let b = w as u16;
        match w >> 30 {
            0 => Self::Tun(b),
            1 => Self::Udp(b),
            2 => Self::Slab(b),
            _ => Self::Scratch,
        }
    }
}

/// A `sendmsg` in flight.
pub(super) struct SendCtx {
    pub(super) msg: libc::msghdr,
    pub(super) iov: libc::iovec,
    pub(super) addr: libc::sockaddr_in6,
    /// Room for one `UDP_SEGMENT` cmsg (header and u16, aligned).
    pub(super) cmsg: [u64; 4],
    pub(super) owner: Owner,
    /// Datagrams this send carries (GSO sends carry several).
    pub(super) datagrams: u32,
}

impl SendCtx {
    fn empty() -> Self {
        // SAFETY: all-zero msghdr, iovec and sockaddr are valid plain data.
        unsafe { std::mem::zeroed() }
    }

    /// Points the context at `len` bytes at `ptr` for `to`, split by the kernel into
    /// `segment`-byte datagrams when `segment` is non-zero.
    pub(super) fn prepare(
        &mut self,
        ptr: *mut u8,
        len: usize,
        to: SocketAddr,
        segment: u16,
        owner: Owner,
        datagrams: u32,
    ) {
        let (sa, sa_len) = to_sockaddr(to);
        self.addr = sa;
        self.iov = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        };
        // SAFETY: all-zero msghdr is valid; the pointers set below stay valid while the
        // context is in flight (it lives in a boxed slice that never moves).
        self.msg = unsafe { std::mem::zeroed() };
        self.msg.msg_name = (&mut self.addr as *mut libc::sockaddr_in6).cast();
        self.msg.msg_namelen = sa_len;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        if segment != 0 {
            let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            self.cmsg = [0; 4];
            self.msg.msg_control = self.cmsg.as_mut_ptr().cast();
            self.msg.msg_controllen = space;
            // SAFETY: msg_control points at `cmsg`, which is large enough for one cmsg of a u16.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&self.msg);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
            }
        }
        self.owner = owner;
        self.datagrams = datagrams;
    }
}

/// Most members of one TUN write (a coalesced group).
pub(super) const MAX_WRITE_PARTS: usize = 64;

/// A vectored TUN write in flight: the virtio-net header, then the group's pieces.
pub(super) struct WriteCtx {
    pub(super) iov: [libc::iovec; MAX_WRITE_PARTS + 1],
    pub(super) iov_len: usize,
    pub(super) hdr: [u8; VNET_HDR_LEN],
    pub(super) owners: [u32; MAX_WRITE_PARTS],
    pub(super) owners_len: usize,
}

impl WriteCtx {
    fn empty() -> Self {
        // SAFETY: all-zero iovecs and integers are valid plain data.
        unsafe { std::mem::zeroed() }
    }
}

/// A fixed pool of contexts with a free list; the boxed slice never moves, so the
/// pointers the kernel holds stay valid.
pub(super) struct Pool<T> {
    items: Box<[T]>,
    free: Vec<u32>,
}

impl<T> Pool<T> {
    fn with(n: usize, make: impl Fn() -> T) -> Self {
        Self {
            items: (0..n).map(|_| make()).collect(),
            free: (0..n as u32).rev().collect(),
        }
    }

    #[inline]
    pub(super) fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    #[inline]
    pub(super) fn give(&mut self, i: u32) {
        self.free.push(i);
    }

    #[inline]
    pub(super) fn get(&mut self, i: u32) -> &mut T {
        &mut self.items[i as usize]
    }
}

/// Send contexts.
pub(super) fn send_pool(n: usize) -> Pool<SendCtx> {
    Pool::with(n, SendCtx::empty)
}

/// TUN write contexts.
pub(super) fn write_pool(n: usize) -> Pool<WriteCtx> {
    Pool::with(n, WriteCtx::empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_owners_round_trip() {
        assert_eq!(untag(tag(op::SEND, 77)), (op::SEND, 77));
        for o in [
            Owner::Tun(3),
            Owner::Udp(65_535),
            Owner::Slab(0),
            Owner::Scratch,
        ] {
            assert_eq!(Owner::unpack(o.pack()), o);
        }
    }
}
