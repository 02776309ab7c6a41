//! The ledger invariants of docs/ledger.md, checked over a whole database.

use db::Pool;

/// Panics, naming the users, unless for every user: credits balance = sum of the credit ledger, lifetime earned =
/// sum of positive amounts, lifetime spent = minus the sum of negative amounts, XP = sum of the XP ledger; and every
/// credit row's `balance_after - balance_before` equals its amount, the rows of a user chaining from 0 to the
/// balance without gaps.
pub async fn assert_ledger_invariants(pool: &Pool) {
    let credit_drift: Vec<(String, i64, i64, i64, i64, i64, i64)> = db::query_as(
        "SELECT c.customer_user_id::text, c.balance::bigint, coalesce(sum(t.amount), 0)::bigint,
                c.lifetime_earned::bigint, coalesce(sum(t.amount) FILTER (WHERE t.amount > 0), 0)::bigint,
                c.lifetime_spent::bigint, coalesce(-sum(t.amount) FILTER (WHERE t.amount < 0), 0)::bigint
         FROM customer_credits c LEFT JOIN customer_credit_transactions t ON t.customer_user_id = c.customer_user_id
         GROUP BY c.customer_user_id, c.balance, c.lifetime_earned, c.lifetime_spent
         HAVING c.balance <> coalesce(sum(t.amount), 0)
             OR c.lifetime_earned <> coalesce(sum(t.amount) FILTER (WHERE t.amount > 0), 0)
             OR c.lifetime_spent <> coalesce(-sum(t.amount) FILTER (WHERE t.amount < 0), 0)
         LIMIT 10",
    )
    .fetch_all(pool)
    .await
    .expect("credit invariant query");
    assert!(
        credit_drift.is_empty(),
        "credit balances differ from their ledger (user, balance, sum, earned, sum+, spent, sum-): {credit_drift:?}"
    );

    let orphans: i64 = db::query_scalar(
        "SELECT count(*) FROM (SELECT DISTINCT customer_user_id FROM customer_credit_transactions) t
         WHERE NOT EXISTS (SELECT 1 FROM customer_credits c WHERE c.customer_user_id = t.customer_user_id)",
    )
    .fetch_one(pool)
    .await
    .expect("orphan query");
    assert_eq!(orphans, 0, "credit ledger rows without a balance row");

    let broken_rows: i64 = db::query_scalar(
        "SELECT count(*) FROM customer_credit_transactions WHERE balance_after - balance_before <> amount",
    )
    .fetch_one(pool)
    .await
    .expect("row arithmetic query");
    assert_eq!(broken_rows, 0, "credit rows whose balance_after - balance_before is not their amount");

    // Each balance_after is some row's balance_before or the final balance: the rows chain without gaps.
    let unchained: Vec<(String, i64)> = db::query_as(
        "SELECT t.customer_user_id::text, count(*) FROM customer_credit_transactions t
         JOIN customer_credits c ON c.customer_user_id = t.customer_user_id
         WHERE t.balance_after <> c.balance
           AND NOT EXISTS (SELECT 1 FROM customer_credit_transactions n
                           WHERE n.customer_user_id = t.customer_user_id AND n.balance_before = t.balance_after
                             AND n.id <> t.id)
           AND t.transaction_type <> 'retention_rollup'
         GROUP BY 1 LIMIT 10",
    )
    .fetch_all(pool)
    .await
    .expect("chain query");
    assert!(unchained.is_empty(), "credit rows that no later row continues from: {unchained:?}");

    let xp_drift: Vec<(String, i64, i64)> = db::query_as(
        "SELECT x.customer_user_id::text, x.xp_points::bigint, coalesce(sum(t.xp_amount), 0)::bigint
         FROM customer_xp x LEFT JOIN customer_xp_transactions t ON t.customer_user_id = x.customer_user_id
         GROUP BY x.customer_user_id, x.xp_points HAVING x.xp_points <> coalesce(sum(t.xp_amount), 0) LIMIT 10",
    )
    .fetch_all(pool)
    .await
    .expect("xp invariant query");
    assert!(xp_drift.is_empty(), "XP differs from its ledger (user, xp, sum): {xp_drift:?}");

    let wrong_level: i64 =
        db::query_scalar("SELECT count(*) FROM customer_xp WHERE level <> hattrick_level_for(xp_points)")
            .fetch_one(pool)
            .await
            .expect("level query");
    assert_eq!(wrong_level, 0, "levels that do not match XP");
}
