//! The overlay: what turns the node's streams into a VPN with the data plane.
//!
//! [`Overlay`] is a sans-io state machine beside the node core. It takes the data plane's
//! reports (misses, tether states, stream activity), the node core's stream changes and
//! other nodes' signals, and hands out ring commands for the data plane, signals to send
//! and requests for the node core (set up, drop or rekey a stream). The driver
//! ([`crate::node::driver`]) carries them out; [`link`] owns the data plane process and its
//! rings.
//!
//! - **Streams on demand.** A packet to a peer's overlay address with no route is a miss;
//!   the overlay asks the core for an outbound stream (ML-KEM/ML-DSA handshake over NATS).
//!   When the peer accepts, it installs the inbound stream under a label it chose and,
//!   since replies are likely, asks for its own stream back.
//! - **Tethers on demand.** One tether per next-hop node, shared by every stream through
//!   it: an offer/answer signal exchange (ICE credentials, DTLS fingerprint, candidates),
//!   signed with ML-DSA; the node with the smaller id wins when two offers cross.
//! - **Routes.** The first packet builds a route at once: direct when the tether to the
//!   destination comes up, otherwise through a relay. Then the router ([`crate::route`],
//!   cooperative Q-routing fed by tether telemetry and neighbours' estimates) decides:
//!   one or several weighted paths per destination, set up hop by hop with route messages
//!   and spread over by flow hash; a failed tether moves traffic to the next-best path;
//!   geo policy excludes or prefers relay regions. Each hop picks the label it receives
//!   on; relays swap labels without the stream key.
//! - **Rekey.** A stream that is in use gets a fresh handshake every rekey interval; the
//!   new key takes the other key epoch, and the receiver installs it before answering, so
//!   nothing is dropped at the switch.
//! - **Idle.** A stream that moved nothing for the idle timeout is dropped on each end by
//!   its own node; a route goes with its stream, a tether with its last user.

mod candidates;
mod core;
mod exit;
pub mod link;
mod path;
mod route;
mod routing;
pub mod signal;
mod tether;

#[cfg(test)]
mod tests;

pub use self::core::{
    Action, Adopted, Command, Directory, Overlay, OverlayConfig, OverlayStatus, RouteView,
    TetherView,
};
