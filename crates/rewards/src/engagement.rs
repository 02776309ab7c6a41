//! The engagement jobs (SPEC 3.6 to 3.8): `daily-reward-reminders` (local 20:00), `streak-break-warnings`
//! (local 22:00) and `subscription-expiry-alerts` (local 10:00). Each is a selection over a zone's users, delivered
//! at the user's own local time by [`crate::local_time`], with one push per user and local date.

use std::time::Duration;

use chrono::NaiveTime;
use engine::{Job, JobContext, RunFuture};

use crate::DayZones;
use crate::local_time::{self, Engagement, Lifetime, LocalTime};
use crate::messages::{DAILY_REWARD_REMINDER, STREAK_WARNING, SUBSCRIPTION_EXPIRY};

/// The default deadline: a user first seen more than this after the target is skipped for the day.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3 * 3600);

/// The default number of statements that decide a zone's users at once.
pub const DEFAULT_SLICES: u32 = 2;

fn local(hour: u32) -> LocalTime {
    LocalTime {
        at: NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN),
        deadline: DEFAULT_DEADLINE,
        slices: DEFAULT_SLICES,
    }
}

/// `daily-reward-reminders` (SPEC 3.6): users who have not claimed today's reward, claimed at least once in the
/// last 7 days, allow pushes and have a device, are reminded of the credits their next cycle day pays.
#[derive(Debug, Clone)]
pub struct DailyRewardReminders {
    /// When, on each user's clock.
    pub when: LocalTime,
    /// Where users' days are computed.
    pub zones: DayZones,
    /// Credits of cycle days 1 to 7.
    pub credits: [i32; 7],
}

impl DailyRewardReminders {
    /// The defaults of SPEC 3.6: 20:00, credits 10, 15, 20, 25, 30, 40, 100.
    pub fn new(zones: DayZones) -> Self {
        Self { when: local(20), zones, credits: [10, 15, 20, 25, 30, 40, 100] }
    }

    fn eligible(&self) -> String {
        let credits = self.credits.map(|c| c.to_string()).join(", ");
        // The next cycle day: the day after the last claim's when that claim was yesterday (7 wraps to 1), else 1.
        format!(
            "SELECT u.id AS customer_user_id, u.en,
                    jsonb_build_object('credits', n.credits) AS vars,
                    jsonb_build_object('day', n.day::text, 'credits', n.credits::text) AS data
             FROM users u
             JOIN (SELECT DISTINCT ON (r.customer_user_id) r.customer_user_id, r.reward_date, r.day_number
                   FROM customer_daily_rewards r
                   WHERE r.reward_date >= $5::date - 7 AND r.customer_user_id BETWEEN $18 AND $19
                   ORDER BY r.customer_user_id, r.reward_date DESC) last ON last.customer_user_id = u.id
             CROSS JOIN LATERAL (
                 SELECT d.day, (ARRAY[{credits}])[d.day] AS credits
                 FROM (SELECT CASE WHEN last.reward_date = $5::date - 1 THEN last.day_number % 7 + 1 ELSE 1 END
                              AS day) d) n
             WHERE last.reward_date < $5::date"
        )
    }
}

impl Job for DailyRewardReminders {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let eligible = self.eligible();
            let spec = Engagement {
                message: &DAILY_REWARD_REMINDER,
                dedupe_prefix: "daily-reward",
                eligible: &eligible,
                lifetime: Lifetime::Midnight,
            };
            local_time::run(ctx, &spec, &self.when, self.zones).await
        })
    }
}

/// `streak-break-warnings` (SPEC 3.7): users whose streak is alive (at least `min_streak` days, last activity
/// exactly yesterday in their day) but not yet extended today, told how many hours are left until midnight.
#[derive(Debug, Clone)]
pub struct StreakBreakWarnings {
    /// When, on each user's clock.
    pub when: LocalTime,
    /// Where users' days are computed.
    pub zones: DayZones,
    /// The shortest streak worth a warning.
    pub min_streak: i32,
}

