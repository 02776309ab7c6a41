//! `referral-tier2` and `referral-tier3` against the real PostgreSQL: exactly once, whatever happens.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use domain::Budget;
use engine::{Job, JobContext, JobReport, RunArgs};
use jobs::{ReferralAmounts, ReferralTier2, ReferralTier3};
use testkit::{NewUser, TestDb, assert_ledger_invariants, utc};
use uuid::Uuid;

const NOW: &str = "2026-03-10T12:00:00Z";
const CREATED: &str = "2026-03-05T12:00:00Z";

fn context(db: &TestDb, job: &str, args: RunArgs) -> JobContext {
    db.context(job, utc(NOW), args)
}

async fn run(db: &TestDb, job: &dyn Job, name: &str) -> JobReport {
    job.run(&context(db, name, RunArgs::default())).await.unwrap()
}

fn tier2() -> ReferralTier2 {
    ReferralTier2 { amounts: ReferralAmounts::default(), budget: Budget::default(), hand_over_to_badges: false }
}

fn tier3() -> ReferralTier3 {
    ReferralTier3 { amounts: ReferralAmounts::default(), budget: Budget::default(), hand_over_to_badges: false }
}

async fn user(db: &TestDb, locale: &str) -> Uuid {
    NewUser::new().locale(locale).insert(db.pool()).await
}

/// A referral created at CREATED, expiring 30 days later; returns (referral, referrer, referred).
async fn referral(db: &TestDb) -> (Uuid, Uuid, Uuid) {
    let referrer = user(db, "tr").await;
    let referred = user(db, "en").await;
    let id: Uuid = db::query_scalar(
        "INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at, expires_at)
         VALUES ($1, $2, 'CODE', $3, $3::timestamptz + interval '30 days') RETURNING id",
    )
    .bind(referrer)
    .bind(referred)
    .bind(utc(CREATED))
    .fetch_one(db.pool())
    .await
    .unwrap();
    (id, referrer, referred)
}

