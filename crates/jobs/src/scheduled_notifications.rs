//! `scheduled-notifications` (docs/jobs/scheduled-notifications.md): operators' push campaigns.
//!
//! Each run:
//! 1. cancels the pending outbox rows of cancelled campaigns;
//! 2. claims due `pending` campaigns (`sending`), failing those more than the staleness limit late;
//! 3. expands each claimed campaign whose audience is not in the outbox yet (`recipient_count` null): one
//!    set-based `INSERT ... SELECT` over the users, in one transaction with the count, under the campaign row's
//!    lock (a cancel waits for it, and a cancelled campaign is never expanded). A crash before the commit leaves
//!    nothing; the next run expands again, and the `campaign:{id}:{user}` dedupe keys make a repeat harmless.
//!    A campaign at local time is expanded zone by zone: each run writes the users whose time comes within the
//!    next few minutes (`expanded_until` records how far it got), until the last zone's time has come;
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
use domain::campaign::{CampaignDraft, Variants, audience_sql, bind_params};
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

/// How far apart the first and the last zone's local time are: UTC+14 to UTC-12.
const LOCAL_TIME_SPREAD: chrono::TimeDelta = chrono::TimeDelta::hours(26);

/// How long before a zone's local time its users' pushes are written (the dispatcher holds them until then).
const LOCAL_TIME_LEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

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

    /// Whether the time of a local-time campaign comes in some zone in use within `(after, until]`, from the
    /// zones' names alone (a loose index scan), so that the runs between two zones' times read no user. An hour
    /// of slack on both sides covers any difference in reading a clock change.
    async fn zone_due(
        &self,
        ctx: &JobContext,
        local: chrono::NaiveDateTime,
        campaign: &CampaignDraft,
        (after, until): (Option<DateTime<Utc>>, DateTime<Utc>),
        created: Option<DateTime<Utc>>,
    ) -> Result<bool, sqlx::Error> {
        let slack = chrono::Duration::hours(1);
        let after = after.map_or(DateTime::<Utc>::MIN_UTC, |at| at - slack);
        let next_day = campaign.if_passed.as_deref() != Some("skip");
        let zones = domain::delivery::zones_in_use_names(&ctx.pool, self.zones.business).await?;
        Ok(zones.into_iter().any(|zone| {
            let today = domain::campaign::local_instant(local, zone);
            let tomorrow = domain::campaign::local_instant(local + chrono::Duration::days(1), zone);
            // Users whose time had come when the campaign was created get the next day's (with `next_day`).
            let today = created.is_none_or(|created| today + slack >= created).then_some(today);
            [today, next_day.then_some(tomorrow)].into_iter().flatten().any(|at| at > after && at <= until + slack)
        }))
    }

    /// Expands one campaign under its row lock; returns its recipients once it is fully expanded, or None if it
    /// was not (any more) a campaign to expand or, at local time, has zones still to come.
    async fn expand(&self, ctx: &JobContext, id: Uuid, now: DateTime<Utc>) -> Result<Option<i64>, sqlx::Error> {
        let mut tx = ctx.begin().await?;
        let campaign = sqlx::query_as!(
            CampaignDraft,
            r#"SELECT title_tr, title_en, body_tr, body_en, deep_link_url, image_url, target_audience, segment_filter,
                      scheduled_at, local_time, if_passed, coalesce(variants, '[]') AS "variants!: Variants",
                      holdout_percent, conversion_event, conversion_window_hours
               FROM scheduled_notifications
               WHERE id = $1 AND status = 'sending' AND recipient_count IS NULL
               FOR UPDATE"#,
            id,
        )
        .fetch_optional(db::unnamed(&mut tx))
        .await;
        let campaign = match campaign {
            // A row the app wrote itself with variants that are not a list of variants (the one column decoded
            // from JSON; the others have the schema's types) fails alone.
            Err(sqlx::Error::ColumnDecode { source, .. }) => {
                Self::fail(&mut tx, id, &format!("variants: {source}")).await?;
                tx.commit().await?;
                return Ok(None);
            }
            other => other?,
        };
        let Some(campaign) = campaign else {
            tx.commit().await?;
            return Ok(None);
        };
        let problems = campaign.content_problems(&self.content);
        if !problems.is_empty() {
            Self::fail(&mut tx, id, &problems.join("; ")).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let (condition, params) =
            match audience_sql(&campaign.target_audience, campaign.segment_filter.as_ref(), &self.zones, 11) {
                Ok(compiled) => compiled,
                Err(errors) => {
                    Self::fail(&mut tx, id, &errors.join("; ")).await?;
                    tx.commit().await?;
                    return Ok(None);
                }
            };
        // Each user's time (docs/jobs/scheduled-notifications.md): now, or the campaign's local time in the
        // user's zone (the next day's, or none, if it had passed when the campaign was created). A local-time
        // campaign is expanded zone by zone, each run taking the users whose time comes before `until` and after
        // the previous run's, so each zone's audience is the one at its own time. Each user's variant: 0 (the
        // holdout) for a `holdout_percent` share of users, else drawn by weight; both from a hash of (campaign,
        // user), so a repeated expansion draws the same.
        let progress =
            sqlx::query!("SELECT expanded_until, created_at FROM scheduled_notifications WHERE id = $1", id,)
                .fetch_one(db::unnamed(&mut tx))
                .await?;
        let expanded_before = progress.expanded_until.is_some();
        let (until, complete) = match campaign.local_time {
            None => (now, true),
            Some(_) => {
                let first = campaign.scheduled_at.unwrap_or(now);
                let next_day = campaign.if_passed.as_deref() != Some("skip");
                let last = first
                    + LOCAL_TIME_SPREAD
                    + if next_day { chrono::Duration::days(1) } else { chrono::Duration::zero() };
                let until = now + LOCAL_TIME_LEAD;
                (until, until >= last)
            }
        };
        if let Some(local) = campaign.local_time
            && !complete
            && !self.zone_due(ctx, local, &campaign, (progress.expanded_until, until), progress.created_at).await?
        {
            // No zone's time comes in this window: the audience is not read at all.
            sqlx::query!("UPDATE scheduled_notifications SET expanded_until = $2 WHERE id = $1", id, until)
                .execute(db::unnamed(&mut tx))
                .await?;
            tx.commit().await?;
            return Ok(None);
        }
        let sql = format!(
            "WITH c AS (SELECT * FROM scheduled_notifications WHERE id = $2),
             audience AS MATERIALIZED (
                 SELECT u.id, hattrick_language(u.locale_preference) <> 'tr' AS en,
                        CASE WHEN c.local_time IS NULL THEN $1
                             WHEN c.local_time AT TIME ZONE tz.zone >= coalesce(c.created_at, $1)
                             THEN c.local_time AT TIME ZONE tz.zone
                             WHEN coalesce(c.if_passed, 'next_day') = 'next_day'
                             THEN (c.local_time + interval '1 day') AT TIME ZONE tz.zone
                        END AS send_at,
                        CASE WHEN abs(hashtextextended(c.id::text || ':' || u.id::text, 0)) % 10000
                                  < coalesce(c.holdout_percent, 0) * 100 THEN 0
                             WHEN cardinality($5::int[]) = 0 THEN 1
                             ELSE (SELECT w.variant FROM unnest($5::int[], $6::int[]) AS w(variant, upto)
                                   WHERE w.upto > abs(hashtextextended(c.id::text || ':' || u.id::text, 1)) % $7
                                   ORDER BY w.upto LIMIT 1)
                        END AS variant
                 FROM customer_users u CROSS JOIN c
                 CROSS JOIN LATERAL (SELECT coalesce((SELECT z.name FROM hattrick_time_zones z
                                                      WHERE z.name = u.timezone), $8) AS zone) tz
                 WHERE {condition}
             ),
             due AS (
                 SELECT a.* FROM audience a, c
                 WHERE a.send_at <= $10 AND a.send_at > coalesce(c.expanded_until, '-infinity')
             ),
             assigned AS (
                 INSERT INTO hattrick_campaign_assignments (campaign_id, customer_user_id, variant, send_at)
                 SELECT $2, a.id, a.variant, a.send_at FROM due a WHERE $9
                 ON CONFLICT (campaign_id, customer_user_id) DO NOTHING
                 RETURNING 1
             ),
             inserted AS (
                 INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link,
                                          data, campaign_id, not_before, expires_at, created_at, platforms)
                 SELECT a.id, 'campaign', 'campaign:' || $2::text || ':' || a.id,
                        CASE WHEN a.en THEN coalesce(v.texts ->> 'title_en', v.texts ->> 'title_tr')
                             ELSE v.texts ->> 'title_tr' END,
                        CASE WHEN a.en THEN coalesce(v.texts ->> 'body_en', v.texts ->> 'body_tr')
                             ELSE v.texts ->> 'body_tr' END,
                        coalesce(v.texts ->> 'image_url', c.image_url),
                        coalesce(v.texts ->> 'deep_link_url', c.deep_link_url),
                        jsonb_strip_nulls(jsonb_build_object(
                            'type', 'campaign', 'campaignId', $2::text,
                            'deepLink', coalesce(v.texts ->> 'deep_link_url', c.deep_link_url),
                            'variant', CASE WHEN cardinality($5::int[]) > 0 THEN a.variant END)),
                        $2, a.send_at, a.send_at + make_interval(secs => $3), $1, $4
                 FROM due a CROSS JOIN c
                 CROSS JOIN LATERAL (
                     SELECT CASE WHEN cardinality($5::int[]) > 0 THEN c.variants -> (a.variant - 1)
                                 ELSE jsonb_build_object('title_tr', c.title_tr, 'title_en', c.title_en,
                                                         'body_tr', c.body_tr, 'body_en', c.body_en)
                            END AS texts) v
                 WHERE a.variant <> 0
                 ON CONFLICT (dedupe_key) DO NOTHING
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM audience WHERE send_at IS NULL),
                    (SELECT count(*) FROM assigned)"
        );
        // A segment that plainly requires some platforms sends only to the tokens on them (docs/push.md).
        let platforms = (campaign.target_audience == "segment")
            .then(|| campaign.segment_filter.as_ref().and_then(segment::required_platforms))
            .flatten();
        let (variants, running_weights, total_weight) = campaign.variants.draw_table();
        let query = db::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(id)
            .bind(self.lifetime.as_secs_f64())
            .bind(platforms)
            .bind(variants)
            .bind(running_weights)
            .bind(total_weight)
            .bind(self.zones.business.name())
            .bind(campaign.is_experiment())
            .bind(until);
        let query = bind_params(query, &params);
        let counts = query.fetch_one(&mut *tx).await.and_then(|row| {
            use sqlx::Row as _;
            Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?))
        });
        let (written, missed, assigned) = match counts {
            Ok(counts) => counts,
            // A local-time campaign part sent keeps going: the next run takes the zones from where it stopped.
            Err(error) if campaign.local_time.is_some() && expanded_before => {
                tracing::warn!(%error, campaign = %id, "local-time campaign expansion failed; the next run retries");
                return Ok(None);
            }
            Err(error) => {
                drop(tx);
                tracing::warn!(%error, campaign = %id, "campaign expansion failed");
                let mut tx = ctx.begin().await?;
                Self::fail(&mut tx, id, &format!("expanding the audience failed: {error}")).await?;
                tx.commit().await?;
                return Ok(None);
            }
        };
        if campaign.local_time.is_some() {
            sqlx::query!(
                "UPDATE scheduled_notifications SET expanded_until = $2, missed_count = $3 WHERE id = $1",
                id,
                until,
                i32::try_from(missed).unwrap_or(i32::MAX),
            )
            .execute(db::unnamed(&mut tx))
            .await?;
        }
        if !complete {
            tx.commit().await?;
            tracing::debug!(campaign = %id, written, assigned, "local-time campaign: the zones due so far expanded");
            return Ok(None);
        }
        let recipients: i64 = sqlx::query_scalar!(
            r#"WITH counted AS (SELECT count(*) AS n FROM push_outbox WHERE campaign_id = $1)
             UPDATE scheduled_notifications SET recipient_count = (SELECT n FROM counted), error = NULL
             WHERE id = $1 RETURNING recipient_count::bigint AS "recipients!""#,
            id,
        )
        .fetch_one(db::unnamed(&mut tx))
        .await?;
        tx.commit().await?;
        tracing::info!(campaign = %id, recipients, written, missed, assigned, "campaign expanded into the outbox");
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
                 WHERE status = 'pending'
                   -- A local-time campaign is late once its time has passed in the last zone (UTC-12), 26 h
                   -- after the first (UTC+14), which its scheduled_at is.
                   AND scheduled_at + CASE WHEN local_time IS NULL THEN interval '0' ELSE interval '26 hours' END
                       < $1::timestamptz - $2::text::interval"#,
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
