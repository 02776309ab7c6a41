//! `referral-tier2` and `referral-tier3` (docs/jobs/referral-tier2.md, docs/jobs/referral-tier3.md).
//!
//! Each run evaluates eligibility once into a session queue, then works in batches: one transaction locks a batch
//! of queued referrals still in the expected state (`FOR UPDATE SKIP LOCKED`, so two runs at once share the work
//! instead of paying it twice), grants through the ledger, writes the pushes and
//! moves the referrals to their next state. Idempotency keys (`referral:{id}:tier2:referrer`, ...) and dedupe keys
//! (`referral-tier2:{id}`, ...) make a repeat impossible even if a state change were lost.

use chrono::{DateTime, Utc};
use engine::{JobContext, JobError, JobReport, Trigger};
use sqlx::PgConnection;
use uuid::Uuid;

use domain::messages::Message;
use domain::outbox::{self, Category};
use domain::{Budget, Spending, ledger};

/// Referrals per transaction.
pub(crate) const BATCH: i64 = 5_000;
/// Changes one event run takes at most (the next run takes the rest).
pub(crate) const EVENT_BATCH: i64 = 50_000;

/// What the referral tiers pay (docs/jobs/referral-tier2.md, docs/jobs/referral-tier3.md defaults: 50 and 10 credits at
/// tier 2; 200 credits and 500 XP at tier 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferralAmounts {
    /// Credits to the referrer at tier 2.
    pub tier2_referrer_credits: i32,
    /// Credits to the referred user at tier 2.
    pub tier2_referred_credits: i32,
    /// Credits to the referrer at tier 3.
    pub tier3_referrer_credits: i32,
    /// XP to the referrer at tier 3.
    pub tier3_referrer_xp: i32,
}

impl Default for ReferralAmounts {
    fn default() -> Self {
        Self {
            tier2_referrer_credits: 50,
            tier2_referred_credits: 10,
            tier3_referrer_credits: 200,
            tier3_referrer_xp: 500,
        }
    }
}

/// Both users of a referral must be live to be paid (docs/jobs/README.md).
pub(crate) const LIVE_USERS: &str = "referrer.deleted_at IS NULL AND referrer.is_active IS NOT FALSE
     AND referred.deleted_at IS NULL AND referred.is_active IS NOT FALSE";

/// A pending tier-1 referral whose referred user logged in at least 10 minutes after the referral was created
/// (a sign-up stamps a login) and before it expired; `$1` is now.
pub(crate) fn tier2_eligible() -> String {
    format!(
        "r.status = 'pending' AND coalesce(r.tier, 1) = 1 AND {LIVE_USERS}
         AND (
             (referred.last_login_at >= r.created_at + interval '10 minutes'
              AND referred.last_login_at < r.expires_at AND referred.last_login_at <= $1)
             OR EXISTS (SELECT 1 FROM customer_oauth_identities i
                        WHERE i.customer_user_id = r.referred_user_id
                          AND i.last_login_at >= r.created_at + interval '10 minutes'
                          AND i.last_login_at < r.expires_at AND i.last_login_at <= $1))"
    )
}

/// A tier-2 referral whose referred user has a paid active subscription that started at or after the referral;
/// promotional VIP and trials do not count (docs/jobs/README.md, docs/jobs/referral-tier2.md,
/// docs/jobs/referral-tier3.md).
pub(crate) fn tier3_eligible() -> String {
    format!(
        "r.status = 'completed' AND r.tier = 2 AND {LIVE_USERS}
         AND EXISTS (SELECT 1 FROM customer_subscriptions s
                     WHERE s.customer_user_id = r.referred_user_id AND s.status = 'active' AND s.expired_at > $1
                       AND s.started_at >= r.created_at AND s.started_at <= $1
                       AND coalesce(s.platform, '') <> 'promo' AND s.deleted_at IS NULL)"
    )
}

/// The run's scratch table: its queue of referrals to pay.
const RUN_TABLES: &[&str] = &["hattrick_run_referral_queue"];

/// Deletes the run's queue.
pub(crate) async fn clear_queue(pool: &db::Pool, run: Uuid) -> Result<(), sqlx::Error> {
    db::clear_run_rows(pool, run, RUN_TABLES).await
}

