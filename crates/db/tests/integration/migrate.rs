//! The migrator against the real PostgreSQL: fresh databases, the first version's legacy shapes, re-runs.

use db::Pool;
use db::migrate::{Action, Migrator};
use testkit::TestDb;

use crate::count;

async fn migrate(url: &str) -> db::migrate::Plan {
    let mut migrator = Migrator::connect(url).await.expect("connect");
    let plan = migrator.plan().await.expect("plan");
    migrator.apply(&plan).await.expect("apply");
    plan
}

async fn plan(url: &str) -> db::migrate::Plan {
    Migrator::connect(url).await.expect("connect").plan().await.expect("plan")
}

/// Every table docs/schema.md names.
const SCHEMA_TABLES: &[&str] = &[
    "customer_users",
    "customer_oauth_identities",
    "customer_push_tokens",
    "customer_xp",
    "customer_xp_transactions",
    "customer_credits",
    "customer_credit_transactions",
    "customer_daily_rewards",
    "customer_ad_views",
    "badges",
    "customer_badges",
    "match_comments",
    "match_comment_likes",
    "customer_predictions",
    "referrals",
    "subscription_plans",
    "customer_subscriptions",
    "partners",
    "partner_analytics",
    "scheduled_notifications",
    "push_outbox",
    "job_execution_logs",
];

#[tokio::test]
async fn an_empty_database_gets_every_table_and_a_second_run_changes_nothing() {
    let db = TestDb::empty().await;
    let first = migrate(db.url()).await;
    assert!(
        first.actions.iter().all(|a| !matches!(a, Action::AddColumn { .. } | Action::AddConstraint { .. })),
        "a fresh database gets whole tables:\n{first}"
    );
    for table in SCHEMA_TABLES {
        let exists: bool =
            db::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(db.pool()).await.unwrap();
        assert!(exists, "{table} was not created");
    }
    // Spot checks of what docs/schema.md marks new.
    for (table, column) in [
        ("customer_users", "timezone"),
        ("customer_xp_transactions", "idempotency_key"),
        ("push_outbox", "expires_at"),
        ("scheduled_notifications", "error"),
        ("partner_analytics", "updated_at"),
        ("job_execution_logs", "details"),
    ] {
        let n = count(
            db.pool(),
            &format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = '{table}' AND column_name = '{column}'"
            ),
        )
        .await;
        assert_eq!(n, 1, "{table}.{column}");
    }
    let second = plan(db.url()).await;
    assert!(second.is_empty(), "second run would change:\n{second}");
    assert!(!second.first_adoption);
}

#[tokio::test]
async fn two_migrators_at_once_both_finish_and_agree() {
    let db = TestDb::empty().await;
    let (a, b) = tokio::join!(migrate(db.url()), migrate(db.url()));
    // One did the work, the other waited for the lock and found nothing to do.
    assert!(a.is_empty() != b.is_empty(), "a: {a}\nb: {b}");
    assert!(plan(db.url()).await.is_empty());
}

async fn load_legacy(pool: &Pool) {
    sqlx::raw_sql(testkit::LEGACY_SCHEMA).execute(pool).await.expect("load the legacy fixture");
}

