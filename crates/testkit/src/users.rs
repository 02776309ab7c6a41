//! Users for tests: [`NewUser`] inserts one `customer_users` row with the schema's defaults for whatever a test
//! does not set, so a test says only what matters to it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A user to insert: `TestDb::new_user().locale("en").timezone("Asia/Tokyo").insert(db.pool())`.
#[derive(Debug, Clone, Default)]
#[must_use = "a user is inserted by `insert`"]
pub struct NewUser {
    id: Option<Uuid>,
    email: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    push_allowed: Option<bool>,
    deleted: bool,
    created_at: Option<DateTime<Utc>>,
    last_login_at: Option<DateTime<Utc>>,
}

impl NewUser {
    /// A user with every column at the schema's default (active, pushes allowed, locale `tr`, no zone).
    pub fn new() -> Self {
        Self::default()
    }

    /// This id (a random one otherwise).
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// This e-mail address (`<id>@example.com` otherwise).
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// `locale_preference`.
    pub fn locale(mut self, locale: impl Into<String>) -> Self {
        self.locale = Some(locale.into());
        self
    }

    /// `timezone`, an IANA name (or anything, to test a bad one).
    pub fn timezone(mut self, zone: impl Into<String>) -> Self {
        self.timezone = Some(zone.into());
        self
    }

    /// `timezone` when `zone` is set.
    pub fn timezone_opt(mut self, zone: Option<&str>) -> Self {
        self.timezone = zone.map(str::to_owned);
        self
    }

    /// `is_push_allowed_mobile`.
    pub fn push_allowed(mut self, allowed: bool) -> Self {
        self.push_allowed = Some(allowed);
        self
    }

    /// Soft-deleted (`deleted_at` is now) when `deleted`.
    pub fn deleted(mut self, deleted: bool) -> Self {
        self.deleted = deleted;
        self
    }

    /// `created_at` (the sign-up time).
    pub fn created_at(mut self, at: DateTime<Utc>) -> Self {
        self.created_at = Some(at);
        self
    }

    /// `last_login_at`.
    pub fn last_login_at(mut self, at: DateTime<Utc>) -> Self {
        self.last_login_at = Some(at);
        self
    }

    /// Inserts the user through `pool` (the test database's, or one named like the app) and returns its id.
    /// Columns not set take the schema's defaults.
    pub async fn insert(self, pool: &db::Pool) -> Uuid {
        enum Value {
            Text(String),
            Bool(bool),
            Time(DateTime<Utc>),
        }
        let id = self.id.unwrap_or_else(Uuid::new_v4);
        let mut columns: Vec<(&str, Value)> =
            vec![("email", Value::Text(self.email.unwrap_or_else(|| format!("{id}@example.com"))))];
        columns.extend(self.locale.map(|v| ("locale_preference", Value::Text(v))));
        columns.extend(self.timezone.map(|v| ("timezone", Value::Text(v))));
        columns.extend(self.push_allowed.map(|v| ("is_push_allowed_mobile", Value::Bool(v))));
        columns.extend(self.deleted.then(|| ("deleted_at", Value::Time(Utc::now()))));
        columns.extend(self.created_at.map(|v| ("created_at", Value::Time(v))));
        columns.extend(self.last_login_at.map(|v| ("last_login_at", Value::Time(v))));
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let params: Vec<String> = (2..columns.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!("INSERT INTO customer_users (id, {}) VALUES ($1, {})", names.join(", "), params.join(", "));
        let mut query = db::query(sqlx::AssertSqlSafe(sql)).bind(id);
        for (_, value) in columns {
            query = match value {
                Value::Text(text) => query.bind(text),
                Value::Bool(flag) => query.bind(flag),
                Value::Time(at) => query.bind(at),
            };
        }
        query.execute(pool).await.expect("insert a user");
        id
    }
}

/// The instant an RFC 3339 text names, in UTC: `utc("2026-03-10T22:00:00+03:00")`.
pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}")).with_timezone(&Utc)
}
