//! Housekeeping (SPEC 3.10, 3.11, 10.14, 10.25): `dead-token-cleanup` and `old-logs-cleanup`.
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
use engine::{Job, JobContext, JobError, JobReport, RunFuture};
use serde_json::json;

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
    async fn rest_after(&self, took: Duration) {
        if self.rest > 0.0 {
            tokio::time::sleep(took.mul_f64(self.rest.min(100.0))).await;
        }
    }
}

/// One table's retention rule: rows matching `condition` (over `t`, with `$1` the cut-off) are deleted.
#[derive(Debug, Clone, Copy)]
struct Rule {
    table: &'static str,
    /// The primary key (one column) and its type, walked in order.
    key: &'static str,
    key_type: KeyType,
    condition: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
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
struct Walk {
    deleted: i64,
    batches: i64,
    longest_batch_ms: u64,
    elapsed_ms: u64,
}

impl Walk {
    fn batch(&mut self, started: Instant, rows: i64) {
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.deleted += rows;
        self.batches += 1;
        self.longest_batch_ms = self.longest_batch_ms.max(took);
        self.elapsed_ms = self.elapsed_ms.saturating_add(took);
    }
}

/// Deletes the rows of `rule` older than `cutoff` (counts them on a dry run), batch by batch.
async fn purge(ctx: &JobContext, rule: &Rule, cutoff: DateTime<Utc>, batching: Batching) -> Result<Walk, JobError> {
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

/// `ANALYZE`s (or `VACUUM (ANALYZE)`s) the tables a run changed (SPEC 10.25).
///
/// `ANALYZE` runs in the run's transaction (its statement timeout). `VACUUM` cannot run in a transaction, and a
/// session `statement_timeout` would stay on a server connection a pooler hands to other clients, so each
/// `VACUUM` is one simple-protocol statement bounded here: past `vacuum_timeout` its backend is cancelled (found
/// by its statement text) and the run fails with the table named.
async fn analyze(ctx: &JobContext, tables: &[&str], batching: Batching) -> Result<Vec<String>, JobError> {
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
                        db::query(
                            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                             WHERE datname = current_database() AND query = $1 AND pid <> pg_backend_pid()",
                        )
                        .bind(&statement)
                        .execute(&ctx.pool)
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

/// `dead-token-cleanup` (SPEC 3.10): deletes device tokens that are inactive or not updated for `max_age`.
#[derive(Debug, Clone)]
pub struct DeadTokenCleanup {
    /// A token not updated for this long is dead.
    pub max_age: Duration,
    /// Batch size and vacuum.
    pub batching: Batching,
}

impl Default for DeadTokenCleanup {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(90 * 86_400), batching: Batching::default() }
    }
}

const DEAD_TOKENS: Rule = Rule {
    table: "customer_push_tokens",
    key: "id",
    key_type: KeyType::Uuid,
    condition: "t.is_active IS FALSE OR coalesce(t.updated_at, t.created_at) < $1",
};

impl Job for DeadTokenCleanup {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let cutoff = ctx.now - self.max_age;
            let walk = purge(ctx, &DEAD_TOKENS, cutoff, self.batching).await?;
            let analyzed = if walk.deleted > 0 && !ctx.args.dry_run {
                analyze(ctx, &[DEAD_TOKENS.table], self.batching).await?
            } else {
                Vec::new()
            };
            let (remaining, active): (i64, i64) = db::query_as(
                "SELECT count(*), count(*) FILTER (WHERE is_active IS NOT FALSE) FROM customer_push_tokens",
            )
            .fetch_one(&ctx.pool)
            .await?;
            Ok(JobReport {
                items: walk.deleted,
                details: json!({
                    "deleted": walk.deleted,
                    "remaining": remaining,
                    "active": active,
                    "batches": walk.batches,
                    "longest_batch_ms": walk.longest_batch_ms,
                    "cutoff": cutoff,
                    "analyzed": analyzed,
                    "dry_run": ctx.args.dry_run,
                }),
            })
        })
    }
}

/// How long `old-logs-cleanup` keeps each table's rows (SPEC 3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// XP and credit ledgers (compacted, never lost).
    pub ledgers: Duration,
    /// `customer_ad_views`, by `completed_at`.
    pub ad_views: Duration,
    /// `match_comment_likes`.
    pub likes: Duration,
    /// Finished campaigns (`scheduled_notifications` sent, failed or cancelled).
    pub campaigns: Duration,
    /// `job_execution_logs` (and the local-time jobs' day records).
    pub job_logs: Duration,
    /// `push_outbox` rows in a final state.
    pub outbox: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |n: u64| Duration::from_secs(n * 86_400);
        Self {
            ledgers: days(365),
            ad_views: days(180),
            likes: days(365),
            campaigns: days(90),
            job_logs: days(90),
            outbox: days(30),
        }
    }
}

