//! `badge-auto-unlock` (docs/jobs/badge-auto-unlock.md).
//!
//! One sweep:
//! 1. parses every active badge's condition; a malformed one is skipped and reported, the others proceed;
//! 2. computes each aggregate once for every live user, with the badges each user already owns, and evaluates
//!    every badge against every user in the same statement, keeping only the unlocks not owned yet;
//! 3. grants them in chunks of about [`UNLOCKS_PER_CHUNK`] unlocks (a user's never split), each chunk one
//!    transaction, one chunk at a time or several at once ([`Chunks`]): badge rows, XP and credit grants through
//!    the ledger, promotional VIP days, pushes, and last `total_unlocks` raised by the rows actually inserted.
//!
//! The unique (user, badge) row and the idempotency keys make every step safe to repeat: a failed chunk leaves
//! nothing behind, committed chunks are never paid again. Every run settles cascades (a badge's XP or credits
//! reaching another badge): the users it paid are evaluated again, round after round, so the next sweep finds
//! nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use engine::{Job, JobContext, JobDefaults, JobError, JobReport, MisfirePolicy, RunFuture, Trigger};
use serde_json::json;
use uuid::Uuid;

use domain::conditions::Condition;
use domain::{Budget, Spending, unlocks};

/// Unlocks per transaction by default (`jobs.badge-auto-unlock.unlocks_per_chunk`, docs/jobs/badge-auto-unlock.md):
/// a chunk holds its users' balance rows, which the app writes too, for the ledger's part of it, so its size is
/// counted in the work it does rather than in users.
pub const UNLOCKS_PER_CHUNK: u32 = 10_000;
/// The topic of the app's changes this job acts on in an event run (its name).
const EVENT_TOPIC: &str = BadgeAutoUnlock::DEFAULTS.name;
/// Changes one event run takes at most (the next run takes the rest).
const EVENT_BATCH: i64 = 50_000;

/// How the candidates read an event run's or a cascade round's subjects: each one's user through an index, so a
/// refreshed count of thousands makes their plan slower, not faster (`db::Reading::Few`).
const SUBJECTS: db::Reading = db::Reading::Few;

/// The `badge-auto-unlock` job.
#[derive(Debug, Clone)]
pub struct BadgeAutoUnlock {
    /// Per-run limits (docs/jobs/README.md).
    pub budget: Budget,
    /// Chunks granted at once, each in its own transaction on its own connection (`jobs.badge-auto-unlock.
    /// chunks_at_once`; 1, the default, grants them one after another). With any value, a budget holds for the whole
    /// run: the chunks under way share it.
    pub chunks_at_once: u32,
    /// Unlocks one chunk grants, rounded up to its last user's (`jobs.badge-auto-unlock.unlocks_per_chunk`;
    /// [`UNLOCKS_PER_CHUNK`] by default).
    pub unlocks_per_chunk: u32,
}

impl Default for BadgeAutoUnlock {
    fn default() -> Self {
        Self { budget: Budget::default(), chunks_at_once: 1, unlocks_per_chunk: UNLOCKS_PER_CHUNK }
    }
}

impl BadgeAutoUnlock {
    /// Its name and default schedule (docs/jobs/badge-auto-unlock.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("badge-auto-unlock", "*/5 * * * *", MisfirePolicy::RunOnce, 15);
}

#[derive(Debug)]
struct BadgeRow {
    id: Uuid,
    slug: String,
    unlock_condition: serde_json::Value,
}

/// The run's scratch tables: its candidates and the users its cascade rounds evaluate next.
const RUN_TABLES: &[&str] = &["hattrick_run_badge_candidates", "hattrick_run_cascade"];

/// Deletes the run's candidates and cascade rows.
async fn clear(pool: &db::Pool, run: Uuid) -> Result<(), sqlx::Error> {
    db::clear_run_rows(pool, run, RUN_TABLES).await
}

