//! Fuzz target: `conflux_shared::fuzz::ring_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::ring_header(data);
});
