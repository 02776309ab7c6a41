//! `badge-auto-unlock` against the real PostgreSQL: every condition at its boundary, rewards, exactly once.

use chrono::{DateTime, TimeDelta, Utc};
use domain::Budget;
use engine::{Job, JobContext, JobReport, RunArgs};
use jobs::BadgeAutoUnlock;
use serde_json::json;
use testkit::{NewUser, TestDb, assert_ledger_invariants};
use uuid::Uuid;

const NOW: &str = "2026-03-10T12:00:00Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW).unwrap().with_timezone(&Utc)
}

fn context(db: &TestDb, args: RunArgs) -> JobContext {
    db.context("badge-auto-unlock", now(), args)
}

async fn sweep(db: &TestDb) -> JobReport {
    BadgeAutoUnlock::default().run(&context(db, RunArgs::default())).await.unwrap()
}

async fn exec(db: &TestDb, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn badge(db: &TestDb, slug: &str, condition: serde_json::Value, xp: i32, credits: i32, vip_days: i32) -> Uuid {
    db::query_scalar(
        "INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition, reward_xp, reward_credits,
             reward_vip_days, display_order)
         VALUES ($1, $1 || ' TR', $1 || ' EN', 'https://cdn.example/' || $1 || '.png', 'test', $2, $3, $4, $5,
                 (SELECT count(*) FROM badges))
         RETURNING id",
    )
    .bind(slug)
    .bind(condition)
    .bind(xp)
    .bind(credits)
    .bind(vip_days)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn user(db: &TestDb, name: &str) -> Uuid {
    NewUser::new().email(format!("{name}@example.com")).insert(db.pool()).await
}

async fn owners(db: &TestDb, slug: &str) -> Vec<String> {
    db::query_scalar(
        "SELECT split_part(u.email, '@', 1) FROM customer_badges cb JOIN badges b ON b.id = cb.badge_id
         JOIN customer_users u ON u.id = cb.customer_user_id WHERE b.slug = $1 ORDER BY 1",
    )
    .bind(slug)
    .fetch_all(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn every_condition_type_unlocks_at_exactly_its_threshold() {
    let db = TestDb::new().await;
    badge(&db, "referrals-2", json!({"type":"referrals","count":2}), 0, 0, 0).await;
    badge(&db, "correct-3", json!({"type":"predictions","correct_count":3}), 0, 0, 0).await;
    badge(&db, "accuracy-75", json!({"type":"predictions","accuracy":75,"min_count":4}), 0, 0, 0).await;
    badge(&db, "comments-2", json!({"type":"comments","count":2}), 0, 0, 0).await;
    badge(&db, "likes-10", json!({"type":"comments","like_count":10}), 0, 0, 0).await;
    badge(&db, "streak-7", json!({"type":"login_streak","days":7}), 0, 0, 0).await;
    badge(&db, "gold", json!({"type":"xp_level","level":"gold"}), 0, 0, 0).await;
    badge(&db, "earned-500", json!({"type":"credits_earned","amount":500}), 0, 0, 0).await;
    badge(&db, "vip", json!({"type":"subscription","any":true}), 0, 0, 0).await;
    badge(&db, "beta", json!({"type":"manual"}), 0, 0, 0).await;

    let at = user(&db, "at").await; // exactly at every threshold
    let below = user(&db, "below").await; // one short of every threshold
    let above = user(&db, "above").await; // xp level above gold
    let friends: Vec<Uuid> = futures_like_users(&db, 4).await;
    // Referrals: `at` has 2 at tier 2+, `below` has 1 at tier 2 and 1 pending.
    for (referrer, referred, tier, status) in [
        (at, friends[0], 2, "completed"),
        (at, friends[1], 3, "rewarded"),
        (below, friends[2], 2, "completed"),
        (below, friends[3], 1, "pending"),
    ] {
        db::query(
            "INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, tier, status) VALUES ($1, $2, 'C', $3, $4)",
        )
        .bind(referrer)
        .bind(referred)
        .bind(tier)
        .bind(status)
        .execute(db.pool())
        .await
        .unwrap();
    }
    // Predictions: `at` 3 correct of 4 settled (75 %) plus an open one; `below` 2 correct of 4 (50 %).
    for (who, results) in [
        (at, vec![Some(true), Some(true), Some(true), Some(false), None]),
        (below, vec![Some(true), Some(true), Some(false), Some(false)]),
    ] {
        for (i, result) in results.into_iter().enumerate() {
            db::query("INSERT INTO customer_predictions (customer_user_id, match_id, prediction, is_correct) VALUES ($1, $2, 'home', $3)")
                .bind(who)
                .bind(i64::try_from(i).unwrap())
                .bind(result)
                .execute(db.pool())
                .await
                .unwrap();
        }
    }
    // Comments: `at` 2 active with 10 likes in total (+ a hidden one with many likes); `below` 1 active with 9.
    for (who, likes, status) in [(at, 4, "active"), (at, 6, "active"), (at, 100, "hidden"), (below, 9, "active")] {
        db::query("INSERT INTO match_comments (match_id, customer_user_id, content, like_count, status) VALUES (1, $1, 'nice match', $2, $3)")
            .bind(who)
            .bind(likes)
            .bind(status)
            .execute(db.pool())
            .await
            .unwrap();
    }
    for (who, longest, level) in [(at, 7, "gold"), (below, 6, "silver"), (above, 0, "diamond")] {
        db::query("INSERT INTO customer_xp (customer_user_id, xp_points, total_earned, level, longest_streak_days) VALUES ($1, 0, 0, $3, $2)")
            .bind(who)
            .bind(longest)
            .bind(level)
            .execute(db.pool())
            .await
            .unwrap();
    }
    for (who, earned) in [(at, 500), (below, 499)] {
        db::query("INSERT INTO customer_credits (customer_user_id, balance, lifetime_earned) VALUES ($1, 0, $2)")
            .bind(who)
            .bind(earned)
            .execute(db.pool())
            .await
            .unwrap();
    }
    // Subscriptions: `at` once paid (expired now); `below` only promotional and a trial.
    for (who, status, platform) in [(at, "expired", "ios"), (below, "active", "promo"), (below, "trial", "android")] {
        db::query(
            "INSERT INTO customer_subscriptions (customer_user_id, status, platform, started_at, expired_at)
             VALUES ($1, $2, $3, $4::timestamptz - interval '40 days', $4::timestamptz + interval '1 day')",
        )
        .bind(who)
        .bind(status)
        .bind(platform)
        .bind(now())
        .execute(db.pool())
        .await
        .unwrap();
    }

    let report = sweep(&db).await;
    for slug in ["referrals-2", "correct-3", "accuracy-75", "comments-2", "likes-10", "streak-7", "earned-500", "vip"] {
        assert_eq!(owners(&db, slug).await, vec!["at"], "{slug}: {report:?}");
    }
    assert_eq!(owners(&db, "gold").await, vec!["above", "at"], "xp_level is the level or higher");
    assert!(owners(&db, "beta").await.is_empty(), "manual badges are never automatic");
}

/// `n` plain users (friends to refer).
async fn futures_like_users(db: &TestDb, n: usize) -> Vec<Uuid> {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(user(db, &format!("friend{i}")).await);
    }
    users
}

#[tokio::test]
async fn an_unlock_pays_its_rewards_and_vip_days_once_even_swept_twice_concurrently() {
    let db = TestDb::new().await;
    let id = badge(&db, "first_comment", json!({"type":"comments","count":1}), 600, 5, 3).await;
    let fan = user(&db, "fan").await;
    db::query("UPDATE customer_users SET locale_preference = 'en' WHERE id = $1")
        .bind(fan)
        .execute(db.pool())
        .await
        .unwrap();
    exec(
        &db,
        &format!("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (7, '{fan}', 'great goal')"),
    )
    .await;

    let (a, b) = tokio::join!(sweep(&db), sweep(&db));
    assert_eq!(a.items + b.items, 1, "{a:?} {b:?}");
    assert_eq!(sweep(&db).await.items, 0);

    let (xp, level): (i32, String) =
        db::query_as("SELECT xp_points, level FROM customer_xp WHERE customer_user_id = $1")
            .bind(fan)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((xp, level.as_str()), (600, "silver"));
    let balance: i32 = db::query_scalar("SELECT balance FROM customer_credits WHERE customer_user_id = $1")
        .bind(fan)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(balance, 5 + 25, "badge credits and the silver level-up bonus");
    let unlocks: i32 =
        db::query_scalar("SELECT total_unlocks FROM badges WHERE id = $1").bind(id).fetch_one(db.pool()).await.unwrap();
    assert_eq!(unlocks, 1);
    let vip_until: DateTime<Utc> = db::query_scalar(
        "SELECT expired_at FROM customer_subscriptions WHERE customer_user_id = $1 AND platform = 'promo' AND status = 'active'",
    )
    .bind(fan)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(vip_until, now() + TimeDelta::days(3));
    let push: (String, String, Option<String>, serde_json::Value) =
        db::query_as("SELECT title, body, image_url, data FROM push_outbox WHERE dedupe_key LIKE 'badge:%'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((push.0.as_str(), push.1.as_str()), ("New badge! 🎖️", "You earned the first_comment EN badge!"));
    assert_eq!(push.2.as_deref(), Some("https://cdn.example/first_comment.png"));
    assert_eq!(push.3["badgeSlug"], "first_comment");
    assert_eq!(push.3["deepLink"], "goalgpt://badges");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn one_sweep_settles_cascades_so_the_next_finds_nothing() {
    let db = TestDb::new().await;
    // A comment pays 600 XP (silver); silver pays 300 credits; 300 credits earned pay 1,500 XP (gold); gold pays a
    // badge of its own: three rounds after the first pass.
    badge(&db, "commenter", json!({"type": "comments", "count": 1}), 600, 0, 0).await;
    badge(&db, "silver", json!({"type": "xp_level", "level": "silver"}), 0, 300, 0).await;
    badge(&db, "rich", json!({"type": "credits_earned", "amount": 300}), 1500, 0, 0).await;
    badge(&db, "gold", json!({"type": "xp_level", "level": "gold"}), 0, 0, 0).await;
    let alice = user(&db, "alice").await;
    user(&db, "bob").await;
    exec(
        &db,
        &format!(
            "INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (3, '{alice}', 'what a save')"
        ),
    )
    .await;

    let first = sweep(&db).await;
    assert_eq!(first.items, 4, "{first:?}");
    assert_eq!(first.details["cascade_rounds"], 3, "{first:?}");
    for slug in ["commenter", "silver", "rich", "gold"] {
        assert_eq!(owners(&db, slug).await, ["alice"], "{slug}");
    }
    let level: String = db::query_scalar("SELECT level FROM customer_xp WHERE customer_user_id = $1")
        .bind(alice)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(level, "gold");
    let second = sweep(&db).await;
    assert_eq!((second.items, &second.details["cascade_rounds"]), (0, &json!(0)), "{second:?}");
    let subjects: i64 =
        db::query_scalar("SELECT count(*) FROM hattrick_run_subjects").fetch_one(db.pool()).await.unwrap();
    assert_eq!(subjects, 0, "the rounds' subjects are cleared");

    // A silent back-fill pays the rewards without the pushes, so it settles its cascades too.
    let carol = user(&db, "carol").await;
    exec(
        &db,
        &format!("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (3, '{carol}', 'offside')"),
    )
    .await;
    let silent =
        BadgeAutoUnlock::default().run(&context(&db, RunArgs { silent: true, ..RunArgs::default() })).await.unwrap();
    assert_eq!((silent.items, &silent.details["pushes"]), (4, &json!(0)), "{silent:?}");
    assert_eq!(owners(&db, "gold").await, ["alice", "carol"]);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn rewards_that_no_condition_reads_run_no_cascade_round() {
    let db = TestDb::new().await;
    // XP and credits are paid, but no active badge tests a level or credits earned: nothing can cascade.
    badge(&db, "commenter", json!({"type": "comments", "count": 1}), 600, 300, 0).await;
    badge(&db, "streaker", json!({"type": "login_streak", "days": 0}), 50, 0, 0).await;
    let alice = user(&db, "alice").await;
    exec(
        &db,
        &format!("INSERT INTO match_comments (match_id, customer_user_id, content) VALUES (3, '{alice}', 'goal')"),
    )
    .await;
    let report = sweep(&db).await;
    assert_eq!(report.items, 2, "{report:?}");
    assert_eq!(report.details["cascade_rounds"], 0, "{report:?}");
    assert_eq!(report.details["passes"].as_array().map(Vec::len), Some(1), "{report:?}");
    let cascade: i64 =
        db::query_scalar("SELECT count(*) FROM hattrick_run_cascade").fetch_one(db.pool()).await.unwrap();
    assert_eq!(cascade, 0);
    assert_eq!(sweep(&db).await.items, 0);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn a_malformed_condition_is_reported_and_the_other_badges_proceed() {
    let db = TestDb::new().await;
    badge(&db, "broken", json!({"type":"comments","count":"many"}), 0, 0, 0).await;
    badge(&db, "unknown", json!({"type":"karma","points":3}), 0, 0, 0).await;
    badge(&db, "works", json!({"type":"login_streak","days":0}), 0, 0, 0).await;
    user(&db, "someone").await;
    let report = sweep(&db).await;
    assert_eq!(report.items, 1);
    let skipped = report.details["skipped_badges"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{report:?}");
    assert!(skipped[0]["error"].as_str().unwrap().contains("\"count\" must be a whole number"), "{skipped:?}");
    assert!(skipped[1]["error"].as_str().unwrap().contains("unknown condition type \"karma\""), "{skipped:?}");
}

#[tokio::test]
async fn deleted_and_inactive_users_get_no_badge() {
    let db = TestDb::new().await;
    badge(&db, "anyone", json!({"type":"login_streak","days":0}), 10, 10, 0).await;
    let deleted = user(&db, "deleted").await;
    let inactive = user(&db, "inactive").await;
    user(&db, "live").await;
    db::query("UPDATE customer_users SET deleted_at = now() WHERE id = $1")
        .bind(deleted)
        .execute(db.pool())
        .await
        .unwrap();
    db::query("UPDATE customer_users SET is_active = false WHERE id = $1")
        .bind(inactive)
        .execute(db.pool())
        .await
        .unwrap();
    sweep(&db).await;
    assert_eq!(owners(&db, "anyone").await, vec!["live"]);
}

#[tokio::test]
async fn seventy_thousand_eligible_users_unlock_in_one_run() {
    let db = TestDb::new().await;
    badge(&db, "everyone", json!({"type":"xp_level","level":"bronze"}), 0, 10, 0).await;
    exec(&db, "INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 70000) g")
        .await;
    let report = sweep(&db).await;
    assert_eq!(report.items, 70_000);
    assert_eq!(report.details["chunks"], 7);
    let total: i32 = db::query_scalar("SELECT total_unlocks FROM badges").fetch_one(db.pool()).await.unwrap();
    assert_eq!(total, 70_000);
    assert_ledger_invariants(db.pool()).await;
}

/// A chunk ends with the user of its `unlocks_per_chunk`-th unlock and takes all of that user's: five users with two
/// unlocks each make chunks of one user each at one unlock a chunk, of two, two and one users at three (split users
/// would make four chunks of three unlocks or fewer), and one chunk at ten and above.
#[tokio::test]
async fn chunks_are_cut_by_unlocks_and_never_split_a_user() {
    for (unlocks_per_chunk, chunks) in [(1, 5), (3, 3), (4, 3), (10, 1), (11, 1)] {
        let db = TestDb::new().await;
        badge(&db, "one", json!({"type":"xp_level","level":"bronze"}), 0, 0, 0).await;
        badge(&db, "two", json!({"type":"xp_level","level":"bronze"}), 0, 0, 0).await;
        exec(&db, "INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 5) g")
            .await;
        let job = BadgeAutoUnlock { unlocks_per_chunk, ..BadgeAutoUnlock::default() };
        let report = job.run(&context(&db, RunArgs::default())).await.unwrap();
        assert_eq!((report.items, &report.details["chunks"]), (10, &json!(chunks)), "{unlocks_per_chunk}: {report:?}");
        let owned: i64 = db::query_scalar("SELECT count(*) FROM customer_badges").fetch_one(db.pool()).await.unwrap();
        assert_eq!(owned, 10);
    }
}

#[tokio::test]
async fn two_sweeps_at_once_pay_every_unlock_once_without_deadlocking() {
    two_sweeps_at_once_pay_every_unlock_once(1).await;
}

#[tokio::test]
async fn chunks_granted_at_once_pay_every_unlock_once_and_settle_cascades_even_in_two_runs_at_once() {
    two_sweeps_at_once_pay_every_unlock_once(3).await;
}

/// Two sweeps over 25,000 users at the same time, each granting `chunks_at_once` chunks at once: both insert the
/// same badge rows and raise the same counters, and without one order for each they deadlock (as they did, in
/// about one run in three, before the badge rows went in in (user, badge) order).
async fn two_sweeps_at_once_pay_every_unlock_once(chunks_at_once: u32) {
    let db = TestDb::new().await;
    // Everyone unlocks three badges at once, and 600 XP levels them up to silver, which unlocks a fourth: every
    // chunk raises the same counters, so chunks under way at once meet on them.
    badge(&db, "welcome", json!({"type": "xp_level", "level": "bronze"}), 600, 5, 0).await;
    badge(&db, "hello", json!({"type": "xp_level", "level": "bronze"}), 0, 3, 0).await;
    badge(&db, "hi", json!({"type": "xp_level", "level": "bronze"}), 0, 0, 0).await;
    badge(&db, "silver", json!({"type": "xp_level", "level": "silver"}), 0, 10, 0).await;
    exec(&db, "INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 25000) g")
        .await;
    let job = BadgeAutoUnlock { chunks_at_once, ..BadgeAutoUnlock::default() };
    let (first, second) = (context(&db, RunArgs::default()), context(&db, RunArgs::default()));
    let (a, b) = tokio::join!(job.run(&first), job.run(&second));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.items + b.items, 100_000, "{a:?} {b:?}");
    let again = job.run(&context(&db, RunArgs::default())).await.unwrap();
    assert_eq!(again.items, 0, "{again:?}");
    let counters: Vec<(String, i32, i64)> = db::query_as(
        "SELECT b.slug, b.total_unlocks, (SELECT count(*) FROM customer_badges c WHERE c.badge_id = b.id)
         FROM badges b ORDER BY b.slug",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    for (slug, total, rows) in counters {
        assert_eq!((i64::from(total), rows), (25_000, 25_000), "{slug}");
    }
    // 5 + 3 credits, the silver level-up's 25 and silver's 10 for every user, each paid once.
    let (credit_rows, credits, pushes): (i64, i64, i64) = db::query_as(
        "SELECT (SELECT count(*) FROM customer_credit_transactions), (SELECT sum(balance) FROM customer_credits),
                (SELECT count(*) FROM push_outbox)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((credit_rows, credits), (100_000, 25_000 * (5 + 3 + 25 + 10)));
    assert_eq!(pushes, 125_000, "four unlock pushes and one level-up push per user");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn a_failure_in_one_chunk_leaves_no_partial_grant_and_committed_chunks_are_not_paid_again() {
    a_failed_chunk_leaves_nothing_and_is_paid_by_the_next_sweep(1).await;
}

#[tokio::test]
async fn with_chunks_at_once_a_failed_chunk_lets_the_others_under_way_commit_and_starts_no_new_one() {
    a_failed_chunk_leaves_nothing_and_is_paid_by_the_next_sweep(2).await;
}

/// Three chunks of 25,000 users, the last of which fails: with one chunk at a time the first two commit before
/// it; with two at once the last is taken when one of the first two is done, and the other one under way
/// commits too.
async fn a_failed_chunk_leaves_nothing_and_is_paid_by_the_next_sweep(chunks_at_once: u32) {
    let job = BadgeAutoUnlock { chunks_at_once, ..BadgeAutoUnlock::default() };
    let db = TestDb::new().await;
    let id = badge(&db, "everyone", json!({"type":"xp_level","level":"bronze"}), 100, 10, 0).await;
    exec(&db, "INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 25000) g")
        .await;
    // Sabotage: the unlock of the user with the largest id fails (a constraint violation in the last chunk).
    exec(
        &db,
        "CREATE TABLE sabotage_target AS SELECT max(id::text)::uuid AS id FROM customer_users;
         CREATE FUNCTION sabotage() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.customer_user_id = (SELECT id FROM sabotage_target) THEN
                 RAISE EXCEPTION 'injected failure' USING ERRCODE = 'check_violation';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER sabotage BEFORE INSERT ON customer_badges FOR EACH ROW EXECUTE FUNCTION sabotage();",
    )
    .await;
    let error = job.run(&context(&db, RunArgs::default())).await.unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    let (badges, xp_rows, credit_rows, total): (i64, i64, i64, i32) = db::query_as(
        "SELECT (SELECT count(*) FROM customer_badges), (SELECT count(*) FROM customer_xp_transactions),
                (SELECT count(*) FROM customer_credit_transactions), (SELECT total_unlocks FROM badges)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(badges, 20_000, "the two committed chunks stay; the failed one left nothing");
    assert_eq!((xp_rows, credit_rows, i64::from(total)), (20_000, 20_000, 20_000));
    assert_ledger_invariants(db.pool()).await;

    exec(&db, "DROP TRIGGER sabotage ON customer_badges").await;
    let report = job.run(&context(&db, RunArgs::default())).await.unwrap();
    assert_eq!(report.items, 5_000, "only the failed chunk's users");
    let (badges, xp_rows, total): (i64, i64, i32) = db::query_as(
        "SELECT (SELECT count(*) FROM customer_badges), (SELECT count(*) FROM customer_xp_transactions),
                (SELECT total_unlocks FROM badges WHERE id = $1)",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((badges, xp_rows, i64::from(total)), (25_000, 25_000, 25_000));
    assert_ledger_invariants(db.pool()).await;
}

/// Four chunks of 10,000 users under way at once, each writing 20,000 grants and 10,000 pushes: the budget holds
/// for the run, not per chunk. Each chunk counts what it wrote and holds it until it commits, so the first two to
/// count take the budget, the others roll back and stop, and no interleaving lets all four commit.
#[tokio::test]
async fn a_budget_holds_for_the_run_with_chunks_under_way_at_once() {
    let db = TestDb::new().await;
    let id = badge(&db, "everyone", json!({"type":"xp_level","level":"bronze"}), 10, 10, 0).await;
    exec(&db, "INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 40000) g")
        .await;
    let written = || async {
        let (badges, grants, pushes, total): (i64, i64, i64, i32) = db::query_as(
            "SELECT (SELECT count(*) FROM customer_badges),
                    (SELECT count(*) FROM customer_xp_transactions) + (SELECT count(*) FROM customer_credit_transactions),
                    (SELECT count(*) FROM push_outbox), (SELECT total_unlocks FROM badges WHERE id = $1)",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(i64::from(total), badges, "the counter counts the rows of committed chunks only");
        (badges, grants, pushes)
    };
    let grants = BadgeAutoUnlock {
        budget: Budget { max_grants: Some(50_000), max_pushes: None },
        chunks_at_once: 4,
        ..BadgeAutoUnlock::default()
    };
    // The badge's counter is held while the run starts: a chunk locks it last, after its counts, so the chunks
    // that counted theirs wait there, all at once. Two of them waiting shows a budgeted run paying chunks at once
    // (one chunk at a time never gets past one).
    let mut counter = db.pool().begin().await.unwrap();
    db::query("SELECT 1 FROM badges FOR NO KEY UPDATE").execute(&mut *counter).await.unwrap();
    let run = context(&db, RunArgs::default());
    let (result, waiting) = tokio::join!(grants.run(&run), async {
        let mut waiting = 0;
        for _ in 0..600 {
            // Waiting on the counter's row, not on another lock (two chunks extending a table wait too).
            waiting = db::query_scalar::<i64>(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%FROM badges WHERE id IN (SELECT badge_id FROM hattrick_unlocks)%'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            if waiting >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        counter.rollback().await.unwrap();
        waiting
    });
    assert_eq!(waiting, 2, "two chunks past their counts at once");
    let error = result.unwrap_err().to_string();
    assert!(error.contains("would write 60000 grants, more than max_grants = 50000"), "{error}");
    assert_eq!(written().await, (20_000, 40_000, 20_000), "two chunks of four");
    let pushes = BadgeAutoUnlock {
        budget: Budget { max_grants: None, max_pushes: Some(15_000) },
        chunks_at_once: 4,
        ..BadgeAutoUnlock::default()
    };
    let error = pushes.run(&context(&db, RunArgs::default())).await.unwrap_err().to_string();
    assert!(error.contains("would enqueue 20000 pushes, more than max_pushes = 15000"), "{error}");
    assert_eq!(written().await, (30_000, 60_000, 30_000), "one chunk of the two left");
    assert_ledger_invariants(db.pool()).await;
    let rest = BadgeAutoUnlock { chunks_at_once: 4, ..BadgeAutoUnlock::default() };
    assert_eq!(rest.run(&context(&db, RunArgs::default())).await.unwrap().items, 10_000);
    assert_eq!(written().await, (40_000, 80_000, 40_000));
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn budgets_stop_a_sweep_and_a_dry_run_writes_nothing() {
    let db = TestDb::new().await;
    badge(&db, "everyone", json!({"type":"xp_level","level":"bronze"}), 10, 10, 0).await;
    exec(&db, "INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 50) g")
        .await;
    let dry =
        BadgeAutoUnlock::default().run(&context(&db, RunArgs { dry_run: true, ..RunArgs::default() })).await.unwrap();
    assert_eq!(dry.details["would_unlock"]["everyone"], 50);
    let limited = BadgeAutoUnlock {
        budget: Budget { max_grants: None, max_pushes: Some(10) },
        chunks_at_once: 4,
        ..BadgeAutoUnlock::default()
    };
    let error = limited.run(&context(&db, RunArgs::default())).await.unwrap_err().to_string();
    assert!(error.contains("more than max_pushes = 10"), "{error}");
    let written: i64 = db::query_scalar(
        "SELECT (SELECT count(*) FROM customer_badges) + (SELECT count(*) FROM push_outbox)
              + (SELECT count(*) FROM customer_credit_transactions)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(written, 0);
    // A silent back-fill writes no push, so the push budget does not stop it (as its message advises).
    let silent = limited.run(&context(&db, RunArgs { silent: true, ..RunArgs::default() })).await.unwrap();
    assert_eq!((silent.items, &silent.details["pushes"]), (50, &json!(0)), "{silent:?}");
    let (badges, pushes): (i64, i64) =
        db::query_as("SELECT (SELECT count(*) FROM customer_badges), (SELECT count(*) FROM push_outbox)")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((badges, pushes), (50, 0));
}
