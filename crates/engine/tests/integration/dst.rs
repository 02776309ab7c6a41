//! DST across zones, checked exhaustively (every fixed time of day at 15-minute steps, every day of two years,
//! and the every-minute and every-quarter wildcards): no fire time is lost or doubled contrary to docs/engine.md.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use engine::Schedule;
use engine::schedule::parse_time_zone;

const ZONES: &[&str] = &["Europe/Istanbul", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"];

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap()
}

/// What docs/engine.md says a daily schedule at `time` fires at on `date` in `zone`: the time itself, the first valid
/// instant after a spring-forward gap, or the first pass of a fall-back overlap.
fn expected_fire(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&date.and_time(time)) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In the gap: walk forward minute by minute to the first local time that exists.
            let mut probe = date.and_time(time);
            loop {
                probe += Duration::minutes(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = zone.from_local_datetime(&probe) {
                    return t.with_timezone(&Utc);
                }
            }
        }
    }
}

#[test]
fn a_fixed_daily_time_fires_exactly_once_per_local_day_at_the_specified_instant() {
    for zone_name in ZONES {
        let zone = parse_time_zone(zone_name).unwrap();
        for quarter in 0..(24 * 4) {
            let (hour, minute) = (quarter / 4, (quarter % 4) * 15);
            let schedule = Schedule::new(&format!("{minute} {hour} * * *"), zone).unwrap();
            let fires = schedule.fire_times(start(), end(), 1_000);
            let mut per_day: BTreeMap<NaiveDate, Vec<DateTime<Utc>>> = BTreeMap::new();
            for fire in &fires {
                per_day.entry(fire.with_timezone(&zone).date_naive()).or_default().push(*fire);
            }
            let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
            let first_day = start().with_timezone(&zone).date_naive() + Duration::days(1);
            let last_day = end().with_timezone(&zone).date_naive() - Duration::days(1);
            let mut day = first_day;
            while day <= last_day {
                let expected = expected_fire(zone, day, time);
                let actual = per_day.get(&expected.with_timezone(&zone).date_naive()).cloned().unwrap_or_default();
                assert_eq!(actual, vec![expected], "{zone_name} {hour:02}:{minute:02} on {day}");
                day += Duration::days(1);
            }
        }
    }
}

#[test]
fn wildcard_schedules_keep_their_real_interval_through_every_transition() {
    for zone_name in ZONES {
        let zone = parse_time_zone(zone_name).unwrap();
        for (expression, step) in [("* * * * *", 1), ("*/15 * * * *", 15)] {
            let schedule = Schedule::new(expression, zone).unwrap();
            let fires = schedule.fire_times(start(), end(), 2 * 366 * 24 * 60 + 10);
            assert!(fires.len() > 1000);
            for pair in fires.windows(2) {
                assert_eq!(
                    pair[1] - pair[0],
                    Duration::minutes(step),
                    "{zone_name} {expression}: {} -> {}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
}

#[test]
fn latest_at_or_before_agrees_with_the_forward_walk() {
    for zone_name in ZONES {
        let zone = parse_time_zone(zone_name).unwrap();
        let schedule = Schedule::new("30 2 * * *", zone).unwrap();
        for fire in schedule.fire_times(start(), end(), 1_000) {
            assert_eq!(schedule.latest_at_or_before(fire), Some(fire), "{zone_name} {fire}");
            assert_eq!(schedule.latest_at_or_before(fire + Duration::hours(1)), Some(fire), "{zone_name} {fire}");
        }
    }
}
