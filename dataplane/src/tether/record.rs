//! DTLS 1.2 AES-128-GCM records sealed and opened in place (RFC 6347 §4.1, RFC 5288).
//!
//! A record on the wire is `header (13) ‖ explicit nonce (8) ‖ ciphertext ‖ tag (16)`. The
//! GCM nonce is the 4-byte implicit salt from the key block followed by the explicit nonce;
//! the additional data is `epoch ‖ sequence (8) ‖ type ‖ version ‖ plaintext length`.
//!
//! The sealer writes the record's own `epoch ‖ sequence` as its explicit nonce: RFC 5288 §3
//! allows any value that never repeats under a key, and the record sequence number is
//! exactly that (the DTLS library draws a random one instead). Callers lay the plaintext
//! at [`RECORD_HEADROOM`] and leave [`TAG_LEN`] bytes after it; nothing is copied.
//!
//! Sealing and opening a batch reuse one expanded key; the opener checks its sliding replay
//! window before spending AES work and marks a sequence number only once its tag verifies.

use aes_gcm::{AeadInOut, Aes128Gcm, KeyInit};
use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use conflux_shared::crypto::aead::Backend;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of the DTLS record header.
pub const RECORD_HEADER_LEN: usize = 13;
/// Length of the explicit part of the GCM nonce carried in each record.
pub const EXPLICIT_NONCE_LEN: usize = 8;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes in front of a record's plaintext: header and explicit nonce.
pub const RECORD_HEADROOM: usize = RECORD_HEADER_LEN + EXPLICIT_NONCE_LEN;
/// Bytes a record adds around its plaintext.
pub const RECORD_OVERHEAD: usize = RECORD_HEADROOM + TAG_LEN;
/// AES-128 key length (the only suite the tether negotiates).
pub const KEY_LEN: usize = 16;
/// Length of the implicit nonce salt from the key block.
pub const SALT_LEN: usize = 4;
/// The DTLS 1.2 version field.
pub const DTLS_1_2: [u8; 2] = [0xfe, 0xfd];
/// Largest sequence number a 48-bit field holds.
pub const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// Record content types (RFC 5246 §6.2.1).
pub mod content {
    /// ChangeCipherSpec.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// Alert.
    pub const ALERT: u8 = 21;
    /// Handshake.
    pub const HANDSHAKE: u8 = 22;
    /// Application data.
    pub const APPLICATION_DATA: u8 = 23;
}

/// Why a record was not sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than a header, or than the header's length field claims.
    #[error("record truncated")]
    Truncated,
    /// The version field is not DTLS 1.2.
    #[error("record version is not DTLS 1.2")]
    Version,
    /// The record belongs to another epoch than the keys.
    #[error("record epoch {0} does not match the keys")]
    Epoch(u16),
    /// Too short to hold an explicit nonce and a tag.
    #[error("record too short for nonce and tag")]
    TooShort,
    /// The sequence number was seen already or fell out of the replay window.
    #[error("record sequence number replayed or too old")]
    Replay,
    /// The tag did not verify.
    #[error("record failed authentication")]
    Auth,
    /// The plaintext does not fit the buffer or the 16-bit length field.
    #[error("record buffer too small or plaintext too long")]
    Buffer,
    /// The 48-bit sequence space is used up: the tether must be re-established.
    #[error("record sequence numbers exhausted")]
    Exhausted,
}

/// One direction's AES-128-GCM key and implicit salt; wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DirectionKey {
    /// The write key.
    pub key: [u8; KEY_LEN],
    /// The write IV (implicit nonce salt).
    pub salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKey(<redacted>)")
    }
}

/// A parsed record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Content type.
    pub content_type: u8,
    /// Epoch.
    pub epoch: u16,
    /// 48-bit sequence number.
    pub sequence: u64,
    /// Length of the fragment after the header.
    pub length: u16,
}

impl RecordHeader {
    /// Parses the header at the front of `buf`; checks version and that the fragment fits.
    pub fn parse(buf: &[u8]) -> Result<Self, RecordError> {
        let h: &[u8; RECORD_HEADER_LEN] = buf
            .get(..RECORD_HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(RecordError::Truncated)?;
        if h[1..3] != DTLS_1_2 {
            return Err(RecordError::Version);
        }
        let length = u16::from_be_bytes([h[11], h[12]]);
        if buf.len() - RECORD_HEADER_LEN < usize::from(length) {
            return Err(RecordError::Truncated);
        }
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&h[5..11]);
        Ok(Self {
            content_type: h[0],
            epoch: u16::from_be_bytes([h[3], h[4]]),
            sequence: u64::from_be_bytes(seq),
            length,
        })
    }

