//! Protobuf messages of package `conflux.v1`, generated from `shared/proto/conflux.proto`.
//!
//! Decoding untrusted bytes goes through [`prost::Message::decode`], which returns an error
//! and never panics. The gRPC client and server of the local API exist with the `grpc`
//! feature.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/conflux.v1.rs"));