/// Evaluates every badge for the users in `scope` into the run's candidates (`candidates_sql`); returns how many.
async fn fill_candidates(ctx: &JobContext, sql: &str) -> Result<u64, JobError> {
    crate::fill_run_table(ctx, sql, "hattrick_run_badge_candidates").await
}

/// Which users a sweep evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every live user: each aggregate is computed once for everyone, grouped, and joined.
    Everyone,
    /// The users of an event run (`hattrick_run_subjects`): each aggregate is looked up per user through the
    /// tables' user indexes, so the work follows the number of changed users, not the population.
    Changed,
}

/// One per-user aggregate over a table: `columns` computed over the user's rows (`WHERE {filter}`), keyed by
/// `key`. Both scopes render the same definition, so an event run and a sweep cannot disagree on what counts.
struct Aggregate {
    alias: &'static str,
    columns: &'static str,
    table: &'static str,
    key: &'static str,
    filter: &'static str,
}

impl Aggregate {
    fn join(&self, scope: Scope) -> String {
        let Aggregate { alias, columns, table, key, filter } = self;
        match scope {
            Scope::Everyone => format!(
                "LEFT JOIN (SELECT {key} AS id, {columns} FROM {table} WHERE {filter} GROUP BY {key}) {alias}
                 ON {alias}.id = u.id"
            ),
            Scope::Changed => {
                format!(
                    "LEFT JOIN LATERAL (SELECT {columns} FROM {table} WHERE {key} = u.id AND {filter}) {alias} ON true"
                )
            }
        }
    }
}

const REFERRALS: Aggregate = Aggregate {
    alias: "r",
    columns: "count(*) AS n",
    table: "referrals",
    key: "referrer_user_id",
    filter: "tier >= 2",
};
const PREDICTIONS: Aggregate = Aggregate {
    alias: "p",
    columns: "count(*) FILTER (WHERE is_correct) AS correct, count(*) FILTER (WHERE is_correct IS NOT NULL) AS settled",
    table: "customer_predictions",
    key: "customer_user_id",
    filter: "true",
};
const COMMENTS: Aggregate = Aggregate {
    alias: "c",
    columns: "count(*) AS n, sum(coalesce(like_count, 0)) AS likes",
    table: "match_comments",
    key: "customer_user_id",
    filter: "coalesce(status, 'active') = 'active' AND deleted_at IS NULL",
};
/// Paid and started: promotional VIP and trials do not count (docs/jobs/README.md, docs/jobs/badge-auto-unlock.md).
const PAID_SUBSCRIPTIONS: Aggregate = Aggregate {
    alias: "s",
    columns: "count(*) AS n",
    table: "customer_subscriptions",
    key: "customer_user_id",
    filter: "status NOT IN ('trial', 'trialing') AND coalesce(platform, '') <> 'promo' AND started_at IS NOT NULL
             AND started_at <= $1 AND deleted_at IS NULL",
};
const OWNED: Aggregate = Aggregate {
    alias: "o",
    columns: "array_agg(badge_id) AS owned",
    table: "customer_badges",
    key: "customer_user_id",
    filter: "true",
};

