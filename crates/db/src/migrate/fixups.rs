//! Changes a legacy database needs beyond missing tables, columns, constraints and indexes (docs/schema.md,
//! "Operating on a live database"). Each is detected from the live catalog and data, so a second run finds nothing to do.

use std::fmt;

use sqlx::{AssertSqlSafe, PgConnection};

use super::catalog::Catalog;
use crate::Result;

const BACKFILL_BATCH: i64 = 10_000;

/// Legacy columns of the first version's `job_execution_logs` and the column hattrick writes that each mirrors.
const JOB_LOG_LEGACY_COLUMNS: &[(&str, &str)] =
    &[("finished_at", "completed_at"), ("rows_affected", "items_processed"), ("metadata", "details")];

/// The ledgers whose idempotency keys are unique per user (`migrations/routines.sql`).
pub const USER_SCOPED_LEDGERS: &[&str] = &["customer_xp_transactions", "customer_credit_transactions"];

/// Whether `table` has a valid, whole-table (not partial) index on exactly `columns`, unique if `unique`, whatever
/// its name.
async fn index_ready(pool: &crate::Pool, table: &str, columns: &[&str], unique: bool) -> Result<bool> {
    Ok(crate::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM pg_index i
             WHERE i.indrelid = to_regclass($1) AND (i.indisunique OR NOT $3) AND i.indisvalid AND i.indpred IS NULL
               AND i.indexprs IS NULL
               AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)
                   = $2::text[])",
    )
    .bind(table)
    .bind(columns)
    .bind(unique)
    .fetch_one(pool)
    .await?)
}

/// An index hattrick once created on one of its own tables and no longer wants, with the columns of the index in
/// `schema.sql` that took over its work.
pub struct RetiredIndex {
    /// The table.
    pub table: &'static str,
    /// The retired index's name.
    pub name: &'static str,
    /// The columns of its replacement, a plain index.
    pub replacement: &'static [&'static str],
}

/// Indexes dropped once their replacement is built: each one still costs every write of its table.
pub const RETIRED_INDEXES: &[RetiredIndex] = &[
    // Partial to the capped rows; push_outbox_user_sent_idx serves the daily cap and the user foreign key.
    RetiredIndex {
        table: "push_outbox",
        name: "push_outbox_capped_sent_idx",
        replacement: &["customer_user_id", "sent_at"],
    },
    // The user foreign key's index for a few commits, before push_outbox_user_sent_idx took over its work.
    RetiredIndex { table: "push_outbox", name: "push_outbox_user_idx", replacement: &["customer_user_id", "sent_at"] },
];

/// A fix-up's drop of an old key or index that must wait until what replaces it is built.
pub struct WaitingDrop {
    /// The statement that drops it.
    pub sql: String,
    /// Whether the replacement is built (a valid index), so the drop may run.
    pub ready: bool,
    /// What the report says while it is not.
    pub kept: String,
}

impl Fixup {
    /// For [`Fixup::UserScopedKeys`] and [`Fixup::RetireIndex`], the drop and whether it may run now; None for the
    /// other fix-ups, which [`apply`] carries out. The migrator runs these drops itself, under its DDL retries.
    pub async fn waiting_drop(&self, pool: &crate::Pool) -> Result<Option<WaitingDrop>> {
        Ok(Some(match self {
            Fixup::UserScopedKeys { table, old, constraint } => {
                // The name as the catalog holds it (the app's may be mixed case).
                let quoted = format!("\"{}\"", old.replace('"', "\"\""));
                WaitingDrop {
                    sql: if *constraint {
                        format!("ALTER TABLE {table} DROP CONSTRAINT {quoted}")
                    } else {
                        format!("DROP INDEX CONCURRENTLY {quoted}")
                    },
                    ready: index_ready(pool, table, &["customer_user_id", "idempotency_key"], true).await?,
                    kept: format!("{table}.{old} (kept: the per-user key index is not built)"),
                }
            }
            Fixup::RetireIndex { retired } => {
                let RetiredIndex { table, name, replacement } = &RETIRED_INDEXES[*retired];
                WaitingDrop {
                    sql: format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"),
                    ready: index_ready(pool, table, replacement, false).await?,
                    kept: format!(
                        "{table}.{name} (kept: its replacement on ({}) is not built)",
                        replacement.join(", ")
                    ),
                }
            }
            _ => return Ok(None),
        }))
    }
}

