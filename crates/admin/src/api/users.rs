//! `/admin/users/{id}/...`: operator actions on a user, through the ledger.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ApiPath;
use crate::audit::{self, Entry};
use crate::auth::Actor;
use crate::error::{ApiError, Body, ErrorBody};
use crate::{Admin, request_id};
use domain::operator::{self, ActionError, Ledger};

pub(super) fn action_error(error: ActionError) -> ApiError {
    match error {
        ActionError::NotFound(message) => ApiError::not_found(message),
        ActionError::Invalid(path, message) => ApiError::validation([format!("{path}: {message}")]),
        ActionError::Conflict(message) => ApiError::conflict(message),
        ActionError::Sql(e) => ApiError::from(e),
    }
}

/// What a badge grant did.
#[derive(Debug, Clone, Serialize, ToSchema)]
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

impl From<operator::BadgeGrant> for BadgeGrant {
    fn from(g: operator::BadgeGrant) -> Self {
        Self { badge: g.badge, granted: g.granted, xp: g.xp, credits: g.credits, pushes: g.pushes }
    }
}

/// What an adjustment did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Adjustment {
    /// False when the idempotency key was used before (nothing changed).
    pub applied: bool,
    /// The balance after (credits, or XP points).
    pub balance: i64,
    /// Levels crossed upwards (XP grants only; each paid its bonus).
    pub level_ups: i64,
}

impl From<operator::Adjustment> for Adjustment {
    fn from(a: operator::Adjustment) -> Self {
        Self { applied: a.applied, balance: a.balance, level_ups: a.level_ups }
    }
}

/// A badge to grant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BadgeRequest {
    /// The badge's slug or id (manual badges included).
    pub badge: String,
}

