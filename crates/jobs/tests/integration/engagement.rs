//! The local-time engagement jobs against the real PostgreSQL, on a settable clock: each user served at their own
//! local time, once per local date, skipped and counted past the deadline, with docs/jobs/daily-reward-reminders.md,
//! docs/jobs/streak-break-warnings.md, docs/jobs/streak-reset.md, docs/jobs/subscription-expiry-alerts.md's selections.

use chrono::{DateTime, Duration, Utc};
use domain::DayZones;
use engine::{Job, JobReport, RunArgs};
use jobs::{DailyRewardReminders, StreakBreakWarnings, StreakReset, SubscriptionExpiryAlerts};
use serde_json::Value;
use testkit::{TestDb, utc};
use uuid::Uuid;

fn istanbul() -> DayZones {
    DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: None }
}

async fn run(db: &TestDb, job: &dyn Job, name: &str, now: DateTime<Utc>) -> JobReport {
    job.run(&db.context(name, now, RunArgs::default())).await.unwrap()
}

async fn exec(db: &TestDb, sql: &str, id: Uuid) {
    db::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(id).execute(db.pool()).await.unwrap();
}

/// A user in `zone` (None: the business zone) with one active device.
async fn user(db: &TestDb, zone: Option<&str>) -> Uuid {
    let id = db.user().await;
    db::query("UPDATE customer_users SET timezone = $2 WHERE id = $1")
        .bind(id)
        .bind(zone)
        .execute(db.pool())
        .await
        .unwrap();
    exec(db, "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id) VALUES ($1, $1::text, 'android', 'd')", id).await;
    id
}