/// The app's tables hattrick inserts rows into without naming their `id` (the app's own code generates ids):
/// each needs a default for hattrick's rows. hattrick's own tables get theirs from `schema.sql`.
pub const TABLES_WRITTEN_WITHOUT_ID: &[&str] = &[
    "customer_xp",
    "customer_xp_transactions",
    "customer_credits",
    "customer_credit_transactions",
    "customer_subscriptions",
    "partner_analytics",
    "scheduled_notifications",
    "job_execution_logs",
];

/// One legacy fix-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixup {
    /// The app still writes `customer_push_tokens.fcm_token`: keep `token` and `fcm_token` equal on every write.
    PushTokenMirror,
    /// Copy `fcm_token` into `token` where `token` is empty, in batches.
    PushTokenBackfill {
        /// Rows to fill.
        rows: i64,
    },
    /// Make `customer_push_tokens.token` NOT NULL once every row has one.
    PushTokenNotNull {
        /// Rows that still have no token (the step waits while there are any).
        rows_without_token: i64,
    },
    /// The first version's `job_execution_logs` columns: fill them from hattrick's on every write, so old
    /// dashboards keep working.
    JobLogLegacyMirror {
        /// The legacy columns present.
        columns: Vec<String>,
    },
    /// Campaigns the first version left `sending`: mark them `failed`, never re-send them.
    FailStuckCampaigns {
        /// How many.
        rows: i64,
    },
    /// A `uuid` id without a default on a table hattrick inserts into without an id: give it
    /// `DEFAULT gen_random_uuid()` (the app, which supplies its own ids, is unaffected).
    IdDefault {
        /// The table.
        table: String,
    },
    /// A ledger whose idempotency keys were unique across users: once the per-user unique index is built, drop
    /// the old constraint or index, so another user's key is another payment (no key is lost: they stay in the
    /// rows and in the per-user index).
    UserScopedKeys {
        /// The ledger table.
        table: String,
        /// The old unique constraint, or unique index when `constraint` is false.
        old: String,
        /// Whether `old` is a constraint (dropped with `ALTER TABLE`) or a bare index (`DROP INDEX CONCURRENTLY`).
        constraint: bool,
    },
    /// An index of [`RETIRED_INDEXES`] still present: dropped (`DROP INDEX CONCURRENTLY`) once its replacement
    /// is built.
    RetireIndex {
        /// Its place in [`RETIRED_INDEXES`].
        retired: usize,
    },
    /// Copy PostgreSQL's time zone names into `hattrick_time_zones`.
    TimeZoneNames {
        /// Names not copied yet.
        missing: i64,
    },
}

impl fmt::Display for Fixup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fixup::PushTokenMirror => write!(f, "keep customer_push_tokens.token and fcm_token equal (trigger)"),
            Fixup::PushTokenBackfill { rows } => {
                write!(f, "back-fill customer_push_tokens.token from fcm_token ({rows} row(s))")
            }
            Fixup::PushTokenNotNull { rows_without_token: 0 } => {
                write!(f, "make customer_push_tokens.token NOT NULL")
            }
            Fixup::PushTokenNotNull { rows_without_token } => write!(
                f,
                "make customer_push_tokens.token NOT NULL once {rows_without_token} row(s) without a token are fixed"
            ),
            Fixup::JobLogLegacyMirror { columns } => {
                write!(f, "mirror job_execution_logs into legacy columns {} (trigger)", columns.join(", "))
            }
            Fixup::UserScopedKeys { table, old, .. } => write!(
                f,
                "scope {table}'s idempotency keys to users: drop {old} (unique across users) once the per-user index \
                 is built"
            ),
            Fixup::RetireIndex { retired } => {
                let RetiredIndex { table, name, replacement } = &RETIRED_INDEXES[*retired];
                write!(f, "drop {table}'s index {name} once the index on ({}) is built", replacement.join(", "))
            }
            Fixup::TimeZoneNames { missing } => write!(f, "record {missing} time zone name(s) in hattrick_time_zones"),
            Fixup::IdDefault { table } => write!(
                f,
                "give {table}.id the default gen_random_uuid() (hattrick inserts rows into {table} without an id)"
            ),
            Fixup::FailStuckCampaigns { rows } => {
                write!(f, "mark {rows} campaign(s) stuck in 'sending' as failed (never re-sent)")
            }
        }
    }
}

async fn trigger_exists(conn: &mut PgConnection, name: &str) -> Result<bool> {
    Ok(crate::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 AND NOT tgisinternal)")
        .bind(name)
        .fetch_one(conn)
        .await?)
}

