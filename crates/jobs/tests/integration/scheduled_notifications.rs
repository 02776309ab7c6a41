//! `scheduled-notifications` against the real PostgreSQL: audiences, languages, opt-out, segment filters, invalid
//! campaigns, completion counts, cancel, staleness and resuming after a crash.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::DayZones;
use engine::{Clock, Engine, EngineSettings, JobDefinition, MisfirePolicy, Registry, RunArgs};
use jobs::ScheduledNotifications;
use serde_json::{Value, json};
use testkit::{NewUser, TestDb, utc};
use uuid::Uuid;

const NOW: &str = "2026-06-10T09:00:00Z";

async fn run(db: &TestDb, now: &str) -> Value {
    let mut registry = Registry::new();
    let definition =
        JobDefinition::new("scheduled-notifications", "* * * * *", "Europe/Istanbul", MisfirePolicy::RunOnce).unwrap();
    let job = ScheduledNotifications {
        lifetime: Duration::from_secs(24 * 3600),
        stale_after: Duration::from_secs(24 * 3600),
        zones: DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: None },
        content: push::ContentRules::default(),
    };
    registry.register(definition, None, Arc::new(job));
    let engine = Engine::new(db.pool().clone(), Clock::fixed(utc(now)), registry, EngineSettings::default());
    engine.sync_definitions().await.unwrap();
    let result = engine.run_manual("scheduled-notifications", RunArgs::default()).await.unwrap();
    assert!(result.error.is_none(), "{:?}", result.error);
    result.report.unwrap().details
}

#[derive(Default)]
struct U<'a> {
    locale: &'a str,
    allowed: bool,
    deleted: bool,
    vip: bool,
    level: Option<&'a str>,
}

async fn user(db: &TestDb, u: U<'_>) -> Uuid {
    let id = NewUser::new()
        .locale(if u.locale.is_empty() { "tr" } else { u.locale })
        .push_allowed(u.allowed)
        .deleted(u.deleted)
        .insert(db.pool())
        .await;
    if u.vip {
        db::query(
            "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, started_at, expired_at)
             VALUES ($1, 'active', 'ios', 9.99, $2::timestamptz - interval '1 day', $2::timestamptz + interval '9 days')",
        )
        .bind(id)
        .bind(utc(NOW))
        .execute(db.pool())
        .await
        .unwrap();
    }
    if let Some(level) = u.level {
        db::query("INSERT INTO customer_xp (customer_user_id, level) VALUES ($1, $2)")
            .bind(id)
            .bind(level)
            .execute(db.pool())
            .await
            .unwrap();
    }
    id
}

async fn campaign(db: &TestDb, audience: &str, filter: Option<Value>, at: &str) -> Uuid {
    db::query_scalar(
        "INSERT INTO scheduled_notifications (title_tr, title_en, body_tr, body_en, deep_link_url, target_audience,
                                              segment_filter, scheduled_at)
         VALUES ('Maç günü!', 'Match day!', 'Tahminini yap', 'Make your pick', 'goalgpt://matches', $1, $2, $3)
         RETURNING id",
    )
    .bind(audience)
    .bind(filter)
    .bind(utc(at))
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn recipients(db: &TestDb, campaign: Uuid) -> Vec<(Uuid, String, String)> {
    db::query_as(
        "SELECT customer_user_id, title, body FROM push_outbox WHERE campaign_id = $1 ORDER BY customer_user_id",
    )
    .bind(campaign)
    .fetch_all(db.pool())
    .await
    .unwrap()
}

