//! Message rings: bounded, length-prefixed messages in a byte ring, for what does not
//! fit a fixed record (ICE candidates, SDP, certificate fingerprints).
//!
//! A frame is an 8-byte header — payload length (`u32`, little-endian), kind (`u16`),
//! reserved (`u16`, zero) — then the payload, padded to a multiple of 8 bytes. Kind 0
//! is a padding frame: when the next frame does not fit before the end of the ring, the
//! producer fills the rest with one padding frame and starts again at offset 0. Every
//! ring states its largest payload; a frame of that size is at most half the ring, so
//! a drained ring always has room for it.
//!
//! The consumer copies each header out of shared memory before checking it (so the
//! peer cannot change a length between check and use), validates it with the same code
//! as [`parse_frame`], and copies the payload into the caller's buffer. A frame that
//! fails the check poisons the ring ([`RingError::Frame`], counted).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::doorbell::Doorbells;
use super::endpoint::{ConsumerCore, ProducerCore};
use super::error::{RingError, SetupError};
use super::layout::{Expect, FRAME_ALIGN, Layout, RingMap, message_limit_fits};

/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 8;
/// Kind of a padding frame.
pub const PADDING_KIND: u16 = 0;
/// Version of the frame format, carried in the ring header's schema field.
pub const FRAME_SCHEMA: u32 = 1;

/// A frame header as it sits in the ring.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct FrameHeader {
    len: U32,
    kind: U16,
    reserved: U16,
}

const _: () = assert!(size_of::<FrameHeader>() == FRAME_HEADER_LEN);

/// One parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message of an application-defined, non-zero kind.
    Message {
        /// What the payload is.
        kind: u16,
        /// The payload, without padding.
        payload: &'a [u8],
    },
    /// Filler up to the end of the ring.
    Padding,
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header or the length field promises.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The reserved header field is not zero.
    #[error("reserved frame field is not zero")]
    Reserved,
    /// A message payload longer than the ring's limit.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Length in the header.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A padding frame whose length is not a multiple of 8.
    #[error("padding of {0} bytes is not frame-aligned")]
    MisalignedPadding(usize),
    /// A padding frame that does not end exactly at the end of the ring.
    #[error("padding does not reach the end of the ring")]
    PaddingNotAtEnd,
}

/// Bytes a frame with a `payload_len`-byte payload takes in the ring.
pub const fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len).next_multiple_of(FRAME_ALIGN as usize)
}

/// What a header says, once checked: kind, payload length, frame length.
fn check_header(
    header: [u8; FRAME_HEADER_LEN],
    available: usize,
    max_payload: usize,
) -> Result<(u16, usize, usize), FrameError> {
    let header = FrameHeader::read_from_bytes(&header[..]).map_err(|_| FrameError::Reserved)?;
    if header.reserved.get() != 0 {
        return Err(FrameError::Reserved);
    }
    let kind = header.kind.get();
    let len = header.len.get() as usize;
    if kind == PADDING_KIND {
        if !len.is_multiple_of(FRAME_ALIGN as usize) {
            return Err(FrameError::MisalignedPadding(len));
        }
    } else if len > max_payload {
        return Err(FrameError::TooLong {
            len,
            max: max_payload,
        });
    }
    let total = FRAME_HEADER_LEN
        .checked_add(len)
        .map(|n| n.next_multiple_of(FRAME_ALIGN as usize))
        .ok_or(FrameError::Truncated {
            need: usize::MAX,
            have: available,
        })?;
    if total > available {
        return Err(FrameError::Truncated {
            need: total,
            have: available,
        });
    }
    Ok((kind, len, total))
}

/// Parses the frame at the start of `bytes`: returns it and the number of bytes it
/// occupies (header, payload and alignment padding). `max_payload` bounds message
/// payloads; padding frames are bounded only by `bytes`. Never panics.
pub fn parse_frame(bytes: &[u8], max_payload: usize) -> Result<(Frame<'_>, usize), FrameError> {
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FrameError::Truncated {
            need: FRAME_HEADER_LEN,
            have: bytes.len(),
        });
    };
    let (kind, len, total) = check_header(*header, bytes.len(), max_payload)?;
    let frame = if kind == PADDING_KIND {
        Frame::Padding
    } else {
        Frame::Message {
            kind,
            payload: &bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len],
        }
    };
    Ok((frame, total))
}

