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

/// Runs `sql`, an `INSERT` into the run-keyed scratch `table` (`$1` is the run's now, `$2` its id), in a transaction
/// of the run, then `ANALYZE`s the table: the statements that read it are planned for its size, which autovacuum
/// would notice only later. Returns the rows inserted.
pub(crate) async fn fill_run_table(ctx: &engine::JobContext, sql: &str, table: &str) -> Result<u64, sqlx::Error> {
    let mut tx = ctx.begin().await?;
    let filled =
        db::query(sqlx::AssertSqlSafe(sql)).bind(ctx.now).bind(ctx.run_id).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(&ctx.pool).await?;
    Ok(filled)
}
