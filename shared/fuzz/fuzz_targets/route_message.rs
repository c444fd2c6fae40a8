//! Fuzz target: `conflux_shared::fuzz::route_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::route_message(data);
});
