//! Conflux control plane: Guardian, the node's control process and the operator CLI.
#![warn(missing_docs, unreachable_pub)]

pub mod ctl;
pub mod guardian;
pub mod node;
pub mod overlay;
pub mod route;
