//! `referral-tier2` (docs/jobs/referral-tier2.md).

use domain::Budget;
use domain::messages::{Message, REFERRAL_TIER2, WELCOME_BONUS};
use engine::{Job, JobContext, JobDefaults, MisfirePolicy, RunFuture, Trigger};
use sqlx::PgConnection;

use crate::referral::{ReferralAmounts, Tier, count_eligible, dry_report, pay_in_batches, tier2_eligible};

/// `referral-tier2`: pays first logins, then marks expired referrals `expired`.
#[derive(Debug, Clone)]
pub struct ReferralTier2 {
    /// What it pays.
    pub amounts: ReferralAmounts,
    /// Per-run limits (docs/jobs/README.md).
    pub budget: Budget,
    /// Hand the users it pays to `badge-auto-unlock`'s event runs (their referral count and credits changed):
    /// true when events are on, so a `referrals` badge follows a payment within seconds.
    pub hand_over_to_badges: bool,
}

impl ReferralTier2 {
    /// Its name and default schedule (docs/jobs/referral-tier2.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("referral-tier2", "* * * * *", MisfirePolicy::RunOnce, 5);
}

impl Tier for ReferralTier2 {
    const TOPIC: &'static str = Self::DEFAULTS.name;

    fn hand_over_to_badges(&self) -> bool {
        self.hand_over_to_badges
    }

    fn condition(&self) -> String {
        tier2_eligible()
    }

    fn state(&self) -> &'static str {
        "r.status = 'pending' AND coalesce(r.tier, 1) = 1"
    }

    fn advance(&self) -> String {
        format!(
            "tier = 2, status = 'completed',
             referrer_reward_credits = coalesce(r.referrer_reward_credits, 0) + {},
             referred_reward_credits = coalesce(r.referred_reward_credits, 0) + {}",
            self.amounts.tier2_referrer_credits, self.amounts.tier2_referred_credits
        )
    }

    async fn stage_grants(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO hattrick_credit_grants (idempotency_key, customer_user_id, amount, transaction_type,
                 description, reference_id, reference_type)
             SELECT 'referral:' || id || ':tier2:referrer', referrer_user_id, $1::int, 'referral_bonus',
                    'Arkadaşın giriş yaptı! (Tier 2)', id, 'referral'
             FROM hattrick_referral_batch WHERE $1 > 0
             UNION ALL
             SELECT 'referral:' || id || ':tier2:referred', referred_user_id, $2::int, 'referral_bonus',
                    'Hoş geldin! Giriş bonusu', id, 'referral'
             FROM hattrick_referral_batch WHERE $2 > 0",
            self.amounts.tier2_referrer_credits,
            self.amounts.tier2_referred_credits,
        )
        .execute(db::unnamed(tx))
        .await?;
        Ok(())
    }

    fn pushes(&self) -> Vec<(&'static Message, String)> {
        let push = |key: &str, user: &str, credits: i32| {
            format!(
                "INSERT INTO hattrick_push_batch (dedupe_key, customer_user_id, vars, data)
                 SELECT '{key}:' || id, {user}, jsonb_build_object('credits', '{credits}'),
                        jsonb_build_object('referralId', id::text)
                 FROM hattrick_referral_batch"
            )
        };
        vec![
            (&REFERRAL_TIER2, push("referral-tier2", "referrer_user_id", self.amounts.tier2_referrer_credits)),
            (&WELCOME_BONUS, push("welcome-bonus", "referred_user_id", self.amounts.tier2_referred_credits)),
        ]
    }
}

impl Job for ReferralTier2 {
    fn incremental(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            let condition = tier2_eligible();
            let expiring = format!(
                "FROM referrals r
                 JOIN customer_users referrer ON referrer.id = r.referrer_user_id
                 JOIN customer_users referred ON referred.id = r.referred_user_id
                 WHERE r.status = 'pending' AND r.expires_at <= $1 AND NOT coalesce(({condition}), false)"
            );
            if ctx.args.dry_run {
                let eligible = count_eligible(&ctx.pool, &condition, ctx.now).await?;
                let expiring: i64 = db::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) {expiring}")))
                    .bind(ctx.now)
                    .fetch_one(&ctx.pool)
                    .await?;
                return Ok(dry_report(eligible, serde_json::json!({ "would_expire": expiring })));
            }
            let totals = pay_in_batches(self, &self.budget, ctx).await?;
            if ctx.trigger == Trigger::Event {
                // Expiry is the sweep's: an event run only pays the logins it was told about.
                return Ok(totals.report(serde_json::json!({})));
            }
            // Expire what did not qualify in time (after paying: a login before the deadline still counts). The
            // status is checked again on the row updated: one that a concurrent run paid while this statement
            // waited for its lock is re-read after the wait, and must stay paid.
            let expired = db::query(sqlx::AssertSqlSafe(format!(
                "UPDATE referrals x SET status = 'expired' FROM (SELECT r.id {expiring}) e
                 WHERE x.id = e.id AND x.status = 'pending'"
            )))
            .bind(ctx.now)
            .execute(&ctx.pool)
            .await?
            .rows_affected();
            Ok(totals.report(serde_json::json!({ "expired": expired })))
        })
    }
}
