//! The job table: every job hattrick runs, once. Each row is a job's defaults (declared beside the job, in the
//! `jobs` crate) and how configuration builds it. Registration, configuration checks, the CLI and the tests all
//! read this table; adding a job is a module in `jobs`, a row here and a page in `docs/jobs/`.

use std::sync::Arc;

use anyhow::Context as _;
use domain::{Budget, DayZones, DeliveryWindow};
use engine::{Job, JobDefaults, JobDefinition, Registry};
use jobs::cleanup::Batching;
use jobs::old_logs_cleanup::Retention;
use jobs::{
    BadgeAutoUnlock, DailyRewardReminders, DeadTokenCleanup, OldLogsCleanup, PartnerAnalytics, ReferralAmounts,
    ReferralTier2, ReferralTier3, ScheduledNotifications, StreakBreakWarnings, StreakReset, SubscriptionExpiryAlerts,
};

use crate::config::Settings;
use crate::startup::day_zones;

/// One row of the job table.
#[derive(Debug, Clone, Copy)]
pub struct JobEntry {
    /// Its name and default schedule.
    pub defaults: JobDefaults,
    /// Builds the job from configuration.
    build: fn(&Wiring<'_>) -> anyhow::Result<Arc<dyn Job>>,
}

/// Every job, in the order of `docs/jobs/README.md`.
pub const JOBS: &[JobEntry] = &[
    JobEntry {
        defaults: BadgeAutoUnlock::DEFAULTS,
        build: |w| {
            let settings = w.settings.jobs.get(BadgeAutoUnlock::DEFAULTS.name);
            Ok(Arc::new(BadgeAutoUnlock {
                budget: w.budget(BadgeAutoUnlock::DEFAULTS),
                chunks_at_once: settings.and_then(|job| job.chunks_at_once).unwrap_or(1),
                unlocks_per_chunk: settings
                    .and_then(|job| job.unlocks_per_chunk)
                    .unwrap_or(jobs::badge_auto_unlock::UNLOCKS_PER_CHUNK),
            }))
        },
    },
    JobEntry {
        defaults: ReferralTier2::DEFAULTS,
        build: |w| {
            Ok(Arc::new(ReferralTier2 {
                amounts: w.referral_amounts()?,
                budget: w.budget(ReferralTier2::DEFAULTS),
                hand_over_to_badges: w.settings.events.enabled,
            }))
        },
    },
    JobEntry {
        defaults: ReferralTier3::DEFAULTS,
        build: |w| {
            Ok(Arc::new(ReferralTier3 {
                amounts: w.referral_amounts()?,
                budget: w.budget(ReferralTier3::DEFAULTS),
                hand_over_to_badges: w.settings.events.enabled,
            }))
        },
    },
    JobEntry {
        defaults: ScheduledNotifications::DEFAULTS,
        build: |w| {
            Ok(Arc::new(ScheduledNotifications {
                lifetime: w.settings.push.campaign_lifetime.0,
                stale_after: domain::campaign::STALE_AFTER,
                zones: w.zones,
                content: push::ContentRules { deep_link_schemes: w.settings.push.deep_link_schemes.clone() },
            }))
        },
    },
    JobEntry {
        defaults: DailyRewardReminders::DEFAULTS,
        build: |w| {
            let mut credits = [0i32; 7];
            for (day, (slot, value)) in credits.iter_mut().zip(&w.settings.rewards.daily_reward_credits).enumerate() {
                *slot = amount(&format!("daily_reward_credits[{day}]"), *value)?;
            }
            Ok(Arc::new(DailyRewardReminders { when: w.window("daily_reward_reminder_at")?, zones: w.zones, credits }))
        },
    },
    JobEntry {
        defaults: StreakBreakWarnings::DEFAULTS,
        build: |w| {
            Ok(Arc::new(StreakBreakWarnings {
                when: w.window("streak_warning_at")?,
                zones: w.zones,
                min_streak: w.settings.engagement.streak_warning_min_days,
            }))
        },
    },
    JobEntry {
        defaults: SubscriptionExpiryAlerts::DEFAULTS,
        build: |w| {
            Ok(Arc::new(SubscriptionExpiryAlerts {
                when: w.window("expiry_alert_at")?,
                zones: w.zones,
                days: w.settings.engagement.expiry_alert_days,
            }))
        },
    },
    JobEntry {
        defaults: PartnerAnalytics::DEFAULTS,
        build: |w| {
            Ok(Arc::new(PartnerAnalytics {
                business_zone: w.zones.business,
                base_currency: w.settings.rewards.base_currency.clone(),
            }))
        },
    },
    JobEntry {
        defaults: DeadTokenCleanup::DEFAULTS,
        build: |w| {
            Ok(Arc::new(DeadTokenCleanup { max_age: w.settings.cleanup.token_max_age.0, batching: w.batching() }))
        },
    },
    JobEntry {
        defaults: OldLogsCleanup::DEFAULTS,
        build: |w| {
            let cleanup = &w.settings.cleanup;
            Ok(Arc::new(OldLogsCleanup {
                retention: Retention {
                    ledgers: cleanup.keep_ledgers.0,
                    ad_views: cleanup.keep_ad_views.0,
                    likes: cleanup.keep_likes.0,
                    campaigns: cleanup.keep_campaigns.0,
                    job_logs: cleanup.keep_job_logs.0,
                    event_runs: cleanup.keep_event_runs.0,
                    outbox: cleanup.keep_outbox.0,
                },
                batching: w.batching(),
            }))
        },
    },
    JobEntry { defaults: StreakReset::DEFAULTS, build: |w| Ok(Arc::new(StreakReset { zones: w.zones })) },
];

/// The job called `name`.
pub fn find(name: &str) -> Option<&'static JobEntry> {
    JOBS.iter().find(|j| j.defaults.name == name)
}

