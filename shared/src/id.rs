//! Identifiers: nodes, streams and per-hop labels.

use std::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A per-hop label, chosen by the receiving hop; it names a stream ending there or a relay entry.
pub type Label = u32;

/// A sending worker's lane of a stream's sequence space (DESIGN §4).
pub type Lane = u8;

macro_rules! hex_id {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
        #[repr(transparent)]
        pub struct $t(pub [u8; 16]);

        impl $t {
            /// A fresh random identifier from the operating system's CSPRNG.
            pub fn random() -> Self {
                let mut b = [0u8; 16];
                getrandom::fill(&mut b).expect("the OS random source is unavailable");
                Self(b)
            }

            /// The identifier as 32 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 32 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                let mut b = [0u8; 16];
                hex::decode_to_slice(s, &mut b).map_err(|_| IdError::BadHex)?;
                Ok(Self(b))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.to_hex())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

hex_id!(
    /// A node's stable identity within a realm (bound to its conflux token by Guardian).
    NodeId
);
hex_id!(
    /// A uni-directional stream, chosen at random by its source node.
    StreamId
);

/// Why an identifier could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not exactly 32 hex digits.
    #[error("identifier must be 32 hex digits")]
    BadHex,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = NodeId::random();
        assert_eq!(NodeId::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(NodeId::from_hex("xyz"), Err(IdError::BadHex));
        assert_eq!(StreamId::from_hex(&"0".repeat(31)), Err(IdError::BadHex));
    }
}
