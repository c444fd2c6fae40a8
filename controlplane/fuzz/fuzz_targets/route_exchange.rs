//! Fuzz target: `conflux_controlplane::route::exchange::decode` (see `../entry.rs`).
#![no_main]

#[path = "../entry.rs"]
mod entry;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    entry::route_exchange(data);
});
