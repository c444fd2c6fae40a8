//! The fixed memory layout shared by every ring, and the header check on attach.
//!
//! The header is written once by the creator before the memfd leaves its process and is
//! never written again. The attaching side copies it out and validates the copy, then
//! works only from its own validated values: a peer that rewrites the header afterwards
//! changes nothing here.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::error::SetupError;
use super::shm::SharedRegion;

/// First eight bytes of every ring.
pub const MAGIC: [u8; 8] = *b"CFLXRING";
/// Layout version of this build.
pub const VERSION: u32 = 1;
/// Cache-line pair size: one index per 128 bytes, so the adjacent-line prefetcher does
/// not pull the peer's index along with ours.
pub const LINE: usize = 128;
/// Offset of the producer's head.
pub const HEAD_OFFSET: usize = LINE;
/// Offset of the consumer's tail.
pub const TAIL_OFFSET: usize = 2 * LINE;
/// Offset of the sleeping flags.
pub const WAITERS_OFFSET: usize = 3 * LINE;
/// Offset of the first slot or byte of data.
pub const DATA_OFFSET: usize = 4 * LINE;
/// Largest ring, header included.
pub const MAX_RING_BYTES: u64 = 1 << 30;

/// What a ring carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Layout {
    /// Fixed-size records, `capacity` slots.
    Records = 1,
    /// Length-prefixed messages in `capacity` bytes.
    Messages = 2,
}

impl Layout {
    /// What every index of the layout is a multiple of: one slot, or one frame unit.
    pub(crate) const fn align(self) -> u64 {
        match self {
            Self::Records => 1,
            Self::Messages => FRAME_ALIGN,
        }
    }
}

/// The ring header as it sits at offset 0 (native byte order: both ends share a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// A [`Layout`] code.
    pub layout: u32,
    /// Application-defined channel (what flows, in which direction).
    pub kind: u32,
    /// Bytes per slot (1 for message rings).
    pub record_size: u32,
    /// Record schema (frame format for message rings).
    pub schema: u32,
    /// Largest message payload (0 for record rings).
    pub max_message: u32,
    /// Slots (record rings) or bytes (message rings); a power of two.
    pub capacity: u64,
    /// [`DATA_OFFSET`].
    pub data_offset: u32,
    /// Zero.
    pub reserved0: u32,
    /// Size of the memfd in bytes.
    pub total_len: u64,
    /// Zero.
    pub reserved: [u8; 72],
}

const _: () = assert!(size_of::<Header>() == LINE);

/// What the attaching side expects to find.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    pub(crate) layout: Layout,
    pub(crate) kind: u32,
    pub(crate) record_size: u32,
    pub(crate) schema: u32,
}

impl Header {
    /// A header for a new ring; `total_len` is derived.
    pub(crate) fn new(expect: Expect, capacity: u64, max_message: u32) -> Self {
        Self {
            magic: MAGIC,
            version: VERSION,
            layout: expect.layout as u32,
            kind: expect.kind,
            record_size: expect.record_size,
            schema: expect.schema,
            max_message,
            capacity,
            data_offset: DATA_OFFSET as u32,
            reserved0: 0,
            total_len: total_len(capacity, expect.record_size).unwrap_or(0),
            reserved: [0; 72],
        }
    }

    /// Checks every field against `expect` and the mapped size; the first mismatch wins.
    pub(crate) fn validate(&self, expect: Expect, mapped: u64) -> Result<(), SetupError> {
        if self.magic != MAGIC {
            return Err(SetupError::Magic { found: self.magic });
        }
        if self.version != VERSION {
            return Err(SetupError::Version {
                found: self.version,
                supported: VERSION,
            });
        }
        if self.layout != expect.layout as u32 {
            return Err(SetupError::Layout {
                found: self.layout,
                expected: expect.layout as u32,
            });
        }
        if self.kind != expect.kind {
            return Err(SetupError::Kind {
                found: self.kind,
                expected: expect.kind,
            });
        }
        if self.record_size != expect.record_size {
            return Err(SetupError::RecordSize {
                found: self.record_size,
                expected: expect.record_size,
            });
        }
        if self.schema != expect.schema {
            return Err(SetupError::Schema {
                found: self.schema,
                expected: expect.schema,
            });
        }
        if self.data_offset != DATA_OFFSET as u32 {
            return Err(SetupError::DataOffset(self.data_offset));
        }
        if self.reserved0 != 0 || self.reserved.iter().any(|&b| b != 0) {
            return Err(SetupError::Reserved);
        }
        let min_capacity = match expect.layout {
            Layout::Records => 2,
            Layout::Messages => MIN_MESSAGE_RING,
        };
        let Some(expected_len) = total_len(self.capacity, self.record_size) else {
            return Err(SetupError::Capacity(self.capacity));
        };
        if !self.capacity.is_power_of_two() || self.capacity < min_capacity {
            return Err(SetupError::Capacity(self.capacity));
        }
        match expect.layout {
            Layout::Records if self.max_message != 0 => {
                return Err(SetupError::MaxMessage {
                    max: self.max_message,
                    capacity: self.capacity,
                });
            }
            Layout::Messages if !message_limit_fits(self.max_message, self.capacity) => {
                return Err(SetupError::MaxMessage {
                    max: self.max_message,
                    capacity: self.capacity,
                });
            }
            _ => {}
        }
        if self.total_len != expected_len || mapped != expected_len {
            return Err(SetupError::Size {
                found: mapped,
                expected: expected_len,
            });
        }
        Ok(())
    }
}

