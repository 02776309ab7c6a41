//! The dispatcher against the real PostgreSQL and the fake FCM over a socket: every error class acted on, quiet
//! hours, the daily cap, opt-out, duplicate tokens, retries, rounds that hold their rows and rounds that die.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use push::fake::{FakeConfig, FakeFcm};
use push::{Dispatcher, DispatcherSettings, FcmTransport, ServiceAccount};
use testkit::TestDb;
use uuid::Uuid;

struct Setup {
    db: TestDb,
    fake: FakeFcm,
    dispatcher: Dispatcher,
}

async fn setup(config: FakeConfig, settings: DispatcherSettings) -> Setup {
    let db = TestDb::new().await;
    let fake = FakeFcm::bind("127.0.0.1:0", config).await.unwrap();
    let dispatcher = dispatcher(&db, &fake, settings);
    Setup { db, fake, dispatcher }
}

/// A dispatcher of its own (its own transport, so it asks the fake for an access token before its first send).
fn dispatcher(db: &TestDb, fake: &FakeFcm, settings: DispatcherSettings) -> Dispatcher {
    let account = ServiceAccount::from_json(&fake.service_account_json()).unwrap();
    let transport =
        FcmTransport::new(push::Credentials::ServiceAccount(account), &fake.endpoint(), Duration::from_secs(10))
            .unwrap();
    Dispatcher::new(db.pool().clone(), Arc::new(transport), settings)
}

