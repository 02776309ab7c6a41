//! What a job is to the engine: a name, a definition (schedule and policies) and a function from a context to a
//! report.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use db::Pool;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::policy::MisfirePolicy;
use crate::schedule::Schedule;
use crate::{Clock, schedule};

/// Why a run started (the run log's `trigger` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its schedule fired.
    Schedule,
    /// An operator asked (CLI or admin API).
    Manual,
    /// A tick missed during downtime, run under the misfire policy.
    Catchup,
    /// An app write woke it (incremental evaluation).
    Event,
    /// A failed or abandoned attempt of a tick, run again.
    Retry,
}

impl Trigger {
    /// The value stored in the run log.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Catchup => "catchup",
            Trigger::Event => "event",
            Trigger::Retry => "retry",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's name and the schedule and policies it runs with unless configuration says otherwise. Each job declares
/// its own, beside its code; configuration overrides them into a [`JobDefinition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDefaults {
    /// The job's name, as used in configuration, the CLI, the run log and as the topic of its event runs.
    pub name: &'static str,
    /// 5-field cron, read in the business zone.
    pub schedule: &'static str,
    /// What to do about ticks missed during downtime.
    pub misfire: MisfirePolicy,
    /// How long one run may take before it is cancelled.
    pub timeout: Duration,
}

impl JobDefaults {
    /// Defaults with a timeout of `timeout_minutes`.
    pub const fn new(name: &'static str, schedule: &'static str, misfire: MisfirePolicy, timeout_minutes: u64) -> Self {
        Self { name, schedule, misfire, timeout: Duration::from_secs(timeout_minutes * 60) }
    }
}

/// A job's schedule and policies, as stored in `hattrick_jobs` and followed by every instance.
#[derive(Debug, Clone)]
pub struct JobDefinition {
    /// The job's name.
    pub name: String,
    /// When it fires, and in which zone.
    pub schedule: Schedule,
    /// What happens to ticks missed during downtime.
    pub misfire: MisfirePolicy,
    /// A run taking longer is cancelled, its SQL included.
    pub timeout: Duration,
    /// How many times a failed tick is run again.
    pub retries: u32,
    /// Delay before the first retry; doubled for each next one.
    pub retry_backoff: Duration,
    /// A disabled job is never scheduled and records nothing.
    pub enabled: bool,
    /// A paused job records its ticks as `paused` and runs none of them.
    pub paused: bool,
}

impl JobDefinition {
    /// A definition with the engine's defaults: 10-minute timeout, 3 retries 30 s apart (doubling), enabled.
    pub fn new(
        name: &str,
        schedule: &str,
        zone: &str,
        misfire: MisfirePolicy,
    ) -> Result<Self, schedule::ScheduleError> {
        let zone = schedule::parse_time_zone(zone)?;
        Ok(Self {
            name: name.to_owned(),
            schedule: Schedule::new(schedule, zone)?,
            misfire,
            timeout: Duration::from_secs(600),
            retries: 3,
            retry_backoff: Duration::from_secs(30),
            enabled: true,
            paused: false,
        })
    }

    /// The delay before attempt `next_attempt` (2 is the first retry).
    pub fn backoff_before(&self, next_attempt: i32) -> Duration {
        let doublings = u32::try_from(next_attempt.saturating_sub(2)).unwrap_or(0).min(16);
        self.retry_backoff.saturating_mul(1 << doublings)
    }
}

/// Optional arguments of one run (from the CLI or the admin API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunArgs {
    /// Compute and report, write nothing.
    pub dry_run: bool,
    /// Grant without enqueueing pushes (a back-fill, docs/jobs/README.md).
    pub silent: bool,
    /// First day of a backfill range.
    pub from: Option<NaiveDate>,
    /// Last day of a backfill range (inclusive).
    pub to: Option<NaiveDate>,
}

/// Everything a run may use. Time comes from here, never from the system clock.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The run's id (the run log row; a fresh id for a dry run, which writes no row).
    pub run_id: Uuid,
    /// The job's name.
    pub job: String,
    /// The tick being run, for scheduled, catch-up and retry runs.
    pub tick: Option<DateTime<Utc>>,
    /// Why it runs.
    pub trigger: Trigger,
    /// The business time at which the run started: the job's "now".
    pub now: DateTime<Utc>,
    /// The business clock, for long jobs that need the time as it goes on.
    pub clock: Clock,
    /// The database.
    pub pool: Pool,
    /// Arguments given by an operator.
    pub args: RunArgs,
    /// Cancelled on timeout and on shutdown: long jobs check it between batches.
    pub cancel: CancellationToken,
    /// When the run must be finished; the job's statements should not outlive it.
    pub deadline: tokio::time::Instant,
}

