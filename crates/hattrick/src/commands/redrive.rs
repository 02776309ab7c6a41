//! `hattrick redrive pushes|runs`: failed pushes sent again, failed runs run again (docs/push.md "Redrive"),
//! each recorded in the audit log under `cli:$USER`.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use domain::redrive::{PushRedrive, RunRedrive};
use engine::metrics::Outcome;
use engine::runner::ManualError;
use uuid::Uuid;

use super::{actor, usage};
use crate::config::Settings;
use crate::startup;

/// `hattrick redrive ...`
#[derive(Debug, Subcommand)]
pub enum RedriveCommand {
    /// Send failed pushes again: every failed outbox row matching all the options given goes back to the queue,
    /// due now, for the dispatchers of `hattrick serve` to send.
    ///
    /// Each of the user's live devices that has not had the push gets it; pushes whose devices all died, and
    /// pushes past their lifetime, stay failed and are counted.
    Pushes(PushesArgs),
    /// Run again, now and in this process, the jobs whose failed runs match all the options given (once per job).
    ///
    /// Exit codes: 0 every run succeeded (or none matched), 1 a run failed, 2 invalid options.
    Runs(RunsArgs),
}

/// Options of `hattrick redrive pushes`.
#[derive(Debug, Args)]
pub struct PushesArgs {
    /// An outbox row (repeat for several).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
    /// Pushes of this campaign.
    #[arg(long, value_name = "UUID")]
    pub campaign: Option<Uuid>,
    /// Pushes whose last FCM error is this code (UNAVAILABLE, INTERNAL, ...).
    #[arg(long, value_name = "CODE")]
    pub error: Option<String>,
    /// Pushes written at or after this RFC 3339 instant.
    #[arg(long, value_name = "TIME", value_parser = super::run::parse_instant)]
    pub from: Option<DateTime<Utc>>,
    /// Pushes written before this RFC 3339 instant.
    #[arg(long, value_name = "TIME", value_parser = super::run::parse_instant)]
    pub to: Option<DateTime<Utc>>,
}

/// Options of `hattrick redrive runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// A failed run (repeat for several).
    #[arg(long = "id", value_name = "UUID")]
    pub ids: Vec<Uuid>,
    /// Failed runs of this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Runs started at or after this RFC 3339 instant.
    #[arg(long, value_name = "TIME", value_parser = super::run::parse_instant)]
    pub from: Option<DateTime<Utc>>,
    /// Runs started before this RFC 3339 instant.
    #[arg(long, value_name = "TIME", value_parser = super::run::parse_instant)]
    pub to: Option<DateTime<Utc>>,
}

/// Runs `hattrick redrive ...`.
pub async fn redrive(settings: &Settings, command: RedriveCommand) -> anyhow::Result<ExitCode> {
    match command {
        RedriveCommand::Pushes(args) => pushes(settings, args).await,
        RedriveCommand::Runs(args) => runs(settings, args).await,
    }
}

async fn pushes(settings: &Settings, args: PushesArgs) -> anyhow::Result<ExitCode> {
    let filter =
        PushRedrive { ids: args.ids, campaign_id: args.campaign, error: args.error, from: args.from, to: args.to };
    let problems = filter.problems();
    if !problems.is_empty() {
        return Ok(usage(&problems));
    }
    let pool = startup::pool(settings).await?;
    startup::require_schema(&pool).await?;
    let now = startup::clock_from_env()?.now();
    let done = admin::actions::audited_push_redrive(&pool, &actor(), None, &filter, now).await?;
    crate::outln!(
        "{} failed push(es) queued again; left failed: {} without a live device, {} past their lifetime{}",
        done.redriven,
        done.no_live_device,
        done.expired,
        if done.campaigns_reopened > 0 {
            format!("; {} campaign(s) reopened", done.campaigns_reopened)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn runs(settings: &Settings, args: RunsArgs) -> anyhow::Result<ExitCode> {
    let filter = RunRedrive { ids: args.ids, job: args.job, from: args.from, to: args.to };
    let problems = filter.problems();
    if !problems.is_empty() {
        return Ok(usage(&problems));
    }
    let engine = startup::engine(settings, startup::clock_from_env()?, startup::Definitions::Sync).await?;
    let failed = domain::redrive::failed_runs(engine.pool(), &filter).await?;
    if failed.is_empty() {
        crate::outln!("no failed run matches: nothing to run again");
        return Ok(ExitCode::SUCCESS);
    }
    let actor = actor();
    let now = engine.clock().now();
    let mut tx = engine.pool().begin().await?;
    let entry = admin::audit::Entry {
        actor: &actor,
        action: "run.redrive",
        target: failed.iter().map(|r| r.job.as_str()).collect::<Vec<_>>().join(","),
        details: serde_json::json!({ "filter": filter, "failed_runs": failed.iter().map(|r| r.run_id).collect::<Vec<_>>() }),
        request_id: None,
    };
    admin::audit::record(&mut tx, &entry, now).await?;
    tx.commit().await?;
    let mut all_succeeded = true;
    let stop = super::stop_on_signal();
    for run in failed {
        if stop.is_cancelled() {
            crate::outln!("{} (failed run {}): not run again, stopped by a signal", run.job, run.run_id);
            all_succeeded = false;
            continue;
        }
        match engine.run_manual_until(&run.job, engine::RunArgs::default(), stop.clone()).await {
            Ok(result) => {
                all_succeeded &= result.outcome == Outcome::Success;
                let error = result.error.map(|e| format!(": {e}")).unwrap_or_default();
                crate::outln!(
                    "{} (failed run {}) run again as {}: {}{error}",
                    run.job,
                    run.run_id,
                    result.run_id,
                    result.outcome.as_str()
                );
            }
            Err(ManualError::AlreadyRunning(job)) => crate::outln!("{job} is running now: not started again"),
            Err(ManualError::Unknown(job)) => crate::outln!("{job} is not a job of this binary: skipped"),
            Err(ManualError::Sql(e)) => return Err(e.into()),
        }
    }
    Ok(if all_succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
