//! The run-keyed scratch tables' helpers: clearing a run's rows, purging dead runs' rows, and when their statistics
//! need refreshing.

use db::Pool;
use testkit::TestDb;
use uuid::Uuid;

use crate::count;

async fn execute(pool: &Pool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.expect(sql);
}

/// The runs that have rows in `table`, in order.
async fn runs_in(pool: &Pool, table: &str) -> Vec<Uuid> {
    db::query_scalar(sqlx::AssertSqlSafe(format!("SELECT DISTINCT run_id FROM {table} ORDER BY run_id")))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_run_clears_its_own_rows_and_only_a_purge_takes_a_dead_runs() {
    let db = TestDb::new().await;
    let pool = db.pool();
    let (run, other, dead) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (id, age) in [(run, "0"), (other, "1 hour"), (dead, "2 days")] {
        for table in ["hattrick_run_subjects", "hattrick_run_cascade"] {
            db::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (run_id, subject, created_at)
                 SELECT $1, gen_random_uuid(), now() - $2::interval FROM generate_series(1, 3)"
            )))
            .bind(id)
            .bind(age)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let tables = ["hattrick_run_subjects", "hattrick_run_cascade"];
    db::clear_run_rows(pool, run, &tables).await.unwrap();
    let mut expected = vec![other, dead];
    expected.sort();
    for table in tables {
        assert_eq!(runs_in(pool, table).await, expected, "{table}: the run's rows are gone, nobody else's");
    }
    db::purge_dead_run_rows(pool, &tables).await.unwrap();
    for table in tables {
        assert_eq!(
            runs_in(pool, table).await,
            [other],
            "{table}: rows older than {} are purged, younger ones kept",
            db::RUN_ROWS_KEPT
        );
    }
}

#[tokio::test]
async fn statistics_are_stale_when_the_rows_filled_or_the_planners_estimate_are_not_small() {
    let db = TestDb::new().await;
    let pool = db.pool();
    execute(pool, "CREATE TABLE scratch (run_id uuid NOT NULL, n int NOT NULL)").await;
    assert!(stale(pool, 1).await.unwrap(), "never analysed: the planner guesses");
    assert!(!stale(pool, 0).await.unwrap(), "a run that put no rows there reads none");

    execute(pool, "INSERT INTO scratch SELECT gen_random_uuid(), n FROM generate_series(1, 20) n; ANALYZE scratch")
        .await;
    assert!(!stale(pool, 20).await.unwrap(), "a few rows in a small table");
    assert!(stale(pool, 1000).await.unwrap(), "{} rows filled", db::SMALL_RUN_ROWS);
    assert!(!few(pool, 1000).await.unwrap(), "many rows, read as few: the small table's statistics serve them best");

    // A large run's statistics make the planner expect many rows: the next small run refreshes them once.
    execute(pool, "INSERT INTO scratch SELECT gen_random_uuid(), n FROM generate_series(1, 5000) n; ANALYZE scratch")
        .await;
    assert!(stale(pool, 3).await.unwrap(), "the planner still expects 5,020 rows");
    assert!(!stale(pool, 0).await.unwrap(), "but not for a run with no rows there");
    assert!(few(pool, 3).await.unwrap(), "read as few: the estimate of many is refreshed all the same");
    assert!(!few(pool, 5000).await.unwrap(), "but not by a run whose own rows are many");
    execute(pool, "DELETE FROM scratch WHERE n > 3; ANALYZE scratch").await;
    assert_eq!(count(pool, "SELECT count(*) FROM scratch").await, 6);
    assert!(!stale(pool, 3).await.unwrap(), "refreshed: small again");
    assert!(!few(pool, 3).await.unwrap(), "refreshed: small again, read as few");

    // The planner scales the analysed density by the table's pages now: rows added since the last analysis count.
    execute(pool, "TRUNCATE scratch; INSERT INTO scratch SELECT gen_random_uuid(), n FROM generate_series(1, 600) n")
        .await;
    execute(pool, "ANALYZE scratch").await;
    assert!(!stale(pool, 3).await.unwrap(), "600 rows analysed");
    execute(pool, "INSERT INTO scratch SELECT gen_random_uuid(), n FROM generate_series(1, 600) n").await;
    assert!(stale(pool, 3).await.unwrap(), "twice the pages: about 1,200 rows expected");
}

/// `db::stale_statistics` of the test's `scratch` table for statements that count its rows.
async fn stale(pool: &Pool, filled: u64) -> Result<bool, sqlx::Error> {
    db::stale_statistics(pool, "scratch", filled, db::Reading::Counted).await
}

/// `db::stale_statistics` of the test's `scratch` table for statements that read its rows as few.
async fn few(pool: &Pool, filled: u64) -> Result<bool, sqlx::Error> {
    db::stale_statistics(pool, "scratch", filled, db::Reading::Few).await
}
