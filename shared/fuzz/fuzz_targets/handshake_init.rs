//! Fuzz target: `conflux_shared::fuzz::handshake_init`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::handshake_init(data);
});