/// Writes one frame at the start of `out` (alignment padding zeroed); returns its
/// length. The inverse of [`parse_frame`] for messages.
pub fn emit_frame(out: &mut [u8], kind: u16, payload: &[u8]) -> Result<usize, FrameError> {
    let total = frame_len(payload.len());
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLong {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    let Some(out) = out.get_mut(..total) else {
        return Err(FrameError::Truncated {
            need: total,
            have: out.len(),
        });
    };
    let header = FrameHeader {
        len: len.into(),
        kind: kind.into(),
        reserved: 0.into(),
    };
    out[..FRAME_HEADER_LEN].copy_from_slice(header.as_bytes());
    out[FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload.len()].copy_from_slice(payload);
    out[FRAME_HEADER_LEN + payload.len()..].fill(0);
    Ok(total)
}

/// A message ring that has been created or attached but not yet given a role.
#[derive(Debug)]
pub struct MessageRing {
    map: RingMap,
}

impl MessageRing {
    fn expect(kind: u32) -> Expect {
        Expect {
            layout: Layout::Messages,
            kind,
            record_size: 1,
            schema: FRAME_SCHEMA,
        }
    }

    /// Creates a ring of `capacity` bytes (a power of two, at least 64) for channel
    /// `kind`, carrying payloads of at most `max_message` bytes (a frame of that size
    /// must fit in half the ring).
    pub fn create(kind: u32, capacity: usize, max_message: usize) -> Result<Self, SetupError> {
        let max = u32::try_from(max_message).unwrap_or(u32::MAX);
        if !message_limit_fits(max, capacity as u64) {
            return Err(SetupError::MaxMessage {
                max,
                capacity: capacity as u64,
            });
        }
        let name = format!("conflux-messages-{kind:x}");
        let map = RingMap::create(&name, Self::expect(kind), capacity as u64, max)?;
        Ok(Self { map })
    }

    /// Attaches to a ring received from the peer, checking seals, size and every header
    /// field against `kind`.
    pub fn attach(fd: OwnedFd, kind: u32) -> Result<Self, SetupError> {
        Ok(Self {
            map: RingMap::attach(fd, Self::expect(kind))?,
        })
    }

    /// The memfd, to hand to the peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Largest payload the ring carries.
    pub fn max_message(&self) -> usize {
        self.map.max_message as usize
    }

    /// This side writes messages.
    pub fn into_producer(self) -> MessageProducer {
        let core = ProducerCore::new(self.map);
        MessageProducer {
            data: core.map.data(),
            max: core.map.max_message as usize,
            core,
            messages: 0,
            staged: 0,
            full: 0,
        }
    }

    /// This side reads messages.
    pub fn into_consumer(self) -> MessageConsumer {
        let core = ConsumerCore::new(self.map);
        MessageConsumer {
            data: core.map.data(),
            max: core.map.max_message as usize,
            core,
            messages: 0,
        }
    }
}

/// Counters of a message ring endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageStats {
    /// Messages published (producer) or received (consumer).
    pub messages: u64,
    /// Index stores (one per published or consumed batch).
    pub batches: u64,
    /// Sends refused for lack of room (producer only).
    pub full: u64,
    /// Doorbell rings sent to a sleeping peer.
    pub wakeups: u64,
    /// Times the peer's index or a frame was found corrupt.
    pub corrupt: u64,
}

/// A received message: its kind and how many payload bytes were copied out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// What the payload is.
    pub kind: u16,
    /// Payload length.
    pub len: usize,
}

/// The writing end of a message ring.
#[derive(Debug)]
pub struct MessageProducer {
    core: ProducerCore,
    data: *mut u8,
    max: usize,
    messages: u64,
    staged: u64,
    full: u64,
}

// SAFETY: the producer owns its mapping; `data` points into it and is only used through
// `&mut self`.
unsafe impl Send for MessageProducer {}

