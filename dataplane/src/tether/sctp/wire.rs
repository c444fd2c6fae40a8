//! SCTP packet and chunk views (RFC 9260 §3), parsed and written in caller-owned buffers.
//!
//! Only what the tether's own data path needs: the common header with its CRC32c, a chunk
//! iterator, and the DATA, SACK, FORWARD-TSN (RFC 3758), HEARTBEAT and INIT/INIT-ACK value
//! layouts. Parsers take untrusted bytes and return [`WireError`]; none of them panics or
//! allocates.

/// Length of the SCTP common header.
pub const COMMON_HEADER_LEN: usize = 12;
/// Length of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 4;
/// Length of a DATA chunk header, up to the user data.
pub const DATA_HEADER_LEN: usize = 16;
/// Bytes from the start of an SCTP packet to a lone DATA chunk's user data.
pub const DATA_OFFSET: usize = COMMON_HEADER_LEN + DATA_HEADER_LEN;

/// Chunk types used by the tether.
pub mod chunk {
    /// DATA.
    pub const DATA: u8 = 0;
    /// INIT.
    pub const INIT: u8 = 1;
    /// INIT ACK.
    pub const INIT_ACK: u8 = 2;
    /// SACK.
    pub const SACK: u8 = 3;
    /// HEARTBEAT.
    pub const HEARTBEAT: u8 = 4;
    /// HEARTBEAT ACK.
    pub const HEARTBEAT_ACK: u8 = 5;
    /// ABORT.
    pub const ABORT: u8 = 6;
    /// SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;
    /// SHUTDOWN ACK.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// ERROR.
    pub const ERROR: u8 = 9;
    /// COOKIE ECHO.
    pub const COOKIE_ECHO: u8 = 10;
    /// COOKIE ACK.
    pub const COOKIE_ACK: u8 = 11;
    /// SHUTDOWN COMPLETE.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
    /// RE-CONFIG (RFC 6525).
    pub const RECONFIG: u8 = 130;
    /// FORWARD TSN (RFC 3758).
    pub const FORWARD_TSN: u8 = 192;
}

/// DATA chunk flags.
pub mod data_flags {
    /// Last fragment.
    pub const END: u8 = 1;
    /// First fragment.
    pub const BEGIN: u8 = 2;
    /// Unordered.
    pub const UNORDERED: u8 = 4;
    /// A whole, unordered message.
    pub const WHOLE_UNORDERED: u8 = UNORDERED | BEGIN | END;
}

/// WebRTC payload protocol identifiers (RFC 8831 §8).
pub mod ppid {
    /// DCEP control message.
    pub const DCEP: u32 = 50;
    /// Binary message.
    pub const BINARY: u32 = 53;
    /// Empty binary message.
    pub const BINARY_EMPTY: u32 = 57;
}

/// Why SCTP bytes were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the structure it claims to hold.
    #[error("SCTP packet or chunk truncated")]
    Truncated,
    /// The CRC32c does not match.
    #[error("SCTP checksum mismatch")]
    Checksum,
    /// A chunk's length field is below the chunk header length.
    #[error("SCTP chunk length field invalid")]
    ChunkLength,
    /// The verification tag is not the one this association expects.
    #[error("SCTP verification tag mismatch")]
    VerificationTag,
    /// The buffer cannot hold what is to be written.
    #[error("buffer too small for the SCTP packet")]
    Buffer,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Rounds a chunk length up to its 4-byte padded size.
#[inline]
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// A parsed common header; `chunks` is everything after it.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub vtag: u32,
    /// The chunk bytes.
    pub chunks: &'a [u8],
}

