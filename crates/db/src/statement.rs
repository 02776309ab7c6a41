//! Statements that work through a transaction pooler.
//!
//! sqlx prepares a statement under a per-connection name (`sqlx_s_1`, `sqlx_s_2`, ...) and keeps it on the
//! server for the connection's life. Behind a pooler in transaction mode (PgBouncer, a managed provider's pooler)
//! the server connection changes between transactions, so a kept statement is missing on the next server, or
//! another client's statement of the same name is already there (`prepared statement "sqlx_s_1" already exists`).
//! Turning the cache off is not enough: sqlx still names and keeps every statement it prepares.
//!
//! Every statement hattrick sends is therefore built here, unnamed (`persistent(false)`): it is parsed and
//! described in the same transaction it runs in and never outlives it. The cost is one more round trip per
//! statement with parameters (measured in BENCHMARKS.md, "Statements through a pooler"); hattrick's work is
//! set-based, so a run sends few statements. Clippy's `disallowed-methods` (`clippy.toml`) keeps `sqlx::query*`
//! out of the rest of the workspace.
#![allow(clippy::disallowed_methods)]

use sqlx::postgres::PgArguments;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{FromRow, Postgres, SqlSafeStr};

/// `sqlx::query`, unnamed: safe behind a transaction pooler.
pub fn query<'q>(sql: impl SqlSafeStr) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql).persistent(false)
}

/// `sqlx::query_as`, unnamed: safe behind a transaction pooler.
pub fn query_as<'q, O>(sql: impl SqlSafeStr) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_as(sql).persistent(false)
}

/// `sqlx::query_scalar`, unnamed: safe behind a transaction pooler.
pub fn query_scalar<'q, O>(sql: impl SqlSafeStr) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_scalar(sql).persistent(false)
}

/// How long rows of a run stay in the `hattrick_run_*` scratch tables when the run died before deleting them.
pub const RUN_ROWS_KEPT: &str = "1 day";

/// Deletes the rows of `run` from `tables` (scratch tables keyed by `run_id`), in one statement. Each delete is an
/// index scan of the table's primary key, which leads with `run_id`: an event run clears its rows several times,
/// and a scan of the whole table each time would cost it the size of the largest run the table ever held (a first
/// sweep's candidates) and every dead row not yet vacuumed.
pub async fn clear_run_rows<'c, E>(executor: E, run: uuid::Uuid, tables: &[&str]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    delete_from_each(executor, tables, "run_id = $1", Some(run)).await
}

/// Deletes from `tables` the rows runs left there more than [`RUN_ROWS_KEPT`] ago (runs that died half-way), in one
/// statement that reads each table whole; scheduled and manual runs that write call it as they start, event runs
/// never do.
pub async fn purge_dead_run_rows<'c, E>(executor: E, tables: &[&str]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    delete_from_each(executor, tables, &format!("created_at < now() - interval '{RUN_ROWS_KEPT}'"), None).await
}

async fn delete_from_each<'c, E>(
    executor: E,
    tables: &[&str],
    condition: &str,
    run: Option<uuid::Uuid>,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let Some((last, earlier)) = tables.split_last() else { return Ok(()) };
    let ctes: Vec<String> = earlier
        .iter()
        .enumerate()
        .map(|(i, table)| format!("d{i} AS (DELETE FROM {table} WHERE {condition} RETURNING 1)"))
        .collect();
    let with = if ctes.is_empty() { String::new() } else { format!("WITH {} ", ctes.join(", ")) };
    let statement = query(sqlx::AssertSqlSafe(format!("{with}DELETE FROM {last} WHERE {condition}")));
    match run {
        Some(run) => statement.bind(run).execute(executor).await?,
        None => statement.execute(executor).await?,
    };
    Ok(())
}

/// Below this many rows, a scratch table's statistics do not change how the planner serves the statements that
/// read it by run id (index scans, nested loops), so a run that put fewer rows there, into a table the planner
/// already believes small, skips refreshing them ([`stale_statistics`]).
pub const SMALL_RUN_ROWS: f64 = 1000.0;

/// What the statements that read a run's rows of a scratch table want the planner to believe of them, which
/// decides when a run refreshes the table's statistics ([`stale_statistics`]). Measured in BENCHMARKS.md,
/// "Planning an event run's candidates".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Their number, once it is not small: statements that hash thousands of rows against another table where a
    /// lookup per row would be slower (the referral tiers' queue over an event run's subjects: 18x faster at 50,000
    /// subjects with refreshed statistics).
    Counted,
    /// That they are few, whatever their number: statements that read each row's user through an index either way
    /// (the badge candidates over an event run's subjects: with a refreshed count the planner hashes over every
    /// user or memoizes lookups that never repeat, 1.6x slower at 3,000 subjects and no faster at 50,000). Only an
    /// estimate of many that an earlier run left is refreshed, by a run whose own rows are few.
    Few,
}

/// Whether `table`'s statistics need refreshing after a run put `filled` rows there, for statements that read
/// them as `reading` says: not when the run put none (it has nothing there to read), nor when both the rows filled
/// and the rows the planner would estimate for the table now (its last analysed density times its current pages)
/// are below [`SMALL_RUN_ROWS`]; with [`Reading::Few`], not when the rows filled are many either. An `ANALYZE` or
/// `VACUUM` per event run, about ten a second under an app's steady traffic, cost more than the run's own
/// statements and, taking the table's `SHARE UPDATE EXCLUSIVE` lock, kept cancelling autovacuum's work on it
/// (BENCHMARKS.md, "Event runs at the cost of what changed").
pub async fn stale_statistics<'c, E>(
    executor: E,
    table: &str,
    filled: u64,
    reading: Reading,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    if filled == 0 {
        return Ok(false);
    }
    #[allow(clippy::cast_precision_loss)] // a row count; precision past 2^53 does not matter here
    if filled as f64 >= SMALL_RUN_ROWS {
        return Ok(reading == Reading::Counted);
    }
    // Never analysed (reltuples -1) or analysed with no pages: the planner guesses from the table's size.
    let estimate: Option<f64> = query_scalar(
        "SELECT CASE WHEN reltuples >= 0 AND relpages > 0
                     THEN reltuples::float8 / relpages
                          * (pg_relation_size(oid) / current_setting('block_size')::int) END
         FROM pg_class WHERE oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(executor)
    .await?;
    Ok(estimate.is_none_or(|rows| rows >= SMALL_RUN_ROWS))
}
