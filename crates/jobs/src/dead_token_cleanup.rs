//! `dead-token-cleanup` (docs/jobs/dead-token-cleanup.md).

use std::time::Duration;

use engine::{Job, JobContext, JobDefaults, JobReport, MisfirePolicy, RunFuture};
use serde_json::json;

use crate::cleanup::{Batching, Rule, analyze, millis, purge};

/// `dead-token-cleanup` (docs/jobs/dead-token-cleanup.md): deletes device tokens that are inactive or not updated for
/// `max_age`.
#[derive(Debug, Clone)]
pub struct DeadTokenCleanup {
    /// A token not updated for this long is dead.
    pub max_age: Duration,
    /// Batch size and vacuum.
    pub batching: Batching,
}

impl DeadTokenCleanup {
    /// Its name and default schedule (docs/jobs/dead-token-cleanup.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("dead-token-cleanup", "0 3 * * 0", MisfirePolicy::Latest, 60);
}

impl Default for DeadTokenCleanup {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(90 * 86_400), batching: Batching::default() }
    }
}

const DEAD_TOKENS: Rule = Rule {
    table: "customer_push_tokens",
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
            let tokens = sqlx::query!(
                r#"SELECT count(*) AS "remaining!", count(*) FILTER (WHERE is_active IS NOT FALSE) AS "active!"
                   FROM customer_push_tokens"#,
            )
            .fetch_one(&ctx.pool)
            .await?;
            let (remaining, active) = (tokens.remaining, tokens.active);
            Ok(JobReport {
                items: walk.deleted,
                details: json!({
                    "deleted": walk.deleted,
                    "route": walk.route,
                    "remaining": remaining,
                    "active": active,
                    "batches": walk.batches.batches,
                    "longest_batch_ms": millis(walk.batches.longest_batch),
                    "wal_bytes": walk.batches.wal_bytes,
                    "rested_ms": millis(walk.batches.rested),
                    "cutoff": cutoff,
                    "analyzed": analyzed,
                    "dry_run": ctx.args.dry_run,
                }),
            })
        })
    }
}
