//! The jobs hattrick runs, one module each, named after the job. Each declares its name and default schedule
//! (`DEFAULTS`) beside its code; `hattrick`'s job table lists them once, with how configuration builds each. What
//! every job promises is written in `docs/jobs/`, one page per job.
//!
//! The jobs share the domain crate (the ledger, the outbox, message texts, segments, local-time delivery); what two
//! jobs of a family share lives in [`referral`] (the two referral tiers) and [`cleanup`] (the two cleanups).

pub mod badge_auto_unlock;
pub mod cleanup;
pub mod daily_reward_reminders;
pub mod dead_token_cleanup;
pub mod old_logs_cleanup;
pub mod partner_analytics;
pub mod referral;
pub mod referral_tier2;
pub mod referral_tier3;
pub mod scheduled_notifications;
pub mod streak_break_warnings;
pub mod streak_reset;
pub mod subscription_expiry_alerts;

pub use badge_auto_unlock::BadgeAutoUnlock;
pub use daily_reward_reminders::DailyRewardReminders;
pub use dead_token_cleanup::DeadTokenCleanup;
pub use old_logs_cleanup::OldLogsCleanup;
pub use partner_analytics::PartnerAnalytics;
pub use referral::ReferralAmounts;
pub use referral_tier2::ReferralTier2;
pub use referral_tier3::ReferralTier3;
pub use scheduled_notifications::ScheduledNotifications;
pub use streak_break_warnings::StreakBreakWarnings;
pub use streak_reset::StreakReset;
pub use subscription_expiry_alerts::SubscriptionExpiryAlerts;

/// Runs `sql`, an `INSERT` into the run-keyed scratch `table` (`$1` is the run's now, `$2` its id), in a transaction
/// of the run, then, unless the rows are few and the table already small to the planner (`db::stale_statistics`),
/// vacuums and analyzes the table: the statements that read it are planned for its size, which autovacuum would
/// notice only later, and its index answers alone (the new rows' pages are marked all-visible, so an index-only
/// scan reads no table page: a badge chunk's boundary over 4.5 M candidates took 45 ms before, 6 ms after, for a
/// vacuum of 0.2 s). An event run's few rows skip it: a vacuum per event run cost more than the run's own work. The
/// vacuum does not truncate the table's empty tail: that needs an exclusive lock, which every other run writing the
/// same table holds off, and the vacuum would wait up to 5 s for it while keeping the next run's vacuum of the table
/// waiting behind it (runs of the demo's day lost 10 s that way). Returns the rows inserted. The vacuum runs outside
/// a transaction but within the run's bounds: a run that times out or is interrupted cancels it too.
pub(crate) async fn fill_run_table(ctx: &engine::JobContext, sql: &str, table: &str) -> Result<u64, engine::JobError> {
    let mut tx = ctx.begin().await?;
    let filled =
        db::query(sqlx::AssertSqlSafe(sql)).bind(ctx.now).bind(ctx.run_id).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    if db::stale_statistics(&ctx.pool, table, filled, db::Reading::Counted).await? {
        ctx.outside_transaction(&format!("VACUUM (ANALYZE, TRUNCATE false) {table}"), None).await?;
    }
    Ok(filled)
}

/// Deletes what runs that died long ago left in the job's scratch `tables` and in the event runs' tables
/// ([`db::purge_dead_run_rows`]), when `ctx` is a scheduled or manual run that writes: the statement reads each
/// table whole, so event runs, about ten a second under an app's traffic, leave it to the sweeps, and a dry run
/// leaves it to a run that writes.
pub(crate) async fn purge_dead_run_rows(ctx: &engine::JobContext, tables: &[&str]) -> Result<(), sqlx::Error> {
    if ctx.trigger == engine::Trigger::Event || ctx.args.dry_run {
        return Ok(());
    }
    let all: Vec<&str> = tables.iter().chain(engine::events::RUN_TABLES).copied().collect();
    db::purge_dead_run_rows(&ctx.pool, &all).await
}