/// The per-user stats of the users in `scope`, computing only the aggregates some badge needs (`$1` is now), as
/// a query of the columns [`candidates_sql`] reads.
fn stats_sql(kinds: &[&str], scope: Scope) -> String {
    let needs = |kind: &str| kinds.contains(&kind);
    let mut columns = Vec::new();
    let mut joins = Vec::new();
    if needs("referrals") {
        columns.push("coalesce(r.n, 0)");
        joins.push(REFERRALS.join(scope));
    } else {
        columns.push("0");
    }
    if needs("predictions_correct") || needs("predictions_accuracy") {
        columns.push("coalesce(p.correct, 0), coalesce(p.settled, 0)");
        joins.push(PREDICTIONS.join(scope));
    } else {
        columns.push("0, 0");
    }
    if needs("comments") || needs("comment_likes") {
        columns.push("coalesce(c.n, 0), coalesce(c.likes, 0)");
        joins.push(COMMENTS.join(scope));
    } else {
        columns.push("0, 0");
    }
    if needs("login_streak") || needs("xp_level") {
        // No customer_xp row reads as bronze with zero XP and streaks (docs/jobs/badge-auto-unlock.md).
        columns.push("coalesce(x.longest_streak_days, 0), coalesce(hattrick_level_rank(x.level), 1)");
        joins.push("LEFT JOIN customer_xp x ON x.customer_user_id = u.id".to_owned());
    } else {
        columns.push("0, 1");
    }
    if needs("credits_earned") {
        columns.push("coalesce(cr.lifetime_earned, 0)");
        joins.push("LEFT JOIN customer_credits cr ON cr.customer_user_id = u.id".to_owned());
    } else {
        columns.push("0");
    }
    if needs("subscription") {
        columns.push("coalesce(s.n, 0) > 0");
        joins.push(PAID_SUBSCRIPTIONS.join(scope));
    } else {
        columns.push("false");
    }
    columns.push("coalesce(o.owned, '{}')");
    joins.push(OWNED.join(scope));
    let users = match scope {
        Scope::Everyone => "customer_users u",
        Scope::Changed => "hattrick_run_subjects e JOIN customer_users u ON u.id = e.subject AND e.run_id = $2",
    };
    format!(
        "SELECT u.id, {}
         FROM {users}
         {}
         WHERE u.deleted_at IS NULL AND u.is_active IS NOT FALSE AND $1::timestamptz IS NOT NULL",
        columns.join(", "),
        joins.join("\n")
    )
}

/// Every badge against every user's stats, in one statement streaming the stats straight into the unlocks not
/// owned yet (no per-user table is written: a steady sweep costs the aggregates and little more). Each badge is
/// one test of a stats column against its threshold, written into the statement, so a user is checked against
/// every badge with a few comparisons and the owned-badge lookup runs only for the tests that pass. `$1` is now.
///
/// The two scopes differ in what pays off. Over everyone, users with nothing new (nearly all of them in a steady
/// sweep) are dropped by one chain of comparisons, and only the others build the array of their new badges. An
/// event run evaluates a handful of users, and the server plans its unnamed statement again on every run: there
/// planning costs several times the execution, so the stats are planned as a subquery of their own (`OFFSET 0`
/// keeps the badge tests out of their joins) and the chain, which saves nothing over a few users, is left out
/// (BENCHMARKS.md, "Planning an event run's candidates").
fn candidates_sql(kinds: &[&str], badges: &[(Uuid, String)], scope: Scope) -> String {
    let new = |id: &Uuid, test: &str| format!("({test} AND NOT ('{id}'::uuid = ANY (s.owned)))");
    let tests: Vec<String> =
        badges.iter().map(|(id, test)| format!("CASE WHEN {} THEN '{id}'::uuid END", new(id, test))).collect();
    let (fence, any_new) = match scope {
        Scope::Everyone => {
            let any_new: Vec<String> = badges.iter().map(|(id, test)| new(id, test)).collect();
            ("", format!("({}) AND", any_new.join("\n OR ")))
        }
        Scope::Changed => (" OFFSET 0", String::new()),
    };
    format!(
        "INSERT INTO hattrick_run_badge_candidates (run_id, customer_user_id, badge_id)
         SELECT $2::uuid, s.customer_user_id, c.badge_id
         FROM ({}{fence}) AS s (customer_user_id, referrals, correct, settled, comments, likes, longest_streak,
                                level_rank, lifetime_earned, paid_subscription, owned)
         CROSS JOIN LATERAL unnest(ARRAY[{}]) AS c(badge_id)
         WHERE {any_new} c.badge_id IS NOT NULL",
        stats_sql(kinds, scope),
        tests.join(",\n"),
    )
}

