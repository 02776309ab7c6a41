//! Event runs (docs/events.md): the app's writes record changes in `hattrick_changes` (triggers of
//! `migrations/events.sql`); the engine looks at the table every `poll_interval` and starts an incremental run
//! (trigger `event`) of each job whose topic has rows. A job's topic is its name.
//!
//! - The triggers do not `NOTIFY`: a notifying transaction holds PostgreSQL's cluster-wide notification lock from
//!   just before its commit until the commit is flushed, so the app's writes would commit one at a time, and one
//!   slow flush would stall every app connection (BENCHMARKS.md). A look is one indexed query, cheap enough to
//!   repeat ten times a second, and it works the same through a transaction pooler.
//! - An event run [`take`]s a batch of its topic's rows, acts on their subjects, and [`finish`]es by deleting
//!   exactly the rows it took, so a change committed meanwhile (even with a smaller id, since ids are assigned
//!   before commit) is left for the next run. A run cut off half-way leaves its rows, and the next run acts on
//!   them again: jobs are idempotent.
//! - One event run per job at a time across instances ([`crate::store::claim_event`]); after a run the engine
//!   looks again at once, so changes that arrived during it wait no longer than one run.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db::Pool;
use sqlx::PgConnection;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job::RunArgs;
use crate::runner::Engine;
use crate::store;

/// After a failed event run, the pause before the next (a failing run is not retried in a tight loop).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How event processing behaves.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Look at the change table this often: the longest a change waits before its run starts (unless that job's
    /// event run is still busy), and the batching of bursts, since a look takes every change committed by then.
    pub poll_interval: Duration,
}

/// Takes up to `limit` of `topic`'s changes, oldest first, for the run `run_id`: their ids into
/// `hattrick_run_changes` and their distinct subjects into `hattrick_run_subjects` (tables keyed by run that a job
/// joins: `run_id` filters them), then refreshes the subjects' statistics if the job's statements, which read them
/// as `reading` says, need it ([`analyze_subjects`]). Returns the number of subjects. Rows of the run's earlier
/// take are replaced.
pub async fn take(
    pool: &Pool,
    run_id: Uuid,
    topic: &str,
    limit: i64,
    reading: db::Reading,
) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    clear_in(&mut tx, run_id).await?;
    sqlx::query!(
        "INSERT INTO hattrick_run_changes (run_id, change_id)
         SELECT $1, id FROM hattrick_changes WHERE topic = $2 ORDER BY id LIMIT $3",
        run_id,
        topic,
        limit
    )
    .execute(db::unnamed(&mut tx))
    .await?;
    let subjects = sqlx::query!(
        "INSERT INTO hattrick_run_subjects (run_id, subject)
         SELECT DISTINCT $1::uuid, c.subject FROM hattrick_run_changes t JOIN hattrick_changes c ON c.id = t.change_id
         WHERE t.run_id = $1",
        run_id
    )
    .execute(db::unnamed(&mut tx))
    .await?
    .rows_affected();
    tx.commit().await?;
    analyze_subjects(pool, subjects, reading).await?;
    Ok(i64::try_from(subjects).unwrap_or(i64::MAX))
}

/// Refreshes the statistics of `hattrick_run_subjects` after a run put `subjects` rows there (a take, or a badge
/// run's next cascade round), when the statements that read them as `reading` says would be planned better for
/// it, which autovacuum would notice only later: a few subjects in a table the planner already believes small
/// change nothing, and many change nothing for statements that look each subject up anyway
/// (`db::stale_statistics`).
pub async fn analyze_subjects(pool: &Pool, subjects: u64, reading: db::Reading) -> Result<(), sqlx::Error> {
    if db::stale_statistics(pool, "hattrick_run_subjects", subjects, reading).await? {
        sqlx::raw_sql("ANALYZE hattrick_run_subjects").execute(pool).await?;
    }
    Ok(())
}

/// Deletes the changes [`take`] took for `run_id` (after the job acted on them) and the run's rows; returns how
/// many changes.
pub async fn finish(pool: &Pool, run_id: Uuid) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query!(
        "DELETE FROM hattrick_changes c USING hattrick_run_changes t WHERE t.run_id = $1 AND c.id = t.change_id",
        run_id
    )
    .execute(db::unnamed(&mut tx))
    .await?
    .rows_affected();
    clear_in(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(deleted)
}

/// Lets go of what [`take`] took for `run_id` without deleting the changes (a dry run acts on nothing).
pub async fn forget(pool: &Pool, run_id: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    clear_in(&mut tx, run_id).await?;
    tx.commit().await
}

