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

/// The release and the git commit it was built from, as `hattrick --version` prints them: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HATTRICK_GIT_COMMIT"), ")");

/// The same, for the `hattrick_build_info` metric.
pub fn build_info() -> admin::BuildInfo {
    admin::BuildInfo { version: env!("CARGO_PKG_VERSION").to_owned(), commit: env!("HATTRICK_GIT_COMMIT").to_owned() }
}