/// CRC32c of a packet with its checksum field taken as zero, as it goes on the wire.
pub fn checksum(packet: &[u8]) -> u32 {
    let c = crc32c::crc32c(&packet[..8]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    crc32c::crc32c_append(c, &packet[COMMON_HEADER_LEN..])
}

impl<'a> Packet<'a> {
    /// Parses and checks the common header of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < COMMON_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let theirs = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if theirs != checksum(buf) {
            return Err(WireError::Checksum);
        }
        Ok(Self {
            src_port: be16(buf, 0),
            dst_port: be16(buf, 2),
            vtag: be32(buf, 4),
            chunks: &buf[COMMON_HEADER_LEN..],
        })
    }

    /// Parses the common header of a packet that arrived inside an authenticated DTLS
    /// record. The record's AEAD tag already covers every byte of it, so the CRC32c, which
    /// only detects corruption, is not computed a second time (RFC 9653 lets an SCTP
    /// receiver over DTLS accept even a zero checksum for the same reason). Packets are
    /// still sent with a correct checksum, for peers that do check it.
    pub fn parse_authenticated(buf: &'a [u8]) -> Result<Self, WireError> {
        Self::parse_unchecked(buf).ok_or(WireError::Truncated)
    }

    /// Reads the header of a packet already checked by [`Packet::parse`].
    pub fn parse_unchecked(buf: &'a [u8]) -> Option<Self> {
        (buf.len() >= COMMON_HEADER_LEN).then(|| Self {
            src_port: be16(buf, 0),
            dst_port: be16(buf, 2),
            vtag: be32(buf, 4),
            chunks: &buf[COMMON_HEADER_LEN..],
        })
    }

    /// The chunks, in order.
    pub fn iter(&self) -> ChunkIter<'a> {
        ChunkIter {
            buf: self.chunks,
            at: 0,
        }
    }
}

/// One chunk: type, flags and value (header and padding stripped).
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Chunk type.
    pub kind: u8,
    /// Chunk flags.
    pub flags: u8,
    /// Chunk value.
    pub value: &'a [u8],
    /// Offset of the value from the start of the chunk area.
    pub value_offset: usize,
}

/// Iterates the chunks of a packet; yields an error once, then stops.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    buf: &'a [u8],
    at: usize,
}

impl ChunkIter<'_> {
    /// An iterator over no chunks.
    pub fn empty() -> Self {
        Self { buf: &[], at: 0 }
    }
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = Result<Chunk<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.at.min(self.buf.len())..];
        if rest.is_empty() {
            return None;
        }
        let fail = |s: &mut Self, e| {
            s.at = s.buf.len();
            Some(Err(e))
        };
        if rest.len() < CHUNK_HEADER_LEN {
            return fail(self, WireError::Truncated);
        }
        let len = usize::from(be16(rest, 2));
        if len < CHUNK_HEADER_LEN {
            return fail(self, WireError::ChunkLength);
        }
        if len > rest.len() {
            return fail(self, WireError::Truncated);
        }
        let c = Chunk {
            kind: rest[0],
            flags: rest[1],
            value: &rest[CHUNK_HEADER_LEN..len],
            value_offset: self.at + CHUNK_HEADER_LEN,
        };
        self.at += padded(len).min(rest.len());
        Some(Ok(c))
    }
}

/// A DATA chunk's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data {
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Stream sequence number.
    pub ssn: u16,
    /// Payload protocol identifier.
    pub ppid: u32,
}

impl Data {
    /// Parses a DATA chunk value; returns the fields and the user data's offset in the value.
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        if value.len() < DATA_HEADER_LEN - CHUNK_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self {
            tsn: be32(value, 0),
            stream: be16(value, 4),
            ssn: be16(value, 6),
            ppid: be32(value, 8),
        })
    }
}

/// Offset of user data within a DATA chunk value.
pub const DATA_VALUE_PAYLOAD: usize = DATA_HEADER_LEN - CHUNK_HEADER_LEN;

/// A SACK chunk's fixed fields; gap blocks and duplicates are read with [`Sack::gap`].
#[derive(Debug, Clone, Copy)]
pub struct Sack<'a> {
    /// Cumulative TSN ack.
    pub cum_tsn: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Number of gap ack blocks.
    pub gaps: u16,
    /// Number of duplicate TSNs reported.
    pub dups: u16,
    value: &'a [u8],
}

impl<'a> Sack<'a> {
    /// Parses a SACK value and checks its blocks fit.
    pub fn parse(value: &'a [u8]) -> Result<Self, WireError> {
        if value.len() < 12 {
            return Err(WireError::Truncated);
        }
        let gaps = be16(value, 8);
        let dups = be16(value, 10);
        if value.len() < 12 + 4 * (usize::from(gaps) + usize::from(dups)) {
            return Err(WireError::Truncated);
        }
        Ok(Self {
            cum_tsn: be32(value, 0),
            a_rwnd: be32(value, 4),
            gaps,
            dups,
            value,
        })
    }

