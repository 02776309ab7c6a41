//! Local-time delivery (docs/engine.md, docs/jobs/README.md): the engagement jobs push at a target time of each user's
//! own clock.
//!
//! Every tick (every 15 minutes by default) looks at each zone in use. For a zone, the *day* to serve is the latest
//! local date whose target instant has passed; the one before it is looked at too, so an outage across midnight
//! still accounts for that day. A user is decided once per job and local date (`hattrick_local_sends`): `served`
//! (the push is in the outbox), `no_token` (eligible but no active device), or `skipped` (first seen after the
//! deadline, default 3 hours after the target). A day whose deadline has passed is *closed* for the zone
//! (`hattrick_local_days`) once every user was decided, so the ticks until the next target cost one index probe.
//!
//! Times are computed here once per zone and day, not per user: the SQL receives the target instant, the user's
//! "today" and the next midnight as parameters. A zone's users are decided set-based, by a few statements at once
//! over slices of the user ids (the first tick after a target time may serve most of the users). A user's send time
//! follows the user's zone (else the business zone); their "today" follows the same zone, or `time.app_day_zone` when
//! the app writes its dates in one zone (docs/engine.md).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use engine::{JobContext, JobError, JobReport};

use crate::DayZones;
use crate::messages::{Message, TextJoin, render_sql};

/// Days a user's outcome row is kept after its local date (the counts stay in the run log).
const KEEP_OUTCOMES: u64 = 7;

/// The default deadline: a user first seen more than this after the target is skipped for the day.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3 * 3600);

/// The default number of statements that decide a zone's users at once.
pub const DEFAULT_SLICES: u32 = 2;

/// When a local-time job delivers: a target time of each user's clock and how late it may still be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryWindow {
    /// The target time on each user's clock.
    pub at: NaiveTime,
    /// How long after the target a user may still be served; later, the day is skipped for them.
    pub deadline: Duration,
    /// How many statements decide a zone's users at once, each over its own range of user ids and on its own
    /// connection (the work of a target time is CPU-bound in PostgreSQL: one statement uses one core).
    pub slices: u32,
}

impl DeliveryWindow {
    /// `hour`:00 on each user's clock, with the default deadline and slices.
    pub fn at_hour(hour: u32) -> Self {
        Self {
            at: NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN),
            deadline: DEFAULT_DEADLINE,
            slices: DEFAULT_SLICES,
        }
    }
}

/// How long an engagement push stays worth sending (docs/push.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until the user's next midnight (in their day zone): the day it speaks of is over.
    Midnight,
    /// A fixed time after the target instant.
    AfterTarget(Duration),
}

/// What one engagement job selects and says.
pub struct Engagement<'a> {
    /// The push texts.
    pub message: &'static Message,
    /// Dedupe keys are `{prefix}:{user}:{local date}`.
    pub dedupe_prefix: &'static str,
    /// SQL selecting `customer_user_id, locale, vars, data` from `users u` (the zone's active, push-allowed users
    /// of the slice, with `locale` theirs as `hattrick_locale()` writes it). Parameters: `$1` now, `$4` the target instant, `$5` the
    /// user's today (a date), `$6` the end of that day (the next midnight), `$14` and `$15` the slice's first and
    /// last user id (to narrow the scans of the job's own tables).
    pub eligible: &'a str,
    /// When the push expires.
    pub lifetime: Lifetime,
}

/// One zone's local date to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Day {
    /// The local date of the target in the zone users are served in.
    date: NaiveDate,
    /// The target instant.
    target: DateTime<Utc>,
    /// The user's "today" at the target (in the day zone).
    today: NaiveDate,
    /// The end of that today.
    midnight: DateTime<Utc>,
    /// When the push stops being worth sending.
    expires_at: DateTime<Utc>,
    /// The last instant a user may still be served.
    deadline: DateTime<Utc>,
}

