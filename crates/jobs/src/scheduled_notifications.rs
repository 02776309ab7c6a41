//! `scheduled-notifications` (docs/jobs/scheduled-notifications.md): operators' push campaigns.
//!
//! Each run:
//! 1. cancels the pending outbox rows of cancelled campaigns;
//! 2. claims due `pending` campaigns (`sending`), failing those more than the staleness limit late;
//! 3. expands each claimed campaign whose audience is not in the outbox yet (`recipient_count` null): one
//!    set-based `INSERT ... SELECT` over the users, in one transaction with the count, under the campaign row's
//!    lock (a cancel waits for it, and a cancelled campaign is never expanded). A crash before the commit leaves
//!    nothing; the next run expands again, and the `campaign:{id}:{user}` dedupe keys make a repeat harmless;
//! 4. completes campaigns whose outbox rows are all final: `sent`, with `success_count` / `failure_count` in
//!    users (docs/push.md) and `sent_at` the completion time.
//!
//! A campaign whose audience or segment filter is invalid fails with an `error` naming the problem; the others
//! proceed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::{Job, JobContext, JobDefaults, JobReport, MisfirePolicy, RunFuture};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use domain::DayZones;
use domain::campaign::{CampaignDraft, audience_sql, bind_params};
use domain::segment::{self};

/// The `scheduled-notifications` job.
#[derive(Debug, Clone)]
pub struct ScheduledNotifications {
    /// How long a campaign's pushes stay worth sending (`expires_at`; docs/push.md default 24 h).
    pub lifetime: Duration,
    /// A campaign first picked up later than this after its time is failed, not sent
    /// (docs/jobs/scheduled-notifications.md: 24 h).
    pub stale_after: Duration,
    /// Users' zones (for `days_since_*` in segment filters).
    pub zones: DayZones,
    /// What a campaign's pushes may carry: checked again when it is sent, for campaigns the app wrote itself.
    pub content: push::ContentRules,
}

impl ScheduledNotifications {
    /// Its name and default schedule (docs/jobs/scheduled-notifications.md).
    pub const DEFAULTS: JobDefaults =
        JobDefaults::new("scheduled-notifications", "* * * * *", MisfirePolicy::RunOnce, 10);
}

impl ScheduledNotifications {
    async fn fail(conn: &mut PgConnection, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query!("UPDATE scheduled_notifications SET status = 'failed', error = $2 WHERE id = $1", id, error,)
            .execute(db::unnamed(conn))
            .await?;
        Ok(())
    }

    /// Expands one campaign under its row lock; returns the outbox rows written, or None if it was not (any
    /// more) a campaign to expand.
    async fn expand(&self, ctx: &JobContext, id: Uuid, now: DateTime<Utc>) -> Result<Option<i64>, sqlx::Error> {
        let mut tx = ctx.begin().await?;
        let campaign: Option<CampaignDraft> = sqlx::query_as!(
            CampaignDraft,
            "SELECT title_tr, title_en, body_tr, body_en, deep_link_url, image_url, target_audience, segment_filter,
                    scheduled_at
             FROM scheduled_notifications
             WHERE id = $1 AND status = 'sending' AND recipient_count IS NULL
             FOR UPDATE",
            id,
        )
        .fetch_optional(db::unnamed(&mut tx))
        .await?;
        let Some(campaign) = campaign else {
            tx.commit().await?;
            return Ok(None);
        };
        let problem = campaign.texts().oversize().map(|(_, problem)| problem).or_else(|| {
            let image = campaign.image_url.as_deref().and_then(|url| self.content.image_problem(url));
            let link = campaign.deep_link_url.as_deref().and_then(|link| self.content.deep_link_problem(link));
            image.map(|p| format!("image_url: {p}")).or(link.map(|p| format!("deep_link_url: {p}")))
        });
        if let Some(problem) = problem {
            Self::fail(&mut tx, id, &problem).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let (condition, params) =
            match audience_sql(&campaign.target_audience, campaign.segment_filter.as_ref(), &self.zones, 5) {
                Ok(compiled) => compiled,
                Err(errors) => {
                    Self::fail(&mut tx, id, &errors.join("; ")).await?;
                    tx.commit().await?;
                    return Ok(None);
                }
            };
        let lifetime = chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::hours(24));
        let sql = format!(
            "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
                                      campaign_id, not_before, expires_at, created_at, platforms)
             SELECT u.id, 'campaign', 'campaign:' || $2::text || ':' || u.id,
                    CASE WHEN u.locale_preference ILIKE 'en%' THEN coalesce(c.title_en, c.title_tr) ELSE c.title_tr END,
                    CASE WHEN u.locale_preference ILIKE 'en%' THEN coalesce(c.body_en, c.body_tr) ELSE c.body_tr END,
                    c.image_url, c.deep_link_url,
                    jsonb_strip_nulls(jsonb_build_object('type', 'campaign', 'campaignId', $2::text,
                                                         'deepLink', c.deep_link_url)),
                    $2, $1, $3, $1, $4
             FROM customer_users u CROSS JOIN (SELECT * FROM scheduled_notifications WHERE id = $2) c
             WHERE {condition}
             ON CONFLICT (dedupe_key) DO NOTHING"
        );
        // A segment that plainly requires some platforms sends only to the tokens on them (docs/push.md).
        let platforms = (campaign.target_audience == "segment")
            .then(|| campaign.segment_filter.as_ref().and_then(segment::required_platforms))
            .flatten();
        let query = db::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(id).bind(now + lifetime).bind(platforms);
        let query = bind_params(query, &params);
        let written = match query.execute(&mut *tx).await {
            Ok(done) => done.rows_affected(),
            Err(error) => {
                drop(tx);
                tracing::warn!(%error, campaign = %id, "campaign expansion failed");
                let mut tx = ctx.begin().await?;
                Self::fail(&mut tx, id, &format!("expanding the audience failed: {error}")).await?;
                tx.commit().await?;
                return Ok(None);
            }
        };
        let recipients: i64 = sqlx::query_scalar!(
            r#"WITH counted AS (SELECT count(*) AS n FROM push_outbox WHERE campaign_id = $1)
             UPDATE scheduled_notifications SET recipient_count = (SELECT n FROM counted), error = NULL
             WHERE id = $1 RETURNING recipient_count::bigint AS "recipients!""#,
            id,
        )
        .fetch_one(db::unnamed(&mut tx))
        .await?;
        tx.commit().await?;
        tracing::info!(campaign = %id, recipients, written, "campaign expanded into the outbox");
        Ok(Some(recipients))
    }
}

