//! Housekeeping (docs/jobs/dead-token-cleanup.md, docs/jobs/old-logs-cleanup.md, docs/ledger.md): `dead-token-cleanup`
//! and `old-logs-cleanup`.
//!
//! Every delete walks its table's pages in physical order, a range of about `batch` rows per statement (its own
//! transaction): a batch holds row locks on at most about `batch` rows for a few milliseconds, and the walk reads
//! each page once, as a plain `DELETE` would. The money ledgers are never simply deleted: a user's rows older than the cut-off are
//! folded into carry-forward rows dated at the cut-off, in the same statement, so balance = sum of the ledger and
//! lifetime earned = sum of positive amounts hold at every commit; the folded rows' idempotency keys move to
//! `hattrick_compacted_user_keys`, so nothing can be paid twice later. The tables touched are `ANALYZE`d afterwards
//! (`VACUUM (ANALYZE)` when configured, under its own timeout).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::{JobContext, JobError};

/// How the housekeeping jobs work through a table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    /// Rows per delete statement (users per statement for ledger compaction is a fifth of it).
    pub batch: i64,
    /// `VACUUM (ANALYZE)` the touched tables, with this timeout, instead of a plain `ANALYZE`.
    pub vacuum: Option<Duration>,
    /// After each batch, rest this many times as long as the batch took (0: none), leaving the database's disk and
    /// cores to the app for that share of the time.
    pub rest: f64,
}

impl Default for Batching {
    fn default() -> Self {
        Self { batch: 2_000, vacuum: None, rest: 1.0 }
    }
}

impl Batching {
    /// Rests after a batch that took `took` (see [`Batching::rest`]).
    pub(crate) async fn rest_after(&self, took: Duration) {
        if self.rest > 0.0 {
            tokio::time::sleep(took.mul_f64(self.rest.min(100.0))).await;
        }
    }
}

/// One table's retention rule: rows matching `condition` (over `t`, with `$1` the cut-off) are deleted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) table: &'static str,
    pub(crate) condition: &'static str,
}

/// What one table's walk did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Walk {
    pub(crate) deleted: i64,
    pub(crate) batches: i64,
    pub(crate) longest_batch_ms: u64,
    pub(crate) elapsed_ms: u64,
}

impl Walk {
    pub(crate) fn batch(&mut self, started: Instant, rows: i64) {
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.deleted += rows;
        self.batches += 1;
        self.longest_batch_ms = self.longest_batch_ms.max(took);
        self.elapsed_ms = self.elapsed_ms.saturating_add(took);
    }
}

/// Deletes the rows of `rule` older than `cutoff` (counts them on a dry run), batch by batch.
///
/// The walk goes through the table's pages in physical order, a range of pages per batch (a TID range scan): each
/// page is read once, in the order a plain `DELETE` would read it, and no index is walked (a walk of a random
/// uuid key would read the heap in random order). A range holds about `batch` rows, from the table's density. A
/// batch commits without waiting for its WAL to reach the disk (`synchronous_commit = off`): a crash can only
/// undo the last batches' deletes, which the next run makes again. Rows written behind the walk during the run
/// (new rows, or old rows an update moved) are left to the next run.
pub(crate) async fn purge(
    ctx: &JobContext,
    rule: &Rule,
    cutoff: DateTime<Utc>,
    batching: Batching,
) -> Result<Walk, JobError> {
    let Rule { table, condition } = *rule;
    let (pages, density): (i64, f64) = db::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (pg_relation_size('{table}') / current_setting('block_size')::int)::bigint,
                coalesce((SELECT reltuples / relpages FROM pg_class
                          WHERE oid = '{table}'::regclass AND relpages > 0 AND reltuples > 0),
                         (SELECT count(*)::float8 / 8 FROM {table} WHERE ctid < '(8,0)'::tid))::float8"
    )))
    .fetch_one(&ctx.pool)
    .await?;
    let span = ((batching.batch as f64 / density.max(1.0)).floor() as i64).max(1);
    // Pages $2 up to $3: a TID range scan.
    let pages_in_range = "t.ctid >= format('(%s,0)', $2::bigint)::tid AND t.ctid < format('(%s,0)', $3::bigint)::tid";
    let sql = format!(
        "WITH gone AS (DELETE FROM {table} t WHERE {pages_in_range} AND NOT $4 AND ({condition}) RETURNING 1),
              would AS (SELECT 1 FROM {table} t WHERE {pages_in_range} AND $4 AND ({condition}))
         SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM would)"
    );
    let mut walk = Walk::default();
    let mut from = 0;
    while from < pages {
        ctx.check_cancelled()?;
        let started = Instant::now();
        let mut tx = ctx.begin().await?;
        db::query("SELECT set_config('synchronous_commit', 'off', true)").execute(&mut *tx).await?;
        let rows: i64 = db::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(cutoff)
            .bind(from)
            .bind(from + span)
            .bind(ctx.args.dry_run)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        walk.batch(started, rows);
        batching.rest_after(started.elapsed()).await;
        from += span;
    }
    Ok(walk)
}

/// `ANALYZE`s (or `VACUUM (ANALYZE)`s) the tables a run changed (docs/jobs/old-logs-cleanup.md).
///
/// `ANALYZE` runs in the run's transaction (its statement timeout). `VACUUM` cannot run in a transaction, and a
/// session `statement_timeout` would stay on a server connection a pooler hands to other clients, so each
/// `VACUUM` is one simple-protocol statement bounded here: past `vacuum_timeout` its backend is cancelled (found
/// by its statement text) and the run fails with the table named.
pub(crate) async fn analyze(ctx: &JobContext, tables: &[&str], batching: Batching) -> Result<Vec<String>, JobError> {
    let mut done = Vec::new();
    for table in tables {
        match batching.vacuum {
            None => {
                let mut tx = ctx.begin().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Some(timeout) => {
                let statement = format!("VACUUM (ANALYZE) {table}");
                let vacuum = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone())).execute(&ctx.pool);
                match tokio::time::timeout(timeout, vacuum).await {
                    Ok(result) => {
                        result?;
                    }
                    Err(_) => {
                        sqlx::query!(
                            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                             WHERE datname = current_database() AND query = $1 AND pid <> pg_backend_pid()",
                            &statement,
                        )
                        .fetch_all(&ctx.pool)
                        .await?;
                        return Err(JobError::Failed(format!(
                            "{statement} took longer than cleanup.vacuum_timeout ({} s) and was cancelled",
                            timeout.as_secs_f64()
                        )));
                    }
                }
            }
        }
        done.push((*table).to_owned());
    }
    Ok(done)
}
