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

/// Deletes the rows of `run` from `tables` (scratch tables keyed by `run_id`, with a `created_at`), and the rows any
/// run left there more than [`RUN_ROWS_KEPT`] ago (a run killed half-way), in one statement.
pub async fn clear_run_rows<'c, E>(executor: E, run: uuid::Uuid, tables: &[&str]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let Some((last, earlier)) = tables.split_last() else { return Ok(()) };
    let condition = format!("run_id = $1 OR created_at < now() - interval '{RUN_ROWS_KEPT}'");
    let ctes: Vec<String> = earlier
        .iter()
        .enumerate()
        .map(|(i, table)| format!("d{i} AS (DELETE FROM {table} WHERE {condition} RETURNING 1)"))
        .collect();
    let with = if ctes.is_empty() { String::new() } else { format!("WITH {} ", ctes.join(", ")) };
    query(sqlx::AssertSqlSafe(format!("{with}DELETE FROM {last} WHERE {condition}")))
        .bind(run)
        .execute(executor)
        .await?;
    Ok(())
}