impl Job for ScheduledNotifications {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            // Each statement is a transaction of its own (the pool's); an expansion is one more.
            let pool = &ctx.pool;
            let now = ctx.now;
            let stale = chrono::Duration::from_std(self.stale_after).unwrap_or(chrono::Duration::hours(24));
            if ctx.args.dry_run {
                let due: i64 = sqlx::query_scalar!(
                    r#"SELECT count(*) AS "due!" FROM scheduled_notifications WHERE status = 'pending' AND scheduled_at <= $1"#,
                    now,
                )
                .fetch_one(pool)
                .await?;
                return Ok(JobReport { items: due, details: json!({ "dry_run": true, "due": due }) });
            }
            let cancelled_rows = sqlx::query!(
                "UPDATE push_outbox o SET status = 'cancelled', last_error = 'campaign_cancelled'
                 FROM scheduled_notifications s
                 WHERE s.status = 'cancelled' AND o.campaign_id = s.id AND o.status = 'pending'",
            )
            .execute(pool)
            .await?
            .rows_affected();
            let stale_failed = sqlx::query!(
                r#"UPDATE scheduled_notifications SET status = 'failed',
                     error = 'not sent: first picked up ' || to_char($1::timestamptz - scheduled_at, 'FMDD "days" HH24:MI') || ' late'
                 WHERE status = 'pending' AND scheduled_at < $1::timestamptz - $2::text::interval"#,
                now,
                format!("{} seconds", stale.num_seconds()),
            )
            .execute(pool)
            .await?
            .rows_affected();
            let claimed: Vec<Uuid> = sqlx::query_scalar!(
                "UPDATE scheduled_notifications SET status = 'sending'
                 WHERE id IN (SELECT id FROM scheduled_notifications
                              WHERE status = 'pending' AND scheduled_at <= $1
                              ORDER BY scheduled_at FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                now,
            )
            .fetch_all(pool)
            .await?;
            // Claimed now, or claimed by a run that died before expanding.
            let to_expand: Vec<Uuid> = sqlx::query_scalar!(
                "SELECT id FROM scheduled_notifications WHERE status = 'sending' AND recipient_count IS NULL
                 ORDER BY scheduled_at",
            )
            .fetch_all(pool)
            .await?;
            let mut expanded = serde_json::Map::new();
            for id in to_expand {
                ctx.check_cancelled()?;
                if let Some(recipients) = self.expand(ctx, id, now).await? {
                    expanded.insert(id.to_string(), json!(recipients));
                }
            }
            let completed = sqlx::query!(
                "WITH done AS (
                     SELECT s.id,
                            count(*) FILTER (WHERE o.status = 'sent') AS delivered,
                            count(*) FILTER (WHERE o.status IN ('failed', 'no_tokens')) AS failed
                     FROM scheduled_notifications s LEFT JOIN push_outbox o ON o.campaign_id = s.id
                     WHERE s.status = 'sending' AND s.recipient_count IS NOT NULL
                     GROUP BY s.id
                     HAVING count(*) FILTER (WHERE o.status IN ('pending', 'sending')) = 0)
                 UPDATE scheduled_notifications s
                 SET status = 'sent', sent_at = $1, success_count = done.delivered, failure_count = done.failed
                 FROM done WHERE s.id = done.id AND s.status = 'sending'
                 RETURNING s.id, s.success_count, s.failure_count",
                now,
            )
            .fetch_all(pool)
            .await?;
            let failed = sqlx::query!(
                "SELECT id, error FROM scheduled_notifications WHERE status = 'failed' AND id = ANY($1)",
                &claimed
            )
            .fetch_all(pool)
            .await?;
            Ok(JobReport {
                items: expanded.len() as i64,
                details: json!({
                    "claimed": claimed.len(),
                    "expanded": expanded,
                    "failed": failed.into_iter().map(|row| json!({ "campaign": row.id, "error": row.error })).collect::<Vec<_>>(),
                    "stale_failed": stale_failed,
                    "completed": completed.into_iter().map(|row| json!({ "campaign": row.id, "delivered": row.success_count, "failed": row.failure_count })).collect::<Vec<_>>(),
                    "cancelled_pushes": cancelled_rows,
                }),
            })
        })
    }
}
