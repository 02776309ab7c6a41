//! The engine's SQL: job definitions (`hattrick_jobs`) and the run log (`job_execution_logs`).
//!
//! Correctness across instances rests on two things only: the job's definition row is locked (`FOR UPDATE SKIP
//! LOCKED`) while one instance decides what to do about its due ticks, and the run log's unique key on
//! (job, tick, attempt) lets each attempt of a tick be inserted once. No instance keeps state another must agree
//! with. Business times (ticks, `started_at`, `completed_at`) come from the business clock; heartbeats and leases
//! use the database clock (`clock_timestamp()`), so instances on different hosts agree on who is late.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use db::Pool;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::Clock;
use crate::job::{JobDefinition, JobReport, Trigger};
use crate::policy::MisfirePolicy;
use crate::schedule::{Schedule, parse_time_zone};

/// How far back a catch-up looks: ticks older than this after an outage are ignored.
pub const CATCHUP_WINDOW: TimeDelta = TimeDelta::days(31);
/// Most ticks one claim considers (bounds the rows one outage can write for an every-minute job).
const MAX_TICKS_PER_CLAIM: usize = 50_000;

/// A job definition as stored, with its cursor: the latest tick accounted for.
#[derive(Debug, Clone)]
pub struct StoredJob {
    /// The definition every instance follows.
    pub definition: JobDefinition,
    /// Every tick up to here has a run-log row; `None` until the job is first scheduled.
    pub cursor: Option<DateTime<Utc>>,
}

struct JobRow {
    name: String,
    schedule: String,
    timezone: String,
    misfire: String,
    timeout_ms: i64,
    retries: i32,
    retry_backoff_ms: i64,
    enabled: bool,
    paused: bool,
    cursor: Option<DateTime<Utc>>,
}

impl JobRow {
    fn into_stored(self) -> Option<StoredJob> {
        let zone = parse_time_zone(&self.timezone).ok()?;
        let misfire = match self.misfire.as_str() {
            "run_once" => MisfirePolicy::RunOnce,
            "skip" => MisfirePolicy::Skip,
            "all" => MisfirePolicy::All,
            "latest" => MisfirePolicy::Latest,
            _ => return None,
        };
        Some(StoredJob {
            definition: JobDefinition {
                schedule: Schedule::new(&self.schedule, zone).ok()?,
                name: self.name,
                misfire,
                timeout: Duration::from_millis(self.timeout_ms.max(1).unsigned_abs()),
                retries: self.retries.max(0).unsigned_abs(),
                retry_backoff: Duration::from_millis(self.retry_backoff_ms.max(0).unsigned_abs()),
                enabled: self.enabled,
                paused: self.paused,
            },
            cursor: self.cursor,
        })
    }
}

/// A change made to a stored definition at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionChange {
    /// The job.
    pub job: String,
    /// What changed, e.g. `schedule: "*/5 * * * *" -> "*/10 * * * *"`, or `registered`.
    pub change: String,
}

