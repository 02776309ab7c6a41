//! `streak-break-warnings` (docs/jobs/streak-break-warnings.md).

use domain::DayZones;
use domain::delivery::{self, DeliveryWindow, Engagement, Lifetime};
use domain::messages::STREAK_WARNING;
use engine::{Job, JobContext, JobDefaults, MisfirePolicy, RunFuture};

/// `streak-break-warnings` (docs/jobs/streak-break-warnings.md, docs/jobs/streak-reset.md): users whose streak is alive
/// (at least `min_streak` days, last activity exactly yesterday in their day) but not yet extended today, told how many
/// hours are left until midnight.
#[derive(Debug, Clone)]
pub struct StreakBreakWarnings {
    /// When, on each user's clock.
    pub when: DeliveryWindow,
    /// Where users' days are computed.
    pub zones: DayZones,
    /// The shortest streak worth a warning.
    pub min_streak: i32,
}

impl StreakBreakWarnings {
    /// Its name and default schedule (docs/jobs/streak-break-warnings.md).
    pub const DEFAULTS: JobDefaults =
        JobDefaults::new("streak-break-warnings", "*/15 * * * *", MisfirePolicy::Skip, 10);
}

impl StreakBreakWarnings {
    /// The defaults of docs/jobs/streak-break-warnings.md, docs/jobs/streak-reset.md: 22:00, streaks of 3 days or more.
    pub fn new(zones: DayZones) -> Self {
        Self { when: DeliveryWindow::at_hour(22), zones, min_streak: 3 }
    }

    fn eligible(&self) -> String {
        let min_streak = self.min_streak;
        // Hours left: from the serving tick to the user's midnight, rounded up.
        format!(
            "SELECT u.id AS customer_user_id, u.locale,
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
            delivery::run(ctx, &spec, &self.when, self.zones).await
        })
    }
}
