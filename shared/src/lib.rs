//! Conflux shared core: what the control process and the data plane both speak.
//!
//! - [`wire`]: zero-copy views of every byte format that crosses a process or the network
//!   (data header, handshake messages, route set-up, ring records). Parsers take untrusted
//!   bytes and return a typed error; none panics.
//! - [`ring`]: single-producer single-consumer rings over `memfd` + `mmap` that connect the
//!   control process and the data plane, with fd passing over a Unix socket.
//! - [`crypto`]: node identity (ML-DSA-65, ML-KEM-768), the stream handshake, batched
//!   in-place AES-256-GCM and the replay window.
//! - [`taint`]: realm and taint rules that decide which nodes may talk.
//! - [`id`]: node, stream and label identifiers.
//! - [`proto`]: protobuf messages of the control plane (`shared/proto/conflux.proto`).
//! - [`cert`]: node certificates signed by Guardian, and their verification.
#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cert;
pub mod crypto;
pub mod fuzz;
pub mod id;
pub mod proto;
pub mod ring;
pub mod taint;
pub mod wire;