impl JobContext {
    /// Starts a transaction for this run, tagged with the run id (`application_name`) and limited by a
    /// `statement_timeout` of the time left, so a timeout cancels the run's SQL on the server too, and with JIT
    /// compilation off: a job's statements read scratch tables whose sizes the planner guesses, and compiling them
    /// cost more than it saved (a quarter of an outbox insert's time; BENCHMARKS.md "Unlocks at the cost of their
    /// rows"). Every setting is `SET LOCAL`: nothing outlives the transaction, so the server connection a pooler in
    /// transaction mode hands to another client afterwards carries none of it. A run does all its work in such
    /// transactions (`docs/pooler.md`).
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now()).as_millis().max(1);
        sqlx::query!(
            "SELECT set_config('statement_timeout', $1, true) AS timeout,
                    set_config('application_name', $2, true) AS name, set_config('jit', 'off', true) AS jit",
            format!("{left}ms"),
            self.application_name(),
        )
        .fetch_one(db::unnamed(&mut tx))
        .await?;
        Ok(tx)
    }

    /// The `application_name` the run's transactions carry (the runner cancels their SQL by it).
    pub fn application_name(&self) -> String {
        application_name(&self.job, self.run_id)
    }

    /// Runs `statement`, one that cannot run in a transaction (a `VACUUM`), on its own as one simple-protocol
    /// statement, and keeps it within the run's bounds all the same. Setting the session's `statement_timeout` or
    /// `application_name` would leave them on the server connection a pooler hands to other clients, so the
    /// statement's text starts with a comment naming the run instead (`/* hattrick <job> <run id> */`): the runner
    /// cancels it with the run's other SQL when the run times out or is interrupted, and past `limit` (a bound of
    /// its own, with the setting that gives it) this cancels it and fails the run, naming both.
    pub async fn outside_transaction(&self, statement: &str, limit: Option<(Duration, &str)>) -> Result<(), JobError> {
        let tagged = format!("{} {statement}", outside_transaction_tag(&self.application_name()));
        let run = sqlx::raw_sql(sqlx::AssertSqlSafe(tagged.clone())).execute(&self.pool);
        let Some((limit, setting)) = limit else {
            run.await?;
            return Ok(());
        };
        match tokio::time::timeout(limit, run).await {
            Ok(done) => {
                done?;
                Ok(())
            }
            Err(_) => {
                cancel_run_sql(&self.pool, &self.application_name()).await?;
                Err(JobError::Failed(format!(
                    "{statement} took longer than {setting} ({} s) and was cancelled",
                    limit.as_secs_f64()
                )))
            }
        }
    }

    /// `Err(Cancelled)` once the run has been cancelled (timeout, shutdown, lost lease): long jobs call it between
    /// batches, so they stop at a safe point.
    pub fn check_cancelled(&self) -> Result<(), JobError> {
        if self.cancel.is_cancelled() { Err(JobError::Cancelled) } else { Ok(()) }
    }

    /// The point in time a run's day-based logic refers to: its tick when it has one, else its start.
    pub fn reference_time(&self) -> DateTime<Utc> {
        self.tick.unwrap_or(self.now)
    }
}

/// The `application_name` of run `run_id` of `job` ([`JobContext::application_name`]).
pub(crate) fn application_name(job: &str, run_id: Uuid) -> String {
    format!("hattrick {job} {run_id}")
}

/// The comment that starts the text of a run's statement outside its transactions
/// ([`JobContext::outside_transaction`]): `/* <application_name> */`.
fn outside_transaction_tag(application_name: &str) -> String {
    format!("/* {application_name} */")
}

/// Cancels whatever SQL the run named `application_name` has in flight: its transactions carry the name in
/// `application_name`, its statements outside them in a leading comment ([`JobContext::outside_transaction`]).
pub(crate) async fn cancel_run_sql(pool: &Pool, application_name: &str) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT pg_cancel_backend(pid) AS "cancelled!" FROM pg_stat_activity
           WHERE application_name = $1 OR starts_with(query, $2)"#,
        application_name,
        outside_transaction_tag(application_name),
    )
    .fetch_all(pool)
    .await?;
    Ok(())
}

/// What a run did: stored in the run log (`items_processed`, `details`) and printed by `hattrick run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// How many items the run handled (grants, rows, pushes: each job says).
    pub items: i64,
    /// Counts per sub-step and anything else worth keeping.
    pub details: serde_json::Value,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// The job refused to go on (a budget, invalid data, ...), with the reason.
    #[error("{0}")]
    Failed(String),
    /// The run took longer than its job's timeout and was cancelled, its SQL included.
    #[error("timed out after {} s", .0.as_secs_f64())]
    TimedOut(std::time::Duration),
    /// The run was cancelled (shutdown, or its lease was lost) at a safe point.
    #[error("cancelled")]
    Cancelled,
    /// The run was cancelled because its instance is shutting down (a deploy): recorded `interrupted`, not
    /// `failed`, and its tick handed to the next attempt at once. Set by the engine, never by a job.
    #[error("interrupted by shutdown")]
    Interrupted,
}

/// The future a job's run returns.
pub type RunFuture<'a> = BoxFuture<'a, Result<JobReport, JobError>>;

/// A job: the engine calls [`Job::run`] once per claimed tick or manual request.
pub trait Job: Send + Sync + 'static {
    /// Runs once. Must be idempotent for the same tick: re-running, or running twice concurrently, must not pay,
    /// push or count anything twice (docs/engine.md, "Job idempotency").
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a>;

    /// Whether the job acts on the app's changes (docs/events.md): when true, the engine starts a run with trigger
    /// `event` as soon as `hattrick_changes` holds rows of the job's topic (its name), and the run looks only at
    /// those subjects ([`crate::events::take`]).
    fn incremental(&self) -> bool {
        false
    }
}