/// Writes `definitions` (from configuration) into `hattrick_jobs`: new jobs are registered with their cursor at
/// `now` (a first start does not catch up), existing ones updated. `enabled` is written only where the
/// configuration says so (`Some`), so an operator's choice is not undone by a restart; pause state is never
/// touched here. Returns what changed, for the log (last writer wins, docs/engine.md).
pub async fn sync_definitions(
    pool: &Pool,
    definitions: &[(JobDefinition, Option<bool>)],
    now: DateTime<Utc>,
    who: &str,
) -> Result<Vec<DefinitionChange>, sqlx::Error> {
    let mut changes = Vec::new();
    let mut tx = pool.begin().await?;
    for (definition, enabled) in definitions {
        let misfire = definition.misfire.to_string();
        let timeout_ms = i64::try_from(definition.timeout.as_millis()).unwrap_or(i64::MAX);
        let backoff_ms = i64::try_from(definition.retry_backoff.as_millis()).unwrap_or(i64::MAX);
        let retries = i32::try_from(definition.retries).unwrap_or(i32::MAX);
        let zone = definition.schedule.zone().name().to_owned();
        let expression = definition.schedule.expression().to_owned();
        // Instances starting together race to register a job: the first insert wins, the others update.
        let registered: Option<String> = sqlx::query_scalar!(
            "INSERT INTO hattrick_jobs (name, schedule, timezone, misfire, timeout_ms, retries,
                 retry_backoff_ms, enabled, paused, cursor, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, $9, $9, $10)
             ON CONFLICT (name) DO NOTHING
             RETURNING name",
            definition.name,
            expression,
            zone,
            misfire,
            timeout_ms,
            retries,
            backoff_ms,
            enabled.unwrap_or(true),
            now,
            who,
        )
        .fetch_optional(db::unnamed(&mut tx))
        .await?;
        if registered.is_some() {
            changes.push(DefinitionChange { job: definition.name.clone(), change: "registered".to_owned() });
            continue;
        }
        let existing = sqlx::query_as!(
            JobRow,
            "SELECT name, schedule, timezone, misfire, timeout_ms, retries, retry_backoff_ms, enabled, paused, cursor
             FROM hattrick_jobs WHERE name = $1 FOR UPDATE",
            &definition.name,
        )
        .fetch_optional(db::unnamed(&mut tx))
        .await?;
        match existing {
            None => {}
            Some(row) => {
                let mut changed = Vec::new();
                let mut note = |field: &str, old: String, new: String| {
                    if old != new {
                        changed.push(format!("{field}: {old} -> {new}"));
                    }
                };
                note("schedule", row.schedule.clone(), expression.clone());
                note("timezone", row.timezone.clone(), zone.clone());
                note("misfire", row.misfire.clone(), misfire.clone());
                note("timeout_ms", row.timeout_ms.to_string(), timeout_ms.to_string());
                note("retries", row.retries.to_string(), retries.to_string());
                note("retry_backoff_ms", row.retry_backoff_ms.to_string(), backoff_ms.to_string());
                let enabled_now = enabled.unwrap_or(row.enabled);
                note("enabled", row.enabled.to_string(), enabled_now.to_string());
                if changed.is_empty() {
                    continue;
                }
                // Re-enabling a job starts it from now: a disabled job has no history to catch up on.
                let cursor = if enabled_now && !row.enabled { Some(now) } else { row.cursor };
                sqlx::query!(
                    "UPDATE hattrick_jobs SET schedule = $2, timezone = $3, misfire = $4, timeout_ms = $5,
                         retries = $6, retry_backoff_ms = $7, enabled = $8, cursor = $9, updated_at = $10,
                         updated_by = $11
                     WHERE name = $1",
                    definition.name,
                    expression,
                    zone,
                    misfire,
                    timeout_ms,
                    retries,
                    backoff_ms,
                    enabled_now,
                    cursor,
                    now,
                    who,
                )
                .execute(db::unnamed(&mut tx))
                .await?;
                changes.push(DefinitionChange { job: definition.name.clone(), change: changed.join(", ") });
            }
        }
    }
    tx.commit().await?;
    Ok(changes)
}

/// Every stored job definition (rows that no longer parse are left out and logged).
pub async fn load_jobs(pool: &Pool) -> Result<Vec<StoredJob>, sqlx::Error> {
    let rows = sqlx::query_as!(
        JobRow,
        "SELECT name, schedule, timezone, misfire, timeout_ms, retries, retry_backoff_ms, enabled, paused, cursor
         FROM hattrick_jobs ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let name = row.name.clone();
            let stored = row.into_stored();
            if stored.is_none() {
                tracing::error!(job = name, "stored job definition does not parse; the job is not scheduled");
            }
            stored
        })
        .collect())
}

