//! Stream handshake messages: init (source → destination) and accept (back).
//!
//! Both messages are a fixed `zerocopy` header, the sender's realm and taints, and an
//! ML-DSA-65 signature over every byte before it. All integers are big-endian.
//!
//! ```text
//! init:   version u8 = 1 | type u8 = 1 | reserved [2] = 0 | stream id [16]
//!         | initiator [16] | responder [16] | initiator nonce [32] | expires u64 (unix s)
//!         | signer fingerprint [32] | ML-KEM-768 ciphertext [1088]
//!         | names | signature [3309]
//! accept: version u8 = 1 | type u8 = 2 | reserved [2] = 0 | stream id [16]
//!         | initiator [16] | responder [16] | responder nonce [32] | init hash [32]
//!         | expires u64 (unix s) | signer fingerprint [32]
//!         | names | signature [3309]
//! names:  realm length u8 | realm | taint count u8 | (taint length u8 | taint)*
//! ```
//!
//! Names follow [`crate::taint`]'s rules and taints come in strictly ascending byte order, so
//! each message has exactly one encoding. [`HandshakeInit::parse`] and
//! [`HandshakeAccept::parse`] check all of it and never panic; emitting goes through
//! [`InitRepr::emit`] / [`AcceptRepr::emit`], which write everything but the signature and hand
//! back the bytes to sign.

use std::{fmt, str};

use zerocopy::network_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::WireError;
use crate::crypto::identity::{FINGERPRINT_LEN, KEM_CIPHERTEXT_LEN, SIGNATURE_LEN};
use crate::id::{NodeId, StreamId};
use crate::taint::{MAX_NAME_LEN, MAX_TAINTS, Membership, Realm, Taint, TaintSet};

/// The handshake version this build speaks.
pub const VERSION: u8 = 1;
/// Length of each side's random handshake nonce.
pub const HANDSHAKE_NONCE_LEN: usize = 32;
/// Length of the init hash an accept carries (SHA-256).
pub const TRANSCRIPT_HASH_LEN: usize = 32;
/// Longest names section: realm plus the most taints, each at the longest name.
pub const MAX_NAMES_LEN: usize = 1 + MAX_NAME_LEN + 1 + MAX_TAINTS * (1 + MAX_NAME_LEN);
/// Length of an init's fixed header.
pub const INIT_HEADER_LEN: usize = size_of::<InitHeader>();
/// Length of an accept's fixed header.
pub const ACCEPT_HEADER_LEN: usize = size_of::<AcceptHeader>();
/// Longest init message.
pub const INIT_MAX_LEN: usize = INIT_HEADER_LEN + MAX_NAMES_LEN + SIGNATURE_LEN;
/// Longest accept message.
pub const ACCEPT_MAX_LEN: usize = ACCEPT_HEADER_LEN + MAX_NAMES_LEN + SIGNATURE_LEN;

/// Which handshake message some bytes claim to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    /// [`HandshakeInit`].
    Init = 1,
    /// [`HandshakeAccept`].
    Accept = 2,
}

impl MessageKind {
    /// Reads the version and type bytes, to dispatch before a full parse.
    pub fn peek(bytes: &[u8]) -> Result<Self, WireError> {
        match *bytes {
            [VERSION, 1, ..] => Ok(Self::Init),
            [VERSION, 2, ..] => Ok(Self::Accept),
            [VERSION, kind, ..] => Err(WireError::UnknownType(kind.into())),
            [version, _, ..] => Err(WireError::Version(version)),
            _ => Err(WireError::Truncated {
                need: 2,
                have: bytes.len(),
            }),
        }
    }
}

/// The fields both messages start with.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Prefix {
    version: u8,
    kind: u8,
    reserved: [u8; 2],
    stream_id: StreamId,
    initiator: NodeId,
    responder: NodeId,
    nonce: [u8; HANDSHAKE_NONCE_LEN],
}

/// The fixed part of an init.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct InitHeader {
    prefix: Prefix,
    expires: U64,
    fingerprint: [u8; FINGERPRINT_LEN],
    ciphertext: [u8; KEM_CIPHERTEXT_LEN],
}

/// The fixed part of an accept.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AcceptHeader {
    prefix: Prefix,
    init_hash: [u8; TRANSCRIPT_HASH_LEN],
    expires: U64,
    fingerprint: [u8; FINGERPRINT_LEN],
}

