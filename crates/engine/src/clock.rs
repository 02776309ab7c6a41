//! The business clock: the "now" of every job (docs/engine.md).
//!
//! In production it is the system clock. Tests, `hattrick run --at` and the demo set it: `fixed` stands still
//! until moved, `scaled` runs from a chosen instant at a multiple of real speed. A scaled clock is described by a
//! string carrying its real-time anchor, so several processes given the same string agree on "now".
//!
//! Leases and heartbeats do not use this clock: they use the database's `clock_timestamp()`, so instances on
//! different hosts agree. Network timeouts use real time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta, Utc};

/// Errors in a clock description.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    /// The description is not one of the accepted forms.
    #[error(
        "invalid clock {0:?}: expected \"system\", \"fixed:<RFC 3339 instant>\" or \
         \"scaled:<RFC 3339 instant>,<factor>[,<real start in Unix milliseconds>]\""
    )]
    Invalid(String),
    /// Only a fixed clock can be set by hand.
    #[error("this clock cannot be set by hand (only a fixed clock can)")]
    NotSettable,
}

#[derive(Debug)]
enum Source {
    System,
    Fixed(Mutex<DateTime<Utc>>),
    Scaled { real_start: SystemTime, business_start: DateTime<Utc>, factor: f64 },
}

/// A cheap, cloneable handle on the business clock; clones share the same time.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Source>);

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock that reads `at` until it is [set](Clock::set) or [advanced](Clock::advance).
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Source::Fixed(Mutex::new(at))))
    }

    /// A clock that reads `business_start` at real instant `real_start` and then runs `factor` times faster than
    /// real time.
    pub fn scaled(business_start: DateTime<Utc>, factor: f64, real_start: SystemTime) -> Self {
        Self(Arc::new(Source::Scaled { real_start, business_start, factor }))
    }

    /// Parses a description: `system`, `fixed:<instant>` or `scaled:<instant>,<factor>[,<real start ms>]`.
    /// Without a real start, a scaled clock starts now.
    pub fn parse(description: &str) -> Result<Self, ClockError> {
        let invalid = || ClockError::Invalid(description.to_owned());
        let instant =
            |s: &str| DateTime::parse_from_rfc3339(s.trim()).map(|t| t.with_timezone(&Utc)).map_err(|_| invalid());
        if description.trim() == "system" {
            return Ok(Self::system());
        }
        if let Some(at) = description.strip_prefix("fixed:") {
            return Ok(Self::fixed(instant(at)?));
        }
        if let Some(rest) = description.strip_prefix("scaled:") {
            let parts: Vec<&str> = rest.split(',').collect();
            let (start, factor, real) = match parts.as_slice() {
                [start, factor] => (start, factor, None),
                [start, factor, real] => (start, factor, Some(real)),
                _ => return Err(invalid()),
            };
            let factor: f64 = factor.trim().parse().map_err(|_| invalid())?;
            if !(factor.is_finite() && factor > 0.0) {
                return Err(invalid());
            }
            let real_start = match real {
                Some(ms) => UNIX_EPOCH + Duration::from_millis(ms.trim().parse().map_err(|_| invalid())?),
                None => SystemTime::now(),
            };
            return Ok(Self::scaled(instant(start)?, factor, real_start));
        }
        Err(invalid())
    }

    /// The business time now.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Source::System => Utc::now(),
            Source::Fixed(at) => *at.lock().unwrap_or_else(|e| e.into_inner()),
            Source::Scaled { real_start, business_start, factor } => {
                let real = SystemTime::now().duration_since(*real_start).unwrap_or_default();
                let business = real.mul_f64(*factor);
                *business_start + TimeDelta::from_std(business).unwrap_or(TimeDelta::MAX)
            }
        }
    }

    /// Sets a fixed clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) -> Result<(), ClockError> {
        match &*self.0 {
            Source::Fixed(current) => {
                *current.lock().unwrap_or_else(|e| e.into_inner()) = at;
                Ok(())
            }
            _ => Err(ClockError::NotSettable),
        }
    }

    /// Moves a fixed clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) -> Result<(), ClockError> {
        self.set(self.now() + by)
    }

    /// How far this clock moves while `real` time passes (the inverse of [`Clock::real_duration`]): a lease that
    /// must last so long in real time, written in business time.
    pub fn business_duration(&self, real: Duration) -> Duration {
        match &*self.0 {
            Source::Scaled { factor, .. } => real.mul_f64(*factor),
            _ => real,
        }
    }

    /// How much real time passes while this clock moves by `business`: what to sleep before a business instant.
    /// A fixed clock never moves by itself, so it answers `business` unchanged (a caller polls it).
    pub fn real_duration(&self, business: Duration) -> Duration {
        match &*self.0 {
            Source::Scaled { factor, .. } => business.div_f64(*factor),
            _ => business,
        }
    }

    /// A description that [`Clock::parse`] turns back into this clock (for a fixed clock: at its current time),
    /// to hand the same clock to another process.
    pub fn describe(&self) -> String {
        match &*self.0 {
            Source::System => "system".to_owned(),
            Source::Fixed(_) => format!("fixed:{}", self.now().to_rfc3339()),
            Source::Scaled { real_start, business_start, factor } => format!(
                "scaled:{},{factor},{}",
                business_start.to_rfc3339(),
                real_start.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_fixed_clock_moves_only_when_told() {
        let clock = Clock::parse("fixed:2026-03-10T22:00:00+03:00").unwrap();
        assert_eq!(clock.now(), at("2026-03-10T19:00:00Z"));
        clock.advance(TimeDelta::minutes(5)).unwrap();
        assert_eq!(clock.clone().now(), at("2026-03-10T19:05:00Z"));
    }

    #[test]
    fn a_scaled_clock_with_the_same_anchor_agrees_across_parses() {
        let real = SystemTime::now() - Duration::from_secs(10);
        let ms = real.duration_since(UNIX_EPOCH).unwrap().as_millis();
        let a = Clock::parse(&format!("scaled:2026-01-01T00:00:00Z,60,{ms}")).unwrap();
        let b = Clock::parse(&a.describe()).unwrap();
        let (ta, tb) = (a.now(), b.now());
        assert!((ta - tb).num_seconds().abs() <= 1, "{ta} vs {tb}");
        // Ten real seconds at 60x are ten business minutes.
        assert!(ta >= at("2026-01-01T00:10:00Z") && ta < at("2026-01-01T00:11:00Z"), "{ta}");
        assert_eq!(a.real_duration(Duration::from_secs(60)), Duration::from_secs(1));
    }

    #[test]
    fn bad_descriptions_are_rejected() {
        for bad in ["", "fixed:yesterday", "scaled:2026-01-01T00:00:00Z", "scaled:2026-01-01T00:00:00Z,-1", "wall"] {
            assert!(matches!(Clock::parse(bad), Err(ClockError::Invalid(_))), "{bad}");
        }
        assert_eq!(Clock::system().set(Utc::now()), Err(ClockError::NotSettable));
    }
}
