//! `streak-reset` against the real PostgreSQL, with users in several zones.

use std::sync::Arc;

use domain::DayZones;
use engine::{Clock, Engine, EngineSettings, JobDefinition, MisfirePolicy, Registry, RunArgs};
use jobs::StreakReset;
use testkit::{NewUser, TestDb, utc};
use uuid::Uuid;

async fn user(db: &TestDb, zone: Option<&str>, streak: i32, longest: i32, last_activity: &str) -> Uuid {
    let id = NewUser::new().timezone_opt(zone).insert(db.pool()).await;
    db::query(
        "INSERT INTO customer_xp (customer_user_id, current_streak_days, longest_streak_days, last_activity_date)
         VALUES ($1, $2, $3, $4::date)",
    )
    .bind(id)
    .bind(streak)
    .bind(longest)
    .bind(last_activity)
    .execute(db.pool())
    .await
    .unwrap();
    id
}

async fn streak(db: &TestDb, id: Uuid) -> (i32, i32) {
    db::query_as("SELECT current_streak_days, longest_streak_days FROM customer_xp WHERE customer_user_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn run(db: &TestDb, now: &str, zones: DayZones) -> engine::RunResult {
    let mut registry = Registry::new();
    let definition = JobDefinition::new("streak-reset", "1 0 * * *", "Europe/Istanbul", MisfirePolicy::Latest).unwrap();
    registry.register(definition, None, Arc::new(StreakReset { zones }));
    let engine = Engine::new(db.pool().clone(), Clock::fixed(utc(now)), registry, EngineSettings::default());
    engine.sync_definitions().await.unwrap();
    engine.run_manual("streak-reset", RunArgs::default()).await.unwrap()
}

fn istanbul() -> DayZones {
    DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: None }
}

#[tokio::test]
async fn broken_streaks_are_zeroed_in_each_users_own_day_and_longest_is_kept() {
    let db = TestDb::new().await;
    // 2026-03-10 21:01 UTC: 00:01 on the 11th in Istanbul, 17:01 on the 10th in New York.
    let now = "2026-03-10T21:01:00Z";
    let alive_yesterday = user(&db, None, 5, 9, "2026-03-10").await;
    let broken = user(&db, None, 5, 9, "2026-03-08").await;
    let just_broken = user(&db, None, 4, 4, "2026-03-09").await;
    let new_york_alive = user(&db, Some("America/New_York"), 3, 3, "2026-03-09").await;
    let new_york_broken = user(&db, Some("America/New_York"), 3, 3, "2026-03-08").await;
    let unknown_zone = user(&db, Some("Mars/Olympus"), 2, 2, "2026-03-09").await;

    let result = run(&db, now, istanbul()).await;
    assert_eq!(result.report.as_ref().unwrap().items, 4, "{result:?}");
    assert_eq!(streak(&db, alive_yesterday).await, (5, 9));
    assert_eq!(streak(&db, broken).await, (0, 9), "longest is never lowered");
    assert_eq!(streak(&db, just_broken).await, (0, 4), "Istanbul's yesterday is the 10th");
    assert_eq!(streak(&db, new_york_alive).await, (3, 3), "New York's yesterday is the 9th");
    assert_eq!(streak(&db, new_york_broken).await, (0, 3));
    assert_eq!(streak(&db, unknown_zone).await, (0, 2), "an unknown zone falls back to the business zone");

    let again = run(&db, now, istanbul()).await;
    assert_eq!(again.report.unwrap().items, 0, "a re-run finds nothing");
}

#[tokio::test]
async fn an_app_day_zone_overrides_users_zones() {
    let db = TestDb::new().await;
    let new_york = user(&db, Some("America/New_York"), 3, 3, "2026-03-09").await;
    // In UTC it is the 11th at 00:30: yesterday is the 10th, so a last activity on the 9th is broken.
    let zones = DayZones { business: chrono_tz::Europe::Istanbul, app_day_zone: Some(chrono_tz::UTC) };
    run(&db, "2026-03-11T00:30:00Z", zones).await;
    assert_eq!(streak(&db, new_york).await, (0, 3));
}

#[tokio::test]
async fn many_users_are_reset_in_batches() {
    let db = TestDb::new().await;
    db::query(
        "WITH u AS (
             INSERT INTO customer_users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 25000) g
             RETURNING id)
         INSERT INTO customer_xp (customer_user_id, current_streak_days, longest_streak_days, last_activity_date)
         SELECT id, 3, 3, '2026-01-01' FROM u",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let result = run(&db, "2026-03-10T21:01:00Z", istanbul()).await;
    let report = result.report.unwrap();
    assert_eq!(report.items, 25_000);
    assert_eq!(report.details["batches"], 4, "10,000 + 10,000 + 5,000, and the empty batch that ends the walk");
}
