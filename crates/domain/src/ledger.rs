//! The rewards ledger, set-based (docs/ledger.md).
//!
//! A job fills two scratch tables ([`crate::scratch`]) with the grants of one batch, by `INSERT ... SELECT` with its own
//! parameters (never an id list from Rust), then calls [`apply`] inside its transaction. `apply`:
//! 1. creates missing balance rows and locks every touched balance row in user order (so concurrent grants, and
//!    the app's own ledger functions, are serialised per user and never deadlock each other);
//! 2. under those locks, drops grants whose idempotency key was used before (in the ledgers or among compacted
//!    keys);
//! 3. inserts XP rows, moves XP and recomputes levels, and turns every level crossed upwards into a credit grant
//!    (`level-up:{user}:{level}`, paid once per user ever) plus its push;
//! 4. inserts credit rows with exact `balance_before/after` (running sums when one user gets several grants in a
//!    batch) and moves balances with one atomic increment per user.
//!
//! Ledger rows get time-ordered ids (`hattrick_uuid7()`), so a batch appends to the primary-key index.
//!
//! The scratch tables are `ON COMMIT DELETE ROWS`: a batch never leaks into the next transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::messages::LEVEL_UP;
use crate::outbox::{self, Category};

/// The level-up pushes of the bonuses staged in a batch (keys `level-up:{user}:{level}`, written only by [`apply`]):
/// the level's names fill the message, the level rides in the data.
const LEVEL_UP_PUSHES: outbox::Source = outbox::Source(
    "(SELECT g.idempotency_key AS dedupe_key, g.customer_user_id,
             jsonb_build_object('name_tr', l.name_tr, 'name_en', l.name_en) AS vars,
             jsonb_build_object('level', l.level) AS data, NULL::text AS image_url
      FROM hattrick_credit_grants g JOIN hattrick_levels() l ON l.level = g.metadata ->> 'level_up'
      WHERE g.idempotency_key LIKE 'level-up:%')",
);

/// What one [`apply`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Credit ledger rows inserted (level-up bonuses included).
    pub credit_rows: i64,
    /// Sum of their amounts.
    pub credits: i64,
    /// XP ledger rows inserted.
    pub xp_rows: i64,
    /// Sum of their amounts.
    pub xp: i64,
    /// Levels crossed upwards (each paid its bonus).
    pub level_ups: i64,
}

/// The tables of one ledger, for the steps XP and credits share.
struct LedgerTables {
    /// The session's scratch table of pending grants.
    grants: &'static str,
    /// The ledger's name in `hattrick_compacted_user_keys`.
    name: &'static str,
    /// The ledger rows.
    rows: &'static str,
    /// The balance rows, and the columns and values a new one starts with besides the user and timestamps.
    balances: &'static str,
    new_balance_columns: &'static str,
    new_balance_values: &'static str,
}

const XP_LEDGER: LedgerTables = LedgerTables {
    name: "xp",
    grants: "hattrick_xp_grants",
    rows: "customer_xp_transactions",
    balances: "customer_xp",
    new_balance_columns: ", next_level_xp",
    new_balance_values: ", 500",
};

const CREDIT_LEDGER: LedgerTables = LedgerTables {
    name: "credits",
    grants: "hattrick_credit_grants",
    rows: "customer_credit_transactions",
    balances: "customer_credits",
    new_balance_columns: "",
    new_balance_values: "",
};