/// `old-logs-cleanup` (SPEC 3.11).
#[derive(Debug, Clone, Default)]
pub struct OldLogsCleanup {
    /// What to keep.
    pub retention: Retention,
    /// Batch size and vacuum.
    pub batching: Batching,
}

impl OldLogsCleanup {
    /// The delete rules with their retention.
    fn rules(&self) -> [(Rule, Duration); 5] {
        let r = self.retention;
        let uuid_rule = |table, condition| Rule { table, key: "id", key_type: KeyType::Uuid, condition };
        [
            (uuid_rule("customer_ad_views", "t.completed_at < $1"), r.ad_views),
            (uuid_rule("match_comment_likes", "t.created_at < $1"), r.likes),
            (
                uuid_rule(
                    "scheduled_notifications",
                    "t.status IN ('sent', 'failed', 'cancelled') AND coalesce(t.sent_at, t.scheduled_at) < $1",
                ),
                r.campaigns,
            ),
            (uuid_rule("job_execution_logs", "t.status <> 'running' AND t.started_at < $1"), r.job_logs),
            (
                Rule {
                    table: "push_outbox",
                    key: "id",
                    key_type: KeyType::BigInt,
                    condition: "t.status IN ('sent', 'failed', 'no_tokens', 'opted_out', 'cancelled') \
                                AND t.created_at < $1",
                },
                r.outbox,
            ),
        ]
    }
}

impl Job for OldLogsCleanup {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let dry = ctx.args.dry_run;
            let mut tables = serde_json::Map::new();
            let mut touched = Vec::new();
            let mut items = 0;
            for ledger in [Ledger::Credits, Ledger::Xp] {
                let cutoff = ctx.now - self.retention.ledgers;
                let compaction = compact(ctx, ledger, cutoff, self.batching).await?;
                items += compaction.folded;
                if compaction.folded > 0 {
                    touched.push(ledger.table());
                }
                tables.insert(ledger.table().to_owned(), serde_json::to_value(compaction).unwrap_or_default());
            }
            for (rule, keep) in self.rules() {
                let walk = purge(ctx, &rule, ctx.now - keep, self.batching).await?;
                items += walk.deleted;
                if walk.deleted > 0 {
                    touched.push(rule.table);
                }
                tables.insert(rule.table.to_owned(), serde_json::to_value(walk).unwrap_or_default());
            }
            // The local-time jobs' day records: a few rows per zone and day, one statement.
            let days_cutoff = (ctx.now - self.retention.job_logs).date_naive();
            let local_days = if dry {
                db::query_scalar("SELECT count(*) FROM hattrick_local_days WHERE local_date < $1")
                    .bind(days_cutoff)
                    .fetch_one(&ctx.pool)
                    .await?
            } else {
                let deleted = db::query("DELETE FROM hattrick_local_days WHERE local_date < $1")
                    .bind(days_cutoff)
                    .execute(&ctx.pool)
                    .await?
                    .rows_affected();
                i64::try_from(deleted).unwrap_or(i64::MAX)
            };
            items += local_days;
            tables.insert("hattrick_local_days".to_owned(), json!({ "deleted": local_days }));
            let analyzed = if dry { Vec::new() } else { analyze(ctx, &touched, self.batching).await? };
            Ok(JobReport { items, details: json!({ "tables": tables, "analyzed": analyzed, "dry_run": dry }) })
        })
    }
}

/// The two ledgers compaction folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ledger {
    Credits,
    Xp,
}

