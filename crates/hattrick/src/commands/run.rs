//! `hattrick run`: one job once now, with its report and exit code.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::Args;
use serde::Serialize;

use super::{EXIT_RUNNING, EXIT_USAGE};
use crate::config::Settings;
use crate::startup;
use engine::metrics::Outcome;
use engine::runner::ManualError;
use engine::{Clock, RunArgs};

/// Options of `hattrick run`.
#[derive(Debug, Args)]
pub struct RunCommandArgs {
    /// The job to run (see `hattrick jobs`).
    pub job: String,
    /// Run as if now were this RFC 3339 instant (e.g. 2026-03-10T22:00:00+03:00).
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub at: Option<DateTime<Utc>>,
    /// Compute and report what the job would do; write nothing at all.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Grant without enqueueing any push: a back-fill of old eligibility (docs/jobs/README.md).
    #[arg(long)]
    pub silent: bool,
    /// Allow --at more than a day away from now.
    #[arg(long)]
    pub force: bool,
    /// First day of a backfill (jobs that work by day).
    #[arg(long, value_name = "DATE", requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last day of a backfill, inclusive.
    #[arg(long, value_name = "DATE", requires = "from")]
    pub to: Option<NaiveDate>,
}

pub(super) fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}: expected an RFC 3339 instant such as 2026-03-10T22:00:00+03:00"))
}

#[derive(Debug, Serialize)]
struct RunLine<'a> {
    job: &'a str,
    run_id: String,
    outcome: &'static str,
    duration_ms: u128,
    dry_run: bool,
    items: Option<i64>,
    details: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
}

/// Runs one job once now (trigger `manual`) and prints its report. Exit codes: 0 success, 1 the job failed or
/// was interrupted (SIGTERM or SIGINT: the run is recorded `interrupted`), 2 unknown job, 3 already running.
pub async fn run(settings: &Settings, args: RunCommandArgs) -> anyhow::Result<ExitCode> {
    let clock = match args.at {
        Some(at) => {
            let real_now = Clock::system().now();
            if (at - real_now).abs() > TimeDelta::days(1) && !args.force {
                anyhow::bail!("--at {at} is more than a day from now; add --force if you mean it");
            }
            Clock::fixed(at)
        }
        None => startup::clock_from_env()?,
    };
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        eprintln!("error: --from {from} is after --to {to}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let registry_names = crate::registry::registry(settings)?.names();
    if !registry_names.contains(&args.job) {
        eprintln!("error: unknown job {:?}; valid jobs: {}", args.job, registry_names.join(", "));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let definitions = if args.dry_run { startup::Definitions::ReadOnly } else { startup::Definitions::Sync };
    let engine = startup::engine(settings, clock, definitions).await?;
    let run_args = RunArgs { dry_run: args.dry_run, silent: args.silent, from: args.from, to: args.to };
    // SIGTERM or SIGINT ends the run `interrupted` (recorded, its SQL cancelled), so it can be run again at once.
    let result = match engine.run_manual_until(&args.job, run_args, super::stop_on_signal()).await {
        Ok(result) => result,
        Err(ManualError::AlreadyRunning(job)) => {
            eprintln!("error: {job} is already running; try again when it has finished");
            return Ok(ExitCode::from(EXIT_RUNNING));
        }
        Err(ManualError::Unknown(job)) => {
            eprintln!("error: unknown job {job:?}; valid jobs: {}", registry_names.join(", "));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(ManualError::Sql(e)) => return Err(e.into()),
    };
    let line = RunLine {
        job: &result.job,
        run_id: result.run_id.to_string(),
        outcome: result.outcome.as_str(),
        duration_ms: result.duration.as_millis(),
        dry_run: args.dry_run,
        items: result.report.as_ref().map(|r| r.items),
        details: result.report.as_ref().map(|r| &r.details),
        error: result.error.as_deref(),
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&line)?);
    } else {
        crate::outln!(
            "{} {}{} in {:.1} s",
            line.job,
            line.outcome,
            if args.dry_run { " (dry run: nothing written)" } else { "" },
            Duration::from_millis(u64::try_from(line.duration_ms).unwrap_or(u64::MAX)).as_secs_f64()
        );
        if let Some(items) = line.items {
            crate::outln!("items: {items}");
        }
        if let Some(details) = line.details {
            crate::outln!("details: {}", serde_json::to_string_pretty(details)?);
        }
        if let Some(error) = line.error {
            crate::outln!("error: {error}");
        }
    }
    Ok(if result.outcome == Outcome::Success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