/// Lists the fix-ups `live` needs. `first_adoption`: hattrick has never migrated this database.
pub async fn detect(conn: &mut PgConnection, live: &Catalog, first_adoption: bool) -> Result<Vec<Fixup>> {
    let mut fixups = Vec::new();

    if let Some(tokens) = live.tables.get("customer_push_tokens")
        && tokens.column("fcm_token").is_some()
    {
        if !trigger_exists(conn, "hattrick_push_tokens_token_mirror").await? {
            fixups.push(Fixup::PushTokenMirror);
        }
        let has_token = tokens.column("token").is_some();
        let (to_fill, without): (i64, i64) = if has_token {
            crate::query_as(
                "SELECT count(*) FILTER (WHERE token IS NULL AND fcm_token IS NOT NULL),
                        count(*) FILTER (WHERE token IS NULL AND fcm_token IS NULL)
                 FROM customer_push_tokens",
            )
            .fetch_one(&mut *conn)
            .await?
        } else {
            crate::query_as(
                "SELECT count(*) FILTER (WHERE fcm_token IS NOT NULL), count(*) FILTER (WHERE fcm_token IS NULL)
                 FROM customer_push_tokens",
            )
            .fetch_one(&mut *conn)
            .await?
        };
        if to_fill > 0 {
            fixups.push(Fixup::PushTokenBackfill { rows: to_fill });
        }
        if !tokens.column("token").is_some_and(|c| c.not_null) {
            fixups.push(Fixup::PushTokenNotNull { rows_without_token: without });
        }
    }

    if let Some(logs) = live.tables.get("job_execution_logs") {
        let columns: Vec<String> = JOB_LOG_LEGACY_COLUMNS
            .iter()
            .filter(|(legacy, _)| logs.column(legacy).is_some())
            .map(|(legacy, _)| (*legacy).to_owned())
            .collect();
        if !columns.is_empty() && !trigger_exists(conn, "hattrick_job_logs_legacy_mirror").await? {
            fixups.push(Fixup::JobLogLegacyMirror { columns });
        }
    }

    for table in TABLES_WRITTEN_WITHOUT_ID {
        let Some(id) = live.tables.get(*table).and_then(|t| t.column("id")) else { continue };
        if id.default.is_none() && !id.identity {
            if id.data_type == "uuid" {
                fixups.push(Fixup::IdDefault { table: (*table).to_owned() });
            } else {
                tracing::warn!(
                    table,
                    data_type = id.data_type,
                    "the id column has no default and is not a uuid: hattrick's inserts into this table will fail"
                );
            }
        }
    }

    for table in USER_SCOPED_LEDGERS {
        let Some(live_table) = live.tables.get(*table) else { continue };
        for index in &live_table.indexes {
            if index.unique && index.columns() == ["idempotency_key"] {
                fixups.push(Fixup::UserScopedKeys {
                    table: (*table).to_owned(),
                    old: index.constraint.clone().unwrap_or_else(|| index.name.clone()),
                    constraint: index.constraint.is_some(),
                });
            }
        }
    }

    for (retired, index) in RETIRED_INDEXES.iter().enumerate() {
        if live.tables.get(index.table).is_some_and(|t| t.indexes.iter().any(|i| i.name == index.name)) {
            fixups.push(Fixup::RetireIndex { retired });
        }
    }

    let missing: i64 = if live.tables.contains_key("hattrick_time_zones") {
        crate::query_scalar(
            "SELECT count(*) FROM pg_timezone_names p
             WHERE NOT EXISTS (SELECT 1 FROM hattrick_time_zones z WHERE z.name = p.name)",
        )
        .fetch_one(&mut *conn)
        .await?
    } else {
        crate::query_scalar("SELECT count(*) FROM pg_timezone_names").fetch_one(&mut *conn).await?
    };
    if missing > 0 {
        fixups.push(Fixup::TimeZoneNames { missing });
    }

    if first_adoption && live.tables.contains_key("scheduled_notifications") {
        let rows: i64 = crate::query_scalar("SELECT count(*) FROM scheduled_notifications WHERE status = 'sending'")
            .fetch_one(&mut *conn)
            .await?;
        if rows > 0 {
            fixups.push(Fixup::FailStuckCampaigns { rows });
        }
    }
    Ok(fixups)
}