/// The fixed part of one kind of message; both are parsed and emitted by the same code.
trait Header: FromBytes + IntoBytes + KnownLayout + Immutable {
    const KIND: MessageKind;

    fn prefix(&self) -> &Prefix;
}

impl Header for InitHeader {
    const KIND: MessageKind = MessageKind::Init;

    fn prefix(&self) -> &Prefix {
        &self.prefix
    }
}

impl Header for AcceptHeader {
    const KIND: MessageKind = MessageKind::Accept;

    fn prefix(&self) -> &Prefix {
        &self.prefix
    }
}

/// The checked parts of a message: fixed header, names, signature.
type Parts<'a, H> = (&'a H, Membership, &'a [u8; SIGNATURE_LEN]);

/// Checks untrusted bytes that must be exactly one message of `H`'s kind.
fn parse_message<H: Header>(bytes: &[u8]) -> Result<Parts<'_, H>, WireError> {
    let got = MessageKind::peek(bytes)?;
    if got != H::KIND {
        return Err(WireError::UnknownType(got as u16));
    }
    let (header, rest) = H::ref_from_prefix(bytes).map_err(|_| WireError::Truncated {
        need: size_of::<H>(),
        have: bytes.len(),
    })?;
    let prefix = header.prefix();
    if prefix.reserved != [0; 2] {
        return Err(WireError::Reserved);
    }
    if prefix.initiator == prefix.responder {
        return Err(WireError::Field(
            "initiator and responder are the same node",
        ));
    }
    let (membership, rest) = parse_names(rest, size_of::<H>())?;
    let signature = split_signature(rest, bytes.len() - rest.len())?;
    Ok((header, membership, signature))
}

/// Parses the names section at the start of `rest`, which starts `offset` bytes into the
/// message; returns the membership and the bytes after.
fn parse_names(rest: &[u8], offset: usize) -> Result<(Membership, &[u8]), WireError> {
    let mut cur = Cursor { rest, used: offset };
    let realm = cur.name()?;
    let realm = Realm::new(realm).map_err(|_| WireError::Field("realm name"))?;
    let count = usize::from(cur.byte()?);
    if count > MAX_TAINTS {
        return Err(WireError::Length(count));
    }
    let mut taints = TaintSet::new();
    let mut prev: Option<&str> = None;
    for _ in 0..count {
        let name = cur.name()?;
        if prev.is_some_and(|p| p >= name) {
            return Err(WireError::Field("taints not in strictly ascending order"));
        }
        prev = Some(name);
        let taint = Taint::new(name).map_err(|_| WireError::Field("taint name"))?;
        taints.insert(taint).map_err(|_| WireError::Length(count))?;
    }
    Ok((Membership { realm, taints }, cur.rest))
}

/// Reads length-prefixed names; `used` counts the message's bytes before `rest`, for
/// truncation reports.
struct Cursor<'a> {
    rest: &'a [u8],
    used: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated {
                need: self.used + n,
                have: self.used + self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.used += n;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn name(&mut self) -> Result<&'a str, WireError> {
        let len = usize::from(self.byte()?);
        if len == 0 || len > MAX_NAME_LEN {
            return Err(WireError::Length(len));
        }
        str::from_utf8(self.take(len)?).map_err(|_| WireError::Field("name is not UTF-8"))
    }
}

/// Splits the trailing signature; `offset` is where `rest` starts in the message.
fn split_signature(rest: &[u8], offset: usize) -> Result<&[u8; SIGNATURE_LEN], WireError> {
    match rest.len() {
        n if n < SIGNATURE_LEN => Err(WireError::Truncated {
            need: offset + SIGNATURE_LEN,
            have: offset + n,
        }),
        SIGNATURE_LEN => rest.try_into().map_err(|_| WireError::Length(rest.len())),
        _ => Err(WireError::Trailing),
    }
}

fn names_len(m: &Membership) -> usize {
    2 + m.realm.as_str().len() + m.taints.iter().map(|t| 1 + t.as_str().len()).sum::<usize>()
}