#[tokio::test]
async fn a_legacy_database_keeps_its_rows_and_gains_what_is_missing() {
    let db = TestDb::empty().await;
    load_legacy(db.pool()).await;

    let check = plan(db.url()).await;
    let report = check.to_string();
    assert!(check.first_adoption);
    assert!(report.contains("add column customer_users.timezone"), "{report}");
    assert!(report.contains("back-fill customer_push_tokens.token from fcm_token (2 row(s))"), "{report}");
    assert!(report.contains("mark 1 campaign(s) stuck in 'sending' as failed"), "{report}");
    assert!(report.contains("replace constraint job_execution_logs_status_check"), "{report}");
    assert!(report.contains("referrals.referrals_status_check: 1 row(s) violate it"), "{report}");
    assert!(report.contains("customer_users.created_at is timestamp without time zone"), "{report}");
    // The app generates its ids; hattrick's own inserts need a default.
    for table in ["customer_subscriptions", "customer_credits"] {
        assert!(report.contains(&format!("give {table}.id the default gen_random_uuid()")), "{report}");
    }
    // The existing (job_name, started_at DESC) index is reused, not duplicated.
    assert!(!report.contains("create index job_execution_logs_job_started_idx"), "{report}");
    assert!(check.blockers.is_empty(), "{report}");

    migrate(db.url()).await;
    let pool = db.pool();
    assert_eq!(count(pool, "SELECT count(*) FROM customer_users").await, 2);
    assert_eq!(count(pool, "SELECT count(*) FROM customer_subscriptions").await, 1);
    assert_eq!(count(pool, "SELECT count(*) FROM referrals").await, 1);
    assert_eq!(count(pool, "SELECT count(*) FROM job_execution_logs WHERE rows_affected = 12").await, 1);
    // Legacy timestamps stay `timestamp without time zone`.
    let created_type: String = db::query_scalar(
        "SELECT data_type::text FROM information_schema.columns
         WHERE table_name = 'customer_users' AND column_name = 'created_at'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(created_type, "timestamp without time zone");
    // Tokens were back-filled and the column is NOT NULL now; the app's fcm_token writes keep filling it.
    assert_eq!(count(pool, "SELECT count(*) FROM customer_push_tokens WHERE token = fcm_token").await, 2);
    db::query(
        "INSERT INTO customer_push_tokens (customer_user_id, fcm_token, platform)
         VALUES ('00000000-0000-4000-8000-000000000002', 'tok-c', 'web')",
    )
    .execute(pool)
    .await
    .expect("the app's legacy insert still works");
    assert_eq!(count(pool, "SELECT count(*) FROM customer_push_tokens WHERE token = 'tok-c'").await, 1);
    // The stuck campaign failed; the pending one is untouched.
    assert_eq!(count(pool, "SELECT count(*) FROM scheduled_notifications WHERE status = 'failed'").await, 1);
    assert_eq!(count(pool, "SELECT count(*) FROM scheduled_notifications WHERE status = 'pending'").await, 1);
    // The run log accepts `skipped` now, and hattrick's columns are mirrored into the legacy ones.
    db::query(
        "INSERT INTO job_execution_logs (job_name, started_at, completed_at, status, items_processed, details)
         VALUES ('streak-reset', now(), now(), 'skipped', 3, '{\"x\": 1}')",
    )
    .execute(pool)
    .await
    .expect("skipped is a valid status");
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM job_execution_logs
             WHERE job_name = 'streak-reset' AND rows_affected = 3 AND finished_at IS NOT NULL AND metadata = details"
        )
        .await,
        1
    );
    // The violating referral keeps its row, and its constraint waits NOT VALID.
    let validated: bool =
        db::query_scalar("SELECT convalidated FROM pg_constraint WHERE conname = 'referrals_status_check'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(!validated);

    // A re-run has nothing to do but retry that validation; once the row is fixed, it validates and is done.
    let again = plan(db.url()).await;
    assert!(
        again
            .actions
            .iter()
            .all(|a| matches!(a, Action::ValidateConstraint { name, .. } if name == "referrals_status_check")),
        "{again}"
    );
    db::query("UPDATE referrals SET status = 'pending' WHERE status = 'weird'").execute(pool).await.unwrap();
    migrate(db.url()).await;
    let last = plan(db.url()).await;
    assert!(last.is_empty(), "{last}");
}

