//! The binary and its wiring: the admin API and page, the command line, configuration, events, push, the seed, the demo, chaos, the fuzz corpora.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod admin_api;
mod admin_browser;
mod chaos;
mod cli;
mod common;
mod config;
mod demo;
mod events;
mod fuzz_corpora;
mod push_delivery;
mod seeding;
