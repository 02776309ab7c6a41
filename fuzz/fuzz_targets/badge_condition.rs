//! Badge unlock conditions on arbitrary JSON (see `domain::conditions::fuzz_parse`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| domain::conditions::fuzz_parse(data));
