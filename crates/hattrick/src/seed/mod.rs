//! `hattrick seed`: a realistic synthetic population.

use std::process::ExitCode;

use clap::Args;

use crate::config::Settings;

/// Options of `hattrick seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many users to create.
    #[arg(long)]
    pub users: u64,
    /// Seed of the generator: the same seed gives the same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seed even if the database already holds users.
    #[arg(long)]
    pub force: bool,
}

/// Runs `hattrick seed`.
pub async fn run(_settings: &Settings, _args: SeedArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
