//! Schedules: a strict 5-field POSIX cron expression evaluated in an IANA time zone.
//!
//! DST follows docs/engine.md: a fixed local time inside a spring-forward gap fires at the first valid instant after
//! the gap; a fixed local time inside a fall-back overlap fires once (in the first pass). Wildcard and step fields fire
//! on every real minute that matches, so an every-minute job keeps running through both.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A schedule error, worded for the operator who wrote the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression {expression:?}: {reason} (expected 5 fields: minute hour day month weekday)")]
    Cron {
        /// The expression given.
        expression: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?} (expected an IANA name such as Europe/Istanbul)")]
    TimeZone(String),
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))
}

/// A cron expression and the zone it is read in.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    zone: Tz,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expression, self.zone)
    }
}

impl Schedule {
    /// Parses `expression` (exactly five fields) to be evaluated in `zone`.
    pub fn new(expression: &str, zone: Tz) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        let cron_error = |reason: String| ScheduleError::Cron { expression: expression.to_owned(), reason };
        if fields != 5 {
            return Err(cron_error(format!("it has {fields} field(s)")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| cron_error(e.to_string()))?;
        Ok(Self { expression: expression.to_owned(), cron, zone })
    }

    /// The cron expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone the expression is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The fire times in `(after, until]`, oldest first, at most `limit` of them.
    pub fn fire_times(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::new();
        let mut cursor = after;
        while times.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until => {
                    times.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        times
    }

    /// The latest fire time at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone);
        self.cron.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rejects_anything_but_five_fields() {
        let zone = parse_time_zone("UTC").unwrap();
        for bad in ["* * * *", "0 * * * * *", "61 * * * *", "* * * * * 2026", "every minute"] {
            let error = Schedule::new(bad, zone).unwrap_err();
            assert!(matches!(error, ScheduleError::Cron { .. }), "{bad}: {error}");
        }
        assert!(Schedule::new("*/5 * * * *", zone).is_ok());
    }

    #[test]
    fn unknown_zones_are_named() {
        assert_eq!(
            parse_time_zone("Europe/Istambul").unwrap_err().to_string(),
            "unknown time zone \"Europe/Istambul\" (expected an IANA name such as Europe/Istanbul)"
        );
    }

    #[test]
    fn partner_analytics_fires_at_istanbul_midnight_five() {
        let schedule = Schedule::new("5 0 * * *", parse_time_zone("Europe/Istanbul").unwrap()).unwrap();
        assert_eq!(schedule.next_after(utc("2026-03-10T12:00:00Z")), Some(utc("2026-03-10T21:05:00Z")));
        assert_eq!(schedule.latest_at_or_before(utc("2026-03-10T21:05:00Z")), Some(utc("2026-03-10T21:05:00Z")));
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_fires_once_after_it() {
        // 2026-03-08 02:30 does not exist in New York (02:00 -> 03:00).
        let schedule = Schedule::new("30 2 * * *", parse_time_zone("America/New_York").unwrap()).unwrap();
        let times = schedule.fire_times(utc("2026-03-07T12:00:00Z"), utc("2026-03-09T12:00:00Z"), 10);
        assert_eq!(times, vec![utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")]);
    }

    #[test]
    fn a_fixed_time_in_the_autumn_overlap_fires_once() {
        // 2026-11-01 01:30 happens twice in New York.
        let schedule = Schedule::new("30 1 * * *", parse_time_zone("America/New_York").unwrap()).unwrap();
        let times = schedule.fire_times(utc("2026-10-31T12:00:00Z"), utc("2026-11-02T12:00:00Z"), 10);
        assert_eq!(times, vec![utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]);
    }
}
