//! Cryptography: node identity, the stream handshake, batched AES-256-GCM, replay window.

pub mod aead;
pub mod handshake;
pub mod identity;
pub mod key;
pub mod replay;
