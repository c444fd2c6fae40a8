//! STUN binding messages (RFC 8489) the data plane reads and writes itself: the binding
//! service nodes with public addresses offer, and the queries that learn a worker's
//! server-reflexive address. ICE's own authenticated checks stay with the ICE agent.
//!
//! A view over untrusted bytes: [`Message::parse`] checks the header and walks every
//! attribute's bounds once, and nothing after it indexes out of range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The magic cookie every RFC 5389+ message carries.
pub const MAGIC: u32 = 0x2112_A442;
/// Bytes of a transaction id.
pub const TXID_LEN: usize = 12;
/// Largest message this module writes.
pub const MAX_WRITTEN: usize = HEADER_LEN + 24 + 8;

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Why bytes are not a usable STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than the header, or than the length the header states.
    #[error("STUN message truncated")]
    Truncated,
    /// The first bits or the magic cookie say it is not STUN.
    #[error("not a STUN message")]
    NotStun,
    /// An attribute runs past the message, or has a bad length.
    #[error("malformed STUN attribute")]
    BadAttribute,
    /// A XOR-MAPPED-ADDRESS with an unknown family or wrong length.
    #[error("malformed STUN address")]
    BadAddress,
    /// The FINGERPRINT attribute does not match the message.
    #[error("STUN fingerprint mismatch")]
    BadFingerprint,
}

/// Whether `b` looks like STUN (first two bits zero, the magic cookie): the cheap test
/// that separates it from DTLS on a shared socket.
#[inline]
pub fn looks_like_stun(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN && b[0] & 0xC0 == 0 && b[4..8] == MAGIC.to_be_bytes()
}

/// A checked STUN message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    kind: u16,
    txid: [u8; TXID_LEN],
    attrs: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks the header and every attribute's bounds (and the fingerprint, if present).
    pub fn parse(b: &'a [u8]) -> Result<Self, StunError> {
        if b.len() < HEADER_LEN {
            return Err(StunError::Truncated);
        }
        if !looks_like_stun(b) {
            return Err(StunError::NotStun);
        }
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if len % 4 != 0 {
            return Err(StunError::BadAttribute);
        }
        let end = HEADER_LEN + len;
        if b.len() < end {
            return Err(StunError::Truncated);
        }
        let mut txid = [0; TXID_LEN];
        txid.copy_from_slice(&b[8..HEADER_LEN]);
        let msg = Self {
            kind: u16::from_be_bytes([b[0], b[1]]),
            txid,
            attrs: &b[HEADER_LEN..end],
        };
        let mut at = 0;
        for a in msg.attributes() {
            let (t, v) = a?;
            if t == ATTR_FINGERPRINT {
                let covered = HEADER_LEN + at;
                if v.len() != 4 || covered + 8 != end {
                    return Err(StunError::BadAttribute);
                }
                let want = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                if crc32(&b[..covered]) ^ FINGERPRINT_XOR != want {
                    return Err(StunError::BadFingerprint);
                }
            }
            at += 4 + v.len().next_multiple_of(4);
        }
        Ok(msg)
    }

    /// A binding request.
    pub fn is_binding_request(&self) -> bool {
        self.kind == BINDING_REQUEST
    }

    /// A binding success response.
    pub fn is_binding_success(&self) -> bool {
        self.kind == BINDING_SUCCESS
    }

    /// The transaction id.
    pub fn txid(&self) -> [u8; TXID_LEN] {
        self.txid
    }

    /// The USERNAME attribute (ICE checks carry `"<receiver ufrag>:<sender ufrag>"`).
    pub fn username(&self) -> Option<&'a [u8]> {
        self.attributes()
            .filter_map(Result::ok)
            .find_map(|(t, v)| (t == ATTR_USERNAME).then_some(v))
    }

    /// The receiver's ICE username fragment: USERNAME up to its colon.
    pub fn local_ufrag(&self) -> Option<&'a [u8]> {
        let u = self.username()?;
        let colon = u.iter().position(|c| *c == b':')?;
        Some(&u[..colon])
    }

    /// The XOR-MAPPED-ADDRESS attribute, decoded.
    pub fn xor_mapped_address(&self) -> Result<Option<SocketAddr>, StunError> {
        let Some(v) = self
            .attributes()
            .filter_map(Result::ok)
            .find_map(|(t, v)| (t == ATTR_XOR_MAPPED_ADDRESS).then_some(v))
        else {
            return Ok(None);
        };
        if v.len() < 4 {
            return Err(StunError::BadAddress);
        }
        let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
        let ip = match (v[1], v.len()) {
            (1, 8) => {
                let x = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
                IpAddr::V4(Ipv4Addr::from(x))
            }
            (2, 20) => {
                let mut a = [0u8; 16];
                let key = xor_key(&self.txid);
                for (i, o) in a.iter_mut().enumerate() {
                    *o = v[4 + i] ^ key[i];
                }
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return Err(StunError::BadAddress),
        };
        Ok(Some(SocketAddr::new(ip, port)))
    }

    fn attributes(&self) -> Attributes<'a> {
        Attributes { rest: self.attrs }
    }
}

/// Walks type-length-value attributes, each padded to 4 bytes.
struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(u16, &'a [u8]), StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        if r.len() < 4 {
            self.rest = &[];
            return Some(Err(StunError::BadAttribute));
        }
        let t = u16::from_be_bytes([r[0], r[1]]);
        let len = usize::from(u16::from_be_bytes([r[2], r[3]]));
        let padded = 4 + len.next_multiple_of(4);
        if r.len() < padded {
            self.rest = &[];
            return Some(Err(StunError::BadAttribute));
        }
        self.rest = &r[padded..];
        Some(Ok((t, &r[4..4 + len])))
    }
}