impl Day {
    fn new(zone: Tz, date: NaiveDate, when: &DeliveryWindow, day_zone: Tz, lifetime: Lifetime) -> Self {
        let target = local_instant(zone, date.and_time(when.at));
        let today = target.with_timezone(&day_zone).date_naive();
        let midnight = local_instant(day_zone, (today + Days::new(1)).and_time(NaiveTime::MIN));
        let expires_at = match lifetime {
            Lifetime::Midnight => midnight,
            Lifetime::AfterTarget(lifetime) => target + lifetime,
        };
        let deadline = (target + when.deadline).min(expires_at);
        Self { date, target, today, midnight, expires_at, deadline }
    }
}

/// The zone's latest day whose target has passed at `now`, and the day before it.
fn days_at(now: DateTime<Utc>, zone: Tz, when: &DeliveryWindow, day_zone: Tz, lifetime: Lifetime) -> [Day; 2] {
    let local_today = now.with_timezone(&zone).date_naive();
    let today = Day::new(zone, local_today, when, day_zone, lifetime);
    let latest =
        if today.target <= now { today } else { Day::new(zone, local_today - Days::new(1), when, day_zone, lifetime) };
    [Day::new(zone, latest.date - Days::new(1), when, day_zone, lifetime), latest]
}

/// The instant a local time names in `zone`: the earlier one in a fall-back overlap (it happens once), the first
/// valid minute after a spring-forward gap.
pub fn local_instant(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut candidate = local;
    for _ in 0..=24 * 60 {
        if let Some(instant) = zone.from_local_datetime(&candidate).earliest() {
            return instant.with_timezone(&Utc);
        }
        candidate += chrono::Duration::minutes(1);
    }
    // No zone has a gap of a day; read the time as UTC rather than fail.
    Utc.from_utc_datetime(&local)
}

/// The users of one zone: the `timezone` values that map to it (`None`: users without a zone).
#[derive(Debug, Default)]
struct ZoneUsers {
    names: Vec<Option<String>>,
}

/// Outcome counts.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Counts {
    served: i64,
    skipped: i64,
    no_token: i64,
    pushes: i64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.served += other.served;
        self.skipped += other.skipped;
        self.no_token += other.no_token;
        self.pushes += other.pushes;
    }
}