/// Pauses or resumes a job for every instance. Pausing remembers where the cursor stood, and resuming puts it
/// back, so the ticks recorded `paused` fall under the misfire policy on resume (docs/engine.md). `executor` is
/// the pool or, inside a transaction, `db::unnamed(&mut tx)`.
pub async fn set_paused(
    executor: impl sqlx::PgExecutor<'_>,
    job: &str,
    paused: bool,
    now: DateTime<Utc>,
    who: &str,
) -> Result<bool, sqlx::Error> {
    let done = if paused {
        sqlx::query!(
            "UPDATE hattrick_jobs SET paused = true, paused_cursor = cursor, updated_at = $2, updated_by = $3
             WHERE name = $1 AND NOT paused",
            job,
            now,
            who,
        )
        .execute(executor)
        .await?
    } else {
        sqlx::query!(
            "UPDATE hattrick_jobs SET paused = false, cursor = coalesce(paused_cursor, cursor), paused_cursor = NULL,
                 updated_at = $2, updated_by = $3
             WHERE name = $1 AND paused",
            job,
            now,
            who,
        )
        .execute(executor)
        .await?
    };
    Ok(done.rows_affected() == 1)
}

/// A run this instance owns: its run-log row says `running` and its heartbeat must keep coming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The run-log row.
    pub run_id: Uuid,
    /// The job.
    pub job: String,
    /// The tick (none for a manual run).
    pub tick: Option<DateTime<Utc>>,
    /// The attempt of this tick.
    pub attempt: i32,
    /// Why it runs.
    pub trigger: Trigger,
}

/// What one claim attempt did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClaimOutcome {
    /// The run this instance must now carry out, if any.
    pub claim: Option<Claim>,
    /// Ticks recorded `skipped` (missed, overlap, paused) by this claim.
    pub skipped: usize,
    /// Another instance held the job's row: nothing was decided here.
    pub busy: bool,
}

/// Settings of the claim that do not live in the job's definition.
#[derive(Debug, Clone)]
pub struct ClaimSettings {
    /// This instance's name, stored with each row it writes.
    pub instance: String,
    /// A tick later than this in real time was missed (the scheduler was down), not merely reached late.
    pub misfire_grace: Duration,
}

/// Whether job `job` has a scheduled, retry or manual run going (event runs are a separate lane, docs/engine.md;
/// [`claim_due`] asks the same in its first statement).
async fn running_exists(tx: &mut Transaction<'_, Postgres>, job: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM job_execution_logs
                          WHERE job_name = $1 AND status = 'running' AND trigger IS DISTINCT FROM 'event') AS "running!""#,
        job,
    )
    .fetch_one(db::unnamed(tx))
    .await
}

async fn insert_running(
    tx: &mut Transaction<'_, Postgres>,
    job: &str,
    tick: Option<DateTime<Utc>>,
    attempt: i32,
    trigger: Trigger,
    now: DateTime<Utc>,
    instance: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO job_execution_logs (job_name, started_at, status, items_processed, scheduled_for, trigger,
             instance, attempt, heartbeat_at, created_at)
         VALUES ($1, $2, 'running', 0, $3, $4, $5, $6, clock_timestamp(), $2)
         ON CONFLICT (job_name, scheduled_for, attempt) DO NOTHING
         RETURNING id",
        job,
        now,
        tick,
        trigger.as_str(),
        instance,
        attempt,
    )
    .fetch_optional(db::unnamed(tx))
    .await
}

async fn insert_skipped(
    tx: &mut Transaction<'_, Postgres>,
    job: &str,
    ticks: &[DateTime<Utc>],
    reason: &str,
    now: DateTime<Utc>,
    instance: &str,
) -> Result<usize, sqlx::Error> {
    if ticks.is_empty() {
        return Ok(0);
    }
    let inserted = sqlx::query!(
        "INSERT INTO job_execution_logs (job_name, started_at, completed_at, status, items_processed, duration_ms,
             scheduled_for, trigger, instance, attempt, reason, created_at)
         SELECT $1, $3, $3, 'skipped', 0, 0, tick, 'schedule', $4, 1, $2, $3
         FROM unnest($5::timestamptz[]) AS tick
         ON CONFLICT (job_name, scheduled_for, attempt) DO NOTHING",
        job,
        reason,
        now,
        instance,
        ticks,
    )
    .execute(db::unnamed(tx))
    .await?
    .rows_affected();
    Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
}

