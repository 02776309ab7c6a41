//! `hattrick jobs`: every job with its schedule, next fire times and last run.

use std::process::ExitCode;

use clap::Args;

use crate::config::Settings;
use crate::startup;

/// Options of `hattrick jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists every job: schedule, zone, state, next three fire times in local time and UTC, last run (the same
/// view as `GET /admin/jobs`).
pub async fn jobs(settings: &Settings, args: JobsArgs) -> anyhow::Result<ExitCode> {
    let clock = startup::clock_from_env()?;
    let engine = startup::engine(settings, clock.clone(), startup::Definitions::Sync).await?;
    let lines = admin::data::jobs(&engine, engine.pool(), clock.now()).await?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(ExitCode::SUCCESS);
    }
    for line in &lines {
        crate::outln!(
            "{}  [{}]  {}  ({}, misfire {})",
            line.name,
            line.state,
            line.schedule,
            line.timezone,
            line.misfire
        );
        for (local, utc) in line.next_runs_local.iter().zip(&line.next_runs) {
            crate::outln!("    next  {local}  =  {}", utc.format("%Y-%m-%d %H:%M UTC"));
        }
        match &line.last_run {
            Some(run) => crate::outln!(
                "    last  {} {} at {} ({} ms, {} items)",
                run.status,
                run.trigger.as_deref().unwrap_or("-"),
                run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                run.duration_ms.unwrap_or(0),
                run.items_processed.unwrap_or(0)
            ),
            None => crate::outln!("    last  never"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
