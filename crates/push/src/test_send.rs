//! Test pushes to operators' own devices (`hattrick push test`, `POST /admin/push/test`): one `test` outbox row
//! per user, sent at once through a dispatcher. Test pushes ignore quiet hours, the daily cap and opt-out.

use chrono::{DateTime, Utc};
use db::Pool;
use serde::Serialize;
use uuid::Uuid;

use crate::Dispatcher;

/// What to send, and to whom.
#[derive(Debug, Clone)]
pub struct TestPush {
    /// Recipients.
    pub users: Vec<Uuid>,
    /// Title (unless `campaign` gives the texts).
    pub title: Option<String>,
    /// Body (unless `campaign` gives the texts).
    pub body: Option<String>,
    /// Send this campaign's texts, in each user's language.
    pub campaign: Option<Uuid>,
}

/// What happened to one recipient's test push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    /// The recipient.
    pub user: Uuid,
    /// The outbox row's final status (`sent`, `no_tokens`, `failed`, or `pending` when it will be retried).
    pub status: String,
    /// Devices that received it.
    pub tokens_sent: i32,
    /// Devices that failed.
    pub tokens_failed: i32,
    /// The last FCM error code, if any.
    pub last_error: Option<String>,
}

/// Why a test push was not sent.
#[derive(Debug, thiserror::Error)]
pub enum TestPushError {
    /// Some recipients (or the campaign) do not exist; nothing was written.
    #[error("{0}")]
    NotFound(String),
    /// A query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Writes one `test` outbox row per user and sends them now through `dispatcher`.
pub async fn send(
    pool: &Pool,
    dispatcher: &Dispatcher,
    push: &TestPush,
    now: DateTime<Utc>,
) -> Result<Vec<TestResult>, TestPushError> {
    let mut tx = pool.begin().await?;
    let run = Uuid::new_v4();
    let ids: Vec<i64> = db::query_scalar(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
                                  campaign_id, not_before, created_at)
         SELECT u.id, 'test', 'test:' || $1::text || ':' || u.id,
                coalesce(CASE WHEN u.locale_preference ILIKE 'en%' THEN c.title_en END, c.title_tr, $3),
                coalesce(CASE WHEN u.locale_preference ILIKE 'en%' THEN c.body_en END, c.body_tr, $4),
                c.image_url, c.deep_link_url,
                jsonb_strip_nulls(jsonb_build_object('type', 'test', 'campaignId', c.id::text,
                                                     'deepLink', c.deep_link_url)),
                NULL, $6, $6
         FROM (SELECT DISTINCT id FROM customer_users WHERE id = ANY($2)) d
         JOIN customer_users u ON u.id = d.id
         LEFT JOIN scheduled_notifications c ON c.id = $5
         WHERE ($5::uuid IS NULL OR c.id IS NOT NULL)
         RETURNING id",
    )
    .bind(run)
    .bind(&push.users)
    .bind(push.title.as_deref())
    .bind(push.body.as_deref())
    .bind(push.campaign)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let distinct = push.users.iter().collect::<std::collections::HashSet<_>>().len();
    if ids.len() != distinct {
        let missing = if push.campaign.is_some() { "unknown campaign or user" } else { "unknown user" };
        return Err(TestPushError::NotFound(format!("{missing}: {} of {distinct} recipients found", ids.len())));
    }
    tx.commit().await?;
    dispatcher.round_only(now, &ids).await?;
    let rows: Vec<(Uuid, String, i32, i32, Option<String>)> = db::query_as(
        "SELECT customer_user_id, status, tokens_sent, tokens_failed, last_error FROM push_outbox
         WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, status, tokens_sent, tokens_failed, last_error)| TestResult {
            user,
            status,
            tokens_sent,
            tokens_failed,
            last_error,
        })
        .collect())
}
