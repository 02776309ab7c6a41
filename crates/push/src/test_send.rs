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
    /// Send a catalogue message instead, rendered as its push would be.
    pub message: Option<TestMessage>,
}

/// A catalogue message to send as a test (docs/push.md "Messages and languages").
#[derive(Debug, Clone)]
pub struct TestMessage {
    /// The push kind (its catalogue key).
    pub kind: String,
    /// The kind's deep link.
    pub deep_link: String,
    /// A value for each placeholder, as a JSON object of strings.
    pub vars: serde_json::Value,
    /// Render in this locale (as the catalogue writes it) instead of each user's own.
    pub locale: Option<String>,
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

impl TestPush {
    /// Every problem with the request, each as `path: problem`: 1 to 20 recipients, and either a campaign or a
    /// title and body that make a message FCM accepts.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.users.is_empty() || self.users.len() > MAX_RECIPIENTS {
            problems.push(format!("users: 1 to {MAX_RECIPIENTS} recipients (got {})", self.users.len()));
        }
        if self.campaign.is_some() && self.message.is_some() {
            problems.push("message: give a campaign or a message, not both".to_owned());
        }
        if self.campaign.is_some() || self.message.is_some() {
            if self.title.is_some() || self.body.is_some() {
                let from = if self.campaign.is_some() { "campaign_id" } else { "message" };
                problems.push(format!("{from}: title and body come from the {from}; do not give them too"));
            }
            return problems;
        }
        for (path, value) in [("title", &self.title), ("body", &self.body)] {
            match value.as_deref() {
                None => problems.push(format!("{path}: required unless campaign_id or message is given")),
                Some(text) if text.trim().is_empty() => problems.push(format!("{path}: must not be empty")),
                Some(text) if path == "title" && text.chars().count() > 255 => {
                    problems.push(format!("{path}: at most 255 characters"));
                }
                Some(_) => {}
            }
        }
        if let (Some(title), Some(body)) = (&self.title, &self.body) {
            let data = std::collections::BTreeMap::from([("type".to_owned(), "test".to_owned())]);
            if let Some(size) = crate::content::oversize(title, body, None, &data) {
                problems.push(format!(
                    "body: the message is {size} bytes as sent, over FCM's {}-byte limit",
                    crate::MAX_PAYLOAD_BYTES
                ));
            }
        }
        problems
    }
}

/// The most recipients one test push may have.
pub const MAX_RECIPIENTS: usize = 20;

/// Writes one `test` outbox row per user and sends them now through `dispatcher`.
pub async fn send(
    pool: &Pool,
    dispatcher: &Dispatcher,
    push: &TestPush,
    now: DateTime<Utc>,
) -> Result<Vec<TestResult>, TestPushError> {
    let mut tx = pool.begin().await?;
    let ids = enqueue(&mut tx, push, now).await?;
    tx.commit().await?;
    deliver(pool, dispatcher, &ids, now).await
}

/// Writes one `test` outbox row per user in the caller's transaction (so an audit row can go with them);
/// returns their ids for [`deliver`]. Nothing is written when a recipient or the campaign is missing.
pub async fn enqueue(
    tx: &mut sqlx::PgConnection,
    push: &TestPush,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, TestPushError> {
    let run = Uuid::new_v4();
    let ids: Vec<i64> = sqlx::query_scalar!(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
                                  campaign_id, not_before, created_at)
         SELECT u.id, 'test', 'test:' || $1::text || ':' || u.id,
                coalesce(hattrick_fill(m.title, $9), CASE WHEN hattrick_language(u.locale_preference) <> 'tr'
                                                          THEN c.title_en END, c.title_tr, $3),
                coalesce(hattrick_fill(m.body, $9), CASE WHEN hattrick_language(u.locale_preference) <> 'tr'
                                                        THEN c.body_en END, c.body_tr, $4),
                c.image_url, coalesce(c.deep_link_url, $8),
                jsonb_strip_nulls(jsonb_build_object('type', 'test', 'campaignId', c.id::text,
                                                     'deepLink', coalesce(c.deep_link_url, $8))),
                NULL, $6, $6
         FROM (SELECT DISTINCT id FROM customer_users WHERE id = ANY($2)) d
         JOIN customer_users u ON u.id = d.id
         LEFT JOIN scheduled_notifications c ON c.id = $5
         LEFT JOIN LATERAL hattrick_message($7, coalesce($10, u.locale_preference)) m ON $7::text IS NOT NULL
         WHERE ($5::uuid IS NULL OR c.id IS NOT NULL) AND ($7::text IS NULL OR m.title IS NOT NULL)
         RETURNING id",
        run.to_string(),
        &push.users,
        push.title.as_deref(),
        push.body.as_deref(),
        push.campaign,
        now,
        push.message.as_ref().map(|m| m.kind.as_str()),
        push.message.as_ref().map(|m| m.deep_link.as_str()),
        push.message.as_ref().map(|m| &m.vars),
        push.message.as_ref().and_then(|m| m.locale.as_deref()),
    )
    .fetch_all(db::unnamed(tx))
    .await?;
    let distinct = push.users.iter().collect::<std::collections::HashSet<_>>().len();
    if ids.len() != distinct {
        let missing = if push.campaign.is_some() {
            "unknown campaign or user"
        } else if push.message.is_some() {
            "no text for the message, or unknown user"
        } else {
            "unknown user"
        };
        return Err(TestPushError::NotFound(format!("{missing}: {} of {distinct} recipients found", ids.len())));
    }
    Ok(ids)
}

/// Sends the test pushes `ids` (committed by [`enqueue`]) now, and reports each.
pub async fn deliver(
    pool: &Pool,
    dispatcher: &Dispatcher,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<TestResult>, TestPushError> {
    dispatcher.round_only(now, ids).await?;
    Ok(sqlx::query_as!(
        TestResult,
        r#"SELECT customer_user_id AS "user", status, tokens_sent, tokens_failed, last_error FROM push_outbox
           WHERE id = ANY($1) ORDER BY id"#,
        ids,
    )
    .fetch_all(pool)
    .await?)
}
