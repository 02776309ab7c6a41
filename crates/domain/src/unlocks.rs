//! Paying badge unlocks: what `badge-auto-unlock` and an operator's badge grant both write for a badge a user has
//! just been given (docs/jobs/badge-auto-unlock.md).

use sqlx::PgConnection;

use crate::budget;
use crate::ledger;
use crate::messages::BADGE_UNLOCK;
use crate::outbox::{self, Category};

/// One unlock push per badge just given, in the user's language: the badge's names fill the message and its id
/// and slug ride in the data. Those values are built once per badge (`OFFSET 0` keeps the planner from building
/// them again for every unlock), not once per push.
const UNLOCK_PUSHES: outbox::Source = outbox::Source(
    "(SELECT 'badge:' || b.id || ':' || u.customer_user_id AS dedupe_key, u.customer_user_id, b.vars, b.data,
             b.image_url
      FROM hattrick_unlocks u
      JOIN (SELECT id, jsonb_build_object('name_tr', name_tr, 'name_en', name_en) AS vars,
                   jsonb_build_object('badgeId', id::text, 'badgeSlug', slug) AS data, icon_url AS image_url
            FROM badges OFFSET 0) b ON b.id = u.badge_id)",
);

/// What paying a batch of unlocks wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paid {
    /// Ledger rows written.
    pub applied: ledger::Applied,
    /// Promotional VIP subscriptions written.
    pub vip_extensions: i64,
    /// Pushes enqueued.
    pub pushes: i64,
}

/// Pays the badges in `hattrick_unlocks` (rows just inserted into `customer_badges`, in the caller's transaction):
/// promotional VIP days, the unlock pushes, XP and credits through the ledger, then `total_unlocks` (`write` false: a
/// silent back-fill, no pushes and no push budget). The ledger comes after everything that does not need it: it
/// locks the users' balance rows, which the app writes too (a login's streak, a reward claimed), and the app waits
/// on them until this transaction commits. `budget` is this batch's share of its run's budget: what it
/// wrote is counted as it writes (past a limit it fails, and the caller's transaction rolls back); the caller keeps
/// it once the transaction commits.
pub async fn pay_unlocks(
    conn: &mut PgConnection,
    now: chrono::DateTime<chrono::Utc>,
    write: bool,
    budget: &mut budget::Batch<'_>,
) -> Result<Paid, engine::JobError> {
    sqlx::query!(
        "INSERT INTO hattrick_xp_grants (idempotency_key, customer_user_id, xp_amount, transaction_type,
             description, reference_id, reference_type, metadata)
         SELECT 'badge:' || b.id || ':' || u.customer_user_id || ':xp', u.customer_user_id, b.reward_xp,
                'badge_unlock', 'Rozet: ' || b.name_tr, b.id, 'badge', jsonb_build_object('badge', b.slug)
         FROM hattrick_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_xp > 0",
    )
    .execute(db::unnamed(&mut *conn))
    .await?;
    sqlx::query!(
        "INSERT INTO hattrick_credit_grants (idempotency_key, customer_user_id, amount, transaction_type,
             description, reference_id, reference_type, metadata)
         SELECT 'badge:' || b.id || ':' || u.customer_user_id || ':credits', u.customer_user_id,
                b.reward_credits, 'badge_reward', 'Rozet: ' || b.name_tr, b.id, 'badge',
                jsonb_build_object('badge', b.slug)
         FROM hattrick_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_credits > 0",
    )
    .execute(db::unnamed(&mut *conn))
    .await?;
    // Promotional VIP days extend the user's current VIP, else start now (docs/jobs/badge-auto-unlock.md).
    let vip_rows = sqlx::query!(
        "INSERT INTO customer_subscriptions (customer_user_id, status, platform, amount, started_at,
             expired_at, auto_renew_enabled, created_at, updated_at)
         SELECT u.customer_user_id, 'active', 'promo', 0, $1,
                greatest($1, coalesce((SELECT max(s.expired_at) FROM customer_subscriptions s
                                       WHERE s.customer_user_id = u.customer_user_id
                                         AND s.status = 'active' AND s.deleted_at IS NULL), $1))
                  + b.reward_vip_days * interval '1 day',
                false, $1, $1
         FROM hattrick_unlocks u JOIN badges b ON b.id = u.badge_id WHERE b.reward_vip_days > 0",
        now,
    )
    .execute(db::unnamed(&mut *conn))
    .await?
    .rows_affected();
    // The pushes are read from the unlocks themselves (nothing staged); a silent back-fill writes none, so no push
    // budget applies to it.
    let pushes = if write {
        let pushes = outbox::insert(&mut *conn, UNLOCK_PUSHES, &BADGE_UNLOCK, Category::Reward, now).await?;
        budget.pushed(pushes)?;
        pushes
    } else {
        0
    };
    let applied = ledger::apply(&mut *conn, now, write).await?;
    budget.granted(applied.credit_rows + applied.xp_rows)?;
    // The counters last, their rows locked in id order: they are the only rows two batches of different users
    // share (chunks granted at once, an operator's grant beside a sweep), so a batch holds them only at its end
    // and two batches never lock them in opposite orders.
    sqlx::query!(
        "SELECT count(*) FROM (SELECT 1 FROM badges WHERE id IN (SELECT badge_id FROM hattrick_unlocks)
                               ORDER BY id FOR NO KEY UPDATE) locked",
    )
    .fetch_one(db::unnamed(&mut *conn))
    .await?;
    sqlx::query!(
        "UPDATE badges b SET total_unlocks = coalesce(b.total_unlocks, 0) + n.count, updated_at = $1
         FROM (SELECT badge_id, count(*) AS count FROM hattrick_unlocks GROUP BY badge_id) n
         WHERE b.id = n.badge_id",
        now,
    )
    .execute(db::unnamed(&mut *conn))
    .await?;
    Ok(Paid { applied, vip_extensions: i64::try_from(vip_rows).unwrap_or(i64::MAX), pushes })
}
