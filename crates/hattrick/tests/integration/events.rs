//! Reacting to the app's writes (docs/events.md): change-capture triggers, the lane's looks at the change table,
//! incremental event runs.
//!
//! The app's writes come from the test database's pool, which is named like the app (not `hattrick...`), so the
//! triggers record them. The lane looks every 100 ms, the default; the tests hold it to the contract's 2 s.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use db::Pool;
use engine::events::EventSettings;
use hattrick::config::{Settings, Sources};
use hattrick::startup;
use testkit::{Clock, TestDb};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The engine of one instance with event processing on.
struct Events {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Events {
    /// Through `url` (a pooler when the suite runs through one), looking at the change table every 100 ms.
    async fn start(url: &str) -> Self {
        Self::start_with(url, false).await
    }

    /// [`Events::start`], and with `scheduler` the scheduler loop too, as `serve` runs it, on a short lease: it is
    /// what reaps a run whose end a database crash lost.
    async fn start_with(url: &str, scheduler: bool) -> Self {
        let mut env = vec![("DATABASE_URL".to_owned(), url.to_owned())];
        if scheduler {
            env.push(("HATTRICK_ENGINE__LEASE".to_owned(), "3s".to_owned()));
            env.push(("HATTRICK_ENGINE__HEARTBEAT".to_owned(), "1s".to_owned()));
        }
        let settings = Settings::load(&Sources { file: None, env }).unwrap();
        let engine = startup::engine(&settings, Clock::system(), startup::Definitions::Sync).await.unwrap();
        let stop = CancellationToken::new();
        let events = EventSettings { poll_interval: settings.events.poll_interval.0 };
        let mut tasks = vec![tokio::spawn(Arc::clone(&engine).run_events(events, stop.clone()))];
        if scheduler {
            tasks.push(tokio::spawn(Arc::clone(&engine).run_until_stopped(stop.clone())));
        }
        Self { stop, tasks }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// Polls `sql` (a boolean) until true; returns how long it took, or panics after `limit`.
async fn within(pool: &Pool, limit: Duration, sql: &str, bind: Uuid) -> Duration {
    let started = Instant::now();
    loop {
        let done: bool =
            db::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(bind).fetch_one(pool).await.unwrap();
        if done {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn badge(pool: &Pool, slug: &str, condition: &str) -> Uuid {
    db::query_scalar(
        "INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition, reward_xp, reward_credits)
         VALUES ($1, $1, $1, 'https://example.com/b.png', 'social', $2::jsonb, 50, 5) RETURNING id",
    )
    .bind(slug)
    .bind(condition)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn comment(pool: &Pool, user: Uuid) {
    db::query("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (7, $1, 'Gol!')")
        .bind(user)
        .execute(pool)
        .await
        .unwrap();
}

const HAS_BADGE: &str = "SELECT EXISTS (SELECT 1 FROM customer_badges WHERE customer_user_id = $1)
                         AND EXISTS (SELECT 1 FROM push_outbox WHERE customer_user_id = $1 AND dedupe_key LIKE 'badge:%')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_reaching_a_badge_threshold_unlocks_it_within_two_seconds() {
    let db = TestDb::new().await;
    let events = Events::start(db.url()).await;
    badge(db.pool(), "chatty", r#"{"type": "comments", "count": 3}"#).await;
    let user = db.user().await;
    let bystander = db.user().await;
    comment(db.pool(), user).await;
    comment(db.pool(), user).await;
    comment(db.pool(), bystander).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owned: i64 = db::query_scalar("SELECT count(*) FROM customer_badges").fetch_one(db.pool()).await.unwrap();
    assert_eq!(owned, 0, "two comments are not three");

    comment(db.pool(), user).await;
    let took = within(db.pool(), Duration::from_secs(2), HAS_BADGE, user).await;
    eprintln!("comment to badge and push: {took:?}");
    let run_done = "SELECT EXISTS (SELECT 1 FROM job_execution_logs WHERE job_name = 'badge-auto-unlock'
                                   AND items_processed > 0 AND status <> 'running') OR $1 IS NULL";
    within(db.pool(), Duration::from_secs(5), run_done, user).await;
    let runs: Vec<(String, String, i32)> = db::query_as(
        "SELECT trigger, status, items_processed FROM job_execution_logs
         WHERE job_name = 'badge-auto-unlock' AND items_processed > 0",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(runs, [("event".to_owned(), "success".to_owned(), 1)]);
    let details: serde_json::Value = db::query_scalar(
        "SELECT details FROM job_execution_logs WHERE job_name = 'badge-auto-unlock' AND items_processed > 0",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(details["users_evaluated"], 1, "only the user who commented was evaluated: {details}");
    // Every change was consumed; the scheduled sweep finds nothing left to do.
    let left: i64 = db::query_scalar("SELECT count(*) FROM hattrick_changes").fetch_one(db.pool()).await.unwrap();
    assert_eq!(left, 0);
    events.stop().await;
    let sweep = events_free_sweep(&db, "badge-auto-unlock").await;
    assert_eq!(sweep, 0, "the sweep had nothing left");
}

/// Runs `job` as its scheduled sweep would and returns its items.
async fn events_free_sweep(db: &TestDb, job: &str) -> i64 {
    let env = vec![("DATABASE_URL".to_owned(), db.url().to_owned())];
    let settings = Settings::load(&Sources { file: None, env }).unwrap();
    let engine = startup::engine(&settings, Clock::system(), startup::Definitions::Sync).await.unwrap();
    let result = engine.run_manual(job, engine::RunArgs::default()).await.unwrap();
    assert!(result.error.is_none(), "{:?}", result.error);
    result.report.unwrap().items
}

/// A referral created an hour ago; returns (referrer, referred).
async fn referral(pool: &Pool, db: &TestDb) -> (Uuid, Uuid) {
    let (referrer, referred) = (db.user().await, db.user().await);
    db::query(
        "INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at, expires_at)
         VALUES ($1, $2, 'CODE', now() - interval '1 hour', now() + interval '29 days')",
    )
    .bind(referrer)
    .bind(referred)
    .execute(pool)
    .await
    .unwrap();
    (referrer, referred)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referred_users_first_login_pays_tier_2_within_two_seconds() {
    let db = TestDb::new().await;
    let events = Events::start(db.url()).await;
    badge(db.pool(), "recruiter", r#"{"type": "referrals", "count": 1}"#).await;
    let (referrer, referred) = referral(db.pool(), &db).await;
    let (_, other_referred) = referral(db.pool(), &db).await;
    // Someone else's profile change is not a login of a referred user.
    db::query("UPDATE customer_users SET locale_preference = 'en' WHERE id = $1")
        .bind(referrer)
        .execute(db.pool())
        .await
        .unwrap();

    db::query("UPDATE customer_users SET last_login_at = now() WHERE id = $1")
        .bind(referred)
        .execute(db.pool())
        .await
        .unwrap();
    let paid =
        "SELECT EXISTS (SELECT 1 FROM referrals WHERE referred_user_id = $1 AND status = 'completed' AND tier = 2)";
    let took = within(db.pool(), Duration::from_secs(2), paid, referred).await;
    eprintln!("login to tier 2: {took:?}");
    let credited: i64 = db::query_scalar(
        "SELECT count(*) FROM customer_credit_transactions WHERE customer_user_id = ANY($1) AND transaction_type = 'referral_bonus'",
    )
    .bind(vec![referrer, referred])
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(credited, 2, "referrer and referred are paid");
    // The payment changed the referrer's referral count: the `referrals` badge follows within seconds too.
    let took = within(db.pool(), Duration::from_secs(2), HAS_BADGE, referrer).await;
    eprintln!("tier 2 payment to the referrer's referral badge: {took:?}");
    let pending: String = db::query_scalar("SELECT status FROM referrals WHERE referred_user_id = $1")
        .bind(other_referred)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(pending, "pending", "a referral whose user did not log in stays pending");

    // An OAuth login counts too.
    let (_, oauth_referred) = referral(db.pool(), &db).await;
    db::query(
        "INSERT INTO customer_oauth_identities (customer_user_id, provider, provider_user_id, last_login_at)
         VALUES ($1, 'google', $2, now())",
    )
    .bind(oauth_referred)
    .bind(format!("g-{oauth_referred}"))
    .execute(db.pool())
    .await
    .unwrap();
    within(db.pool(), Duration::from_secs(2), paid, oauth_referred).await;
    events.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_pays_tier_3_within_two_seconds() {
    let db = TestDb::new().await;
    let events = Events::start(db.url()).await;
    let (_, referred) = referral(db.pool(), &db).await;
    db::query("UPDATE referrals SET status = 'completed', tier = 2 WHERE referred_user_id = $1")
        .bind(referred)
        .execute(db.pool())
        .await
        .unwrap();
    db::query(
        "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, started_at, expired_at)
         VALUES ($1, 'active', 'ios', 99.90, now(), now() + interval '30 days')",
    )
    .bind(referred)
    .execute(db.pool())
    .await
    .unwrap();
    let paid =
        "SELECT EXISTS (SELECT 1 FROM referrals WHERE referred_user_id = $1 AND status = 'rewarded' AND tier = 3)";
    let took = within(db.pool(), Duration::from_secs(2), paid, referred).await;
    eprintln!("subscription to tier 3: {took:?}");
    events.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_events_off_there_are_no_triggers_and_the_sweep_still_pays() {
    let db = TestDb::new().await;
    let mut migrator = db::migrate::Migrator::connect(db.url()).await.unwrap().with_events(false);
    let plan = migrator.plan().await.unwrap();
    assert!(plan.to_string().contains("remove the change-capture triggers"), "{plan}");
    migrator.apply(&plan).await.unwrap();
    assert!(migrator.plan().await.unwrap().actions.is_empty(), "a second run changes nothing");
    drop(migrator);
    let triggers: i64 = db::query_scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'hattrick\\_changes\\_%'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(triggers, 0);

    badge(db.pool(), "first-words", r#"{"type": "comments", "count": 1}"#).await;
    let user = db.user().await;
    comment(db.pool(), user).await;
    let changes: i64 = db::query_scalar("SELECT count(*) FROM hattrick_changes").fetch_one(db.pool()).await.unwrap();
    assert_eq!(changes, 0, "nothing is captured with events off");
    assert_eq!(events_free_sweep(&db, "badge-auto-unlock").await, 1, "the sweep unlocks it");

    // Turning events back on installs the triggers again.
    let mut migrator = db::migrate::Migrator::connect(db.url()).await.unwrap();
    let plan = migrator.plan().await.unwrap();
    migrator.apply(&plan).await.unwrap();
    comment(db.pool(), user).await;
    let changes: i64 = db::query_scalar("SELECT count(*) FROM hattrick_changes").fetch_one(db.pool()).await.unwrap();
    assert_eq!(changes, 1);
}

#[tokio::test]
async fn hattricks_own_writes_and_bulk_statements_capture_one_row_per_user_and_statement() {
    let db = TestDb::new().await;
    let (a, b) = (db.user().await, db.user().await);
    // One statement with three comments of two users: two rows (one per user), whatever the row count.
    db::query(
        "INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'what a goal'), (1, $1, 'again!'), (1, $2, 'offside')",
    )
    .bind(a)
    .bind(b)
    .execute(db.pool())
    .await
    .unwrap();
    let rows: Vec<(String, Uuid)> = db::query_as("SELECT topic, subject FROM hattrick_changes ORDER BY subject")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let mut expected = vec![("badge-auto-unlock".to_owned(), a), ("badge-auto-unlock".to_owned(), b)];
    expected.sort_by_key(|(_, id)| *id);
    assert_eq!(rows, expected);

    // A session of hattrick's records nothing.
    let mut own = db::connect_one(db.direct_url(), "hattrick").await.unwrap();
    db::query("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'my own words')")
        .bind(a)
        .execute(&mut own)
        .await
        .unwrap();
    let count: i64 = db::query_scalar("SELECT count(*) FROM hattrick_changes").fetch_one(db.pool()).await.unwrap();
    assert_eq!(count, 2);

    // A rolled-back write leaves no change behind.
    let mut tx = db.pool().begin().await.unwrap();
    db::query("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'never mind')")
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let count: i64 = db::query_scalar("SELECT count(*) FROM hattrick_changes").fetch_one(db.pool()).await.unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn nothing_the_app_runs_of_hattricks_takes_the_notification_lock() {
    let db = TestDb::new().await;
    // A notifying transaction holds PostgreSQL's cluster-wide notification lock through its commit's flush: the
    // app's writes would commit one at a time. None of the functions hattrick installs (the capture triggers,
    // the ledger functions the app calls) may notify.
    let notifying: Vec<String> = db::query_scalar(
        "SELECT proname::text FROM pg_proc WHERE proname LIKE 'hattrick%' AND prosrc ~* 'notify' ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(notifying, Vec::<String>::new());
    let capturing: i64 = db::query_scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'hattrick\\_capture\\_%'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(capturing, 3, "the capture functions are installed, so the check above looked at them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_while_events_flow_loses_nothing() {
    let mut cluster = common::PrivateCluster::start().await;
    let url = cluster.url();
    let mut migrator = db::migrate::Migrator::connect(&url).await.unwrap();
    let plan = migrator.plan().await.unwrap();
    migrator.apply(&plan).await.unwrap();
    drop(migrator);
    let app = db::connect(
        &url,
        &db::PoolSettings { application_name: "app".into(), max_connections: 4, ..Default::default() },
    )
    .await
    .unwrap();
    badge(&app, "first-words", r#"{"type": "comments", "count": 1}"#).await;
    let mut users = Vec::new();
    for i in 0..60 {
        let id = testkit::NewUser::new().email(format!("fan{i}@example.com")).insert(&app).await;
        users.push(id);
    }
    // The scheduler too: with synchronous_commit off, the crash can lose the commit that recorded a run's end, and
    // the row stays `running` until a scheduler reaps it (as every `serve` does) and the lane moves on.
    let events = Events::start_with(&url, true).await;

    // The app comments steadily; half-way the database crashes and comes back. Writes are retried until they
    // commit, as an app would; the ones right after the restart land while hattrick's looks still fail.
    let mut committed = 0;
    for (i, user) in users.iter().enumerate() {
        if i == 30 {
            cluster.restart(Duration::from_secs(1)).await;
        }
        let mut attempts = 0;
        loop {
            let written =
                db::query("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (9, $1, 'goool')")
                    .bind(user)
                    .execute(&app)
                    .await;
            attempts += 1;
            match written {
                Ok(_) => break,
                Err(error) => {
                    assert!(attempts < 100, "the database did not come back: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        committed += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(committed, 60);

    // Every commenter gets the badge and its push exactly once; nothing is left in the change table. The
    // throwaway cluster runs with synchronous_commit off, so a crash may take the last acknowledged commits with
    // it (comments and their change rows together): the promise is about the comments that survived.
    let started = Instant::now();
    loop {
        let (commenters, badges, pushes, left): (i64, i64, i64, i64) = db::query_as(
            "SELECT (SELECT count(DISTINCT customer_user_id) FROM match_comments),
                    (SELECT count(*) FROM customer_badges),
                    (SELECT count(*) FROM push_outbox WHERE dedupe_key LIKE 'badge:%'),
                    (SELECT count(*) FROM hattrick_changes)",
        )
        .fetch_one(&app)
        .await
        .unwrap_or((-1, -1, -1, -1));
        assert!(!(0..55).contains(&commenters), "at most a few commits lost in the crash: {commenters}");
        if commenters > 0 && badges == commenters && pushes == commenters && left == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let runs: Vec<(String, String, Option<String>, Option<String>)> = db::query_as(
                "SELECT job_name, status, reason, error_message FROM job_execution_logs
                 WHERE trigger = 'event' ORDER BY started_at DESC LIMIT 5",
            )
            .fetch_all(&app)
            .await
            .unwrap_or_default();
            let sessions: Vec<String> = db::query_scalar(
                "SELECT concat_ws(' | ', application_name, state, wait_event, left(query, 120)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_all(&app)
            .await
            .unwrap_or_default();
            panic!(
                "after the restart: {commenters} commenters, {badges} badges, {pushes} pushes, {left} changes left; \
                 last event runs: {runs:?}; sessions: {sessions:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    testkit::assert_ledger_invariants(&app).await;
    events.stop().await;
    app.close().await;
}

/// A tiny deterministic generator (xorshift64*), so both databases of a case get the same changes.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// Applies `count` random app writes (comments, likes, settled predictions, streaks, XP, credits earned,
/// subscriptions, deletions) to users chosen by their rank, the same for the same `seed`.
async fn random_changes(pool: &Pool, users: u64, seed: u64, count: usize) {
    let mut dice = Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for step in 0..count {
        let rank = i64::try_from(dice.next(users)).unwrap();
        let amount = i64::try_from(dice.next(40) + 1).unwrap();
        let user: Uuid = db::query_scalar("SELECT id FROM customer_users ORDER BY email OFFSET $1 LIMIT 1")
            .bind(rank)
            .fetch_one(pool)
            .await
            .unwrap();
        let sql = match dice.next(8) {
            0 => {
                "INSERT INTO match_comments (match_id, customer_user_id, content)
                  SELECT 500 + g, $1, 'comment number ' || g || ' ' || $2 FROM generate_series(1, $2::int) g"
            }
            1 => {
                "UPDATE match_comments SET like_count = coalesce(like_count, 0) + $2 * 5
                  WHERE id = (SELECT id FROM match_comments WHERE customer_user_id = $1 ORDER BY id LIMIT 1)"
            }
            2 => {
                "INSERT INTO customer_predictions (customer_user_id, match_id, prediction, is_correct, settled_at)
                  SELECT $1, 900000 + g, 'home', g % 4 <> 0, now() FROM generate_series(1, $2::int) g
                  ON CONFLICT DO NOTHING"
            }
            3 => {
                "UPDATE customer_xp SET current_streak_days = current_streak_days + $2,
                         longest_streak_days = greatest(longest_streak_days, current_streak_days + $2)
                  WHERE customer_user_id = $1"
            }
            // XP and credits as the app moves them: through the ledger functions (docs/ledger.md).
            4 => {
                "SELECT hattrick_grant_xp($1, ($2 * 150)::int, 'prediction_correct', 'app-xp:' || $1 || ':' || $2 || ':' || clock_timestamp())"
            }
            5 => {
                "SELECT hattrick_grant_credits($1, ($2 * 100)::int, 'ad_reward', 'app-cr:' || $1 || ':' || $2 || ':' || clock_timestamp())"
            }
            6 => {
                "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, started_at, expired_at)
                  VALUES ($1, 'active', 'android', 49.90 + $2, now() - interval '1 day', now() + interval '29 days')"
            }
            _ if step % 3 == 0 => "UPDATE customer_users SET deleted_at = now() WHERE id = $1 AND $2 > 0",
            _ => "INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'one more ' || $2)",
        };
        db::query(sqlx::AssertSqlSafe(sql)).bind(user).bind(amount).execute(pool).await.unwrap();
    }
}

/// Every (user email, badge slug) owned, and the credit and XP totals.
async fn outcome(pool: &Pool) -> (Vec<(String, String)>, i64, i64) {
    let owned = db::query_as(
        "SELECT u.email, b.slug FROM customer_badges cb JOIN customer_users u ON u.id = cb.customer_user_id
         JOIN badges b ON b.id = cb.badge_id ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let (credits, xp): (i64, i64) = db::query_as(
        "SELECT (SELECT coalesce(sum(amount), 0) FROM customer_credit_transactions),
                (SELECT coalesce(sum(xp_amount), 0) FROM customer_xp_transactions)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (owned, credits, xp)
}

/// Event runs of `job` until its changes are consumed; returns the items granted.
async fn event_runs(engine: &engine::Engine, job: &str) -> i64 {
    let mut items = 0;
    loop {
        let left: bool = db::query_scalar("SELECT EXISTS (SELECT 1 FROM hattrick_changes WHERE topic = $1)")
            .bind(job)
            .fetch_one(engine.pool())
            .await
            .unwrap();
        if !left {
            return items;
        }
        let claim =
            engine::store::claim_event(engine.pool(), job, engine.clock().now(), "test").await.unwrap().unwrap();
        let definition = engine.registry().definition(job).unwrap();
        let result = engine.execute(&claim, &definition, engine::RunArgs::default(), CancellationToken::new()).await;
        assert!(result.error.is_none(), "{:?}", result.error);
        items += result.report.unwrap().items;
    }
}

/// Sweeps until a sweep unlocks nothing (each sweep settles its own cascades, so the second finds nothing unless the
/// app wrote meanwhile); returns the unlocks.
async fn sweep_to_fixpoint(engine: &engine::Engine) -> i64 {
    let mut total = 0;
    for _ in 0..10 {
        let result = engine.run_manual("badge-auto-unlock", engine::RunArgs::default()).await.unwrap();
        let items = result.report.unwrap().items;
        if items == 0 {
            return total;
        }
        total += items;
    }
    panic!("sweeps did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_evaluation_grants_exactly_what_a_full_sweep_grants() {
    const USERS: u64 = 300;
    for case in 1..=3u64 {
        let (incremental, full) = tokio::join!(TestDb::new(), TestDb::new());
        let options = seed::SeedOptions { now: Some(chrono::Utc::now()), ..seed::SeedOptions::new(USERS, case) };
        let mut engines = Vec::new();
        for db in [&incremental, &full] {
            seed::seed_database(db.url(), &options).await.unwrap();
            let env = vec![("DATABASE_URL".to_owned(), db.url().to_owned())];
            let settings = Settings::load(&Sources { file: None, env }).unwrap();
            let engine = startup::engine(&settings, Clock::system(), startup::Definitions::Sync).await.unwrap();
            // The baseline: everything the seeded population earned is granted, cascades included; nothing pending.
            sweep_to_fixpoint(&engine).await;
            db::query("DELETE FROM hattrick_changes").execute(db.pool()).await.unwrap();
            random_changes(db.pool(), USERS, case, 120).await;
            engines.push(engine);
        }
        assert_eq!(outcome(incremental.pool()).await, outcome(full.pool()).await, "case {case}: same start");

        let granted_by_events = event_runs(&engines[0], "badge-auto-unlock").await;
        let granted_by_sweep = sweep_to_fixpoint(&engines[1]).await;
        assert!(granted_by_sweep > 0, "case {case}: the random changes unlocked something");
        assert_eq!(granted_by_events, granted_by_sweep, "case {case}");
        assert_eq!(
            outcome(incremental.pool()).await,
            outcome(full.pool()).await,
            "case {case}: same badges and rewards"
        );

        // When events kept up, the sweep finds nothing (cascades included: the event run settled them).
        let after = engines[0].run_manual("badge-auto-unlock", engine::RunArgs::default()).await.unwrap();
        assert_eq!(after.report.unwrap().items, 0, "case {case}");
        eprintln!("case {case}: {granted_by_events} unlocks, the same by events and by a sweep");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_looks_at_the_table_when_it_starts_not_a_poll_interval_later() {
    let db = TestDb::new().await;
    badge(db.pool(), "first-words", r#"{"type": "comments", "count": 1}"#).await;
    let user = db.user().await;
    // Made while no lane runs.
    comment(db.pool(), user).await;
    let env = vec![("DATABASE_URL".to_owned(), db.url().to_owned())];
    let settings = Settings::load(&Sources { file: None, env }).unwrap();
    let engine = startup::engine(&settings, Clock::system(), startup::Definitions::Sync).await.unwrap();
    let stop = CancellationToken::new();
    // Looking once a minute.
    let events = EventSettings { poll_interval: Duration::from_secs(60) };
    let lane = tokio::spawn(Arc::clone(&engine).run_events(events, stop.clone()));
    within(db.pool(), Duration::from_secs(5), HAS_BADGE, user).await;
    stop.cancel();
    lane.await.unwrap();
}

/// Rows a run that died two days ago left in every run-keyed scratch table.
const DEAD_RUN_ROWS: &[(&str, &str)] = &[
    ("hattrick_run_changes", "INSERT INTO hattrick_run_changes (run_id, change_id, created_at) VALUES ($1, -1, $2)"),
    ("hattrick_run_subjects", "INSERT INTO hattrick_run_subjects (run_id, subject, created_at) VALUES ($1, $1, $2)"),
    (
        "hattrick_run_badge_candidates",
        "INSERT INTO hattrick_run_badge_candidates (run_id, customer_user_id, badge_id, created_at)
         VALUES ($1, $1, $1, $2)",
    ),
    ("hattrick_run_cascade", "INSERT INTO hattrick_run_cascade (run_id, subject, created_at) VALUES ($1, $1, $2)"),
    (
        "hattrick_run_referral_queue",
        "INSERT INTO hattrick_run_referral_queue (run_id, referral_id, created_at) VALUES ($1, $1, $2)",
    ),
];

/// Which scratch tables still hold the dead run's rows.
async fn dead_rows_left(pool: &Pool, dead: Uuid) -> Vec<&'static str> {
    let mut left = Vec::new();
    for (table, _) in DEAD_RUN_ROWS {
        let there: bool =
            db::query_scalar(sqlx::AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE run_id = $1)")))
                .bind(dead)
                .fetch_one(pool)
                .await
                .unwrap();
        if there {
            left.push(*table);
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_runs_leave_a_dead_runs_scratch_rows_to_the_scheduled_runs() {
    let db = TestDb::new().await;
    let env = vec![("DATABASE_URL".to_owned(), db.url().to_owned())];
    let settings = Settings::load(&Sources { file: None, env }).unwrap();
    let engine = startup::engine(&settings, Clock::system(), startup::Definitions::Sync).await.unwrap();
    let dead = Uuid::new_v4();
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    for (_, insert) in DEAD_RUN_ROWS {
        db::query(sqlx::AssertSqlSafe(*insert)).bind(dead).bind(two_days_ago).execute(db.pool()).await.unwrap();
    }
    let everything: Vec<&str> = DEAD_RUN_ROWS.iter().map(|(table, _)| *table).collect();
    badge(db.pool(), "first_words", r#"{"type": "comments", "count": 1}"#).await;
    let user = db.user().await;
    comment(db.pool(), user).await;

    // An event run clears its own rows by run id and reads no table whole.
    assert_eq!(event_runs(&engine, "badge-auto-unlock").await, 1);
    assert_eq!(dead_rows_left(db.pool(), dead).await, everything);

    // A scheduled or manual run purges its own tables and the event runs' tables.
    let sweep = engine.run_manual("badge-auto-unlock", engine::RunArgs::default()).await.unwrap();
    assert!(sweep.error.is_none(), "{:?}", sweep.error);
    assert_eq!(dead_rows_left(db.pool(), dead).await, ["hattrick_run_referral_queue"]);
    let tier2 = engine.run_manual("referral-tier2", engine::RunArgs::default()).await.unwrap();
    assert!(tier2.error.is_none(), "{:?}", tier2.error);
    assert_eq!(dead_rows_left(db.pool(), dead).await, Vec::<&str>::new());
}
