//! FCM responses: status, `Retry-After` and body from arbitrary bytes (see `push::outcome::fuzz_classify`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| push::outcome::fuzz_classify(data));
