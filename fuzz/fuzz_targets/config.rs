//! Configuration files on arbitrary TOML text (see `hattrick::config::fuzz_from_toml`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hattrick::config::fuzz_from_toml(data));
