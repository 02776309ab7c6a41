//! The set-based ledger: levels crossed in one grant, several grants to one user in one batch, used keys.

use chrono::{DateTime, Utc};
use domain::ledger;
use testkit::{TestDb, assert_ledger_invariants};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z").unwrap().with_timezone(&Utc)
}

async fn user(db: &TestDb) -> Uuid {
    db.user().await
}

#[tokio::test]
async fn one_grant_crossing_bronze_to_gold_pays_silver_and_gold_once_each() {
    let db = TestDb::new().await;
    let id = user(&db).await;
    for attempt in 0..2 {
        let mut tx = db.pool().begin().await.unwrap();
        domain::scratch::prepare(&mut tx).await.unwrap();
        db::query(
            "INSERT INTO hattrick_xp_grants (idempotency_key, customer_user_id, xp_amount, transaction_type)
             VALUES ('big:' || $1, $1, 2500, 'admin_grant')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
        let applied = ledger::apply(&mut tx, now(), true).await.unwrap();
        tx.commit().await.unwrap();
        if attempt == 0 {
            assert_eq!((applied.xp_rows, applied.level_ups, applied.credit_rows, applied.credits), (1, 2, 2, 75));
        } else {
            assert_eq!(applied, ledger::Applied::default(), "the same key again changes nothing");
        }
    }
    let bonuses: Vec<(i32, i32, i32)> = db::query_as(
        "SELECT amount, balance_before, balance_after FROM customer_credit_transactions ORDER BY balance_before",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(bonuses, vec![(50, 0, 50), (25, 50, 75)], "chained in key order: gold, then silver");
    let levels: Vec<String> =
        db::query_scalar("SELECT data ->> 'level' FROM push_outbox ORDER BY 1").fetch_all(db.pool()).await.unwrap();
    assert_eq!(levels, vec!["gold", "silver"]);
    assert_ledger_invariants(db.pool()).await;
}
