//! Campaigns as operators write them: their content, their audience and its SQL (docs/jobs/scheduled-notifications.md).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
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
    /// An experiment's variant: its rows also carry `data.variant`.
    pub variant: bool,
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
        if self.variant {
            data.insert("variant".to_owned(), "5".to_owned());
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
    /// When to send (default: now). With `local_time` it is derived: the moment that local time comes first
    /// anywhere (UTC+14).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Send at this wall-clock time in each user's own zone instead of at one instant (e.g.
    /// `2026-12-12T19:00:00`): the user's `timezone` when PostgreSQL knows it, else the business zone.
    pub local_time: Option<NaiveDateTime>,
    /// With `local_time`, for users whose time had passed when the campaign was created: `next_day` (default:
    /// the same time the next day) or `skip` (counted in `missed_count`).
    pub if_passed: Option<String>,
    /// An experiment: 2 to 5 variants, each with its own texts (and, if given, its deep link and image), drawn by
    /// weight. Each user's variant is a deterministic function of (campaign, user) and is recorded.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Variant>))]
    pub variants: Variants,
    /// Share of the audience, 0 to 50 %, that gets nothing, to measure the campaign against.
    pub holdout_percent: Option<i32>,
    /// What counts as a conversion in the read-out: `daily_reward` (default: claimed a daily reward),
    /// `comment` (commented on a match) or `subscription` (started a paid subscription).
    pub conversion_event: Option<String>,
    /// Hours after each user's send in which a conversion counts (default 24, at most 720).
    pub conversion_window_hours: Option<i32>,
}

/// One variant of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Its share of the users who are not held out, relative to the other variants' (1 to 1,000; default 1).
    #[serde(default = "default_weight")]
    pub weight: i32,
    /// Turkish title (required, at most 255 characters).
    pub title_tr: String,
    /// English title.
    pub title_en: Option<String>,
    /// Turkish body (required).
    pub body_tr: String,
    /// English body.
    pub body_en: Option<String>,
    /// Its deep link (default: the campaign's).
    pub deep_link_url: Option<String>,
    /// Its image (default: the campaign's).
    pub image_url: Option<String>,
}

fn default_weight() -> i32 {
    1
}

/// An experiment's variants, stored as a JSON array (`scheduled_notifications.variants`); empty for a campaign
/// that is not an experiment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Variants(pub Vec<Variant>);

impl Variants {
    /// The column's value: NULL when there is none.
    pub fn to_column(&self) -> Option<serde_json::Value> {
        (!self.0.is_empty()).then(|| serde_json::to_value(&self.0).unwrap_or_default())
    }

    /// Variant numbers (from 1) and the running sum of their weights, and the total: user `u` gets the first
    /// variant whose running sum exceeds `hash(campaign, u) mod total`.
    pub fn draw_table(&self) -> (Vec<i32>, Vec<i32>, i32) {
        let mut upto = 0;
        let (numbers, sums) = self
            .0
            .iter()
            .enumerate()
            .map(|(i, v)| {
                upto += v.weight.max(1);
                (i32::try_from(i + 1).unwrap_or(i32::MAX), upto)
            })
            .unzip();
        (numbers, sums, upto.max(1))
    }
}

impl sqlx::Type<sqlx::Postgres> for Variants {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <sqlx::types::Json<Vec<Variant>> as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <sqlx::types::Json<Vec<Variant>> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Variants {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(<sqlx::types::Json<Vec<Variant>> as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?.0))
    }
}

/// What a campaign counts as a conversion.
pub const CONVERSION_EVENTS: [&str; 3] = ["daily_reward", "comment", "subscription"];

/// The conversion event of a campaign that names none.
pub const DEFAULT_CONVERSION_EVENT: &str = "daily_reward";

/// The conversion window of a campaign that names none, in hours.
pub const DEFAULT_CONVERSION_WINDOW_HOURS: i32 = 24;

/// The largest UTC offset of any zone: a local time comes first there, this long before it comes in UTC.
const EARLIEST_OFFSET: chrono::TimeDelta = chrono::TimeDelta::hours(14);

/// The smallest UTC offset of any zone (UTC-12): a local time comes last there.
const LATEST_OFFSET: chrono::TimeDelta = chrono::TimeDelta::hours(12);