/// Decides, for one job, what to do about its ticks due up to `now`, and records it: claims at most one run and
/// records every tick it will not run with its reason. Runs in one transaction holding the job's row, which
/// another instance skips rather than waits for.
pub async fn claim_due(
    pool: &Pool,
    job: &str,
    clock: &Clock,
    now: DateTime<Utc>,
    settings: &ClaimSettings,
) -> Result<ClaimOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as!(
        JobRow,
        "SELECT name, schedule, timezone, misfire, timeout_ms, retries, retry_backoff_ms, enabled, paused, cursor
         FROM hattrick_jobs WHERE name = $1 FOR UPDATE SKIP LOCKED",
        job,
    )
    .fetch_optional(db::unnamed(&mut tx))
    .await?;
    let Some(stored) = row.and_then(JobRow::into_stored) else {
        return Ok(ClaimOutcome { busy: true, ..ClaimOutcome::default() });
    };
    let definition = &stored.definition;
    if !definition.enabled {
        return Ok(ClaimOutcome::default());
    }
    let Some(cursor) = stored.cursor else {
        // Never scheduled: the baseline is now, there is nothing to catch up on.
        set_cursor(&mut tx, job, now).await?;
        tx.commit().await?;
        return Ok(ClaimOutcome::default());
    };
    let window_start = cursor.max(now - CATCHUP_WINDOW);
    let due = definition.schedule.fire_times(window_start, now, MAX_TICKS_PER_CLAIM);
    let Some(&latest) = due.last() else {
        return Ok(ClaimOutcome::default());
    };
    let mut outcome = ClaimOutcome::default();
    let instance = settings.instance.as_str();

    // One round trip for what the decision needs: whether the job is running, and which due ticks already have
    // a row (recorded `paused` before a resume: not recorded again, their next run is the next attempt).
    let facts = sqlx::query!(
        r#"SELECT EXISTS (SELECT 1 FROM job_execution_logs
                          WHERE job_name = $1 AND status = 'running' AND trigger IS DISTINCT FROM 'event') AS "running!",
                  coalesce(array_agg(t.scheduled_for), '{}') AS "ticks!: Vec<DateTime<Utc>>",
                  coalesce(array_agg(t.attempt), '{}') AS "attempts!: Vec<i32>"
           FROM (SELECT scheduled_for, max(attempt) AS attempt FROM job_execution_logs
                 WHERE job_name = $1 AND scheduled_for > $2 AND scheduled_for <= $3 GROUP BY scheduled_for) t"#,
        job,
        window_start,
        now,
    )
    .fetch_one(db::unnamed(&mut tx))
    .await?;
    let (running, recorded_ticks, recorded_attempts) = (facts.running, facts.ticks, facts.attempts);
    let recorded: Vec<(DateTime<Utc>, i32)> = recorded_ticks.into_iter().zip(recorded_attempts).collect();
    let attempts_of = |tick: DateTime<Utc>| recorded.iter().find(|(t, _)| *t == tick).map(|(_, a)| *a);
    let unrecorded = |ticks: &[DateTime<Utc>]| -> Vec<DateTime<Utc>> {
        ticks.iter().copied().filter(|t| attempts_of(*t).is_none()).collect()
    };

    if definition.paused {
        outcome.skipped = insert_skipped(&mut tx, job, &unrecorded(&due), "paused", now, instance).await?;
        set_cursor(&mut tx, job, latest).await?;
        tx.commit().await?;
        return Ok(outcome);
    }

    if running {
        if definition.misfire == MisfirePolicy::All {
            // Queued: each of these ticks is its own unit of work (a day of analytics); it runs after the
            // current run, so the cursor stays.
            return Ok(outcome);
        }
        outcome.skipped = insert_skipped(&mut tx, job, &unrecorded(&due), "overlap", now, instance).await?;
        set_cursor(&mut tx, job, latest).await?;
        tx.commit().await?;
        return Ok(outcome);
    }

    // The misfire policy is about ticks the scheduler was down for (late beyond the grace, in real time). Ticks
    // within the grace are merely behind: they run one per pass, oldest first.
    let late =
        |tick: DateTime<Utc>| clock.real_duration((now - tick).to_std().unwrap_or_default()) > settings.misfire_grace;
    let first_timely = due.iter().position(|t| !late(*t)).unwrap_or(due.len());
    let (late_ticks, timely) = due.split_at(first_timely);
    let (to_run, missed, trigger): (Option<DateTime<Utc>>, Vec<DateTime<Utc>>, Trigger) = match definition.misfire {
        MisfirePolicy::All => {
            let oldest = due[0];
            (Some(oldest), Vec::new(), if late(oldest) { Trigger::Catchup } else { Trigger::Schedule })
        }
        _ if !timely.is_empty() => (Some(timely[0]), late_ticks.to_vec(), Trigger::Schedule),
        MisfirePolicy::Skip => (None, late_ticks.to_vec(), Trigger::Schedule),
        MisfirePolicy::RunOnce | MisfirePolicy::Latest => {
            (late_ticks.last().copied(), late_ticks[..late_ticks.len().saturating_sub(1)].to_vec(), Trigger::Catchup)
        }
    };
    outcome.skipped = insert_skipped(&mut tx, job, &unrecorded(&missed), "missed", now, instance).await?;
    let cursor_after = to_run.unwrap_or(latest).max(missed.last().copied().unwrap_or(cursor));
    if let Some(tick) = to_run {
        let attempt = attempts_of(tick).map_or(1, |a| a + 1);
        if let Some(run_id) = insert_running(&mut tx, job, Some(tick), attempt, trigger, now, instance).await? {
            outcome.claim = Some(Claim { run_id, job: job.to_owned(), tick: Some(tick), attempt, trigger });
        }
    }
    set_cursor(&mut tx, job, cursor_after).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn set_cursor(tx: &mut Transaction<'_, Postgres>, job: &str, cursor: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE hattrick_jobs SET cursor = $2 WHERE name = $1", job, cursor).execute(db::unnamed(tx)).await?;
    Ok(())
}