/// The scratch tables of event runs, keyed by run id: the changes a run took and their subjects.
pub const RUN_TABLES: &[&str] = &["hattrick_run_changes", "hattrick_run_subjects"];

/// Deletes `run_id`'s taken changes and subjects.
async fn clear_in(conn: &mut PgConnection, run_id: Uuid) -> Result<(), sqlx::Error> {
    db::clear_run_rows(conn, run_id, RUN_TABLES).await
}

/// The `jobs` whose topic has changes waiting.
pub async fn pending(pool: &Pool, jobs: &[String]) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT t AS "topic!" FROM unnest($1::text[]) t
           WHERE EXISTS (SELECT 1 FROM hattrick_changes c WHERE c.topic = t)"#,
        jobs
    )
    .fetch_all(pool)
    .await
}

impl Engine {
    /// The registered jobs that act on changes.
    pub fn incremental_jobs(&self) -> Vec<String> {
        self.registry()
            .names()
            .into_iter()
            .filter(|name| self.registry().job(name).is_some_and(|j| j.incremental()))
            .collect()
    }

    /// Starts event runs as changes arrive, until `shutdown`; then waits for the runs it started (within the
    /// engine's shutdown grace).
    pub async fn run_events(self: Arc<Self>, settings: EventSettings, shutdown: CancellationToken) {
        self.run_events_until(settings, shutdown.clone(), shutdown).await;
    }

    /// [`Engine::run_events`] that stops starting runs at `stop` and cancels running ones at `cancel_runs` (the
    /// same token in `serve`; the demo lets them finish before it stops).
    pub async fn run_events_until(
        self: Arc<Self>,
        settings: EventSettings,
        stop: CancellationToken,
        cancel_runs: CancellationToken,
    ) {
        let shutdown = stop;
        let jobs = self.incremental_jobs();
        if jobs.is_empty() {
            return;
        }
        let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut runs = JoinSet::new();
        // The first tick is at once: changes made while no lane ran are looked at when it starts. A look that
        // overruns its interval delays the next rather than bunching them.
        let mut looks = tokio::time::interval(settings.poll_interval);
        looks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tracing::info!(jobs = ?jobs, poll_interval_ms = settings.poll_interval.as_millis(), "events: on");
        // Whether the last look failed: an outage is logged when it starts and ends, not ten times a second.
        let mut failing = false;
        while !shutdown.is_cancelled() {
            tokio::select! {
                _ = looks.tick() => {}
                Some(_) = runs.join_next(), if !runs.is_empty() => continue,
                () = shutdown.cancelled() => break,
            }
            let due = match pending(self.pool(), &jobs).await {
                Ok(due) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("events: hattrick_changes readable again");
                    }
                    due
                }
                Err(error) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %error, "events: cannot read hattrick_changes");
                    }
                    continue;
                }
            };
            for job in due {
                if !busy.lock().unwrap_or_else(|e| e.into_inner()).insert(job.clone()) {
                    continue;
                }
                let (engine, busy, stop) = (Arc::clone(&self), Arc::clone(&busy), cancel_runs.clone());
                runs.spawn(async move {
                    // Changes that arrive during the run wait for the first look after it: at most one interval.
                    // Another instance on it, or the job paused: the next look tries again.
                    let outcome = engine.run_event(&job, stop.clone()).await;
                    if let Err(error) = &outcome {
                        tracing::warn!(job, error = %error, "events: cannot start an event run");
                    }
                    // A failed run (the database may be restarting) left its changes: this job is not tried again
                    // for a moment rather than at every look.
                    if matches!(outcome, Ok(Some(false)) | Err(_)) {
                        tokio::select! {
                            () = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                            () = stop.cancelled() => {}
                        }
                    }
                    busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&job);
                });
            }
        }
        let grace = tokio::time::sleep(self.settings().shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = runs.join_next() => if next.is_none() { break },
                () = &mut grace => { runs.abort_all(); break; }
            }
        }
    }

    /// Claims and performs one event run of `job`: whether it succeeded, or None when none was started (one is
    /// running, or the job is paused or disabled).
    async fn run_event(&self, job: &str, shutdown: CancellationToken) -> Result<Option<bool>, sqlx::Error> {
        // The definition first: a claim is never left without a run to carry it out.
        let Some(definition) = crate::runner::bounded(self.current_definition(job)).await? else { return Ok(None) };
        let now = self.clock().now();
        let claim = store::claim_event(self.pool(), job, now, &self.settings().instance);
        let Some(claim) = crate::runner::bounded(claim).await? else {
            return Ok(None);
        };
        let result = self.execute(&claim, &definition, RunArgs::default(), shutdown).await;
        Ok(Some(result.outcome == crate::metrics::Outcome::Success))
    }
}
