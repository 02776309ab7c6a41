//! `referral-tier3` (docs/jobs/referral-tier3.md).

use domain::Budget;
use domain::messages::{Message, REFERRAL_TIER3, WELCOME_VIP};
use engine::{Job, JobContext, JobDefaults, MisfirePolicy, RunFuture};
use sqlx::PgConnection;

use crate::referral::{ReferralAmounts, Tier, count_eligible, dry_report, pay_in_batches, tier3_eligible};

/// `referral-tier3`: pays the referrer when the referred user becomes a paying VIP.
#[derive(Debug, Clone)]
pub struct ReferralTier3 {
    /// What it pays.
    pub amounts: ReferralAmounts,
    /// Per-run limits (docs/jobs/README.md).
    pub budget: Budget,
    /// Hand the users it pays to `badge-auto-unlock`'s event runs (as [`ReferralTier2::hand_over_to_badges`]).
    pub hand_over_to_badges: bool,
}

impl ReferralTier3 {
    /// Its name and default schedule (docs/jobs/referral-tier3.md).
    pub const DEFAULTS: JobDefaults = JobDefaults::new("referral-tier3", "* * * * *", MisfirePolicy::RunOnce, 5);
}

impl Tier for ReferralTier3 {
    const TOPIC: &'static str = Self::DEFAULTS.name;

    fn hand_over_to_badges(&self) -> bool {
        self.hand_over_to_badges
    }

    fn condition(&self) -> String {
        tier3_eligible()
    }

    fn state(&self) -> &'static str {
        "r.status = 'completed' AND r.tier = 2"
    }

    fn advance(&self) -> String {
        format!(
            "tier = 3, status = 'rewarded', reward_claimed_at = $3,
             referrer_reward_credits = coalesce(r.referrer_reward_credits, 0) + {},
             referrer_reward_xp = coalesce(r.referrer_reward_xp, 0) + {},
             referred_subscribed_at = (
                 SELECT min(s.started_at) FROM customer_subscriptions s
                 WHERE s.customer_user_id = r.referred_user_id AND s.status = 'active'
                   AND s.started_at >= r.created_at AND coalesce(s.platform, '') <> 'promo')",
            self.amounts.tier3_referrer_credits, self.amounts.tier3_referrer_xp
        )
    }

    async fn stage_grants(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO hattrick_credit_grants (idempotency_key, customer_user_id, amount, transaction_type,
                 description, reference_id, reference_type)
             SELECT 'referral:' || id || ':tier3:credits', referrer_user_id, $1, 'referral_bonus',
                    'Arkadaşın VIP oldu! (Tier 3)', id, 'referral'
             FROM hattrick_referral_batch WHERE $1 > 0",
            self.amounts.tier3_referrer_credits,
        )
        .execute(db::unnamed(&mut *tx))
        .await?;
        sqlx::query!(
            "INSERT INTO hattrick_xp_grants (idempotency_key, customer_user_id, xp_amount, transaction_type,
                 description, reference_id, reference_type)
             SELECT 'referral:' || id || ':tier3:xp', referrer_user_id, $1, 'referral_signup',
                    'Arkadaşın VIP oldu! (Tier 3)', id, 'referral'
             FROM hattrick_referral_batch WHERE $1 > 0",
            self.amounts.tier3_referrer_xp,
        )
        .execute(db::unnamed(&mut *tx))
        .await?;
        Ok(())
    }

    fn pushes(&self) -> Vec<(&'static Message, String)> {
        let (credits, xp) = (self.amounts.tier3_referrer_credits, self.amounts.tier3_referrer_xp);
        vec![
            (
                &REFERRAL_TIER3,
                format!(
                    "INSERT INTO hattrick_push_batch (dedupe_key, customer_user_id, vars, data)
                     SELECT 'referral-tier3:' || id, referrer_user_id,
                            jsonb_build_object('credits', '{credits}', 'xp', '{xp}'),
                            jsonb_build_object('referralId', id::text)
                     FROM hattrick_referral_batch"
                ),
            ),
            (
                &WELCOME_VIP,
                "INSERT INTO hattrick_push_batch (dedupe_key, customer_user_id, data)
                 SELECT 'welcome-vip:' || id, referred_user_id, jsonb_build_object('referralId', id::text)
                 FROM hattrick_referral_batch"
                    .to_owned(),
            ),
        ]
    }
}

impl Job for ReferralTier3 {
    fn incremental(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> RunFuture<'a> {
        Box::pin(async move {
            if ctx.args.dry_run {
                let eligible = count_eligible(&ctx.pool, &tier3_eligible(), ctx.now).await?;
                return Ok(dry_report(eligible, serde_json::json!({})));
            }
            let totals = pay_in_batches(self, &self.budget, ctx).await?;
            Ok(totals.report(serde_json::json!({})))
        })
    }
}