/// Runs one tick of a local-time job.
pub async fn run(
    ctx: &JobContext,
    spec: &Engagement<'_>,
    when: &DeliveryWindow,
    zones: DayZones,
) -> Result<JobReport, JobError> {
    let now = ctx.now;
    let dry = ctx.args.dry_run;
    // Bookkeeping statements are one-shot, each a transaction of its own (the pool's); each slice's decision is
    // one transaction.
    let pool = &ctx.pool;
    let groups = zones_in_use(pool, zones.business).await?;
    let statement = statement(spec);
    let mut total = Counts::default();
    let mut decided_days = Vec::new();
    let mut oldest_open = None::<NaiveDate>;
    for (zone_name, users) in &groups {
        let zone: Tz = zone_name.parse().unwrap_or(zones.business);
        let day_zone = zones.app_day_zone.unwrap_or(zone);
        let [previous, latest] = days_at(now, zone, when, day_zone, spec.lifetime);
        oldest_open = Some(oldest_open.map_or(previous.date, |d: NaiveDate| d.min(previous.date)));
        let known: Vec<(NaiveDate, bool)> = sqlx::query!(
            r#"SELECT local_date, closed_at IS NOT NULL AS "closed!" FROM hattrick_local_days
               WHERE job_name = $1 AND zone = $2 AND local_date >= $3"#,
            &ctx.job,
            zone_name,
            previous.date,
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|day| (day.local_date, day.closed))
        .collect();
        let state = |date: NaiveDate| known.iter().find(|(d, _)| *d == date).map(|(_, closed)| *closed);
        let served_before: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM hattrick_local_days WHERE job_name = $1 AND zone = $2 AND local_date < $3)
                   AS "served!""#,
            &ctx.job,
            zone_name,
            previous.date,
        )
        .fetch_one(pool)
        .await?;
        for day in [previous, latest] {
            let serve = now < day.deadline;
            // Whether the job served this zone before `day`: the previous day's row counts for the latest day.
            let history = served_before || (day.date == latest.date && state(previous.date).is_some());
            match state(day.date) {
                Some(true) => continue,
                Some(false) => {}
                // A day never opened whose deadline has passed: an outage swallowed it and its users are counted
                // as skipped, unless the job had never served this zone before it (first start: the baseline is
                // now, docs/engine.md).
                None if !serve && !history => continue,
                None => {}
            }
            ctx.check_cancelled()?;
            if !dry {
                sqlx::query!(
                    "INSERT INTO hattrick_local_days (job_name, zone, local_date, opened_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &ctx.job,
                    zone_name,
                    day.date,
                    now,
                )
                .execute(pool)
                .await?;
            }
            let mut counts = Counts::default();
            for name in &users.names {
                let zone = name.as_deref();
                let sql = statement[usize::from(zone.is_some())].as_str();
                counts += decide(ctx, &ZoneDay { sql, spec, zone, day: &day, serve }, when.slices).await?;
            }
            if !serve && !dry {
                // Every user of the zone is decided for this day: later ticks pass it by.
                sqlx::query!(
                    "UPDATE hattrick_local_days SET closed_at = $4
                     WHERE job_name = $1 AND zone = $2 AND local_date = $3 AND closed_at IS NULL",
                    &ctx.job,
                    zone_name,
                    day.date,
                    now,
                )
                .execute(pool)
                .await?;
            }
            total += counts;
            decided_days.push(serde_json::json!({
                "zone": zone_name,
                "date": day.date,
                "target": day.target,
                "open": serve,
                "served": counts.served,
                "skipped": counts.skipped,
                "no_token": counts.no_token,
            }));
        }
    }
    let pruned = match oldest_open {
        Some(oldest) if !dry => prune(pool, &ctx.job, oldest - Days::new(KEEP_OUTCOMES)).await?,
        _ => 0,
    };
    Ok(JobReport {
        items: total.pushes,
        details: serde_json::json!({
            "served": total.served,
            "skipped_past_deadline": total.skipped,
            "no_token": total.no_token,
            "pushes": total.pushes,
            "days": decided_days,
            "outcomes_pruned": pruned,
            "dry_run": dry,
        }),
    })
}

/// The zones users are in (users without a known zone are in `business`), from the loose scan of
/// [`zones_in_use`].
pub async fn zones_in_use_names(pool: &db::Pool, business: Tz) -> Result<Vec<Tz>, sqlx::Error> {
    Ok(zones_in_use(pool, business).await?.keys().map(|name| name.parse().unwrap_or(business)).collect())
}

/// The zones users are served in, each with the `timezone` values that map to it: a value PostgreSQL knows is its
/// own zone; no value, or one unknown to PostgreSQL or to this binary, is the business zone. The distinct values
/// come from a loose scan of the `(timezone, id)` index: a few probes per zone, whatever the number of users.
async fn zones_in_use(pool: &db::Pool, business: Tz) -> Result<BTreeMap<String, ZoneUsers>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH RECURSIVE names AS (
             (SELECT timezone FROM customer_users WHERE timezone IS NOT NULL ORDER BY timezone LIMIT 1)
             UNION ALL
             SELECT (SELECT u.timezone FROM customer_users u WHERE u.timezone > names.timezone
                     ORDER BY u.timezone LIMIT 1)
             FROM names WHERE names.timezone IS NOT NULL
         )
         SELECT n.timezone AS name, EXISTS (SELECT 1 FROM hattrick_time_zones z WHERE z.name = n.timezone)
                AS "known!"
         FROM names n WHERE n.timezone IS NOT NULL
         UNION ALL
         SELECT NULL, false WHERE EXISTS (SELECT 1 FROM customer_users WHERE timezone IS NULL)"#,
    )
    .fetch_all(pool)
    .await?;
    let mut groups: BTreeMap<String, ZoneUsers> = BTreeMap::new();
    for row in rows {
        let (name, known) = (row.name, row.known);
        let zone = name.as_deref().filter(|_| known).and_then(|n| n.parse::<Tz>().ok()).unwrap_or(business);
        groups.entry(zone.name().to_owned()).or_default().names.push(name);
    }
    Ok(groups)
}

