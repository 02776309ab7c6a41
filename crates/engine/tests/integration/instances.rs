//! Several engine instances as separate processes on one database: a simulated day with exactly one run per tick,
//! and a `kill -9` of the instance running a long job.
//!
//! The instances are this test binary itself, re-run with the ignored `worker` test selected and its settings in
//! the environment.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use engine::runner::Engine;
use engine::{Clock, Job, MisfirePolicy, Registry};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// One engine instance, run until SIGTERM. Only does something when started by the tests below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an engine instance process, started by the multi-instance tests"]
async fn worker() {
    let Ok(url) = std::env::var("HT_WORKER_DB") else { return };
    let clock = Clock::parse(&env("HT_WORKER_CLOCK")).unwrap();
    let mut settings = settings(&env("HT_WORKER_INSTANCE"));
    settings.lease = Duration::from_millis(env("HT_WORKER_LEASE_MS").parse().unwrap());
    settings.poll_interval = Duration::from_millis(100);
    let mut registry = Registry::new();
    // Policy `all` queues a tick that arrives while the previous one still runs (a starved CPU can make a run
    // outlast the 100 ms between accelerated ticks), so every tick must run exactly once.
    let mut tick = definition("tick", "* * * * *", MisfirePolicy::All);
    tick.retries = 0;
    registry.register(tick, None, Arc::new(RecordingJob { work: Duration::ZERO }) as Arc<dyn Job>);
    let mut long = definition("long", &env("HT_WORKER_LONG_SCHEDULE"), MisfirePolicy::RunOnce);
    long.retry_backoff = Duration::ZERO;
    long.timeout = Duration::from_secs(120);
    let seconds: f64 = env("HT_WORKER_LONG_SECONDS").parse().unwrap();
    registry.register(long, None, Arc::new(SleepingSqlJob { seconds }) as Arc<dyn Job>);

    let many: usize = std::env::var("HT_WORKER_MANY").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    for i in 0..many {
        let mut job = definition(&format!("bench-{i:03}"), "* * * * *", MisfirePolicy::RunOnce);
        job.retries = 0;
        registry.register(job, None, Arc::new(RecordingJob { work: Duration::ZERO }) as Arc<dyn Job>);
    }
    let pool = db::connect(&url, &db::PoolSettings::default()).await.unwrap();
    let engine = Arc::new(Engine::new(pool, clock, registry, settings));
    engine.sync_definitions().await.unwrap();
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        on_signal.cancel();
    });
    engine.run_until_stopped(shutdown).await;
}

struct Instance {
    name: String,
    child: Child,
}

fn spawn_instance(
    url: &str,
    clock: &str,
    name: &str,
    lease_ms: u64,
    long_schedule: &str,
    long_seconds: f64,
) -> Instance {
    spawn_instance_with(url, clock, name, lease_ms, long_schedule, long_seconds, 0)
}

