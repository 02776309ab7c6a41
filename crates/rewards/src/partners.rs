//! `partner-analytics` (SPEC 3.9, 10.24): one `partner_analytics` row per approved partner and business day, and
//! the partners' totals recomputed from all their rows.
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
use engine::{Job, JobContext, JobReport, RunFuture};
use serde_json::json;

/// The longest range one run recomputes.
pub const MAX_DAYS: u64 = 3660;

/// The `partner-analytics` job.
#[derive(Debug, Clone)]
pub struct PartnerAnalytics {
    /// The zone business days are read in.
    pub business_zone: Tz,
    /// Revenue is counted in this currency only (SPEC 10.24: default TRY).
    pub base_currency: String,
}

/// The linked, paid subscriptions `s` of partner `p`.
const LINKED_PAID: &str = "s.deleted_at IS NULL AND coalesce(s.platform, '') <> 'promo'
    AND s.status NOT IN ('trial', 'trialing') AND s.started_at IS NOT NULL
    AND (s.partner_id = p.id OR (s.partner_id IS NULL AND s.referral_code = p.referral_code))";

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
            let mut conn = ctx.connection().await?;
            let zone = self.business_zone.name();
            let first = days.first().copied();
            let last = days.last().copied();
            // Every statement reads the days as a series, so one statement serves a whole backfill.
            let per_day = |zone: &str, first: &str, last: &str| {
                format!(
                    "SELECT d::date AS day, (d::timestamp AT TIME ZONE {zone}) AS day_start,
                            ((d + interval '1 day')::timestamp AT TIME ZONE {zone}) AS day_end
                     FROM generate_series({first}::date, {last}::date, interval '1 day') d"
                )
            };
            let other_currencies: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH days AS ({})
                 SELECT s.currency, count(*)
                 FROM partners p CROSS JOIN days
                 JOIN customer_subscriptions s ON {LINKED_PAID}
                     AND s.started_at >= days.day_start AND s.started_at < days.day_end
                 WHERE p.status = 'approved' AND s.currency <> $1
                 GROUP BY 1 ORDER BY 1",
                per_day("$2", "$3", "$4")
            )))
            .bind(&self.base_currency)
            .bind(zone)
            .bind(first)
            .bind(last)
            .fetch_all(&mut *conn)
            .await?;
            if ctx.args.dry_run {
                return Ok(JobReport {
                    items: 0,
                    details: json!({ "dry_run": true, "days": days.len(), "other_currencies": other_currencies }),
                });
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH days AS ({}),
                 figures AS (
                     SELECT p.id AS partner_id, days.day,
                            (SELECT count(*) FROM referrals r
                             WHERE (r.referral_code = p.referral_code OR r.referrer_user_id = p.customer_user_id)
                               AND r.created_at >= days.day_start AND r.created_at < days.day_end) AS signups,
                            (SELECT count(*) FROM customer_subscriptions s
                             WHERE {LINKED_PAID} AND s.started_at >= days.day_start AND s.started_at < days.day_end
                            ) AS subscriptions,
                            (SELECT coalesce(sum(coalesce(s.amount, pl.price, 0)), 0)
                             FROM customer_subscriptions s LEFT JOIN subscription_plans pl ON pl.id = s.plan_id
                             WHERE {LINKED_PAID} AND s.started_at >= days.day_start AND s.started_at < days.day_end
                               AND coalesce(s.currency, $2) = $2) AS revenue,
                            (SELECT count(*) FROM customer_subscriptions s
                             WHERE {LINKED_PAID} AND s.started_at < days.day_end
                               AND (s.expired_at IS NULL OR s.expired_at >= days.day_end)
                               AND (s.canceled_at IS NULL OR s.canceled_at >= days.day_end)) AS active,
                            (SELECT count(*) FROM customer_subscriptions s
                             WHERE {LINKED_PAID} AND s.started_at < days.day_end
                               AND least(s.expired_at, s.canceled_at) >= days.day_start
                               AND least(s.expired_at, s.canceled_at) < days.day_end) AS churned,
                            p.commission_rate
                     FROM partners p CROSS JOIN days
                     WHERE p.status = 'approved')
                 INSERT INTO partner_analytics (partner_id, date, new_signups, new_subscriptions, revenue, commission,
                                                active_subscribers, churn_count, created_at, updated_at)
                 SELECT partner_id, day, signups, subscriptions, round(revenue, 2),
                        round(round(revenue, 2) * coalesce(commission_rate, 20) / 100, 2), active, churned, $1, $1
                 FROM figures
                 ON CONFLICT (partner_id, date) DO UPDATE
                 SET new_signups = excluded.new_signups, new_subscriptions = excluded.new_subscriptions,
                     revenue = excluded.revenue, commission = excluded.commission,
                     active_subscribers = excluded.active_subscribers, churn_count = excluded.churn_count,
                     updated_at = excluded.updated_at",
                per_day("$3", "$4", "$5")
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
            let partners = sqlx::query(
                "UPDATE partners p
                 SET total_referrals = t.signups, total_subscriptions = t.subscriptions,
                     total_revenue = t.revenue, total_commission = t.commission, updated_at = $1
                 FROM (SELECT partner_id, coalesce(sum(new_signups), 0) AS signups,
                              coalesce(sum(new_subscriptions), 0) AS subscriptions,
                              coalesce(sum(revenue), 0) AS revenue, coalesce(sum(commission), 0) AS commission
                       FROM partner_analytics GROUP BY partner_id) t
                 WHERE p.id = t.partner_id",
            )
            .bind(ctx.now)
            .execute(&mut *tx)
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