async fn identity(db: &TestDb, user: Uuid, provider: &str, login: Option<DateTime<Utc>>) {
    db::query(
        "INSERT INTO customer_oauth_identities (customer_user_id, provider, provider_user_id, last_login_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(user)
    .bind(provider)
    .bind(format!("{provider}-{user}"))
    .bind(login)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn balance(db: &TestDb, user: Uuid) -> i32 {
    db::query_scalar("SELECT coalesce((SELECT balance FROM customer_credits WHERE customer_user_id = $1), 0)")
        .bind(user)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db.pool()).await.unwrap()
}

async fn status(db: &TestDb, referral: Uuid) -> (String, i32) {
    db::query_as("SELECT status, tier FROM referrals WHERE id = $1").bind(referral).fetch_one(db.pool()).await.unwrap()
}

#[tokio::test]
async fn a_referred_user_with_three_identities_is_paid_once_at_tier2_even_run_twice_and_concurrently() {
    let db = TestDb::new().await;
    let (id, referrer, referred) = referral(&db).await;
    let login = utc(CREATED) + TimeDelta::hours(1);
    for provider in ["google", "apple", "phone"] {
        identity(&db, referred, provider, Some(login)).await;
    }
    let job = tier2();
    let (a, b) = tokio::join!(run(&db, &job, "referral-tier2"), run(&db, &job, "referral-tier2"));
    assert_eq!(a.items + b.items, 1, "two concurrent runs pay the referral once: {a:?} {b:?}");
    assert_eq!(run(&db, &job, "referral-tier2").await.items, 0, "a third run finds nothing");

    assert_eq!(balance(&db, referrer).await, 50);
    assert_eq!(balance(&db, referred).await, 10);
    assert_eq!(status(&db, id).await, ("completed".to_owned(), 2));
    let pushes: Vec<(Uuid, String, String, serde_json::Value)> =
        db::query_as("SELECT customer_user_id, title, body, data FROM push_outbox ORDER BY dedupe_key")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].0, referrer);
    assert_eq!(pushes[0].1, "Arkadaşın Giriş Yaptı! 💰");
    assert_eq!(pushes[0].2, "Arkadaşın ilk girişini yaptı! 50 kredi kazandın.");
    assert_eq!(pushes[0].3["referralId"], id.to_string());
    assert_eq!(pushes[0].3["deepLink"], "goalgpt://referrals");
    assert_eq!(pushes[1].0, referred);
    assert_eq!((pushes[1].1.as_str(), pushes[1].2.as_str()), ("Welcome! 🎁", "Here are 10 credits on us!"));
    assert_eq!(pushes[1].3["type"], "welcome_bonus");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn a_login_within_ten_minutes_of_the_referral_does_not_count() {
    let db = TestDb::new().await;
    let (id, referrer, referred) = referral(&db).await;
    identity(&db, referred, "google", Some(utc(CREATED) + TimeDelta::minutes(9))).await;
    assert_eq!(run(&db, &tier2(), "referral-tier2").await.items, 0);
    assert_eq!(balance(&db, referrer).await, 0);
    // The users-table login counts as well, once it is late enough.
    db::query("UPDATE customer_users SET last_login_at = $2 WHERE id = $1")
        .bind(referred)
        .bind(utc(CREATED) + TimeDelta::minutes(10))
        .execute(db.pool())
        .await
        .unwrap();
    assert_eq!(run(&db, &tier2(), "referral-tier2").await.items, 1);
    assert_eq!(status(&db, id).await.0, "completed");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn an_expired_pending_referral_becomes_expired_and_pays_nothing() {
    let db = TestDb::new().await;
    let (id, referrer, referred) = referral(&db).await;
    db::query("UPDATE referrals SET expires_at = $2 WHERE id = $1")
        .bind(id)
        .bind(utc(NOW) - TimeDelta::hours(1))
        .execute(db.pool())
        .await
        .unwrap();
    // A login after the expiry does not count.
    identity(&db, referred, "google", Some(utc(NOW) - TimeDelta::minutes(30))).await;
    let report = run(&db, &tier2(), "referral-tier2").await;
    assert_eq!(report.items, 0);
    assert_eq!(report.details["expired"], 1);
    assert_eq!(status(&db, id).await.0, "expired");
    assert_eq!(balance(&db, referrer).await + balance(&db, referred).await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM push_outbox").await, 0);
}

#[tokio::test]
async fn deleted_and_inactive_users_get_nothing() {
    let db = TestDb::new().await;
    let (_, _, deleted_referred) = referral(&db).await;
    let (_, inactive_referrer, referred) = referral(&db).await;
    db::query("UPDATE customer_users SET deleted_at = $2 WHERE id = $1")
        .bind(deleted_referred)
        .bind(utc(NOW))
        .execute(db.pool())
        .await
        .unwrap();
    db::query("UPDATE customer_users SET is_active = false WHERE id = $1")
        .bind(inactive_referrer)
        .execute(db.pool())
        .await
        .unwrap();
    for user in [deleted_referred, referred] {
        identity(&db, user, "google", Some(utc(CREATED) + TimeDelta::days(1))).await;
    }
    assert_eq!(run(&db, &tier2(), "referral-tier2").await.items, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM customer_credit_transactions").await, 0);
}

async fn subscription(db: &TestDb, user: Uuid, status: &str, platform: &str, started: DateTime<Utc>) {
    db::query(
        "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, currency, started_at, expired_at)
         VALUES ($1, $2, $3, 99.99, 'TRY', $4, $4::timestamptz + interval '30 days')",
    )
    .bind(user)
    .bind(status)
    .bind(platform)
    .bind(started)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn completed_referral(db: &TestDb) -> (Uuid, Uuid, Uuid) {
    let (id, referrer, referred) = referral(db).await;
    identity(db, referred, "google", Some(utc(CREATED) + TimeDelta::hours(2))).await;
    run(db, &tier2(), "referral-tier2").await;
    (id, referrer, referred)
}

#[tokio::test]
async fn a_referred_user_with_two_active_subscriptions_pays_tier3_once_with_its_level_up() {
    let db = TestDb::new().await;
    let (id, referrer, referred) = completed_referral(&db).await;
    subscription(&db, referred, "active", "ios", utc(CREATED) + TimeDelta::days(1)).await;
    subscription(&db, referred, "active", "android", utc(CREATED) + TimeDelta::days(2)).await;
    let job = tier3();
    let (a, b) = tokio::join!(run(&db, &job, "referral-tier3"), run(&db, &job, "referral-tier3"));
    assert_eq!(a.items + b.items, 1);
    assert_eq!(run(&db, &job, "referral-tier3").await.items, 0);

    // 50 (tier 2) + 200 (tier 3) + 25 (500 XP crosses silver).
    assert_eq!(balance(&db, referrer).await, 275);
    let (xp, level): (i32, String) =
        db::query_as("SELECT xp_points, level FROM customer_xp WHERE customer_user_id = $1")
            .bind(referrer)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((xp, level.as_str()), (500, "silver"));
    let (state, subscribed): (String, Option<DateTime<Utc>>) =
        db::query_as("SELECT status, referred_subscribed_at FROM referrals WHERE id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(state, "rewarded");
    assert_eq!(subscribed, Some(utc(CREATED) + TimeDelta::days(1)));
    let kinds: Vec<String> = db::query_scalar("SELECT data ->> 'type' FROM push_outbox ORDER BY data ->> 'type'")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(kinds, vec!["level_up", "referral_tier2", "referral_tier3", "welcome_bonus", "welcome_vip"]);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn promotional_trial_and_earlier_subscriptions_never_pay_tier3() {
    let db = TestDb::new().await;
    let (_, referrer, referred) = completed_referral(&db).await;
    subscription(&db, referred, "active", "promo", utc(CREATED) + TimeDelta::days(1)).await;
    subscription(&db, referred, "trial", "ios", utc(CREATED) + TimeDelta::days(1)).await;
    subscription(&db, referred, "trialing", "android", utc(CREATED) + TimeDelta::days(1)).await;
    subscription(&db, referred, "active", "ios", utc(CREATED) - TimeDelta::days(1)).await;
    assert_eq!(run(&db, &tier3(), "referral-tier3").await.items, 0);
    assert_eq!(balance(&db, referrer).await, 50, "only tier 2");
}

#[tokio::test]
async fn a_budget_stops_the_run_before_anything_is_written_and_silent_writes_no_push() {
    let db = TestDb::new().await;
    for _ in 0..3 {
        let (_, _, referred) = referral(&db).await;
        identity(&db, referred, "apple", Some(utc(CREATED) + TimeDelta::days(1))).await;
    }
    let limited = ReferralTier2 {
        amounts: ReferralAmounts::default(),
        budget: Budget { max_grants: Some(5), max_pushes: None },
        hand_over_to_badges: false,
    };
    let error = limited.run(&context(&db, "referral-tier2", RunArgs::default())).await.unwrap_err().to_string();
    assert!(error.contains("budget: this run would write 6 grants, more than max_grants = 5"), "{error}");
    assert_eq!(count(&db, "SELECT count(*) FROM customer_credit_transactions").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM referrals WHERE status = 'pending'").await, 3);

    let silent = RunArgs { silent: true, ..RunArgs::default() };
    let report = tier2().run(&context(&db, "referral-tier2", silent)).await.unwrap();
    assert_eq!(report.items, 3);
    assert_eq!(count(&db, "SELECT count(*) FROM customer_credit_transactions").await, 6);
    assert_eq!(count(&db, "SELECT count(*) FROM push_outbox").await, 0, "a silent back-fill enqueues nothing");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn a_dry_run_reports_and_writes_nothing() {
    let db = TestDb::new().await;
    let (_, _, referred) = referral(&db).await;
    identity(&db, referred, "apple", Some(utc(CREATED) + TimeDelta::days(1))).await;
    let dry = RunArgs { dry_run: true, ..RunArgs::default() };
    let report = tier2().run(&context(&db, "referral-tier2", dry)).await.unwrap();
    assert_eq!(report.details["would_pay"], 1);
    assert_eq!(count(&db, "SELECT count(*) FROM customer_credit_transactions").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM referrals WHERE status = 'pending'").await, 1);
}

#[tokio::test]
async fn many_referrals_are_paid_in_batches_without_parameter_lists() {
    let db = Arc::new(TestDb::new().await);
    db::query(
        "WITH referrer AS (INSERT INTO customer_users (email) VALUES ('referrer@example.com') RETURNING id),
              referred AS (INSERT INTO customer_users (email, last_login_at)
                           SELECT 'r' || g || '@example.com', $1::timestamptz + interval '1 day'
                           FROM generate_series(1, 12000) g RETURNING id)
         INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at, expires_at)
         SELECT referrer.id, referred.id, 'BULK', $1, $1::timestamptz + interval '30 days' FROM referrer, referred",
    )
    .bind(utc(CREATED))
    .execute(db.pool())
    .await
    .unwrap();
    let report = run(&db, &tier2(), "referral-tier2").await;
    assert_eq!(report.items, 12_000);
    assert_eq!(report.details["batches"], 3);
    // One referrer, 12,000 grants chained in one user's ledger.
    let referrer_balance: i32 = db::query_scalar(
        "SELECT balance FROM customer_credits c JOIN customer_users u ON u.id = c.customer_user_id
         WHERE u.email = 'referrer@example.com'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(referrer_balance, 600_000);
    assert_ledger_invariants(db.pool()).await;
}