impl Job for BadgeAutoUnlock {
    fn incremental(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let run = ctx.run_id;
            let badges: Vec<BadgeRow> = sqlx::query_as!(
                BadgeRow,
                "SELECT id, slug, unlock_condition FROM badges
                 WHERE is_active IS NOT FALSE AND deleted_at IS NULL ORDER BY display_order, slug",
            )
            .fetch_all(&ctx.pool)
            .await?;
            let mut skipped = Vec::new();
            let (mut kinds, mut tests) = (Vec::new(), Vec::new());
            // A cascade round tests only the conditions a badge's rewards can meet (levels, credits earned): the
            // statistics the others read do not move when a badge is paid, and the first pass tested them all.
            let (mut cascade_kinds, mut cascade_tests) = (Vec::new(), Vec::new());
            for badge in &badges {
                match Condition::parse(&badge.unlock_condition) {
                    Ok(condition) => {
                        if let Some(test) = condition.sql_test() {
                            if condition.reachable_by_rewards() {
                                cascade_kinds.push(condition.kind());
                                cascade_tests.push((badge.id, test.clone()));
                            }
                            kinds.push(condition.kind());
                            tests.push((badge.id, test));
                        }
                    }
                    Err(error) => skipped.push(json!({ "badge": badge.slug, "error": error.0 })),
                }
            }
            clear(&ctx.pool, run).await?;
            crate::purge_dead_run_rows(ctx, RUN_TABLES).await?;
            // An event run looks only at the users whose inputs changed (docs/events.md).
            let mut scope = if ctx.trigger == Trigger::Event { Scope::Changed } else { Scope::Everyone };
            let changed = if scope == Scope::Changed {
                Some(engine::events::take(&ctx.pool, run, EVENT_TOPIC, EVENT_BATCH, SUBJECTS).await?)
            } else {
                None
            };
            // Each pass's time covers finding its unlocks and paying them.
            let mut pass_started = std::time::Instant::now();
            let candidates = if tests.is_empty() || changed == Some(0) {
                0
            } else {
                fill_candidates(ctx, &candidates_sql(&kinds, &tests, scope)).await?
            };
            if ctx.args.dry_run {
                let per_badge_candidates = sqlx::query!(
                    r#"SELECT b.slug, count(*) AS "users!"
                   FROM hattrick_run_badge_candidates c JOIN badges b ON b.id = c.badge_id
                   WHERE c.run_id = $1
                   GROUP BY b.slug, b.display_order ORDER BY b.display_order, b.slug"#,
                    run,
                )
                .fetch_all(&ctx.pool)
                .await?;
                clear(&ctx.pool, run).await?;
                if changed.is_some() {
                    engine::events::forget(&ctx.pool, run).await?;
                }
                return Ok(JobReport {
                    items: i64::try_from(candidates).unwrap_or(i64::MAX),
                    details: json!({
                        "dry_run": true,
                        "would_unlock": per_badge_candidates.into_iter().map(|row| (row.slug, json!(row.users))).collect::<serde_json::Map<_, _>>(),
                        "skipped_badges": skipped,
                    }),
                });
            }

            let chunks = Chunks {
                ctx,
                budget: Spending::new(self.budget),
                write: !ctx.args.silent,
                cascade: !cascade_tests.is_empty(),
                unlocks_per_chunk: i64::from(self.unlocks_per_chunk.max(1)),
                cursor: tokio::sync::Mutex::new(None),
                stop: AtomicBool::new(false),
                totals: Mutex::new(Totals::default()),
            };
            let at_once = self.chunks_at_once.max(1);
            let mut rounds = 0;
            // Per pass (the first, then each cascade round): users evaluated (None: everyone), unlocks, time.
            let mut passes: Vec<serde_json::Value> = Vec::new();
            let mut pass_subjects = changed.and_then(|users| u64::try_from(users).ok());
            loop {
                let pass_unlocks = chunks.grant_all(at_once).await?;
                passes.push(json!({
                    "users": pass_subjects,
                    "unlocks": pass_unlocks,
                    "ms": u64::try_from(pass_started.elapsed().as_millis()).unwrap_or(u64::MAX),
                }));
                // Cascades (a badge's XP or credits reaching another badge) settle in this run, so the next run
                // finds nothing: the users who just unlocked something are evaluated again, and only they.
                let subjects =
                    if rounds < MAX_CASCADE_ROUNDS && chunks.cascade { next_round(&ctx.pool, run).await? } else { 0 };
                if subjects == 0 {
                    break;
                }
                rounds += 1;
                pass_started = std::time::Instant::now();
                // A user's statistics read alone cost several times their share of a grouped pass over everyone: a
                // round with many subjects (after a first sweep, nearly every user) is a pass over everyone, which
                // finds the same unlocks.
                let live = users_estimate(&ctx.pool).await?;
                scope = if subjects.saturating_mul(EVERYONE_ABOVE) > u64::try_from(live).unwrap_or(0) {
                    pass_subjects = None;
                    Scope::Everyone
                } else {
                    pass_subjects = Some(subjects);
                    Scope::Changed
                };
                fill_candidates(ctx, &candidates_sql(&cascade_kinds, &cascade_tests, scope)).await?;
            }
            let Totals { unlocked, unlocks, grants, pushes, level_ups, vip, chunks } =
                chunks.totals.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            clear(&ctx.pool, run).await?;
            let users_evaluated = match changed {
                Some(users) => {
                    engine::events::finish(&ctx.pool, run).await?;
                    users
                }
                None => {
                    // The cascade rounds' subjects.
                    engine::events::forget(&ctx.pool, run).await?;
                    users_evaluated(&ctx.pool).await?
                }
            };
            Ok(JobReport {
                items: unlocks,
                details: json!({
                    "unlocked": unlocked,
                    "grants": grants,
                    "level_ups": level_ups,
                    "vip_extensions": vip,
                    "pushes": pushes,
                    "chunks": chunks,
                    "cascade_rounds": rounds,
                    "passes": passes,
                    "users_evaluated": users_evaluated,
                    "skipped_badges": skipped,
                }),
            })
        })
    }
}

