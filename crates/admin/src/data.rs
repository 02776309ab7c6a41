//! What the API, the pages, the metrics and `hattrick jobs` read: jobs with their next and last runs, run
//! history, campaigns and their delivery, partner analytics, outbox health. One query per question, never one per
//! row.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use db::Pool;
use domain::campaign::Variants;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use engine::{Engine, store};

/// How many recent durations a job's sparkline shows.
pub const SPARKLINE_RUNS: i64 = 30;

/// A job as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// 5-field cron expression.
    pub schedule: String,
    /// The zone the schedule is read in.
    pub timezone: String,
    /// `active`, `paused` or `disabled`.
    pub state: &'static str,
    /// What happens to ticks missed while nothing ran.
    pub misfire: String,
    /// Timeout of one run, in seconds.
    pub timeout_secs: u64,
    /// A run is in progress.
    pub running: bool,
    /// The next three fire times (UTC).
    pub next_runs: Vec<DateTime<Utc>>,
    /// The same, in the job's zone (`2026-11-29 20:00 +03`).
    pub next_runs_local: Vec<String>,
    /// The latest run that was not a skipped tick.
    pub last_run: Option<RunSummary>,
    /// When the job last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Every tick up to here is accounted for (run, skipped or missed).
    pub cursor: Option<DateTime<Utc>>,
    /// The latest scheduled tick at or before now: a cursor behind it for long means a tick was not run.
    pub latest_tick: Option<DateTime<Utc>>,
    /// Durations of the latest finished runs in milliseconds, oldest first (the page's sparkline).
    pub recent_durations_ms: Vec<i64>,
}

/// One run-log row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    /// The run's id.
    pub id: Uuid,
    /// The job.
    pub job_name: String,
    /// `running`, `success`, `failed` or `skipped`.
    pub status: String,
    /// `schedule`, `manual`, `catchup`, `event` or `retry`.
    pub trigger: Option<String>,
    /// Why it was skipped or failed (`missed`, `overlap`, `paused`, `abandoned`, `timeout`, `error`).
    pub reason: Option<String>,
    /// The tick it ran for (none for manual runs).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// How long it took.
    pub duration_ms: Option<i32>,
    /// Items handled (each job says what it counts).
    pub items_processed: Option<i32>,
    /// The error, when it failed.
    pub error_message: Option<String>,
    /// The instance that ran it.
    pub instance: Option<String>,
    /// Attempt number of the tick.
    pub attempt: Option<i32>,
}

/// One run with the job's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunSummary,
    /// What the job reported (counts per step).
    pub details: Option<serde_json::Value>,
}

/// Every job this binary runs, as stored (every instance follows the stored definition).
pub async fn jobs(engine: &Engine, pool: &Pool, now: DateTime<Utc>) -> Result<Vec<JobSummary>, sqlx::Error> {
    let stored: Vec<store::StoredJob> =
        store::load_jobs(pool).await?.into_iter().filter(|s| engine.registry().contains(&s.definition.name)).collect();
    let last_runs = sqlx::query_as!(
        RunSummary,
        r#"SELECT l.id AS "id!", l.job_name AS "job_name!", l.status AS "status!", l.trigger, l.reason,
                  l.scheduled_for, l.started_at AS "started_at!", l.completed_at, l.duration_ms, l.items_processed,
                  l.error_message, l.instance, l.attempt
           FROM hattrick_jobs j
           CROSS JOIN LATERAL (SELECT * FROM job_execution_logs l WHERE l.job_name = j.name AND l.status <> 'skipped'
                               ORDER BY l.started_at DESC LIMIT 1) l"#,
    )
    .fetch_all(pool)
    .await?;
    let mut last_runs: HashMap<String, RunSummary> = last_runs.into_iter().map(|r| (r.job_name.clone(), r)).collect();
    let facts = sqlx::query!(
        r#"SELECT j.name,
                  (SELECT l.completed_at FROM job_execution_logs l WHERE l.job_name = j.name AND l.status = 'success'
                   ORDER BY l.started_at DESC LIMIT 1) AS last_success,
                  EXISTS (SELECT 1 FROM job_execution_logs r WHERE r.job_name = j.name AND r.status = 'running')
                      AS "running!"
           FROM hattrick_jobs j"#,
    )
    .fetch_all(pool)
    .await?;
    let facts: HashMap<String, (Option<DateTime<Utc>>, bool)> =
        facts.into_iter().map(|f| (f.name, (f.last_success, f.running))).collect();
    let durations = sqlx::query!(
        r#"SELECT j.name, d.duration_ms::bigint AS "duration_ms!" FROM hattrick_jobs j
         CROSS JOIN LATERAL (SELECT duration_ms, started_at FROM job_execution_logs l
                             WHERE l.job_name = j.name AND l.status IN ('success', 'failed')
                               AND l.duration_ms IS NOT NULL
                             ORDER BY l.started_at DESC LIMIT $1) d
         ORDER BY j.name, d.started_at"#,
        SPARKLINE_RUNS,
    )
    .fetch_all(pool)
    .await?;
    let mut sparklines: HashMap<String, Vec<i64>> = HashMap::new();
    for row in durations {
        sparklines.entry(row.name).or_default().push(row.duration_ms);
    }
    Ok(stored
        .into_iter()
        .map(|stored| {
            let definition = stored.definition;
            let zone = definition.schedule.zone();
            let next = definition.schedule.fire_times(now, now + TimeDelta::days(400), 3);
            let (last_success_at, running) = facts.get(&definition.name).copied().unwrap_or((None, false));
            JobSummary {
                schedule: definition.schedule.expression().to_owned(),
                timezone: zone.name().to_owned(),
                state: match (definition.enabled, definition.paused) {
                    (false, _) => "disabled",
                    (true, true) => "paused",
                    (true, false) => "active",
                },
                misfire: definition.misfire.to_string(),
                timeout_secs: definition.timeout.as_secs(),
                running,
                next_runs_local: next
                    .iter()
                    .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string())
                    .collect(),
                next_runs: next,
                last_run: last_runs.remove(&definition.name),
                last_success_at,
                cursor: stored.cursor,
                latest_tick: definition.schedule.latest_at_or_before(now),
                recent_durations_ms: sparklines.remove(&definition.name).unwrap_or_default(),
                name: definition.name,
            }
        })
        .collect())
}

