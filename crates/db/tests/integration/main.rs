//! db against the real PostgreSQL: the throwaway cluster, the migrator, TLS.
//!
//! One test binary per crate: each module below is one area, and they link once.

mod cluster;
mod migrate;
mod run_rows;
mod tls;

/// The one number `sql` selects.
async fn count(pool: &db::Pool, sql: &str) -> i64 {
    db::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.expect(sql)
}
