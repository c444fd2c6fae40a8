//! Fuzz target: `conflux_shared::fuzz::ring_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::ring_frame(data);
});
