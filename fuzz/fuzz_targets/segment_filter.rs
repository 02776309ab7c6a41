//! The campaign segment filter compiler on arbitrary JSON (see `domain::segment::fuzz_compile`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| domain::segment::fuzz_compile(data));