/// Evaluates `condition` once for the whole run, into the run's queue of referrals to pay.
pub(crate) async fn fill_queue(ctx: &JobContext, condition: &str) -> Result<u64, JobError> {
    let sql = format!(
        "INSERT INTO hattrick_run_referral_queue (run_id, referral_id)
         SELECT $2, r.id FROM referrals r
         JOIN customer_users referrer ON referrer.id = r.referrer_user_id
         JOIN customer_users referred ON referred.id = r.referred_user_id
         WHERE {condition}"
    );
    crate::fill_run_table(ctx, &sql, "hattrick_run_referral_queue").await
}

/// The next batch of the queue after `cursor`: the referrals of it still in `state` (another run may have paid some
/// meanwhile) are locked, moved to their next state with `advance` (a `SET` list; `$3` is now) and copied into the
/// scratch table. Returns how many were moved and the queue position reached (None at the end of the queue). The
/// grants that follow are in the same transaction: if any fails, the state change is rolled back with them.
pub(crate) async fn lock_and_advance(
    conn: &mut PgConnection,
    run: Uuid,
    state: &str,
    advance: &str,
    cursor: Uuid,
    now: DateTime<Utc>,
) -> Result<(u64, Option<Uuid>), sqlx::Error> {
    // Driven by the queue, one primary-key lookup per queued referral (the subquery with FOR UPDATE is never
    // flattened into a join that would scan the referrals table instead).
    let sql = format!(
        "WITH next AS (
             SELECT referral_id AS id FROM hattrick_run_referral_queue
             WHERE run_id = $4 AND referral_id > $1 ORDER BY referral_id LIMIT $2),
         locked AS (
             SELECT l.id FROM next
             CROSS JOIN LATERAL (SELECT r.id FROM referrals r WHERE r.id = next.id AND {state}
                                 FOR UPDATE OF r SKIP LOCKED) l),
         moved AS (
             UPDATE referrals r SET {advance} FROM locked WHERE r.id = locked.id
             RETURNING r.id, r.referrer_user_id, r.referred_user_id),
         batch AS (
             INSERT INTO hattrick_referral_batch (id, referrer_user_id, referred_user_id)
             SELECT id, referrer_user_id, referred_user_id FROM moved
             RETURNING id)
         SELECT (SELECT count(*) FROM batch), (SELECT max(id::text)::uuid FROM next)"
    );
    let (moved, reached): (i64, Option<Uuid>) =
        db::query_as(sqlx::AssertSqlSafe(sql)).bind(cursor).bind(BATCH).bind(now).bind(run).fetch_one(conn).await?;
    Ok((u64::try_from(moved).unwrap_or(0), reached))
}

pub(crate) async fn count_eligible(pool: &db::Pool, condition: &str, now: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT count(*) FROM referrals r
         JOIN customer_users referrer ON referrer.id = r.referrer_user_id
         JOIN customer_users referred ON referred.id = r.referred_user_id
         WHERE {condition}"
    );
    db::query_scalar(sqlx::AssertSqlSafe(sql)).bind(now).fetch_one(pool).await
}

/// Totals of one run, for its report.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) referrals: i64,
    pub(crate) credit_rows: i64,
    pub(crate) credits: i64,
    pub(crate) xp_rows: i64,
    pub(crate) level_ups: i64,
    pub(crate) pushes: i64,
    pub(crate) batches: i64,
}

