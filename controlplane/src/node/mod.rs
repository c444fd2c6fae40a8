//! The node's control process (`conflux`).
//!
//! A sans-io core ([`core::Node`]) holds the node's state: its certificate, the peers it
//! trusts, the streams it has set up, and the counters of what it ignored. It never reads
//! the clock or touches a socket; a thin tokio driver ([`driver`]) owns the NATS client,
//! the timers, the Guardian client and the local API, feeds the core with `handle_*` calls
//! and carries out what `poll_output` returns.
//!
//! - [`config`]: TOML file plus flags.
//! - [`credentials`]: `credentials.json` (node id, conflux token, refresh JWT; 0600).
//! - [`register`]: Guardian's HTTP API from the node's side.
//! - [`nats`]: NATS subjects and the connection.
//! - [`trust`], [`presence`], [`policy`], [`handshake`], [`peers`]: what the core checks
//!   and keeps.
//! - [`ratelimit`], [`counters`]: how untrusted input is bounded and accounted for.
//! - [`api`]: the local API server (`conflux.v1.Control` over a Unix socket).

pub mod api;
pub mod config;
pub mod core;
pub mod counters;
pub mod credentials;
pub mod driver;
pub mod gateway;
pub mod handshake;
pub mod nats;
pub mod peers;
pub mod policy;
pub mod presence;
pub mod ratelimit;
pub mod register;
pub mod trust;