impl MessageProducer {
    /// Bytes of ring a message of `len` bytes needs now, padding to the end included.
    fn room_needed(&self, len: usize) -> (u64, u64) {
        let frame = frame_len(len) as u64;
        let to_end = self.core.capacity() - self.core.offset() as u64;
        let need = if frame <= to_end {
            frame
        } else {
            to_end + frame
        };
        (need, to_end)
    }

    /// Writes a frame without publishing it; `false` if the ring has no room now.
    /// Publish staged frames with [`MessageProducer::publish`].
    pub fn stage(&mut self, kind: u16, payload: &[u8]) -> Result<bool, RingError> {
        self.core.check()?;
        if kind == PADDING_KIND {
            return Err(RingError::ReservedKind);
        }
        if payload.len() > self.max {
            return Err(RingError::MessageTooLarge {
                len: payload.len(),
                max: self.max,
            });
        }
        let frame = frame_len(payload.len()) as u64;
        let (need, to_end) = self.room_needed(payload.len());
        if self.core.usable(need)? < need {
            self.full += 1;
            return Ok(false);
        }
        if frame > to_end {
            self.write_header(to_end as usize - FRAME_HEADER_LEN, PADDING_KIND);
            self.core.index += to_end;
        }
        let off = self.write_header(payload.len(), kind);
        // SAFETY: the frame fits before the end of the ring at `off` (padding above
        // guarantees it) and lies in free space.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.data.add(off + FRAME_HEADER_LEN),
                payload.len(),
            );
        }
        self.core.index += frame;
        self.staged += 1;
        Ok(true)
    }

    /// Writes a header at the head; returns its offset.
    fn write_header(&mut self, len: usize, kind: u16) -> usize {
        let off = self.core.offset();
        let header = FrameHeader {
            len: (len as u32).into(),
            kind: kind.into(),
            reserved: 0.into(),
        };
        // SAFETY: heads are frame-aligned, so at least 8 bytes remain before the end of
        // the ring, and the caller checked that they are free.
        unsafe {
            std::ptr::copy_nonoverlapping(
                header.as_bytes().as_ptr(),
                self.data.add(off),
                FRAME_HEADER_LEN,
            );
        }
        off
    }

    /// Makes all staged frames visible to the consumer with one store.
    pub fn publish(&mut self) {
        self.core.publish();
        self.messages += std::mem::take(&mut self.staged);
    }

    /// Stages and publishes one message; `false` if the ring has no room now.
    pub fn send(&mut self, kind: u16, payload: &[u8]) -> Result<bool, RingError> {
        let sent = self.stage(kind, payload)?;
        self.publish();
        Ok(sent)
    }

    /// Largest payload the ring carries.
    pub fn max_message(&self) -> usize {
        self.max
    }

    /// Bytes published and not yet consumed.
    pub fn pending(&mut self) -> Result<usize, RingError> {
        Ok(self.core.pending()? as usize)
    }

    /// Gives this end the ring's doorbells (see [`super::doorbell`]).
    pub fn set_doorbells(&mut self, doorbells: Doorbells) {
        self.core.doorbells = Some(doorbells);
    }

    /// The doorbells given with [`MessageProducer::set_doorbells`].
    pub fn doorbells(&self) -> Option<&Doorbells> {
        self.core.doorbells.as_ref()
    }

    /// For an external poller: announces a sleep on the `space` doorbell until a
    /// message of `len` bytes fits; `false` if it fits already. Then call
    /// [`MessageProducer::finish_sleep`].
    pub fn prepare_sleep(&mut self, len: usize) -> Result<bool, RingError> {
        let (need, _) = self.room_needed(len.min(self.max));
        self.core.prepare_sleep(need)
    }

    /// Ends a sleep announced with [`MessageProducer::prepare_sleep`].
    pub fn finish_sleep(&mut self) {
        self.core.finish_sleep();
    }

    /// Spins, then sleeps until a message of `len` bytes fits or `timeout` passes.
    pub fn wait_for_space(&mut self, len: usize, timeout: Duration) -> Result<bool, RingError> {
        let (need, _) = self.room_needed(len.min(self.max));
        self.core.wait(need, timeout)
    }

    /// Counters.
    pub fn stats(&self) -> MessageStats {
        MessageStats {
            messages: self.messages,
            batches: self.core.batches,
            full: self.full,
            wakeups: self.core.wakeups,
            corrupt: self.core.corrupt,
        }
    }

    /// The memfd, to hand to a (re-)attaching peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.core.map.fd()
    }
}