/// Carries out one fix-up; each statement is a transaction of its own (a back-fill's batches hold their row locks
/// briefly).
pub async fn apply(pool: &crate::Pool, fixup: &Fixup) -> Result<()> {
    match fixup {
        Fixup::PushTokenMirror => {
            crate::query(
                "CREATE OR REPLACE FUNCTION hattrick_push_tokens_token_mirror() RETURNS trigger
                 LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.token IS NULL THEN NEW.token := NEW.fcm_token; END IF;
                     IF NEW.fcm_token IS NULL THEN NEW.fcm_token := NEW.token; END IF;
                     RETURN NEW;
                 END $$",
            )
            .execute(pool)
            .await?;
            crate::query(
                "CREATE OR REPLACE TRIGGER hattrick_push_tokens_token_mirror
                 BEFORE INSERT OR UPDATE ON customer_push_tokens
                 FOR EACH ROW EXECUTE FUNCTION hattrick_push_tokens_token_mirror()",
            )
            .execute(pool)
            .await?;
        }
        Fixup::PushTokenBackfill { .. } => loop {
            // Short batches: each UPDATE holds its row locks only briefly.
            let filled = crate::query(
                "UPDATE customer_push_tokens SET token = fcm_token
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM customer_push_tokens
                                         WHERE token IS NULL AND fcm_token IS NOT NULL LIMIT $1))",
            )
            .bind(BACKFILL_BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            if filled == 0 {
                break;
            }
        },
        Fixup::PushTokenNotNull { .. } => {
            let missing: i64 = crate::query_scalar("SELECT count(*) FROM customer_push_tokens WHERE token IS NULL")
                .fetch_one(pool)
                .await?;
            if missing > 0 {
                tracing::warn!(rows = missing, "customer_push_tokens.token stays nullable: rows have no token");
                return Ok(());
            }
            // A validated check lets SET NOT NULL skip its full-table scan under an exclusive lock.
            for sql in [
                "ALTER TABLE customer_push_tokens ADD CONSTRAINT hattrick_token_not_null CHECK (token IS NOT NULL) \
                 NOT VALID",
                "ALTER TABLE customer_push_tokens VALIDATE CONSTRAINT hattrick_token_not_null",
                "ALTER TABLE customer_push_tokens ALTER COLUMN token SET NOT NULL",
                "ALTER TABLE customer_push_tokens DROP CONSTRAINT hattrick_token_not_null",
            ] {
                crate::query(sql).execute(pool).await?;
            }
        }
        Fixup::JobLogLegacyMirror { columns } => {
            let assignments: String = JOB_LOG_LEGACY_COLUMNS
                .iter()
                .filter(|(legacy, _)| columns.iter().any(|c| c == legacy))
                .map(|(legacy, ours)| format!("NEW.{legacy} := NEW.{ours}; "))
                .collect();
            crate::query(AssertSqlSafe(format!(
                "CREATE OR REPLACE FUNCTION hattrick_job_logs_legacy_mirror() RETURNS trigger
                 LANGUAGE plpgsql AS $$ BEGIN {assignments}RETURN NEW; END $$"
            )))
            .execute(pool)
            .await?;
            crate::query(
                "CREATE OR REPLACE TRIGGER hattrick_job_logs_legacy_mirror
                 BEFORE INSERT OR UPDATE ON job_execution_logs
                 FOR EACH ROW EXECUTE FUNCTION hattrick_job_logs_legacy_mirror()",
            )
            .execute(pool)
            .await?;
        }
        Fixup::IdDefault { table } => {
            // A metadata-only change, under a short lock timeout like every other DDL of the migrator.
            let mut tx = pool.begin().await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET LOCAL lock_timeout = '{}'; ALTER TABLE {table} ALTER COLUMN id SET DEFAULT gen_random_uuid()",
                super::LOCK_TIMEOUT
            )))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Fixup::UserScopedKeys { .. } | Fixup::RetireIndex { .. } => {
            return Err(crate::Error::Migration(format!(
                "{fixup}: applied by the migrator (it runs DDL under lock_timeout and retries)"
            )));
        }
        Fixup::TimeZoneNames { .. } => {
            crate::query(
                "INSERT INTO hattrick_time_zones (name) SELECT name FROM pg_timezone_names ON CONFLICT DO NOTHING",
            )
            .execute(pool)
            .await?;
        }
        Fixup::FailStuckCampaigns { .. } => {
            crate::query(
                "UPDATE scheduled_notifications
                 SET status = 'failed', error = 'left in sending by the previous system; not re-sent by hattrick'
                 WHERE status = 'sending'",
            )
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}
