//! Operators' actions on one user, through the ledger (the admin API and page): grant or revoke a badge, grant or
//! deduct credits or XP with a reason. Each runs in one transaction with the caller's audit row, so a change is
//! never stored without its record, nor a record without its change.
//!
//! - A granted badge is paid like an automatic unlock (same idempotency keys `badge:{badge}:{user}:xp|credits`):
//!   granting a badge the user had before, revoked since, does not pay again.
//! - Revoking deletes the badge row and lowers `total_unlocks`; rewards already paid stay paid (a deduction is a
//!   separate, explicit action).
//! - Adjustments are `admin_grant` / `admin_deduct` rows keyed `admin:{key}:credits|xp`; the caller's key (the
//!   API's `Idempotency-Key`) makes a retried request harmless. A deduction never takes a balance below zero.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::unlocks;
use crate::{Spending, ledger};

/// Why an operator action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The user, or the badge, does not exist (or the user is deleted).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be carried out as asked (the field, the problem).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// The request's idempotency key was used for a different request.
    #[error("{0}")]
    Conflict(String),
    /// A query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

impl From<engine::JobError> for ActionError {
    fn from(error: engine::JobError) -> Self {
        match error {
            engine::JobError::Sql(e) => ActionError::Sql(e),
            other => ActionError::Invalid("badge", other.to_string()),
        }
    }
}

/// What a badge grant did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadgeGrant {
    /// The badge's slug.
    pub badge: String,
    /// False when the user had the badge already (nothing changed).
    pub granted: bool,
    /// XP paid.
    pub xp: i64,
    /// Credits paid (level-up bonuses included).
    pub credits: i64,
    /// Pushes enqueued.
    pub pushes: i64,
}

/// What an adjustment did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Adjustment {
    /// False when the idempotency key was used before (nothing changed).
    pub applied: bool,
    /// The balance after (credits balance, or XP points).
    pub balance: i64,
    /// Level-ups the change crossed (XP grants only).
    pub level_ups: i64,
}

/// Which ledger an adjustment moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// `customer_credits` / `customer_credit_transactions`.
    Credits,
    /// `customer_xp` / `customer_xp_transactions`.
    Xp,
}

async fn live_user(conn: &mut PgConnection, user: Uuid) -> Result<(), ActionError> {
    let live: Option<bool> = sqlx::query_scalar!(
        r#"SELECT deleted_at IS NULL AND is_active IS NOT FALSE AS "live!" FROM customer_users WHERE id = $1"#,
        user
    )
    .fetch_optional(db::unnamed(conn))
    .await?;
    match live {
        Some(true) => Ok(()),
        Some(false) => Err(ActionError::Invalid("user", format!("user {user} is deleted or inactive"))),
        None => Err(ActionError::NotFound(format!("no user {user}"))),
    }
}

/// The badge named by `badge` (its id or its slug).
async fn find_badge(conn: &mut PgConnection, badge: &str) -> Result<(Uuid, String), ActionError> {
    let id = Uuid::parse_str(badge).ok();
    sqlx::query!("SELECT id, slug FROM badges WHERE (id = $1 OR slug = $2) AND deleted_at IS NULL", id, badge)
        .fetch_optional(db::unnamed(conn))
        .await?
        .map(|row| (row.id, row.slug))
        .ok_or_else(|| ActionError::NotFound(format!("no badge {badge}")))
}

/// Grants `badge` (id or slug; manual badges included) to `user` and pays its rewards, in `tx`.
pub async fn grant_badge(
    tx: &mut Transaction<'_, Postgres>,
    user: Uuid,
    badge: &str,
    now: DateTime<Utc>,
) -> Result<BadgeGrant, ActionError> {
    live_user(tx, user).await?;
    let (badge_id, slug) = find_badge(tx, badge).await?;
    crate::scratch::prepare(tx).await?;
    let inserted = sqlx::query!(
        r#"WITH inserted AS (
             INSERT INTO customer_badges (id, customer_user_id, badge_id, unlocked_at, metadata)
             VALUES (hattrick_uuid7(), $1, $2, $3, '{"source": "admin"}')
             ON CONFLICT (customer_user_id, badge_id) DO NOTHING
             RETURNING customer_user_id, badge_id)
         INSERT INTO hattrick_unlocks SELECT customer_user_id, badge_id FROM inserted"#,
        user,
        badge_id,
        now,
    )
    .execute(db::unnamed(tx))
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(BadgeGrant { badge: slug, granted: false, xp: 0, credits: 0, pushes: 0 });
    }
    // Operators' grants have no budget (docs/jobs/README.md).
    let paid = unlocks::pay_unlocks(tx, now, true, &mut Spending::unlimited().batch()).await?;
    Ok(BadgeGrant {
        badge: slug,
        granted: true,
        xp: paid.applied.xp,
        credits: paid.applied.credits,
        pushes: paid.pushes,
    })
}