/// What the chunks of a run wrote, summed over its passes.
#[derive(Debug, Default)]
struct Totals {
    /// Unlocks per badge slug.
    unlocked: serde_json::Map<String, serde_json::Value>,
    unlocks: i64,
    grants: i64,
    pushes: i64,
    level_ups: i64,
    vip: i64,
    chunks: i64,
}

/// Grants the run's candidates (`hattrick_run_badge_candidates`) in chunks of about `unlocks_per_chunk` of them,
/// each chunk one transaction, one or several at once.
///
/// Chunks are disjoint ranges of user ids, so two chunks never touch the same user's rows (badges, ledgers,
/// balances, subscriptions, pushes); the only rows they share are the badges' `total_unlocks` counters, which
/// [`unlocks::pay_unlocks`] raises last in a chunk, locking them in id order, so chunks granted at once wait
/// for each other only at their ends and never deadlock.
struct Chunks<'a> {
    ctx: &'a JobContext,
    /// The run's budget: each chunk counts what it wrote there and holds it until it commits, so chunks under way
    /// at once cannot together pass a limit.
    budget: Spending,
    /// False for a silent back-fill: rewards without pushes.
    write: bool,
    /// Whether some active badge reads what a badge pays (levels, credits earned): the users paid are then
    /// recorded as the next round's subjects.
    cascade: bool,
    /// A chunk ends with the user of its this-many-th candidate (all of that user's candidates included).
    unlocks_per_chunk: i64,
    /// The last user of the last chunk handed out (the nil uuid, which sorts before every real id, when a pass
    /// starts); None once the candidates are exhausted.
    cursor: tokio::sync::Mutex<Option<Uuid>>,
    /// Set when a chunk fails: the others finish the chunk they hold and take no new one.
    stop: AtomicBool,
    totals: Mutex<Totals>,
}