/// The statement deciding a zone's users for a day (see [`decide`] for its parameters): `[users without a zone,
/// users with the zone name $13]`. It is set-based on purpose: the eligible users of a zone come from hash joins
/// over the job's tables (one pass each), not from a lookup per user, which at a million users cost more than the
/// whole statement does now.
///
/// A user decided earlier for the date is passed by through `hattrick_local_sends`' key: its insert conflicts and
/// returns nothing, so it is neither counted nor pushed again. The statement never reads that table otherwise: a
/// read of it beside the insert (a probe per user, or an anti-join) is planned from the table's statistics, which
/// say "empty" before a zone's first decision (it is empty then, and analysed so after a migration or a seed), and
/// the plan became a scan of the table per user, a scan that grows with every outcome this very statement inserts
/// (quadratic: 115 s at a million users, BENCHMARKS.md "The curves"). Only a dry run, which inserts nothing,
/// probes for earlier outcomes instead (`$8`: the probe's condition is a one-time filter otherwise).
fn statement(spec: &Engagement<'_>) -> [String; 2] {
    let texts = TextJoin::new("$11", "b.locale");
    let title = render_sql(&texts.title, spec.message);
    let body = render_sql(&texts.body, spec.message);
    let (texts_cte, texts_joins) = (&texts.cte, &texts.joins);
    let eligible = spec.eligible;
    ["u.timezone IS NULL", "u.timezone = $13"].map(|zone_filter| {
        format!(
            "WITH users AS MATERIALIZED (
                 SELECT u.id, hattrick_locale(u.locale_preference) AS locale FROM customer_users u
                 WHERE {zone_filter} AND u.id BETWEEN $14 AND $15
                   AND u.deleted_at IS NULL AND u.is_active IS NOT FALSE AND u.is_push_allowed_mobile IS NOT FALSE
             ),
             eligible AS ({eligible}),
             decided AS (
                 SELECT e.customer_user_id, e.locale, e.vars, e.data,
                        CASE WHEN NOT $7 THEN 'skipped'
                             WHEN EXISTS (SELECT 1 FROM customer_push_tokens t
                                          WHERE t.customer_user_id = e.customer_user_id AND t.is_active IS NOT FALSE)
                             THEN 'served'
                             ELSE 'no_token' END AS outcome
                 FROM eligible e
                 LEFT JOIN LATERAL (
                     SELECT true AS done FROM hattrick_local_sends s
                     WHERE $8 AND s.job_name = $2 AND s.local_date = $3 AND s.customer_user_id = e.customer_user_id
                     LIMIT 1) recorded_before ON true
                 WHERE recorded_before.done IS NULL
             ),
             recorded AS (
                 INSERT INTO hattrick_local_sends (job_name, local_date, customer_user_id, outcome, decided_at)
                 SELECT $2, $3, d.customer_user_id, d.outcome, $1 FROM decided d WHERE NOT $8
                 ON CONFLICT DO NOTHING
                 RETURNING customer_user_id, outcome
             ),
             {texts_cte},
             pushed AS (
                 INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, deep_link, data,
                                          not_before, expires_at, created_at)
                 SELECT b.customer_user_id, 'engagement', $12 || ':' || b.customer_user_id || ':' || $3::text,
                        {title}, {body}, $10, jsonb_build_object('type', $11::text, 'deepLink', $10::text) || b.data,
                        $1, $9, $1
                 FROM recorded r JOIN decided b ON b.customer_user_id = r.customer_user_id
                 {texts_joins}
                 WHERE r.outcome = 'served'
                 ON CONFLICT (dedupe_key) DO NOTHING
                 RETURNING 1
             ),
             outcomes AS (SELECT outcome FROM recorded UNION ALL SELECT outcome FROM decided WHERE $8)
             SELECT count(*) FILTER (WHERE outcome = 'served'),
                    count(*) FILTER (WHERE outcome = 'skipped'),
                    count(*) FILTER (WHERE outcome = 'no_token'),
                    (SELECT count(*) FROM pushed)
             FROM outcomes"
        )
    })
}

