//! `guardian`: the Conflux authentication service.

fn main() {}