/// Writes the names section into `out`, which is exactly [`names_len`] long.
fn emit_names(m: &Membership, out: &mut [u8]) {
    let mut at = 0;
    let mut put = |b: &[u8]| {
        out[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    // Lengths fit a byte: names are at most MAX_NAME_LEN (63) bytes and sets MAX_TAINTS (32).
    let realm = m.realm.as_str().as_bytes();
    put(&[realm.len() as u8]);
    put(realm);
    put(&[m.taints.len() as u8]);
    for t in m.taints.iter() {
        put(&[t.as_str().len() as u8]);
        put(t.as_str().as_bytes());
    }
}

/// A message written up to its signature: sign [`Self::signed_part`], then [`Self::finish`].
#[must_use = "the message is incomplete until its signature is written"]
pub struct Unsigned<'b> {
    buf: &'b mut [u8],
    signed_len: usize,
}

impl Unsigned<'_> {
    /// The bytes the signature covers.
    pub fn signed_part(&self) -> &[u8] {
        &self.buf[..self.signed_len]
    }

    /// Appends the signature; returns the whole message's length.
    pub fn finish(self, signature: &[u8]) -> Result<usize, WireError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(WireError::Length(signature.len()));
        }
        let end = self.signed_len + SIGNATURE_LEN;
        self.buf[self.signed_len..end].copy_from_slice(signature);
        Ok(end)
    }
}

/// Length of a whole message with header `H`, signature included.
fn message_len<H: Header>(membership: &Membership) -> usize {
    size_of::<H>() + names_len(membership) + SIGNATURE_LEN
}

/// Checks the buffer, writes the header and names; shared by both messages.
fn emit_message<'b, H: Header>(
    header: &H,
    membership: &Membership,
    buf: &'b mut [u8],
) -> Result<Unsigned<'b>, WireError> {
    let head = size_of::<H>();
    let need = message_len::<H>(membership);
    let signed_len = need - SIGNATURE_LEN;
    if buf.len() < need {
        return Err(WireError::Truncated {
            need,
            have: buf.len(),
        });
    }
    buf[..head].copy_from_slice(header.as_bytes());
    emit_names(membership, &mut buf[head..signed_len]);
    Ok(Unsigned { buf, signed_len })
}

/// Declares the checked view of one kind of message with what every kind has: the parser
/// and the fields in every header. `header` is the kind's [`Header`].
macro_rules! signed_message {
    ($(#[$doc:meta])* $name:ident, $header:ty, $what:literal) => {
        $(#[$doc])*
        pub struct $name<'a> {
            bytes: &'a [u8],
            header: &'a $header,
            membership: Membership,
            signature: &'a [u8; SIGNATURE_LEN],
        }

        impl<'a> $name<'a> {
            #[doc = concat!("Checks untrusted bytes; the whole slice must be exactly one ", $what, ".")]
            pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
                let (header, membership, signature) = parse_message(bytes)?;
                Ok(Self {
                    bytes,
                    header,
                    membership,
                    signature,
                })
            }

            /// The stream this handshake sets up.
            pub fn stream_id(&self) -> StreamId {
                self.header.prefix.stream_id
            }

            /// The stream's source, which sends the init.
            pub fn initiator(&self) -> NodeId {
                self.header.prefix.initiator
            }

            /// The stream's destination, which sends the accept.
            pub fn responder(&self) -> NodeId {
                self.header.prefix.responder
            }

            #[doc = concat!("The random nonce of the ", $what, "'s sender.")]
            pub fn nonce(&self) -> &'a [u8; HANDSHAKE_NONCE_LEN] {
                &self.header.prefix.nonce
            }

            /// When the message stops being valid, in unix seconds.
            pub fn expires(&self) -> u64 {
                self.header.expires.get()
            }

            /// SHA-256 of the signer's ML-DSA-65 public key.
            pub fn fingerprint(&self) -> &'a [u8; FINGERPRINT_LEN] {
                &self.header.fingerprint
            }

            #[doc = concat!("The realm and taints of the ", $what, "'s sender.")]
            pub fn membership(&self) -> &Membership {
                &self.membership
            }

            /// Every byte the signature covers.
            pub fn signed_part(&self) -> &'a [u8] {
                &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
            }

            /// The ML-DSA-65 signature.
            pub fn signature(&self) -> &'a [u8; SIGNATURE_LEN] {
                self.signature
            }

            /// The whole message.
            pub fn as_bytes(&self) -> &'a [u8] {
                self.bytes
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("stream_id", &self.stream_id())
                    .field("initiator", &self.initiator())
                    .field("responder", &self.responder())
                    .field("expires", &self.expires())
                    .field("membership", &self.membership)
                    .finish_non_exhaustive()
            }
        }
    };
}

signed_message!(
    /// A checked view of an init message.
    HandshakeInit,
    InitHeader,
    "init"
);