/// Every job name, comma-separated, for error messages.
pub fn names() -> String {
    JOBS.iter().map(|j| j.defaults.name).collect::<Vec<_>>().join(", ")
}

/// What the build functions read: the settings and what is derived from them once.
struct Wiring<'a> {
    settings: &'a Settings,
    zones: DayZones,
}

impl Wiring<'_> {
    /// The per-run limits configured for a job.
    fn budget(&self, job: JobDefaults) -> Budget {
        let job = self.settings.jobs.get(job.name);
        Budget { max_grants: job.and_then(|j| j.max_grants), max_pushes: job.and_then(|j| j.max_pushes) }
    }

    fn referral_amounts(&self) -> anyhow::Result<ReferralAmounts> {
        let rewards = &self.settings.rewards;
        Ok(ReferralAmounts {
            tier2_referrer_credits: amount("tier2_referrer_credits", rewards.tier2_referrer_credits)?,
            tier2_referred_credits: amount("tier2_referred_credits", rewards.tier2_referred_credits)?,
            tier3_referrer_credits: amount("tier3_referrer_credits", rewards.tier3_referrer_credits)?,
            tier3_referrer_xp: amount("tier3_referrer_xp", rewards.tier3_referrer_xp)?,
        })
    }

    /// The delivery window of a local-time job, from the `engagement.<field>` time.
    fn window(&self, field: &str) -> anyhow::Result<DeliveryWindow> {
        let engagement = &self.settings.engagement;
        Ok(DeliveryWindow {
            at: engagement.local_time(field).map_err(anyhow::Error::msg)?,
            deadline: engagement.deadline.0,
            slices: engagement.parallelism,
        })
    }

    fn batching(&self) -> Batching {
        let cleanup = &self.settings.cleanup;
        Batching {
            batch: cleanup.batch,
            vacuum: cleanup.vacuum.then_some(cleanup.vacuum_timeout.0),
            rest: cleanup.rest,
            wal_per_second: (cleanup.wal_mb_per_second > 0.0).then_some(cleanup.wal_mb_per_second * crate::config::MIB),
        }
    }
}

/// A `rewards.<name>` amount as the i32 the app's columns hold.
fn amount(name: &str, value: i64) -> anyhow::Result<i32> {
    i32::try_from(value).with_context(|| format!("rewards.{name}: {value} is too large"))
}

/// The definition of a job: its defaults overridden by configuration, and whether configuration enables it.
pub fn definition(settings: &Settings, defaults: &JobDefaults) -> anyhow::Result<(JobDefinition, Option<bool>)> {
    let overrides = settings.jobs.get(defaults.name).cloned().unwrap_or_default();
    let zone = overrides.timezone.as_deref().unwrap_or(&settings.time.business_zone);
    let mut definition = JobDefinition::new(
        defaults.name,
        overrides.schedule.as_deref().unwrap_or(defaults.schedule),
        zone,
        overrides.misfire.unwrap_or(defaults.misfire),
    )?;
    definition.timeout = overrides.timeout.map_or(defaults.timeout, |t| t.0);
    if let Some(retries) = overrides.retries {
        definition.retries = retries;
    }
    if let Some(backoff) = overrides.retry_backoff {
        definition.retry_backoff = backoff.0;
    }
    Ok((definition, overrides.enabled))
}

/// Every job of the table, built from configuration, with its definition.
pub fn registry(settings: &Settings) -> anyhow::Result<Registry> {
    let wiring = Wiring { settings, zones: day_zones(settings)? };
    let mut registry = Registry::new();
    for entry in JOBS {
        let job = (entry.build)(&wiring).with_context(|| format!("building {}", entry.defaults.name))?;
        let (definition, enabled) = definition(settings, &entry.defaults)?;
        registry.register(definition, enabled, job);
    }
    Ok(registry)
}
