//! The campaign segment filter compiler on arbitrary JSON (see `hattrick::fuzzing::segment_filter`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hattrick::fuzzing::segment_filter(data));
