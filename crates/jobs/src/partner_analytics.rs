//! `partner-analytics` (docs/jobs/partner-analytics.md): one `partner_analytics` row per approved partner and business
//! day, and the partners' totals recomputed from all their rows.
//!
//! A day D is the half-open interval [D 00:00, D+1 00:00) in the business zone. For each partner:
//! - `new_signups`: referrals created on D with the partner's code or referred by the partner's own user;
//! - `new_subscriptions`, `revenue`: paid subscriptions (not promotional, not trials, not deleted) started on D and
//!   linked to the partner (`partner_id`, else `referral_code` = the partner's code); revenue is the sum of their
//!   `amount` (the plan's price where it is null) in the base currency; other currencies are counted in the run
//!   details and left out of revenue;
//! - `commission`: revenue x `commission_rate` / 100, rounded to cents per partner-day;
//! - `active_subscribers`: linked paid subscriptions active at the end of D, and `churn_count`: those that ended on D,
//!   both decided from `started_at`, `expired_at` and `canceled_at`, never from the current status, so a backfill
//!   of an old day is exact.
//!
//! A scheduled run recomputes the day before its tick and the day before that (late store webhooks);
//! `--from D1 --to D2` recomputes a range. Every row is an upsert, and the totals are always the sum of the rows,
//! so re-runs and backfills never double anything.

use chrono::{Days, NaiveDate};
use chrono_tz::Tz;
use engine::{Job, JobContext, JobDefaults, JobReport, MisfirePolicy, RunFuture};
use serde_json::json;

/// The longest range one run recomputes.
pub const MAX_DAYS: u64 = 3660;

/// The `partner-analytics` job.
#[derive(Debug, Clone)]
pub struct PartnerAnalytics {
    /// The zone business days are read in.
    pub business_zone: Tz,
    /// Revenue is counted in this currency only (docs/jobs/partner-analytics.md: default TRY).
    pub base_currency: String,
}

impl PartnerAnalytics {
    /// Its name and default schedule (docs/jobs/partner-analytics.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("partner-analytics", "5 0 * * *", MisfirePolicy::All, 30);
}

/// The CTEs both statements share. Parameters: `$2` the base currency, `$3` the business zone, `$4` and `$5` the
/// first and last day.
/// - `days`: each day with its half-open bounds in the business zone; `bounds`: the whole range;
/// - `approved`: the partners figures are kept for;
/// - `linked`: each paid subscription of an approved partner once, resolved to its partner (`partner_id` wins over
///   `referral_code`, docs/jobs/partner-analytics.md), with `ended` (the earlier of expiry and cancellation) and
///   `gone` (when it stops counting as active: never before it started). Legacy `timestamp` columns hold UTC and are read as such.
const SHARED: &str = "
    days AS (
        SELECT d::date AS day, (d::timestamp AT TIME ZONE $3) AS day_start,
               ((d + interval '1 day')::timestamp AT TIME ZONE $3) AS day_end
        FROM generate_series($4::date, $5::date, interval '1 day') d
    ),
    bounds AS (SELECT min(day_start) AS lo, max(day_end) AS hi FROM days),
    approved AS (
        SELECT id, referral_code, customer_user_id, commission_rate FROM partners WHERE status = 'approved'
    ),
    subscriptions AS (
        SELECT coalesce(s.partner_id, by_code.id) AS partner_id, s.started_at::timestamptz AS started_at,
               least(s.expired_at, s.canceled_at)::timestamptz AS ended, s.amount, s.currency, s.plan_id
        FROM customer_subscriptions s
        LEFT JOIN partners by_code ON s.partner_id IS NULL AND by_code.referral_code = s.referral_code
        WHERE (s.partner_id IS NOT NULL OR s.referral_code IS NOT NULL)
          AND s.deleted_at IS NULL AND coalesce(s.platform, '') <> 'promo'
          AND s.status NOT IN ('trial', 'trialing') AND s.started_at IS NOT NULL
    ),
    linked AS (
        SELECT s.*, CASE WHEN s.ended IS NOT NULL THEN greatest(s.started_at, s.ended) END AS gone
        FROM subscriptions s JOIN approved p ON p.id = s.partner_id
    )";

impl PartnerAnalytics {
    /// The days a run recomputes: the operator's range, else the two business days before the run's tick.
    fn days(&self, ctx: &JobContext) -> Result<Vec<NaiveDate>, String> {
        let (from, to) = match (ctx.args.from, ctx.args.to) {
            (Some(from), Some(to)) => (from, to),
            (Some(day), None) | (None, Some(day)) => (day, day),
            (None, None) => {
                let today = ctx.reference_time().with_timezone(&self.business_zone).date_naive();
                let yesterday = today.checked_sub_days(Days::new(1)).ok_or("date out of range")?;
                (yesterday.checked_sub_days(Days::new(1)).ok_or("date out of range")?, yesterday)
            }
        };
        if from > to {
            return Err(format!("--from {from} is after --to {to}"));
        }
        let span = u64::try_from((to - from).num_days()).unwrap_or(u64::MAX);
        if span >= MAX_DAYS {
            return Err(format!("{from} to {to} is more than {MAX_DAYS} days; split the backfill"));
        }
        Ok(from.iter_days().take_while(|day| *day <= to).collect())
    }
}

