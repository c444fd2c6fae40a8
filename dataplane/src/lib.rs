//! Conflux data plane: the process that moves every packet (DESIGN §1, §3).
#![warn(missing_docs, unreachable_pub)]

pub mod tether;