impl<'a> HandshakeInit<'a> {
    /// The ML-KEM-768 ciphertext encapsulated to the responder's key.
    pub fn ciphertext(&self) -> &'a [u8; KEM_CIPHERTEXT_LEN] {
        &self.header.ciphertext
    }

    /// The fields, to emit the same message again.
    pub fn repr(&self) -> InitRepr<'_> {
        InitRepr {
            stream_id: self.stream_id(),
            initiator: self.initiator(),
            responder: self.responder(),
            nonce: *self.nonce(),
            expires: self.expires(),
            fingerprint: *self.fingerprint(),
            ciphertext: self.ciphertext(),
            membership: &self.membership,
        }
    }
}

/// The fields of an init, to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRepr<'a> {
    /// The stream this handshake sets up.
    pub stream_id: StreamId,
    /// The stream's source.
    pub initiator: NodeId,
    /// The stream's destination.
    pub responder: NodeId,
    /// The initiator's random nonce.
    pub nonce: [u8; HANDSHAKE_NONCE_LEN],
    /// When the message stops being valid, in unix seconds.
    pub expires: u64,
    /// SHA-256 of the signer's ML-DSA-65 public key.
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// The ML-KEM-768 ciphertext encapsulated to the responder's key.
    pub ciphertext: &'a [u8; KEM_CIPHERTEXT_LEN],
    /// The initiator's realm and taints.
    pub membership: &'a Membership,
}

impl InitRepr<'_> {
    /// Length of the whole message, signature included.
    pub fn buffer_len(&self) -> usize {
        message_len::<InitHeader>(self.membership)
    }

    /// Writes the message up to its signature into the start of `buf`.
    pub fn emit<'b>(&self, buf: &'b mut [u8]) -> Result<Unsigned<'b>, WireError> {
        let header = InitHeader {
            prefix: Prefix {
                version: VERSION,
                kind: MessageKind::Init as u8,
                reserved: [0; 2],
                stream_id: self.stream_id,
                initiator: self.initiator,
                responder: self.responder,
                nonce: self.nonce,
            },
            expires: U64::new(self.expires),
            fingerprint: self.fingerprint,
            ciphertext: *self.ciphertext,
        };
        emit_message(&header, self.membership, buf)
    }
}

signed_message!(
    /// A checked view of an accept message.
    HandshakeAccept,
    AcceptHeader,
    "accept"
);

impl<'a> HandshakeAccept<'a> {
    /// SHA-256 of the whole init this accept answers.
    pub fn init_hash(&self) -> &'a [u8; TRANSCRIPT_HASH_LEN] {
        &self.header.init_hash
    }

    /// The fields, to emit the same message again.
    pub fn repr(&self) -> AcceptRepr<'_> {
        AcceptRepr {
            stream_id: self.stream_id(),
            initiator: self.initiator(),
            responder: self.responder(),
            nonce: *self.nonce(),
            init_hash: *self.init_hash(),
            expires: self.expires(),
            fingerprint: *self.fingerprint(),
            membership: &self.membership,
        }
    }
}

/// The fields of an accept, to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptRepr<'a> {
    /// The stream this handshake sets up.
    pub stream_id: StreamId,
    /// The stream's source.
    pub initiator: NodeId,
    /// The stream's destination.
    pub responder: NodeId,
    /// The responder's random nonce.
    pub nonce: [u8; HANDSHAKE_NONCE_LEN],
    /// SHA-256 of the whole init this accept answers.
    pub init_hash: [u8; TRANSCRIPT_HASH_LEN],
    /// When the message stops being valid, in unix seconds.
    pub expires: u64,
    /// SHA-256 of the signer's ML-DSA-65 public key.
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// The responder's realm and taints.
    pub membership: &'a Membership,
}

