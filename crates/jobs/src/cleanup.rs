//! Housekeeping (docs/jobs/dead-token-cleanup.md, docs/jobs/old-logs-cleanup.md, docs/ledger.md): `dead-token-cleanup`
//! and `old-logs-cleanup`.
//!
//! Every delete walks its table's primary key in keyset batches, each batch one short statement (its own
//! transaction): a batch holds row locks on at most `batch` rows for a few milliseconds, and the walk never re-reads
//! what it already passed. The money ledgers are never simply deleted: a user's rows older than the cut-off are
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
    /// The primary key (one column) and its type, walked in order.
    pub(crate) key: &'static str,
    pub(crate) key_type: KeyType,
    pub(crate) condition: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Uuid,
    BigInt,
}

impl KeyType {
    fn sql(self) -> &'static str {
        match self {
            KeyType::Uuid => "uuid",
            KeyType::BigInt => "bigint",
        }
    }

    /// A value below every key.
    fn start(self) -> String {
        match self {
            KeyType::Uuid => uuid::Uuid::nil().to_string(),
            KeyType::BigInt => i64::MIN.to_string(),
        }
    }
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
pub(crate) async fn purge(
    ctx: &JobContext,
    rule: &Rule,
    cutoff: DateTime<Utc>,
    batching: Batching,
) -> Result<Walk, JobError> {
    let Rule { table, key, key_type, condition } = *rule;
    let key_type_sql = key_type.sql();
    let sql = format!(
        "WITH batch AS (SELECT {key} FROM {table} WHERE {key} > $2::{key_type_sql} ORDER BY {key} LIMIT $3),
              gone AS (DELETE FROM {table} t USING batch b WHERE t.{key} = b.{key} AND NOT $4 AND ({condition})
                       RETURNING 1),
              would AS (SELECT 1 FROM {table} t JOIN batch b ON t.{key} = b.{key} WHERE $4 AND ({condition}))
         SELECT (SELECT {key}::text FROM batch ORDER BY {key} DESC LIMIT 1),
                (SELECT count(*) FROM gone) + (SELECT count(*) FROM would)"
    );
    let mut cursor = key_type.start();
    let mut walk = Walk::default();
    loop {
        ctx.check_cancelled()?;
        let started = Instant::now();
        let mut tx = ctx.begin().await?;
        let (last, rows): (Option<String>, i64) = db::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(cutoff)
            .bind(&cursor)
            .bind(batching.batch)
            .bind(ctx.args.dry_run)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        walk.batch(started, rows);
        batching.rest_after(started.elapsed()).await;
        match last {
            Some(last) => cursor = last,
            None => return Ok(walk),
        }
    }
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