#[tokio::test]
async fn a_predictions_table_of_another_shape_stops_the_migration() {
    let db = TestDb::empty().await;
    sqlx::raw_sql("CREATE TABLE customer_predictions (id serial PRIMARY KEY, user_ref text, match_id text)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut migrator = Migrator::connect(db.url()).await.unwrap();
    let plan = migrator.plan().await.unwrap();
    let report = plan.to_string();
    assert!(report.contains("customer_predictions exists with another shape"), "{report}");
    assert!(report.contains("customer_predictions.match_id is text"), "{report}");
    let error = migrator.apply(&plan).await.unwrap_err().to_string();
    assert!(error.contains("refusing to migrate"), "{error}");
    // Nothing was created.
    let users: bool =
        db::query_scalar("SELECT to_regclass('customer_users') IS NOT NULL").fetch_one(db.pool()).await.unwrap();
    assert!(!users);
}

#[tokio::test]
async fn duplicate_values_keep_a_unique_index_unbuilt_and_are_reported() {
    let db = TestDb::empty().await;
    sqlx::raw_sql(
        "CREATE TABLE customer_users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email varchar(255));
         INSERT INTO customer_users (email) VALUES ('same@example.com'), ('same@example.com');",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let plan = migrate(db.url()).await;
    assert!(plan.violations.iter().any(|v| v.constraint == "customer_users_email_key" && v.rows == 1), "{plan}");
    assert_eq!(count(db.pool(), "SELECT count(*) FROM customer_users").await, 2);
    let invalid = count(db.pool(), "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await;
    assert_eq!(invalid, 0, "no invalid index may be left behind");
}

#[tokio::test]
async fn keys_unique_across_users_become_unique_per_user_without_losing_one() {
    let db = TestDb::empty().await;
    migrate(db.url()).await;
    // The shape before keys were scoped to users: one ledger with a unique constraint (named by an ORM), the
    // other with a bare unique index, each holding keys.
    sqlx::raw_sql(
        "DROP INDEX customer_credit_transactions_user_key_idx;
         ALTER TABLE customer_credit_transactions
             ADD CONSTRAINT \"UQ_CreditKey\" UNIQUE (idempotency_key);
         DROP INDEX customer_xp_transactions_user_key_idx;
         CREATE UNIQUE INDEX legacy_xp_key ON customer_xp_transactions (idempotency_key);
         INSERT INTO customer_users (id, email) VALUES ('00000000-0000-0000-0000-00000000000a', 'a@example.com'),
                                                       ('00000000-0000-0000-0000-00000000000b', 'b@example.com');
         INSERT INTO customer_credit_transactions (customer_user_id, amount, transaction_type, balance_before,
                                                   balance_after, idempotency_key)
         SELECT '00000000-0000-0000-0000-00000000000a', 1, 'ad_reward', n - 1, n, 'order-' || n
         FROM generate_series(1, 500) n;
         INSERT INTO customer_xp_transactions (customer_user_id, xp_amount, transaction_type, idempotency_key)
         SELECT '00000000-0000-0000-0000-00000000000a', 1, 'ad_reward', 'xp-' || n FROM generate_series(1, 500) n;",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let text = migrate(db.url()).await.to_string();
    assert!(text.contains("customer_credit_transactions_user_key_idx (concurrently)"), "{text}");
    assert!(text.contains("drop UQ_CreditKey"), "a mixed-case name, as an ORM writes it: {text}");
    assert!(text.contains("drop legacy_xp_key"), "{text}");
    let again = plan(db.url()).await;
    assert!(again.is_empty(), "second run would change:\n{again}");
    assert_eq!(count(db.pool(), "SELECT count(DISTINCT idempotency_key) FROM customer_credit_transactions").await, 500);
    assert_eq!(count(db.pool(), "SELECT count(DISTINCT idempotency_key) FROM customer_xp_transactions").await, 500);
    // Another user may now use a key of the first; the same user may not.
    sqlx::raw_sql(
        "INSERT INTO customer_credit_transactions (customer_user_id, amount, transaction_type, balance_before,
                                                   balance_after, idempotency_key)
         VALUES ('00000000-0000-0000-0000-00000000000b', 1, 'ad_reward', 0, 1, 'order-1')",
    )
    .execute(db.pool())
    .await
    .expect("another user's key is another row");
    let duplicate = sqlx::raw_sql(
        "INSERT INTO customer_xp_transactions (customer_user_id, xp_amount, transaction_type, idempotency_key)
         VALUES ('00000000-0000-0000-0000-00000000000a', 1, 'ad_reward', 'xp-1')",
    )
    .execute(db.pool())
    .await
    .unwrap_err();
    assert!(duplicate.to_string().contains("customer_xp_transactions_user_key_idx"), "{duplicate}");
}

/// Every foreign key of a table hattrick adds has an index that leads with its columns, so the app's deletes of
/// the rows it points at (a user, a campaign) find the referencing rows by key instead of scanning the table: a
/// hard-deleted user cascaded through a scan of every push ever queued before this held. The app's own tables
/// keep the indexes the app gave them.
#[tokio::test]
async fn every_foreign_key_of_hattrick_tables_has_an_index_to_cascade_through() {
    let db = TestDb::empty().await;
    migrate(db.url()).await;
    let unindexed: Vec<String> = db::query_scalar(
        "SELECT c.conrelid::regclass::text || '.' || c.conname
         FROM pg_constraint c
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
           AND (c.conrelid::regclass::text = 'push_outbox' OR c.conrelid::regclass::text LIKE 'hattrick\\_%')
           AND NOT EXISTS (
               SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.conrelid
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey
                 -- A partial index serves the key's lookups only when every non-null key is in it.
                 AND (i.indpred IS NULL
                      OR pg_get_expr(i.indpred, i.indrelid) = format('(%I IS NOT NULL)',
                             (SELECT attname FROM pg_attribute WHERE attrelid = c.conrelid AND attnum = c.conkey[1]))))
         ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert!(unindexed.is_empty(), "foreign keys without an index: {unindexed:?}");
    // The check sees what it should: push_outbox's campaign key is served by its partial index.
    let fks = count(
        db.pool(),
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'push_outbox'::regclass",
    )
    .await;
    assert_eq!(fks, 2);
}

/// An outbox as an earlier hattrick left it (the daily cap's partial index, then a plain user index) gets the one
/// index that serves both, and loses the two old ones only once it is built; a second run plans nothing.
#[tokio::test]
async fn retired_outbox_indexes_go_once_their_replacement_is_built() {
    let db = TestDb::empty().await;
    migrate(db.url()).await;
    sqlx::raw_sql(
        "DROP INDEX push_outbox_user_sent_idx;
         CREATE INDEX push_outbox_capped_sent_idx ON push_outbox (customer_user_id, sent_at)
             WHERE status = 'sent' AND category IN ('engagement', 'campaign');
         CREATE INDEX push_outbox_user_idx ON push_outbox (customer_user_id);",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let indexes = "SELECT count(*) FROM pg_indexes WHERE tablename = 'push_outbox'
                   AND indexname IN ('push_outbox_capped_sent_idx', 'push_outbox_user_idx', 'push_outbox_user_sent_idx')";

    // The drops alone, without the build: both old indexes are kept and said so.
    let mut only_drops = plan(db.url()).await;
    only_drops.actions.retain(|a| matches!(a, Action::Fixup(_)));
    assert_eq!(only_drops.actions.len(), 2, "{only_drops}");
    let report = Migrator::connect(db.url()).await.unwrap().apply(&only_drops).await.unwrap();
    assert_eq!(report.left_not_valid.len(), 2, "{:?}", report.left_not_valid);
    assert!(report.left_not_valid[0].contains("kept: its replacement on (customer_user_id, sent_at) is not built"));
    assert_eq!(count(db.pool(), indexes).await, 2);

    let text = migrate(db.url()).await.to_string();
    assert!(text.contains("create index push_outbox_user_sent_idx (concurrently)"), "{text}");
    assert!(text.contains("drop push_outbox's index push_outbox_capped_sent_idx"), "{text}");
    assert!(text.contains("drop push_outbox's index push_outbox_user_idx"), "{text}");
    assert_eq!(count(db.pool(), indexes).await, 1);
    assert_eq!(
        count(db.pool(), "SELECT count(*) FROM pg_indexes WHERE indexname = 'push_outbox_user_sent_idx'").await,
        1
    );
    let again = plan(db.url()).await;
    assert!(again.is_empty(), "second run would change:\n{again}");
}