/// Creates missing balance rows, locks every touched one in user order, then drops grants whose key was used
/// before. Returns false when the batch has no grant for this ledger.
///
/// The used keys are looked up once, under the locks: a key written by a transaction that committed while this
/// one waited is seen then, and a key written later waits for these locks. (Looking them up before the locks
/// too, to spare locking users whose grants were all used, cost a second lookup per grant in every batch.)
async fn lock_balances(conn: &mut PgConnection, ledger: &LedgerTables, at: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let LedgerTables { name, grants, rows, balances, new_balance_columns, new_balance_values } = ledger;
    let drop_used = format!(
        "DELETE FROM {grants} g
         WHERE EXISTS (SELECT 1 FROM {rows} t
                       WHERE t.customer_user_id = g.customer_user_id AND t.idempotency_key = g.idempotency_key)
            OR EXISTS (SELECT 1 FROM hattrick_compacted_user_keys k
                       WHERE k.customer_user_id = g.customer_user_id AND k.idempotency_key = g.idempotency_key
                         AND k.ledger = '{name}')
            OR EXISTS (SELECT 1 FROM hattrick_compacted_keys k WHERE k.idempotency_key = g.idempotency_key)"
    );
    // Locks row by row in user order: a subquery with FOR UPDATE is never flattened into a join, so this stays
    // one index lookup per user, in the order of the sorted users.
    let lock = format!(
        "SELECT (SELECT count(DISTINCT customer_user_id) FROM {grants}),
                (SELECT count(*) FROM (SELECT DISTINCT customer_user_id FROM {grants} ORDER BY 1) g
                 CROSS JOIN LATERAL (SELECT 1 FROM {balances} b WHERE b.customer_user_id = g.customer_user_id
                                     FOR UPDATE) l)"
    );
    let (users, locked): (i64, i64) = db::query_as(sqlx::AssertSqlSafe(lock.clone())).fetch_one(&mut *conn).await?;
    if users == 0 {
        return Ok(false);
    }
    if locked < users {
        // Balance rows are created on demand, in user order too: two batches creating the same rows wait for
        // each other in one order and never deadlock.
        db::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {balances} (customer_user_id{new_balance_columns}, created_at, updated_at)
             SELECT customer_user_id{new_balance_values}, $1::timestamptz, $1::timestamptz
             FROM (SELECT DISTINCT customer_user_id FROM {grants}) g
             WHERE NOT EXISTS (SELECT 1 FROM {balances} b WHERE b.customer_user_id = g.customer_user_id)
             ORDER BY customer_user_id
             ON CONFLICT (customer_user_id) DO NOTHING"
        )))
        .bind(at)
        .execute(&mut *conn)
        .await?;
        db::query(sqlx::AssertSqlSafe(lock)).execute(&mut *conn).await?;
    }
    db::query(sqlx::AssertSqlSafe(drop_used)).execute(&mut *conn).await?;
    Ok(true)
}

