//! The engine against the real PostgreSQL, stepped on a fixed clock.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use engine::metrics::Outcome;
use engine::runner::ManualError;
use engine::{Clock, MisfirePolicy, RunArgs, store};
use testkit::TestDb;

#[tokio::test]
async fn a_first_start_does_not_catch_up_and_then_runs_each_tick_once() {
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:30Z"));
    let job = definition("every-minute", "* * * * *", MisfirePolicy::RunOnce);
    let engine = engine(db.pool(), &clock, "a", vec![(job, Arc::new(RecordingJob { work: Duration::ZERO }))]).await;

    assert!(step(&engine).await.is_empty(), "the baseline is now: nothing runs at start");
    for minute in 1..=3 {
        clock.set(utc("2026-03-10T10:00:00Z") + TimeDelta::minutes(minute)).unwrap();
        let runs = step(&engine).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcome, Outcome::Success);
        assert!(step(&engine).await.is_empty(), "a tick runs once");
    }
    let log = log(db.pool(), "every-minute").await;
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|(_, attempt, status, _, trigger)| {
        *attempt == Some(1) && status == "success" && trigger.as_deref() == Some("schedule")
    }));
}

#[tokio::test]
async fn two_instances_stepping_together_run_each_tick_exactly_once() {
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let job = || -> Vec<(engine::JobDefinition, Arc<dyn engine::Job>)> {
        vec![(
            definition("shared", "* * * * *", MisfirePolicy::RunOnce),
            Arc::new(RecordingJob { work: Duration::ZERO }),
        )]
    };
    let a = engine(db.pool(), &clock, "a", job()).await;
    let b = engine(db.pool(), &clock, "b", job()).await;
    step(&a).await;
    for minute in 1..=30 {
        clock.set(utc("2026-03-10T10:00:00Z") + TimeDelta::minutes(minute)).unwrap();
        // An instance that finds the job's row locked skips it for that pass (by design); a pass in which both
        // skipped is followed by another. Across passes the tick runs exactly once.
        let mut runs = 0;
        for _ in 0..5 {
            let (ra, rb) = tokio::join!(step(&a), step(&b));
            runs += ra.len() + rb.len();
            assert!(runs <= 1, "minute {minute} ran {runs} times");
            if runs == 1 {
                break;
            }
        }
        assert_eq!(runs, 1, "minute {minute}");
    }
    let per_tick: Vec<(i64,)> =
        db::query_as("SELECT count(*) FROM test_runs GROUP BY tick ORDER BY tick").fetch_all(db.pool()).await.unwrap();
    assert_eq!(per_tick.len(), 30);
    assert!(per_tick.iter().all(|(n,)| *n == 1));
}

