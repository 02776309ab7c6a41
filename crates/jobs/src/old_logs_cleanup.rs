//! `old-logs-cleanup` (docs/jobs/old-logs-cleanup.md), with ledger compaction.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::{Job, JobContext, JobDefaults, JobError, JobReport, MisfirePolicy, RunFuture};
use serde_json::json;

use crate::cleanup::{Batches, Batching, Rule, analyze, purge};

/// How long `old-logs-cleanup` keeps each table's rows (docs/jobs/old-logs-cleanup.md).
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
    /// `job_execution_logs` rows of event runs (trigger `event`): ten a second under an app's steady traffic, so
    /// kept for less time than the rest (longer than `job_logs` changes nothing: its rule deletes them anyway).
    pub event_runs: Duration,
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
            event_runs: days(7),
            outbox: days(30),
        }
    }
}

/// `old-logs-cleanup` (docs/jobs/old-logs-cleanup.md).
#[derive(Debug, Clone, Default)]
pub struct OldLogsCleanup {
    /// What to keep.
    pub retention: Retention,
    /// Batch size and vacuum.
    pub batching: Batching,
}

impl OldLogsCleanup {
    /// Its name and default schedule (docs/jobs/old-logs-cleanup.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("old-logs-cleanup", "0 4 1 * *", MisfirePolicy::Latest, 240);
}

impl OldLogsCleanup {
    /// The delete rules with their retention, each with its key in `details.tables`.
    fn rules(&self) -> [(&'static str, Rule, Duration); 6] {
        let r = self.retention;
        let rule = |rule: Rule, keep| (rule.table, rule, keep);
        [
            rule(Rule { table: "customer_ad_views", condition: "t.completed_at < $1" }, r.ad_views),
            rule(Rule { table: "match_comment_likes", condition: "t.created_at < $1" }, r.likes),
            rule(
                Rule {
                    table: "scheduled_notifications",
                    condition: "t.status IN ('sent', 'failed', 'cancelled') AND coalesce(t.sent_at, t.scheduled_at) < $1",
                },
                r.campaigns,
            ),
            (
                "job_execution_logs (event runs)",
                Rule {
                    table: "job_execution_logs",
                    condition: "t.trigger = 'event' AND t.status <> 'running' AND t.started_at < $1",
                },
                r.event_runs,
            ),
            rule(
                Rule { table: "job_execution_logs", condition: "t.status <> 'running' AND t.started_at < $1" },
                r.job_logs,
            ),
            rule(
                Rule {
                    table: "push_outbox",
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
            for (key, rule, keep) in self.rules() {
                let walk = purge(ctx, &rule, ctx.now - keep, self.batching).await?;
                items += walk.deleted;
                if walk.deleted > 0 && !touched.contains(&rule.table) {
                    touched.push(rule.table);
                }
                tables.insert(key.to_owned(), serde_json::to_value(walk).unwrap_or_default());
            }
            // The local-time jobs' day records: a few rows per zone and day, one statement.
            let days_cutoff = (ctx.now - self.retention.job_logs).date_naive();
            let local_days = if dry {
                sqlx::query_scalar!(
                    r#"SELECT count(*) AS "days!" FROM hattrick_local_days WHERE local_date < $1"#,
                    days_cutoff
                )
                .fetch_one(&ctx.pool)
                .await?
            } else {
                let deleted = sqlx::query!("DELETE FROM hattrick_local_days WHERE local_date < $1", days_cutoff,)
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
        let amount = match self {
            Ledger::Credits => "amount",
            Ledger::Xp => "xp_amount",
        };
        // The credit ledger's rows carry the running balance: the earned row goes from 0 to what was earned, the
        // spent row on from there to the balance at the cut-off, so the chain of balances stays unbroken.
        let (balance_columns, balance_values) = match self {
            Ledger::Credits => (", balance_before, balance_after", ", r.before, r.after"),
            Ledger::Xp => ("", ""),
        };
        format!(
            "WITH batch AS (
                 SELECT DISTINCT customer_user_id FROM {table}
                 WHERE customer_user_id > $2::uuid AND created_at < $1 AND transaction_type <> 'retention_rollup'
                 ORDER BY customer_user_id LIMIT $3
             ),
             folded AS (
                 DELETE FROM {table} t USING batch b
                 WHERE t.customer_user_id = b.customer_user_id AND t.created_at < $1 AND NOT $5
                 RETURNING t.customer_user_id, t.{amount} AS amount, t.idempotency_key
             ),
             would AS (
                 SELECT t.customer_user_id FROM {table} t JOIN batch b ON t.customer_user_id = b.customer_user_id
                 WHERE $5 AND t.created_at < $1
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
                    (SELECT count(*) FROM keys),
                    (pg_current_wal_insert_lsn() - $7::pg_lsn)::bigint"
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
    #[serde(flatten)]
    batches: Batches,
}

/// Folds every user's ledger rows older than `cutoff` into carry-forward rows dated at the cut-off (docs/ledger.md).
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
    // A fifth of the batch in users (about five old rows each), fewer when that would write more WAL at once than
    // the cap's burst: a user's fold rewrites pages spread over the ledger (3.8 MiB per 400 users at 1M users).
    let most = (batching.batch / 5).max(1);
    let mut users_per_batch = most;
    let mut cursor = uuid::Uuid::nil().to_string();
    let mut done = Compaction::default();
    loop {
        ctx.check_cancelled()?;
        let started = Instant::now();
        let mut tx = ctx.begin().await?;
        // The users to fold are found in the ledger's (user, created_at) index, in user order from the cursor:
        // over the whole run one pass of the index that reads the table only for old rows. A scan of the table
        // per batch would make the run quadratic in its batches.
        let wal_from: String = db::query_scalar(
            "SELECT pg_current_wal_insert_lsn()::text
             FROM (SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)) s",
        )
        .fetch_one(&mut *tx)
        .await?;
        let (last, folded, users, carried, keys, wal): (Option<String>, i64, i64, i64, i64, i64) =
            db::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(cutoff)
                .bind(&cursor)
                .bind(users_per_batch)
                .bind(ctx.now)
                .bind(ctx.args.dry_run)
                .bind(ctx.run_id.to_string())
                .bind(wal_from)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        done.folded += folded;
        done.users += users;
        done.carried += carried;
        done.keys_kept += keys;
        done.batches.done(ctx, batching, started, wal).await;
        users_per_batch = batching.units_within_burst(most, users, wal);
        match last {
            Some(last) => cursor = last,
            None => return Ok(done),
        }
    }
}
