//! The hattrick binary's library half: configuration, the job table, start-up and the commands, shared by
//! `main.rs` and the integration tests.

pub mod application;
pub mod commands;
pub mod config;
pub mod output;
pub mod registry;
pub mod startup;

/// The release and the git commit it was built from, as `hattrick --version` prints them: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HATTRICK_GIT_COMMIT"), ")");

/// The same, for the `hattrick_build_info` metric.
pub fn build_info() -> admin::BuildInfo {
    admin::BuildInfo { version: env!("CARGO_PKG_VERSION").to_owned(), commit: env!("HATTRICK_GIT_COMMIT").to_owned() }
}
