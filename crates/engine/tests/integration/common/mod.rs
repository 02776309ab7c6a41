//! Jobs and helpers shared by the engine's tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
pub use testkit::utc;

use chrono::{DateTime, Utc};
use db::Pool;
use engine::runner::{Engine, EngineSettings, Registry, RunResult};
use engine::{Clock, Job, JobContext, JobDefinition, JobError, JobReport, MisfirePolicy, RunFuture};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Records each run in `test_runs`, so tests can count runs per tick independently of the run log.
pub struct RecordingJob {
    /// Real time each run takes.
    pub work: Duration,
}

impl Job for RecordingJob {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            if !self.work.is_zero() {
                tokio::time::sleep(self.work).await;
            }
            let mut tx = ctx.begin().await?;
            db::query("INSERT INTO test_runs (job, tick, run_id, trigger) VALUES ($1, $2, $3, $4)")
                .bind(&ctx.job)
                .bind(ctx.tick)
                .bind(ctx.run_id)
                .bind(ctx.trigger.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(JobReport { items: 1, details: serde_json::json!({ "tick": ctx.tick }) })
        })
    }
}

/// Fails its first `failures` runs, then succeeds.
pub struct FlakyJob {
    pub failures: u32,
    pub calls: AtomicU32,
}

impl Job for FlakyJob {
    fn run<'a>(&'a self, _ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if call < self.failures {
                Err(JobError::Failed(format!("induced failure {}", call + 1)))
            } else {
                Ok(JobReport { items: 7, details: serde_json::json!({}) })
            }
        })
    }
}

/// Runs `SELECT pg_sleep(seconds)`: for timeouts and overlaps.
pub struct SleepingSqlJob {
    pub seconds: f64,
}

impl Job for SleepingSqlJob {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let mut tx = ctx.begin().await?;
            db::query("SELECT pg_sleep($1)").bind(self.seconds).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(JobReport::default())
        })
    }
}

/// Sleeps in one statement outside a transaction ([`JobContext::outside_transaction`]), bounded by `limit`.
pub struct SleepingOutsideJob {
    pub seconds: f64,
    pub limit: Option<Duration>,
}

impl Job for SleepingOutsideJob {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let statement = format!("SELECT pg_sleep({})", self.seconds);
            ctx.outside_transaction(&statement, self.limit.map(|limit| (limit, "the test's limit"))).await?;
            Ok(JobReport::default())
        })
    }
}

/// Statements still running on the test's database whose text is `LIKE` the pattern.
pub async fn running_statements(pool: &Pool, like: &str) -> i64 {
    db::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE $1 AND state = 'active'",
    )
    .bind(like)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Runs `job`, named `name` and every minute with `timeout`, on one engine at its first tick (10:01, after the
/// engine's first look at 10:00); returns that tick's runs and how long the tick took.
pub async fn first_tick(pool: &Pool, name: &str, timeout: Duration, job: Arc<dyn Job>) -> (Vec<RunResult>, Duration) {
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let mut definition = definition(name, "* * * * *", MisfirePolicy::RunOnce);
    definition.timeout = timeout;
    let engine = engine(pool, &clock, "a", vec![(definition, job)]).await;
    step(&engine).await;
    clock.set(utc("2026-03-10T10:01:00Z")).unwrap();
    let started = std::time::Instant::now();
    let runs = step(&engine).await;
    (runs, started.elapsed())
}

pub async fn create_test_runs(pool: &Pool) {
    db::query(
        "CREATE TABLE IF NOT EXISTS test_runs (job text, tick timestamptz, run_id uuid, trigger text,
             at timestamptz DEFAULT clock_timestamp())",
    )
    .execute(pool)
    .await
    .unwrap();
}

pub fn definition(name: &str, schedule: &str, misfire: MisfirePolicy) -> JobDefinition {
    JobDefinition::new(name, schedule, "Europe/Istanbul", misfire).unwrap()
}

pub fn settings(instance: &str) -> EngineSettings {
    EngineSettings {
        instance: instance.to_owned(),
        lease: Duration::from_secs(5),
        heartbeat: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(2),
        misfire_grace: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        max_concurrent_runs: 4,
    }
}

pub async fn engine(
    pool: &Pool,
    clock: &Clock,
    instance: &str,
    jobs: Vec<(JobDefinition, Arc<dyn Job>)>,
) -> Arc<Engine> {
    let mut registry = Registry::new();
    for (definition, job) in jobs {
        registry.register(definition, None, job);
    }
    let engine = Engine::new(pool.clone(), clock.clone(), registry, settings(instance));
    engine.sync_definitions().await.unwrap();
    Arc::new(engine)
}

/// One scheduler pass, then waits for every run it started: a deterministic step for tests.
pub async fn step(engine: &Arc<Engine>) -> Vec<RunResult> {
    let mut tasks = JoinSet::new();
    let permits = Arc::new(Semaphore::new(4));
    engine.tick(&mut tasks, &permits, &CancellationToken::new()).await.unwrap();
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.unwrap());
    }
    results
}

/// The run log of `job`: (tick, attempt, status, reason, trigger), oldest tick first.
pub async fn log(
    pool: &Pool,
    job: &str,
) -> Vec<(Option<DateTime<Utc>>, Option<i32>, String, Option<String>, Option<String>)> {
    db::query_as(
        "SELECT scheduled_for, attempt, status, reason, trigger FROM job_execution_logs
         WHERE job_name = $1 ORDER BY scheduled_for NULLS LAST, attempt",
    )
    .bind(job)
    .fetch_all(pool)
    .await
    .unwrap()
}
