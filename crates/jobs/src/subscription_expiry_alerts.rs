//! `subscription-expiry-alerts` (docs/jobs/subscription-expiry-alerts.md).

use std::time::Duration;

use domain::DayZones;
use domain::delivery::{self, DeliveryWindow, Engagement, Lifetime};
use domain::messages::SUBSCRIPTION_EXPIRY;
use engine::{Job, JobContext, JobDefaults, MisfirePolicy, RunFuture};

/// `subscription-expiry-alerts` (docs/jobs/subscription-expiry-alerts.md): paid active subscriptions without auto-renew
/// that end in (target + `days` - 1 days, target + `days` days], the window anchored at the target instant so that
/// consecutive days tile time whatever the tick that served the user. One push per user, naming the earliest such
/// expiry.
#[derive(Debug, Clone)]
pub struct SubscriptionExpiryAlerts {
    /// When, on each user's clock.
    pub when: DeliveryWindow,
    /// Where users' days are computed.
    pub zones: DayZones,
    /// How many days ahead an expiry is announced.
    pub days: u32,
}

impl SubscriptionExpiryAlerts {
    /// Its name and default schedule (docs/jobs/subscription-expiry-alerts.md).
    pub const DEFAULTS: JobDefaults =
        JobDefaults::new("subscription-expiry-alerts", "*/15 * * * *", MisfirePolicy::Skip, 10);
}

impl SubscriptionExpiryAlerts {
    /// The defaults of docs/jobs/subscription-expiry-alerts.md: 10:00, three days ahead.
    pub fn new(zones: DayZones) -> Self {
        Self { when: DeliveryWindow::at_hour(10), zones, days: 3 }
    }

    fn eligible(&self) -> String {
        // Whole hours, not days: a day across a DST change in the session zone is not 24 hours.
        let from = (self.days.max(1) - 1) * 24;
        let to = self.days.max(1) * 24;
        format!(
            "SELECT u.id AS customer_user_id, u.locale,
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
            delivery::run(ctx, &spec, &self.when, self.zones).await
        })
    }
}