/// Claims the next attempt of failed ticks whose retry is due (at most `limit`), skipping jobs that are running,
/// paused or disabled, and ticks that already succeeded.
pub async fn claim_retries(
    pool: &Pool,
    now: DateTime<Utc>,
    instance: &str,
    limit: i64,
) -> Result<Vec<Claim>, sqlx::Error> {
    // Only rows of a tick get a retry_at, so scheduled_for is set.
    let due = sqlx::query!(
        r#"SELECT l.id, l.job_name, l.scheduled_for AS "tick!", coalesce(l.attempt, 1) AS "attempt!"
         FROM job_execution_logs l JOIN hattrick_jobs j ON j.name = l.job_name
         WHERE l.retry_at <= $1 AND j.enabled AND NOT j.paused
         ORDER BY l.retry_at LIMIT $2"#,
        now,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let mut claims = Vec::new();
    for row in due {
        let (failed_id, job, tick, attempt) = (row.id, row.job_name, row.tick, row.attempt);
        let mut tx = pool.begin().await?;
        let locked: Option<String> =
            sqlx::query_scalar!("SELECT name FROM hattrick_jobs WHERE name = $1 FOR UPDATE SKIP LOCKED", job)
                .fetch_optional(db::unnamed(&mut tx))
                .await?;
        if locked.is_none() || running_exists(&mut tx, &job).await? {
            continue;
        }
        let succeeded: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM job_execution_logs
                              WHERE job_name = $1 AND scheduled_for = $2 AND status = 'success') AS "succeeded!""#,
            job,
            tick,
        )
        .fetch_one(db::unnamed(&mut tx))
        .await?;
        let cleared = sqlx::query!(
            "UPDATE job_execution_logs SET retry_at = NULL WHERE id = $1 AND retry_at IS NOT NULL",
            failed_id
        )
        .execute(db::unnamed(&mut tx))
        .await?
        .rows_affected();
        if cleared == 0 || succeeded {
            tx.commit().await?;
            continue;
        }
        let next = attempt + 1;
        if let Some(run_id) = insert_running(&mut tx, &job, Some(tick), next, Trigger::Retry, now, instance).await? {
            claims.push(Claim { run_id, job: job.clone(), tick: Some(tick), attempt: next, trigger: Trigger::Retry });
        }
        tx.commit().await?;
    }
    Ok(claims)
}