async fn state(db: &TestDb, campaign: Uuid) -> (String, Option<i32>, Option<i32>, Option<i32>, Option<String>) {
    db::query_as(
        "SELECT status, recipient_count, success_count, failure_count, error FROM scheduled_notifications WHERE id = $1",
    )
    .bind(campaign)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

#[tokio::test]
async fn users_who_turned_campaigns_off_are_left_out_before_counting() {
    let db = TestDb::new().await;
    let keeps = user(&db, U { allowed: true, ..U::default() }).await;
    let off = user(&db, U { allowed: true, ..U::default() }).await;
    let rewards_off = user(&db, U { allowed: true, ..U::default() }).await;
    // Through the function the app calls; turning campaigns off twice and back on is the last word that counts.
    for (who, category, enabled) in [
        (off, "campaigns", false),
        (rewards_off, "rewards", false),
        (keeps, "campaigns", false),
        (keeps, "campaigns", true),
    ] {
        db::query("SELECT hattrick_set_push_preference($1, $2, $3)")
            .bind(who)
            .bind(category)
            .bind(enabled)
            .execute(db.pool())
            .await
            .unwrap();
    }
    let id = campaign(&db, "all", None, NOW).await;
    run(&db, NOW).await;
    let got: Vec<Uuid> = recipients(&db, id).await.into_iter().map(|(user, ..)| user).collect();
    assert_eq!(got, sorted(vec![keeps, rewards_off]));
    assert_eq!(state(&db, id).await.1, Some(2), "the recipient count leaves them out too");

    // An unknown category is refused with a clear error, and nothing is written.
    let error = db::query("SELECT hattrick_set_push_preference($1, 'marketing', false)")
        .bind(keeps)
        .execute(db.pool())
        .await
        .unwrap_err();
    let error = error.as_database_error().unwrap();
    assert_eq!(error.code().as_deref(), Some("22023"));
    assert!(error.message().contains("unknown push category \"marketing\""), "{}", error.message());
    let rows: i64 =
        db::query_scalar("SELECT count(*) FROM hattrick_push_preferences").fetch_one(db.pool()).await.unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn a_campaign_reaches_live_consenting_users_once_in_their_language() {
    let db = TestDb::new().await;
    let tr = user(&db, U { allowed: true, ..U::default() }).await;
    let en = user(&db, U { locale: "en-GB", allowed: true, ..U::default() }).await;
    let _opted_out = user(&db, U { allowed: false, ..U::default() }).await;
    let _deleted = user(&db, U { allowed: true, deleted: true, ..U::default() }).await;
    let future = campaign(&db, "all", None, "2026-06-10T10:00:00Z").await;
    let id = campaign(&db, "all", None, "2026-06-10T08:59:00Z").await;

    run(&db, NOW).await;
    run(&db, NOW).await; // a second run (and a repeated expansion) adds nothing
    let rows = recipients(&db, id).await;
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), sorted(vec![tr, en]));
    for (user, title, body) in &rows {
        if *user == en {
            assert_eq!((title.as_str(), body.as_str()), ("Match day!", "Make your pick"));
        } else {
            assert_eq!((title.as_str(), body.as_str()), ("Maç günü!", "Tahminini yap"));
        }
    }
    assert_eq!(state(&db, id).await.0, "sending");
    assert_eq!(state(&db, id).await.1, Some(2));
    assert_eq!(state(&db, future).await.0, "pending", "not due yet");
    let data: Value = db::query_scalar("SELECT data FROM push_outbox WHERE campaign_id = $1 LIMIT 1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(data, json!({ "type": "campaign", "campaignId": id.to_string(), "deepLink": "goalgpt://matches" }));
}

#[tokio::test]
async fn vip_free_and_segment_audiences_select_their_users() {
    let db = TestDb::new().await;
    let vip = user(&db, U { allowed: true, vip: true, level: Some("gold"), ..U::default() }).await;
    let free = user(&db, U { allowed: true, level: Some("silver"), ..U::default() }).await;
    let no_xp_row = user(&db, U { locale: "en", allowed: true, ..U::default() }).await;
    let to_vip = campaign(&db, "vip", None, NOW).await;
    let to_free = campaign(&db, "free", None, NOW).await;
    let gold_or_more = campaign(&db, "segment", Some(json!({"xp_level": {"gte": "gold"}})), NOW).await;
    let bronze_or_en = campaign(
        &db,
        "segment",
        Some(json!({"any": [{"xp_level": "bronze"}, {"locale": "en"}], "is_vip": false})),
        NOW,
    )
    .await;
    run(&db, NOW).await;
    let users = |rows: Vec<(Uuid, String, String)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(users(recipients(&db, to_vip).await), vec![vip]);
    assert_eq!(users(recipients(&db, to_free).await), sorted(vec![free, no_xp_row]));
    assert_eq!(users(recipients(&db, gold_or_more).await), vec![vip]);
    // A user without an XP row reads as bronze (docs/jobs/scheduled-notifications.md).
    assert_eq!(users(recipients(&db, bronze_or_en).await), vec![no_xp_row]);
}

#[tokio::test]
async fn an_invalid_campaign_fails_with_the_path_of_each_problem_and_the_others_proceed() {
    let db = TestDb::new().await;
    user(&db, U { allowed: true, ..U::default() }).await;
    let bad = campaign(&db, "segment", Some(json!({"any": [{"locale": "en"}, {"xp_lvl": 3}]})), NOW).await;
    let missing = campaign(&db, "segment", None, NOW).await;
    let good = campaign(&db, "all", None, NOW).await;
    let details = run(&db, NOW).await;
    let (status, count, _, _, error) = state(&db, bad).await;
    assert_eq!((status.as_str(), count), ("failed", None));
    assert_eq!(error.as_deref(), Some("segment_filter.any[1].xp_lvl: unknown field"));
    assert_eq!(
        state(&db, missing).await.4.as_deref(),
        Some("segment_filter: required when target_audience is `segment`")
    );
    assert_eq!(state(&db, good).await.1, Some(1));
    assert_eq!(details["failed"].as_array().unwrap().len(), 2, "{details}");
    assert!(recipients(&db, bad).await.is_empty());
}

#[tokio::test]
async fn a_campaign_is_sent_when_every_row_is_final_and_counts_users() {
    let db = TestDb::new().await;
    for _ in 0..4 {
        user(&db, U { allowed: true, ..U::default() }).await;
    }
    let id = campaign(&db, "all", None, NOW).await;
    run(&db, NOW).await;
    // The dispatcher's outcomes: two delivered, one failed, one with no tokens, one still pending.
    let rows: Vec<i64> = db::query_scalar("SELECT id FROM push_outbox WHERE campaign_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(db.pool())
        .await
        .unwrap();
    for (row, status) in rows.iter().zip(["sent", "sent", "failed", "no_tokens"]) {
        db::query("UPDATE push_outbox SET status = $2 WHERE id = $1")
            .bind(row)
            .bind(status)
            .execute(db.pool())
            .await
            .unwrap();
    }
    db::query("UPDATE push_outbox SET status = 'pending' WHERE id = $1")
        .bind(rows[3])
        .execute(db.pool())
        .await
        .unwrap();
    run(&db, "2026-06-10T09:01:00Z").await;
    assert_eq!(state(&db, id).await.0, "sending", "a pending row keeps it open");
    db::query("UPDATE push_outbox SET status = 'no_tokens' WHERE id = $1")
        .bind(rows[3])
        .execute(db.pool())
        .await
        .unwrap();
    run(&db, "2026-06-10T09:02:00Z").await;
    let (status, count, success, failure, _) = state(&db, id).await;
    assert_eq!((status.as_str(), count, success, failure), ("sent", Some(4), Some(2), Some(2)));
    let sent_at: DateTime<Utc> = db::query_scalar("SELECT sent_at FROM scheduled_notifications WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(sent_at, utc("2026-06-10T09:02:00Z"), "sent_at is the completion time");
}

#[tokio::test]
async fn cancelled_stale_and_crashed_campaigns() {
    let db = TestDb::new().await;
    user(&db, U { allowed: true, ..U::default() }).await;
    // Cancelled before its time: never expanded.
    let cancelled = campaign(&db, "all", None, NOW).await;
    db::query("UPDATE scheduled_notifications SET status = 'cancelled' WHERE id = $1")
        .bind(cancelled)
        .execute(db.pool())
        .await
        .unwrap();
    // More than a day late when first picked up: failed, not sent.
    let stale = campaign(&db, "all", None, "2026-06-08T09:00:00Z").await;
    // Claimed by a run that died before its expansion committed.
    let crashed = campaign(&db, "all", None, NOW).await;
    db::query("UPDATE scheduled_notifications SET status = 'sending' WHERE id = $1")
        .bind(crashed)
        .execute(db.pool())
        .await
        .unwrap();
    run(&db, NOW).await;
    assert!(recipients(&db, cancelled).await.is_empty());
    let (status, _, _, _, error) = state(&db, stale).await;
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("late"));
    assert!(recipients(&db, stale).await.is_empty());
    assert_eq!(recipients(&db, crashed).await.len(), 1, "resumed after the crash");

    // Cancelled while sending: its pending rows are cancelled.
    db::query("UPDATE scheduled_notifications SET status = 'cancelled' WHERE id = $1")
        .bind(crashed)
        .execute(db.pool())
        .await
        .unwrap();
    let details = run(&db, "2026-06-10T09:01:00Z").await;
    assert_eq!(details["cancelled_pushes"], 1);
    let statuses: Vec<String> = db::query_scalar("SELECT status FROM push_outbox WHERE campaign_id = $1")
        .bind(crashed)
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(statuses, vec!["cancelled"]);
}

#[tokio::test]
async fn a_platform_segment_sends_only_to_tokens_on_that_platform() {
    let db = TestDb::new().await;
    let both = user(&db, U { allowed: true, ..U::default() }).await;
    let android_only = user(&db, U { allowed: true, ..U::default() }).await;
    for (user, token, platform) in [(both, "a", "ios"), (both, "b", "android"), (android_only, "c", "android")] {
        db::query(
            "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id) VALUES ($1, $2, $3, $2)",
        )
        .bind(user)
        .bind(token)
        .bind(platform)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let ios = campaign(&db, "segment", Some(json!({"platform": "ios"})), NOW).await;
    let everyone = campaign(&db, "all", None, NOW).await;
    run(&db, NOW).await;
    let rows: Vec<(Uuid, Option<Vec<String>>)> =
        db::query_as("SELECT customer_user_id, platforms FROM push_outbox WHERE campaign_id = $1")
            .bind(ios)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(rows, vec![(both, Some(vec!["ios".to_owned()]))]);
    let unrestricted: Vec<Option<Vec<String>>> =
        db::query_scalar("SELECT platforms FROM push_outbox WHERE campaign_id = $1")
            .bind(everyone)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(unrestricted, vec![None, None]);
}

/// A campaign at 19:00 on 10 June 2026 in each user's zone, created at 11:00 UTC, stored as the admin API stores
/// one (due when 19:00 comes first anywhere, at UTC+14).
async fn local_campaign(db: &TestDb, if_passed: &str) -> Uuid {
    db::query_scalar(
        "INSERT INTO scheduled_notifications (title_tr, body_tr, target_audience, scheduled_at, local_time, if_passed,
                                              created_at)
         VALUES ('Derbi', 'Bu akşam', 'all', '2026-06-10T05:00:00Z', '2026-06-10 19:00', $1, '2026-06-10T11:00:00Z')
         RETURNING id",
    )
    .bind(if_passed)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_local_time_campaign_goes_out_zone_by_zone_at_that_time_in_each_users_zone() {
    let db = TestDb::new().await;
    let istanbul = NewUser::new().timezone("Europe/Istanbul").insert(db.pool()).await;
    let new_york = NewUser::new().timezone("America/New_York").insert(db.pool()).await;
    let tokyo = NewUser::new().timezone("Asia/Tokyo").insert(db.pool()).await;
    let next_day = local_campaign(&db, "next_day").await;
    let skip = local_campaign(&db, "skip").await;
    let pool = db.pool().clone();
    let times = |campaign: Uuid| {
        let pool = pool.clone();
        async move {
            let rows: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> =
                db::query_as("SELECT customer_user_id, not_before, expires_at FROM push_outbox WHERE campaign_id = $1")
                    .bind(campaign)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            rows
        }
    };
    let at = |rows: &[(Uuid, DateTime<Utc>, DateTime<Utc>)], user: Uuid| {
        rows.iter().find(|r| r.0 == user).map(|r| (r.1, r.2 - r.1))
    };
    let day = chrono::Duration::hours(24);

    // Noon UTC: 19:00 comes in Istanbul at 16:00 UTC and in New York at 23:00; it came in Tokyo at 10:00, before
    // the campaign was created. Nobody is due yet.
    run(&db, "2026-06-10T12:00:00Z").await;
    assert!(times(next_day).await.is_empty());
    // A user who signs up in Istanbul in the afternoon is in that zone's audience: it is taken at its own time.
    let unknown = NewUser::new().timezone("Mars/Olympus_Mons").insert(db.pool()).await;
    run(&db, "2026-06-10T15:57:00Z").await;
    let rows = times(next_day).await;
    assert_eq!(at(&rows, istanbul), Some((utc("2026-06-10T16:00:00Z"), day)));
    assert_eq!(at(&rows, unknown), Some((utc("2026-06-10T16:00:00Z"), day)), "an unknown zone is the business zone's");
    assert_eq!(at(&rows, new_york), None, "not New York's time yet");
    run(&db, "2026-06-10T22:58:00Z").await;
    assert_eq!(at(&times(next_day).await, new_york), Some((utc("2026-06-10T23:00:00Z"), day)));
    assert_eq!(state(&db, next_day).await.1, None, "still expanding: Tokyo's next day is to come");
    // Skipped users are counted once every zone's time has come; passed users of `next_day` get it a day later.
    run(&db, "2026-06-11T09:57:00Z").await;
    let rows = times(next_day).await;
    assert_eq!(at(&rows, tokyo), Some((utc("2026-06-11T10:00:00Z"), day)), "passed: the same time the next day");
    let skipped = times(skip).await;
    assert_eq!((skipped.len(), at(&skipped, tokyo)), (3, None), "passed and skipped");
    let (missed, recipients): (Option<i32>, Option<i32>) =
        db::query_as("SELECT missed_count, recipient_count FROM scheduled_notifications WHERE id = $1")
            .bind(skip)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((missed, recipients), (Some(1), Some(3)));
    run(&db, "2026-06-12T07:00:00Z").await;
    assert_eq!(state(&db, next_day).await.1, Some(4), "every zone's time has come: expanded");
}

#[tokio::test]
async fn an_experiment_assigns_each_user_once_by_weight_with_a_holdout_and_the_same_way_twice() {
    let db = TestDb::new().await;
    db::query(
        "INSERT INTO customer_users (email, locale_preference)
         SELECT 'x' || n || '@example.com', CASE WHEN n % 2 = 0 THEN 'en' ELSE 'tr' END FROM generate_series(1, 2000) n",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let id: Uuid = db::query_scalar(
        r#"INSERT INTO scheduled_notifications (title_tr, body_tr, target_audience, scheduled_at, holdout_percent,
                                                conversion_event, conversion_window_hours, variants)
           VALUES ('Derbi', 'Bu akşam', 'all', $1, 10, 'daily_reward', 24,
                   '[{"title_tr": "A", "body_tr": "a", "title_en": "A en", "weight": 1},
                     {"title_tr": "B", "body_tr": "b", "weight": 3, "deep_link_url": "goalgpt://b"}]')
           RETURNING id"#,
    )
    .bind(utc(NOW))
    .fetch_one(db.pool())
    .await
    .unwrap();
    run(&db, NOW).await;
    let groups = || async {
        let groups: Vec<(i16, i64)> = db::query_as(
            "SELECT variant, count(*) FROM hattrick_campaign_assignments WHERE campaign_id = $1 GROUP BY 1 ORDER BY 1",
        )
        .bind(id)
        .fetch_all(db.pool())
        .await
        .unwrap();
        groups
    };
    let first = groups().await;
    let count = |v: i16| first.iter().find(|g| g.0 == v).map_or(0, |g| g.1);
    assert_eq!(first.iter().map(|g| g.1).sum::<i64>(), 2000, "every user is assigned once: {first:?}");
    // 10 % held out, the rest 1:3 (binomial spread at 2,000 users is a few percent).
    assert!((150..=250).contains(&count(0)), "{first:?}");
    assert!((380..=520).contains(&count(1)), "{first:?}");
    assert!((1250..=1450).contains(&count(2)), "{first:?}");
    // The holdout gets nothing; each variant's users get its texts, in their language, with its link.
    // (variant, title, deep link, data.variant, pushes)
    type Pushes = Vec<(i16, Option<String>, Option<String>, Option<String>, i64)>;
    let pushes: Pushes = db::query_as(
        "SELECT a.variant, o.title, o.deep_link, o.data ->> 'variant', count(*) FROM hattrick_campaign_assignments a
         LEFT JOIN push_outbox o ON o.campaign_id = a.campaign_id AND o.customer_user_id = a.customer_user_id
         WHERE a.campaign_id = $1 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let has = |variant: i16, title: &str, link: Option<&str>| {
        pushes.iter().any(|p| p.0 == variant && p.1.as_deref() == Some(title) && p.2.as_deref() == link)
    };
    assert!(has(1, "A en", None) && has(1, "A", None), "{pushes:?}");
    assert!(has(2, "B", Some("goalgpt://b")), "{pushes:?}");
    assert!(pushes.iter().filter(|p| p.0 > 0).all(|p| p.3 == Some(p.0.to_string())), "data.variant: {pushes:?}");
    let holdout_pushes: i64 = db::query_scalar(
        "SELECT count(*) FROM push_outbox o JOIN hattrick_campaign_assignments a
           ON a.campaign_id = o.campaign_id AND a.customer_user_id = o.customer_user_id AND a.variant = 0",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(holdout_pushes, 0);
    assert_eq!(state(&db, id).await.1, Some(i32::try_from(2000 - count(0)).unwrap()));

    // Expanding again from scratch draws every user the same way.
    let before: Vec<(Uuid, i16)> = db::query_as(
        "SELECT customer_user_id, variant FROM hattrick_campaign_assignments WHERE campaign_id = $1 ORDER BY 1",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    sqlx::raw_sql(
        "DELETE FROM push_outbox; DELETE FROM hattrick_campaign_assignments;
         UPDATE scheduled_notifications SET status = 'sending', recipient_count = NULL;",
    )
    .execute(db.pool())
    .await
    .unwrap();
    run(&db, NOW).await;
    let after: Vec<(Uuid, i16)> = db::query_as(
        "SELECT customer_user_id, variant FROM hattrick_campaign_assignments WHERE campaign_id = $1 ORDER BY 1",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_campaign_the_app_wrote_with_unreadable_variants_fails_alone() {
    let db = TestDb::new().await;
    user(&db, U { allowed: true, ..U::default() }).await;
    let bad: Uuid = db::query_scalar(
        r#"INSERT INTO scheduled_notifications (title_tr, body_tr, target_audience, scheduled_at, variants)
           VALUES ('Bozuk', 'b', 'all', $1, '[{"name": "A"}, {"name": "B"}]') RETURNING id"#,
    )
    .bind(utc(NOW))
    .fetch_one(db.pool())
    .await
    .unwrap();
    let good = campaign(&db, "all", None, NOW).await;
    run(&db, NOW).await;
    let (status, _, _, _, error) = state(&db, bad).await;
    assert_eq!(status, "failed");
    assert!(error.as_deref().unwrap_or_default().starts_with("variants: "), "{error:?}");
    assert_eq!(state(&db, good).await.1, Some(1), "the campaign after it is sent");
}
