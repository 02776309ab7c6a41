//! Badge unlock conditions (docs/jobs/badge-auto-unlock.md): parsed from `badges.unlock_condition`, with an error that
//! says what is wrong for anything else.

use serde_json::Value;

/// The XP levels in order (docs/ledger.md).
pub const LEVELS: [&str; 6] = ["bronze", "silver", "gold", "platinum", "diamond", "vip_elite"];

/// A parsed unlock condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Referred at least `count` users whose referral reached tier 2 or more.
    Referrals {
        /// Threshold.
        count: i64,
    },
    /// At least `count` settled predictions are correct.
    PredictionsCorrect {
        /// Threshold.
        count: i64,
    },
    /// At least `min_count` settled predictions and correct/settled at least `percent` percent.
    PredictionsAccuracy {
        /// Percent, 0 to 100.
        percent: f64,
        /// Fewest settled predictions.
        min_count: i64,
    },
    /// At least `count` active, non-deleted comments.
    Comments {
        /// Threshold.
        count: i64,
    },
    /// The user's active comments received at least `count` likes in total (their `like_count`).
    CommentLikes {
        /// Threshold.
        count: i64,
    },
    /// Longest streak of at least `days` days.
    LoginStreak {
        /// Threshold.
        days: i64,
    },
    /// Level `level` or higher (its rank in [`LEVELS`], 1-based).
    XpLevel {
        /// 1 (bronze) to 6 (vip_elite).
        rank: i64,
    },
    /// Lifetime earned credits of at least `amount`.
    CreditsEarned {
        /// Threshold.
        amount: i64,
    },
    /// Has ever had a paid subscription that started.
    Subscription,
    /// Granted by hand only.
    Manual,
}

/// What is wrong with a badge's unlock condition, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCondition(pub String);

impl Condition {
    /// Parses a condition, or says what is wrong with it.
    pub fn parse(value: &Value) -> Result<Self, InvalidCondition> {
        Self::parse_object(value).map_err(InvalidCondition)
    }

    fn parse_object(value: &Value) -> Result<Self, String> {
        let object = value.as_object().ok_or_else(|| format!("expected a JSON object, got {value}"))?;
        let kind = object.get("type").and_then(Value::as_str).ok_or("missing \"type\"")?;
        let count = |field: &str| -> Result<i64, String> {
            let value = object.get(field).ok_or_else(|| format!("{kind}: missing \"{field}\""))?;
            match value.as_i64() {
                Some(n) if n >= 0 => Ok(n),
                _ => Err(format!("{kind}: \"{field}\" must be a whole number of at least 0, got {value}")),
            }
        };
        let known = |fields: &[&str]| -> Result<(), String> {
            match object.keys().find(|k| k.as_str() != "type" && !fields.contains(&k.as_str())) {
                Some(extra) => Err(format!("{kind}: unknown field \"{extra}\"")),
                None => Ok(()),
            }
        };
        match kind {
            "referrals" => known(&["count"]).and(Ok(Condition::Referrals { count: count("count")? })),
            "predictions" if object.contains_key("accuracy") => {
                known(&["accuracy", "min_count"])?;
                let percent = object
                    .get("accuracy")
                    .and_then(Value::as_f64)
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!("predictions: \"accuracy\" must be a percent from 0 to 100, got {}", object["accuracy"])
                    })?;
                Ok(Condition::PredictionsAccuracy { percent, min_count: count("min_count")? })
            }
            "predictions" => {
                known(&["correct_count"]).and(Ok(Condition::PredictionsCorrect { count: count("correct_count")? }))
            }
            "comments" if object.contains_key("like_count") => {
                known(&["like_count"]).and(Ok(Condition::CommentLikes { count: count("like_count")? }))
            }
            "comments" => known(&["count"]).and(Ok(Condition::Comments { count: count("count")? })),
            "login_streak" => known(&["days"]).and(Ok(Condition::LoginStreak { days: count("days")? })),
            "xp_level" => {
                known(&["level"])?;
                let level = object.get("level").and_then(Value::as_str).ok_or("xp_level: missing \"level\"")?;
                let rank = LEVELS
                    .iter()
                    .position(|l| *l == level)
                    .ok_or_else(|| format!("xp_level: unknown level {level:?} (levels: {})", LEVELS.join(", ")))?;
                Ok(Condition::XpLevel { rank: i64::try_from(rank).unwrap_or(0) + 1 })
            }
            "credits_earned" => known(&["amount"]).and(Ok(Condition::CreditsEarned { amount: count("amount")? })),
            "subscription" => match object.get("any") {
                Some(Value::Bool(true)) => known(&["any"]).and(Ok(Condition::Subscription)),
                other => Err(format!(
                    "subscription: expected \"any\": true, got {}",
                    other.map_or("nothing".into(), Value::to_string)
                )),
            },
            "manual" => known(&[]).and(Ok(Condition::Manual)),
            other => Err(format!("unknown condition type {other:?}")),
        }
    }

    /// The per-user statistic the condition reads (the sweep computes only the ones some badge needs).
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Referrals { .. } => "referrals",
            Condition::PredictionsCorrect { .. } => "predictions_correct",
            Condition::PredictionsAccuracy { .. } => "predictions_accuracy",
            Condition::Comments { .. } => "comments",
            Condition::CommentLikes { .. } => "comment_likes",
            Condition::LoginStreak { .. } => "login_streak",
            Condition::XpLevel { .. } => "xp_level",
            Condition::CreditsEarned { .. } => "credits_earned",
            Condition::Subscription => "subscription",
            Condition::Manual => "manual",
        }
    }

    /// Whether paying a badge's own rewards can meet the condition: XP can reach a level and credits can reach
    /// a `credits_earned` amount. Nothing else a badge pays moves a statistic a condition reads (promotional VIP
    /// days are not a paid subscription), so a sweep's cascade rounds test only these conditions.
    pub fn reachable_by_rewards(&self) -> bool {
        matches!(self, Condition::XpLevel { .. } | Condition::CreditsEarned { .. })
    }

    /// The condition as an SQL test of the sweep's per-user stats row `s`, or None for a manual badge. The
    /// numbers are the parsed ones (integers, and a percent checked to be from 0 to 100), never raw input.
    pub fn sql_test(&self) -> Option<String> {
        Some(match *self {
            Condition::Referrals { count } => format!("s.referrals >= {count}"),
            Condition::PredictionsCorrect { count } => format!("s.correct >= {count}"),
            Condition::PredictionsAccuracy { percent, min_count } => format!(
                "(s.settled >= {min_count} AND s.settled > 0 AND s.correct * 100.0 >= {}::float8 * s.settled)",
                if percent.is_finite() { percent } else { 100.0 }
            ),
            Condition::Comments { count } => format!("s.comments >= {count}"),
            Condition::CommentLikes { count } => format!("s.likes >= {count}"),
            Condition::LoginStreak { days } => format!("s.longest_streak >= {days}"),
            Condition::XpLevel { rank } => format!("s.level_rank >= {rank}"),
            Condition::CreditsEarned { amount } => format!("s.lifetime_earned >= {amount}"),
            Condition::Subscription => "s.paid_subscription".to_owned(),
            Condition::Manual => return None,
        })
    }
}

