//! The jobs hattrick runs and their defaults (SPEC 2): the names configuration may refer to.

use std::time::Duration;

use engine::MisfirePolicy;

/// A job's name and default schedule.
#[derive(Debug, Clone, Copy)]
pub struct JobDefaults {
    /// The job's name, as used in configuration, the CLI and the run log.
    pub name: &'static str,
    /// 5-field cron, read in the business zone.
    pub schedule: &'static str,
    /// What to do about ticks missed during downtime.
    pub misfire: MisfirePolicy,
    /// How long one run may take before it is cancelled.
    pub timeout: Duration,
}

const fn job(name: &'static str, schedule: &'static str, misfire: MisfirePolicy, timeout_secs: u64) -> JobDefaults {
    JobDefaults { name, schedule, misfire, timeout: Duration::from_secs(timeout_secs) }
}

/// Every job, in the order of SPEC 2.
pub const JOBS: &[JobDefaults] = &[
    job("badge-auto-unlock", "*/5 * * * *", MisfirePolicy::RunOnce, 15 * 60),
    job("referral-tier2", "* * * * *", MisfirePolicy::RunOnce, 5 * 60),
    job("referral-tier3", "* * * * *", MisfirePolicy::RunOnce, 5 * 60),
    job("scheduled-notifications", "* * * * *", MisfirePolicy::RunOnce, 10 * 60),
    job("daily-reward-reminders", "*/15 * * * *", MisfirePolicy::Skip, 10 * 60),
    job("streak-break-warnings", "*/15 * * * *", MisfirePolicy::Skip, 10 * 60),
    job("subscription-expiry-alerts", "*/15 * * * *", MisfirePolicy::Skip, 10 * 60),
    job("partner-analytics", "5 0 * * *", MisfirePolicy::All, 30 * 60),
    job("dead-token-cleanup", "0 3 * * 0", MisfirePolicy::Latest, 60 * 60),
    job("old-logs-cleanup", "0 4 1 * *", MisfirePolicy::Latest, 4 * 60 * 60),
    job("streak-reset", "1 0 * * *", MisfirePolicy::Latest, 15 * 60),
];

/// The job called `name`.
pub fn find(name: &str) -> Option<&'static JobDefaults> {
    JOBS.iter().find(|j| j.name == name)
}

/// Every job name, comma-separated, for error messages.
pub fn names() -> String {
    JOBS.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
}
