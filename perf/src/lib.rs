//! Conflux end-to-end performance: the side-by-side harness that measures Conflux against
//! the bare veth path and other tunnels in network namespaces.
#![warn(missing_docs, unreachable_pub)]

pub mod harness;
pub mod sim;