/// Takes `badge` (id or slug) away from `user`, in `tx`. Returns false when the user did not have it.
pub async fn revoke_badge(
    tx: &mut Transaction<'_, Postgres>,
    user: Uuid,
    badge: &str,
    now: DateTime<Utc>,
) -> Result<bool, ActionError> {
    let exists: Option<Uuid> = sqlx::query_scalar!("SELECT id FROM customer_users WHERE id = $1", user)
        .fetch_optional(db::unnamed(tx))
        .await?;
    if exists.is_none() {
        return Err(ActionError::NotFound(format!("no user {user}")));
    }
    let (badge_id, _) = find_badge(tx, badge).await?;
    let removed =
        sqlx::query!("DELETE FROM customer_badges WHERE customer_user_id = $1 AND badge_id = $2", user, badge_id)
            .execute(db::unnamed(tx))
            .await?
            .rows_affected();
    if removed > 0 {
        sqlx::query!(
            "UPDATE badges SET total_unlocks = greatest(coalesce(total_unlocks, 0) - 1, 0), updated_at = $2
             WHERE id = $1",
            badge_id,
            now
        )
        .execute(db::unnamed(tx))
        .await?;
    }
    Ok(removed > 0)
}

/// The largest amount one adjustment may move (a guard against typos).
pub const MAX_ADJUSTMENT: i64 = 1_000_000;

/// Grants (`amount` > 0) or deducts (`amount` < 0) credits or XP for `user` with `reason`, in `tx`, keyed by
/// `key`.
pub async fn adjust(
    tx: &mut Transaction<'_, Postgres>,
    ledger_kind: Ledger,
    user: Uuid,
    amount: i64,
    reason: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Adjustment, ActionError> {
    if amount == 0 || amount.unsigned_abs() > MAX_ADJUSTMENT.unsigned_abs() {
        return Err(ActionError::Invalid(
            "amount",
            format!("must be non-zero and at most {MAX_ADJUSTMENT} either way"),
        ));
    }
    if reason.trim().is_empty() {
        return Err(ActionError::Invalid("reason", "must not be empty".to_owned()));
    }
    live_user(tx, user).await?;
    let (balances, column, grants, amount_column, suffix) = match ledger_kind {
        Ledger::Credits => ("customer_credits", "balance", "hattrick_credit_grants", "amount", "credits"),
        Ledger::Xp => ("customer_xp", "xp_points", "hattrick_xp_grants", "xp_amount", "xp"),
    };
    let key = format!("admin:{key}:{suffix}");
    let current: Option<i64> = db::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {column}::bigint FROM {balances} WHERE customer_user_id = $1 FOR UPDATE"
    )))
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    let current = current.unwrap_or(0);
    // A replay must repeat the original request (Stripe's rule): the same amount under the same key changes
    // nothing, whatever the balance is now; another amount is a conflict, not a silent no-op.
    let rows_table = match ledger_kind {
        Ledger::Credits => "customer_credit_transactions",
        Ledger::Xp => "customer_xp_transactions",
    };
    let original: Option<i32> = db::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {amount_column} FROM {rows_table} WHERE customer_user_id = $1 AND idempotency_key = $2"
    )))
    .bind(user)
    .bind(&key)
    .fetch_optional(&mut **tx)
    .await?;
    match original {
        Some(original) if i64::from(original) == amount => {
            return Ok(Adjustment { applied: false, balance: current, level_ups: 0 });
        }
        Some(original) => {
            return Err(ActionError::Conflict(format!(
                "the idempotency key was used for this user with amount {original}, not {amount}; \
                 a new adjustment needs a new key"
            )));
        }
        None => {}
    }
    if current + amount < 0 {
        return Err(ActionError::Invalid("amount", format!("would take the balance below zero (it is {current})")));
    }
    let amount = i32::try_from(amount).map_err(|_| ActionError::Invalid("amount", "too large".to_owned()))?;
    crate::scratch::prepare(tx).await?;
    let kind = if amount > 0 { "admin_grant" } else { "admin_deduct" };
    db::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {grants} (idempotency_key, customer_user_id, {amount_column}, transaction_type, description,
             metadata)
         VALUES ($1, $2, $3, $4, $5, '{{\"source\": \"admin\"}}')"
    )))
    .bind(&key)
    .bind(user)
    .bind(amount)
    .bind(kind)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    let applied = ledger::apply(tx, now, true).await?;
    let balance: i64 = db::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce((SELECT {column}::bigint FROM {balances} WHERE customer_user_id = $1), 0)"
    )))
    .bind(user)
    .fetch_one(&mut **tx)
    .await?;
    let rows = match ledger_kind {
        Ledger::Credits => applied.credit_rows,
        Ledger::Xp => applied.xp_rows,
    };
    Ok(Adjustment { applied: rows > 0, balance, level_ups: applied.level_ups })
}
