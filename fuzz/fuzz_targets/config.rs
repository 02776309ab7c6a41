//! Configuration files on arbitrary TOML text (see `hattrick::fuzzing::config`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hattrick::fuzzing::config(data));