    /// Gap block `i` as (start, end) offsets from the cumulative TSN.
    pub fn gap(&self, i: u16) -> (u16, u16) {
        let at = 12 + 4 * usize::from(i);
        (be16(self.value, at), be16(self.value, at + 2))
    }
}

/// An INIT or INIT ACK chunk's fixed fields and the extensions the tether cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    /// Initiate tag: the verification tag the sender expects in packets to it.
    pub initiate_tag: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Outbound streams.
    pub outbound_streams: u16,
    /// Maximum inbound streams.
    pub inbound_streams: u16,
    /// Initial TSN.
    pub initial_tsn: u32,
    /// Whether the sender announced FORWARD-TSN support.
    pub forward_tsn: bool,
}

impl Init {
    /// Parses an INIT or INIT ACK value.
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        if value.len() < 16 {
            return Err(WireError::Truncated);
        }
        let mut forward_tsn = false;
        let mut p = &value[16..];
        while p.len() >= 4 {
            let kind = be16(p, 0);
            let len = usize::from(be16(p, 2));
            if len < 4 || len > p.len() {
                break;
            }
            match kind {
                0xc000 => forward_tsn = true,
                0x8008 => forward_tsn |= p[4..len].contains(&chunk::FORWARD_TSN),
                _ => {}
            }
            p = &p[padded(len).min(p.len())..];
        }
        Ok(Self {
            initiate_tag: be32(value, 0),
            a_rwnd: be32(value, 4),
            outbound_streams: be16(value, 8),
            inbound_streams: be16(value, 10),
            initial_tsn: be32(value, 12),
            forward_tsn,
        })
    }
}

/// Writes the common header; the checksum is filled by [`seal_checksum`].
#[inline]
pub fn write_common_header(buf: &mut [u8], src_port: u16, dst_port: u16, vtag: u32) {
    buf[0..2].copy_from_slice(&src_port.to_be_bytes());
    buf[2..4].copy_from_slice(&dst_port.to_be_bytes());
    buf[4..8].copy_from_slice(&vtag.to_be_bytes());
    buf[8..12].fill(0);
}

/// Computes and stores the checksum of a finished packet.
#[inline]
pub fn seal_checksum(packet: &mut [u8]) {
    let c = checksum(packet);
    packet[8..12].copy_from_slice(&c.to_le_bytes());
}

