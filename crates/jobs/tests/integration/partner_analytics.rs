//! `partner-analytics` on hand-computed fixtures: every metric exact to the cent, re-runs and backfills leave the
//! totals equal to the sum of the daily rows.

use std::sync::Arc;

use chrono::NaiveDate;
use engine::{Clock, Engine, EngineSettings, JobDefinition, MisfirePolicy, Registry, RunArgs};
use jobs::PartnerAnalytics;
use testkit::{TestDb, utc};
use uuid::Uuid;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn run(db: &TestDb, now: &str, from: Option<&str>, to: Option<&str>) -> serde_json::Value {
    let mut registry = Registry::new();
    let definition =
        JobDefinition::new("partner-analytics", "5 0 * * *", "Europe/Istanbul", MisfirePolicy::All).unwrap();
    let job = PartnerAnalytics { business_zone: chrono_tz::Europe::Istanbul, base_currency: "TRY".to_owned() };
    registry.register(definition, None, Arc::new(job));
    let engine = Engine::new(db.pool().clone(), Clock::fixed(utc(now)), registry, EngineSettings::default());
    engine.sync_definitions().await.unwrap();
    let args = RunArgs { from: from.map(day), to: to.map(day), ..RunArgs::default() };
    let result = engine.run_manual("partner-analytics", args).await.unwrap();
    assert!(result.error.is_none(), "{:?}", result.error);
    result.report.unwrap().details
}

async fn partner(db: &TestDb, code: &str, rate: &str, status: &str) -> (Uuid, Uuid) {
    let owner = db.user().await;
    let id = db::query_scalar(
        "INSERT INTO partners (customer_user_id, business_name, email, phone, status, commission_rate, referral_code)
         VALUES ($1, $2, 'p@example.com', '555', $3, $4::numeric, $2) RETURNING id",
    )
    .bind(owner)
    .bind(code)
    .bind(status)
    .bind(rate)
    .fetch_one(db.pool())
    .await
    .unwrap();
    (id, owner)
}

async fn referral(db: &TestDb, referrer: Uuid, code: &str, at: &str) {
    let referred = db.user().await;
    db::query(
        "INSERT INTO referrals (referrer_user_id, referred_user_id, referral_code, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(referrer)
    .bind(referred)
    .bind(code)
    .bind(utc(at))
    .execute(db.pool())
    .await
    .unwrap();
}

struct Sub<'a> {
    partner: Option<Uuid>,
    code: Option<&'a str>,
    amount: Option<&'a str>,
    plan: Option<Uuid>,
    currency: &'a str,
    platform: &'a str,
    status: &'a str,
    started: &'a str,
    expired: Option<&'a str>,
}

const SUB: Sub<'static> = Sub {
    partner: None,
    code: None,
    amount: Some("99.99"),
    plan: None,
    currency: "TRY",
    platform: "ios",
    status: "active",
    started: "2026-06-09T12:00:00Z",
    expired: None,
};

async fn subscription(db: &TestDb, s: Sub<'_>) {
    let owner = db.user().await;
    db::query(
        "INSERT INTO customer_subscriptions (customer_user_id, plan_id, status, platform, amount, currency, started_at,
                                             expired_at, partner_id, referral_code)
         VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10)",
    )
    .bind(owner)
    .bind(s.plan)
    .bind(s.status)
    .bind(s.platform)
    .bind(s.amount)
    .bind(s.currency)
    .bind(utc(s.started))
    .bind(s.expired.map(utc))
    .bind(s.partner)
    .bind(s.code)
    .execute(db.pool())
    .await
    .unwrap();
}

type Row = (i32, i32, String, String, i32, i32);

async fn row(db: &TestDb, partner: Uuid, date: &str) -> Option<Row> {
    db::query_as(
        "SELECT new_signups, new_subscriptions, revenue::text, commission::text, active_subscribers, churn_count
         FROM partner_analytics WHERE partner_id = $1 AND date = $2",
    )
    .bind(partner)
    .bind(day(date))
    .fetch_optional(db.pool())
    .await
    .unwrap()
}

