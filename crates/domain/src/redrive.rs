//! Redrive (docs/push.md "Redrive"): sending failed pushes again, and finding the failed runs an operator wants
//! run again, singly or by filter. The admin API, its page and the CLI all go through here; each records what it
//! did in the audit log.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The most pushes one redrive moves back to `pending` (a larger selection is redriven by repeating the call).
pub const MAX_PUSHES: i64 = 100_000;

/// The most ids one request may name.
pub const MAX_IDS: usize = 1_000;

/// Which failed pushes to send again: every `failed` outbox row matching all the criteria given. At least one
/// criterion is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushRedrive {
    /// These outbox rows (at most 1,000).
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Rows of this campaign.
    pub campaign_id: Option<Uuid>,
    /// Rows whose last FCM error is this code (`UNAVAILABLE`, `INTERNAL`, ...).
    pub error: Option<String>,
    /// Rows written at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Rows written before this time.
    pub to: Option<DateTime<Utc>>,
}

impl PushRedrive {
    /// What is wrong with the request, one line each, or nothing.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ids.is_empty()
            && self.campaign_id.is_none()
            && self.error.is_none()
            && self.from.is_none()
            && self.to.is_none()
        {
            problems.push("give at least one of ids, campaign_id, error, from, to".to_owned());
        }
        problems.extend(window_problem(self.from, self.to));
        if self.ids.len() > MAX_IDS {
            problems.push(format!("ids: {} ids, at most {MAX_IDS}", self.ids.len()));
        }
        if self.error.as_deref().is_some_and(|e| e.trim().is_empty()) {
            problems.push("error: must not be empty".to_owned());
        }
        problems
    }
}

/// What a push redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushesRedriven {
    /// Rows back to `pending`, due now: the dispatcher sends them again to every live device that has not had
    /// them.
    pub redriven: i64,
    /// Matching rows left failed because the user has no live device any more (every token died).
    pub no_live_device: i64,
    /// Matching rows left failed because their lifetime (`expires_at`) has passed.
    pub expired: i64,
    /// Campaigns reopened (`sent` back to `sending`), so their delivery counts are taken again when done.
    pub campaigns_reopened: i64,
}

/// Moves the failed pushes `filter` selects back to `pending`, due at `now`, in the caller's transaction. Their
/// failed per-device records are cleared so each live device is tried again; devices already served are not.
/// Rows whose every token died and rows past their lifetime stay failed and are counted.
pub async fn redrive_pushes(
    conn: &mut PgConnection,
    filter: &PushRedrive,
    now: DateTime<Utc>,
) -> Result<PushesRedriven, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH picked AS (
               SELECT o.id, o.customer_user_id, o.campaign_id,
                      CASE WHEN o.expires_at IS NOT NULL AND o.expires_at <= $6 THEN 'expired'
                           WHEN NOT EXISTS (SELECT 1 FROM customer_push_tokens t
                                            WHERE t.customer_user_id = o.customer_user_id
                                              AND t.is_active IS NOT FALSE) THEN 'no_live_device'
                           ELSE 'redrive' END AS verdict
               FROM push_outbox o
               WHERE o.status = 'failed'
                 AND (cardinality($1::bigint[]) = 0 OR o.id = ANY($1))
                 AND ($2::uuid IS NULL OR o.campaign_id = $2)
                 AND ($3::text IS NULL OR o.last_error = $3)
                 AND ($4::timestamptz IS NULL OR o.created_at >= $4)
                 AND ($5::timestamptz IS NULL OR o.created_at < $5)
               FOR UPDATE OF o SKIP LOCKED
           ),
           -- The limit counts only rows that go back: rows left failed never use it up.
           chosen AS (SELECT id FROM picked WHERE verdict = 'redrive' ORDER BY id LIMIT $7),
           cleared AS (
               DELETE FROM hattrick_push_deliveries d USING chosen p
               WHERE d.outbox_id = p.id AND d.status <> 'sent'
               RETURNING 1
           ),
           moved AS (
               UPDATE push_outbox o SET status = 'pending', not_before = $6, last_error = NULL
               FROM chosen p WHERE o.id = p.id
               RETURNING o.campaign_id
           ),
           reopened AS (
               UPDATE scheduled_notifications s SET status = 'sending'
               WHERE s.status = 'sent' AND s.id IN (SELECT campaign_id FROM moved WHERE campaign_id IS NOT NULL)
               RETURNING 1
           )
           SELECT (SELECT count(*) FROM moved) AS "redriven!",
                  (SELECT count(*) FROM picked WHERE verdict = 'no_live_device') AS "no_live_device!",
                  (SELECT count(*) FROM picked WHERE verdict = 'expired') AS "expired!",
                  (SELECT count(*) FROM reopened) + 0 * (SELECT count(*) FROM cleared) AS "campaigns_reopened!""#,
        &filter.ids,
        filter.campaign_id,
        filter.error.as_deref(),
        filter.from,
        filter.to,
        now,
        MAX_PUSHES,
    )
    .fetch_one(db::unnamed(conn))
    .await?;
    Ok(PushesRedriven {
        redriven: row.redriven,
        no_live_device: row.no_live_device,
        expired: row.expired,
        campaigns_reopened: row.campaigns_reopened,
    })
}