/// Why a manual run was not started.
#[derive(Debug, thiserror::Error)]
pub enum ManualRunError {
    /// The job is running (a scheduled, retry or manual run).
    #[error("{0} is already running")]
    AlreadyRunning(String),
    /// No such job is stored.
    #[error("no job named {0}")]
    UnknownJob(String),
    /// A query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Writes rows that belong with a manual run's claim, in the claim's transaction, given the run's id.
pub type ClaimHook<'a> = Box<
    dyn for<'c> FnOnce(
            &'c mut sqlx::PgConnection,
            Uuid,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>
        + Send
        + 'a,
>;

/// Starts a manual run (trigger `manual`, no tick), unless the job is running. Waits for the job's row if
/// another instance is deciding about it at this moment.
pub async fn claim_manual(
    pool: &Pool,
    job: &str,
    now: DateTime<Utc>,
    instance: &str,
    with_claim: Option<ClaimHook<'_>>,
) -> Result<Claim, ManualRunError> {
    let mut tx = pool.begin().await?;
    let exists: Option<String> = sqlx::query_scalar!("SELECT name FROM hattrick_jobs WHERE name = $1 FOR UPDATE", job)
        .fetch_optional(db::unnamed(&mut tx))
        .await?;
    if exists.is_none() {
        return Err(ManualRunError::UnknownJob(job.to_owned()));
    }
    if running_exists(&mut tx, job).await? {
        return Err(ManualRunError::AlreadyRunning(job.to_owned()));
    }
    let run_id = insert_running(&mut tx, job, None, 1, Trigger::Manual, now, instance)
        .await?
        .ok_or_else(|| ManualRunError::AlreadyRunning(job.to_owned()))?;
    if let Some(hook) = with_claim {
        hook(&mut tx, run_id).await?;
    }
    tx.commit().await?;
    Ok(Claim { run_id, job: job.to_owned(), tick: None, attempt: 1, trigger: Trigger::Manual })
}

/// Starts an event run of `job` (trigger `event`, docs/events.md) unless one is running already, or the job is paused
/// or disabled. Event runs are their own lane: they may run beside a scheduled run (docs/engine.md), one at a time.
pub async fn claim_event(
    pool: &Pool,
    job: &str,
    now: DateTime<Utc>,
    instance: &str,
) -> Result<Option<Claim>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let runnable: Option<bool> = sqlx::query_scalar!(
        r#"SELECT enabled AND NOT paused AS "runnable!" FROM hattrick_jobs WHERE name = $1 FOR UPDATE"#,
        job
    )
    .fetch_optional(db::unnamed(&mut tx))
    .await?;
    if runnable != Some(true) {
        return Ok(None);
    }
    let running: bool = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM job_execution_logs
                          WHERE job_name = $1 AND status = 'running' AND trigger = 'event') AS "running!""#,
        job
    )
    .fetch_one(db::unnamed(&mut tx))
    .await?;
    if running {
        return Ok(None);
    }
    let Some(run_id) = insert_running(&mut tx, job, None, 1, Trigger::Event, now, instance).await? else {
        return Ok(None);
    };
    tx.commit().await?;
    Ok(Some(Claim { run_id, job: job.to_owned(), tick: None, attempt: 1, trigger: Trigger::Event }))
}

