//! Badge unlock conditions on arbitrary JSON (see `hattrick::fuzzing::badge_condition`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hattrick::fuzzing::badge_condition(data));