    /// Total record length, header included.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_LEN + usize::from(self.length)
    }
}

enum Cipher {
    AwsLc(LessSafeKey),
    RustCrypto(Box<Aes128Gcm>),
}

impl Cipher {
    fn new(backend: Backend, key: &[u8; KEY_LEN]) -> Self {
        match backend {
            // A 16-byte key is always valid for AES-128: construction cannot fail.
            Backend::AwsLc => Self::AwsLc(LessSafeKey::new(
                UnboundKey::new(&AES_128_GCM, key).expect("16-byte AES-128 key"),
            )),
            Backend::RustCrypto => Self::RustCrypto(Box::new(
                Aes128Gcm::new_from_slice(key).expect("16-byte AES-128 key"),
            )),
        }
    }

    #[inline]
    fn seal(
        &self,
        nonce: [u8; 12],
        aad: &[u8; 13],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], RecordError> {
        match self {
            Self::AwsLc(k) => {
                let t = k
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        data,
                    )
                    .map_err(|_| RecordError::Buffer)?;
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(t.as_ref());
                Ok(tag)
            }
            Self::RustCrypto(k) => {
                let t = k
                    .encrypt_inout_detached(&nonce.into(), aad, data.into())
                    .map_err(|_| RecordError::Buffer)?;
                Ok(t.into())
            }
        }
    }

    #[inline]
    fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8; 13],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), RecordError> {
        match self {
            Self::AwsLc(k) => k
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    tag,
                    data,
                )
                .map(|_| ())
                .map_err(|_| RecordError::Auth),
            Self::RustCrypto(k) => k
                .decrypt_inout_detached(&nonce.into(), aad, data.into(), &(*tag).into())
                .map_err(|_| RecordError::Auth),
        }
    }
}

#[inline]
fn additional_data(content_type: u8, epoch_seq: [u8; 8], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&epoch_seq);
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&DTLS_1_2);
    aad[11..13].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

#[inline]
fn epoch_seq(epoch: u16, sequence: u64) -> [u8; 8] {
    (u64::from(epoch) << 48 | sequence).to_be_bytes()
}

/// One record to seal in a batch: plaintext at `buf[RECORD_HEADROOM..][..len]`.
#[derive(Debug)]
pub struct SealItem<'a> {
    /// Buffer holding headroom, plaintext and room for the tag.
    pub buf: &'a mut [u8],
    /// Plaintext length.
    pub len: usize,
    /// Record length after sealing (0 if it was not sealed).
    pub record_len: usize,
}

/// Seals records of one epoch under one direction key.
pub struct RecordSealer {
    cipher: Cipher,
    salt: [u8; SALT_LEN],
    epoch: u16,
    next_sequence: u64,
}

