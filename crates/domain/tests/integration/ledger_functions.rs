//! The app's ledger functions (docs/ledger.md) under concurrency: many sessions granting and spending on one user.

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

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned())
}

#[tokio::test]
async fn idempotency_keys_belong_to_one_user_and_a_reuse_must_repeat_the_call() {
    let db = TestDb::new().await;
    let (alice, bob) = (db.user().await, db.user().await);
    let grant = |user: Uuid, amount: i32, key: &'static str| {
        db::query_scalar::<Option<i32>>("SELECT hattrick_grant_credits($1, $2, 'ad_reward', $3)")
            .bind(user)
            .bind(amount)
            .bind(key)
    };
    assert_eq!(grant(alice, 50, "order-42").fetch_one(db.pool()).await.unwrap(), Some(50));
    // Bob's order-42 is another payment, not a replay of Alice's.
    assert_eq!(grant(bob, 20, "order-42").fetch_one(db.pool()).await.unwrap(), Some(20));
    // The same call again is a no-op.
    assert_eq!(grant(alice, 50, "order-42").fetch_one(db.pool()).await.unwrap(), None);
    // Another amount, or another type, under the key is an error of its own, and writes nothing.
    let error = grant(alice, 60, "order-42").fetch_one(db.pool()).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("HT001"), "{error}");
    assert!(error.to_string().contains("amount 50"), "{error}");
    let error = db::query("SELECT hattrick_spend_credits($1, 50, 'purchase', 'order-42')")
        .bind(alice)
        .execute(db.pool())
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("HT001"), "{error}");
    db::query("SELECT hattrick_grant_xp($1, 5, 'ad_reward', 'xp-1')").bind(alice).execute(db.pool()).await.unwrap();
    let error = db::query("SELECT hattrick_grant_xp($1, 5, 'daily_reward', 'xp-1')")
        .bind(alice)
        .execute(db.pool())
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("HT001"), "{error}");
    let balances: Vec<i32> = db::query_scalar(
        "SELECT balance FROM customer_credits WHERE customer_user_id = ANY($1)
                                               ORDER BY balance",
    )
    .bind(vec![alice, bob])
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(balances, [20, 50]);
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn hattricks_own_keys_are_refused_to_the_app() {
    let db = TestDb::new().await;
    let id = db.user().await;
    for key in [
        format!("level-up:{id}:silver"),
        format!("badge:{}:{id}:credits", Uuid::new_v4()),
        "admin:x:credits".to_owned(),
    ] {
        for sql in [
            "SELECT hattrick_grant_credits($1, 5, 'ad_reward', $2)",
            "SELECT hattrick_spend_credits($1, 5, 'purchase', $2)",
            "SELECT hattrick_grant_xp($1, 5, 'ad_reward', $2)",
        ] {
            let error = db::query(sql).bind(id).bind(&key).execute(db.pool()).await.unwrap_err();
            assert_eq!(sqlstate(&error).as_deref(), Some("HT002"), "{sql} {key}: {error}");
        }
    }
    // hattrick's own level-up bonus still goes through (it is paid inside hattrick_grant_xp).
    db::query("SELECT hattrick_grant_xp($1, 600, 'ad_reward', 'app:xp-1')").bind(id).execute(db.pool()).await.unwrap();
    let bonus: i64 = db::query_scalar(
        "SELECT count(*) FROM customer_credit_transactions WHERE customer_user_id = $1 AND idempotency_key = $2",
    )
    .bind(id)
    .bind(format!("level-up:{id}:silver"))
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(bonus, 1);
    // A level-up bonus paid earlier under another amount (an older level table) is paid, not an error that would
    // fail the app's XP grant.
    let other = db.user().await;
    for sql in [
        "INSERT INTO customer_credits (customer_user_id, balance, lifetime_earned) VALUES ($1, 10, 10)",
        "INSERT INTO customer_credit_transactions (customer_user_id, amount, transaction_type, balance_before,
                                                   balance_after, idempotency_key)
         VALUES ($1, 10, 'promotional', 0, 10, 'level-up:' || $1 || ':silver')",
    ] {
        db::query(sql).bind(other).execute(db.pool()).await.unwrap();
    }
    db::query("SELECT hattrick_grant_xp($1, 600, 'ad_reward', 'app:xp-2')")
        .bind(other)
        .execute(db.pool())
        .await
        .unwrap();
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn many_users_with_one_key_at_once_all_succeed() {
    let db = Arc::new(TestDb::new().await);
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(db.user().await);
    }
    let mut calls = Vec::new();
    for (n, user) in users.iter().copied().enumerate() {
        for _ in 0..3 {
            let db = Arc::clone(&db);
            calls.push(tokio::spawn(async move {
                let sql = if n % 2 == 0 {
                    "SELECT hattrick_grant_credits($1, 10, 'ad_reward', 'shared-key')"
                } else {
                    "SELECT hattrick_grant_xp($1, 10, 'ad_reward', 'shared-key')"
                };
                db::query_scalar::<Option<i32>>(sql).bind(user).fetch_one(db.pool()).await
            }));
        }
    }
    let mut applied = 0;
    for call in calls {
        if call.await.unwrap().unwrap_or_else(|e| panic!("a concurrent call failed: {e}")).is_some() {
            applied += 1;
        }
    }
    assert_eq!(applied, users.len(), "each user's key applies once, whatever the others do");
    assert_ledger_invariants(db.pool()).await;
}

#[tokio::test]
async fn compacted_keys_stay_used_for_their_user_and_legacy_ones_for_everyone() {
    let db = TestDb::new().await;
    let (alice, bob) = (db.user().await, db.user().await);
    db::query(
        "INSERT INTO hattrick_compacted_user_keys (customer_user_id, ledger, idempotency_key, compacted_at)
         VALUES ($1, 'credits', 'old-order', now())",
    )
    .bind(alice)
    .execute(db.pool())
    .await
    .unwrap();
    db::query("INSERT INTO hattrick_compacted_keys (idempotency_key, ledger, compacted_at) VALUES ('ancient', 'credits', now())")
        .execute(db.pool())
        .await
        .unwrap();
    let grant = |user: Uuid, key: &'static str| {
        db::query_scalar::<Option<i32>>("SELECT hattrick_grant_credits($1, 5, 'ad_reward', $2)").bind(user).bind(key)
    };
    assert_eq!(grant(alice, "old-order").fetch_one(db.pool()).await.unwrap(), None);
    assert_eq!(grant(bob, "old-order").fetch_one(db.pool()).await.unwrap(), Some(5));
    assert_eq!(grant(alice, "ancient").fetch_one(db.pool()).await.unwrap(), None);
    assert_eq!(grant(bob, "ancient").fetch_one(db.pool()).await.unwrap(), None);
    assert_ledger_invariants(db.pool()).await;
}
