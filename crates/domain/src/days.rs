//! Users' days (docs/engine.md): "today", "yesterday" and "midnight" are computed in the user's own zone
//! (`customer_users.timezone`) when it is a zone PostgreSQL knows, else in the business zone; or, when the app
//! writes its dates in one fixed zone (`time.app_day_zone`), in that zone for everyone.

use chrono_tz::Tz;

/// The zones days are computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayZones {
    /// The business zone, for users without a (valid) zone of their own.
    pub business: Tz,
    /// When set, every user's day is computed in this zone.
    pub app_day_zone: Option<Tz>,
}

impl Default for DayZones {
    /// Every user's day in the business zone, Europe/Istanbul (the default of `time.business_zone`).
    fn default() -> Self {
        Self { business: chrono_tz::Europe::Istanbul, app_day_zone: None }
    }
}

impl DayZones {
    /// SQL for the zone of one user's day, given the SQL of the user's `timezone` column and of the
    /// `hattrick_time_zones` row joined on it (null when the name is unknown). Binds nothing: the zone names are
    /// validated IANA names and are quoted as literals.
    pub fn user_day_zone_sql(&self, known_zone_column: &str) -> String {
        match self.app_day_zone {
            Some(zone) => quote(zone.name()),
            None => format!("coalesce({known_zone_column}, {})", quote(self.business.name())),
        }
    }
}

/// A validated zone name as an SQL literal.
fn quote(name: &str) -> String {
    format!("'{}'", name.replace('\'', "''"))
}