/// The runs of `job`, newest first, started before `before` when given.
pub async fn runs(
    pool: &Pool,
    job: &str,
    limit: i64,
    before: Option<DateTime<Utc>>,
) -> Result<Vec<RunSummary>, sqlx::Error> {
    sqlx::query_as!(
        RunSummary,
        "SELECT id, job_name, status, trigger, reason, scheduled_for, started_at, completed_at, duration_ms,
                  items_processed, error_message, instance, attempt
         FROM job_execution_logs
         WHERE job_name = $1 AND ($3::timestamptz IS NULL OR started_at < $3)
         ORDER BY started_at DESC LIMIT $2",
        job,
        limit,
        before,
    )
    .fetch_all(pool)
    .await
}

/// One run with its report.
pub async fn run(pool: &Pool, id: Uuid) -> Result<Option<RunDetail>, sqlx::Error> {
    let Some(run) = sqlx::query_as!(
        RunSummary,
        "SELECT id, job_name, status, trigger, reason, scheduled_for, started_at, completed_at, duration_ms,
                  items_processed, error_message, instance, attempt
         FROM job_execution_logs WHERE id = $1",
        id,
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    // The report on its own, so the summary keeps the one shape every list of runs shares.
    let details = sqlx::query_scalar!("SELECT details FROM job_execution_logs WHERE id = $1", id)
        .fetch_optional(pool)
        .await?
        .flatten();
    Ok(Some(RunDetail { run, details }))
}

/// A campaign and how far its delivery got.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Campaign {
    /// The campaign's id.
    pub id: Uuid,
    /// Turkish title.
    pub title_tr: String,
    /// English title.
    pub title_en: Option<String>,
    /// Turkish body.
    pub body_tr: String,
    /// English body.
    pub body_en: Option<String>,
    /// Deep link.
    pub deep_link_url: Option<String>,
    /// Image.
    pub image_url: Option<String>,
    /// `all`, `vip`, `free` or `segment`.
    pub target_audience: String,
    /// The segment filter.
    pub segment_filter: Option<serde_json::Value>,
    /// When it is (or was) due.
    pub scheduled_at: DateTime<Utc>,
    /// When its delivery finished.
    pub sent_at: Option<DateTime<Utc>>,
    /// `pending`, `sending`, `sent`, `failed` or `cancelled`.
    pub status: String,
    /// Users it was expanded to.
    pub recipient_count: Option<i32>,
    /// Users who received it on at least one device.
    pub success_count: Option<i32>,
    /// Users it could not reach.
    pub failure_count: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// Sent at this wall-clock time in each user's zone.
    pub local_time: Option<NaiveDateTime>,
    /// For a local-time campaign, users whose time had passed: `next_day` or `skip`.
    pub if_passed: Option<String>,
    /// Users skipped because their local time had passed.
    pub missed_count: Option<i32>,
    /// An experiment's variants (empty otherwise).
    #[schema(value_type = Vec<domain::campaign::Variant>)]
    pub variants: Variants,
    /// An experiment's holdout, in percent of the audience.
    pub holdout_percent: Option<i32>,
    /// What counts as a conversion.
    pub conversion_event: Option<String>,
    /// Hours after the send a conversion counts.
    pub conversion_window_hours: Option<i32>,
}

