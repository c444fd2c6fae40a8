//! Fuzz target: `conflux_shared::fuzz::handshake_accept`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::handshake_accept(data);
});
