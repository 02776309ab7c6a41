//! `daily-reward-reminders` (docs/jobs/daily-reward-reminders.md).

use domain::DayZones;
use domain::delivery::{self, DeliveryWindow, Engagement, Lifetime};
use domain::messages::DAILY_REWARD_REMINDER;
use engine::{Job, JobContext, JobDefaults, MisfirePolicy, RunFuture};

/// `daily-reward-reminders` (docs/jobs/daily-reward-reminders.md): users who have not claimed today's reward, claimed
/// at least once in the last 7 days, allow pushes and have a device, are reminded of the credits their next cycle day
/// pays.
#[derive(Debug, Clone)]
pub struct DailyRewardReminders {
    /// When, on each user's clock.
    pub when: DeliveryWindow,
    /// Where users' days are computed.
    pub zones: DayZones,
    /// Credits of cycle days 1 to 7.
    pub credits: [i32; 7],
}

impl DailyRewardReminders {
    /// Its name and default schedule (docs/jobs/daily-reward-reminders.md).
    pub const DEFAULTS: JobDefaults =
        JobDefaults::new("daily-reward-reminders", "*/15 * * * *", MisfirePolicy::Skip, 10);
}

impl DailyRewardReminders {
    /// The defaults of docs/jobs/daily-reward-reminders.md: 20:00, credits 10, 15, 20, 25, 30, 40, 100.
    pub fn new(zones: DayZones) -> Self {
        Self { when: DeliveryWindow::at_hour(20), zones, credits: [10, 15, 20, 25, 30, 40, 100] }
    }

    fn eligible(&self) -> String {
        let credits = self.credits.map(|c| c.to_string()).join(", ");
        // The next cycle day: the day after the last claim's when that claim was yesterday (7 wraps to 1), else 1.
        format!(
            "SELECT u.id AS customer_user_id, u.locale,
                    jsonb_build_object('credits', n.credits) AS vars,
                    jsonb_build_object('day', n.day::text, 'credits', n.credits::text) AS data
             FROM users u
             JOIN (SELECT DISTINCT ON (r.customer_user_id) r.customer_user_id, r.reward_date, r.day_number
                   FROM customer_daily_rewards r
                   WHERE r.reward_date >= $5::date - 7 AND r.customer_user_id BETWEEN $14 AND $15
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
            delivery::run(ctx, &spec, &self.when, self.zones).await
        })
    }
}