/// A campaign with its outbox rows counted by status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignDelivery {
    /// The campaign.
    #[serde(flatten)]
    pub campaign: Campaign,
    /// Outbox rows by status (`pending`, `sending`, `sent`, `failed`, `no_tokens`, `opted_out`, `cancelled`).
    pub outbox: BTreeMap<String, i64>,
    /// Devices reached.
    pub tokens_sent: i64,
    /// Device sends that failed.
    pub tokens_failed: i64,
    /// For a local-time campaign, when it goes out in each zone in use, earliest first.
    pub zones: Vec<ZoneSend>,
}

/// The latest campaigns by schedule, newest first.
pub async fn campaigns(pool: &Pool, limit: i64) -> Result<Vec<Campaign>, sqlx::Error> {
    sqlx::query_as!(
        Campaign,
        r#"SELECT id, title_tr, title_en, body_tr, body_en, deep_link_url, image_url, target_audience, segment_filter,
                scheduled_at, sent_at, status, recipient_count, success_count, failure_count, error, created_at,
                local_time, if_passed, missed_count, coalesce(variants, '[]') AS "variants!: Variants",
                holdout_percent, conversion_event, conversion_window_hours
         FROM scheduled_notifications ORDER BY scheduled_at DESC, id LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// One campaign with its delivery.
pub async fn campaign(pool: &Pool, id: Uuid, business: Tz) -> Result<Option<CampaignDelivery>, sqlx::Error> {
    let campaign = sqlx::query_as!(
        Campaign,
        r#"SELECT id, title_tr, title_en, body_tr, body_en, deep_link_url, image_url, target_audience, segment_filter,
                scheduled_at, sent_at, status, recipient_count, success_count, failure_count, error, created_at,
                local_time, if_passed, missed_count, coalesce(variants, '[]') AS "variants!: Variants",
                holdout_percent, conversion_event, conversion_window_hours
         FROM scheduled_notifications WHERE id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?;
    let Some(campaign) = campaign else { return Ok(None) };
    let rows = sqlx::query!(
        r#"SELECT status, count(*) AS "rows!", coalesce(sum(tokens_sent), 0)::bigint AS "sent!",
                  coalesce(sum(tokens_failed), 0)::bigint AS "failed!"
           FROM push_outbox WHERE campaign_id = $1 GROUP BY status"#,
        id,
    )
    .fetch_all(pool)
    .await?;
    let (tokens_sent, tokens_failed) = rows.iter().fold((0, 0), |(s, f), row| (s + row.sent, f + row.failed));
    let zones = match campaign.local_time {
        Some(local) => zone_sends(pool, local, business).await?,
        None => Vec::new(),
    };
    Ok(Some(CampaignDelivery {
        zones,
        campaign,
        outbox: rows.into_iter().map(|row| (row.status, row.rows)).collect(),
        tokens_sent,
        tokens_failed,
    }))
}

/// An experiment's read-out: per group (the holdout, each variant), users, deliveries and conversions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignResults {
    /// The campaign.
    pub campaign_id: Uuid,
    /// Whether it is an experiment (variants or a holdout); a plain campaign has no groups.
    pub experiment: bool,
    /// What counts as a conversion (`daily_reward`, `comment`, `subscription`).
    pub conversion_event: String,
    /// Hours after each user's send in which a conversion counts.
    pub conversion_window_hours: i32,
    /// Every user is assigned and every user's window has ended: the figures are final.
    pub final_figures: bool,
    /// The holdout (variant 0) and each variant.
    pub groups: Vec<GroupResult>,
}

/// One group of an experiment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupResult {
    /// 0 for the holdout, else the variant's number (from 1).
    pub variant: i16,
    /// `holdout` or `variant N`.
    pub name: String,
    /// Users assigned to it.
    pub users: i64,
    /// Users whose push was delivered (none for the holdout).
    pub delivered: i64,
    /// Users who converted within their window.
    pub converted: i64,
    /// `converted / users` with its 95 % interval.
    pub conversion: domain::experiment::Rate,
    /// The conversion rate minus the holdout's, with its 95 % interval (none for the holdout, or without one).
    pub lift: Option<domain::experiment::Lift>,
}

/// An experiment's read-out at `now`, or None when the campaign is unknown.
pub async fn campaign_results(
    pool: &Pool,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<CampaignResults>, sqlx::Error> {
    let Some(campaign) = sqlx::query!(
        r#"SELECT coalesce(conversion_event, 'daily_reward') AS "event!",
                  coalesce(conversion_window_hours, 24) AS "hours!",
                  coalesce(holdout_percent > 0 OR jsonb_array_length(coalesce(variants, '[]')) > 0, false)
                      AS "experiment!",
                  recipient_count IS NOT NULL AS "expanded!"
           FROM scheduled_notifications WHERE id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    // A conversion is the campaign's event by the user in [send_at, send_at + window); the holdout's send_at is
    // when its push would have gone out.
    let rows = sqlx::query!(
        r#"SELECT a.variant AS "variant!", count(*) AS "users!",
                  count(o.id) FILTER (WHERE o.status = 'sent') AS "delivered!",
                  count(*) FILTER (WHERE CASE $2::text
                      WHEN 'comment' THEN EXISTS (
                          SELECT 1 FROM match_comments m WHERE m.customer_user_id = a.customer_user_id
                            AND m.created_at >= a.send_at AND m.created_at < a.send_at + w.span)
                      WHEN 'subscription' THEN EXISTS (
                          SELECT 1 FROM customer_subscriptions s WHERE s.customer_user_id = a.customer_user_id
                            AND s.started_at >= a.send_at AND s.started_at < a.send_at + w.span
                            AND coalesce(s.platform, '') <> 'promo' AND s.deleted_at IS NULL
                            AND coalesce(s.status, '') NOT IN ('trial', 'trialing'))
                      ELSE EXISTS (
                          SELECT 1 FROM customer_daily_rewards d WHERE d.customer_user_id = a.customer_user_id
                            AND d.claimed_at >= a.send_at AND d.claimed_at < a.send_at + w.span)
                      END) AS "converted!",
                  max(a.send_at + w.span) AS "window_ends"
           FROM hattrick_campaign_assignments a
           CROSS JOIN LATERAL (SELECT make_interval(hours => $3) AS span) w
           LEFT JOIN push_outbox o ON o.dedupe_key = 'campaign:' || a.campaign_id || ':' || a.customer_user_id
           WHERE a.campaign_id = $1
           GROUP BY a.variant ORDER BY a.variant"#,
        id,
        campaign.event,
        campaign.hours,
    )
    .fetch_all(pool)
    .await?;
    let holdout = rows.iter().find(|r| r.variant == 0).map(|r| (r.converted, r.users));
    // Final once every user is assigned (a local-time campaign is assigned zone by zone) and every window ended.
    let final_figures =
        campaign.expanded && !rows.is_empty() && rows.iter().all(|r| r.window_ends.is_some_and(|end| end <= now));
    let groups = rows
        .iter()
        .map(|r| GroupResult {
            variant: r.variant,
            name: if r.variant == 0 { "holdout".to_owned() } else { format!("variant {}", r.variant) },
            users: r.users,
            delivered: r.delivered,
            converted: r.converted,
            conversion: domain::experiment::rate(r.converted, r.users),
            lift: (r.variant != 0)
                .then(|| holdout.and_then(|h| domain::experiment::lift((r.converted, r.users), h)))
                .flatten(),
        })
        .collect();
    Ok(Some(CampaignResults {
        campaign_id: id,
        experiment: campaign.experiment,
        conversion_event: campaign.event,
        conversion_window_hours: campaign.hours,
        final_figures,
        groups,
    }))
}

/// When a local-time campaign goes out in one zone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ZoneSend {
    /// The zone (users without a known zone are in the business zone).
    pub zone: String,
    /// Live users in it.
    pub users: i64,
    /// The campaign's local time there, as an instant.
    pub at: DateTime<Utc>,
}

/// Per zone in use, when local time `local` comes, earliest first.
pub async fn zone_sends(pool: &Pool, local: NaiveDateTime, business: Tz) -> Result<Vec<ZoneSend>, sqlx::Error> {
    let zones = sqlx::query!(
        r#"SELECT coalesce(z.name, $1) AS "zone!", count(*) AS "users!"
           FROM customer_users u LEFT JOIN hattrick_time_zones z ON z.name = u.timezone
           WHERE u.deleted_at IS NULL GROUP BY 1"#,
        business.name(),
    )
    .fetch_all(pool)
    .await?;
    let mut sends: Vec<ZoneSend> = zones
        .into_iter()
        .map(|z| {
            let at = domain::campaign::local_instant(local, z.zone.parse().unwrap_or(business));
            ZoneSend { zone: z.zone, users: z.users, at }
        })
        .collect();
    sends.sort_by(|a, b| (a.at, &a.zone).cmp(&(b.at, &b.zone)));
    Ok(sends)
}

/// One partner's figures for one day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerDay {
    /// The partner.
    pub partner_id: Uuid,
    /// Its business name.
    pub business_name: String,
    /// The day (business zone).
    pub date: NaiveDate,
    /// Users who signed up with its code that day.
    pub new_signups: i32,
    /// Subscriptions its users started that day.
    pub new_subscriptions: i32,
    /// Revenue in the base currency.
    pub revenue: f64,
    /// Commission earned.
    pub commission: f64,
    /// Its users subscribed at the end of the day.
    pub active_subscribers: i32,
    /// Subscriptions that ended that day.
    pub churn_count: i32,
}

/// The longest range the partner analytics endpoints accept, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

/// Partner analytics rows for `from..=to`, for one partner or all, by partner then date.
pub async fn partner_days(
    pool: &Pool,
    from: NaiveDate,
    to: NaiveDate,
    partner: Option<Uuid>,
) -> Result<Vec<PartnerDay>, sqlx::Error> {
    sqlx::query_as!(
        PartnerDay,
        r#"SELECT a.partner_id, p.business_name, a.date, coalesce(a.new_signups, 0) AS "new_signups!",
                  coalesce(a.new_subscriptions, 0) AS "new_subscriptions!",
                  coalesce(a.revenue, 0)::float8 AS "revenue!", coalesce(a.commission, 0)::float8 AS "commission!",
                  coalesce(a.active_subscribers, 0) AS "active_subscribers!",
                  coalesce(a.churn_count, 0) AS "churn_count!"
           FROM partner_analytics a JOIN partners p ON p.id = a.partner_id
           WHERE a.date BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR a.partner_id = $3)
           ORDER BY p.business_name, a.partner_id, a.date"#,
        from,
        to,
        partner,
    )
    .fetch_all(pool)
    .await
}