#[tokio::test]
async fn a_three_day_outage_is_handled_per_misfire_policy_and_recorded() {
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let clock = Clock::fixed(utc("2026-03-10T09:00:00Z"));
    let recording = || Arc::new(RecordingJob { work: Duration::ZERO }) as Arc<dyn engine::Job>;
    let engine = engine(
        db.pool(),
        &clock,
        "a",
        vec![
            (definition("daily-all", "5 0 * * *", MisfirePolicy::All), recording()),
            (definition("daily-latest", "5 0 * * *", MisfirePolicy::Latest), recording()),
            (definition("quarter-skip", "*/15 * * * *", MisfirePolicy::Skip), recording()),
            (definition("minute-once", "* * * * *", MisfirePolicy::RunOnce), recording()),
        ],
    )
    .await;
    step(&engine).await;
    // Down for three days; back at 2026-03-13 09:07:30 UTC (12:07:30 in Istanbul).
    clock.set(utc("2026-03-13T09:07:30Z")).unwrap();
    for _ in 0..5 {
        step(&engine).await;
    }

    // Every missed day ran once, oldest first, as catch-up.
    let all = log(db.pool(), "daily-all").await;
    let ran: Vec<_> = all.iter().filter(|r| r.2 == "success").map(|r| r.0.unwrap()).collect();
    assert_eq!(ran, vec![utc("2026-03-10T21:05:00Z"), utc("2026-03-11T21:05:00Z"), utc("2026-03-12T21:05:00Z")]);
    assert!(all.iter().all(|r| r.4.as_deref() == Some("catchup")));

    // Only the latest missed day ran; the others are recorded missed.
    let latest = log(db.pool(), "daily-latest").await;
    assert_eq!(latest.len(), 3);
    assert_eq!(latest.iter().filter(|r| r.3.as_deref() == Some("missed")).count(), 2);
    assert_eq!(latest.last().unwrap().2, "success");
    assert_eq!(latest.last().unwrap().0, Some(utc("2026-03-12T21:05:00Z")));

    // Skip: every missed quarter is recorded, none ran.
    let skip = log(db.pool(), "quarter-skip").await;
    assert_eq!(skip.len(), 3 * 24 * 4);
    assert!(skip.iter().all(|r| r.2 == "skipped" && r.3.as_deref() == Some("missed")));

    // Run once: all but the latest minute recorded missed, the latest (on time) ran.
    let once = log(db.pool(), "minute-once").await;
    assert_eq!(once.len(), 3 * 24 * 60 + 7);
    assert_eq!(once.iter().filter(|r| r.2 == "success").count(), 1);
    assert_eq!(once.last().unwrap().0, Some(utc("2026-03-13T09:07:00Z")));
    assert_eq!(once.iter().filter(|r| r.3.as_deref() == Some("missed")).count(), 3 * 24 * 60 + 6);

    // No holes: every expected tick of every job has a row.
    let ticks: i64 = db::query_scalar(
        "SELECT count(DISTINCT (job_name, scheduled_for)) FROM job_execution_logs WHERE scheduled_for IS NOT NULL",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(ticks, 3 + 3 + 3 * 24 * 4 + 3 * 24 * 60 + 7);
}

#[tokio::test]
async fn a_tick_arriving_while_the_job_runs_is_skipped_as_overlap() {
    let db = TestDb::new().await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let job = definition("slow", "* * * * *", MisfirePolicy::RunOnce);
    let engine = engine(db.pool(), &clock, "a", vec![(job, Arc::new(SleepingSqlJob { seconds: 1.5 }))]).await;
    step(&engine).await;
    clock.set(utc("2026-03-10T10:01:00Z")).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let stop = tokio_util::sync::CancellationToken::new();
    engine.tick(&mut tasks, &permits, &stop).await.unwrap();
    assert_eq!(tasks.len(), 1, "10:01 is running");
    clock.set(utc("2026-03-10T10:02:00Z")).unwrap();
    engine.tick(&mut tasks, &permits, &stop).await.unwrap();
    assert_eq!(tasks.len(), 1, "10:02 must not start beside it");
    while tasks.join_next().await.is_some() {}
    let log = log(db.pool(), "slow").await;
    assert_eq!(log[0].2, "success");
    assert_eq!((log[1].2.as_str(), log[1].3.as_deref()), ("skipped", Some("overlap")));
}

#[tokio::test]
async fn a_timeout_cancels_the_run_and_its_sql() {
    let db = TestDb::new().await;
    let sleeper = Arc::new(SleepingSqlJob { seconds: 60.0 });
    let (runs, took) = first_tick(db.pool(), "stuck", Duration::from_millis(700), sleeper).await;
    assert!(took < Duration::from_secs(10));
    assert_eq!(runs[0].outcome, Outcome::Timeout);
    // The server is not left running the statement.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running_statements(db.pool(), "SELECT pg_sleep%").await, 0);
    let log = log(db.pool(), "stuck").await;
    assert_eq!((log[0].2.as_str(), log[0].3.as_deref()), ("failed", Some("timeout")));
}

#[tokio::test]
async fn a_timeout_cancels_the_runs_statements_outside_its_transactions_too() {
    let db = TestDb::new().await;
    let sleeper = Arc::new(SleepingOutsideJob { seconds: 60.0, limit: None });
    let (runs, _) = first_tick(db.pool(), "vacuuming", Duration::from_millis(700), sleeper).await;
    assert_eq!(runs[0].outcome, Outcome::Timeout);
    // Cancelled by its leading comment: no session setting names the run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        running_statements(db.pool(), "/* hattrick %pg_sleep%").await,
        0,
        "the statement outside a transaction is cancelled too"
    );
}

#[tokio::test]
async fn a_statement_outside_the_transactions_past_its_own_limit_is_cancelled_and_fails_the_run() {
    let db = TestDb::new().await;
    let sleeper = Arc::new(SleepingOutsideJob { seconds: 60.0, limit: Some(Duration::from_millis(500)) });
    let (runs, took) = first_tick(db.pool(), "vacuuming", Duration::from_secs(60), sleeper).await;
    assert!(took < Duration::from_secs(10));
    assert_eq!(runs[0].outcome, Outcome::Error);
    assert_eq!(
        runs[0].error.as_deref(),
        Some("SELECT pg_sleep(60) took longer than the test's limit (0.5 s) and was cancelled")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running_statements(db.pool(), "/* hattrick %pg_sleep%").await, 0);
}