async fn claim(db: &TestDb, id: Uuid, date: &str, day: i32) {
    db::query(
        "INSERT INTO customer_daily_rewards (customer_user_id, reward_date, day_number, reward_type, reward_amount)
         VALUES ($1, $2::date, $3, 'credits', 10)",
    )
    .bind(id)
    .bind(date)
    .bind(day)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn streak(db: &TestDb, id: Uuid, days: i32, last_activity: &str) {
    db::query(
        "INSERT INTO customer_xp (customer_user_id, current_streak_days, longest_streak_days, last_activity_date)
         VALUES ($1, $2, $2, $3::date)",
    )
    .bind(id)
    .bind(days)
    .bind(last_activity)
    .execute(db.pool())
    .await
    .unwrap();
}

/// The user's outbox rows: (dedupe key, body, data).
async fn pushes(db: &TestDb, id: Uuid) -> Vec<(String, String, Value)> {
    db::query_as("SELECT dedupe_key, body, data FROM push_outbox WHERE customer_user_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(db.pool())
        .await
        .unwrap()
}

async fn outbox_size(db: &TestDb) -> i64 {
    db::query_scalar("SELECT count(*) FROM push_outbox").fetch_one(db.pool()).await.unwrap()
}

#[tokio::test]
async fn each_user_gets_the_reminder_at_their_own_20_00_once() {
    let db = TestDb::new().await;
    let reminders = DailyRewardReminders::new(istanbul());
    let job = "daily-reward-reminders";
    let in_istanbul = user(&db, None).await;
    claim(&db, in_istanbul, "2026-11-09", 3).await;
    let in_new_york = user(&db, Some("America/New_York")).await;
    claim(&db, in_new_york, "2026-11-09", 6).await;
    // Due on the 9th as well: the first run must not count the 9th as skipped (the baseline is the first run).
    let lapsing = user(&db, None).await;
    claim(&db, lapsing, "2026-11-08", 2).await;

    // 19:59 in Istanbul: nobody's 20:00 has come.
    let report = run(&db, &reminders, job, utc("2026-11-10T16:59:00Z")).await;
    assert_eq!(report.items, 0, "{report:?}");
    // 20:00 in Istanbul (UTC+3), 12:00 in New York.
    let report = run(&db, &reminders, job, utc("2026-11-10T17:00:00Z")).await;
    assert_eq!(report.items, 2, "{report:?}");
    assert_eq!(pushes(&db, lapsing).await[0].2["day"], "1", "the last claim was not yesterday");
    let sent = pushes(&db, in_istanbul).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, format!("daily-reward:{in_istanbul}:2026-11-10"));
    assert_eq!(sent[0].1, "Günlük ödülünü almayı unutma! Bugün 25 kredi seni bekliyor.", "day 4 pays 25");
    assert_eq!(sent[0].2["day"], "4");
    assert_eq!(sent[0].2["type"], "daily_reward_reminder");
    assert_eq!(sent[0].2["deepLink"], "goalgpt://daily-rewards");
    // Every quarter hour until the deadline: nothing more.
    for minutes in [15, 30, 45, 120, 179] {
        let report = run(&db, &reminders, job, utc("2026-11-10T17:00:00Z") + Duration::minutes(minutes)).await;
        assert_eq!(report.items, 0, "+{minutes} min: {report:?}");
        assert_eq!(report.details["skipped_past_deadline"], 0, "+{minutes} min: {report:?}");
    }
    assert!(pushes(&db, in_new_york).await.is_empty(), "New York's 20:00 has not come yet");

    // 20:00 in New York (UTC-5) is 01:00 UTC on the 11th.
    let report = run(&db, &reminders, job, utc("2026-11-11T00:59:00Z")).await;
    assert_eq!(report.items, 0, "{report:?}");
    let report = run(&db, &reminders, job, utc("2026-11-11T01:00:00Z")).await;
    assert_eq!(report.items, 1, "{report:?}");
    let sent = pushes(&db, in_new_york).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, format!("daily-reward:{in_new_york}:2026-11-10"));
    assert_eq!((sent[0].2["day"].as_str(), sent[0].2["credits"].as_str()), (Some("7"), Some("100")), "the jackpot");
    let expires: DateTime<Utc> = db::query_scalar("SELECT expires_at FROM push_outbox WHERE customer_user_id = $1")
        .bind(in_new_york)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(expires, utc("2026-11-11T05:00:00Z"), "the reminder expires at the user's midnight");

    let again = run(&db, &reminders, job, utc("2026-11-11T01:00:00Z")).await;
    assert_eq!(again.items, 0, "a re-run of the same tick sends nothing");
    assert_eq!(outbox_size(&db).await, 3);
    let before_first_run: i64 = db::query_scalar(
        "SELECT (SELECT count(*) FROM hattrick_local_sends WHERE local_date < '2026-11-10')
              + (SELECT count(*) FROM push_outbox WHERE dedupe_key LIKE '%:2026-11-09')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(before_first_run, 0, "nothing was decided for days before the first run");
}

#[tokio::test]
async fn a_user_reached_after_the_deadline_is_skipped_and_counted_and_an_outage_across_midnight_is_accounted() {
    let db = TestDb::new().await;
    let reminders = DailyRewardReminders::new(istanbul());
    let job = "daily-reward-reminders";
    let id = user(&db, None).await;
    claim(&db, id, "2026-11-08", 1).await;
    // The job ran on the 9th at 20:00 (the user was served), then the service was down.
    let report = run(&db, &reminders, job, utc("2026-11-09T17:00:00Z")).await;
    assert_eq!(report.items, 1);
    // Back at 23:30 on the 10th: the 10th's 20:00 passed more than 3 hours ago.
    let report = run(&db, &reminders, job, utc("2026-11-10T20:30:00Z")).await;
    assert_eq!(report.items, 0, "{report:?}");
    assert_eq!(report.details["skipped_past_deadline"], 1, "{report:?}");
    assert_eq!(pushes(&db, id).await.len(), 1, "no reminder for the 10th");
    // The next ticks pass the closed day by without deciding anyone again.
    let report = run(&db, &reminders, job, utc("2026-11-10T20:45:00Z")).await;
    assert_eq!(report.details["skipped_past_deadline"], 0, "{report:?}");

    // Down again from before the 11th's 20:00 until the 12th's 20:30: the 11th is accounted, the 12th served.
    let report = run(&db, &reminders, job, utc("2026-11-12T17:30:00Z")).await;
    let days = report.details["days"].as_array().unwrap();
    let day = |date: &str| days.iter().find(|d| d["date"] == date).cloned().unwrap_or_default();
    assert_eq!(day("2026-11-11")["skipped"], 1, "{report:?}");
    assert_eq!(day("2026-11-12")["served"], 1, "{report:?}");
    let outcomes: Vec<(String, String)> = db::query_as(
        "SELECT local_date::text, outcome FROM hattrick_local_sends WHERE customer_user_id = $1 ORDER BY local_date",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let expected =
        [("2026-11-09", "served"), ("2026-11-10", "skipped"), ("2026-11-11", "skipped"), ("2026-11-12", "served")];
    assert_eq!(outcomes, expected.map(|(d, o)| (d.to_owned(), o.to_owned())), "one outcome per local date");
}

#[tokio::test]
async fn the_reminder_names_the_next_cycle_day_and_only_reaches_users_who_can_claim() {
    let db = TestDb::new().await;
    let reminders = DailyRewardReminders::new(istanbul());
    let after_day_6 = user(&db, None).await;
    claim(&db, after_day_6, "2026-11-09", 6).await;
    let after_day_7 = user(&db, None).await;
    claim(&db, after_day_7, "2026-11-09", 7).await;
    let three_days_ago = user(&db, None).await;
    claim(&db, three_days_ago, "2026-11-07", 4).await;
    let claimed_today = user(&db, None).await;
    claim(&db, claimed_today, "2026-11-09", 2).await;
    claim(&db, claimed_today, "2026-11-10", 3).await;
    let lapsed = user(&db, None).await;
    claim(&db, lapsed, "2026-11-02", 5).await;
    let opted_out = user(&db, None).await;
    claim(&db, opted_out, "2026-11-09", 1).await;
    exec(&db, "UPDATE customer_users SET is_push_allowed_mobile = false WHERE id = $1", opted_out).await;
    let deleted = user(&db, None).await;
    claim(&db, deleted, "2026-11-09", 1).await;
    exec(&db, "UPDATE customer_users SET deleted_at = now() WHERE id = $1", deleted).await;
    let no_device = db.user().await;
    claim(&db, no_device, "2026-11-09", 1).await;
    let english = user(&db, None).await;
    claim(&db, english, "2026-11-09", 1).await;
    exec(&db, "UPDATE customer_users SET locale_preference = 'en-GB' WHERE id = $1", english).await;

    let report = run(&db, &reminders, "daily-reward-reminders", utc("2026-11-10T17:05:00Z")).await;
    let day = |sent: &[(String, String, Value)]| sent.first().map(|p| (p.2["day"].clone(), p.2["credits"].clone()));
    let expect = |day: &str, credits: &str| Some((Value::from(day), Value::from(credits)));
    assert_eq!(day(&pushes(&db, after_day_6).await), expect("7", "100"));
    assert_eq!(day(&pushes(&db, after_day_7).await), expect("1", "10"), "day 7 wraps to day 1");
    assert_eq!(day(&pushes(&db, three_days_ago).await), expect("1", "10"), "a broken cycle starts again");
    let english_push = pushes(&db, english).await;
    assert_eq!(english_push[0].1, "Don't forget your daily reward! 15 credits are waiting for you today.");
    for (who, id) in
        [("claimed today", claimed_today), ("lapsed", lapsed), ("opted out", opted_out), ("deleted", deleted)]
    {
        assert!(pushes(&db, id).await.is_empty(), "{who} gets no reminder");
    }
    assert_eq!(report.items, 4, "{report:?}");
    assert_eq!(report.details["no_token"], 1, "the user without a device is counted: {report:?}");
    assert_eq!(report.details["served"], 4);
}

#[tokio::test]
async fn a_live_streak_is_warned_with_the_hours_left_and_a_dead_one_is_reset_instead() {
    let db = TestDb::new().await;
    let warnings = StreakBreakWarnings::new(istanbul());
    let alive = user(&db, None).await;
    streak(&db, alive, 5, "2026-11-09").await;
    let dead = user(&db, None).await;
    streak(&db, dead, 5, "2026-11-07").await;
    let short = user(&db, None).await;
    streak(&db, short, 2, "2026-11-09").await;
    let extended_today = user(&db, None).await;
    streak(&db, extended_today, 8, "2026-11-10").await;

    // 22:15 in Istanbul: 1 h 45 min to midnight, rounded up to 2.
    let report = run(&db, &warnings, "streak-break-warnings", utc("2026-11-10T19:15:00Z")).await;
    assert_eq!(report.items, 1, "{report:?}");
    let sent = pushes(&db, alive).await;
    assert_eq!(sent[0].0, format!("streak-warning:{alive}:2026-11-10"));
    assert_eq!(sent[0].1, "5 günlük serini kaybetme! Gece yarısına 2 saat kaldı.");
    assert_eq!((sent[0].2["currentStreak"].as_str(), sent[0].2["hoursRemaining"].as_str()), (Some("5"), Some("2")));
    for id in [dead, short, extended_today] {
        assert!(pushes(&db, id).await.is_empty());
    }

    // 00:01 on the 11th: streak-reset zeroes the dead streak; the one extended on the 10th lives on.
    let reset = StreakReset { zones: istanbul() };
    run(&db, &reset, "streak-reset", utc("2026-11-10T21:01:00Z")).await;
    let current = |id: Uuid| {
        db::query_scalar::<i32>("SELECT current_streak_days FROM customer_xp WHERE customer_user_id = $1")
            .bind(id)
            .fetch_one(db.pool())
    };
    assert_eq!(current(dead).await.unwrap(), 0);
    assert_eq!(current(extended_today).await.unwrap(), 8);
}

#[tokio::test]
async fn an_app_day_zone_moves_the_day_boundaries_and_the_hours_left() {
    let db = TestDb::new().await;
    let utc_days = DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: Some(chrono_tz::UTC) };
    let in_istanbul = user(&db, None).await;
    streak(&db, in_istanbul, 4, "2026-11-09").await;
    let in_new_york = user(&db, Some("America/New_York")).await;
    streak(&db, in_new_york, 6, "2026-11-10").await;

    // 22:00 in Istanbul is 19:00 UTC: the app's day ends at UTC midnight, 5 hours away (not 2).
    let warnings = StreakBreakWarnings::new(utc_days);
    run(&db, &warnings, "streak-break-warnings", utc("2026-11-10T19:00:00Z")).await;
    assert_eq!(pushes(&db, in_istanbul).await[0].2["hoursRemaining"], "5");

    // 22:00 in New York on the 10th is 03:00 UTC on the 11th: in the app's days the 10th is yesterday.
    let report = run(&db, &warnings, "streak-break-warnings", utc("2026-11-11T03:00:00Z")).await;
    assert_eq!(report.items, 1, "{report:?}");
    assert_eq!(pushes(&db, in_new_york).await[0].2["hoursRemaining"], "21");

    // The same moment with users' own days: the 10th is New York's today, so the streak is extended, no warning.
    let db = TestDb::new().await;
    let in_new_york = user(&db, Some("America/New_York")).await;
    streak(&db, in_new_york, 6, "2026-11-10").await;
    let report =
        run(&db, &StreakBreakWarnings::new(istanbul()), "streak-break-warnings", utc("2026-11-11T03:00:00Z")).await;
    assert_eq!(report.items, 0, "{report:?}");
}

async fn subscription(db: &TestDb, id: Uuid, expires: DateTime<Utc>, auto_renew: bool, platform: &str) {
    db::query(
        "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, currency, auto_renew_enabled,
                                             started_at, expired_at)
         VALUES ($1, 'active', $2, 99.90, 'TRY', $3, $4 - interval '30 days', $4)",
    )
    .bind(id)
    .bind(platform)
    .bind(auto_renew)
    .bind(expires)
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn an_expiry_is_alerted_once_per_user_and_never_for_auto_renew_or_promo() {
    let db = TestDb::new().await;
    let alerts = SubscriptionExpiryAlerts::new(istanbul());
    let job = "subscription-expiry-alerts";
    // 10:00 in Istanbul on the 10th is 07:00 UTC: the window is (12th 07:00, 13th 07:00].
    let two = user(&db, None).await;
    subscription(&db, two, utc("2026-11-12T09:00:00Z"), false, "ios").await;
    subscription(&db, two, utc("2026-11-13T06:00:00Z"), false, "android").await;
    let renewing = user(&db, None).await;
    subscription(&db, renewing, utc("2026-11-12T12:00:00Z"), true, "ios").await;
    let promo = user(&db, None).await;
    subscription(&db, promo, utc("2026-11-12T12:00:00Z"), false, "promo").await;
    let too_soon = user(&db, None).await;
    subscription(&db, too_soon, utc("2026-11-12T07:00:00Z"), false, "ios").await;

    let report = run(&db, &alerts, job, utc("2026-11-10T07:00:00Z")).await;
    assert_eq!(report.items, 1, "{report:?}");
    let sent = pushes(&db, two).await;
    assert_eq!(sent.len(), 1, "one push for two expiring subscriptions");
    assert_eq!(sent[0].1, "VIP üyeliğin 3 gün sonra sona eriyor. Yenilemeyi unutma!");
    assert_eq!(sent[0].2["daysRemaining"], "3");
    assert_eq!(sent[0].2["expiredAt"], "2026-11-12T09:00:00Z", "the earliest of them");
    assert_eq!(sent[0].2["platform"], "ios");
    for id in [renewing, promo, too_soon] {
        assert!(pushes(&db, id).await.is_empty());
    }
    let again = run(&db, &alerts, job, utc("2026-11-10T07:30:00Z")).await;
    assert_eq!(again.items, 0, "a re-run sends nothing: {again:?}");
}

#[tokio::test]
async fn consecutive_days_tile_time_so_each_expiry_is_alerted_exactly_once_whatever_the_tick() {
    let db = TestDb::new().await;
    let alerts = SubscriptionExpiryAlerts::new(istanbul());
    // Day d's window is (d 10:00 + 2 days, d 10:00 + 3 days] in Istanbul; five days cover (12th 07:00Z, 17th 07:00Z].
    let mut users = Vec::new();
    let mut expires = utc("2026-11-12T07:00:00Z") + Duration::minutes(1);
    while expires <= utc("2026-11-17T07:00:00Z") {
        let id = user(&db, None).await;
        subscription(&db, id, expires, false, "android").await;
        users.push(id);
        expires += Duration::minutes(317);
    }
    let edge = user(&db, None).await;
    subscription(&db, edge, utc("2026-11-17T07:00:00Z"), false, "android").await;
    users.push(edge);
    // The ticks that served each day came at different times between 10:00 and the 13:00 deadline.
    for (day, late_minutes) in [(10, 0), (11, 165), (12, 20), (13, 179), (14, 90)] {
        let tick = utc(&format!("2026-11-{day}T07:00:00Z")) + Duration::minutes(late_minutes);
        run(&db, &alerts, "subscription-expiry-alerts", tick).await;
    }
    for id in users {
        assert_eq!(pushes(&db, id).await.len(), 1, "user {id} is alerted exactly once");
    }
}

#[tokio::test]
async fn runs_of_the_same_tick_twice_and_concurrently_push_once() {
    let db = TestDb::new().await;
    let reminders = DailyRewardReminders::new(istanbul());
    for _ in 0..50 {
        let id = user(&db, None).await;
        claim(&db, id, "2026-11-09", 2).await;
    }
    let now = utc("2026-11-10T17:10:00Z");
    let (a, b) = tokio::join!(
        run(&db, &reminders, "daily-reward-reminders", now),
        run(&db, &reminders, "daily-reward-reminders", now)
    );
    assert_eq!(a.items + b.items, 50, "{a:?} {b:?}");
    let c = run(&db, &reminders, "daily-reward-reminders", now).await;
    assert_eq!(c.items, 0);
    assert_eq!(outbox_size(&db).await, 50);
    let dry_run = RunArgs { dry_run: true, ..RunArgs::default() };
    let today = reminders.run(&db.context("daily-reward-reminders", now, dry_run.clone())).await.unwrap();
    assert_eq!(today.details["served"], 0, "a dry run passes by the users decided already: {today:?}");
    let tomorrow = now + Duration::days(1);
    let dry = reminders.run(&db.context("daily-reward-reminders", tomorrow, dry_run)).await.unwrap();
    assert_eq!(dry.details["served"], 50, "everyone is due again on the 11th: {dry:?}");
    let decided: i64 = db::query_scalar("SELECT count(*) FROM hattrick_local_sends WHERE local_date = '2026-11-11'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(decided, 0, "a dry run records nothing");
    assert_eq!(outbox_size(&db).await, 50, "a dry run writes nothing");
}