/// Applies the grants in the scratch tables, in the caller's transaction. `push` enqueues level-up pushes (false
/// for a silent back-fill, docs/jobs/README.md).
pub async fn apply(conn: &mut PgConnection, at: DateTime<Utc>, push: bool) -> Result<Applied, sqlx::Error> {
    let mut applied = Applied::default();

    // XP first: level-ups become credit grants.
    if lock_balances(&mut *conn, &XP_LEDGER, at).await? {
        let xp = sqlx::query!(
            r#"WITH inserted AS (
                 INSERT INTO customer_xp_transactions (id, customer_user_id, xp_amount, transaction_type,
                     description, reference_id, reference_type, metadata, idempotency_key, created_at)
                 SELECT hattrick_uuid7(), customer_user_id, xp_amount, transaction_type, description, reference_id,
                        reference_type, metadata, idempotency_key, $1
                 FROM hattrick_xp_grants
                 RETURNING customer_user_id, xp_amount
             ),
             per_user AS (
                 SELECT customer_user_id, sum(xp_amount)::int AS total, sum(greatest(xp_amount, 0))::int AS earned
                 FROM inserted GROUP BY customer_user_id
             ),
             moved AS (
                 UPDATE customer_xp x
                 SET xp_points = x.xp_points + p.total, total_earned = x.total_earned + p.earned,
                     level = hattrick_level_for(x.xp_points + p.total),
                     level_progress = hattrick_level_progress(x.xp_points + p.total),
                     next_level_xp = hattrick_next_level_xp(x.xp_points + p.total), updated_at = $1
                 FROM per_user p WHERE x.customer_user_id = p.customer_user_id
                 RETURNING x.customer_user_id, x.xp_points - p.total AS before, x.xp_points AS after
             ),
             crossed AS (
                 INSERT INTO hattrick_credit_grants (idempotency_key, customer_user_id, amount, transaction_type,
                     description, metadata)
                 SELECT 'level-up:' || m.customer_user_id || ':' || l.level, m.customer_user_id, l.credits,
                        'promotional', 'Level up: ' || l.name_en, jsonb_build_object('level_up', l.level)
                 FROM moved m JOIN hattrick_levels() l ON l.xp_from > m.before AND l.xp_from <= m.after
                 WHERE l.credits > 0
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM inserted) AS "rows!",
                    (SELECT coalesce(sum(xp_amount), 0) FROM inserted)::bigint AS "total!",
                    (SELECT count(*) FROM crossed) AS "level_ups!""#,
            at,
        )
        .fetch_one(db::unnamed(&mut *conn))
        .await?;
        applied.xp_rows = xp.rows;
        applied.xp = xp.total;
        applied.level_ups = xp.level_ups;
        // The level-up pushes, all at once from the bonuses just staged, before a used bonus key is dropped below:
        // a level crossed again after a deduction gets its push (deduplicated by the outbox), never its bonus.
        if push && xp.level_ups > 0 {
            outbox::insert(&mut *conn, LEVEL_UP_PUSHES, &LEVEL_UP, Category::Reward, at).await?;
        }
    }

    if lock_balances(&mut *conn, &CREDIT_LEDGER, at).await? {
        // Under the locks the balances are current. Each touched balance moves once, by its user's total, and
        // hands back where it started; a user's rows chain from there in key order. (Reading the balances in a
        // join instead let the planner hash the whole balance table for every batch: it cannot see how few rows a
        // scratch table holds.)
        let credits = sqlx::query!(
            r#"WITH moved AS (
                 UPDATE customer_credits c
                 SET balance = c.balance + p.total, lifetime_earned = c.lifetime_earned + p.earned,
                     lifetime_spent = c.lifetime_spent + p.spent, updated_at = $1
                 FROM (SELECT customer_user_id, sum(amount)::int AS total, sum(greatest(amount, 0))::int AS earned,
                              sum(greatest(-amount, 0))::int AS spent
                       FROM hattrick_credit_grants GROUP BY customer_user_id) p
                 WHERE c.customer_user_id = p.customer_user_id
                 RETURNING c.customer_user_id, c.balance - p.total AS start
             ),
             chained AS (
                 SELECT g.*, m.start + coalesce(sum(g.amount) OVER (
                            PARTITION BY g.customer_user_id ORDER BY g.idempotency_key
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                 FROM hattrick_credit_grants g JOIN moved m ON m.customer_user_id = g.customer_user_id
             ),
             inserted AS (
                 INSERT INTO customer_credit_transactions (id, customer_user_id, amount, transaction_type,
                     description, reference_id, reference_type, balance_before, balance_after, metadata,
                     idempotency_key, created_at)
                 SELECT hattrick_uuid7(), customer_user_id, amount, transaction_type, description, reference_id,
                        reference_type, before, before + amount, metadata, idempotency_key, $1
                 FROM chained
                 RETURNING amount
             )
             SELECT count(*) AS "rows!", coalesce(sum(amount), 0)::bigint AS "total!" FROM inserted"#,
            at,
        )
        .fetch_one(db::unnamed(&mut *conn))
        .await?;
        applied.credit_rows = credits.rows;
        applied.credits = credits.total;
    }
    Ok(applied)
}

/// Users whose balances differ from their ledgers (docs/ledger.md): the app wrote a balance without a ledger row.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// Users whose credit balance differs from the sum of their credit ledger.
    pub credit_users: i64,
    /// Sum of (balance - ledger sum) over them.
    pub credit_difference: i64,
    /// Users whose XP differs from the sum of their XP ledger.
    pub xp_users: i64,
    /// Sum of (XP - ledger sum) over them.
    pub xp_difference: i64,
    /// Up to `sample` drifted users: (user, ledger, balance, ledger sum).
    pub sample: Vec<(String, String, i64, i64)>,
}

const CREDIT_DRIFT: &str = "
    SELECT c.customer_user_id, c.balance::bigint AS balance, coalesce(t.total, 0)::bigint AS total
    FROM customer_credits c
    LEFT JOIN (SELECT customer_user_id, sum(amount) AS total FROM customer_credit_transactions
               GROUP BY customer_user_id) t ON t.customer_user_id = c.customer_user_id
    WHERE c.balance <> coalesce(t.total, 0)";