/// Cookie ‖ transaction id: what an IPv6 address is XORed with.
fn xor_key(txid: &[u8; TXID_LEN]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&MAGIC.to_be_bytes());
    k[4..].copy_from_slice(txid);
    k
}

fn header(kind: u16, txid: &[u8; TXID_LEN], buf: &mut [u8]) {
    buf[0..2].copy_from_slice(&kind.to_be_bytes());
    buf[2..4].copy_from_slice(&0u16.to_be_bytes());
    buf[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    buf[8..HEADER_LEN].copy_from_slice(txid);
}

/// Sets the header's length to `end` and appends FINGERPRINT; returns the total length.
fn finish(buf: &mut [u8], end: usize) -> usize {
    let total = end + 8;
    buf[2..4].copy_from_slice(&((total - HEADER_LEN) as u16).to_be_bytes());
    buf[end..end + 2].copy_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
    buf[end + 2..end + 4].copy_from_slice(&4u16.to_be_bytes());
    let fp = crc32(&buf[..end]) ^ FINGERPRINT_XOR;
    buf[end + 4..total].copy_from_slice(&fp.to_be_bytes());
    total
}

/// Writes a binding request (no credentials: a query for the reflexive address) into
/// `buf` (at least [`MAX_WRITTEN`] bytes); returns its length.
pub fn write_binding_request(txid: &[u8; TXID_LEN], buf: &mut [u8]) -> usize {
    header(BINDING_REQUEST, txid, buf);
    finish(buf, HEADER_LEN)
}

/// Writes the binding success answering `txid`, telling the asker `mapped`, into `buf`
/// (at least [`MAX_WRITTEN`] bytes); returns its length.
pub fn write_binding_success(txid: &[u8; TXID_LEN], mapped: SocketAddr, buf: &mut [u8]) -> usize {
    header(BINDING_SUCCESS, txid, buf);
    let a = HEADER_LEN;
    buf[a..a + 2].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    buf[a + 4] = 0;
    buf[a + 6..a + 8].copy_from_slice(&(mapped.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    let end = match mapped.ip() {
        IpAddr::V4(ip) => {
            buf[a + 2..a + 4].copy_from_slice(&8u16.to_be_bytes());
            buf[a + 5] = 1;
            buf[a + 8..a + 12].copy_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
            a + 12
        }
        IpAddr::V6(ip) => {
            buf[a + 2..a + 4].copy_from_slice(&20u16.to_be_bytes());
            buf[a + 5] = 2;
            let key = xor_key(txid);
            for (i, o) in ip.octets().iter().enumerate() {
                buf[a + 8 + i] = o ^ key[i];
            }
            a + 24
        }
    };
    finish(buf, end)
}

/// CRC-32 (IEEE 802.3), as FINGERPRINT uses; messages here are tens of bytes.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn binding_request_and_success_round_trip_both_families() {
        let txid = [7u8; TXID_LEN];
        let mut buf = [0u8; MAX_WRITTEN];
        let n = write_binding_request(&txid, &mut buf);
        let m = Message::parse(&buf[..n]).unwrap();
        assert!(m.is_binding_request() && !m.is_binding_success());
        assert_eq!(m.txid(), txid);
        assert_eq!(m.username(), None);
        for mapped in ["198.51.100.7:40123", "[2001:db8::5]:3478"] {
            let mapped: SocketAddr = mapped.parse().unwrap();
            let n = write_binding_success(&txid, mapped, &mut buf);
            let m = Message::parse(&buf[..n]).unwrap();
            assert!(m.is_binding_success());
            assert_eq!(m.xor_mapped_address().unwrap(), Some(mapped));
        }
    }

    #[test]
    fn known_vector_from_rfc5769_decodes() {
        // RFC 5769 §2.2, IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853 (the vector's
        // MESSAGE-INTEGRITY is not checked here; the fingerprint is).
        let v: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        let m = Message::parse(&v).unwrap();
        assert!(m.is_binding_success());
        assert_eq!(
            m.xor_mapped_address().unwrap(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        let mut bad = v;
        bad[30] ^= 1;
        assert_eq!(Message::parse(&bad).unwrap_err(), StunError::BadFingerprint);
    }

    #[test]
    fn malformed_input_is_refused_not_panicked_on() {
        let txid = [1u8; TXID_LEN];
        let mut buf = [0u8; MAX_WRITTEN];
        let n = write_binding_success(&txid, "10.0.0.1:1".parse().unwrap(), &mut buf);
        for cut in 0..n {
            assert!(Message::parse(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut odd = buf;
        odd[3] = 5;
        assert!(Message::parse(&odd[..n]).is_err());
        assert_eq!(Message::parse(&[0x16; 40]).unwrap_err(), StunError::NotStun);
        // An attribute claiming more than the message holds.
        let mut long = [0u8; HEADER_LEN + 8];
        header(BINDING_REQUEST, &txid, &mut long);
        long[3] = 8;
        long[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0, 6, 0, 40]);
        assert_eq!(Message::parse(&long).unwrap_err(), StunError::BadAttribute);
    }

    #[test]
    fn ufrag_is_the_part_before_the_colon() {
        let mut b = [0u8; HEADER_LEN + 12];
        header(BINDING_REQUEST, &[2; TXID_LEN], &mut b);
        b[3] = 12;
        b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0, 6, 0, 7]);
        b[HEADER_LEN + 4..HEADER_LEN + 11].copy_from_slice(b"abcd:xy");
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.local_ufrag(), Some(&b"abcd"[..]));
    }
}