fn spawn_instance_with(
    url: &str,
    clock: &str,
    name: &str,
    lease_ms: u64,
    long_schedule: &str,
    long_seconds: f64,
    many: usize,
) -> Instance {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["instances::worker", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("HT_WORKER_DB", url)
        .env("HT_WORKER_CLOCK", clock)
        .env("HT_WORKER_INSTANCE", name)
        .env("HT_WORKER_LEASE_MS", lease_ms.to_string())
        .env("HT_WORKER_LONG_SCHEDULE", long_schedule)
        .env("HT_WORKER_LONG_SECONDS", long_seconds.to_string())
        .env("HT_WORKER_MANY", many.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start an instance");
    Instance { name: name.to_owned(), child }
}

fn signal(instance: &Instance, signal: &str) {
    let status = Command::new("kill").args([signal, &instance.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn real_ms_from_now(ms: u64) -> u128 {
    (SystemTime::now() + Duration::from_millis(ms)).duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_run_each_tick_of_a_simulated_day_exactly_once() {
    const FACTOR: u64 = 600;
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let day_start = utc("2026-03-09T21:00:00Z"); // midnight in Istanbul
    // Every instance reads the same clock: the business day starts 3 s from now and runs 600 times faster.
    let clock = format!("scaled:{},{FACTOR},{}", day_start.to_rfc3339(), real_ms_from_now(3_000));
    let mut instances: Vec<Instance> =
        ["i1", "i2", "i3"].iter().map(|name| spawn_instance(db.url(), &clock, name, 5_000, "0 0 1 1 *", 0.0)).collect();
    let reader = Clock::parse(&clock).unwrap();
    let day_end = day_start + TimeDelta::hours(24);
    while reader.now() < day_end + TimeDelta::minutes(2) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for instance in &mut instances {
            assert!(instance.child.try_wait().unwrap().is_none(), "{} died", instance.name);
        }
    }
    // The promise is each tick exactly once, not how closely the instances keep up with a clock 600 times faster
    // than real time (through a pooler every statement costs more round trips): let them reach the day's end.
    let caught_up = std::time::Instant::now();
    loop {
        let last: Option<DateTime<Utc>> =
            db::query_scalar("SELECT max(scheduled_for) FROM job_execution_logs WHERE job_name = 'tick'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        if last.is_some_and(|last| last >= day_end) {
            break;
        }
        assert!(caught_up.elapsed() < Duration::from_secs(60), "the instances never reached the day's end: {last:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for instance in &instances {
        signal(instance, "-TERM");
    }
    for instance in &mut instances {
        assert!(instance.child.wait().unwrap().success(), "{} did not stop cleanly", instance.name);
    }

    let rows: Vec<(DateTime<Utc>, i64, i64, String, i64)> = db::query_as(
        "SELECT scheduled_for, count(*), count(*) FILTER (WHERE status = 'success'),
                string_agg(status || '/' || coalesce(reason, '-') || '/' || coalesce(instance, '-'), ', '),
                (SELECT count(*) FROM test_runs r WHERE r.job = 'tick' AND r.tick = l.scheduled_for)
         FROM job_execution_logs l WHERE job_name = 'tick' AND scheduled_for <= $1
         GROUP BY scheduled_for ORDER BY scheduled_for",
    )
    .bind(day_end)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let first = rows.first().expect("ticks ran").0;
    assert!(first <= day_start + TimeDelta::minutes(2), "the first tick is at the start: {first}");
    let expected_ticks = (day_end - first).num_minutes() + 1;
    assert_eq!(i64::try_from(rows.len()).unwrap(), expected_ticks, "no gaps");
    for (pair, row) in rows.windows(2).zip(rows.iter().skip(1)) {
        assert_eq!(pair[1].0 - pair[0].0, TimeDelta::minutes(1), "gap before {}", row.0);
    }
    for (tick, log_rows, successes, statuses, job_runs) in &rows {
        assert_eq!(
            (*log_rows, *successes, *job_runs),
            (1, 1, 1),
            "tick {tick}: one row, one success, one run: {statuses}"
        );
    }
    let per_instance: Vec<(String, i64)> =
        db::query_as("SELECT instance, count(*) FROM job_execution_logs WHERE job_name = 'tick' GROUP BY 1 ORDER BY 1")
            .fetch_all(db.pool())
            .await
            .unwrap();
    eprintln!("{} ticks; runs per instance: {per_instance:?}", rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_instance_running_a_long_job_hands_it_to_a_survivor() {
    let db = TestDb::new().await;
    // Real speed; the long job's hourly tick comes 2 s after start and takes 6 s.
    let clock = format!("scaled:{},1,{}", utc("2026-03-10T09:59:58Z").to_rfc3339(), real_ms_from_now(0));
    let mut instances: Vec<Instance> =
        ["a", "b"].iter().map(|name| spawn_instance(db.url(), &clock, name, 2_000, "0 * * * *", 6.0)).collect();

    let mut owner = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        owner = db::query_scalar::<String>(
            "SELECT instance FROM job_execution_logs WHERE job_name = 'long' AND status = 'running'",
        )
        .fetch_optional(db.pool())
        .await
        .unwrap();
        if owner.is_some() {
            break;
        }
    }
    let owner = owner.expect("an instance claimed the long run");
    let victim = instances.iter().position(|i| owner.contains(&i.name) || owner == i.name).unwrap();
    signal(&instances[victim], "-KILL");
    instances[victim].child.wait().unwrap();

    let mut done = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let successes: i64 =
            db::query_scalar("SELECT count(*) FROM job_execution_logs WHERE job_name = 'long' AND status = 'success'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        if successes > 0 {
            done = true;
            break;
        }
    }
    for (i, instance) in instances.iter_mut().enumerate() {
        if i != victim {
            signal(instance, "-TERM");
            instance.child.wait().unwrap();
        }
    }
    assert!(done, "the survivor finished the job");
    let log: Vec<(i32, String, Option<String>, String, String)> = db::query_as(
        "SELECT attempt, status, reason, trigger, instance FROM job_execution_logs WHERE job_name = 'long'
         ORDER BY attempt",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!((log[0].0, log[0].1.as_str(), log[0].2.as_deref()), (1, "failed", Some("abandoned")));
    assert_eq!(log[0].4, owner);
    assert_eq!((log[1].0, log[1].1.as_str(), log[1].3.as_str()), (2, "success", "retry"));
    assert_ne!(log[1].4, owner, "a surviving instance ran it");
}

/// The engine benchmark of BENCHMARKS.md: 200 every-minute jobs, three instances, a simulated day.
/// `cargo test --release -p engine --test integration instances::bench_many_jobs -- --ignored --nocapture`;
/// HT_BENCH_JOBS, HT_BENCH_FACTOR and HT_BENCH_HOURS change its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes long, run by hand"]
async fn bench_many_jobs() {
    let knob = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (jobs, factor, hours) = (knob("HT_BENCH_JOBS", 200), knob("HT_BENCH_FACTOR", 60), knob("HT_BENCH_HOURS", 24));
    let db = TestDb::new().await;
    create_test_runs(db.pool()).await;
    let day_start = utc("2026-03-09T21:00:00Z");
    let clock = format!("scaled:{},{factor},{}", day_start.to_rfc3339(), real_ms_from_now(5_000));
    let reader = Clock::parse(&clock).unwrap();
    let transactions = || async {
        db::query_scalar::<i64>(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    let mut instances: Vec<Instance> = ["i1", "i2", "i3"]
        .iter()
        .map(|name| {
            spawn_instance_with(db.url(), &clock, name, 30_000, "0 0 1 1 *", 0.0, usize::try_from(jobs).unwrap())
        })
        .collect();
    while reader.now() < day_start {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = transactions().await;
    let end = day_start + TimeDelta::hours(i64::try_from(hours).unwrap());
    // Two more business minutes, so the last ticks are claimed before the instances stop.
    while reader.now() < end + TimeDelta::minutes(2) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = transactions().await;
    for instance in &instances {
        signal(instance, "-TERM");
    }
    for instance in &mut instances {
        instance.child.wait().unwrap();
    }
    let (ticks, runs, duplicates, skipped): (i64, i64, i64, String) = db::query_as(
        "SELECT count(DISTINCT (job_name, scheduled_for)),
                count(*) FILTER (WHERE status = 'success'),
                (SELECT count(*) FROM (SELECT 1 FROM test_runs GROUP BY job, tick HAVING count(*) > 1) d),
                coalesce((SELECT string_agg(reason || ' ' || n, ', ') FROM (
                    SELECT reason, count(*) AS n FROM job_execution_logs
                    WHERE job_name LIKE 'bench-%' AND status = 'skipped' AND scheduled_for > $1 AND scheduled_for <= $2
                    GROUP BY reason) r), 'none')
         FROM job_execution_logs WHERE job_name LIKE 'bench-%' AND scheduled_for > $1 AND scheduled_for <= $2",
    )
    .bind(day_start)
    .bind(end)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let (p50, p99, max): (f64, f64, f64) = db::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d)
         FROM (SELECT extract(epoch FROM started_at - scheduled_for)::float8 AS d FROM job_execution_logs
               WHERE job_name LIKE 'bench-%' AND status = 'success' AND scheduled_for > $1 AND scheduled_for <= $2) s",
    )
    .bind(day_start)
    .bind(end)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let expected = i64::try_from(jobs * hours * 60).unwrap();
    let ms = |business_seconds: f64| business_seconds * 1000.0 / factor as f64;
    eprintln!(
        "jobs={jobs} factor={factor} hours={hours}: expected ticks {expected}, ticks with a row {ticks}, successful runs \
         {runs}, skipped ({skipped}), duplicate runs {duplicates}; claim delay (real ms) p50 {:.1} p99 {:.1} max {:.1}; \
         database transactions per tick {:.2}",
        ms(p50),
        ms(p99),
        ms(max),
        (after - before) as f64 / expected as f64
    );
    assert_eq!(duplicates, 0);
}
