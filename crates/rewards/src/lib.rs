//! hattrick's domain: the jobs that reward and engage GoalGPT's users. SQL lives next to the logic it serves;
//! every job takes "now" from the engine's clock and passes it to SQL as a parameter.
//!
//! - [`ledger`] grants XP and credits set-based, with idempotency keys, levels and level-up bonuses;
//! - [`outbox`] writes pushes in the job's transaction, with the texts of [`messages`] in the user's language;
//! - [`badges`] holds `badge-auto-unlock`, over the unlock [`conditions`];
//! - [`referrals`] holds `referral-tier2` and `referral-tier3`, [`streak_reset`] holds `streak-reset`;
//! - [`engagement`] holds the three local-time jobs, delivered by [`local_time`];
//! - [`campaigns`] expands scheduled campaigns over [`segment`] filters; [`partners`] computes partner analytics;
//! - [`cleanup`] holds `dead-token-cleanup` and `old-logs-cleanup`, with ledger compaction.

pub mod badges;
pub mod budget;
pub mod campaigns;
pub mod cleanup;
pub mod conditions;
pub mod days;
pub mod engagement;
pub mod ledger;
pub mod local_time;
pub mod messages;
pub mod operator;
pub mod outbox;
pub mod partners;
pub mod referrals;
pub mod segment;
pub mod streak_reset;

pub use badges::BadgeAutoUnlock;
pub use budget::Budget;
pub use campaigns::ScheduledNotifications;
pub use days::DayZones;
pub use engagement::{DailyRewardReminders, StreakBreakWarnings, SubscriptionExpiryAlerts};
pub use local_time::LocalTime;
pub use partners::PartnerAnalytics;
pub use referrals::{ReferralAmounts, ReferralTier2, ReferralTier3};
pub use streak_reset::StreakReset;
