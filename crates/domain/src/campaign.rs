//! Campaigns as operators write them: their content, their audience and its SQL (docs/jobs/scheduled-notifications.md).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::DayZones;
use crate::segment::{self, Param};

/// A campaign first picked up later than this after its time is failed, not sent
/// (docs/jobs/scheduled-notifications.md).
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What a campaign's pushes carry, in both languages.
pub struct Texts<'a> {
    /// Turkish title.
    pub title_tr: &'a str,
    /// English title.
    pub title_en: Option<&'a str>,
    /// Turkish body.
    pub body_tr: &'a str,
    /// English body.
    pub body_en: Option<&'a str>,
    /// Image URL.
    pub image: Option<&'a str>,
    /// Deep link.
    pub deep_link: Option<&'a str>,
}

impl Texts<'_> {
    /// The language whose message would be over FCM's limit as the dispatcher sends it (the data as the outbox
    /// row carries it), and why.
    pub fn oversize(&self) -> Option<(&'static str, String)> {
        let mut data = std::collections::BTreeMap::from([
            ("type".to_owned(), "campaign".to_owned()),
            ("campaignId".to_owned(), Uuid::nil().to_string()),
        ]);
        if let Some(link) = self.deep_link {
            data.insert("deepLink".to_owned(), link.to_owned());
        }
        let english = (self.title_en.unwrap_or(self.title_tr), self.body_en.unwrap_or(self.body_tr));
        [("body_tr", (self.title_tr, self.body_tr)), ("body_en", english)].into_iter().find_map(
            |(path, (title, body))| {
                push::content::oversize(title, body, self.image, &data).map(|size| {
                    (
                        path,
                        format!(
                            "the message is {size} bytes as sent, over FCM's {}-byte limit",
                            push::MAX_PAYLOAD_BYTES
                        ),
                    )
                })
            },
        )
    }
}

// One type for a campaign as an operator writes it: the API's request body (`NewCampaign` in the OpenAPI
// document), the page's form, and the row `scheduled-notifications` reads back to expand; `problems` is the one
// validation all of them go through.
/// A new campaign, as an operator writes it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = NewCampaign))]
#[serde(deny_unknown_fields)]
pub struct CampaignDraft {
    /// Turkish title (required, at most 255 characters).
    pub title_tr: String,
    /// English title.
    pub title_en: Option<String>,
    /// Turkish body (required).
    pub body_tr: String,
    /// English body.
    pub body_en: Option<String>,
    /// Where tapping the push leads in the app.
    pub deep_link_url: Option<String>,
    /// An image shown with the push (https, on a named host).
    pub image_url: Option<String>,
    /// `all` (default), `vip`, `free` or `segment`.
    #[serde(default = "default_audience")]
    pub target_audience: String,
    /// The segment filter when the audience is `segment` (fields, operators and limits: README).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub segment_filter: Option<serde_json::Value>,
    /// When to send (default: now).
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// The audience of a campaign that names none: every user.
pub fn default_audience() -> String {
    "all".to_owned()
}

impl CampaignDraft {
    /// The draft as it is stored: empty optional texts and a null filter are absent, and it is due `now` unless
    /// a time is given.
    pub fn normalized(self, now: DateTime<Utc>) -> Self {
        let present = |text: Option<String>| text.filter(|t| !t.is_empty());
        Self {
            title_en: present(self.title_en),
            body_en: present(self.body_en),
            deep_link_url: present(self.deep_link_url),
            image_url: present(self.image_url),
            segment_filter: self.segment_filter.filter(|f| !f.is_null()),
            scheduled_at: Some(self.scheduled_at.unwrap_or(now)),
            ..self
        }
    }

    /// What its pushes carry, for the size check.
    pub fn texts(&self) -> Texts<'_> {
        Texts {
            title_tr: &self.title_tr,
            title_en: self.title_en.as_deref(),
            body_tr: &self.body_tr,
            body_en: self.body_en.as_deref(),
            image: self.image_url.as_deref(),
            deep_link: self.deep_link_url.as_deref(),
        }
    }