/// Waits until the fake has issued `n` access tokens: a dispatcher asks for one after its claim, before it sends.
async fn until_tokens_issued(fake: &FakeFcm, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.stats().tokens_issued < n {
        assert!(std::time::Instant::now() < deadline, "no round reached its send");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn settings() -> DispatcherSettings {
    DispatcherSettings { backoff_base: Duration::from_secs(30), ..DispatcherSettings::default() }
}

/// 2026-06-10 at `hour`:`minute` in Istanbul (UTC+3).
fn istanbul(hour: u32, minute: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Istanbul.with_ymd_and_hms(2026, 6, 10, hour, minute, 0).unwrap().with_timezone(&Utc)
}

async fn user(db: &TestDb, allowed: bool, tokens: &[(&str, &str)]) -> Uuid {
    let id = Uuid::new_v4();
    db::query(
        "INSERT INTO customer_users (id, email, is_push_allowed_mobile, timezone) VALUES ($1, $2, $3, 'Europe/Istanbul')",
    )
    .bind(id)
    .bind(format!("{id}@example.com"))
    .bind(allowed)
    .execute(db.pool())
    .await
    .unwrap();
    for (n, (token, platform)) in tokens.iter().enumerate() {
        db::query(
            "INSERT INTO customer_push_tokens (customer_user_id, token, platform, device_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(token)
        .bind(platform)
        .bind(format!("device-{n}"))
        .execute(db.pool())
        .await
        .unwrap();
    }
    id
}

async fn push(db: &TestDb, user: Uuid, category: &str, key: &str, at: DateTime<Utc>) -> i64 {
    db::query_scalar(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, deep_link, data, not_before,
                                  created_at)
         VALUES ($1, $2, $3, 'Başlık', 'Gövde', 'goalgpt://home', '{\"type\": \"test\", \"n\": 1}', $4, $4)
         RETURNING id",
    )
    .bind(user)
    .bind(category)
    .bind(key)
    .bind(at)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

/// A push of `kind` (`data.type`), which decides its preference category and priority.
async fn push_of(db: &TestDb, user: Uuid, category: &str, kind: &str, key: &str, at: DateTime<Utc>) -> i64 {
    let id = push(db, user, category, key, at).await;
    db::query("UPDATE push_outbox SET data = jsonb_build_object('type', $2::text) WHERE id = $1")
        .bind(id)
        .bind(kind)
        .execute(db.pool())
        .await
        .unwrap();
    id
}

async fn row(db: &TestDb, id: i64) -> (String, DateTime<Utc>, i32, i32, Option<String>) {
    db::query_as("SELECT status, not_before, tokens_sent, tokens_failed, last_error FROM push_outbox WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_error_class_is_acted_on_and_dead_tokens_are_deactivated_everywhere() {
    let s = setup(
        FakeConfig {
            unregistered_prefix: Some("dead-".into()),
            invalid_prefix: Some("bad-".into()),
            auth_error_prefix: Some("apns-".into()),
            ..FakeConfig::default()
        },
        settings(),
    )
    .await;
    let now = istanbul(12, 0);
    let alice =
        user(&s.db, true, &[("ok-a", "android"), ("dead-a", "android"), ("bad-a", "web"), ("ok-a", "ios")]).await;
    // Another user holding the same dead token value: deactivation applies to every row holding it.
    let bob = user(&s.db, true, &[("dead-a", "android")]).await;
    let carol = user(&s.db, true, &[("apns-c", "ios")]).await;
    let a = push(&s.db, alice, "reward", "a", now).await;
    let c = push(&s.db, carol, "reward", "c", now).await;
    s.dispatcher.round(now).await.unwrap();

    // Alice: one delivery (her duplicate token value was sent once), two dead tokens.
    let (status, _, sent, failed, _) = row(&s.db, a).await;
    assert_eq!((status.as_str(), sent, failed), ("sent", 1, 2));
    assert_eq!(s.fake.stats().per_token.get("ok-a"), Some(&1));
    let inactive: Vec<(Uuid, String)> = db::query_as(
        "SELECT customer_user_id, token FROM customer_push_tokens WHERE NOT is_active ORDER BY token, customer_user_id",
    )
    .fetch_all(s.db.pool())
    .await
    .unwrap();
    let mut expected = vec![(alice, "bad-a".to_owned()), (alice, "dead-a".to_owned()), (bob, "dead-a".to_owned())];
    expected.sort_by(|x, y| (&x.1, x.0).cmp(&(&y.1, y.0)));
    assert_eq!(inactive, expected);

    // Carol: an APNs auth error keeps her token, keeps the row pending, and opens the iOS breaker.
    let (status, not_before, _, _, error) = row(&s.db, c).await;
    assert_eq!(status, "pending");
    assert!(not_before >= now + chrono::Duration::seconds(60), "{not_before}");
    assert_eq!(error.as_deref(), Some("THIRD_PARTY_AUTH_ERROR"));
    let active: bool = db::query_scalar("SELECT is_active FROM customer_push_tokens WHERE token = 'apns-c'")
        .fetch_one(s.db.pool())
        .await
        .unwrap();
    assert!(active);
    // While the breaker is open, iOS rows are held without a request.
    let later = push(&s.db, carol, "reward", "c2", now).await;
    let before = s.fake.stats().errors.values().sum::<u64>();
    s.dispatcher.round(now + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(row(&s.db, later).await.0, "pending");
    assert_eq!(s.fake.stats().errors.values().sum::<u64>(), before, "no request while the breaker is open");
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_sent_later() {
    let s = setup(FakeConfig { rate_503: 1.0, retry_after_secs: 90, ..FakeConfig::default() }, settings()).await;
    let now = istanbul(12, 0);
    let u = user(&s.db, true, &[("tok", "android")]).await;
    let id = push(&s.db, u, "reward", "r", now).await;
    s.dispatcher.round(now).await.unwrap();
    let (status, not_before, ..) = row(&s.db, id).await;
    assert_eq!(status, "pending");
    assert!(not_before >= now + chrono::Duration::seconds(90), "Retry-After honoured: {not_before}");
    // Not due yet: nothing is sent.
    assert_eq!(s.dispatcher.drain(now + chrono::Duration::seconds(10)).await.unwrap(), 0);
}

#[tokio::test]
async fn quiet_hours_hold_the_row_until_morning_and_then_release_it() {
    let s = setup(FakeConfig::default(), settings()).await;
    let u = user(&s.db, true, &[("tok", "android")]).await;
    let night = istanbul(23, 30);
    let id = push(&s.db, u, "engagement", "e", night).await;
    s.dispatcher.round(night).await.unwrap();
    let (status, not_before, ..) = row(&s.db, id).await;
    assert_eq!(status, "pending");
    let morning = chrono_tz::Europe::Istanbul.with_ymd_and_hms(2026, 6, 11, 8, 0, 0).unwrap().with_timezone(&Utc);
    assert_eq!(not_before, morning);
    assert_eq!(s.fake.stats().accepted, 0);
    assert_eq!(s.dispatcher.drain(morning).await.unwrap(), 1);
    assert_eq!(row(&s.db, id).await.0, "sent");
    assert_eq!(s.fake.stats().accepted, 1);
}

#[tokio::test]
async fn the_daily_cap_cancels_engagement_beyond_it_but_not_rewards_and_opted_out_users_get_nothing() {
    let s = setup(FakeConfig::default(), settings()).await;
    let now = istanbul(12, 0);
    let u = user(&s.db, true, &[("tok", "android")]).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(push(&s.db, u, "engagement", &format!("e{n}"), now).await);
    }
    let reward = push(&s.db, u, "reward", "r", now).await;
    let quiet = user(&s.db, false, &[("quiet-tok", "android")]).await;
    let opted = push(&s.db, quiet, "reward", "q", now).await;
    let test = push(&s.db, quiet, "test", "t", now).await;
    s.dispatcher.drain(now).await.unwrap();
    let mut statuses = Vec::new();
    for id in &ids {
        let (status, _, _, _, error) = row(&s.db, *id).await;
        statuses.push((status, error));
    }
    assert_eq!(statuses.iter().filter(|(s, _)| s == "sent").count(), 3);
    assert!(statuses.contains(&("cancelled".to_owned(), Some("daily_cap".to_owned()))));
    assert_eq!(row(&s.db, reward).await.0, "sent");
    assert_eq!(row(&s.db, opted).await.0, "opted_out");
    assert_eq!(row(&s.db, test).await.0, "sent", "a test push reaches an opted-out operator's device");
    assert_eq!(s.fake.stats().per_token.get("quiet-tok"), Some(&1));
    // The next local day has a fresh cap.
    let tomorrow = istanbul(12, 0) + chrono::Duration::days(1);
    let next = push(&s.db, u, "engagement", "next-day", tomorrow).await;
    s.dispatcher.drain(tomorrow).await.unwrap();
    assert_eq!(row(&s.db, next).await.0, "sent");
}

#[tokio::test]
async fn a_category_turned_off_ends_its_pushes_opted_out_and_keeps_the_others() {
    let s = setup(FakeConfig::default(), settings()).await;
    let now = istanbul(12, 0);
    let u = user(&s.db, true, &[("tok", "android")]).await;
    db::query("SELECT hattrick_set_push_preference($1, 'campaigns', false), hattrick_set_push_preference($1, 'reminders', false)")
        .bind(u)
        .execute(s.db.pool())
        .await
        .unwrap();
    let campaign = push_of(&s.db, u, "campaign", "campaign", "c", now).await;
    let reminder = push_of(&s.db, u, "engagement", "daily_reward_reminder", "d", now).await;
    let streak = push_of(&s.db, u, "engagement", "streak_warning", "s", now).await;
    let badge = push_of(&s.db, u, "reward", "badge_unlock", "b", now).await;
    s.dispatcher.drain(now).await.unwrap();
    let (status, .., error) = row(&s.db, campaign).await;
    assert_eq!((status.as_str(), error.as_deref()), ("opted_out", Some("campaigns")));
    let (status, .., error) = row(&s.db, reminder).await;
    assert_eq!((status.as_str(), error.as_deref()), ("opted_out", Some("reminders")));
    assert_eq!(row(&s.db, streak).await.0, "sent");
    assert_eq!(row(&s.db, badge).await.0, "sent");
    assert_eq!(s.fake.stats().accepted, 2);
}

#[tokio::test]
async fn the_cap_never_cancels_a_higher_priority_push_for_lower_ones_sent_earlier() {
    let s = setup(FakeConfig::default(), settings()).await;
    let morning = istanbul(10, 0);
    let u = user(&s.db, true, &[("tok", "android")]).await;
    // Three campaigns in the morning fill the cap for campaigns.
    for n in 0..3 {
        push_of(&s.db, u, "campaign", "campaign", &format!("c{n}"), morning).await;
    }
    s.dispatcher.drain(morning).await.unwrap();
    assert_eq!(s.fake.stats().accepted, 3);
    // In the evening a fourth campaign is capped, but the reminder and the streak warning still go.
    let evening = istanbul(21, 0);
    let late_campaign = push_of(&s.db, u, "campaign", "campaign", "c3", evening).await;
    let reminder = push_of(&s.db, u, "engagement", "daily_reward_reminder", "d", evening).await;
    let streak = push_of(&s.db, u, "engagement", "streak_warning", "s", evening).await;
    s.dispatcher.drain(evening).await.unwrap();
    let (status, .., error) = row(&s.db, late_campaign).await;
    assert_eq!((status.as_str(), error.as_deref()), ("cancelled", Some("daily_cap")));
    assert_eq!(row(&s.db, reminder).await.0, "sent");
    assert_eq!(row(&s.db, streak).await.0, "sent");
    // The cap still holds within a priority: three more streak-level pushes, and the third one over is capped.
    let mut high = Vec::new();
    for n in 0..3 {
        high.push(push_of(&s.db, u, "engagement", "subscription_expiry", &format!("x{n}"), evening).await);
    }
    s.dispatcher.drain(evening).await.unwrap();
    let mut statuses = Vec::new();
    for id in high {
        statuses.push(row(&s.db, id).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| *s == "sent").count(), 2, "{statuses:?}");
}

#[tokio::test]
async fn a_round_holds_its_rows_unwritten_until_it_records_and_a_round_that_dies_lets_them_go_at_once() {
    let s = setup(FakeConfig { latency: Duration::from_millis(300), ..FakeConfig::default() }, settings()).await;
    let now = istanbul(12, 0);
    let u = user(&s.db, true, &[("t1", "android")]).await;
    let first = push(&s.db, u, "reward", "r1", now).await;
    let other = dispatcher(&s.db, &s.fake, settings());

    // While a round sends, its row is locked and still as it was: another dispatcher takes nothing.
    let (round, (taken, during)) = tokio::join!(s.dispatcher.round(now), async {
        until_tokens_issued(&s.fake, 1).await;
        let taken = other.round(now).await.unwrap().claimed;
        let during: (String, i32) = db::query_as("SELECT status, attempts FROM push_outbox WHERE id = $1")
            .bind(first)
            .fetch_one(s.db.pool())
            .await
            .unwrap();
        (taken, during)
    });
    assert_eq!(round.unwrap().claimed, 1);
    assert_eq!(taken, 0, "a row in a round in progress is not taken twice");
    assert_eq!(during, ("pending".to_owned(), 0), "the claim writes nothing");
    let ended: (String, i32, i32) = db::query_as("SELECT status, attempts, tokens_sent FROM push_outbox WHERE id = $1")
        .bind(first)
        .fetch_one(s.db.pool())
        .await
        .unwrap();
    assert_eq!(ended, ("sent".to_owned(), 1, 1), "one write, at the round's end");

    // A round that dies after its claim (the future dropped mid-send, as a killed process drops its connection)
    // records nothing, and its row is due again at once, not after the lease.
    let second = push(&s.db, u, "reward", "r2", now).await;
    let dying = dispatcher(&s.db, &s.fake, settings());
    tokio::select! {
        round = dying.round(now) => panic!("the round ended before it was cut: {round:?}"),
        () = until_tokens_issued(&s.fake, 2) => {}
    }
    drop(dying);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while other.round(now).await.unwrap().claimed == 0 {
        assert!(std::time::Instant::now() < deadline, "the dead round's row never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, sent, ..) = row(&s.db, second).await;
    assert_eq!((status.as_str(), sent), ("sent", 1));
}

#[tokio::test]
async fn a_row_an_earlier_release_left_sending_returns_when_its_lease_runs_out_and_served_tokens_are_skipped() {
    let s = setup(FakeConfig::default(), settings()).await;
    let now = istanbul(12, 0);
    let u = user(&s.db, true, &[("t1", "android"), ("t2", "ios")]).await;
    let id = push(&s.db, u, "reward", "r", now).await;
    // An earlier release marked its claims `sending` with a lease; its dispatcher delivered to t1 and died before
    // recording the row's end.
    db::query("UPDATE push_outbox SET status = 'sending', attempts = 1, not_before = $2 WHERE id = $1")
        .bind(id)
        .bind(now + chrono::Duration::minutes(5))
        .execute(s.db.pool())
        .await
        .unwrap();
    db::query(
        "INSERT INTO hattrick_push_deliveries (outbox_id, token, platform, status, updated_at)
         VALUES ($1, 't1', 'android', 'sent', $2)",
    )
    .bind(id)
    .bind(now)
    .execute(s.db.pool())
    .await
    .unwrap();
    assert_eq!(s.dispatcher.reclaim_expired_leases(now).await.unwrap(), 0, "the lease still holds");
    let after = now + chrono::Duration::minutes(6);
    assert_eq!(s.dispatcher.reclaim_expired_leases(after).await.unwrap(), 1);
    s.dispatcher.drain(after).await.unwrap();
    let (status, _, sent, ..) = row(&s.db, id).await;
    assert_eq!((status.as_str(), sent), ("sent", 1));
    let attempts: i32 = db::query_scalar("SELECT attempts FROM push_outbox WHERE id = $1")
        .bind(id)
        .fetch_one(s.db.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 2);
    let stats = s.fake.stats();
    assert_eq!(stats.per_token.get("t1"), None, "t1 was served before the crash");
    assert_eq!(stats.per_token.get("t2"), Some(&1));
}

#[tokio::test]
async fn a_row_restricted_to_a_platform_uses_only_the_tokens_on_it() {
    let s = setup(FakeConfig::default(), settings()).await;
    let now = istanbul(12, 0);
    let u = user(&s.db, true, &[("phone-ios", "ios"), ("phone-android", "android")]).await;
    let id = push(&s.db, u, "reward", "r", now).await;
    db::query("UPDATE push_outbox SET platforms = '{ios}' WHERE id = $1").bind(id).execute(s.db.pool()).await.unwrap();
    s.dispatcher.drain(now).await.unwrap();
    let (status, _, sent, failed, _) = row(&s.db, id).await;
    assert_eq!((status.as_str(), sent, failed), ("sent", 1, 0));
    let stats = s.fake.stats();
    assert_eq!(stats.per_token.get("phone-ios"), Some(&1));
    assert_eq!(stats.per_token.get("phone-android"), None);
}