// The property the `cargo fuzz` target in `fuzz/` checks on arbitrary bytes; `fuzz_corpora` in hattrick's tests
// replays every committed corpus file through it. Panics when the property is broken.
/// Badge unlock conditions (`Condition::parse`): never panics; an accepted condition turns
/// into a test that holds no text from the input but numbers (no quote, no statement separator, no comment).
pub fn fuzz_parse(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    match Condition::parse(&value) {
        Ok(condition) => {
            assert!(!condition.kind().is_empty());
            if let Some(test) = condition.sql_test() {
                assert!(!test.contains(';') && !test.contains("--") && !test.contains('\''), "unsafe SQL: {test}");
            }
        }
        Err(message) => assert!(!message.0.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_condition_of_the_spec_parses() {
        assert_eq!(Condition::parse(&json!({"type":"referrals","count":5})), Ok(Condition::Referrals { count: 5 }));
        assert_eq!(
            Condition::parse(&json!({"type":"predictions","correct_count":10})),
            Ok(Condition::PredictionsCorrect { count: 10 })
        );
        assert_eq!(
            Condition::parse(&json!({"type":"predictions","accuracy":70,"min_count":20})),
            Ok(Condition::PredictionsAccuracy { percent: 70.0, min_count: 20 })
        );
        assert_eq!(Condition::parse(&json!({"type":"comments","count":50})), Ok(Condition::Comments { count: 50 }));
        assert_eq!(
            Condition::parse(&json!({"type":"comments","like_count":10})),
            Ok(Condition::CommentLikes { count: 10 })
        );
        assert_eq!(Condition::parse(&json!({"type":"login_streak","days":7})), Ok(Condition::LoginStreak { days: 7 }));
        assert_eq!(Condition::parse(&json!({"type":"xp_level","level":"gold"})), Ok(Condition::XpLevel { rank: 3 }));
        assert_eq!(
            Condition::parse(&json!({"type":"credits_earned","amount":500})),
            Ok(Condition::CreditsEarned { amount: 500 })
        );
        assert_eq!(Condition::parse(&json!({"type":"subscription","any":true})), Ok(Condition::Subscription));
        assert_eq!(Condition::parse(&json!({"type":"manual"})), Ok(Condition::Manual));
    }

    #[test]
    fn malformed_conditions_say_what_is_wrong() {
        for (condition, message) in [
            (json!([1, 2]), "expected a JSON object"),
            (json!({"count": 1}), "missing \"type\""),
            (json!({"type":"karma","count":1}), "unknown condition type \"karma\""),
            (json!({"type":"referrals"}), "referrals: missing \"count\""),
            (json!({"type":"referrals","count":-1}), "must be a whole number of at least 0"),
            (json!({"type":"referrals","count":"five"}), "must be a whole number"),
            (json!({"type":"referrals","count":1,"extra":2}), "unknown field \"extra\""),
            (json!({"type":"predictions","accuracy":170,"min_count":2}), "percent from 0 to 100"),
            (json!({"type":"xp_level","level":"mythic"}), "unknown level \"mythic\""),
            (json!({"type":"subscription","any":false}), "expected \"any\": true"),
        ] {
            let error = Condition::parse(&condition).unwrap_err();
            assert!(error.0.contains(message), "{condition}: {error}");
        }
    }
}
