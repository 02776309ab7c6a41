//! The hattrick binary's library half: configuration, the job catalogue and the seed generator, shared by
//! `main.rs` and the integration tests.

pub mod catalog;
pub mod config;
pub mod seed;