/// Which failed runs to run again: the latest `failed` run of each job matching all the criteria given. At
/// least one criterion is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRedrive {
    /// These runs (at most 1,000).
    #[serde(default)]
    pub ids: Vec<Uuid>,
    /// Runs of this job.
    pub job: Option<String>,
    /// Runs started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Runs started before this time.
    pub to: Option<DateTime<Utc>>,
}

impl RunRedrive {
    /// What is wrong with the request, one line each, or nothing.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ids.is_empty() && self.job.is_none() && self.from.is_none() && self.to.is_none() {
            problems.push("give at least one of ids, job, from, to".to_owned());
        }
        problems.extend(window_problem(self.from, self.to));
        if self.ids.len() > MAX_IDS {
            problems.push(format!("ids: {} ids, at most {MAX_IDS}", self.ids.len()));
        }
        problems
    }
}

/// A failed run picked for a redrive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailedRun {
    /// The failed run.
    pub run_id: Uuid,
    /// Its job.
    pub job: String,
    /// Its error.
    pub error_message: Option<String>,
}

/// The latest failed run of each job that `filter` selects. A job is run again once, however many of its runs
/// failed: every job is an idempotent sweep of its whole window.
pub async fn failed_runs(pool: &db::Pool, filter: &RunRedrive) -> Result<Vec<FailedRun>, sqlx::Error> {
    sqlx::query_as!(
        FailedRun,
        "SELECT DISTINCT ON (job_name) id AS run_id, job_name AS job, error_message FROM job_execution_logs
         WHERE status = 'failed'
           AND (cardinality($1::uuid[]) = 0 OR id = ANY($1))
           AND ($2::text IS NULL OR job_name = $2)
           AND ($3::timestamptz IS NULL OR started_at >= $3)
           AND ($4::timestamptz IS NULL OR started_at < $4)
         ORDER BY job_name, started_at DESC",
        &filter.ids,
        filter.job.as_deref(),
        filter.from,
        filter.to,
    )
    .fetch_all(pool)
    .await
}

fn window_problem(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<String> {
    match (from, to) {
        (Some(from), Some(to)) if from >= to => Some(format!("to: {to} is not after from ({from})")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redrive_needs_a_criterion_and_a_forward_window() {
        assert_eq!(PushRedrive::default().problems(), ["give at least one of ids, campaign_id, error, from, to"]);
        assert_eq!(RunRedrive::default().problems(), ["give at least one of ids, job, from, to"]);
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let backwards = PushRedrive {
            from: Some(at("2026-12-05T10:00:00Z")),
            to: Some(at("2026-12-05T09:00:00Z")),
            ..Default::default()
        };
        assert_eq!(backwards.problems().len(), 1);
        assert!(backwards.problems()[0].starts_with("to: "));
        let many = PushRedrive { ids: (0..1001).collect(), ..Default::default() };
        assert_eq!(many.problems(), ["ids: 1001 ids, at most 1000"]);
        assert!(PushRedrive { error: Some("UNAVAILABLE".into()), ..Default::default() }.problems().is_empty());
        assert!(RunRedrive { job: Some("badge-auto-unlock".into()), ..Default::default() }.problems().is_empty());
    }
}