impl Job for PartnerAnalytics {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let days = self.days(ctx).map_err(engine::JobError::Failed)?;
            let mut tx = ctx.begin().await?;
            let zone = self.business_zone.name();
            let first = days.first().copied();
            let last = days.last().copied();
            // Every statement reads the days as a series, so one statement serves a whole backfill.
            let other_currencies: Vec<(String, i64)> = db::query_as(sqlx::AssertSqlSafe(format!(
                "WITH {SHARED}
                 SELECT l.currency, count(*) FROM linked l, bounds b
                 WHERE l.started_at >= b.lo AND l.started_at < b.hi AND l.currency <> $2
                 GROUP BY 1 ORDER BY 1"
            )))
            .bind(ctx.now)
            .bind(&self.base_currency)
            .bind(zone)
            .bind(first)
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            if ctx.args.dry_run {
                return Ok(JobReport {
                    items: 0,
                    details: json!({ "dry_run": true, "days": days.len(), "other_currencies": other_currencies }),
                });
            }
            // Active at the end of D = active before the range + subscriptions started - subscriptions gone, day by
            // day (a running sum), so a backfill reads each subscription once instead of once per day.
            let rows = db::query(sqlx::AssertSqlSafe(format!(
                "WITH {SHARED},
                 active_before AS (
                     SELECT l.partner_id,
                            count(*) FILTER (WHERE l.started_at < b.lo) - count(*) FILTER (WHERE l.gone < b.lo) AS n
                     FROM linked l, bounds b GROUP BY 1
                 ),
                 started AS (
                     SELECT l.partner_id, (l.started_at AT TIME ZONE $3)::date AS day, count(*) AS n,
                            coalesce(sum(coalesce(l.amount, pl.price, 0))
                                         FILTER (WHERE coalesce(l.currency, $2) = $2), 0) AS revenue
                     FROM linked l CROSS JOIN bounds b LEFT JOIN subscription_plans pl ON pl.id = l.plan_id
                     WHERE l.started_at >= b.lo AND l.started_at < b.hi
                     GROUP BY 1, 2
                 ),
                 gone AS (
                     SELECT l.partner_id, (l.gone AT TIME ZONE $3)::date AS day, count(*) AS n
                     FROM linked l, bounds b WHERE l.gone >= b.lo AND l.gone < b.hi
                     GROUP BY 1, 2
                 ),
                 churned AS (
                     SELECT l.partner_id, d.day, count(*) AS n
                     FROM linked l, bounds b, days d
                     WHERE l.ended >= b.lo AND l.ended < b.hi AND d.day = (l.ended AT TIME ZONE $3)::date
                       AND l.started_at < d.day_end
                     GROUP BY 1, 2
                 ),
                 signups AS (
                     SELECT x.partner_id, (x.created_at AT TIME ZONE $3)::date AS day, count(*) AS n
                     FROM (SELECT p.id AS partner_id, r.id, r.created_at
                           FROM referrals r JOIN approved p ON p.referral_code = r.referral_code, bounds b
                           WHERE r.created_at >= b.lo AND r.created_at < b.hi
                           UNION
                           SELECT p.id, r.id, r.created_at
                           FROM referrals r JOIN approved p ON p.customer_user_id = r.referrer_user_id, bounds b
                           WHERE r.created_at >= b.lo AND r.created_at < b.hi) x
                     GROUP BY 1, 2
                 ),
                 figures AS (
                     SELECT p.id AS partner_id, d.day, p.commission_rate,
                            coalesce(su.n, 0) AS signups, coalesce(st.n, 0) AS subscriptions,
                            coalesce(st.revenue, 0) AS revenue, coalesce(ch.n, 0) AS churned,
                            coalesce(ab.n, 0) + sum(coalesce(st.n, 0) - coalesce(g.n, 0))
                                OVER (PARTITION BY p.id ORDER BY d.day) AS active
                     FROM approved p CROSS JOIN days d
                     LEFT JOIN active_before ab ON ab.partner_id = p.id
                     LEFT JOIN started st ON st.partner_id = p.id AND st.day = d.day
                     LEFT JOIN gone g ON g.partner_id = p.id AND g.day = d.day
                     LEFT JOIN churned ch ON ch.partner_id = p.id AND ch.day = d.day
                     LEFT JOIN signups su ON su.partner_id = p.id AND su.day = d.day)
                 INSERT INTO partner_analytics (partner_id, date, new_signups, new_subscriptions, revenue, commission,
                                                active_subscribers, churn_count, created_at, updated_at)
                 SELECT partner_id, day, signups, subscriptions, round(revenue, 2),
                        round(round(revenue, 2) * coalesce(commission_rate, 20) / 100, 2), active, churned, $1, $1
                 FROM figures
                 ON CONFLICT (partner_id, date) DO UPDATE
                 SET new_signups = excluded.new_signups, new_subscriptions = excluded.new_subscriptions,
                     revenue = excluded.revenue, commission = excluded.commission,
                     active_subscribers = excluded.active_subscribers, churn_count = excluded.churn_count,
                     updated_at = excluded.updated_at"
            )))
            .bind(ctx.now)
            .bind(&self.base_currency)
            .bind(zone)
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Totals are the sum of the rows, whatever ran before.
            let partners = sqlx::query!(
                "UPDATE partners p
                 SET total_referrals = t.signups, total_subscriptions = t.subscriptions,
                     total_revenue = t.revenue, total_commission = t.commission, updated_at = $1
                 FROM (SELECT partner_id, coalesce(sum(new_signups), 0) AS signups,
                              coalesce(sum(new_subscriptions), 0) AS subscriptions,
                              coalesce(sum(revenue), 0) AS revenue, coalesce(sum(commission), 0) AS commission
                       FROM partner_analytics GROUP BY partner_id) t
                 WHERE p.id = t.partner_id",
                ctx.now,
            )
            .execute(db::unnamed(&mut tx))
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(JobReport {
                items: i64::try_from(rows).unwrap_or(i64::MAX),
                details: json!({
                    "from": first, "to": last, "days": days.len(), "rows": rows, "partners_totalled": partners,
                    "other_currencies": other_currencies.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                }),
            })
        })
    }
}
