//! The statistics of a campaign experiment's read-out (docs/jobs/scheduled-notifications.md "Experiments"): each
//! group's conversion rate with a 95 % Wilson score interval, and each variant's lift over the holdout with a 95 %
//! interval for the difference of two proportions (Newcombe's hybrid score interval).

/// The normal quantile of a two-sided 95 % interval.
const Z: f64 = 1.959_963_984_540_054;

/// A share of users with its 95 % interval, as fractions (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rate {
    /// Successes over trials (0 when there were none).
    pub value: f64,
    /// Lower bound of the 95 % Wilson score interval.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// `successes` out of `trials`, with the Wilson score interval, which stays inside 0..1 and behaves for small
/// groups and rates near 0 (where the plain normal interval does not).
pub fn rate(successes: i64, trials: i64) -> Rate {
    if trials <= 0 {
        return Rate { value: 0.0, low: 0.0, high: 1.0 };
    }
    let n = trials as f64;
    let p = successes.clamp(0, trials) as f64 / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 or all successes the bound is exact; rounding would leave it a hair off.
    let low = if successes <= 0 { 0.0 } else { (centre - half).max(0.0) };
    let high = if successes >= trials { 1.0 } else { (centre + half).min(1.0) };
    Rate { value: p, low, high }
}

/// A variant's rate minus the holdout's, with its 95 % interval, as fractions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lift {
    /// The difference of the two rates.
    pub value: f64,
    /// Lower bound of its 95 % interval: above 0, the variant converts more than the holdout.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The lift of `(successes, trials)` over the holdout's `(successes, trials)`, with Newcombe's hybrid score
/// interval (built from the two Wilson intervals: it keeps a width when both rates are 0 or 1, where the plain
/// normal interval collapses to a point); None when either group is empty.
pub fn lift(variant: (i64, i64), holdout: (i64, i64)) -> Option<Lift> {
    if variant.1 <= 0 || holdout.1 <= 0 {
        return None;
    }
    let (a, b) = (rate(variant.0, variant.1), rate(holdout.0, holdout.1));
    let value = a.value - b.value;
    Some(Lift {
        value,
        low: value - ((a.value - a.low).powi(2) + (b.high - b.value).powi(2)).sqrt(),
        high: value + ((a.high - a.value).powi(2) + (b.value - b.low).powi(2)).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_intervals_match_published_values() {
        // 8 of 10: 0.4902 to 0.9433 (Wilson 1927; Newcombe 1998, table I).
        let r = rate(8, 10);
        assert!(close(r.value, 0.8) && close(r.low, 0.4902) && close(r.high, 0.9433), "{r:?}");
        // 0 of 20 stays inside [0, 1] and is not a point: 0 to 0.1611.
        let r = rate(0, 20);
        assert!(close(r.low, 0.0) && close(r.high, 0.1611), "{r:?}");
        assert_eq!(rate(0, 0), Rate { value: 0.0, low: 0.0, high: 1.0 });
    }

    #[test]
    fn lifts_have_newcombes_interval_and_keep_a_width_at_zero() {
        // Newcombe 1998, table II, method 10: 56/70 against 48/80 is 0.2000, 0.0524 to 0.3339.
        let l = lift((56, 70), (48, 80)).unwrap();
        assert!(close(l.value, 0.2) && close(l.low, 0.0524) && close(l.high, 0.3339), "{l:?}");
        // Nobody converts in either group: no difference, but not a zero-width interval.
        let none = lift((0, 160), (0, 80)).unwrap();
        assert!(none.value == 0.0 && none.low < 0.0 && none.high > 0.0, "{none:?}");
        let large = lift((3000, 10_000), (2000, 10_000)).unwrap();
        assert!(large.low > 0.08 && large.high < 0.12, "{large:?}");
        assert_eq!(lift((1, 10), (0, 0)), None);
    }
}