const XP_DRIFT: &str = "
    SELECT x.customer_user_id, x.xp_points::bigint AS balance, coalesce(t.total, 0)::bigint AS total
    FROM customer_xp x
    LEFT JOIN (SELECT customer_user_id, sum(xp_amount) AS total FROM customer_xp_transactions
               GROUP BY customer_user_id) t ON t.customer_user_id = x.customer_user_id
    WHERE x.xp_points <> coalesce(t.total, 0)";

/// Measures drift between balances and ledgers, with a sample of `sample` users of each ledger.
pub async fn drift(pool: &db::Pool, sample: i64) -> Result<Drift, sqlx::Error> {
    let mut report = Drift::default();
    for (ledger, sql) in [("credits", CREDIT_DRIFT), ("xp", XP_DRIFT)] {
        let (users, difference): (i64, i64) = db::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), coalesce(sum(balance - total), 0)::bigint FROM ({sql}) d"
        )))
        .fetch_one(pool)
        .await?;
        let rows: Vec<(uuid::Uuid, i64, i64)> =
            db::query_as(sqlx::AssertSqlSafe(format!("SELECT * FROM ({sql}) d ORDER BY customer_user_id LIMIT $1")))
                .bind(sample)
                .fetch_all(pool)
                .await?;
        report.sample.extend(
            rows.into_iter().map(|(user, balance, total)| (user.to_string(), ledger.to_owned(), balance, total)),
        );
        if ledger == "credits" {
            (report.credit_users, report.credit_difference) = (users, difference);
        } else {
            (report.xp_users, report.xp_difference) = (users, difference);
        }
    }
    Ok(report)
}

/// Writes one opening-balance row per drifted user and ledger (key `opening:{user}:credits:{at}`, and `:xp:`),
/// so that every balance equals its ledger again; lifetime counters are recomputed from the ledger. Run once at
/// cut-over, after review (docs/ledger.md). Returns (credit rows, XP rows) written.
pub async fn open_balances(pool: &db::Pool, at: DateTime<Utc>) -> Result<(u64, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Lock every balance row first, so no grant lands between measuring and writing.
    sqlx::raw_sql("LOCK TABLE customer_credits, customer_xp IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    let credits = db::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO customer_credit_transactions (customer_user_id, amount, transaction_type, description,
             balance_before, balance_after, metadata, idempotency_key, created_at)
         SELECT customer_user_id, (balance - total)::int,
                CASE WHEN balance > total THEN 'admin_grant' ELSE 'admin_deduct' END,
                'Opening balance (hattrick ledger open)', total::int, balance::int,
                '{{\"opening_balance\": true}}',
                'opening:' || customer_user_id || ':credits:' || extract(epoch FROM $1)::bigint, $1
         FROM ({CREDIT_DRIFT}) d
         ON CONFLICT (customer_user_id, idempotency_key) DO NOTHING"
    )))
    .bind(at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query!(
        "UPDATE customer_credits c
         SET lifetime_earned = t.earned, lifetime_spent = t.spent, updated_at = $1
         FROM (SELECT customer_user_id, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS earned,
                      coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS spent
               FROM customer_credit_transactions GROUP BY customer_user_id) t
         WHERE t.customer_user_id = c.customer_user_id
           AND (c.lifetime_earned <> t.earned OR c.lifetime_spent <> t.spent)",
        at,
    )
    .execute(db::unnamed(&mut tx))
    .await?;
    let xp = db::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO customer_xp_transactions (customer_user_id, xp_amount, transaction_type, description, metadata,
             idempotency_key, created_at)
         SELECT customer_user_id, (balance - total)::int,
                CASE WHEN balance > total THEN 'admin_grant' ELSE 'admin_deduct' END,
                'Opening balance (hattrick ledger open)', '{{\"opening_balance\": true}}',
                'opening:' || customer_user_id || ':xp:' || extract(epoch FROM $1)::bigint, $1
         FROM ({XP_DRIFT}) d
         ON CONFLICT (customer_user_id, idempotency_key) DO NOTHING"
    )))
    .bind(at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((credits, xp))
}
