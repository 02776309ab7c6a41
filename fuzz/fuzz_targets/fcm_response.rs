//! FCM responses: status, `Retry-After` and body from arbitrary bytes (see `hattrick::fuzzing::fcm_response`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hattrick::fuzzing::fcm_response(data));