/// Proves a run is alive. Returns false when the row is no longer `running` (it was declared abandoned): the
/// run has lost its lease and should stop.
pub async fn heartbeat(pool: &Pool, run_id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE job_execution_logs SET heartbeat_at = clock_timestamp() WHERE id = $1 AND status = 'running'",
        run_id
    )
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum RunEnd {
    /// It finished.
    Success(JobReport),
    /// Its instance shut down before it finished (status `interrupted`, reason `shutdown`): not a failure.
    Interrupted {
        /// When the tick's next attempt may run (now), for runs of a tick.
        retry_at: Option<DateTime<Utc>>,
    },
    /// It failed; `reason` is `error` or `timeout`.
    Failure {
        /// `error` or `timeout`.
        reason: &'static str,
        /// What went wrong, for the run log.
        message: String,
        /// When to run the tick again, if attempts remain.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Records the end of a run. Returns false if the row had already been declared abandoned.
pub async fn complete(
    pool: &Pool,
    run_id: Uuid,
    end: &RunEnd,
    now: DateTime<Utc>,
    duration: Duration,
) -> Result<bool, sqlx::Error> {
    let duration_ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let done = match end {
        RunEnd::Success(report) => sqlx::query!(
            "UPDATE job_execution_logs SET status = 'success', completed_at = $2, duration_ms = $3,
                 items_processed = $4, details = $5, heartbeat_at = clock_timestamp()
             WHERE id = $1 AND status = 'running'",
            run_id,
            now,
            duration_ms,
            i32::try_from(report.items).unwrap_or(i32::MAX),
            report.details,
        )
        .execute(pool)
        .await?
        .rows_affected(),
        RunEnd::Failure { reason, message, retry_at } => sqlx::query!(
            "UPDATE job_execution_logs SET status = 'failed', completed_at = $2, duration_ms = $3, reason = $4,
                 error_message = $5, retry_at = $6, heartbeat_at = clock_timestamp()
             WHERE id = $1 AND status = 'running'",
            run_id,
            now,
            duration_ms,
            *reason,
            message,
            *retry_at,
        )
        .execute(pool)
        .await?
        .rows_affected(),
        RunEnd::Interrupted { retry_at } => sqlx::query!(
            "UPDATE job_execution_logs SET status = 'interrupted', completed_at = $2, duration_ms = $3,
                 reason = 'shutdown', error_message = $4, retry_at = $5, heartbeat_at = clock_timestamp()
             WHERE id = $1 AND status = 'running'",
            run_id,
            now,
            duration_ms,
            crate::runner::INTERRUPTED,
            *retry_at,
        )
        .execute(pool)
        .await?
        .rows_affected(),
    };
    Ok(done == 1)
}

/// A run declared abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// The run-log row.
    pub run_id: Uuid,
    /// The job.
    pub job: String,
    /// The instance that stopped heartbeating.
    pub instance: Option<String>,
}

/// Marks `failed` (`abandoned`) every run whose heartbeat is older than `lease` by the database clock, and
/// schedules the tick's next attempt when retries remain. Any instance may do this; each row is reaped once.
pub async fn reap_abandoned(pool: &Pool, lease: Duration, now: DateTime<Utc>) -> Result<Vec<Abandoned>, sqlx::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows = sqlx::query!(
        "UPDATE job_execution_logs l
         SET status = 'failed', reason = 'abandoned', completed_at = $2::timestamptz,
             error_message = 'instance ' || coalesce(l.instance, '?') || ' stopped heartbeating',
             retry_at = CASE WHEN l.scheduled_for IS NOT NULL AND coalesce(l.attempt, 1) <= j.retries
                             THEN $2 + j.retry_backoff_ms * power(2, coalesce(l.attempt, 1) - 1) * interval '1 millisecond'
                        END
         FROM hattrick_jobs j
         WHERE j.name = l.job_name AND l.status = 'running'
           AND l.heartbeat_at < clock_timestamp() - $1 * interval '1 millisecond'
         RETURNING l.id, l.job_name, l.instance",
        lease_ms as f64,
        now,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| Abandoned { run_id: row.id, job: row.job_name, instance: row.instance }).collect())
}

/// Marks this instance's own running rows `interrupted` at once (used when shutting down past the grace period), so
/// another instance retries them without waiting for the lease.
pub async fn abandon_own(pool: &Pool, run_ids: &[Uuid], now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE job_execution_logs l
         SET status = 'interrupted', reason = 'shutdown', completed_at = $2::timestamptz, error_message = $3,
             retry_at = CASE WHEN l.scheduled_for IS NOT NULL THEN $2 END
         WHERE l.id = ANY ($1) AND l.status = 'running'",
        run_ids,
        now,
        crate::runner::INTERRUPTED,
    )
    .execute(pool)
    .await?
    .rows_affected())
}