impl AcceptRepr<'_> {
    /// Length of the whole message, signature included.
    pub fn buffer_len(&self) -> usize {
        message_len::<AcceptHeader>(self.membership)
    }

    /// Writes the message up to its signature into the start of `buf`.
    pub fn emit<'b>(&self, buf: &'b mut [u8]) -> Result<Unsigned<'b>, WireError> {
        let header = AcceptHeader {
            prefix: Prefix {
                version: VERSION,
                kind: MessageKind::Accept as u8,
                reserved: [0; 2],
                stream_id: self.stream_id,
                initiator: self.initiator,
                responder: self.responder,
                nonce: self.nonce,
            },
            init_hash: self.init_hash,
            expires: U64::new(self.expires),
            fingerprint: self.fingerprint,
        };
        emit_message(&header, self.membership, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn membership(realm: &str, taints: &[&str]) -> Membership {
        Membership {
            realm: Realm::new(realm).unwrap(),
            taints: TaintSet::parse(taints.iter().copied()).unwrap(),
        }
    }

    /// An init written out by hand, byte by byte, as the module doc lays it out.
    fn fixed_init() -> Vec<u8> {
        let mut b = vec![1, 1, 0, 0];
        b.extend([0x11; 16]); // stream id
        b.extend([0x22; 16]); // initiator
        b.extend([0x33; 16]); // responder
        b.extend([0x44; 32]); // nonce
        b.extend([0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00]); // expires 1700000000
        b.extend([0x55; 32]); // fingerprint
        b.extend([0x66; 1088]); // ciphertext
        b.extend(b"\x04home");
        b.extend(b"\x02\x03dev\x05stage");
        b.extend([0x77; 3309]); // signature
        b
    }

    /// An accept written out by hand.
    fn fixed_accept() -> Vec<u8> {
        let mut b = vec![1, 2, 0, 0];
        b.extend([0x11; 16]);
        b.extend([0x22; 16]);
        b.extend([0x33; 16]);
        b.extend([0x88; 32]); // responder nonce
        b.extend([0x99; 32]); // init hash
        b.extend([0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x1e]); // expires 1700000030
        b.extend([0xaa; 32]);
        b.extend(b"\x04home\x01\x03dev");
        b.extend([0xbb; 3309]);
        b
    }

    #[test]
    fn fixed_init_parses_field_by_field() {
        let bytes = fixed_init();
        let m = HandshakeInit::parse(&bytes).unwrap();
        assert_eq!(m.stream_id(), StreamId([0x11; 16]));
        assert_eq!(m.initiator(), NodeId([0x22; 16]));
        assert_eq!(m.responder(), NodeId([0x33; 16]));
        assert_eq!(m.nonce(), &[0x44; 32]);
        assert_eq!(m.expires(), 1_700_000_000);
        assert_eq!(m.fingerprint(), &[0x55; 32]);
        assert_eq!(m.ciphertext(), &[0x66; 1088]);
        assert_eq!(m.membership(), &membership("home", &["dev", "stage"]));
        assert_eq!(m.signature(), &[0x77; 3309]);
        assert_eq!(m.signed_part(), &bytes[..bytes.len() - 3309]);
        assert_eq!(MessageKind::peek(&bytes), Ok(MessageKind::Init));
    }

    #[test]
    fn fixed_init_is_emitted_byte_for_byte() {
        let want = fixed_init();
        let ms = membership("home", &["stage", "dev"]);
        let repr = InitRepr {
            stream_id: StreamId([0x11; 16]),
            initiator: NodeId([0x22; 16]),
            responder: NodeId([0x33; 16]),
            nonce: [0x44; 32],
            expires: 1_700_000_000,
            fingerprint: [0x55; 32],
            ciphertext: &[0x66; 1088],
            membership: &ms,
        };
        assert_eq!(repr.buffer_len(), want.len());
        let mut buf = vec![0xff; INIT_MAX_LEN];
        let unsigned = repr.emit(&mut buf).unwrap();
        assert_eq!(unsigned.signed_part(), &want[..want.len() - 3309]);
        let n = unsigned.finish(&[0x77; 3309]).unwrap();
        assert_eq!(&buf[..n], &want[..]);
    }

    #[test]
    fn fixed_accept_both_ways() {
        let bytes = fixed_accept();
        let m = HandshakeAccept::parse(&bytes).unwrap();
        assert_eq!(m.stream_id(), StreamId([0x11; 16]));
        assert_eq!(m.initiator(), NodeId([0x22; 16]));
        assert_eq!(m.responder(), NodeId([0x33; 16]));
        assert_eq!(m.nonce(), &[0x88; 32]);
        assert_eq!(m.init_hash(), &[0x99; 32]);
        assert_eq!(m.expires(), 1_700_000_030);
        assert_eq!(m.fingerprint(), &[0xaa; 32]);
        assert_eq!(m.membership(), &membership("home", &["dev"]));
        assert_eq!(m.signature(), &[0xbb; 3309]);
        assert_eq!(MessageKind::peek(&bytes), Ok(MessageKind::Accept));

        let mut buf = vec![0; ACCEPT_MAX_LEN];
        let repr = m.repr();
        assert_eq!(repr.buffer_len(), bytes.len());
        let n = repr.emit(&mut buf).unwrap().finish(m.signature()).unwrap();
        assert_eq!(&buf[..n], &bytes[..]);
    }

    #[test]
    fn longest_messages_fit_the_max_lengths() {
        let long = |i: usize| format!("{i:02}{}", "x".repeat(MAX_NAME_LEN - 2));
        let names: Vec<String> = (0..MAX_TAINTS).map(long).collect();
        let ms = Membership {
            realm: Realm::new(&"r".repeat(MAX_NAME_LEN)).unwrap(),
            taints: TaintSet::parse(names.iter().map(String::as_str)).unwrap(),
        };
        let repr = InitRepr {
            stream_id: StreamId([1; 16]),
            initiator: NodeId([2; 16]),
            responder: NodeId([3; 16]),
            nonce: [4; 32],
            expires: u64::MAX,
            fingerprint: [5; 32],
            ciphertext: &[6; KEM_CIPHERTEXT_LEN],
            membership: &ms,
        };
        assert_eq!(repr.buffer_len(), INIT_MAX_LEN);
        let mut buf = vec![0; INIT_MAX_LEN];
        let n = repr
            .emit(&mut buf)
            .unwrap()
            .finish(&[7; SIGNATURE_LEN])
            .unwrap();
        let parsed = HandshakeInit::parse(&buf[..n]).unwrap();
        assert_eq!(parsed.repr(), repr);
        assert_eq!(
            repr.emit(&mut buf[..INIT_MAX_LEN - 1]).err(),
            Some(WireError::Truncated {
                need: INIT_MAX_LEN,
                have: INIT_MAX_LEN - 1
            })
        );
    }

    #[test]
    fn malformed_inits_are_rejected_with_the_reason() {
        let good = fixed_init();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            HandshakeInit::parse(&b).map(|_| ())
        };
        let names_at = INIT_HEADER_LEN;
        assert_eq!(
            with(&|b| b.truncate(1)),
            Err(WireError::Truncated { need: 2, have: 1 })
        );
        assert_eq!(with(&|b| b[0] = 2), Err(WireError::Version(2)));
        assert_eq!(with(&|b| b[1] = 2), Err(WireError::UnknownType(2)));
        assert_eq!(with(&|b| b[1] = 9), Err(WireError::UnknownType(9)));
        assert_eq!(with(&|b| b[3] = 1), Err(WireError::Reserved));
        assert_eq!(
            with(&|b| b.truncate(100)),
            Err(WireError::Truncated {
                need: INIT_HEADER_LEN,
                have: 100
            })
        );
        assert!(matches!(
            with(&|b| b[36..52].fill(0x22)),
            Err(WireError::Field(_))
        ));
        assert_eq!(with(&|b| b[names_at] = 0), Err(WireError::Length(0)));
        assert_eq!(with(&|b| b[names_at] = 64), Err(WireError::Length(64)));
        assert_eq!(
            with(&|b| b[names_at + 1] = b'H'),
            Err(WireError::Field("realm name"))
        );
        assert_eq!(
            with(&|b| b[names_at + 1] = 0xff),
            Err(WireError::Field("name is not UTF-8"))
        );
        assert_eq!(with(&|b| b[names_at + 5] = 33), Err(WireError::Length(33)));
        // Taints "stage" before "dev": the same set, but not the one encoding.
        assert_eq!(
            with(&|b| b[names_at + 6..names_at + 16].copy_from_slice(b"\x05stage\x03dev")),
            Err(WireError::Field("taints not in strictly ascending order"))
        );
        assert_eq!(
            with(&|b| b[names_at + 7..names_at + 10].copy_from_slice(b"st_")),
            Ok(()),
            "a valid name that still sorts first"
        );
        assert_eq!(
            with(&|b| b[names_at + 7..names_at + 10].copy_from_slice(b"zzz")),
            Err(WireError::Field("taints not in strictly ascending order"))
        );
        assert_eq!(
            with(&|b| b[names_at + 7] = b'.'),
            Err(WireError::Field("taint name"))
        );
        assert_eq!(with(&|b| b.push(0)), Err(WireError::Trailing));
        assert_eq!(
            with(&|b| {
                b.pop();
            }),
            Err(WireError::Truncated {
                need: good.len(),
                have: good.len() - 1
            })
        );
        let cut = names_at + 8;
        assert_eq!(
            with(&|b| b.truncate(cut)),
            Err(WireError::Truncated {
                need: cut + 2,
                have: cut
            })
        );
        let accept = fixed_accept();
        assert_eq!(
            HandshakeInit::parse(&accept).map(|_| ()),
            Err(WireError::UnknownType(2))
        );
        assert_eq!(
            HandshakeAccept::parse(&good).map(|_| ()),
            Err(WireError::UnknownType(1))
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        let init = fixed_init();
        for n in 0..init.len() {
            assert!(HandshakeInit::parse(&init[..n]).is_err(), "init cut at {n}");
        }
        let accept = fixed_accept();
        for n in 0..accept.len() {
            assert!(
                HandshakeAccept::parse(&accept[..n]).is_err(),
                "accept cut at {n}"
            );
        }
    }

    #[test]
    fn signature_must_be_full_length_to_finish() {
        let ms = membership("home", &["dev"]);
        let accept = fixed_accept();
        let parsed = HandshakeAccept::parse(&accept).unwrap();
        let mut buf = vec![0; ACCEPT_MAX_LEN];
        let repr = AcceptRepr {
            membership: &ms,
            ..parsed.repr()
        };
        assert_eq!(
            repr.emit(&mut buf).unwrap().finish(&[0; 10]),
            Err(WireError::Length(10))
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_noise(bytes in prop::collection::vec(any::<u8>(), 0..6000)) {
            let _ = HandshakeInit::parse(&bytes);
            let _ = HandshakeAccept::parse(&bytes);
            let _ = MessageKind::peek(&bytes);
        }

        #[test]
        fn mutated_messages_are_rejected_or_reemitted_exactly(
            which in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = if which { fixed_init() } else { fixed_accept() };
            for (at, v) in edits {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            let n = cut.index(bytes.len() + 1);
            let bytes = &bytes[..n];
            // Whatever parses has exactly one encoding: emitting it again gives the same bytes.
            let mut out = vec![0; INIT_MAX_LEN.max(ACCEPT_MAX_LEN)];
            if let Ok(m) = HandshakeInit::parse(bytes) {
                let len = m.repr().emit(&mut out).unwrap().finish(m.signature()).unwrap();
                prop_assert_eq!(&out[..len], bytes);
            }
            if let Ok(m) = HandshakeAccept::parse(bytes) {
                let len = m.repr().emit(&mut out).unwrap().finish(m.signature()).unwrap();
                prop_assert_eq!(&out[..len], bytes);
            }
        }

        #[test]
        fn round_trip(
            stream in any::<[u8; 16]>(),
            nonce in any::<[u8; 32]>(),
            hash in any::<[u8; 32]>(),
            expires in any::<u64>(),
            taints in prop::collection::btree_set("[a-z][a-z0-9_-]{0,62}", 0..MAX_TAINTS),
        ) {
            let ms = Membership {
                realm: Realm::new("realm-1").unwrap(),
                taints: TaintSet::parse(taints.iter().map(String::as_str)).unwrap(),
            };
            let init = InitRepr {
                stream_id: StreamId(stream),
                initiator: NodeId([1; 16]),
                responder: NodeId([2; 16]),
                nonce,
                expires,
                fingerprint: hash,
                ciphertext: &[9; KEM_CIPHERTEXT_LEN],
                membership: &ms,
            };
            let mut buf = vec![0; INIT_MAX_LEN];
            let n = init.emit(&mut buf).unwrap().finish(&[3; SIGNATURE_LEN]).unwrap();
            prop_assert_eq!(n, init.buffer_len());
            let parsed = HandshakeInit::parse(&buf[..n]).unwrap();
            prop_assert_eq!(parsed.repr(), init);

            let accept = AcceptRepr {
                stream_id: StreamId(stream),
                initiator: NodeId([1; 16]),
                responder: NodeId([2; 16]),
                nonce,
                init_hash: hash,
                expires,
                fingerprint: hash,
                membership: &ms,
            };
            let mut buf = vec![0; ACCEPT_MAX_LEN];
            let n = accept.emit(&mut buf).unwrap().finish(&[3; SIGNATURE_LEN]).unwrap();
            prop_assert_eq!(n, accept.buffer_len());
            let parsed = HandshakeAccept::parse(&buf[..n]).unwrap();
            prop_assert_eq!(parsed.repr(), accept);
        }
    }
}