/// The instant wall-clock time `local` comes in `zone`, as PostgreSQL reads `local AT TIME ZONE zone`: a time that
/// occurs twice (clocks going back) is the later instant, a time that does not occur (clocks going forward) an
/// hour later.
pub fn local_instant(local: NaiveDateTime, zone: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    zone.from_local_datetime(&local)
        .latest()
        .or_else(|| zone.from_local_datetime(&(local + chrono::TimeDelta::hours(1))).latest())
        .map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc))
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
        // Both given is a problem `problems` reports: keep what was written.
        let scheduled_at = match (self.local_time, self.scheduled_at) {
            (Some(local), None) => Some(local.and_utc() - EARLIEST_OFFSET),
            (_, at) => Some(at.unwrap_or(now)),
        };
        let if_passed = match self.local_time {
            Some(_) => Some(self.if_passed.clone().unwrap_or_else(|| "next_day".to_owned())),
            None => self.if_passed.clone(),
        };
        let experiment = self.is_experiment();
        Self {
            title_en: present(self.title_en),
            body_en: present(self.body_en),
            deep_link_url: present(self.deep_link_url),
            image_url: present(self.image_url),
            segment_filter: self.segment_filter.filter(|f| !f.is_null()),
            scheduled_at,
            if_passed,
            variants: Variants(
                self.variants
                    .0
                    .into_iter()
                    .map(|v| Variant {
                        title_en: present(v.title_en),
                        body_en: present(v.body_en),
                        deep_link_url: present(v.deep_link_url),
                        image_url: present(v.image_url),
                        ..v
                    })
                    .collect(),
            ),
            conversion_event: if experiment {
                Some(self.conversion_event.clone().unwrap_or_else(|| DEFAULT_CONVERSION_EVENT.to_owned()))
            } else {
                self.conversion_event.clone()
            },
            conversion_window_hours: if experiment {
                Some(self.conversion_window_hours.unwrap_or(DEFAULT_CONVERSION_WINDOW_HOURS))
            } else {
                self.conversion_window_hours
            },
            ..self
        }
    }

    /// Whether it is an experiment: variants, or a holdout to measure against.
    pub fn is_experiment(&self) -> bool {
        !self.variants.0.is_empty() || self.holdout_percent.unwrap_or(0) > 0
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
            variant: false,
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
        problems.extend(self.content_problems(rules));
        if self.target_audience != "segment" && self.segment_filter.as_ref().is_some_and(|f| !f.is_null()) {
            problems.push("segment_filter: only allowed when target_audience is `segment`".to_owned());
        }
        if let Err(errors) = audience_sql(&self.target_audience, self.segment_filter.as_ref(), zones, 2) {
            problems.extend(errors);
        }
        let stale = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        match self.local_time {
            Some(local) if self.scheduled_at.is_some_and(|at| at != local.and_utc() - EARLIEST_OFFSET) => {
                problems.push("scheduled_at: give scheduled_at or local_time, not both".to_owned());
            }
            // Past in every zone (the last one is UTC-12) for longer than a campaign may be late.
            Some(local) if local.and_utc() + LATEST_OFFSET < now - stale => problems.push(format!(
                "local_time: more than {} hours in the past in every zone; it would never be sent",
                stale.num_hours()
            )),
            Some(_) => {}
            None if self.scheduled_at.unwrap_or(now) < now - stale => problems.push(format!(
                "scheduled_at: more than {} hours in the past; it would never be sent",
                stale.num_hours()
            )),
            None => {}
        }
        match (&self.if_passed, self.local_time) {
            (Some(_), None) => problems.push("if_passed: only with local_time".to_owned()),
            (Some(value), Some(_)) if value != "next_day" && value != "skip" => {
                problems.push(format!("if_passed: `{value}` is not one of next_day, skip"));
            }
            _ => {}
        }
        problems
    }

    /// What the pushes would carry that FCM would refuse or `rules` forbid (images, deep links, 4 KB), its
    /// variants' included, and the experiment's fields. `scheduled-notifications` checks these again when it
    /// sends a campaign, for campaigns the app wrote itself.
    pub fn content_problems(&self, rules: &push::ContentRules) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(problem) = self.image_url.as_deref().and_then(|url| rules.image_problem(url)) {
            problems.push(format!("image_url: {problem}"));
        }
        if let Some(problem) = self.deep_link_url.as_deref().and_then(|link| rules.deep_link_problem(link)) {
            problems.push(format!("deep_link_url: {problem}"));
        }
        if let Some((path, problem)) = self.texts().oversize() {
            problems.push(format!("{path}: {problem}"));
        }
        let variants = &self.variants.0;
        if variants.len() == 1 || variants.len() > 5 {
            problems.push(format!("variants: an experiment has 2 to 5 variants, not {}", variants.len()));
        }
        for (i, variant) in variants.iter().enumerate() {
            let at = |field: &str| format!("variants[{i}].{field}");
            for (field, text) in [("title_tr", &variant.title_tr), ("body_tr", &variant.body_tr)] {
                if text.trim().is_empty() {
                    problems.push(format!("{}: must not be empty", at(field)));
                }
            }
            for (field, text) in [("title_tr", Some(&variant.title_tr)), ("title_en", variant.title_en.as_ref())] {
                if text.is_some_and(|t| t.chars().count() > 255) {
                    problems.push(format!("{}: at most 255 characters", at(field)));
                }
            }
            if !(1..=1000).contains(&variant.weight) {
                problems.push(format!("{}: from 1 to 1000", at("weight")));
            }
            let image = variant.image_url.as_deref().or(self.image_url.as_deref());
            let link = variant.deep_link_url.as_deref().or(self.deep_link_url.as_deref());
            if let Some(problem) = variant.image_url.as_deref().and_then(|url| rules.image_problem(url)) {
                problems.push(format!("{}: {problem}", at("image_url")));
            }
            if let Some(problem) = variant.deep_link_url.as_deref().and_then(|l| rules.deep_link_problem(l)) {
                problems.push(format!("{}: {problem}", at("deep_link_url")));
            }
            let texts = Texts {
                title_tr: &variant.title_tr,
                title_en: variant.title_en.as_deref(),
                body_tr: &variant.body_tr,
                body_en: variant.body_en.as_deref(),
                image,
                deep_link: link,
                variant: true,
            };
            if let Some((field, problem)) = texts.oversize() {
                problems.push(format!("{}: {problem}", at(field)));
            }
        }
        if let Some(holdout) = self.holdout_percent
            && !(0..=50).contains(&holdout)
        {
            problems.push("holdout_percent: from 0 to 50".to_owned());
        }
        if let Some(event) = &self.conversion_event
            && !CONVERSION_EVENTS.contains(&event.as_str())
        {
            problems.push(format!("conversion_event: `{event}` is not one of {}", CONVERSION_EVENTS.join(", ")));
        }
        if let Some(hours) = self.conversion_window_hours
            && !(1..=720).contains(&hours)
        {
            problems.push("conversion_window_hours: from 1 to 720".to_owned());
        }
        if !self.is_experiment() && (self.conversion_event.is_some() || self.conversion_window_hours.is_some()) {
            problems.push("conversion_event: only for an experiment (variants or a holdout)".to_owned());
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