impl Chunks<'_> {
    /// Grants every candidate, `at_once` chunks at a time; returns the unlocks. On a failure the chunks already
    /// under way commit, no other starts, and the first error is returned.
    async fn grant_all(&self, at_once: u32) -> Result<i64, JobError> {
        *self.cursor.lock().await = Some(Uuid::nil());
        self.stop.store(false, Ordering::Relaxed);
        let results = futures_util::future::join_all((0..at_once).map(|_| async {
            let granted = self.grant_until_done().await;
            if granted.is_err() {
                self.stop.store(true, Ordering::Relaxed);
            }
            granted
        }))
        .await;
        results.into_iter().sum()
    }

    /// Takes chunks and grants them until none is left or the pass stops; returns the unlocks.
    async fn grant_until_done(&self) -> Result<i64, JobError> {
        let mut unlocks = 0;
        while let Some((from, to)) = self.next().await? {
            unlocks += self.grant(from, to).await?;
        }
        Ok(unlocks)
    }

    /// The next chunk, as the range (after, up to and including] of user ids; None when there is none or the
    /// pass is stopping.
    async fn next(&self) -> Result<Option<(Uuid, Uuid)>, JobError> {
        self.ctx.check_cancelled()?;
        let mut cursor = self.cursor.lock().await;
        let Some(after) = *cursor else { return Ok(None) };
        if self.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // The chunk's last user: the user of its `unlocks_per_chunk`-th candidate, or of the pass's last one, read
        // from the candidates' index in uuid order (a plain range condition, no "IS NULL OR", lets each chunk start
        // where the last ended in the index). A user's candidates all fall in one chunk, so chunks stay disjoint
        // ranges of users; their size follows the unlocks, however many badges a user unlocks at once.
        let boundary: Option<Uuid> = sqlx::query_scalar!(
            r#"SELECT coalesce(
                 (SELECT customer_user_id FROM hattrick_run_badge_candidates
                  WHERE run_id = $3 AND customer_user_id > $1 ORDER BY customer_user_id OFFSET $2::bigint - 1 LIMIT 1),
                 (SELECT customer_user_id FROM hattrick_run_badge_candidates
                  WHERE run_id = $3 AND customer_user_id > $1 ORDER BY customer_user_id DESC LIMIT 1)) AS boundary"#,
            after,
            self.unlocks_per_chunk,
            self.ctx.run_id,
        )
        .fetch_one(&self.ctx.pool)
        .await?;
        *cursor = boundary;
        Ok(boundary.map(|to| (after, to)))
    }

    /// Grants the candidates of the users in (`from`, `to`] in one transaction; returns the unlocks.
    async fn grant(&self, from: Uuid, to: Uuid) -> Result<i64, JobError> {
        let ctx = self.ctx;
        let mut tx = ctx.begin().await?;
        // The badge rows go in in (user, badge) order, the order of the candidates' index: another run granting
        // the same users at the same time (its chunks may be cut elsewhere) meets this one's rows in the same
        // order, so one waits for the other and they never deadlock.
        domain::scratch::prepare(&mut tx).await?;
        sqlx::query!(
            r#"WITH inserted AS (
                 INSERT INTO customer_badges (id, customer_user_id, badge_id, unlocked_at, metadata)
                 SELECT hattrick_uuid7(), c.customer_user_id, c.badge_id, $3, '{"source": "badge-auto-unlock"}'
                 FROM hattrick_run_badge_candidates c
                 WHERE c.run_id = $4 AND c.customer_user_id > $1 AND c.customer_user_id <= $2
                 ORDER BY c.customer_user_id, c.badge_id
                 ON CONFLICT (customer_user_id, badge_id) DO NOTHING
                 RETURNING customer_user_id, badge_id)
             INSERT INTO hattrick_unlocks SELECT customer_user_id, badge_id FROM inserted"#,
            from,
            to,
            ctx.now,
            ctx.run_id,
        )
        .execute(db::unnamed(&mut tx))
        .await?;
        let mut share = self.budget.batch();
        let paid = unlocks::pay_unlocks(&mut tx, ctx.now, self.write, &mut share).await?;
        // The users paid XP or credits, the only rewards another condition reads (a silent run pays them too,
        // without the pushes).
        if self.cascade {
            sqlx::query!(
                "INSERT INTO hattrick_run_cascade (run_id, subject)
                 SELECT DISTINCT $1::uuid, u.customer_user_id
                 FROM hattrick_unlocks u JOIN badges b ON b.id = u.badge_id
                 WHERE coalesce(b.reward_xp, 0) > 0 OR coalesce(b.reward_credits, 0) > 0
                 ON CONFLICT DO NOTHING",
                ctx.run_id,
            )
            .execute(db::unnamed(&mut tx))
            .await?;
        }
        let counts = sqlx::query!(
            r#"SELECT b.slug, count(*) AS "unlocks!"
               FROM hattrick_unlocks u JOIN badges b ON b.id = u.badge_id GROUP BY b.slug"#,
        )
        .fetch_all(db::unnamed(&mut tx))
        .await?;
        // Kept even when the commit reports an error: the server may have committed all the same (a connection
        // lost after COMMIT was sent), and the run fails either way.
        let committed = tx.commit().await;
        share.keep();
        committed?;
        let mut totals = self.totals();
        let mut unlocks = 0;
        for row in counts {
            unlocks += row.unlocks;
            let entry = totals.unlocked.entry(row.slug).or_insert(json!(0));
            *entry = json!(entry.as_i64().unwrap_or(0) + row.unlocks);
        }
        totals.unlocks += unlocks;
        totals.grants += paid.applied.credit_rows + paid.applied.xp_rows;
        totals.pushes += paid.pushes;
        totals.level_ups += paid.applied.level_ups;
        totals.vip += paid.vip_extensions;
        totals.chunks += 1;
        Ok(unlocks)
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Most rounds of cascades one run settles (each round evaluates the users the last one paid). Each round can
/// only be reached through a level or a credits threshold crossed in the round before, so few are ever needed
/// (three at a million users, BENCHMARKS.md); a run that stops at the limit leaves the rest to the next.
const MAX_CASCADE_ROUNDS: u32 = 8;

