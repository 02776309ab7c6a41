//! Housekeeping (docs/jobs/dead-token-cleanup.md, docs/jobs/old-logs-cleanup.md, docs/ledger.md): `dead-token-cleanup`
//! and `old-logs-cleanup`.
//!
//! Every delete takes the route a plain `DELETE` of the same rows would (see [`purge`]): the table's pages in
//! physical order, or an index when few rows match; a statement (its own transaction) deletes about `batch` rows,
//! so a batch holds row locks on at most about `batch` rows for milliseconds. The money ledgers are never simply deleted: a user's rows older than the cut-off are
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
    /// At most this many bytes of WAL per second, on average, while a batch runs and rests (`None`: no cap). A
    /// batch's WAL is what the server wrote between the start and the end of its statement; a batch that wrote
    /// `w` bytes in `t` rests at least `w / rate - t`. WAL is what a delete costs the app: each `max_wal_size` or
    /// so of it forces a checkpoint, whose end stalls the app's commits, and the number of rows says little about
    /// it (the first change to a page after a checkpoint writes the whole page).
    pub wal_per_second: Option<f64>,
}

impl Default for Batching {
    fn default() -> Self {
        Self { batch: 2_000, vacuum: None, rest: 1.0, wal_per_second: Some(DEFAULT_WAL_PER_SECOND) }
    }
}

/// The default WAL cap of the housekeeping jobs, bytes per second (BENCHMARKS.md, "Resting by WAL").
pub const DEFAULT_WAL_PER_SECOND: f64 = 4.0 * 1024.0 * 1024.0;

/// What one batch did, for its rest: how long it took and the WAL it wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchCost {
    pub(crate) took: Duration,
    pub(crate) wal: i64,
}

impl Batching {
    /// How long to rest after a batch: the longer of [`Batching::rest`] times its time and what its WAL needs
    /// to stay under [`Batching::wal_per_second`].
    pub(crate) fn rest_for(&self, cost: BatchCost) -> Duration {
        let by_time = if self.rest > 0.0 { cost.took.mul_f64(self.rest.min(100.0)) } else { Duration::ZERO };
        let by_wal = match self.wal_per_second {
            Some(rate) if rate > 0.0 && cost.wal > 0 => {
                Duration::from_secs_f64(cost.wal as f64 / rate).saturating_sub(cost.took)
            }
            _ => Duration::ZERO,
        };
        by_time.max(by_wal)
    }

    /// The WAL one batch may write at once: an eighth of a second of [`Batching::wal_per_second`] (512 KiB at
    /// the default 4 MiB/s), `None` without a cap. The cap's rests keep the average down, but a batch's WAL arrives at
    /// once: several MiB in one statement fill the server's WAL buffers and the app's commits wait behind their
    /// write (BENCHMARKS.md, "Compaction in bursts of a MiB").
    pub(crate) fn wal_burst(&self) -> Option<f64> {
        self.wal_per_second.filter(|rate| *rate > 0.0).map(|rate| rate / 8.0)
    }

    /// How many units (users, for compaction) the next batch takes, at most `most`: as many as the last batch's
    /// WAL per unit says fit in [`Batching::wal_burst`], and `most` without a cap or before any WAL was seen.
    pub(crate) fn units_within_burst(&self, most: i64, last_units: i64, last_wal: i64) -> i64 {
        match self.wal_burst() {
            Some(burst) if last_units > 0 && last_wal > 0 => {
                let per_unit = last_wal as f64 / last_units as f64;
                ((burst / per_unit) as i64).clamp(1, most.max(1))
            }
            _ => most.max(1),
        }
    }

    /// Rests after a batch (see [`Batching::rest_for`]); a cancelled run stops resting at once. Returns the rest.
    pub(crate) async fn rest_after(&self, ctx: &JobContext, cost: BatchCost) -> Duration {
        let rest = self.rest_for(cost);
        if !rest.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = ctx.cancel.cancelled() => {}
            }
        }
        rest
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
    pub(crate) route: Route,
    pub(crate) deleted: i64,
    #[serde(flatten)]
    pub(crate) batches: Batches,
}

impl Walk {
    /// Counts a batch that started at `started`, deleted `rows` and wrote `wal` bytes of WAL, and rests after it.
    async fn batch(&mut self, ctx: &JobContext, batching: Batching, started: Instant, rows: i64, wal: i64) {
        self.deleted += rows;
        self.batches.done(ctx, batching, started, wal).await;
    }
}

