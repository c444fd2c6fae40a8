//! Fuzz target: `conflux_shared::fuzz::data_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::data_packet(data);
});