impl StreakBreakWarnings {
    /// The defaults of SPEC 3.7: 22:00, streaks of 3 days or more.
    pub fn new(zones: DayZones) -> Self {
        Self { when: local(22), zones, min_streak: 3 }
    }

    fn eligible(&self) -> String {
        let min_streak = self.min_streak;
        // Hours left: from the serving tick to the user's midnight, rounded up.
        format!(
            "SELECT u.id AS customer_user_id, u.en,
                    jsonb_build_object('streak', x.current_streak_days, 'hours', h.hours) AS vars,
                    jsonb_build_object('currentStreak', x.current_streak_days::text,
                                       'hoursRemaining', h.hours::text) AS data
             FROM users u
             JOIN customer_xp x ON x.customer_user_id = u.id
             CROSS JOIN (SELECT greatest(ceil(extract(epoch FROM $6::timestamptz - $1::timestamptz) / 3600), 1)::int
                                AS hours) h
             WHERE x.current_streak_days >= {min_streak} AND x.last_activity_date = $5::date - 1"
        )
    }
}

impl Job for StreakBreakWarnings {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let eligible = self.eligible();
            let spec = Engagement {
                message: &STREAK_WARNING,
                dedupe_prefix: "streak-warning",
                eligible: &eligible,
                lifetime: Lifetime::Midnight,
            };
            local_time::run(ctx, &spec, &self.when, self.zones).await
        })
    }
}

/// `subscription-expiry-alerts` (SPEC 3.8, 10.23): paid active subscriptions without auto-renew that end in
/// (target + `days` - 1 days, target + `days` days], the window anchored at the target instant so that consecutive
/// days tile time whatever the tick that served the user. One push per user, naming the earliest such expiry.
#[derive(Debug, Clone)]
pub struct SubscriptionExpiryAlerts {
    /// When, on each user's clock.
    pub when: LocalTime,
    /// Where users' days are computed.
    pub zones: DayZones,
    /// How many days ahead an expiry is announced.
    pub days: u32,
}

impl SubscriptionExpiryAlerts {
    /// The defaults of SPEC 3.8: 10:00, three days ahead.
    pub fn new(zones: DayZones) -> Self {
        Self { when: local(10), zones, days: 3 }
    }

    fn eligible(&self) -> String {
        // Whole hours, not days: a day across a DST change in the session zone is not 24 hours.
        let from = (self.days.max(1) - 1) * 24;
        let to = self.days.max(1) * 24;
        format!(
            "SELECT u.id AS customer_user_id, u.en,
                    jsonb_build_object('days', s.days) AS vars,
                    jsonb_build_object('daysRemaining', s.days::text,
                                       'expiredAt', to_char(s.expired_at::timestamptz AT TIME ZONE 'UTC',
                                                            'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                                       'platform', coalesce(s.platform, '')) AS data
             FROM users u
             JOIN (SELECT DISTINCT ON (s.customer_user_id) s.customer_user_id, s.expired_at, s.platform,
                          ceil(extract(epoch FROM s.expired_at::timestamptz - $4::timestamptz) / 86400)::int AS days
                   FROM customer_subscriptions s
                   WHERE s.status = 'active' AND s.deleted_at IS NULL
                     AND s.auto_renew_enabled IS NOT TRUE AND coalesce(s.platform, '') <> 'promo'
                     AND s.expired_at > $4::timestamptz + interval '{from} hours'
                     AND s.expired_at <= $4::timestamptz + interval '{to} hours'
                   ORDER BY s.customer_user_id, s.expired_at) s ON s.customer_user_id = u.id"
        )
    }
}

impl Job for SubscriptionExpiryAlerts {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let eligible = self.eligible();
            let spec = Engagement {
                message: &SUBSCRIPTION_EXPIRY,
                dedupe_prefix: "subscription-expiry",
                eligible: &eligible,
                lifetime: Lifetime::AfterTarget(Duration::from_secs(24 * 3600)),
            };
            local_time::run(ctx, &spec, &self.when, self.zones).await
        })
    }
}