/// A job's batches over one table: how many, how long, the WAL they wrote and the rests after them. Times are kept
/// whole and reported in milliseconds (`*_ms`), so a batch under a millisecond still counts in the sums.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Batches {
    pub(crate) batches: i64,
    #[serde(rename = "longest_batch_ms", serialize_with = "as_millis")]
    pub(crate) longest_batch: Duration,
    /// Time in the batches.
    #[serde(rename = "elapsed_ms", serialize_with = "as_millis")]
    pub(crate) elapsed: Duration,
    /// WAL written while the batches ran, bytes.
    pub(crate) wal_bytes: i64,
    /// Time spent resting after them.
    #[serde(rename = "rested_ms", serialize_with = "as_millis")]
    pub(crate) rested: Duration,
}

impl Batches {
    /// Counts a batch that started at `started` and wrote `wal` bytes of WAL, and rests after it.
    pub(crate) async fn done(&mut self, ctx: &JobContext, batching: Batching, started: Instant, wal: i64) {
        let took = started.elapsed();
        self.batches += 1;
        self.longest_batch = self.longest_batch.max(took);
        self.elapsed += took;
        self.wal_bytes = self.wal_bytes.saturating_add(wal);
        self.rested += batching.rest_after(ctx, BatchCost { took, wal }).await;
    }

    /// Adds `other`, later batches over the same table.
    fn add(&mut self, other: Batches) {
        self.batches += other.batches;
        self.longest_batch = self.longest_batch.max(other.longest_batch);
        self.elapsed += other.elapsed;
        self.wal_bytes = self.wal_bytes.saturating_add(other.wal_bytes);
        self.rested += other.rested;
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(millis(*d))
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a walk finds its rows: the way the planner would serve a plain `DELETE` of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Route {
    /// Through the table's pages in physical order (the planner would scan the table).
    #[default]
    Pages,
    /// Through an index on the rule's columns (the planner would use one: few rows match).
    Index,
    /// Through an index, and then, when more rows matched than the planner expected, the table's pages.
    IndexThenPages,
}

/// Deletes the rows of `rule` older than `cutoff` (counts them on a dry run), batch by batch.
///
/// The walk takes the route a plain `DELETE` of the same rows would take, asked of the planner before it starts:
/// - [`Route::Pages`]: through the table's pages in physical order, a range of pages per batch (a TID range scan):
///   each page is read once, in the order a plain `DELETE` would read it, and no index is walked (a walk of a
///   random uuid key would read the heap in random order). The first range holds about `batch` rows, from the
///   table's density; a range that deletes few of its rows is followed by a longer one (up to 64 times the first),
///   so a table where few rows are old is not walked in thousands of statements, and no statement deletes more
///   than `batch` rows (the next one starts where it stopped).
/// - [`Route::Index`]: when an index serves the condition (few rows match), each batch deletes up to `batch` of
///   the matching rows found through it, until a batch finds fewer; if far more match than the planner expected
///   (stale statistics), the page walk takes the rest ([`Route::IndexThenPages`]).
///
/// The planner is asked about the `DELETE` itself: for a `SELECT` that reads no column it may prefer an index-only
/// scan where the `DELETE` reads the table.
///
/// A batch commits without waiting for its WAL to reach the disk (`synchronous_commit = off`): a crash can only
/// undo the last batches' deletes, which the next run makes again. On the page route, rows written behind the walk
/// during the run (new rows, or old rows an update moved) are left to the next run.
pub(crate) async fn purge(
    ctx: &JobContext,
    rule: &Rule,
    cutoff: DateTime<Utc>,
    batching: Batching,
) -> Result<Walk, JobError> {
    let (mut walk, done) = match route(ctx, rule, cutoff).await? {
        Route::Index => purge_by_index(ctx, rule, cutoff, batching).await?,
        _ => (Walk::default(), false),
    };
    if !done {
        let by_pages = purge_pages(ctx, rule, cutoff, batching).await?;
        walk.route = if walk.batches.batches > 0 { Route::IndexThenPages } else { Route::Pages };
        walk.deleted += by_pages.deleted;
        walk.batches.add(by_pages.batches);
    }
    Ok(walk)
}

/// The route the planner takes for the rule's rows (see [`purge`]).
async fn route(ctx: &JobContext, rule: &Rule, cutoff: DateTime<Utc>) -> Result<Route, JobError> {
    let Rule { table, condition } = *rule;
    let plan: serde_json::Value =
        db::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) DELETE FROM {table} t WHERE {condition}")))
            .bind(cutoff)
            .fetch_one(&ctx.pool)
            .await?;
    fn scans_table(node: &serde_json::Value) -> bool {
        node["Node Type"] == "Seq Scan" || node["Plans"].as_array().is_some_and(|plans| plans.iter().any(scans_table))
    }
    Ok(if scans_table(&plan[0]["Plan"]) { Route::Pages } else { Route::Index })
}

/// [`Route::Pages`].
async fn purge_pages(
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
    let first_span = ((batching.batch as f64 / density.max(1.0)).floor() as i64).max(1);
    let longest_span = first_span.saturating_mul(64);
    let mut span = first_span;
    // Pages $2 up to $3: a TID range scan. A range of the first span holds about `batch` rows and is deleted
    // with its condition in one pass. A longer range (few rows matched before it) deletes at most `batch` rows
    // ($5; none on a dry run, which counts the whole range), taken in page order, the order a TID range scan
    // returns them in; when it reaches that many, the next batch starts on the page where it stopped.
    let pages_in_range = "t.ctid >= format('(%s,0)', $2::bigint)::tid AND t.ctid < format('(%s,0)', $3::bigint)::tid";
    // The batch's settings and the WAL position before it come from the one-row FROM item, read before the
    // output columns; the WAL it wrote is the last output column, read after the delete ran.
    let start = "FROM (SELECT set_config('synchronous_commit', 'off', true), pg_current_wal_insert_lsn() AS wal) AS s";
    let wal = "(pg_current_wal_insert_lsn() - s.wal)::bigint";
    let whole_range = format!(
        "WITH gone AS (DELETE FROM {table} t WHERE {pages_in_range} AND NOT $4 AND ({condition}) RETURNING 1),
              would AS (SELECT 1 FROM {table} t WHERE {pages_in_range} AND $4 AND ({condition}))
         SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM would), (SELECT count(*) FROM gone), NULL::bigint,
                {wal}
         {start}"
    );
    let up_to_a_batch = format!(
        "WITH picked AS MATERIALIZED (
             SELECT t.ctid FROM {table} t WHERE {pages_in_range} AND ({condition})
             LIMIT CASE WHEN $4 THEN NULL ELSE $5::bigint END),
         gone AS (
             DELETE FROM {table} t WHERE t.ctid = ANY(ARRAY(SELECT ctid FROM picked)) AND NOT $4 AND ({condition})
             RETURNING 1)
         SELECT (SELECT count(*) FROM picked), (SELECT count(*) FROM gone),
                (SELECT max((ctid::text::point)[0])::bigint FROM picked), {wal}
         {start}"
    );
    let mut walk = Walk::default();
    let mut from = 0;
    while from < pages {
        ctx.check_cancelled()?;
        let started = Instant::now();
        let mut tx = ctx.begin().await?;
        let long = span > first_span;
        let mut query =
            db::query_as(sqlx::AssertSqlSafe(if long { up_to_a_batch.as_str() } else { whole_range.as_str() }))
                .bind(cutoff)
                .bind(from)
                .bind(from + span)
                .bind(ctx.args.dry_run);
        if long {
            query = query.bind(batching.batch);
        }
        let (picked, gone, last_page, wal): (i64, i64, Option<i64>, i64) = query.fetch_one(&mut *tx).await?;
        tx.commit().await?;
        walk.batch(ctx, batching, started, if ctx.args.dry_run { picked } else { gone }, wal).await;
        let stopped_early = long && !ctx.args.dry_run && picked >= batching.batch;
        from = match last_page {
            // The rest of the page it stopped on is the next batch's; a batch whose rows all changed under it
            // (none deleted) moves on past them.
            Some(page) if stopped_early => page + i64::from(gone == 0),
            _ => from + span,
        };
        // About `batch` rows per statement: a range that found few is followed by a longer one, a range that
        // found more than a batch by a shorter one (as long as would have held a batch: the first span comes from
        // the table's average density, and old rows may sit packed in a part of it).
        span = if picked.saturating_mul(2) < batching.batch {
            span.saturating_mul(2).min(longest_span)
        } else if stopped_early {
            (span / 2).max(1)
        } else if picked > batching.batch.saturating_mul(2) {
            (span.saturating_mul(batching.batch) / picked).max(1)
        } else {
            span
        };
    }
    Ok(walk)
}