/// Grants a badge and pays its rewards like an automatic unlock (once per user ever).
#[utoipa::path(post, path = "/admin/users/{id}/badges", tag = "users", request_body = BadgeRequest,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, body = BadgeGrant, description = "`granted` false when the user had it"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn grant_badge(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(user): ApiPath<Uuid>,
    Body(request): Body<BadgeRequest>,
) -> Result<Json<BadgeGrant>, ApiError> {
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let grant: BadgeGrant =
        operator::grant_badge(&mut tx, user, &request.badge, now).await.map_err(action_error)?.into();
    if grant.granted {
        let entry = Entry {
            actor: &actor.0,
            action: "badge.grant",
            target: user.to_string(),
            details: serde_json::json!({"badge": grant.badge, "xp": grant.xp, "credits": grant.credits}),
            request_id: request_id(&headers),
        };
        audit::record(&mut tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(Json(grant))
}

/// A badge revocation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadgeRevoked {
    /// False when the user did not have the badge.
    pub revoked: bool,
}

/// Takes a badge away (rewards already paid stay paid).
#[utoipa::path(delete, path = "/admin/users/{id}/badges/{badge}", tag = "users",
    params(("id" = Uuid, Path, description = "The user's id"), ("badge" = String, Path, description = "The badge's slug or id")),
    responses((status = 200, body = BadgeRevoked, description = "OK"), (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found")))]
pub(super) async fn revoke_badge(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath((user, badge)): ApiPath<(Uuid, String)>,
) -> Result<Json<BadgeRevoked>, ApiError> {
    let now = admin.engine.clock().now();
    let mut tx = admin.pool().begin().await?;
    let revoked = operator::revoke_badge(&mut tx, user, &badge, now).await.map_err(action_error)?;
    if revoked {
        let entry = Entry {
            actor: &actor.0,
            action: "badge.revoke",
            target: user.to_string(),
            details: serde_json::json!({"badge": badge}),
            request_id: request_id(&headers),
        };
        audit::record(&mut tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(Json(BadgeRevoked { revoked }))
}

/// A grant (positive) or deduction (negative).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// Non-zero, at most 1,000,000 either way; a deduction never takes the balance below zero.
    pub amount: i64,
    /// Why (kept in the ledger row's description and the audit log).
    pub reason: String,
}

pub(super) async fn adjust(
    admin: &Admin,
    actor: &Actor,
    headers: &HeaderMap,
    ledger: Ledger,
    user: Uuid,
    request: AdjustRequest,
) -> Result<Adjustment, ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 200 => key.to_owned(),
            _ => return Err(ApiError::validation(["Idempotency-Key: 1 to 200 visible ASCII characters"])),
        },
        None => Uuid::new_v4().to_string(),
    };
    let now = admin.engine.clock().now();
    let action = if ledger == Ledger::Credits { "credits.adjust" } else { "xp.adjust" };
    let mut tx = admin.pool().begin().await?;
    // One key is one request, whoever it is for: the same key for another user or amount is a conflict. The lock
    // makes the look-up and the write one step for concurrent requests with this key.
    sqlx::query!(
        r#"SELECT 1 AS "locked!" FROM pg_advisory_xact_lock(hashtextextended('hattrick:admin-key:' || $1, 0))"#,
        &key
    )
    .fetch_one(db::unnamed(&mut tx))
    .await?;
    let earlier = sqlx::query!(
        r#"SELECT action::text AS "action!", target, (details ->> 'amount')::bigint AS amount FROM hattrick_audit_log
           WHERE action IN ('credits.adjust', 'xp.adjust') AND details ->> 'key' = $1 ORDER BY id LIMIT 1"#,
        &key,
    )
    .fetch_optional(db::unnamed(&mut tx))
    .await?
    .map(|row| (row.action, row.target, row.amount));
    if let Some((earlier_action, target, amount)) = earlier
        && (earlier_action != action
            || target.as_deref() != Some(user.to_string().as_str())
            || amount != Some(request.amount))
    {
        return Err(ApiError::conflict(format!(
            "Idempotency-Key was used for another request ({earlier_action} for user {}, amount {}); a new \
             adjustment needs a new key",
            target.unwrap_or_default(),
            amount.map_or_else(|| "?".to_owned(), |a| a.to_string())
        )));
    }
    let adjustment: Adjustment = operator::adjust(&mut tx, ledger, user, request.amount, &request.reason, &key, now)
        .await
        .map_err(action_error)?
        .into();
    if adjustment.applied {
        let entry = Entry {
            actor: &actor.0,
            action,
            target: user.to_string(),
            details: serde_json::json!({"amount": request.amount, "reason": request.reason, "key": key,
                                        "balance": adjustment.balance}),
            request_id: request_id(headers),
        };
        audit::record(&mut tx, &entry, now).await?;
    }
    tx.commit().await?;
    Ok(adjustment)
}

/// Grants or deducts credits with a reason. An `Idempotency-Key` header makes a retried request harmless.
#[utoipa::path(post, path = "/admin/users/{id}/credits", tag = "users", request_body = AdjustRequest,
    params(("id" = Uuid, Path, description = "The user's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key applies the change once")),
    responses((status = 200, body = Adjustment, description = "`applied` false when the key was used before for the same request"),
              (status = 409, body = ErrorBody, description = "The Idempotency-Key was used for another user or amount"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn adjust_credits(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(user): ApiPath<Uuid>,
    Body(request): Body<AdjustRequest>,
) -> Result<Json<Adjustment>, ApiError> {
    Ok(Json(adjust(&admin, &actor, &headers, Ledger::Credits, user, request).await?))
}

/// Grants or deducts XP with a reason (levels follow; a level crossed upwards pays its bonus once).
#[utoipa::path(post, path = "/admin/users/{id}/xp", tag = "users", request_body = AdjustRequest,
    params(("id" = Uuid, Path, description = "The user's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key applies the change once")),
    responses((status = 200, body = Adjustment, description = "`applied` false when the key was used before for the same request"),
              (status = 409, body = ErrorBody, description = "The Idempotency-Key was used for another user or amount"),
              (status = 401, body = ErrorBody, description = "No valid bearer token"), (status = 404, body = ErrorBody, description = "Not found"), (status = 422, body = ErrorBody, description = "Invalid; `errors` lists each problem with its path")))]
pub(super) async fn adjust_xp(
    State(admin): State<Arc<Admin>>,
    actor: Actor,
    headers: HeaderMap,
    ApiPath(user): ApiPath<Uuid>,
    Body(request): Body<AdjustRequest>,
) -> Result<Json<Adjustment>, ApiError> {
    Ok(Json(adjust(&admin, &actor, &headers, Ledger::Xp, user, request).await?))
}