impl std::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSealer")
            .field("epoch", &self.epoch)
            .field("next_sequence", &self.next_sequence)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// Expands `key` once; the first record gets `first_sequence`.
    pub fn new(backend: Backend, key: &DirectionKey, epoch: u16, first_sequence: u64) -> Self {
        Self {
            cipher: Cipher::new(backend, &key.key),
            salt: key.salt,
            epoch,
            next_sequence: first_sequence,
        }
    }

    /// The sequence number the next record gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Seals the `len` plaintext bytes at `buf[RECORD_HEADROOM..]` into a record at the front of
    /// `buf`; returns the record length.
    #[inline]
    pub fn seal(
        &mut self,
        content_type: u8,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, RecordError> {
        let record_len = RECORD_OVERHEAD + len;
        if buf.len() < record_len || len > usize::from(u16::MAX) - RECORD_OVERHEAD {
            return Err(RecordError::Buffer);
        }
        if self.next_sequence > MAX_SEQUENCE {
            return Err(RecordError::Exhausted);
        }
        let es = epoch_seq(self.epoch, self.next_sequence);
        self.next_sequence += 1;
        let fragment_len = (EXPLICIT_NONCE_LEN + len + TAG_LEN) as u16;
        buf[0] = content_type;
        buf[1..3].copy_from_slice(&DTLS_1_2);
        buf[3..11].copy_from_slice(&es);
        buf[11..13].copy_from_slice(&fragment_len.to_be_bytes());
        buf[RECORD_HEADER_LEN..RECORD_HEADROOM].copy_from_slice(&es);
        let mut nonce = [0u8; 12];
        nonce[..SALT_LEN].copy_from_slice(&self.salt);
        nonce[SALT_LEN..].copy_from_slice(&es);
        let aad = additional_data(content_type, es, len);
        let (body, tail) = buf[RECORD_HEADROOM..].split_at_mut(len);
        let tag = self.cipher.seal(nonce, &aad, body)?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        Ok(record_len)
    }

    /// Seals a batch of application-data records with one key schedule; stops at the first
    /// failure and returns how many were sealed.
    pub fn seal_batch(&mut self, items: &mut [SealItem<'_>]) -> Result<usize, RecordError> {
        for (i, item) in items.iter_mut().enumerate() {
            match self.seal(content::APPLICATION_DATA, item.buf, item.len) {
                Ok(n) => item.record_len = n,
                Err(e) => {
                    item.record_len = 0;
                    return if i == 0 { Err(e) } else { Ok(i) };
                }
            }
        }
        Ok(items.len())
    }
}

/// A record opened in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Content type.
    pub content_type: u8,
    /// Sequence number.
    pub sequence: u64,
    /// Where the plaintext now lies, relative to the record's start.
    pub plaintext: core::ops::Range<usize>,
}

const WINDOW_WORDS: usize = 64;

/// Sliding window over 48-bit record sequence numbers (RFC 6347 §4.1.2.6), 4,032 deep.
#[derive(Clone)]
pub struct SequenceWindow {
    next: u64,
    bits: [u64; WINDOW_WORDS],
}

impl Default for SequenceWindow {
    fn default() -> Self {
        Self {
            next: 0,
            bits: [0; WINDOW_WORDS],
        }
    }
}

impl SequenceWindow {
    /// How far behind the newest accepted sequence number a record may still arrive.
    pub const DEPTH: u64 = (WINDOW_WORDS as u64 - 1) * 64;

    #[inline]
    fn slot(seq: u64) -> (usize, u64) {
        ((seq / 64) as usize % WINDOW_WORDS, 1 << (seq % 64))
    }

    /// Whether `seq` may be accepted; changes nothing.
    #[inline]
    pub fn check(&self, seq: u64) -> bool {
        if seq >= self.next {
            return true;
        }
        if self.next - seq > Self::DEPTH {
            return false;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] & b == 0
    }

    /// Marks `seq` accepted, sliding forward when it is the newest.
    #[inline]
    pub fn mark(&mut self, seq: u64) {
        if seq >= self.next {
            if self.next > 0 {
                let from = (self.next - 1) / 64;
                let to = seq / 64;
                if to - from >= WINDOW_WORDS as u64 {
                    self.bits = [0; WINDOW_WORDS];
                } else {
                    for w in from + 1..=to {
                        self.bits[w as usize % WINDOW_WORDS] = 0;
                    }
                }
            }
            self.next = seq + 1;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] |= b;
    }
}

/// Opens records of one epoch under the peer's direction key.
pub struct RecordOpener {
    cipher: Cipher,
    salt: [u8; SALT_LEN],
    epoch: u16,
    window: SequenceWindow,
}