/// [`Route::Index`]: batches of up to `batch` matching rows found through the index, until one finds fewer, or, after
/// [`MOST_INDEX_BATCHES`] full ones, leaves the rest to the page walk (`false`: not done). A dry run counts them in
/// one statement.
async fn purge_by_index(
    ctx: &JobContext,
    rule: &Rule,
    cutoff: DateTime<Utc>,
    batching: Batching,
) -> Result<(Walk, bool), JobError> {
    let Rule { table, condition } = *rule;
    let mut walk = Walk { route: Route::Index, ..Walk::default() };
    if ctx.args.dry_run {
        let started = Instant::now();
        let rows: i64 =
            db::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} t WHERE {condition}")))
                .bind(cutoff)
                .fetch_one(&ctx.pool)
                .await?;
        walk.batch(ctx, batching, started, rows, 0).await;
        return Ok((walk, true));
    }
    // The condition is checked again on the row deleted: a row an update moved or changed meanwhile is left.
    let sql = format!(
        "WITH gone AS (
             DELETE FROM {table} t
             WHERE t.ctid = ANY(ARRAY(SELECT t.ctid FROM {table} t WHERE {condition} LIMIT $2)) AND ({condition})
             RETURNING 1)
         SELECT count(*), (pg_current_wal_insert_lsn() - $3::pg_lsn)::bigint FROM gone"
    );
    loop {
        ctx.check_cancelled()?;
        let started = Instant::now();
        let mut tx = ctx.begin().await?;
        // The index the planner chose for the whole set, also for each batch of it (a scan with a limit may look
        // cheaper to it, and would read the table from the start again for every batch).
        let wal_from: String = db::query_scalar(
            "SELECT pg_current_wal_insert_lsn()::text
             FROM (SELECT set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true)) s",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (rows, wal): (i64, i64) = db::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(cutoff)
            .bind(batching.batch)
            .bind(wal_from)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        walk.batch(ctx, batching, started, rows, wal).await;
        if rows < batching.batch {
            return Ok((walk, true));
        }
        if walk.batches.batches >= MOST_INDEX_BATCHES {
            // Far more rows than the planner expected: each batch would walk the index's dead entries from its
            // start again; the table's pages take the rest in one pass.
            return Ok((walk, false));
        }
    }
}

