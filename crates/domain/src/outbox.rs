//! Writing pushes to the outbox (docs/push.md) in the job's transaction: a job fills the session's scratch table
//! `hattrick_push_batch` with one row per user (dedupe key, placeholders, extra data), then [`flush`] renders
//! the texts in the user's language and inserts into `push_outbox`, where the unique dedupe key makes a repeat
//! impossible.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::messages::Message;

/// Category of a push, as stored (`push_outbox.category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Badges, referrals, level-ups: exempt from the daily cap.
    Reward,
    /// Reminders, warnings, alerts.
    Engagement,
}

impl Category {
    fn as_str(self) -> &'static str {
        match self {
            Category::Reward => "reward",
            Category::Engagement => "engagement",
        }
    }
}

/// Counts the pushes waiting in the scratch table that are not in the outbox yet (for budgets).
pub async fn pending(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "pending!" FROM hattrick_push_batch b
           WHERE NOT EXISTS (SELECT 1 FROM push_outbox o WHERE o.dedupe_key = b.dedupe_key)"#,
    )
    .fetch_one(db::unnamed(conn))
    .await
}

/// Inserts the scratch table's rows as `message` pushes and empties it; returns how many were new. Deleted and
/// inactive users get nothing (docs/jobs/README.md); opted-out users' reward pushes are written and stopped at send
/// time (docs/push.md). `write` false (a silent back-fill) only empties the batch.
pub async fn flush(
    conn: &mut PgConnection,
    message: &Message,
    category: Category,
    at: DateTime<Utc>,
    write: bool,
) -> Result<i64, sqlx::Error> {
    let inserted = if write {
        let title = render_sql("CASE WHEN u.en THEN $3 ELSE $2 END", message);
        let body = render_sql("CASE WHEN u.en THEN $5 ELSE $4 END", message);
        // The user is looked up row by row (LIMIT keeps the subquery a parameterised index scan): the planner
        // cannot see how few rows the scratch table holds and would otherwise hash the whole users table.
        let sql = format!(
            "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
                                      not_before, created_at)
             SELECT b.customer_user_id, $1, b.dedupe_key, {title}, {body}, b.image_url, $6,
                    jsonb_build_object('type', $7::text, 'deepLink', $6::text) || b.data, $8, $8
             FROM hattrick_push_batch b
             CROSS JOIN LATERAL (
                 SELECT u.locale_preference ILIKE 'en%' AS en FROM customer_users u
                 WHERE u.id = b.customer_user_id AND u.deleted_at IS NULL AND u.is_active IS NOT FALSE
                 LIMIT 1) u
             ON CONFLICT (dedupe_key) DO NOTHING"
        );
        db::query(sqlx::AssertSqlSafe(sql))
            .bind(category.as_str())
            .bind(message.title_tr)
            .bind(message.title_en)
            .bind(message.body_tr)
            .bind(message.body_en)
            .bind(message.deep_link)
            .bind(message.kind)
            .bind(at)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    } else {
        0
    };
    sqlx::query!("DELETE FROM hattrick_push_batch").execute(db::unnamed(conn)).await?;
    Ok(i64::try_from(inserted).unwrap_or(i64::MAX))
}

/// The SQL expression that fills the `{name}` placeholders of `message`'s texts in `template` (an expression
/// choosing one of them) from the `vars` of the row aliased `b`; a placeholder without a value stays as written.
pub(crate) fn render_sql(template: &str, message: &Message) -> String {
    message.placeholders().into_iter().fold(template.to_owned(), |sql, name| {
        format!("replace({sql}, '{{{name}}}', coalesce(b.vars ->> '{name}', '{{{name}}}'))")
    })
}