impl std::fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordOpener")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl RecordOpener {
    /// Expands the peer's `key` once.
    pub fn new(backend: Backend, key: &DirectionKey, epoch: u16) -> Self {
        Self {
            cipher: Cipher::new(backend, &key.key),
            salt: key.salt,
            epoch,
            window: SequenceWindow::default(),
        }
    }

    /// The epoch these keys belong to.
    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// Opens the record at the front of `buf` in place (`buf` may hold more records after
    /// it). Returns where the plaintext lies.
    #[inline]
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, RecordError> {
        let h = RecordHeader::parse(buf)?;
        self.open_parsed(&h, buf)
    }

    /// Opens a record whose header has been parsed already.
    #[inline]
    pub fn open_parsed(&mut self, h: &RecordHeader, buf: &mut [u8]) -> Result<Opened, RecordError> {
        if h.epoch != self.epoch {
            return Err(RecordError::Epoch(h.epoch));
        }
        let frag = usize::from(h.length);
        if frag < EXPLICIT_NONCE_LEN + TAG_LEN {
            return Err(RecordError::TooShort);
        }
        if !self.window.check(h.sequence) {
            return Err(RecordError::Replay);
        }
        let len = frag - EXPLICIT_NONCE_LEN - TAG_LEN;
        let mut nonce = [0u8; 12];
        nonce[..SALT_LEN].copy_from_slice(&self.salt);
        nonce[SALT_LEN..].copy_from_slice(&buf[RECORD_HEADER_LEN..RECORD_HEADROOM]);
        let aad = additional_data(h.content_type, epoch_seq(h.epoch, h.sequence), len);
        let (body, tail) = buf[RECORD_HEADROOM..RECORD_HEADROOM + len + TAG_LEN].split_at_mut(len);
        let tag: &[u8; TAG_LEN] = (&*tail).try_into().map_err(|_| RecordError::TooShort)?;
        self.cipher.open(nonce, &aad, body, tag)?;
        self.window.mark(h.sequence);
        Ok(Opened {
            content_type: h.content_type,
            sequence: h.sequence,
            plaintext: RECORD_HEADROOM..RECORD_HEADROOM + len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> DirectionKey {
        DirectionKey {
            key: [b; KEY_LEN],
            salt: [b ^ 0x5a; SALT_LEN],
        }
    }

    fn roundtrip(backend_seal: Backend, backend_open: Backend) {
        let k = key(7);
        let mut s = RecordSealer::new(backend_seal, &k, 1, 5);
        let mut o = RecordOpener::new(backend_open, &k, 1);
        let msg = b"one inner packet";
        let mut buf = [0u8; 128];
        buf[RECORD_HEADROOM..][..msg.len()].copy_from_slice(msg);
        let n = s
            .seal(content::APPLICATION_DATA, &mut buf, msg.len())
            .unwrap();
        assert_eq!(n, RECORD_OVERHEAD + msg.len());
        assert_ne!(&buf[RECORD_HEADROOM..][..msg.len()], msg);
        let h = RecordHeader::parse(&buf[..n]).unwrap();
        assert_eq!((h.epoch, h.sequence, h.record_len()), (1, 5, n));
        let opened = o.open(&mut buf[..n]).unwrap();
        assert_eq!(&buf[opened.plaintext], msg);
        assert_eq!(opened.sequence, 5);
    }

    #[test]
    fn backends_agree_both_ways() {
        roundtrip(Backend::AwsLc, Backend::AwsLc);
        roundtrip(Backend::AwsLc, Backend::RustCrypto);
        roundtrip(Backend::RustCrypto, Backend::AwsLc);
    }

    #[test]
    fn tampering_replay_and_epoch_are_rejected() {
        let k = key(9);
        let mut s = RecordSealer::new(Backend::AwsLc, &k, 1, 0);
        let mut o = RecordOpener::new(Backend::AwsLc, &k, 1);
        let mut a = [0u8; 64];
        let n = s.seal(content::APPLICATION_DATA, &mut a, 10).unwrap();
        let mut bad = a;
        bad[RECORD_HEADROOM + 3] ^= 1;
        assert_eq!(o.open(&mut bad[..n]), Err(RecordError::Auth));
        let mut good = a;
        o.open(&mut good[..n]).unwrap();
        let mut again = a;
        assert_eq!(o.open(&mut again[..n]), Err(RecordError::Replay));
        let mut other_epoch = a;
        other_epoch[4] = 2;
        assert_eq!(o.open(&mut other_epoch[..n]), Err(RecordError::Epoch(2)));
    }

    #[test]
    fn window_accepts_reordering_and_refuses_stale() {
        let mut w = SequenceWindow::default();
        w.mark(10_000);
        assert!(w.check(10_000 - 100));
        w.mark(10_000 - 100);
        assert!(!w.check(10_000 - 100));
        assert!(!w.check(10_000 - SequenceWindow::DEPTH - 1));
        assert!(w.check(20_000));
        w.mark(1 << 40);
        assert!(!w.check(10_000));
        assert!(w.check((1 << 40) - 5));
    }

    #[test]
    fn parser_survives_random_bytes() {
        use proptest::prelude::*;
        proptest!(|(mut bytes in proptest::collection::vec(any::<u8>(), 0..200))| {
            let mut o = RecordOpener::new(Backend::AwsLc, &key(1), 1);
            let _ = RecordHeader::parse(&bytes);
            prop_assert!(o.open(&mut bytes).is_err());
        });
    }
}