impl Ledger {
    fn table(self) -> &'static str {
        match self {
            Ledger::Credits => "customer_credit_transactions",
            Ledger::Xp => "customer_xp_transactions",
        }
    }

    /// The name stored in `hattrick_compacted_user_keys.ledger` and used in carry-forward keys.
    fn name(self) -> &'static str {
        match self {
            Ledger::Credits => "credits",
            Ledger::Xp => "xp",
        }
    }

    /// The statement folding one batch of users' rows older than `$1` (see [`compact`] for the parameters).
    fn fold_sql(self) -> String {
        let (table, name) = (self.table(), self.name());
        let (balances, amount) = match self {
            Ledger::Credits => ("customer_credits", "amount"),
            Ledger::Xp => ("customer_xp", "xp_amount"),
        };
        // The credit ledger's rows carry the running balance: the earned row goes from 0 to what was earned, the
        // spent row on from there to the balance at the cut-off, so the chain of balances stays unbroken.
        let (balance_columns, balance_values) = match self {
            Ledger::Credits => (", balance_before, balance_after", ", r.before, r.after"),
            Ledger::Xp => ("", ""),
        };
        format!(
            "WITH batch AS (
                 SELECT customer_user_id FROM {balances} WHERE customer_user_id > $2::uuid
                 ORDER BY customer_user_id LIMIT $3
             ),
             folded AS (
                 DELETE FROM {table} t USING batch b
                 WHERE t.customer_user_id = b.customer_user_id AND t.created_at < $1 AND NOT $5
                   AND EXISTS (SELECT 1 FROM {table} x
                               WHERE x.customer_user_id = b.customer_user_id AND x.created_at < $1
                                 AND x.transaction_type <> 'retention_rollup')
                 RETURNING t.customer_user_id, t.{amount} AS amount, t.idempotency_key
             ),
             would AS (
                 SELECT t.customer_user_id FROM {table} t JOIN batch b ON t.customer_user_id = b.customer_user_id
                 WHERE $5 AND t.created_at < $1
                   AND EXISTS (SELECT 1 FROM {table} x
                               WHERE x.customer_user_id = b.customer_user_id AND x.created_at < $1
                                 AND x.transaction_type <> 'retention_rollup')
             ),
             keys AS (
                 INSERT INTO hattrick_compacted_user_keys (customer_user_id, ledger, idempotency_key, compacted_at)
                 SELECT customer_user_id, '{name}', idempotency_key, $4 FROM folded WHERE idempotency_key IS NOT NULL
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             ),
             sums AS (
                 SELECT customer_user_id, count(*) AS n,
                        coalesce(sum(amount) FILTER (WHERE amount > 0), 0)::int AS earned,
                        coalesce(sum(amount) FILTER (WHERE amount < 0), 0)::int AS spent
                 FROM folded GROUP BY customer_user_id
             ),
             carried AS (
                 INSERT INTO {table} (id, customer_user_id, {amount}, transaction_type, description{balance_columns},
                                      metadata, idempotency_key, created_at)
                 SELECT hattrick_uuid7($1), s.customer_user_id, r.amount, 'retention_rollup', r.description
                        {balance_values},
                        jsonb_build_object('rollup', r.kind, 'rows', s.n, 'through', $1),
                        'rollup:{name}:' || s.customer_user_id || ':' || $6::text || ':' || r.kind, $1
                 FROM sums s
                 CROSS JOIN LATERAL (VALUES
                     ('earned', s.earned, 0, s.earned, 'Carried forward: earned before the retention cut-off'),
                     ('spent', s.spent, s.earned, s.earned + s.spent, 'Carried forward: spent before the retention cut-off')
                 ) r(kind, amount, before, after, description)
                 WHERE r.amount <> 0
                 RETURNING 1
             )
             SELECT (SELECT customer_user_id::text FROM batch ORDER BY customer_user_id DESC LIMIT 1),
                    (SELECT count(*) FROM folded) + (SELECT count(*) FROM would),
                    (SELECT count(DISTINCT customer_user_id) FROM folded)
                        + (SELECT count(DISTINCT customer_user_id) FROM would),
                    (SELECT count(*) FROM carried),
                    (SELECT count(*) FROM keys)"
        )
    }
}

/// What compacting one ledger did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Compaction {
    /// Old rows folded away.
    folded: i64,
    /// Users whose rows were folded.
    users: i64,
    /// Carry-forward rows written.
    carried: i64,
    /// Idempotency keys kept.
    keys_kept: i64,
    batches: i64,
    longest_batch_ms: u64,
    elapsed_ms: u64,
}

/// Folds every user's ledger rows older than `cutoff` into carry-forward rows dated at the cut-off (SPEC 10.14).
/// A user whose only old rows are carry-forward rows of an earlier compaction is left alone: refolding them would
/// rewrite two rows per user every month for nothing.
/// Balances are not touched: the rows a statement deletes and the rows it inserts have the same sum, the same sum
/// of positive amounts, and commit together. Carry-forward keys name the run, so a second compaction at the same
/// cut-off (which finds nothing older) never collides with the first.
async fn compact(
    ctx: &JobContext,
    ledger: Ledger,
    cutoff: DateTime<Utc>,
    batching: Batching,
) -> Result<Compaction, JobError> {
    let sql = ledger.fold_sql();
    let users_per_batch = (batching.batch / 5).max(1);
    let mut cursor = uuid::Uuid::nil().to_string();
    let mut done = Compaction::default();
    loop {
        ctx.check_cancelled()?;
        let started = Instant::now();
        let mut tx = ctx.begin().await?;
        let (last, folded, users, carried, keys): (Option<String>, i64, i64, i64, i64) =
            db::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(cutoff)
                .bind(&cursor)
                .bind(users_per_batch)
                .bind(ctx.now)
                .bind(ctx.args.dry_run)
                .bind(ctx.run_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        done.folded += folded;
        done.users += users;
        done.carried += carried;
        done.keys_kept += keys;
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        done.batches += 1;
        done.longest_batch_ms = done.longest_batch_ms.max(took);
        done.elapsed_ms = done.elapsed_ms.saturating_add(took);
        batching.rest_after(started.elapsed()).await;
        match last {
            Some(last) => cursor = last,
            None => return Ok(done),
        }
    }
}
