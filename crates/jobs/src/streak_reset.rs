//! `streak-reset` (docs/jobs/streak-break-warnings.md, docs/jobs/streak-reset.md): a streak whose last activity is
//! before yesterday (in the user's day) is broken; its `current_streak_days` becomes 0 so badges, segments and warnings
//! never act on a dead streak. `longest_streak_days` is never lowered.

use engine::{Job, JobContext, JobDefaults, JobReport, MisfirePolicy, RunFuture};

use domain::DayZones;

/// Users per statement: each batch is its own short transaction.
const BATCH: i64 = 10_000;

/// The `streak-reset` job.
#[derive(Debug, Clone)]
pub struct StreakReset {
    /// Where users' days are computed.
    pub zones: DayZones,
}

impl StreakReset {
    /// Its name and default schedule (docs/jobs/streak-reset.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("streak-reset", "1 0 * * *", MisfirePolicy::Latest, 15);
}

impl Job for StreakReset {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let zone = self.zones.user_day_zone_sql("z.name");
            // Keyset batches over the user index: each batch is one short statement, and a re-run finds nothing.
            // The batch's rows are read once, by the index, and each live streak's user is looked up by primary
            // key (LIMIT keeps the subquery a parameterised index scan), and the broken ones are updated by their
            // keys as an array (an index scan whatever the estimate): joined as sets, the planner hashed the whole
            // users table for every batch, a million rows read per 10,000 (BENCHMARKS.md "The curves").
            let update = format!(
                "WITH batch AS (
                     SELECT x.id, x.customer_user_id, x.current_streak_days, x.last_activity_date FROM customer_xp x
                     WHERE x.customer_user_id > $2::uuid
                     ORDER BY x.customer_user_id LIMIT $3
                 ),
                 broken AS (
                     SELECT b.id FROM batch b
                     CROSS JOIN LATERAL (SELECT u.timezone FROM customer_users u WHERE u.id = b.customer_user_id
                                         LIMIT 1) u
                     LEFT JOIN hattrick_time_zones z ON z.name = u.timezone
                     WHERE b.current_streak_days > 0
                       AND (b.last_activity_date IS NULL
                            OR b.last_activity_date < ($1::timestamptz AT TIME ZONE {zone})::date - 1)
                 ),
                 reset AS (
                     UPDATE customer_xp x SET current_streak_days = 0, updated_at = $1
                     WHERE x.id = ANY (ARRAY(SELECT id FROM broken)) AND NOT $4
                     RETURNING x.id
                 )
                 SELECT (SELECT customer_user_id::text FROM batch ORDER BY customer_user_id DESC LIMIT 1),
                        (SELECT count(*) FROM broken)"
            );
            // Keyset position: the last `customer_user_id` of the previous batch (the nil uuid sorts first; a plain
            // range condition lets each batch start where the last ended in the index).
            let mut cursor = uuid::Uuid::nil().to_string();
            let mut reset = 0i64;
            let mut batches = 0i64;
            loop {
                ctx.check_cancelled()?;
                let mut tx = ctx.begin().await?;
                let (last, broken): (Option<String>, i64) = db::query_as(sqlx::AssertSqlSafe(update.clone()))
                    .bind(ctx.now)
                    .bind(&cursor)
                    .bind(BATCH)
                    .bind(ctx.args.dry_run)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                reset += broken;
                batches += 1;
                match last {
                    Some(last) => cursor = last,
                    None => break,
                }
            }
            Ok(JobReport {
                items: reset,
                details: serde_json::json!({ "streaks_reset": reset, "batches": batches, "dry_run": ctx.args.dry_run }),
            })
        })
    }
}