/// Smallest message ring in bytes.
pub(crate) const MIN_MESSAGE_RING: u64 = 64;

/// Size of the message frame header; frames start on multiples of it.
pub(crate) const FRAME_ALIGN: u64 = 8;

/// Whether any message up to `max` bytes can always be written once the ring drains:
/// a frame no larger than half the ring fits either before the end or, after padding,
/// at the start.
pub(crate) fn message_limit_fits(max: u32, capacity: u64) -> bool {
    let frame = (u64::from(max) + FRAME_ALIGN).next_multiple_of(FRAME_ALIGN);
    max > 0 && frame <= capacity / 2
}

/// Whether a head and a tail can belong to one ring: at most `capacity` units apart, both
/// multiples of `align`.
pub(crate) fn indices_fit(head: u64, tail: u64, capacity: u64, align: u64) -> bool {
    head.wrapping_sub(tail) <= capacity && head.is_multiple_of(align) && tail.is_multiple_of(align)
}

/// Bytes of a ring of `capacity` slots of `record_size` bytes, if within bounds.
pub(crate) fn total_len(capacity: u64, record_size: u32) -> Option<u64> {
    let len = capacity
        .checked_mul(u64::from(record_size))?
        .checked_add(DATA_OFFSET as u64)?;
    (len <= MAX_RING_BYTES).then_some(len)
}

/// A mapped ring whose header has been written or validated.
#[derive(Debug)]
pub(crate) struct RingMap {
    region: SharedRegion,
    pub(crate) capacity: u64,
    /// [`Layout::align`] of the ring's layout.
    pub(crate) align: u64,
    pub(crate) max_message: u32,
    pub(crate) kind: u32,
}

impl RingMap {
    /// Creates a memfd named `name`, writes the header and maps it.
    pub(crate) fn create(
        name: &str,
        expect: Expect,
        capacity: u64,
        max_message: u32,
    ) -> Result<Self, SetupError> {
        let header = Header::new(expect, capacity, max_message);
        let len = usize::try_from(header.total_len).unwrap_or(0);
        // Validating our own header keeps the creator to the limits the peer enforces.
        header.validate(expect, header.total_len)?;
        let region = SharedRegion::create(name, len)?;
        // SAFETY: the region is at least DATA_OFFSET bytes, page-aligned, and not yet
        // visible to any other process.
        unsafe {
            std::ptr::copy_nonoverlapping(
                header.as_bytes().as_ptr(),
                region.as_ptr(),
                size_of::<Header>(),
            );
        }
        Ok(Self {
            region,
            capacity,
            align: expect.layout.align(),
            max_message,
            kind: expect.kind,
        })
    }

    /// Maps a memfd from the peer and validates its header and indices.
    pub(crate) fn attach(fd: OwnedFd, expect: Expect) -> Result<Self, SetupError> {
        let region = SharedRegion::attach(fd, DATA_OFFSET)?;
        let mut header = Header::new_zeroed();
        // SAFETY: the mapping holds at least DATA_OFFSET bytes. The copy is what gets
        // validated and used, so later writes by the peer cannot change what we checked.
        unsafe {
            std::ptr::copy_nonoverlapping(
                region.as_ptr(),
                header.as_mut_bytes().as_mut_ptr(),
                size_of::<Header>(),
            );
        }
        header.validate(expect, region.len() as u64)?;
        let map = Self {
            region,
            capacity: header.capacity,
            align: expect.layout.align(),
            max_message: header.max_message,
            kind: header.kind,
        };
        let head = map.head().load(std::sync::atomic::Ordering::Acquire);
        let tail = map.tail().load(std::sync::atomic::Ordering::Acquire);
        if !indices_fit(head, tail, map.capacity, map.align) {
            return Err(SetupError::Indices {
                head,
                tail,
                capacity: map.capacity,
            });
        }
        Ok(map)
    }

