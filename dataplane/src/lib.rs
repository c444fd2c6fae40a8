//! Conflux data plane: the process that moves every packet (DESIGN §1, §3).
//!
//! - [`egress`], [`ingress`], [`relay`]: the packet paths, as sans-io functions over
//!   batches of packet buffers, so the worker loop and the tests drive the same code.
//! - [`table`]: what each worker looks up per packet (streams, routes, relay entries,
//!   tethers, allowed inner sources, policy), filled from the control ring.
//! - [`packet`]: inner IP packet views and the flow hash.
//! - [`vnet`]: the TUN queue's virtio-net header, GSO segmentation and coalescing.
//! - [`counters`]: per-worker drop counters and traffic totals.
//! - [`hop`]: how sealed packets become datagrams for a next hop: plain, or WebRTC tethers
//!   ([`tether`], the sans-io ICE + DTLS + SCTP core) opened by the control process.
//! - [`worker`]: the io_uring loop that drives all of the above; [`control`]: its rings
//!   and the socket a control process attaches through; [`driver`] and [`static_config`]:
//!   a static control process for tests and first deployments.
#![warn(missing_docs, unreachable_pub)]

pub mod buffer;
pub mod control;
pub mod counters;
pub mod driver;
pub mod egress;
pub mod hop;
pub mod ingress;
pub mod packet;
pub mod relay;
pub mod static_config;
pub mod stun;
pub mod table;
pub mod tether;
pub mod tun;
pub mod udp;
pub mod vnet;
pub mod worker;