/// A cascade round evaluates everyone when its subjects are more than one live user in this many (measured at
/// 100,000 users: a grouped pass costs about 9 µs per user, statistics read per subject about 60 µs).
const EVERYONE_ABOVE: u64 = 8;

/// Makes the users paid in the last round (`hattrick_run_cascade`) the subjects of the next one, with no
/// candidates yet; returns how many there are.
async fn next_round(pool: &db::Pool, run: Uuid) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "WITH subjects AS (DELETE FROM hattrick_run_subjects WHERE run_id = $1 RETURNING 1)
         DELETE FROM hattrick_run_badge_candidates WHERE run_id = $1",
        run,
    )
    .execute(db::unnamed(&mut tx))
    .await?;
    let moved = sqlx::query!(
        "WITH moved AS (DELETE FROM hattrick_run_cascade WHERE run_id = $1 RETURNING subject)
         INSERT INTO hattrick_run_subjects (run_id, subject) SELECT $1, subject FROM moved",
        run,
    )
    .execute(db::unnamed(&mut tx))
    .await?
    .rows_affected();
    tx.commit().await?;
    engine::events::analyze_subjects(pool, moved, SUBJECTS).await?;
    Ok(moved)
}

/// About how many users there are, to choose a cascade round's scope: the planner's estimate, free to read (a
/// count of a million users took longer than an event run's own work), else the count.
async fn users_estimate(pool: &db::Pool) -> Result<i64, sqlx::Error> {
    let estimate: Option<i64> = db::query_scalar(
        "SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint END FROM pg_class
         WHERE oid = 'customer_users'::regclass",
    )
    .fetch_optional(pool)
    .await?
    .flatten();
    match estimate {
        Some(users) => Ok(users),
        None => users_evaluated(pool).await,
    }
}

/// The live users a sweep evaluates.
async fn users_evaluated(pool: &db::Pool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "users!" FROM customer_users WHERE deleted_at IS NULL AND is_active IS NOT FALSE"#
    )
    .fetch_one(pool)
    .await
}