    /// The memfd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offset is one of the fixed, 128-byte-aligned line offsets inside the
        // mapping (which is page-aligned and at least DATA_OFFSET long); the mapping lives
        // as long as `self`, and the memory is only ever accessed atomically.
        unsafe { &*self.region.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `atomic_u64`; offsets are 4-byte aligned within the waiter line.
        unsafe { &*self.region.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The producer's published head.
    pub(crate) fn head(&self) -> &AtomicU64 {
        self.atomic_u64(HEAD_OFFSET)
    }

    /// The consumer's published tail.
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.atomic_u64(TAIL_OFFSET)
    }

    /// Set while the consumer sleeps on its doorbell.
    pub(crate) fn consumer_sleeping(&self) -> &AtomicU32 {
        self.atomic_u32(WAITERS_OFFSET)
    }

    /// Set while the producer sleeps on its doorbell.
    pub(crate) fn producer_sleeping(&self) -> &AtomicU32 {
        self.atomic_u32(WAITERS_OFFSET + 4)
    }

    /// First byte of the data area (`capacity * record_size` bytes).
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: DATA_OFFSET is within the mapping, which validation sized exactly.
        unsafe { self.region.as_ptr().add(DATA_OFFSET) }
    }

    /// Raw start of the mapping, for tests that play a hostile peer.
    #[cfg(test)]
    pub(crate) fn base(&self) -> *mut u8 {
        self.region.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECT: Expect = Expect {
        layout: Layout::Records,
        kind: 7,
        record_size: 64,
        schema: 3,
    };

    fn tampered(edit: impl FnOnce(&mut Header)) -> SetupError {
        let map = RingMap::create("tamper", EXPECT, 16, 0).unwrap();
        let mut header = Header::new(EXPECT, 16, 0);
        edit(&mut header);
        // SAFETY: single-threaded; the header occupies the first 128 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_bytes().as_ptr(), map.base(), LINE);
        }
        RingMap::attach(rustix::io::dup(map.fd()).unwrap(), EXPECT).unwrap_err()
    }

    #[test]
    fn untouched_header_attaches() {
        let map = RingMap::create("ok", EXPECT, 16, 0).unwrap();
        let other = RingMap::attach(rustix::io::dup(map.fd()).unwrap(), EXPECT).unwrap();
        assert_eq!((other.capacity, other.kind), (16, 7));
    }

    #[test]
    fn each_bad_header_field_is_rejected_with_its_own_error() {
        assert!(matches!(
            tampered(|h| h.magic[0] ^= 1),
            SetupError::Magic { .. }
        ));
        assert!(matches!(
            tampered(|h| h.version = 2),
            SetupError::Version {
                found: 2,
                supported: 1
            }
        ));
        assert!(matches!(
            tampered(|h| h.layout = Layout::Messages as u32),
            SetupError::Layout {
                found: 2,
                expected: 1
            }
        ));
        assert!(matches!(
            tampered(|h| h.kind = 8),
            SetupError::Kind {
                found: 8,
                expected: 7
            }
        ));
        assert!(matches!(
            tampered(|h| h.record_size = 32),
            SetupError::RecordSize {
                found: 32,
                expected: 64
            }
        ));
        assert!(matches!(
            tampered(|h| h.schema = 4),
            SetupError::Schema {
                found: 4,
                expected: 3
            }
        ));
        assert!(matches!(
            tampered(|h| h.capacity = 12),
            SetupError::Capacity(12)
        ));
        // A larger power of two would make the consumer read past the mapping.
        assert!(matches!(
            tampered(|h| h.capacity = 32),
            SetupError::Size { .. }
        ));
        assert!(matches!(
            tampered(|h| h.capacity = u64::MAX / 2 + 1),
            SetupError::Capacity(_)
        ));
        assert!(matches!(
            tampered(|h| h.max_message = 4),
            SetupError::MaxMessage { .. }
        ));
        assert!(matches!(
            tampered(|h| h.data_offset = 256),
            SetupError::DataOffset(256)
        ));
        assert!(matches!(
            tampered(|h| h.reserved[70] = 1),
            SetupError::Reserved
        ));
        assert!(matches!(
            tampered(|h| h.total_len += 64),
            SetupError::Size { .. }
        ));
    }

    #[test]
    fn inconsistent_indices_are_rejected_on_attach() {
        let map = RingMap::create("indices", EXPECT, 16, 0).unwrap();
        map.head().store(17, std::sync::atomic::Ordering::Relaxed);
        let err = RingMap::attach(rustix::io::dup(map.fd()).unwrap(), EXPECT).unwrap_err();
        assert!(matches!(
            err,
            SetupError::Indices {
                head: 17,
                tail: 0,
                capacity: 16
            }
        ));
    }

    #[test]
    fn oversized_or_odd_rings_are_not_created() {
        assert!(matches!(
            RingMap::create("odd", EXPECT, 24, 0),
            Err(SetupError::Capacity(24))
        ));
        assert!(matches!(
            RingMap::create("huge", EXPECT, 1 << 40, 0),
            Err(SetupError::Capacity(_))
        ));
    }

    #[test]
    fn message_limit_must_leave_room_to_wrap() {
        assert!(message_limit_fits(24, 64));
        assert!(!message_limit_fits(25, 64));
        assert!(!message_limit_fits(0, 64));
    }
}