/// The reading end of a message ring.
#[derive(Debug)]
pub struct MessageConsumer {
    core: ConsumerCore,
    data: *mut u8,
    max: usize,
    messages: u64,
}

// SAFETY: as for `MessageProducer`.
unsafe impl Send for MessageConsumer {}

impl MessageConsumer {
    /// Finds the next message, stepping over padding: (kind, payload offset, payload
    /// length, frame length). Poisons the ring on a bad frame.
    fn next_frame(&mut self) -> Result<Option<(u16, usize, usize, u64)>, RingError> {
        loop {
            let ready = self.core.usable(FRAME_HEADER_LEN as u64)?;
            if ready == 0 {
                return Ok(None);
            }
            let off = self.core.offset();
            let to_end = self.core.capacity() as usize - off;
            let contiguous = to_end.min(ready as usize);
            if contiguous < FRAME_HEADER_LEN {
                let e = FrameError::Truncated {
                    need: FRAME_HEADER_LEN,
                    have: contiguous,
                };
                return Err(self.core.poison(e.into()));
            }
            // SAFETY: `off + 8 <= capacity`; bytes in [tail, head) belong to the
            // consumer. The header is copied once, so its checks hold for what is used.
            let header = unsafe {
                std::ptr::read_volatile(self.data.add(off).cast::<[u8; FRAME_HEADER_LEN]>())
            };
            match check_header(header, contiguous, self.max) {
                Ok((PADDING_KIND, _, total)) if total == to_end => {
                    self.core.index += total as u64;
                }
                Ok((PADDING_KIND, ..)) => {
                    return Err(self.core.poison(FrameError::PaddingNotAtEnd.into()));
                }
                Ok((kind, len, total)) => {
                    return Ok(Some((kind, off + FRAME_HEADER_LEN, len, total as u64)));
                }
                Err(e) => return Err(self.core.poison(e.into())),
            }
        }
    }

