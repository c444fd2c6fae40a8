//! A stream's symmetric key material, as the handshake derives it and the data plane uses it.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// AES-256-GCM key length in bytes.
pub const KEY_LEN: usize = 32;
/// AES-GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

/// One direction's key and nonce base; zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct StreamKey {
    /// The AES-256-GCM key.
    pub key: [u8; KEY_LEN],
    /// XORed with (lane ‖ counter) to make each packet's nonce.
    pub nonce_base: [u8; NONCE_LEN],
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let k = StreamKey {
            key: [0xab; KEY_LEN],
            nonce_base: [0xcd; NONCE_LEN],
        };
        let s = format!("{k:?}");
        assert!(
            !s.contains("ab") && !s.contains("171") && !s.contains("cd"),
            "{s}"
        );
    }
}
