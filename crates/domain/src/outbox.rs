//! Writing pushes to the outbox (docs/push.md) in the job's transaction: a job fills the session's scratch table
//! `hattrick_push_batch` with one row per user (dedupe key, placeholders, extra data), then [`flush`] renders
//! the catalogue's texts in the user's language and inserts into `push_outbox`, where the unique dedupe key makes a repeat
//! impossible. A job whose pushes are a query over rows it already holds (the badge unlocks of a chunk) passes
//! that query to [`insert`] instead, and nothing is staged.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::messages::{Message, TextJoin, render_sql};

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

/// Where pushes to write are read from: an SQL relation, a table or a parenthesised query, with the columns of
/// `hattrick_push_batch` (`customer_user_id`, `dedupe_key`, `vars`, `data`, `image_url`). Always text written in
/// the code, never input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source(pub &'static str);

/// The session's scratch table of pushes, filled by the job and emptied by [`flush`].
pub const BATCH: Source = Source("hattrick_push_batch");

/// Inserts the scratch table's rows as `message` pushes ([`insert`] from [`BATCH`]) and empties it; returns how
/// many were new. `write` false (a silent back-fill) only empties the batch.
pub async fn flush(
    conn: &mut PgConnection,
    message: &Message,
    category: Category,
    at: DateTime<Utc>,
    write: bool,
) -> Result<i64, sqlx::Error> {
    let inserted = if write { insert(&mut *conn, BATCH, message, category, at).await? } else { 0 };
    sqlx::query!("DELETE FROM hattrick_push_batch").execute(db::unnamed(conn)).await?;
    Ok(inserted)
}

/// Inserts the rows of `source` as `message` pushes, rendered in each user's language; returns how many were new
/// (a dedupe key already in the outbox is skipped). Deleted and inactive users get nothing (docs/jobs/README.md);
/// opted-out users' reward pushes are written and stopped at send time (docs/push.md).
pub async fn insert(
    conn: &mut PgConnection,
    source: Source,
    message: &Message,
    category: Category,
    at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let texts = TextJoin::new("$2", "u.locale");
    let title = render_sql(&texts.title, message);
    let body = render_sql(&texts.body, message);
    let (cte, joins) = (&texts.cte, &texts.joins);
    // The user is looked up row by row (LIMIT keeps the subquery a parameterised index scan): the planner cannot
    // see how few rows a scratch table holds and would otherwise hash the whole users table. The source is kept
    // whole (`OFFSET 0`): flattened into this statement, its `vars` would be built again at every placeholder
    // that reads them (four `jsonb_build_object`s a row for a title and a body of two placeholders each).
    let sql = format!(
        "WITH {cte}
             INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, image_url, deep_link, data,
                                      not_before, created_at)
             SELECT b.customer_user_id, $1, b.dedupe_key, {title}, {body}, b.image_url, $3,
                    jsonb_build_object('type', $2::text, 'deepLink', $3::text) || b.data, $4, $4
             FROM (SELECT * FROM {source} s OFFSET 0) b
             CROSS JOIN LATERAL (
                 SELECT hattrick_locale(u.locale_preference) AS locale FROM customer_users u
                 WHERE u.id = b.customer_user_id AND u.deleted_at IS NULL AND u.is_active IS NOT FALSE
                 LIMIT 1) u
             {joins}
             ON CONFLICT (dedupe_key) DO NOTHING",
        source = source.0
    );
    let inserted = db::query(sqlx::AssertSqlSafe(sql))
        .bind(category.as_str())
        .bind(message.kind)
        .bind(message.deep_link)
        .bind(at)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(i64::try_from(inserted).unwrap_or(i64::MAX))
}