/// Decides every user with `timezone` = `name` (or without a zone) for `day`: one statement per slice of the user
/// ids, the slices at once on their own connections. Each statement is unnamed (not prepared for reuse), so
/// PostgreSQL plans it for this zone's actual size: a few users through the `(timezone, id)` index, most of the
/// users by scanning.
async fn decide(ctx: &JobContext, zone_day: &ZoneDay<'_>, slices: u32) -> Result<Counts, JobError> {
    ctx.check_cancelled()?;
    let slices = id_slices(slices);
    let runs = slices.iter().map(|&ids| async move { decide_slice(ctx, zone_day, ids).await });
    let mut total = Counts::default();
    for counts in futures_util::future::try_join_all(runs).await? {
        total += counts;
    }
    Ok(total)
}

/// `n` contiguous, inclusive ranges of user ids that cover every uuid.
fn id_slices(n: u32) -> Vec<(uuid::Uuid, uuid::Uuid)> {
    let n = u128::from(n.max(1));
    let width = u128::MAX / n;
    (0..n)
        .map(|i| {
            let first = if i == 0 { 0 } else { i * width + 1 };
            let last = if i + 1 == n { u128::MAX } else { (i + 1) * width };
            (uuid::Uuid::from_u128(first), uuid::Uuid::from_u128(last))
        })
        .collect()
}

/// What [`decide`] decides: one zone's users (`zone` None: those without a known zone) for one day.
struct ZoneDay<'a> {
    /// The statement (with or without the zone condition).
    sql: &'a str,
    spec: &'a Engagement<'a>,
    zone: Option<&'a str>,
    day: &'a Day,
    /// Whether users may still be served (false past the deadline: they are recorded skipped).
    serve: bool,
}

/// One slice of [`decide`]: the users with ids from `first` to `last`.
async fn decide_slice(
    ctx: &JobContext,
    zone_day: &ZoneDay<'_>,
    (first, last): (uuid::Uuid, uuid::Uuid),
) -> Result<Counts, JobError> {
    let ZoneDay { sql, spec, zone: name, day, serve } = *zone_day;
    let message = spec.message;
    // `ctx.begin` turns JIT compilation off for the transaction (it cost a second per statement here).
    let mut tx = ctx.begin().await?;
    let (served, skipped, no_token, pushes): (i64, i64, i64, i64) = db::query_as(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(ctx.now)
        .bind(&ctx.job)
        .bind(day.date)
        .bind(day.target)
        .bind(day.today)
        .bind(day.midnight)
        .bind(serve)
        .bind(ctx.args.dry_run)
        .bind(day.expires_at)
        .bind(message.deep_link)
        .bind(message.kind)
        .bind(spec.dedupe_prefix)
        .bind(name)
        .bind(first)
        .bind(last)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Counts { served, skipped, no_token, pushes })
}

