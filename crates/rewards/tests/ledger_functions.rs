//! The app's ledger functions (SPEC 10.13) under concurrency: many sessions granting and spending on one user.

use std::sync::Arc;

use testkit::{TestDb, assert_ledger_invariants};
use uuid::Uuid;

#[tokio::test]
async fn concurrent_grants_and_spends_lose_no_update_and_keep_the_invariants() {
    let db = Arc::new(TestDb::new().await);
    let id = db.user().await;
    let mut sessions = Vec::new();
    for session in 0..16 {
        let db = Arc::clone(&db);
        sessions.push(tokio::spawn(async move {
            let mut granted = 0i64;
            let mut spent = 0i64;
            for op in 0..40 {
                let key = format!("s{session}-op{op}");
                if op % 3 == 2 {
                    let result: Result<Option<i32>, _> =
                        db::query_scalar("SELECT hattrick_spend_credits($1, 7, 'prediction_purchase', $2)")
                            .bind(id)
                            .bind(&key)
                            .fetch_one(db.pool())
                            .await;
                    match result {
                        Ok(Some(_)) => spent += 7,
                        Ok(None) => panic!("fresh key reported as used"),
                        Err(e) => assert!(e.to_string().contains("is less than"), "{e}"),
                    }
                } else {
                    let new: Option<i32> = db::query_scalar("SELECT hattrick_grant_credits($1, 5, 'ad_reward', $2)")
                        .bind(id)
                        .bind(&key)
                        .fetch_one(db.pool())
                        .await
                        .unwrap();
                    assert!(new.is_some());
                    granted += 5;
                    // The same key again, from the same session: a no-op.
                    let again: Option<i32> = db::query_scalar("SELECT hattrick_grant_credits($1, 5, 'ad_reward', $2)")
                        .bind(id)
                        .bind(&key)
                        .fetch_one(db.pool())
                        .await
                        .unwrap();
                    assert_eq!(again, None);
                }
            }
            (granted, spent)
        }));
    }
    let mut granted = 0;
    let mut spent = 0;
    for session in sessions {
        let (g, s) = session.await.unwrap();
        granted += g;
        spent += s;
    }
    let (balance, earned, lifetime_spent): (i32, i32, i32) = db::query_as(
        "SELECT balance, lifetime_earned, lifetime_spent FROM customer_credits WHERE customer_user_id = $1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(i64::from(balance), granted - spent);
    assert_eq!(i64::from(earned), granted);
    assert_eq!(i64::from(lifetime_spent), spent);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn an_xp_grant_crossing_bronze_to_gold_pays_silver_and_gold_once_each() {
    let db = TestDb::new().await;
    let id = db.user().await;
    db::query("UPDATE customer_users SET locale_preference = 'en' WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();
    let xp: Option<i32> = db::query_scalar("SELECT hattrick_grant_xp($1, 2500, 'admin_grant', 'big-grant')")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(xp, Some(2500));
    let (level, progress, next): (String, String, Option<i32>) =
        db::query_as("SELECT level, level_progress::text, next_level_xp FROM customer_xp WHERE customer_user_id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(level, "gold");
    assert_eq!(progress, "16.67");
    assert_eq!(next, Some(5000));
    let bonuses: Vec<(i32, serde_json::Value)> = db::query_as(
        "SELECT amount, metadata FROM customer_credit_transactions WHERE customer_user_id = $1 ORDER BY amount",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(bonuses.len(), 2);
    assert_eq!((bonuses[0].0, bonuses[0].1["level_up"].as_str()), (25, Some("silver")));
    assert_eq!((bonuses[1].0, bonuses[1].1["level_up"].as_str()), (50, Some("gold")));
    let pushes: Vec<(String, String)> =
        db::query_as("SELECT title, body FROM push_outbox WHERE customer_user_id = $1 ORDER BY dedupe_key")
            .bind(id)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        pushes,
        vec![
            ("Level up! ⬆️".to_owned(), "You reached Gold! 🎉".to_owned()),
            ("Level up! ⬆️".to_owned(), "You reached Silver! 🎉".to_owned()),
        ]
    );

    // Down below silver and back up: the level follows XP both ways, the bonuses are never paid twice.
    db::query_scalar::<Option<i32>>("SELECT hattrick_grant_xp($1, -2200, 'admin_deduct', 'deduct')")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let level: String = db::query_scalar("SELECT level FROM customer_xp WHERE customer_user_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(level, "bronze");
    db::query_scalar::<Option<i32>>("SELECT hattrick_grant_xp($1, 2000, 'admin_grant', 'regrant')")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let paid: i64 = db::query_scalar("SELECT count(*) FROM customer_credit_transactions WHERE customer_user_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(paid, 2);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn bad_calls_are_refused_with_a_clear_error() {
    let db = TestDb::new().await;
    let id = db.user().await;
    for (sql, message) in [
        ("SELECT hattrick_grant_credits($1, -5, 'ad_reward', 'k1')", "amount must be positive"),
        ("SELECT hattrick_grant_credits($1, 5, 'ad_reward', NULL)", "an idempotency key is required"),
        ("SELECT hattrick_spend_credits($1, 5, 'purchase', 'k2')", "balance 0 is less than 5"),
        ("SELECT hattrick_grant_xp($1, -5, 'admin_deduct', 'k3')", "would fall below zero"),
    ] {
        let error = db::query(sql).bind(id).execute(db.pool()).await.unwrap_err().to_string();
        assert!(error.contains(message), "{sql}: {error}");
    }
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn ledger_rows_get_time_ordered_version_7_ids() {
    let db = TestDb::new().await;
    let id = db.user().await;
    for (n, at) in ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.002Z", "2026-06-01T00:00:00Z"].iter().enumerate() {
        let key = format!("ordered-{n}");
        db::query("SELECT hattrick_grant_credits($1, 5, 'admin_grant', $2, NULL, '{}', $3::timestamptz)")
            .bind(id)
            .bind(&key)
            .bind(at)
            .execute(db.pool())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let ids: Vec<Uuid> =
        db::query_scalar("SELECT id FROM customer_credit_transactions WHERE customer_user_id = $1 ORDER BY created_at")
            .bind(id)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids follow insertion time: {ids:?}");
    // The first 48 bits are the insertion's Unix milliseconds (the wall clock, not the grant's own timestamp).
    let millis = u64::from_be_bytes([
        0,
        0,
        ids[0].as_bytes()[0],
        ids[0].as_bytes()[1],
        ids[0].as_bytes()[2],
        ids[0].as_bytes()[3],
        ids[0].as_bytes()[4],
        ids[0].as_bytes()[5],
    ]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(now.abs_diff(millis) < 60_000, "{millis} vs {now}");
}