#[tokio::test]
async fn a_failed_tick_is_retried_with_exponential_backoff_until_it_succeeds() {
    let db = TestDb::new().await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let mut job = definition("flaky", "0 * * * *", MisfirePolicy::RunOnce);
    job.retry_backoff = Duration::from_secs(30);
    job.retries = 3;
    let engine =
        engine(db.pool(), &clock, "a", vec![(job, Arc::new(FlakyJob { failures: 2, calls: AtomicU32::new(0) }))]).await;
    step(&engine).await;
    clock.set(utc("2026-03-10T11:00:00Z")).unwrap();
    assert_eq!(step(&engine).await[0].outcome, Outcome::Error);
    clock.set(utc("2026-03-10T11:00:29Z")).unwrap();
    assert!(step(&engine).await.is_empty(), "not before 30 s");
    clock.set(utc("2026-03-10T11:00:30Z")).unwrap();
    assert_eq!(step(&engine).await[0].outcome, Outcome::Error, "second attempt");
    clock.set(utc("2026-03-10T11:01:29Z")).unwrap();
    assert!(step(&engine).await.is_empty(), "the second delay is 60 s");
    clock.set(utc("2026-03-10T11:01:30Z")).unwrap();
    assert_eq!(step(&engine).await[0].outcome, Outcome::Success);
    clock.set(utc("2026-03-10T11:30:00Z")).unwrap();
    assert!(step(&engine).await.is_empty(), "nothing more for a tick that succeeded");
    let log = log(db.pool(), "flaky").await;
    let attempts: Vec<_> = log.iter().map(|r| (r.1.unwrap(), r.2.as_str(), r.4.as_deref().unwrap())).collect();
    assert_eq!(attempts, vec![(1, "failed", "schedule"), (2, "failed", "retry"), (3, "success", "retry")]);
}

#[tokio::test]
async fn a_pause_on_one_instance_holds_on_the_others_and_resume_applies_the_misfire_policy() {
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let clock = Clock::fixed(utc("2026-03-10T09:00:00Z"));
    let job = || -> Vec<(engine::JobDefinition, Arc<dyn engine::Job>)> {
        vec![(definition("nightly", "5 0 * * *", MisfirePolicy::All), Arc::new(RecordingJob { work: Duration::ZERO }))]
    };
    let a = engine(db.pool(), &clock, "a", job()).await;
    let b = engine(db.pool(), &clock, "b", job()).await;
    step(&a).await;
    assert!(store::set_paused(db.pool(), "nightly", true, clock.now(), "operator").await.unwrap());
    clock.set(utc("2026-03-12T09:00:00Z")).unwrap();
    assert!(step(&b).await.is_empty(), "b sees the pause made through a");
    let paused = log(db.pool(), "nightly").await;
    assert_eq!(paused.len(), 2);
    assert!(paused.iter().all(|r| r.2 == "skipped" && r.3.as_deref() == Some("paused")));

    assert!(store::set_paused(db.pool(), "nightly", false, clock.now(), "operator").await.unwrap());
    for _ in 0..3 {
        step(&b).await;
    }
    let after = log(db.pool(), "nightly").await;
    let ran: Vec<_> = after.iter().filter(|r| r.2 == "success").map(|r| (r.0.unwrap(), r.1.unwrap())).collect();
    assert_eq!(ran, vec![(utc("2026-03-10T21:05:00Z"), 2), (utc("2026-03-11T21:05:00Z"), 2)]);
}

#[tokio::test]
async fn a_manual_run_is_refused_while_the_job_runs_and_a_dry_run_writes_nothing() {
    let db = TestDb::new().await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let job = definition("slow", "0 0 1 1 *", MisfirePolicy::RunOnce);
    let engine = engine(db.pool(), &clock, "a", vec![(job, Arc::new(SleepingSqlJob { seconds: 1.0 }))]).await;
    let background = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.run_manual("slow", RunArgs::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = engine.run_manual("slow", RunArgs::default()).await;
    assert!(matches!(refused, Err(ManualError::AlreadyRunning(_))), "{refused:?}");
    let first = background.await.unwrap().unwrap();
    assert_eq!(first.outcome, Outcome::Success);
    assert!(matches!(engine.run_manual("nope", RunArgs::default()).await, Err(ManualError::Unknown(_))));

    let before: i64 = db::query_scalar("SELECT count(*) FROM job_execution_logs").fetch_one(db.pool()).await.unwrap();
    let dry = engine.run_manual("slow", RunArgs { dry_run: true, ..RunArgs::default() }).await.unwrap();
    assert_eq!(dry.outcome, Outcome::Success);
    let after: i64 = db::query_scalar("SELECT count(*) FROM job_execution_logs").fetch_one(db.pool()).await.unwrap();
    assert_eq!(before, after);
    let log = log(db.pool(), "slow").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].4.as_deref(), Some("manual"));
    assert_eq!(log[0].0, None, "a manual run has no tick");
}

