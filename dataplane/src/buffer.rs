//! Packet memory: one anonymous mapping per pool, cut into fixed-size buffers, handed to
//! the kernel through an io_uring provided-buffer ring and taken back by id.
//!
//! Every buffer leaves room in front of the packet the kernel writes (the data header and
//! the hop transport's framing go there) and behind it (the tag and the transport's
//! trailer), so a packet is sealed or opened where it was received: no copy.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Why a pool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// `mmap` failed.
    #[error("mmap of {0} bytes failed: {1}")]
    Map(usize, std::io::Error),
    /// Registering the ring with io_uring failed.
    #[error("registering the provided-buffer ring failed: {0}")]
    Register(std::io::Error),
    /// Counts or sizes out of range (a power-of-two count up to 32,768).
    #[error("bad pool geometry")]
    Geometry,
}

/// An anonymous, page-aligned, zeroed mapping, unmapped on drop.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread
// moves the ownership.
unsafe impl Send for Region {}

impl Region {
    /// Maps `len` bytes.
    pub fn new(len: usize) -> Result<Self, BufferError> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(BufferError::Map(len, std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast()).ok_or(BufferError::Geometry)?;
        Ok(Self { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: `new` refuses nothing, the kernel refuses 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing borrows the region
        // past the owner's life.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// How each buffer of a pool is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Number of buffers: a power of two, at most 32,768.
    pub count: usize,
    /// Bytes per buffer.
    pub size: usize,
    /// Bytes in front of where the kernel writes.
    pub headroom: usize,
    /// Bytes kept free at the end.
    pub tailroom: usize,
}

impl Geometry {
    /// Bytes the kernel may write into one buffer.
    pub fn kernel_len(&self) -> usize {
        self.size - self.headroom - self.tailroom
    }
}

/// A pool of buffers lent to the kernel through a provided-buffer ring (one buffer group).
#[derive(Debug)]
pub struct BufRing {
    ring: Region,
    data: Region,
    geometry: Geometry,
    group: u16,
    tail: u16,
    pending: u16,
}

impl BufRing {
    /// Maps the buffers and the ring and fills the ring with every buffer; register it with
    /// [`BufRing::register`] before use.
    pub fn new(geometry: Geometry, group: u16) -> Result<Self, BufferError> {
        if !geometry.count.is_power_of_two()
            || geometry.count > 32_768
            || geometry.headroom + geometry.tailroom >= geometry.size
        {
            return Err(BufferError::Geometry);
        }
        let ring = Region::new((geometry.count * size_of::<BufRingEntry>()).max(4096))?;
        let data = Region::new(geometry.count * geometry.size)?;
        let mut r = Self {
            ring,
            data,
            geometry,
            group,
            tail: 0,
            pending: 0,
        };
        for bid in 0..geometry.count {
            r.stage(bid as u16);
        }
        r.publish();
        Ok(r)
    }

    /// Registers the ring with `ring` as buffer group [`BufRing::group`].
    pub fn register(&self, uring: &io_uring::IoUring) -> Result<(), BufferError> {
        // SAFETY: the ring memory lives as long as `self`, which the worker keeps for the
        // io_uring's whole life (it unregisters or drops the io_uring first).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(
                    self.ring.as_ptr() as u64,
                    self.geometry.count as u16,
                    self.group,
                    0,
                )
                .map_err(BufferError::Register)
        }
    }

    /// The buffer group id.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The layout.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Start of buffer `bid` (its headroom included).
    #[inline]
    pub fn base(&self, bid: u16) -> *mut u8 {
        debug_assert!(usize::from(bid) < self.geometry.count);
        // SAFETY: bid < count keeps the offset inside the data region.
        unsafe {
            self.data
                .as_ptr()
                .add(usize::from(bid) * self.geometry.size)
        }
    }

    /// Buffer `bid` whole (headroom, kernel area, tailroom).
    ///
    /// # Safety
    ///
    /// The buffer must be owned by the caller (completed to it, not yet given back), and
    /// no other slice of it may be alive.
    #[inline]
    // The bytes belong to whoever the kernel completed the buffer to, not to this borrow.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn buffer_mut(&self, bid: u16) -> &mut [u8] {
        // SAFETY: in bounds by construction; exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.base(bid), self.geometry.size) }
    }

