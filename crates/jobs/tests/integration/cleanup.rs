//! `dead-token-cleanup` and `old-logs-cleanup` against the real PostgreSQL: what goes, what stays, ledgers that
//! still sum to their balances after compaction, and batches that never block a concurrent writer for long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};
use engine::{Job, JobReport, RunArgs};
use jobs::cleanup::Batching;
use jobs::{DeadTokenCleanup, OldLogsCleanup};
use testkit::{TestDb, assert_ledger_invariants};
use uuid::Uuid;

const NOW: &str = "2026-12-01T01:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW).unwrap().with_timezone(&Utc)
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - Duration::days(days)
}

async fn run(db: &TestDb, job: &dyn Job, name: &str) -> JobReport {
    job.run(&db.context(name, now(), RunArgs::default())).await.unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db.pool()).await.unwrap()
}

async fn token(db: &TestDb, user: Uuid, device: &str, active: bool, updated: DateTime<Utc>) {
    db::query(
        "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id, is_active, updated_at)
         VALUES ($1, $2, 'ios', $2, $3, $4)",
    )
    .bind(user)
    .bind(device)
    .bind(active)
    .bind(updated)
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn dead_tokens_go_in_batches_and_live_ones_stay() {
    let db = TestDb::new().await;
    let user = db.user().await;
    token(&db, user, "live", true, days_ago(1)).await;
    token(&db, user, "almost-stale", true, days_ago(89)).await;
    token(&db, user, "inactive", false, days_ago(1)).await;
    token(&db, user, "stale", true, days_ago(91)).await;
    token(&db, user, "inactive-and-stale", false, days_ago(200)).await;
    let job = DeadTokenCleanup {
        batching: Batching { batch: 2, vacuum: None, rest: 0.0, wal_per_second: None },
        ..DeadTokenCleanup::default()
    };

    let dry = job.run(&db.context("dead-token-cleanup", now(), RunArgs { dry_run: true, ..RunArgs::default() })).await;
    assert_eq!(dry.unwrap().details["deleted"], 3, "a dry run counts");
    assert_eq!(count(&db, "SELECT count(*) FROM customer_push_tokens").await, 5, "and deletes nothing");

    let report = run(&db, &job, "dead-token-cleanup").await;
    assert_eq!(report.items, 3, "{report:?}");
    assert_eq!(report.details["remaining"], 2);
    assert_eq!(report.details["active"], 2);
    assert_eq!(report.details["batches"], 1, "the walk goes by pages: the table's one page is one batch");
    assert_eq!(report.details["analyzed"], serde_json::json!(["customer_push_tokens"]));
    let left: Vec<String> = db::query_scalar("SELECT device_id FROM customer_push_tokens ORDER BY device_id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(left, ["almost-stale", "live"]);
    assert_eq!(run(&db, &job, "dead-token-cleanup").await.items, 0, "a re-run finds nothing");
}

/// Runs `sql` with `$1` = a user and `$2` = a time.
async fn exec(db: &TestDb, sql: &str, user: Uuid, at: DateTime<Utc>) {
    db::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(user).bind(at).execute(db.pool()).await.unwrap();
}

#[tokio::test]
async fn old_logs_go_by_each_tables_rule_and_the_rest_stays() {
    let db = TestDb::new().await;
    let user = db.user().await;
    for at in [days_ago(181), days_ago(179)] {
        let sql = "INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount,
                                                  completed_at)
                   VALUES ($1, 'admob', 'u', 'rewarded', 5, $2)";
        exec(&db, sql, user, at).await;
    }
    let comment: Uuid = db::query_scalar(
        "INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'great match') RETURNING id",
    )
    .bind(user)
    .fetch_one(db.pool())
    .await
    .unwrap();
    for (days, liker) in [(366, db.user().await), (364, db.user().await)] {
        db::query("INSERT INTO match_comment_likes (comment_id, customer_user_id, created_at) VALUES ($1, $2, $3)")
            .bind(comment)
            .bind(liker)
            .bind(days_ago(days))
            .execute(db.pool())
            .await
            .unwrap();
    }
    for (status, days) in [("sent", 91), ("cancelled", 91), ("pending", 91), ("sent", 89)] {
        db::query(
            "INSERT INTO scheduled_notifications (title_tr, body_tr, scheduled_at, sent_at, status)
             VALUES ('t', 'b', $1, CASE WHEN $2 = 'sent' THEN $1 END, $2)",
        )
        .bind(days_ago(days))
        .bind(status)
        .execute(db.pool())
        .await
        .unwrap();
    }
    for (status, days) in [("success", 91), ("failed", 91), ("running", 91), ("success", 89)] {
        db::query("INSERT INTO job_execution_logs (job_name, started_at, status) VALUES ('streak-reset', $1, $2)")
            .bind(days_ago(days))
            .bind(status)
            .execute(db.pool())
            .await
            .unwrap();
    }
    // Event runs, ten a second under an app's traffic, are kept a week.
    for (status, days) in [("success", 8), ("failed", 8), ("running", 8), ("success", 6)] {
        db::query(
            "INSERT INTO job_execution_logs (job_name, started_at, status, trigger)
             VALUES ('badge-auto-unlock', $1, $2, 'event')",
        )
        .bind(days_ago(days))
        .bind(status)
        .execute(db.pool())
        .await
        .unwrap();
    }
    for (status, days) in [("sent", 31), ("no_tokens", 31), ("pending", 31), ("sent", 29)] {
        db::query(
            "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, not_before, status, created_at)
             VALUES ($1, 'reward', gen_random_uuid()::text, 't', 'b', $2, $3, $2)",
        )
        .bind(user)
        .bind(days_ago(days))
        .bind(status)
        .execute(db.pool())
        .await
        .unwrap();
    }

    let job = OldLogsCleanup {
        batching: Batching { batch: 3, vacuum: None, rest: 0.0, wal_per_second: None },
        ..OldLogsCleanup::default()
    };
    let report = run(&db, &job, "old-logs-cleanup").await;
    let tables = &report.details["tables"];
    let deleted = |table: &str| tables[table]["deleted"].as_i64().unwrap_or(-1);
    assert_eq!(deleted("customer_ad_views"), 1, "{report:?}");
    assert_eq!(deleted("match_comment_likes"), 1);
    assert_eq!(deleted("scheduled_notifications"), 2, "sent and cancelled; a pending campaign stays");
    assert_eq!(deleted("job_execution_logs (event runs)"), 2, "a running event run and last week's stay");
    assert_eq!(deleted("job_execution_logs"), 2, "a running row stays");
    assert_eq!(deleted("push_outbox"), 2, "final rows only");
    assert_eq!(report.items, 10);
    for (table, left) in [
        ("customer_ad_views", 1),
        ("match_comment_likes", 1),
        ("scheduled_notifications", 2),
        ("job_execution_logs", 4),
        ("push_outbox", 2),
    ] {
        assert_eq!(count(&db, &format!("SELECT count(*) FROM {table}")).await, left, "{table}");
    }
    let analyzed = report.details["analyzed"].as_array().unwrap();
    assert_eq!(analyzed.len(), 5, "the tables it touched: {analyzed:?}");
    assert_eq!(run(&db, &job, "old-logs-cleanup").await.items, 0, "a re-run finds nothing");
}

/// Every user but `author` likes a comment of `author`'s: every `old_every`-th like (none with `None`) dated 400 days
/// ago, the others 10 days ago.
async fn likes_of_everyone(db: &TestDb, author: Uuid, old_every: Option<i64>) {
    db::query(
        "WITH c AS (INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (1, $1, 'great match')
                    RETURNING id)
         INSERT INTO match_comment_likes (comment_id, customer_user_id, created_at)
         SELECT c.id, u.id, CASE WHEN row_number() OVER () % $2 = 0 THEN $3 ELSE $4 END
         FROM c, customer_users u WHERE u.id <> $1",
    )
    .bind(author)
    .bind(old_every)
    .bind(days_ago(400))
    .bind(days_ago(10))
    .execute(db.pool())
    .await
    .unwrap();
}

