//! `hattrick seed`: a synthetic population in a migrated database.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::Settings;
use seed::{SeedOptions, seed_database};

/// Options of `hattrick seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many users to create (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub users: u64,
    /// Seed of the generator: the same seed and number of users give the same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seed even if the database already holds users (the new population is added to them).
    #[arg(long)]
    pub force: bool,
}

/// Runs `hattrick seed`: seeds `DATABASE_URL` and prints the summary.
pub async fn run(settings: &Settings, args: SeedArgs) -> anyhow::Result<ExitCode> {
    let business_zone = engine::schedule::parse_time_zone(&settings.time.business_zone)
        .map_err(|e| anyhow::anyhow!("time.business_zone: {e}"))?;
    let app_day_zone = match &settings.time.app_day_zone {
        Some(zone) => {
            Some(engine::schedule::parse_time_zone(zone).map_err(|e| anyhow::anyhow!("time.app_day_zone: {e}"))?)
        }
        None => None,
    };
    let daily_reward_credits: [i64; 7] = settings
        .rewards
        .daily_reward_credits
        .as_slice()
        .try_into()
        .context("rewards.daily_reward_credits must list 7 amounts")?;
    let options = SeedOptions {
        users: args.users,
        seed: args.seed,
        force: args.force,
        progress: true,
        business_zone,
        app_day_zone,
        daily_reward_credits,
        now: Some(crate::startup::clock_from_env()?.now()),
    };
    let url = settings.database_url();
    let report = seed_database(&url, &options).await?;
    crate::out!("{report}");
    Ok(ExitCode::SUCCESS)
}