/// Deletes this job's outcome rows dated before `before`, in short batches.
async fn prune(pool: &db::Pool, job: &str, before: NaiveDate) -> Result<i64, sqlx::Error> {
    let mut pruned = 0;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM hattrick_local_sends WHERE (job_name, local_date, customer_user_id) IN (
                 SELECT job_name, local_date, customer_user_id FROM hattrick_local_sends
                 WHERE job_name = $1 AND local_date < $2 LIMIT 10000)",
            job,
            before,
        )
        .execute(pool)
        .await?
        .rows_affected();
        pruned += i64::try_from(deleted).unwrap_or(i64::MAX);
        if deleted == 0 {
            return Ok(pruned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn at(hour: u32) -> DeliveryWindow {
        DeliveryWindow {
            at: NaiveTime::from_hms_opt(hour, 0, 0).unwrap(),
            deadline: Duration::from_secs(3 * 3600),
            slices: 1,
        }
    }

    #[test]
    fn the_latest_day_is_the_last_whose_target_has_passed() {
        let istanbul = chrono_tz::Europe::Istanbul;
        let [previous, latest] = days_at(utc("2026-11-10T16:59:00Z"), istanbul, &at(20), istanbul, Lifetime::Midnight);
        assert_eq!(latest.date, NaiveDate::from_ymd_opt(2026, 11, 9).unwrap(), "19:59 local: still yesterday's");
        assert_eq!(previous.date, NaiveDate::from_ymd_opt(2026, 11, 8).unwrap());
        let [_, latest] = days_at(utc("2026-11-10T17:00:00Z"), istanbul, &at(20), istanbul, Lifetime::Midnight);
        assert_eq!(latest.date, NaiveDate::from_ymd_opt(2026, 11, 10).unwrap());
        assert_eq!(latest.target, utc("2026-11-10T17:00:00Z"));
        assert_eq!(latest.midnight, utc("2026-11-10T21:00:00Z"));
        assert_eq!(latest.deadline, utc("2026-11-10T20:00:00Z"), "three hours after the target");
    }

    #[test]
    fn a_push_that_expires_at_midnight_cannot_be_served_after_it() {
        let istanbul = chrono_tz::Europe::Istanbul;
        let [_, latest] = days_at(utc("2026-11-10T19:00:00Z"), istanbul, &at(22), istanbul, Lifetime::Midnight);
        assert_eq!(latest.deadline, utc("2026-11-10T21:00:00Z"), "22:00 + 3 h is past midnight: midnight wins");
    }

    #[test]
    fn an_app_day_zone_moves_today_and_midnight_but_not_the_target() {
        let istanbul = chrono_tz::Europe::Istanbul;
        let [_, latest] = days_at(utc("2026-11-10T19:00:00Z"), istanbul, &at(22), chrono_tz::UTC, Lifetime::Midnight);
        assert_eq!(latest.target, utc("2026-11-10T19:00:00Z"));
        assert_eq!(latest.midnight, utc("2026-11-11T00:00:00Z"));
        let new_york = chrono_tz::America::New_York;
        let [_, latest] = days_at(utc("2026-11-11T01:00:00Z"), new_york, &at(20), chrono_tz::UTC, Lifetime::Midnight);
        assert_eq!(latest.date, NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(), "20:00 in New York");
        assert_eq!(latest.today, NaiveDate::from_ymd_opt(2026, 11, 11).unwrap(), "already the 11th in UTC");
    }

    #[test]
    fn id_slices_cover_every_uuid_once() {
        assert_eq!(id_slices(1), [(uuid::Uuid::nil(), uuid::Uuid::max())]);
        let slices = id_slices(3);
        assert_eq!(slices.first().unwrap().0, uuid::Uuid::nil());
        assert_eq!(slices.last().unwrap().1, uuid::Uuid::max());
        for pair in slices.windows(2) {
            assert_eq!(pair[0].1.as_u128() + 1, pair[1].0.as_u128(), "contiguous: {pair:?}");
        }
    }

    #[test]
    fn dst_gaps_move_forward_and_overlaps_happen_once() {
        let berlin = chrono_tz::Europe::Berlin;
        let gap = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(local_instant(berlin, gap), utc("2026-03-29T01:00:00Z"), "03:00 CEST, the end of the gap");
        let overlap = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(local_instant(berlin, overlap), utc("2026-10-25T00:30:00Z"), "the first 02:30 (CEST)");
        let new_york = chrono_tz::America::New_York;
        let [_, latest] = days_at(utc("2026-03-08T07:00:00Z"), new_york, &at(2), new_york, Lifetime::Midnight);
        assert_eq!(latest.target, utc("2026-03-08T07:00:00Z"), "02:00 does not exist; 03:00 EDT does");
    }
}
