//! `hattrick migrate`: create or update hattrick's schema on the app's database.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::Settings;

/// Options of `hattrick migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Report what would change and which rows violate a new constraint; change nothing.
    #[arg(long)]
    pub check: bool,
}

/// Plans the migration, prints it and applies it (unless `--check`).
pub async fn migrate(settings: &Settings, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let url = settings.database_url();
    let mut migrator = db::migrate::Migrator::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", db::redact_url(&url)))?
        .with_events(settings.events.enabled);
    let plan = migrator.plan().await.context("planning the migration")?;
    crate::out!("{plan}");
    if args.check || !plan.blockers.is_empty() {
        migrator.close().await.context("releasing the migration lock")?;
        return Ok(if plan.blockers.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let report = migrator.apply(&plan).await.context("applying the migration")?;
    migrator.close().await.context("releasing the migration lock")?;
    crate::outln!("applied {} step(s)", report.applied.len());
    for constraint in &report.left_not_valid {
        crate::outln!("left NOT VALID (rows violate it; fix them and run migrate again): {constraint}");
    }
    Ok(ExitCode::SUCCESS)
}
