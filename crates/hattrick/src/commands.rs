//! `hattrick serve`, `hattrick jobs` and `hattrick run`.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::Args;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Settings;
use engine::metrics::Outcome;
use engine::runner::ManualError;
use engine::{Clock, RunArgs, store};

/// Exit code of `hattrick run` for an unknown job (and of usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `hattrick run` when the job is already running.
pub const EXIT_RUNNING: u8 = 3;

/// Options of `hattrick serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Do not run the outbox dispatcher in this instance (overrides push.dispatcher).
    #[arg(long)]
    pub no_dispatcher: bool,
}

/// Runs the scheduler and the outbox dispatcher until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(settings: &Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let clock = app::clock_from_env()?;
    let engine = app::engine(settings, clock.clone(), app::Definitions::Sync).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        on_signal.cancel();
    });
    let dispatcher = if settings.push.dispatcher && !args.no_dispatcher {
        let transport = app::transport(settings)?;
        tracing::info!(transport = transport.name(), "outbox dispatcher on");
        let dispatcher = push::Dispatcher::new(engine.pool().clone(), transport, app::dispatcher_settings(settings)?);
        let stop = shutdown.clone();
        Some(tokio::spawn(async move { dispatcher.run(stop, move || clock.now()).await }))
    } else {
        None
    };
    tracing::info!(instance = engine.settings().instance, jobs = ?engine.registry().names(), "hattrick serving");
    engine.run_until_stopped(shutdown).await;
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Options of `hattrick jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct JobLine {
    name: String,
    schedule: String,
    timezone: String,
    state: &'static str,
    misfire: String,
    next_runs_local: Vec<String>,
    next_runs_utc: Vec<DateTime<Utc>>,
    last_run: Option<LastRun>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct LastRun {
    status: String,
    trigger: Option<String>,
    started_at: DateTime<Utc>,
    duration_ms: Option<i32>,
    items_processed: Option<i32>,
}

/// Lists every job: schedule, zone, state, next three fire times in local time and UTC, last run.
pub async fn jobs(settings: &Settings, args: JobsArgs) -> anyhow::Result<ExitCode> {
    let clock = app::clock_from_env()?;
    let engine = app::engine(settings, clock.clone(), app::Definitions::Sync).await?;
    let pool = app::pool(settings).await?;
    let now = clock.now();
    let mut lines = Vec::new();
    for stored in store::load_jobs(&pool).await? {
        let definition = &stored.definition;
        if !engine.registry().contains(&definition.name) {
            continue;
        }
        let zone = definition.schedule.zone();
        let next: Vec<DateTime<Utc>> = definition.schedule.fire_times(now, now + TimeDelta::days(400), 3);
        let last_run: Option<LastRun> = sqlx::query_as(
            "SELECT status, trigger, started_at, duration_ms, items_processed FROM job_execution_logs
             WHERE job_name = $1 AND status <> 'skipped' ORDER BY started_at DESC LIMIT 1",
        )
        .bind(&definition.name)
        .fetch_optional(&pool)
        .await?;
        lines.push(JobLine {
            name: definition.name.clone(),
            schedule: definition.schedule.expression().to_owned(),
            timezone: zone.name().to_owned(),
            state: match (definition.enabled, definition.paused) {
                (false, _) => "disabled",
                (true, true) => "paused",
                (true, false) => "active",
            },
            misfire: definition.misfire.to_string(),
            next_runs_local: next
                .iter()
                .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string())
                .collect(),
            next_runs_utc: next,
            last_run,
        });
    }
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
        for (local, utc) in line.next_runs_local.iter().zip(&line.next_runs_utc) {
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
    /// Grant without enqueueing any push: a back-fill of old eligibility (SPEC 10.12).
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

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
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

/// Runs one job once now (trigger `manual`) and prints its report. Exit codes: 0 success, 1 the job failed,
/// 2 unknown job, 3 already running.
pub async fn run(settings: &Settings, args: RunCommandArgs) -> anyhow::Result<ExitCode> {
    let clock = match args.at {
        Some(at) => {
            let real_now = Clock::system().now();
            if (at - real_now).abs() > TimeDelta::days(1) && !args.force {
                anyhow::bail!("--at {at} is more than a day from now; add --force if you mean it");
            }
            Clock::fixed(at)
        }
        None => app::clock_from_env()?,
    };
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        eprintln!("error: --from {from} is after --to {to}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let registry_names = app::registry(settings)?.names();
    if !registry_names.contains(&args.job) {
        eprintln!("error: unknown job {:?}; valid jobs: {}", args.job, registry_names.join(", "));
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let definitions = if args.dry_run { app::Definitions::ReadOnly } else { app::Definitions::Sync };
    let engine = app::engine(settings, clock, definitions).await?;
    let run_args = RunArgs { dry_run: args.dry_run, silent: args.silent, from: args.from, to: args.to };
    let result = match engine.run_manual(&args.job, run_args).await {
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

/// `hattrick ledger ...`
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Report users whose balances differ from their ledgers (the app wrote a balance without a ledger row).
    ///
    /// Exit code 0 when every balance matches its ledger, 1 when some drift.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many drifted users to list.
        #[arg(long, default_value_t = 20)]
        sample: i64,
    },
    /// Write one opening-balance row per drifted user so every balance equals its ledger (run once at cut-over,
    /// after `ledger check`). Without --yes it only says what it would write.
    Open {
        /// Write the rows.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `hattrick ledger check` or `hattrick ledger open`.
pub async fn ledger(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let pool = app::pool(settings).await?;
    app::require_schema(&pool).await?;
    match command {
        LedgerCommand::Check { json, sample } => {
            let drift = rewards::ledger::drift(&pool, sample).await?;
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&drift)?);
            } else {
                crate::outln!(
                    "credits: {} user(s) drift, balances exceed their ledgers by {} in total",
                    drift.credit_users,
                    drift.credit_difference
                );
                crate::outln!(
                    "xp: {} user(s) drift, XP exceeds the ledgers by {} in total",
                    drift.xp_users,
                    drift.xp_difference
                );
                for (user, ledger, balance, total) in &drift.sample {
                    crate::outln!("  {user}  {ledger}: balance {balance}, ledger {total}");
                }
            }
            Ok(if drift.credit_users + drift.xp_users == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        LedgerCommand::Open { yes } => {
            let drift = rewards::ledger::drift(&pool, 0).await?;
            if !yes {
                crate::outln!(
                    "would write {} credit and {} XP opening-balance row(s); nothing written: add --yes to write them",
                    drift.credit_users,
                    drift.xp_users
                );
                return Ok(ExitCode::FAILURE);
            }
            let (credits, xp) = rewards::ledger::open_balances(&pool, app::clock_from_env()?.now()).await?;
            crate::outln!("wrote {credits} credit and {xp} XP opening-balance row(s)");
            Ok(ExitCode::SUCCESS)
        }
    }
}