    /// Queues buffer `bid` for the kernel again; [`BufRing::publish`] makes it visible.
    #[inline]
    pub fn stage(&mut self, bid: u16) {
        let mask = self.geometry.count as u16 - 1;
        let index = usize::from(self.tail.wrapping_add(self.pending) & mask);
        // SAFETY: index < count, and the ring region holds `count` entries.
        let entry = unsafe { &mut *self.ring.as_ptr().cast::<BufRingEntry>().add(index) };
        entry.set_addr(self.base(bid) as u64 + self.geometry.headroom as u64);
        entry.set_len(self.geometry.kernel_len() as u32);
        entry.set_bid(bid);
        self.pending += 1;
    }

    /// Publishes every staged buffer with one store of the ring's tail.
    #[inline]
    pub fn publish(&mut self) {
        if self.pending == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.pending);
        self.pending = 0;
        // SAFETY: the tail field of entry 0 is a u16 the kernel reads; entry 0 exists.
        let tail = unsafe {
            &*BufRingEntry::tail(self.ring.as_ptr().cast::<BufRingEntry>()).cast::<AtomicU16>()
        };
        tail.store(self.tail, Ordering::Release);
    }
}

/// A window onto packet bytes that the worker owns while a batch is processed.
///
/// It lets the packet paths take `&mut [u8]` views of buffers that live in the pools
/// without borrowing the pools: the worker hands out at most one `Pkt` per byte range and
/// drops them before the buffers go back to the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Pkt {
    ptr: *mut u8,
    len: u32,
    /// Which buffer the bytes belong to, so it is released once the packet is done.
    pub owner: u32,
}

impl Pkt {
    /// A view of `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// The bytes must stay valid and unaliased for as long as the view is used.
    #[inline]
    pub unsafe fn new(ptr: *mut u8, len: usize, owner: u32) -> Self {
        Self {
            ptr,
            len: len as u32,
            owner,
        }
    }

    /// Start of the bytes.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length of the bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsMut<[u8]> for Pkt {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `Pkt::new`'s contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len as usize) }
    }
}

impl AsRef<[u8]> for Pkt {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `Pkt::new`'s contract.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len as usize) }
    }
}

/// A fixed set of slots of one size with a free list: the worker's segmentation slabs.
#[derive(Debug)]
pub struct SlabPool {
    data: Region,
    slot: usize,
    free: Vec<u16>,
}

impl SlabPool {
    /// `count` slots of `slot` bytes each.
    pub fn new(count: usize, slot: usize) -> Result<Self, BufferError> {
        Ok(Self {
            data: Region::new(count * slot)?,
            slot,
            free: (0..count as u16).rev().collect(),
        })
    }

    /// Takes a free slot.
    #[inline]
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop()
    }

    /// Gives a slot back.
    #[inline]
    pub fn give(&mut self, i: u16) {
        self.free.push(i);
    }

    /// Slot `i` whole.
    ///
    /// # Safety
    ///
    /// The caller holds the slot (taken, not given back) and no other slice of it is alive.
    #[inline]
    // The bytes belong to whoever took the slot, not to this borrow.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slot_mut(&self, i: u16) -> &mut [u8] {
        // SAFETY: i < count by construction; exclusivity is the caller's promise.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.data.as_ptr().add(usize::from(i) * self.slot),
                self.slot,
            )
        }
    }

    /// Bytes per slot.
    pub fn slot_len(&self) -> usize {
        self.slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_do_not_overlap_and_keep_their_room() {
        let g = Geometry {
            count: 8,
            size: 2048,
            headroom: 64,
            tailroom: 32,
        };
        let mut r = BufRing::new(g, 3).unwrap();
        assert_eq!(g.kernel_len(), 2048 - 96);
        for bid in 0..8u16 {
            // SAFETY: nothing else holds these buffers in this test.
            let b = unsafe { r.buffer_mut(bid) };
            b.fill(bid as u8);
        }
        for bid in 0..8u16 {
            // SAFETY: as above.
            let b = unsafe { r.buffer_mut(bid) };
            assert!(b.iter().all(|&x| x == bid as u8));
        }
        r.stage(5);
        r.publish();
        assert!(BufRing::new(Geometry { count: 6, ..g }, 0).is_err());
    }

    #[test]
    fn slabs_come_back() {
        let mut s = SlabPool::new(2, 4096).unwrap();
        let a = s.take().unwrap();
        let b = s.take().unwrap();
        assert_ne!(a, b);
        assert_eq!(s.take(), None);
        s.give(a);
        assert_eq!(s.take(), Some(a));
    }
}