/// The outbox at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutboxHealth {
    /// Rows waiting (due now or later).
    pub pending: i64,
    /// Rows due now and not sent yet.
    pub due: i64,
    /// Age of the oldest due row, in seconds (0 when none is due).
    pub oldest_due_seconds: f64,
    /// Rows an earlier release left claimed (`sending`); a round today holds its rows `pending` and locked.
    pub sending: i64,
    /// The latest failures.
    pub recent_failures: Vec<OutboxFailure>,
}

/// A failed push.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutboxFailure {
    /// Outbox row id.
    pub id: i64,
    /// The recipient.
    pub customer_user_id: Uuid,
    /// `reward`, `engagement`, `campaign` or `test`.
    pub category: String,
    /// Its title.
    pub title: String,
    /// The last FCM error.
    pub last_error: Option<String>,
    /// Delivery attempts.
    pub attempts: i32,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Depth, age and recent failures of the outbox.
pub async fn outbox(pool: &Pool, now: DateTime<Utc>, failures: i64) -> Result<OutboxHealth, sqlx::Error> {
    let depth = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM push_outbox WHERE status = 'pending') AS "pending!",
                  (SELECT count(*) FROM push_outbox WHERE status = 'pending' AND not_before <= $1) AS "due!",
                  (SELECT min(not_before) FROM push_outbox WHERE status = 'pending' AND not_before <= $1) AS oldest,
                  (SELECT count(*) FROM push_outbox WHERE status = 'sending') AS "sending!""#,
        now,
    )
    .fetch_one(pool)
    .await?;
    // The metrics ask for none: no query then.
    let recent_failures = if failures == 0 {
        Vec::new()
    } else {
        sqlx::query_as!(
            OutboxFailure,
            "SELECT id, customer_user_id, category, title, last_error, attempts, created_at FROM push_outbox
             WHERE status = 'failed' ORDER BY id DESC LIMIT $1",
            failures,
        )
        .fetch_all(pool)
        .await?
    };
    Ok(OutboxHealth {
        pending: depth.pending,
        due: depth.due,
        oldest_due_seconds: depth.oldest.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
        sending: depth.sending,
        recent_failures,
    })
}