/// Full batches the index route takes before it leaves the rest to the page walk (see [`purge_by_index`]).
const MOST_INDEX_BATCHES: i64 = 16;

/// `ANALYZE`s (or `VACUUM (ANALYZE)`s) the tables a run changed (docs/jobs/old-logs-cleanup.md).
///
/// `ANALYZE` runs in the run's transaction (its statement timeout). `VACUUM` cannot run in a transaction: each is
/// one statement outside it ([`JobContext::outside_transaction`]), cancelled with the run's SQL, and past
/// `vacuum_timeout` cancelled and the run failed with the table named.
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
                ctx.outside_transaction(
                    &format!("VACUUM (ANALYZE) {table}"),
                    Some((timeout, "cleanup.vacuum_timeout")),
                )
                .await?;
            }
        }
        done.push((*table).to_owned());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(rest: f64, wal_per_second: Option<f64>, took_ms: u64, wal: i64) -> Duration {
        Batching { batch: 1, vacuum: None, rest, wal_per_second }
            .rest_for(BatchCost { took: Duration::from_millis(took_ms), wal })
    }

    #[test]
    fn a_batch_rests_the_longer_of_its_time_share_and_what_its_wal_needs() {
        let mib = 1024.0 * 1024.0;
        assert_eq!(rest(0.0, None, 10, 1 << 30), Duration::ZERO, "no rest, no cap");
        assert_eq!(rest(2.0, None, 10, 1 << 30), Duration::from_millis(20), "the time share alone");
        // 1 MiB at 4 MiB/s is 250 ms, of which the batch took 10.
        assert_eq!(rest(0.0, Some(4.0 * mib), 10, 1 << 20), Duration::from_millis(240));
        assert_eq!(rest(30.0, Some(4.0 * mib), 10, 1 << 20), Duration::from_millis(300), "the share is longer");
        assert_eq!(rest(0.0, Some(4.0 * mib), 300, 1 << 20), Duration::ZERO, "the batch alone was slow enough");
        assert_eq!(rest(1.0, Some(4.0 * mib), 10, 0), Duration::from_millis(10), "no WAL (a dry run)");
        assert_eq!(rest(200.0, None, 10, 0), Duration::from_millis(1000), "the share is capped at 100 times");
    }

    #[test]
    fn a_batch_takes_as_many_units_as_fit_in_the_wal_burst() {
        let mib = 1024.0 * 1024.0;
        let capped = |rate: Option<f64>| Batching { batch: 2_000, vacuum: None, rest: 1.0, wal_per_second: rate };
        // 8 MiB/s: bursts of 1 MiB. 400 users wrote 4,000 KiB, 10 KiB each: 102 fit.
        assert_eq!(capped(Some(8.0 * mib)).units_within_burst(400, 400, 4_000 << 10), 102);
        // Cheap units: never more than the most.
        assert_eq!(capped(Some(8.0 * mib)).units_within_burst(400, 400, 1 << 10), 400);
        // A unit above the burst still makes progress, one at a time.
        assert_eq!(capped(Some(8.0 * mib)).units_within_burst(400, 1, 64 << 20), 1);
        // No cap, no units or no WAL seen yet (a dry run): the most.
        assert_eq!(capped(None).units_within_burst(400, 400, 4 << 20), 400);
        assert_eq!(capped(Some(0.0)).units_within_burst(400, 400, 4 << 20), 400);
        assert_eq!(capped(Some(8.0 * mib)).units_within_burst(400, 0, 4 << 20), 400);
        assert_eq!(capped(Some(8.0 * mib)).units_within_burst(400, 400, 0), 400);
    }
}