#[tokio::test]
async fn a_run_whose_instance_stopped_heartbeating_is_abandoned_and_retried() {
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let mut job = definition("hourly", "0 * * * *", MisfirePolicy::RunOnce);
    job.retry_backoff = Duration::ZERO;
    let engine =
        engine(db.pool(), &clock, "survivor", vec![(job, Arc::new(RecordingJob { work: Duration::ZERO }))]).await;
    step(&engine).await;
    // A dead instance's claim: running, last heartbeat long ago.
    db::query(
        "INSERT INTO job_execution_logs (job_name, started_at, status, scheduled_for, trigger, instance, attempt,
             heartbeat_at)
         VALUES ('hourly', '2026-03-10T10:00:00Z', 'running', '2026-03-10T10:00:00Z', 'schedule', 'dead', 1,
                 clock_timestamp() - interval '1 minute')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    // One pass reaps the dead run and, its backoff being zero, claims the next attempt at once.
    let runs = step(&engine).await;
    assert_eq!(runs.len(), 1);
    assert!(step(&engine).await.is_empty());
    let log = log(db.pool(), "hourly").await;
    let rows: Vec<_> =
        log.iter().map(|r| (r.1.unwrap(), r.2.as_str(), r.3.as_deref(), r.4.as_deref().unwrap())).collect();
    assert_eq!(rows, vec![(1, "failed", Some("abandoned"), "schedule"), (2, "success", None, "retry")]);
}

#[tokio::test]
async fn configuration_seeds_definitions_and_does_not_undo_an_operator() {
    let db = TestDb::new().await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:00Z"));
    let job = definition("job", "*/5 * * * *", MisfirePolicy::RunOnce);
    let recording: Arc<dyn engine::Job> = Arc::new(RecordingJob { work: Duration::ZERO });
    let first = engine(db.pool(), &clock, "a", vec![(job.clone(), Arc::clone(&recording))]).await;
    store::set_paused(db.pool(), "job", true, clock.now(), "operator").await.unwrap();
    drop(first);
    let mut changed = job.clone();
    changed.schedule = engine::Schedule::new("*/10 * * * *", changed.schedule.zone()).unwrap();
    let mut registry = engine::Registry::new();
    registry.register(changed, None, recording);
    let second = engine::Engine::new(db.pool().clone(), clock.clone(), registry, settings("b"));
    let changes = second.sync_definitions().await.unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].change.contains("schedule: */5 * * * * -> */10 * * * *"), "{changes:?}");
    let stored = store::load_jobs(db.pool()).await.unwrap();
    assert_eq!(stored[0].definition.schedule.expression(), "*/10 * * * *");
    assert!(stored[0].definition.paused, "a restart does not resume what an operator paused");
}

/// A deploy stops an instance mid-run: the run is recorded `interrupted` (reason `shutdown`), not failed, its
/// outcome is not an error, and its tick goes at once to the next attempt on another instance, retries or not.
#[tokio::test]
async fn a_run_cut_off_by_shutdown_is_interrupted_and_its_tick_goes_to_another_instance_at_once() {
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let clock = Clock::fixed(utc("2026-03-10T10:00:30Z"));
    let mut job = definition("deployed", "* * * * *", MisfirePolicy::RunOnce);
    job.retries = 0;
    let slow = RecordingJob { work: Duration::from_secs(60) };
    let old = engine(db.pool(), &clock, "old", vec![(job.clone(), Arc::new(slow))]).await;
    let new = engine(db.pool(), &clock, "new", vec![(job, Arc::new(RecordingJob { work: Duration::ZERO }))]).await;
    assert!(step(&old).await.is_empty(), "the baseline");
    clock.set(utc("2026-03-10T10:01:00Z")).unwrap();

    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    old.tick(&mut tasks, &permits, &shutdown).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    let cut = tasks.join_next().await.unwrap().unwrap();
    assert_eq!(cut.outcome, Outcome::Interrupted);
    let first = log(db.pool(), "deployed").await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].2.as_str(), first[0].3.as_deref()), ("interrupted", Some("shutdown")));

    let handed = step(&new).await;
    assert_eq!(handed.len(), 1, "the other instance takes the tick at once");
    assert_eq!(handed[0].outcome, Outcome::Success);
    let last = log(db.pool(), "deployed").await;
    assert_eq!(last.len(), 2);
    assert_eq!(
        (last[1].0, last[1].1, last[1].2.as_str(), last[1].4.as_deref()),
        (Some(utc("2026-03-10T10:01:00Z")), Some(2), "success", Some("retry"))
    );
}