    /// Every problem with the draft, each as `path: problem` (the segment filter's problems name their place in
    /// the filter). `now` is the business time: a campaign more than `stale_after` in the past would never be
    /// sent.
    pub fn problems(
        &self,
        zones: &DayZones,
        rules: &push::ContentRules,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (path, value, required) in [
            ("title_tr", Some(self.title_tr.as_str()), true),
            ("body_tr", Some(self.body_tr.as_str()), true),
            ("title_en", self.title_en.as_deref(), false),
            ("body_en", self.body_en.as_deref(), false),
        ] {
            match value {
                Some(text) if text.trim().is_empty() && required => problems.push(format!("{path}: must not be empty")),
                Some(text) if path.starts_with("title") && text.chars().count() > 255 => {
                    problems.push(format!("{path}: at most 255 characters"))
                }
                _ => {}
            }
        }
        if let Some(problem) = self.image_url.as_deref().and_then(|url| rules.image_problem(url)) {
            problems.push(format!("image_url: {problem}"));
        }
        if let Some(problem) = self.deep_link_url.as_deref().and_then(|link| rules.deep_link_problem(link)) {
            problems.push(format!("deep_link_url: {problem}"));
        }
        let texts = self.texts();
        if let Some((path, problem)) = texts.oversize() {
            problems.push(format!("{path}: {problem}"));
        }
        if self.target_audience != "segment" && self.segment_filter.as_ref().is_some_and(|f| !f.is_null()) {
            problems.push("segment_filter: only allowed when target_audience is `segment`".to_owned());
        }
        if let Err(errors) = audience_sql(&self.target_audience, self.segment_filter.as_ref(), zones, 2) {
            problems.extend(errors);
        }
        let stale = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        if self.scheduled_at.unwrap_or(now) < now - stale {
            problems.push(format!(
                "scheduled_at: more than {} hours in the past; it would never be sent",
                stale.num_hours()
            ));
        }
        problems
    }
}

/// The SQL condition on users `u` for a campaign's audience (`$1` is now), and the parameters of its segment
/// filter, numbered from `first_param`.
pub fn audience_sql(
    audience: &str,
    filter: Option<&serde_json::Value>,
    zones: &DayZones,
    first_param: usize,
) -> Result<(String, Vec<Param>), Vec<String>> {
    // Opted-out users, and users who turned campaigns off, are never targeted (docs/jobs/scheduled-notifications.md,
    // docs/push.md); deleted and inactive users neither.
    let base = "u.deleted_at IS NULL AND u.is_active IS NOT FALSE AND u.is_push_allowed_mobile IS NOT FALSE
                AND NOT EXISTS (SELECT 1 FROM hattrick_push_preferences p
                                WHERE p.customer_user_id = u.id AND p.category = 'campaigns' AND NOT p.enabled)";
    let vip = "EXISTS (SELECT 1 FROM customer_subscriptions s WHERE s.customer_user_id = u.id AND s.status = 'active'
                       AND s.expired_at > $1 AND s.deleted_at IS NULL)";
    match audience {
        "all" => Ok((base.to_owned(), Vec::new())),
        "vip" => Ok((format!("{base} AND {vip}"), Vec::new())),
        "free" => Ok((format!("{base} AND NOT {vip}"), Vec::new())),
        "segment" => {
            let Some(filter) = filter else {
                return Err(vec!["segment_filter: required when target_audience is `segment`".to_owned()]);
            };
            let zone = zones.user_day_zone_sql("(SELECT z.name FROM hattrick_time_zones z WHERE z.name = u.timezone)");
            let compiled = segment::compile(filter, "segment_filter", first_param, "$1", &zone)?;
            Ok((format!("{base} AND {}", compiled.sql), compiled.params))
        }
        other => Err(vec![format!("target_audience: unknown audience `{other}` (all, vip, free or segment)")]),
    }
}

/// Binds compiled filter parameters in order.
pub fn bind_params<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for param in params {
        query = match param {
            Param::Int(n) => query.bind(*n),
            Param::Text(t) => query.bind(t),
            Param::Bool(b) => query.bind(*b),
            Param::Ints(v) => query.bind(v),
            Param::Texts(v) => query.bind(v),
        };
    }
    query
}

/// Why an audience could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum AudienceError {
    /// The audience or its segment filter is invalid: every problem, each as `path: problem`.
    #[error("invalid audience: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The count failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Counts the users a campaign would reach now (the composer's audience preview).
pub async fn audience_size(
    conn: &mut PgConnection,
    audience: &str,
    filter: Option<&serde_json::Value>,
    zones: &DayZones,
    now: DateTime<Utc>,
) -> Result<i64, AudienceError> {
    let (condition, params) = audience_sql(audience, filter, zones, 2).map_err(AudienceError::Invalid)?;
    let sql = format!("SELECT count(*) FROM customer_users u WHERE {condition}");
    let row = bind_params(db::query(sqlx::AssertSqlSafe(sql)).bind(now), &params).fetch_one(conn).await?;
    Ok(sqlx::Row::try_get(&row, 0)?)
}