async fn totals_match_rows(db: &TestDb) {
    let mismatched: i64 = db::query_scalar(
        "SELECT count(*) FROM partners p
         LEFT JOIN (SELECT partner_id, sum(new_signups) AS s, sum(new_subscriptions) AS n, sum(revenue) AS r,
                           sum(commission) AS c FROM partner_analytics GROUP BY partner_id) t ON t.partner_id = p.id
         WHERE t.partner_id IS NOT NULL
           AND (p.total_referrals <> t.s OR p.total_subscriptions <> t.n OR p.total_revenue <> t.r
                OR p.total_commission <> t.c)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(mismatched, 0, "partner totals are the sum of their rows");
}

/// Day D is 2026-06-09 in Istanbul: [2026-06-08T21:00Z, 2026-06-09T21:00Z).
#[tokio::test]
async fn every_metric_is_exact_and_reruns_and_backfills_never_double() {
    let db = TestDb::new().await;
    let (p, p_owner) = partner(&db, "PART1", "20.00", "approved").await;
    let (q, _) = partner(&db, "QQ", "12.50", "approved").await;
    let (pending, _) = partner(&db, "PEND", "20.00", "pending").await;
    let somebody = db.user().await;
    referral(&db, somebody, "PART1", "2026-06-09T10:00:00Z").await; // the partner's code, on D
    referral(&db, p_owner, "XYZ", "2026-06-08T21:30:00Z").await; // by the partner's user, 00:30 on D
    referral(&db, somebody, "PART1", "2026-06-08T20:59:00Z").await; // 23:59 the day before
    let plan: Uuid =
        db::query_scalar("INSERT INTO subscription_plans (name, price) VALUES ('monthly', 49.50) RETURNING id")
            .fetch_one(db.pool())
            .await
            .unwrap();
    subscription(&db, Sub { partner: Some(p), ..SUB }).await; // 99.99
    subscription(&db, Sub { code: Some("PART1"), amount: None, plan: Some(plan), ..SUB }).await; // list price 49.50
    subscription(&db, Sub { partner: Some(q), code: Some("PART1"), amount: Some("10.00"), ..SUB }).await; // Q's
    subscription(&db, Sub { partner: Some(p), currency: "USD", amount: Some("5.00"), ..SUB }).await; // not revenue
    subscription(&db, Sub { partner: Some(p), platform: "promo", amount: Some("0"), ..SUB }).await; // not paid
    subscription(&db, Sub { partner: Some(p), status: "trial", ..SUB }).await; // not paid
    subscription(
        &db,
        Sub { partner: Some(p), started: "2026-05-01T00:00:00Z", expired: Some("2026-07-01T00:00:00Z"), ..SUB },
    )
    .await; // active through D
    subscription(
        &db,
        Sub { partner: Some(p), started: "2026-05-01T00:00:00Z", expired: Some("2026-06-09T08:00:00Z"), ..SUB },
    )
    .await; // churned on D
    subscription(&db, Sub { code: Some("PEND"), ..SUB }).await; // a pending partner gets no row

    let details = run(&db, "2026-06-12T09:00:00Z", Some("2026-06-09"), Some("2026-06-09")).await;
    assert_eq!(details["other_currencies"], serde_json::json!({ "USD": 1 }));
    // P: signups 2; subscriptions 99.99 + 49.50 + the USD one; revenue 149.49; 20 % is 29.898, so 29.90.
    assert_eq!(row(&db, p, "2026-06-09").await, Some((2, 3, "149.49".into(), "29.90".into(), 4, 1)));
    // Q: 10.00 at 12.5 % is 1.25.
    assert_eq!(row(&db, q, "2026-06-09").await, Some((0, 1, "10.00".into(), "1.25".into(), 1, 0)));
    assert_eq!(row(&db, pending, "2026-06-09").await, None);
    totals_match_rows(&db).await;

    // A re-run and a scheduled run covering the same day change nothing; totals stay the sum of the rows.
    run(&db, "2026-06-12T09:00:00Z", Some("2026-06-09"), Some("2026-06-09")).await;
    let details = run(&db, "2026-06-10T00:05:00+03:00", None, None).await;
    assert_eq!((details["from"].as_str(), details["to"].as_str()), (Some("2026-06-08"), Some("2026-06-09")));
    assert_eq!(row(&db, p, "2026-06-09").await, Some((2, 3, "149.49".into(), "29.90".into(), 4, 1)));
    let (total_referrals, total_revenue, total_commission): (i32, String, String) =
        db::query_as("SELECT total_referrals, total_revenue::text, total_commission::text FROM partners WHERE id = $1")
            .bind(p)
            .fetch_one(db.pool())
            .await
            .unwrap();
    // 2026-06-08 holds the referral at 23:59 and the churned subscription still active.
    assert_eq!(row(&db, p, "2026-06-08").await, Some((1, 0, "0.00".into(), "0.00".into(), 2, 0)));
    assert_eq!((total_referrals, total_revenue.as_str(), total_commission.as_str()), (3, "149.49", "29.90"));
    totals_match_rows(&db).await;

    // A three-day outage backfills three days, once each.
    let details = run(&db, "2026-06-12T09:00:00Z", Some("2026-06-09"), Some("2026-06-11")).await;
    assert_eq!(details["rows"], 6, "{details}");
    let days: i64 = db::query_scalar("SELECT count(*) FROM partner_analytics WHERE partner_id = $1")
        .bind(p)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(days, 4);
    assert_eq!(row(&db, p, "2026-06-10").await, Some((0, 0, "0.00".into(), "0.00".into(), 4, 0)));
    totals_match_rows(&db).await;
}
