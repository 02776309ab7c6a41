//! The audit log: every write made through the admin API or page, with who made it (the admin token's name),
//! what, on what, when, and the request's id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;

/// One write to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The admin token's name.
    pub actor: &'a str,
    /// What was done: `job.run`, `job.pause`, `campaign.create`, `badge.grant`, `credits.adjust`, ...
    pub action: &'static str,
    /// On what: a job name, a campaign id, a user id.
    pub target: String,
    /// Anything else worth keeping (the request's payload, what the action changed). Never a secret.
    pub details: serde_json::Value,
    /// The request's id.
    pub request_id: Option<&'a str>,
}

/// Writes `entry` in the caller's transaction (the one of the change it records).
pub async fn record(conn: &mut sqlx::PgConnection, entry: &Entry<'_>, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO hattrick_audit_log (at, actor, action, target, details, request_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        at,
        entry.actor,
        entry.action,
        entry.target,
        entry.details,
        entry.request_id
    )
    .execute(db::unnamed(conn))
    .await?;
    Ok(())
}

/// A recorded write.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditRecord {
    /// Sequence number.
    pub id: i64,
    /// When (business time).
    pub at: DateTime<Utc>,
    /// The admin token's name.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details of the write.
    pub details: serde_json::Value,
    /// The request's id.
    pub request_id: Option<String>,
}

/// The latest `limit` records, newest first, older than `before` (an id) when given.
pub async fn recent<'e>(
    executor: impl PgExecutor<'e>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    sqlx::query_as!(
        AuditRecord,
        "SELECT id, at, actor, action, target, details, request_id FROM hattrick_audit_log
         WHERE $2::bigint IS NULL OR id < $2 ORDER BY id DESC LIMIT $1",
        limit,
        before,
    )
    .fetch_all(executor)
    .await
}