/// What one tier does with a locked batch (`hattrick_referral_batch`); [`pay_in_batches`] does the rest.
pub(crate) trait Tier {
    /// The job's name: the topic of the app's changes its event runs act on.
    const TOPIC: &'static str;
    /// Which referrals qualify (`$1` is now).
    fn condition(&self) -> String;
    /// The state a queued referral must still be in when its batch is locked.
    fn state(&self) -> &'static str;
    /// The `SET` list that moves a locked referral `r` to its next state (`$3` is now).
    fn advance(&self) -> String;
    /// Fills the ledger's scratch tables with the batch's grants.
    async fn stage_grants(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error>;
    /// The pushes of a batch, in order: their message and the statement filling `hattrick_push_batch` for it.
    fn pushes(&self) -> Vec<(&'static Message, String)>;
    /// Whether the users a batch pays become changes for `badge-auto-unlock` (events on).
    fn hand_over_to_badges(&self) -> bool;
}

/// Locks and advances, pays and pushes eligible referrals batch after batch, each batch one transaction.
pub(crate) async fn pay_in_batches<T: Tier>(tier: &T, budget: &Budget, ctx: &JobContext) -> Result<Totals, JobError> {
    let spending = Spending::new(*budget);
    let run = ctx.run_id;
    clear_queue(&ctx.pool, run).await?;
    crate::purge_dead_run_rows(ctx, RUN_TABLES).await?;
    // An event run looks only at the referrals of the users whose logins or subscriptions changed (docs/events.md).
    let event = ctx.trigger == Trigger::Event;
    let condition = if event {
        engine::events::take(&ctx.pool, run, T::TOPIC, EVENT_BATCH, db::Reading::Counted).await?;
        format!(
            "({}) AND EXISTS (SELECT 1 FROM hattrick_run_subjects e
                              WHERE e.run_id = $2 AND e.subject = r.referred_user_id)",
            tier.condition()
        )
    } else {
        tier.condition()
    };
    fill_queue(ctx, &condition).await?;
    let write = !ctx.args.silent;
    let mut totals = Totals::default();
    let mut cursor = Uuid::nil(); // sorts before every real id
    loop {
        ctx.check_cancelled()?;
        let mut tx = ctx.begin().await?;
        domain::scratch::prepare(&mut tx).await?;
        let (moved, reached) = lock_and_advance(&mut tx, run, tier.state(), &tier.advance(), cursor, ctx.now).await?;
        let Some(reached) = reached else {
            tx.commit().await?;
            clear_queue(&ctx.pool, run).await?;
            if event {
                engine::events::finish(&ctx.pool, run).await?;
            }
            return Ok(totals);
        };
        cursor = reached;
        tier.stage_grants(&mut tx).await?;
        let mut share = spending.batch();
        let mut pushes = 0;
        for (message, stage) in tier.pushes() {
            db::query(sqlx::AssertSqlSafe(stage)).execute(&mut *tx).await?;
            // A silent back-fill writes no push, so no push budget can stop it.
            let flushed = outbox::flush(&mut tx, message, Category::Reward, ctx.now, write).await?;
            share.pushed(flushed)?;
            pushes += flushed;
        }
        if tier.hand_over_to_badges() && moved > 0 {
            // hattrick's own writes are not captured by the triggers: say explicitly whose badge inputs changed.
            sqlx::query!(
                "INSERT INTO hattrick_changes (topic, subject)
                 SELECT $1, referrer_user_id FROM hattrick_referral_batch
                 UNION SELECT $1, referred_user_id FROM hattrick_referral_batch",
                crate::BadgeAutoUnlock::DEFAULTS.name,
            )
            .execute(db::unnamed(&mut tx))
            .await?;
        }
        // The ledger last: it locks the users' balance rows, which the app writes too, and the app waits on them
        // until this transaction commits (docs/ledger.md).
        let applied = ledger::apply(&mut tx, ctx.now, write).await?;
        share.granted(applied.credit_rows + applied.xp_rows)?;
        // Kept even when the commit reports an error (it may have committed all the same); the run fails either way.
        let committed = tx.commit().await;
        share.keep();
        committed?;
        totals.add(i64::try_from(moved).unwrap_or(i64::MAX), applied, pushes);
    }
}

impl Totals {
    pub(crate) fn add(&mut self, referrals: i64, applied: ledger::Applied, pushes: i64) {
        self.referrals += referrals;
        self.credit_rows += applied.credit_rows;
        self.credits += applied.credits;
        self.xp_rows += applied.xp_rows;
        self.level_ups += applied.level_ups;
        self.pushes += pushes;
        self.batches += 1;
    }

    pub(crate) fn report(&self, extra: serde_json::Value) -> JobReport {
        let mut details = serde_json::json!({
            "referrals_paid": self.referrals,
            "credit_grants": self.credit_rows,
            "credits": self.credits,
            "xp_grants": self.xp_rows,
            "level_ups": self.level_ups,
            "pushes": self.pushes,
            "batches": self.batches,
        });
        if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
            details.extend(extra.clone());
        }
        JobReport { items: self.referrals, details }
    }
}

pub(crate) fn dry_report(eligible: i64, extra: serde_json::Value) -> JobReport {
    let mut details = serde_json::json!({ "dry_run": true, "would_pay": eligible });
    if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
        details.extend(extra.clone());
    }
    JobReport { items: eligible, details }
}