/// `per_user` ad views of every user, completed at `at`.
async fn ad_views_of_everyone(db: &TestDb, per_user: i64, at: DateTime<Utc>) {
    db::query(
        "INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount, completed_at)
         SELECT u.id, 'admob', 'u', 'rewarded', 5, $2 FROM customer_users u, generate_series(1, $1)",
    )
    .bind(per_user)
    .bind(at)
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn few_old_rows_go_through_their_index_and_a_sparse_page_walk_takes_longer_ranges() {
    let db = TestDb::new().await;
    let user = db.user().await;
    db.users(20_000).await;
    // 20,000 likes, 60 of them older than a year: the planner serves them by `created_at`'s index.
    likes_of_everyone(&db, user, Some(333)).await;
    // 20,000 ad views of as many users, every 500th past its retention: no index serves `completed_at` alone, the
    // walk goes by pages.
    db::query(
        "INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount, completed_at)
         SELECT u.id, 'admob', 'u', 'rewarded', 5, CASE WHEN row_number() OVER () % 500 = 0 THEN $2 ELSE $3 END
         FROM customer_users u WHERE u.id <> $1",
    )
    .bind(user)
    .bind(days_ago(200))
    .bind(days_ago(10))
    .execute(db.pool())
    .await
    .unwrap();
    db::query("ANALYZE match_comment_likes, customer_ad_views").execute(db.pool()).await.unwrap();
    let job = OldLogsCleanup {
        batching: Batching { batch: 25, vacuum: None, rest: 0.0, wal_per_second: None },
        ..OldLogsCleanup::default()
    };

    let dry = job.run(&db.context("old-logs-cleanup", now(), RunArgs { dry_run: true, ..RunArgs::default() })).await;
    let dry = &dry.unwrap().details["tables"];
    assert_eq!(dry["match_comment_likes"]["deleted"], 60, "{dry}");
    assert_eq!(dry["match_comment_likes"]["route"], "index", "{dry}");
    assert_eq!(dry["customer_ad_views"]["deleted"], 40, "{dry}");
    assert_eq!(count(&db, "SELECT count(*) FROM match_comment_likes").await, 20_000, "a dry run deletes nothing");

    let report = run(&db, &job, "old-logs-cleanup").await;
    let tables = &report.details["tables"];
    let likes = &tables["match_comment_likes"];
    assert_eq!((likes["route"].as_str(), likes["deleted"].as_i64()), (Some("index"), Some(60)), "{tables}");
    assert_eq!(likes["batches"], 3, "25, 25 and the last 10: {tables}");
    let views = &tables["customer_ad_views"];
    assert_eq!((views["route"].as_str(), views["deleted"].as_i64()), (Some("pages"), Some(40)), "{tables}");
    // A range of 25 rows' pages (one page) deletes at most one old view: ranges double up to 64 times the first,
    // so the walk needs about ten batches instead of one per page (about 280).
    let batches = views["batches"].as_i64().unwrap();
    assert!(batches < 30, "{batches} batches: {tables}");
    for (table, old) in [("match_comment_likes", "created_at"), ("customer_ad_views", "completed_at")] {
        let left: i64 = db::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE {old} < $1")))
            .bind(days_ago(150))
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM match_comment_likes").await, 19_940);
    assert_eq!(count(&db, "SELECT count(*) FROM customer_ad_views").await, 19_960);

    // 1,000 more past their retention, all at the table's end (about 14 pages): the walk reaches them with long
    // ranges, and still deletes at most a batch (25) per long range, or a page's rows per range of the first span
    // (one page here), never the whole lot at once.
    db::query(
        "INSERT INTO customer_ad_views (customer_user_id, ad_network, ad_unit_id, ad_type, reward_amount, completed_at)
         SELECT $1, 'admob', 'u', 'rewarded', 5, $2 FROM generate_series(1, 1000)",
    )
    .bind(user)
    .bind(days_ago(200))
    .execute(db.pool())
    .await
    .unwrap();
    let again = run(&db, &job, "old-logs-cleanup").await;
    let views = &again.details["tables"]["customer_ad_views"];
    assert_eq!(views["deleted"], 1_000, "{views}");
    assert!(views["batches"].as_i64().unwrap() >= 14, "at most a page's rows a statement: {views}");
}

#[tokio::test]
async fn when_far_more_rows_match_than_the_planner_expects_the_index_route_leaves_the_rest_to_the_pages() {
    let db = TestDb::new().await;
    let user = db.user().await;
    db::query("ALTER TABLE match_comment_likes SET (autovacuum_enabled = false)").execute(db.pool()).await.unwrap();
    db.users(20_000).await;
    likes_of_everyone(&db, user, None).await;
    // Statistics that know no old like; then a quarter of them turn old behind the planner's back.
    db::query("ANALYZE match_comment_likes").execute(db.pool()).await.unwrap();
    db::query("UPDATE match_comment_likes SET created_at = $1 WHERE customer_user_id::text < '4'")
        .bind(days_ago(400))
        .execute(db.pool())
        .await
        .unwrap();
    let old: i64 = db::query_scalar("SELECT count(*) FROM match_comment_likes WHERE created_at < $1")
        .bind(days_ago(365))
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(old > 3_000, "{old}");

    let job = OldLogsCleanup {
        batching: Batching { batch: 100, vacuum: None, rest: 0.0, wal_per_second: None },
        ..OldLogsCleanup::default()
    };
    let report = run(&db, &job, "old-logs-cleanup").await;
    let likes = &report.details["tables"]["match_comment_likes"];
    assert_eq!(likes["route"], "index_then_pages", "{likes}");
    assert_eq!(likes["deleted"], old, "{likes}");
    assert_eq!(count(&db, "SELECT count(*) FROM match_comment_likes").await, 20_000 - old);
}

#[tokio::test]
async fn old_rows_packed_into_part_of_a_sparse_table_are_still_deleted_about_a_batch_at_a_time() {
    let db = TestDb::new().await;
    db::query("ALTER TABLE customer_ad_views SET (autovacuum_enabled = false)").execute(db.pool()).await.unwrap();
    db.users(2_000).await;
    // 20,000 recent views, nine in ten deleted again and vacuumed: pages that hold a tenth of what they can, and
    // a density of a few rows a page. 2,000 old views then fill the free space of the first pages.
    ad_views_of_everyone(&db, 10, days_ago(10)).await;
    db::query("DELETE FROM customer_ad_views WHERE (ctid::text::point)[1]::int % 10 <> 0")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::raw_sql("VACUUM ANALYZE customer_ad_views").execute(db.pool()).await.unwrap();
    ad_views_of_everyone(&db, 1, days_ago(200)).await;
    db::query("ANALYZE customer_ad_views").execute(db.pool()).await.unwrap();

    let job = OldLogsCleanup {
        batching: Batching { batch: 100, vacuum: None, rest: 0.0, wal_per_second: None },
        ..OldLogsCleanup::default()
    };
    let report = run(&db, &job, "old-logs-cleanup").await;
    let views = &report.details["tables"]["customer_ad_views"];
    assert_eq!((views["route"].as_str(), views["deleted"].as_i64()), (Some("pages"), Some(2_000)), "{views}");
    // The first range, sized by the average density, holds hundreds of the packed old rows; after it, ranges as
    // long as held about a batch (32 batches here; ranges kept at the first length took 11).
    assert!(views["batches"].as_i64().unwrap() >= 20, "{views}");
}

async fn grant(db: &TestDb, user: Uuid, amount: i32, key: &str, at: DateTime<Utc>) {
    db::query("SELECT hattrick_grant_credits($1, $2, 'admin_grant', $3, NULL, '{}', $4)")
        .bind(user)
        .bind(amount)
        .bind(key)
        .bind(at)
        .execute(db.pool())
        .await
        .unwrap();
}

async fn spend(db: &TestDb, user: Uuid, amount: i32, key: &str, at: DateTime<Utc>) {
    db::query("SELECT hattrick_spend_credits($1, $2, 'prediction_purchase', $3, NULL, '{}', $4)")
        .bind(user)
        .bind(amount)
        .bind(key)
        .bind(at)
        .execute(db.pool())
        .await
        .unwrap();
}

async fn balance(db: &TestDb, user: Uuid) -> (i32, i32, i32) {
    db::query_as("SELECT balance, lifetime_earned, lifetime_spent FROM customer_credits WHERE customer_user_id = $1")
        .bind(user)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn compaction_folds_old_ledger_rows_into_carry_forward_rows_and_keeps_their_keys() {
    let db = TestDb::new().await;
    let user = db.user().await;
    grant(&db, user, 100, "old-grant-1", days_ago(500)).await;
    grant(&db, user, 50, "old-grant-2", days_ago(450)).await;
    spend(&db, user, 30, "old-spend", days_ago(400)).await;
    grant(&db, user, 20, "recent-grant", days_ago(10)).await;
    spend(&db, user, 5, "recent-spend", days_ago(5)).await;
    db::query("SELECT hattrick_grant_xp($1, 40, 'daily_login', 'old-xp', NULL, '{}', $2)")
        .bind(user)
        .bind(days_ago(400))
        .execute(db.pool())
        .await
        .unwrap();
    let only_recent = db.user().await;
    grant(&db, only_recent, 7, "other-recent", days_ago(3)).await;
    let before = balance(&db, user).await;
    assert_eq!(before, (135, 170, 35));

    let job = OldLogsCleanup {
        batching: Batching { batch: 5, vacuum: None, rest: 0.0, wal_per_second: None },
        ..OldLogsCleanup::default()
    };
    let report = run(&db, &job, "old-logs-cleanup").await;
    let credits = &report.details["tables"]["customer_credit_transactions"];
    assert_eq!(credits["folded"], 3, "{report:?}");
    assert_eq!(credits["users"], 1);
    assert_eq!(credits["carried"], 2, "one earned row, one spent row");
    assert_eq!(credits["keys_kept"], 3);
    assert_eq!(report.details["tables"]["customer_xp_transactions"]["folded"], 1);
    assert_eq!(balance(&db, user).await, before, "balances are never touched");
    assert_ledger_invariants(db.pool()).await;

    let rows: Vec<(i32, String, i32, i32, DateTime<Utc>)> = db::query_as(
        "SELECT amount, transaction_type, balance_before, balance_after, created_at FROM customer_credit_transactions
         WHERE customer_user_id = $1 ORDER BY created_at, amount DESC",
    )
    .bind(user)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let cutoff = days_ago(365);
    assert_eq!(
        rows.iter().map(|r| (r.0, r.1.as_str(), r.2, r.3)).collect::<Vec<_>>(),
        [
            (150, "retention_rollup", 0, 150),
            (-30, "retention_rollup", 150, 120),
            (20, "admin_grant", 120, 140),
            (-5, "prediction_purchase", 140, 135)
        ]
    );
    assert!(rows[..2].iter().all(|r| r.4 == cutoff), "carry-forward rows are dated at the cut-off");

    // A compacted key can never pay again.
    grant(&db, user, 100, "old-grant-1", now()).await;
    assert_eq!(balance(&db, user).await, before, "the key of a folded row stays used");
    let again = run(&db, &job, "old-logs-cleanup").await;
    assert_eq!(again.details["tables"]["customer_credit_transactions"]["folded"], 0, "{again:?}");
    assert_ledger_invariants(db.pool()).await;
    // A day later only the carry-forward rows are older than the cut-off: they stay as they are.
    let next_day = job.run(&db.context("old-logs-cleanup", now() + Duration::days(1), RunArgs::default())).await;
    assert_eq!(next_day.unwrap().details["tables"]["customer_credit_transactions"]["folded"], 0);

    // A year later the carry-forward rows themselves fold into new ones; the sums still hold.
    let later =
        job.run(&db.context("old-logs-cleanup", now() + Duration::days(400), RunArgs::default())).await.unwrap();
    assert_eq!(later.details["tables"]["customer_credit_transactions"]["folded"], 5, "{later:?}");
    assert_eq!(balance(&db, user).await, before);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn no_cleanup_batch_blocks_a_concurrent_writer_for_long() {
    let db = TestDb::new().await;
    // 150,000 users with an inactive token on their device (one unbatched delete of them takes seconds), the first
    // 2,000 of them with 20 ledger rows older than a year.
    db.users_with_dead_tokens(150_000).await;
    db::query(
        "SELECT hattrick_grant_credits(u.id, 5, 'ad_reward', u.id || ':' || g, NULL, '{}',
                                       $1 - interval '400 days' + g * interval '1 hour')
         FROM (SELECT id FROM customer_users ORDER BY email LIMIT 2000) u CROSS JOIN generate_series(1, 20) g",
    )
    .bind(now())
    .execute(db.pool())
    .await
    .unwrap();
    let users: Vec<Uuid> =
        db::query_scalar("SELECT id FROM customer_users ORDER BY id").fetch_all(db.pool()).await.unwrap();

    // The app keeps writing: new ledger rows and device re-registrations for the very users being cleaned, with a
    // lock timeout of 250 ms (a quarter of the second allowed), so any longer wait fails the write. Deleting these
    // tokens in one statement holds their locks for about half a second here and fails this test.
    let done = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicI64::new(0));
    let writer = {
        let (pool, done, writes) = (db.pool().clone(), done.clone(), writes.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !done.load(Ordering::Relaxed) {
                // One transaction per write, as the app's pooled connections do; the timeout is its own.
                let mut conn = pool.begin().await.unwrap();
                db::query("SET LOCAL lock_timeout = '250ms'").execute(&mut *conn).await.unwrap();
                let user = users[i % users.len()];
                db::query("SELECT hattrick_grant_credits($1, 1, 'ad_reward', $2)")
                    .bind(user)
                    .bind(format!("live:{i}"))
                    .execute(&mut *conn)
                    .await
                    .expect("a ledger write waited more than 250 ms for a lock");
                db::query(
                    "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id, is_active)
                     VALUES ($1, $2, 'android', 'phone', true)
                     ON CONFLICT (customer_user_id, device_id) DO UPDATE
                     SET token = excluded.token, is_active = true, updated_at = now()",
                )
                .bind(users[(i * 7 + 3) % users.len()])
                .bind(format!("fresh:{i}"))
                .execute(&mut *conn)
                .await
                .expect("a device registration waited more than 250 ms for a lock");
                conn.commit().await.unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let batching =
        Batching { batch: 1000, vacuum: Some(std::time::Duration::from_secs(60)), rest: 0.0, wal_per_second: None };
    let tokens = DeadTokenCleanup { batching, ..DeadTokenCleanup::default() };
    let logs = OldLogsCleanup { batching, ..OldLogsCleanup::default() };
    let token_report = run(&db, &tokens, "dead-token-cleanup").await;
    let log_report = run(&db, &logs, "old-logs-cleanup").await;
    done.store(true, Ordering::Relaxed);
    writer.await.expect("the concurrent writer never waited long for a lock");
    assert!(writes.load(Ordering::Relaxed) > 0, "the writer ran alongside the cleanup");
    assert!(token_report.items > 0, "{token_report:?}");
    assert_eq!(log_report.details["tables"]["customer_credit_transactions"]["folded"], 40_000, "{log_report:?}");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn a_wal_cap_makes_each_batch_rest_until_its_wal_fits_and_the_run_reports_both() {
    let db = TestDb::new().await;
    let user = db.user().await;
    db.users(3_000).await;
    // 3,000 likes, a third of them old (the index route), and 3,000 old ad views (the page walk).
    likes_of_everyone(&db, user, Some(3)).await;
    ad_views_of_everyone(&db, 1, days_ago(200)).await;
    db::query("ANALYZE match_comment_likes, customer_ad_views").execute(db.pool()).await.unwrap();
    // 1 MiB a second: each batch of 500 writes tens of kilobytes, so each rests some milliseconds.
    let rate = 1024.0 * 1024.0;
    let batching = Batching { batch: 500, vacuum: None, rest: 0.0, wal_per_second: Some(rate) };
    let report = run(&db, &OldLogsCleanup { batching, ..OldLogsCleanup::default() }, "old-logs-cleanup").await;
    let tables = &report.details["tables"];
    for (table, deleted) in [("match_comment_likes", 1_000), ("customer_ad_views", 3_001)] {
        let t = &tables[table];
        assert_eq!(t["deleted"], deleted, "{table}: {tables}");
        let field = |name: &str| t[name].as_f64().unwrap();
        let wal = field("wal_bytes");
        // At least some tens of bytes a row: the delete's WAL is measured, not left at zero.
        assert!(wal > 40.0 * deleted as f64, "{table}: {t}");
        // Each batch lasted (its time plus its rest) at least what its WAL takes at the rate; each of the two
        // millisecond counts may lose up to a millisecond a batch to rounding.
        let paced = field("elapsed_ms") + field("rested_ms") + 2.0 * field("batches");
        assert!(paced >= wal / rate * 1000.0, "{table}: {t}");
        assert!(field("rested_ms") > 0.0, "{table}: {t}");
    }

    // Without a cap and with no rest, nothing rests; the WAL is still reported.
    let batching = Batching { batch: 500, vacuum: None, rest: 0.0, wal_per_second: None };
    likes_of_everyone(&db, user, Some(3)).await;
    let report = run(&db, &OldLogsCleanup { batching, ..OldLogsCleanup::default() }, "old-logs-cleanup").await;
    let likes = &report.details["tables"]["match_comment_likes"];
    assert_eq!((likes["deleted"].as_i64(), likes["rested_ms"].as_i64()), (Some(1_000), Some(0)), "{likes}");
    assert!(likes["wal_bytes"].as_i64().unwrap() > 40_000, "{likes}");
}
