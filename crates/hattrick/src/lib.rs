//! The hattrick binary's library half: configuration, the job catalogue and the seed generator, shared by
//! `main.rs` and the integration tests.

pub mod app;
pub mod catalog;
pub mod commands;
pub mod config;
pub mod demo;
pub mod fuzzing;
pub mod output;
pub mod push_commands;
pub mod seed;