    /// Copies the next message into `out` and releases its bytes; `None` when there is
    /// none. If `out` is too small the message stays queued and
    /// [`RingError::BufferTooSmall`] says how much is needed (a buffer of
    /// [`MessageConsumer::max_message`] bytes always suffices).
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<Option<Received>, RingError> {
        let Some((kind, off, len, total)) = self.next_frame()? else {
            self.core.publish();
            return Ok(None);
        };
        if out.len() < len {
            self.core.publish();
            return Err(RingError::BufferTooSmall {
                need: len,
                have: out.len(),
            });
        }
        // SAFETY: `check_header` bounded `off + len` by the published, contiguous bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(off), out.as_mut_ptr(), len);
        }
        self.core.index += total;
        self.core.publish();
        self.messages += 1;
        Ok(Some(Received { kind, len }))
    }

    /// Largest payload the ring carries.
    pub fn max_message(&self) -> usize {
        self.max
    }

    /// Gives this end the ring's doorbells (see [`super::doorbell`]).
    pub fn set_doorbells(&mut self, doorbells: Doorbells) {
        self.core.doorbells = Some(doorbells);
    }

    /// The doorbells given with [`MessageConsumer::set_doorbells`].
    pub fn doorbells(&self) -> Option<&Doorbells> {
        self.core.doorbells.as_ref()
    }

    /// For an external poller: announces a sleep on the `data` doorbell; `false` if
    /// data is already there. Then call [`MessageConsumer::finish_sleep`].
    pub fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        self.core.prepare_sleep(1)
    }

    /// Ends a sleep announced with [`MessageConsumer::prepare_sleep`].
    pub fn finish_sleep(&mut self) {
        self.core.finish_sleep();
    }

    /// Spins, then sleeps until data is ready or `timeout` passes.
    pub fn wait_for_messages(&mut self, timeout: Duration) -> Result<bool, RingError> {
        self.core.wait(1, timeout)
    }

    /// Counters.
    pub fn stats(&self) -> MessageStats {
        MessageStats {
            messages: self.messages,
            batches: self.core.batches,
            full: 0,
            wakeups: self.core.wakeups,
            corrupt: self.core.corrupt,
        }
    }

    /// The memfd, to hand to a (re-)attaching peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.core.map.fd()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::Ordering;

    use super::*;

    fn pair(capacity: usize, max: usize) -> (MessageProducer, MessageConsumer) {
        let ring = MessageRing::create(9, capacity, max).unwrap();
        let fd = rustix::io::dup(ring.fd()).unwrap();
        let other = MessageRing::attach(fd, 9).unwrap();
        (ring.into_producer(), other.into_consumer())
    }

    #[test]
    fn frame_round_trips_through_emit_and_parse() {
        let mut buf = [0xFFu8; 32];
        let n = emit_frame(&mut buf, 7, b"candidate").unwrap();
        assert_eq!(n, 24);
        assert_eq!(&buf[..8], &[9, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&buf[17..24], &[0; 7], "alignment padding is zeroed");
        let (frame, used) = parse_frame(&buf, 100).unwrap();
        assert_eq!(
            frame,
            Frame::Message {
                kind: 7,
                payload: b"candidate"
            }
        );
        assert_eq!(used, 24);
    }

    #[test]
    fn malformed_frames_are_rejected() {
        assert_eq!(
            parse_frame(&[1, 0, 0], 8),
            Err(FrameError::Truncated { need: 8, have: 3 })
        );
        let mut buf = [0u8; 16];
        emit_frame(&mut buf, 1, b"12345678").unwrap();
        assert_eq!(
            parse_frame(&buf[..15], 8),
            Err(FrameError::Truncated { need: 16, have: 15 })
        );
        assert_eq!(
            parse_frame(&buf, 7),
            Err(FrameError::TooLong { len: 8, max: 7 })
        );
        buf[6] = 1;
        assert_eq!(parse_frame(&buf, 8), Err(FrameError::Reserved));
        let padding = [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_frame(&padding, 8),
            Err(FrameError::MisalignedPadding(4))
        );
        let huge = [0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0];
        assert!(matches!(
            parse_frame(&huge, usize::MAX),
            Err(FrameError::Truncated { .. })
        ));
        let padding = [8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(parse_frame(&padding, 0), Ok((Frame::Padding, 16)));
    }

    #[test]
    fn messages_wrap_with_a_padding_frame() {
        let (mut p, mut c) = pair(128, 40);
        let mut out = [0u8; 40];
        // 48-byte frames: the third one must wrap (96 + 48 > 128).
        for round in 0..20u8 {
            let payload = [round; 40];
            assert!(p.send(u16::from(round) + 1, &payload).unwrap());
            let got = c.try_recv(&mut out).unwrap().unwrap();
            assert_eq!(
                got,
                Received {
                    kind: u16::from(round) + 1,
                    len: 40
                }
            );
            assert_eq!(out, payload);
        }
        assert_eq!(c.try_recv(&mut out).unwrap(), None);
        assert_eq!(c.stats().messages, 20);
    }

    #[test]
    fn staged_messages_are_published_together() {
        let (mut p, mut c) = pair(256, 64);
        let mut out = [0u8; 64];
        assert!(p.stage(1, b"a").unwrap());
        assert!(p.stage(2, b"bc").unwrap());
        assert_eq!(c.try_recv(&mut out).unwrap(), None, "nothing published yet");
        p.publish();
        assert_eq!(p.stats().batches, 1);
        assert_eq!(c.try_recv(&mut out).unwrap().unwrap().kind, 1);
        assert_eq!(c.try_recv(&mut out).unwrap().unwrap().kind, 2);
    }

    #[test]
    fn full_ring_refuses_and_recovers() {
        let (mut p, mut c) = pair(64, 16);
        assert!(p.send(1, &[1; 16]).unwrap());
        assert!(p.send(2, &[2; 16]).unwrap());
        // 16 bytes are left before the end, too few for a 24-byte frame, and the start
        // of the ring is still in use.
        assert!(!p.send(3, &[3; 9]).unwrap());
        assert_eq!(p.stats().full, 1);
        let mut out = [0u8; 16];
        c.try_recv(&mut out).unwrap().unwrap();
        assert!(p.send(3, &[3; 9]).unwrap());
        c.try_recv(&mut out).unwrap().unwrap();
        assert_eq!(
            c.try_recv(&mut out).unwrap(),
            Some(Received { kind: 3, len: 9 })
        );
    }

    #[test]
    fn oversize_and_padding_kind_are_refused_by_the_producer() {
        let (mut p, _c) = pair(64, 16);
        assert_eq!(
            p.send(1, &[0; 17]),
            Err(RingError::MessageTooLarge { len: 17, max: 16 })
        );
        assert_eq!(p.send(0, b"x"), Err(RingError::ReservedKind));
    }

    #[test]
    fn small_buffer_leaves_the_message_queued() {
        let (mut p, mut c) = pair(64, 16);
        p.send(5, b"0123456789").unwrap();
        let mut small = [0u8; 4];
        assert_eq!(
            c.try_recv(&mut small),
            Err(RingError::BufferTooSmall { need: 10, have: 4 })
        );
        let mut out = [0u8; 16];
        assert_eq!(
            c.try_recv(&mut out).unwrap(),
            Some(Received { kind: 5, len: 10 })
        );
        assert_eq!(&out[..10], b"0123456789");
    }

    #[test]
    fn corrupt_frame_poisons_the_consumer() {
        let (mut p, mut c) = pair(128, 32);
        p.send(1, b"hello").unwrap();
        // A hostile producer rewrites the length to more than the limit.
        // SAFETY: the first frame header lies at the start of the data area.
        unsafe { c.data.write_volatile(200) };
        let mut out = [0u8; 32];
        let err = c.try_recv(&mut out).unwrap_err();
        assert_eq!(
            err,
            RingError::Frame(FrameError::TooLong { len: 200, max: 32 })
        );
        assert_eq!(c.try_recv(&mut out).unwrap_err(), err);
        assert_eq!(c.stats().corrupt, 1);
    }

    #[test]
    fn padding_that_stops_short_of_the_end_is_corrupt() {
        let (mut p, mut c) = pair(128, 32);
        p.send(1, b"hello").unwrap();
        // SAFETY: as above; turn the message into padding of 8 bytes.
        unsafe {
            c.data.add(4).write_volatile(0);
            c.data.write_volatile(8);
        }
        let mut out = [0u8; 32];
        assert_eq!(
            c.try_recv(&mut out),
            Err(RingError::Frame(FrameError::PaddingNotAtEnd))
        );
    }

    #[test]
    fn misaligned_head_is_corrupt() {
        let (mut p, mut c) = pair(128, 32);
        p.send(1, b"hello").unwrap();
        c.core.map.head().store(20, Ordering::Release);
        assert!(matches!(
            c.try_recv(&mut [0u8; 32]),
            Err(RingError::Corrupt { head: 20, .. })
        ));
    }

    #[test]
    fn limit_that_cannot_always_fit_is_refused() {
        assert!(matches!(
            MessageRing::create(1, 64, 25),
            Err(SetupError::MaxMessage { .. })
        ));
        assert!(matches!(
            MessageRing::create(1, 100, 8),
            Err(SetupError::Capacity(100))
        ));
    }

    #[test]
    fn random_sizes_arrive_intact_and_in_order() {
        let (mut p, mut c) = pair(1024, 200);
        let mut model = VecDeque::new();
        let mut out = [0u8; 200];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..3000u32 {
            let r = next();
            if r % 3 != 0 {
                let len = (r >> 8) as usize % 201;
                let payload: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                let kind = (r >> 32) as u16 | 1;
                if p.send(kind, &payload).unwrap() {
                    model.push_back((kind, payload));
                }
            } else {
                match c.try_recv(&mut out).unwrap() {
                    Some(got) => {
                        let (kind, payload) = model.pop_front().unwrap();
                        assert_eq!(got.kind, kind);
                        assert_eq!(&out[..got.len], &payload[..]);
                    }
                    None => assert!(model.is_empty()),
                }
            }
        }
        assert!(c.stats().messages > 500);
    }
}