/// Writes a chunk header.
#[inline]
pub fn write_chunk_header(buf: &mut [u8], kind: u8, flags: u8, len: usize) {
    buf[0] = kind;
    buf[1] = flags;
    buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// Writes a DATA chunk header for `payload_len` bytes of user data already in place after it,
/// zeroes the padding, and returns the padded chunk length.
#[inline]
pub fn write_data(buf: &mut [u8], data: &Data, flags: u8, payload_len: usize) -> usize {
    let len = DATA_HEADER_LEN + payload_len;
    write_chunk_header(buf, chunk::DATA, flags, len);
    buf[4..8].copy_from_slice(&data.tsn.to_be_bytes());
    buf[8..10].copy_from_slice(&data.stream.to_be_bytes());
    buf[10..12].copy_from_slice(&data.ssn.to_be_bytes());
    buf[12..16].copy_from_slice(&data.ppid.to_be_bytes());
    let p = padded(len);
    buf[len..p].fill(0);
    p
}

/// Writes a SACK chunk; returns its length (always a multiple of 4).
pub fn write_sack(
    buf: &mut [u8],
    cum_tsn: u32,
    a_rwnd: u32,
    gaps: &[(u16, u16)],
    dups: &[u32],
) -> Result<usize, WireError> {
    let len = 16 + 4 * (gaps.len() + dups.len());
    if buf.len() < len {
        return Err(WireError::Buffer);
    }
    write_chunk_header(buf, chunk::SACK, 0, len);
    buf[4..8].copy_from_slice(&cum_tsn.to_be_bytes());
    buf[8..12].copy_from_slice(&a_rwnd.to_be_bytes());
    buf[12..14].copy_from_slice(&(gaps.len() as u16).to_be_bytes());
    buf[14..16].copy_from_slice(&(dups.len() as u16).to_be_bytes());
    let mut at = 16;
    for (s, e) in gaps {
        buf[at..at + 2].copy_from_slice(&s.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&e.to_be_bytes());
        at += 4;
    }
    for d in dups {
        buf[at..at + 4].copy_from_slice(&d.to_be_bytes());
        at += 4;
    }
    Ok(len)
}

/// Writes a FORWARD-TSN chunk without per-stream entries (all tether data is unordered).
pub fn write_forward_tsn(buf: &mut [u8], new_cum_tsn: u32) -> Result<usize, WireError> {
    if buf.len() < 8 {
        return Err(WireError::Buffer);
    }
    write_chunk_header(buf, chunk::FORWARD_TSN, 0, 8);
    buf[4..8].copy_from_slice(&new_cum_tsn.to_be_bytes());
    Ok(8)
}

/// Writes a chunk whose value is `value` (HEARTBEAT, HEARTBEAT ACK, …), padded.
pub fn write_chunk(buf: &mut [u8], kind: u8, flags: u8, value: &[u8]) -> Result<usize, WireError> {
    let len = CHUNK_HEADER_LEN + value.len();
    let p = padded(len);
    if buf.len() < p {
        return Err(WireError::Buffer);
    }
    write_chunk_header(buf, kind, flags, len);
    buf[CHUNK_HEADER_LEN..len].copy_from_slice(value);
    buf[len..p].fill(0);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn data_packet_roundtrip() {
        let mut buf = [0u8; 64];
        let payload = b"hello";
        buf[DATA_OFFSET..DATA_OFFSET + 5].copy_from_slice(payload);
        write_common_header(&mut buf, 5000, 5000, 0xdead_beef);
        let d = Data {
            tsn: 77,
            stream: 3,
            ssn: 0,
            ppid: ppid::BINARY,
        };
        let n = COMMON_HEADER_LEN
            + write_data(
                &mut buf[COMMON_HEADER_LEN..],
                &d,
                data_flags::WHOLE_UNORDERED,
                5,
            );
        assert_eq!(n, 12 + 24);
        seal_checksum(&mut buf[..n]);
        let p = Packet::parse(&buf[..n]).unwrap();
        assert_eq!((p.src_port, p.vtag), (5000, 0xdead_beef));
        let c: Vec<_> = p.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, chunk::DATA);
        assert_eq!(Data::parse(c[0].value).unwrap(), d);
        assert_eq!(&c[0].value[DATA_VALUE_PAYLOAD..], payload);
        buf[20] ^= 1;
        assert_eq!(Packet::parse(&buf[..n]).unwrap_err(), WireError::Checksum);
        assert!(
            Packet::parse_authenticated(&buf[..n]).is_ok(),
            "inside a DTLS record the checksum is not checked again"
        );
        assert_eq!(
            Packet::parse_authenticated(&buf[..COMMON_HEADER_LEN - 1]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn sack_roundtrip() {
        let mut buf = [0u8; 64];
        let n = write_sack(&mut buf, 100, 1 << 20, &[(2, 4), (7, 7)], &[99]).unwrap();
        assert_eq!(n, 16 + 12);
        let s = Sack::parse(&buf[4..n]).unwrap();
        assert_eq!((s.cum_tsn, s.a_rwnd, s.gaps, s.dups), (100, 1 << 20, 2, 1));
        assert_eq!((s.gap(0), s.gap(1)), ((2, 4), (7, 7)));
    }

    proptest! {
        #[test]
        fn parsers_survive_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut with_crc = bytes.clone();
            if with_crc.len() >= COMMON_HEADER_LEN {
                seal_checksum(&mut with_crc);
            }
            for b in [&bytes, &with_crc] {
                if let Ok(p) = Packet::parse(b) {
                    for c in p.iter().take(400) {
                        let Ok(c) = c else { break };
                        let _ = Data::parse(c.value);
                        if let Ok(s) = Sack::parse(c.value) {
                            for i in 0..s.gaps { let _ = s.gap(i); }
                        }
                        let _ = Init::parse(c.value);
                    }
                }
            }
            let _ = Init::parse(&bytes);
        }
    }
}
