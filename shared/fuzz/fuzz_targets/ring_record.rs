//! Fuzz target: `conflux_shared::fuzz::ring_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conflux_shared::fuzz::ring_record(data);
});
